//! Real listeners from Debian (curl, mpg123, mpv) against the radio role and, in the same run,
//! against Debian's Icecast 2 (the reference server, started here unprivileged on a loopback
//! port), both fed by ffmpeg over Icecast's source protocol. A difference between the two is
//! ours to explain.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hostrole_agent_core::Role;
use hostrole_agent_core::metrics::AgentMetrics;
use hostrole_config::RadioRoleConfig;
use hostrole_radio::Radio;
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "hackme";

fn need(tool: &str, package: &str) {
    let found = Command::new("which")
        .arg(tool)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is missing: install the Debian package {package} (scripts/install-deps.sh)"
    );
}

/// `seconds` of a sine at 128 kbit/s as MP3.
fn sine(dir: &Path, seconds: u32) -> PathBuf {
    let path = dir.join("sine.mp3");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args([
            "-ac",
            "2",
            "-ar",
            "44100",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "128k",
        ])
        .arg(&path)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// A process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Debian's Icecast 2 on `port`; as root it drops to `nobody` (it refuses to run as root).
fn icecast(dir: &Path, port: u16) -> Proc {
    need("icecast2", "icecast2");
    let logs = dir.join("icecast-logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    std::fs::set_permissions(&logs, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let config = dir.join("icecast.xml");
    std::fs::write(
        &config,
        format!(
            "<icecast>\n<limits><clients>100</clients><sources>4</sources></limits>\n\
             <authentication><source-password>{PASSWORD}</source-password>\
             <admin-user>admin</admin-user><admin-password>admin-{PASSWORD}</admin-password></authentication>\n\
             <hostname>127.0.0.1</hostname>\n\
             <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>\n\
             <paths><basedir>/usr/share/icecast2</basedir><logdir>{}</logdir>\
             <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot></paths>\n\
             <logging><errorlog>error.log</errorlog><accesslog>access.log</accesslog><loglevel>2</loglevel></logging>\n\
             <security><chroot>0</chroot><changeowner><user>nobody</user><group>nogroup</group></changeowner></security>\n\
             </icecast>\n",
            logs.display()
        ),
    )
    .expect("writes");
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    Proc(
        Command::new("icecast2")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("icecast2 runs"),
    )
}

/// ffmpeg as a live source over Icecast's protocol (`PUT`, `Expect: 100-continue`, unframed).
fn source(file: &Path, port: u16) -> Proc {
    Proc(
        Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-re", "-i"])
            .arg(file)
            .args([
                "-c",
                "copy",
                "-content_type",
                "audio/mpeg",
                "-ice_name",
                "Sine FM",
            ])
            .args(["-f", "mp3"])
            .arg(format!("icecast://source:{PASSWORD}@127.0.0.1:{port}/live"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg runs"),
    )
}

fn run(command: &mut Command) -> (bool, String, Duration) {
    let started = Instant::now();
    let out = command.output().expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text, started.elapsed())
}

/// What the listeners saw of one server.
#[derive(Debug)]
struct Seen {
    headers: String,
    mpg123_ok: bool,
    mpg123_wall: Duration,
    wav_bytes: u64,
    mpv_ok: bool,
    mpv_output: String,
}

/// Feeds `/live` on the server at `port` and listens to it as curl, mpg123 and mpv do.
fn listen(dir: &Path, file: &Path, port: u16) -> Seen {
    let _source = source(file, port);
    let url = format!("http://127.0.0.1:{port}/live");
    let deadline = Instant::now() + Duration::from_secs(15);
    let headers = loop {
        let (_, text, _) = run(Command::new("curl").args([
            "-s",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-H",
            "Icy-MetaData: 1",
            "--max-time",
            "1",
            &url,
        ]));
        if text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200") {
            break text;
        }
        assert!(Instant::now() < deadline, "the source came on: {text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Let the burst fill, then set a title the way source tools do.
    std::thread::sleep(Duration::from_secs(3));
    let (ok, text, _) = run(Command::new("curl").args([
        "-s",
        "-u",
        &format!("source:{PASSWORD}"),
        &format!(
            "http://127.0.0.1:{port}/admin/metadata?mount=/live&mode=updinfo&song=Now+Playing+A"
        ),
    ]));
    assert!(
        ok && text.contains("<return>1</return>"),
        "metadata update: {text}"
    );
    // 400 MPEG frames are 10.4 s of audio: the burst at once, the rest in real time.
    let wav = dir.join(format!("mpg123-{port}.wav"));
    let (mpg123_ok, _, mpg123_wall) = run(Command::new("mpg123")
        .args(["-q", "-n", "400", "-w"])
        .arg(&wav)
        .arg(&url));
    let wav_bytes = std::fs::metadata(&wav).map(|m| m.len()).unwrap_or(0);
    let (mpv_ok, mpv_output, _) = run(Command::new("timeout").args([
        "30",
        "mpv",
        "--no-config",
        "--ao=null",
        "--vo=null",
        "--length=3",
        "--msg-level=all=info",
        &url,
    ]));
    Seen {
        headers,
        mpg123_ok,
        mpg123_wall,
        wav_bytes,
        mpv_ok,
        mpv_output,
    }
}

fn judge(name: &str, seen: &Seen) {
    let headers = seen.headers.to_ascii_lowercase();
    assert!(
        headers.contains("content-type: audio/mpeg"),
        "{name}: {headers}"
    );
    assert!(
        headers.contains("icy-metaint:16000") || headers.contains("icy-metaint: 16000"),
        "{name}: {headers}"
    );
    assert!(
        headers.contains("icy-name:sine fm") || headers.contains("icy-name: sine fm"),
        "{name}: {headers}"
    );
    assert!(seen.mpg123_ok, "{name}: mpg123 decodes the stream");
    // 400 frames of 1152 stereo 16-bit samples, and the WAV header.
    let pcm = 400 * 1152 * 4;
    assert!(
        seen.wav_bytes >= pcm && seen.wav_bytes < pcm + 4096,
        "{name}: mpg123 wrote {} bytes",
        seen.wav_bytes
    );
    // About 4 s of the 10.4 come in the burst: the rest must be paced, not sent at once, and
    // must not stall.
    assert!(
        seen.mpg123_wall >= Duration::from_secs(4) && seen.mpg123_wall < Duration::from_secs(14),
        "{name}: mpg123 took {:?} for 10.4 s of audio",
        seen.mpg123_wall
    );
    assert!(seen.mpv_ok, "{name}: mpv plays: {}", seen.mpv_output);
    assert!(
        seen.mpv_output.contains("icy-title: Now Playing A"),
        "{name}: mpv shows the title: {}",
        seen.mpv_output
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_mpg123_and_mpv_hear_the_same_stream_from_us_and_from_icecast2() {
    for (tool, package) in [
        ("ffmpeg", "ffmpeg"),
        ("curl", "curl"),
        ("mpg123", "mpg123"),
        ("mpv", "mpv"),
    ] {
        need(tool, package);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = sine(dir.path(), 60);
    let password = dir.path().join("password");
    std::fs::write(&password, PASSWORD).expect("writes");

    let config: RadioRoleConfig = serde_json::from_value(serde_json::json!({
        "station": "Ours", "port": 0, "maxListeners": 10, "sourcePasswordFile": password,
        "mounts": [{"path": "/live", "live": true}],
    }))
    .expect("config");
    let radio = Radio::bind(
        &config,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &AgentMetrics::default(),
    )
    .await
    .expect("binds");
    let addr: SocketAddr = radio.addresses()[0].1;
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(radio).run(stop.clone(), Duration::from_secs(2)));

    let ic_port = hostrole_testkit::free_port();
    let _icecast = icecast(dir.path(), ic_port);
    let (root, f) = (dir.path().to_path_buf(), file.clone());
    let reference = tokio::task::spawn_blocking(move || listen(&root, &f, ic_port))
        .await
        .expect("joins");
    let (root, f) = (dir.path().to_path_buf(), file.clone());
    let ours = tokio::task::spawn_blocking(move || listen(&root, &f, addr.port()))
        .await
        .expect("joins");
    eprintln!("icecast2: {reference:?}\nours: {ours:?}");
    judge("icecast2", &reference);
    judge("ours", &ours);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("no panic");
}
