//! The radio client (`service: radio`) against the agent's own radio role and against Debian's
//! Icecast 2 (the reference server), in one agent started with `hostrole-agent run --config`:
//! its `/clients` results are read as users read them. Audio comes from ffmpeg (a playlist
//! file for the role, a live `-re` source for Icecast).

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::clients::{result, wait_for};
use support::{Agent, Proc, curl, fetch, free_port, installed, listening};

/// `seconds` of a sine at 128 kbit/s as MP3 in `dir/<title>.mp3` (the playlist's title is the
/// file's name).
fn sine(dir: &Path, title: &str, seconds: u32) -> PathBuf {
    let path = dir.join(format!("{title}.mp3"));
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

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Icecast 2 on a loopback port with live ffmpeg sources on `/live` (titled `Radio Test`),
/// `/full` (no listener allowed) and `/slow` (a source at half speed: its listeners get half
/// the bitrate).
struct Icecast {
    port: u16,
    _server: Proc,
    _sources: Vec<Proc>,
}

const ICECAST_TITLE: &str = "Radio Test";

fn icecast(dir: &Path) -> Icecast {
    installed("icecast2", "icecast2");
    let port = free_port();
    let logs = dir.join("icecast-logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    // As root Icecast refuses to run unless it changes to an unprivileged owner, who must be
    // able to reach its log directory.
    let owner = if is_root() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        "<changeowner><user>nobody</user><group>nogroup</group></changeowner>"
    } else {
        ""
    };
    let config = format!(
        r#"<icecast>
  <location>loopback</location>
  <admin>test@localhost</admin>
  <limits><clients>20</clients><sources>4</sources><burst-size>65535</burst-size></limits>
  <authentication>
    <source-password>pw</source-password>
    <admin-user>admin</admin-user><admin-password>adminpw</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <mount><mount-name>/full</mount-name><max-listeners>0</max-listeners></mount>
  <fileserve>1</fileserve>
  <paths>
    <logdir>{logs}</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
  <security><chroot>0</chroot>{owner}</security>
</icecast>
"#,
        logs = logs.display()
    );
    let path = dir.join("icecast.xml");
    std::fs::write(&path, config).expect("icecast config");
    let mut server = Proc::spawn(
        "icecast",
        Command::new("icecast2").arg("-c").arg(&path),
        dir,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listening(port) {
        server.assert_running();
        assert!(
            Instant::now() < deadline,
            "icecast2 did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // `rate`: the source's speed (1.0: real time).
    let source = |mount: &str, hz: u32, rate: &str| {
        Proc::spawn(
            &format!("source{}", mount.replace('/', "-")),
            Command::new("ffmpeg")
                .args(["-v", "error", "-readrate", rate, "-f", "lavfi", "-i"])
                .arg(format!("sine=frequency={hz}"))
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
                .args(["-f", "mp3"])
                .arg(format!("icecast://source:pw@127.0.0.1:{port}{mount}")),
            dir,
        )
    };
    let mut sources = vec![
        source("/live", 440, "1"),
        source("/full", 220, "1"),
        source("/slow", 330, "0.5"),
    ];
    let status = format!("http://127.0.0.1:{port}/status-json.xsl");
    loop {
        for s in &mut sources {
            s.assert_running();
        }
        let page = fetch(&[&status]).text();
        if ["/live", "/full", "/slow"]
            .iter()
            .all(|m| page.contains(&format!("{port}{m}\"")))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sources did not reach icecast2: {page}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The title, as a source's metadata update sets it.
    let update = curl(&[
        "-s",
        "-u",
        "source:pw",
        &format!(
            "http://127.0.0.1:{port}/admin/metadata?mount=/live&mode=updinfo&song=Radio%20Test"
        ),
    ]);
    assert!(
        String::from_utf8_lossy(&update.stdout).contains("Metadata update successful"),
        "{}",
        String::from_utf8_lossy(&update.stdout)
    );
    Icecast {
        port,
        _server: server,
        _sources: sources,
    }
}

/// Waits until client `name` succeeds with `needle` in its detail (a title shows from the run
/// after it is set).
fn wait_ok_with(agent: &Agent, name: &str, needle: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let r = result(agent, name);
        if r["ok"] == true && r["message"].as_str().is_some_and(|m| m.contains(needle)) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not succeed with {needle:?} within {limit:?}: {r}\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn message(r: &Value) -> &str {
    r["message"].as_str().unwrap_or_default()
}

/// The role plays a generated MP3 on `/live` (title `Sine 440`, 128 kbit/s), the same on
/// `/full` with no listener allowed, and `/studio` waits for a live source that never comes.
/// The client hears `/live` in real time with its title, and names an off-air or missing mount
/// and a full one; against Icecast 2, the same probe hears a live source (bitrate from the MPEG
/// frames: Icecast sends no `icy-br` for ffmpeg's sources) and the title a metadata update set,
/// and judges a source at half speed too slow.
#[test]
fn radio_clients_hear_the_stream_in_real_time_or_say_why_not() {
    installed("ffmpeg", "ffmpeg");
    installed("icecast2", "icecast2");
    let dir = tempfile::tempdir().expect("tempdir");
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).expect("mkdir");
    sine(&music, "Sine 440", 10);
    let ice = icecast(dir.path());

    let (admin, radio) = (free_port(), free_port());
    let client = |i: usize, port: u16, path: &str| {
        format!(
            "  - {{name: radio-{i}, service: radio, server: s{port}, target: !url \"http://127.0.0.1:{port}/\", \
             everyMs: 2000, timeoutMs: 10000, path: {path}, listenMs: 3000}}\n"
        )
    };
    let mut config = format!(
        "hostRole: radio-test\nbind: 127.0.0.1\nadminPort: {admin}\nshutdownGraceSeconds: 1\n\
         radio:\n  station: Test FM\n  port: {radio}\n  maxListeners: 20\n  mounts:\n\
         \x20   - {{path: /live, playlistDir: \"{music}\"}}\n\
         \x20   - {{path: /full, playlistDir: \"{music}\", maxListeners: 0}}\n\
         \x20   - {{path: /studio, live: true}}\n\
         clients:\n",
        music = music.display()
    );
    for (i, (port, path)) in [
        (radio, "/live"),
        (radio, "/nowhere"),
        (radio, "/full"),
        (radio, "/studio"),
        (ice.port, "/live"),
        (ice.port, "/full"),
        (ice.port, "/nowhere"),
        (ice.port, "/slow"),
    ]
    .into_iter()
    .enumerate()
    {
        config.push_str(&client(i, port, path));
    }
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, &config).expect("agent config");
    let agent = Agent::run(&path, admin);

    // The role: in real time at the file's bitrate, with the file's name as the title.
    let ok = wait_ok_with(
        &agent,
        "radio-0",
        "title \"Sine 440\"",
        Duration::from_secs(30),
    );
    assert_eq!(ok["service"], "radio", "{ok}");
    assert!(
        message(&ok).starts_with("GET /live: audio/mpeg at 128 kbit/s (icy-br), in real time"),
        "{ok}"
    );
    let first_audio = ok["timingsMs"]["firstAudio"].as_u64().expect("firstAudio");
    assert!(first_audio < 2000, "{ok}");
    let listened = ok["timingsMs"]["listen"].as_u64().expect("listen");
    assert!((2900..4000).contains(&listened), "{ok}");
    assert!(ok["timingsMs"]["longestStall"].is_null(), "{ok}");

    let missing = wait_for(
        &agent,
        "radio-1",
        "UnexpectedStatus",
        Duration::from_secs(30),
    );
    assert!(
        message(&missing).contains("404") && message(&missing).contains("/nowhere is off the air"),
        "{missing}"
    );
    let full = wait_for(
        &agent,
        "radio-2",
        "UnexpectedStatus",
        Duration::from_secs(30),
    );
    assert!(
        message(&full).contains("403")
            && message(&full).contains("Too many clients on this mountpoint")
            && message(&full).contains("/full is full"),
        "{full}"
    );
    let studio = wait_for(
        &agent,
        "radio-3",
        "UnexpectedStatus",
        Duration::from_secs(30),
    );
    assert!(
        message(&studio).contains("/studio is off the air"),
        "{studio}"
    );

    // Icecast 2, the reference server.
    let ok = wait_ok_with(
        &agent,
        "radio-4",
        &format!("title \"{ICECAST_TITLE}\""),
        Duration::from_secs(30),
    );
    assert!(
        message(&ok)
            .starts_with("GET /live: audio/mpeg at 128 kbit/s (MPEG frame header), in real time"),
        "{ok}"
    );
    assert!(ok["timingsMs"]["firstAudio"].as_u64().is_some(), "{ok}");
    let full = wait_for(
        &agent,
        "radio-5",
        "UnexpectedStatus",
        Duration::from_secs(30),
    );
    assert!(
        message(&full).contains("403") && message(&full).contains("/full is full"),
        "{full}"
    );
    let missing = wait_for(
        &agent,
        "radio-6",
        "UnexpectedStatus",
        Duration::from_secs(30),
    );
    assert!(
        message(&missing).contains("404") && message(&missing).contains("/nowhere is off the air"),
        "{missing}"
    );

    let slow = wait_for(&agent, "radio-7", "TooSlow", Duration::from_secs(30));
    assert!(
        message(&slow).starts_with("/slow too slow: received")
            && message(&slow).contains("of the stream's 128 kbit/s"),
        "{slow}"
    );

    // The client's runs are counted by result in the metrics.
    let metrics = fetch(&[&agent.admin_url("/metrics")]).text();
    assert!(
        metrics.contains("hostrole_client_up{client=\"radio-0\",service=\"radio\""),
        "{metrics}"
    );
    let mut agent = agent;
    agent.terminate();
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}: {}", agent.stderr());
}

/// A station fed by its users: a mount whose playlist is a folder of the host's own file share
/// goes on the air once someone uploads an MP3 there over WebDAV (curl, as any WebDAV client),
/// with the file's name as its title; before that it is off the air.
#[test]
fn a_file_share_folder_is_a_playlist_that_users_fill_over_webdav() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (share, radio) = (free_port(), free_port());
    let users = dir.path().join("users");
    std::fs::write(
        &users,
        format!("dj:{}\n", support::password_hash("turntable")),
    )
    .expect("users");
    let manifest = dir.path().join("station.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: station}}\nspec:\n  servers:\n    file: {{port: {share}, users: {{file: {}}}}}\n    radio:\n      port: {radio}\n      mounts: [{{path: /music, playlist: {{fileShare: music}}}}]\n",
            users.display()
        ),
    )
    .expect("manifest");
    let _agent = Agent::up(&manifest, &dir.path().join("data"), &["--name", "station"]);
    let status = |radio: u16| -> Value {
        let page = fetch(&[&format!("http://127.0.0.1:{radio}/status-json.xsl")]);
        serde_json::from_str(&page.text()).expect("json")
    };
    assert!(
        status(radio)["icestats"].get("source").is_none(),
        "off the air while the folder is empty"
    );
    let song = sine(dir.path(), "Uploaded Song", 20);
    let base = format!("http://127.0.0.1:{share}");
    let mkcol = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-u",
        "dj:turntable",
        "-X",
        "MKCOL",
        &format!("{base}/music/"),
    ]);
    assert_eq!(String::from_utf8_lossy(&mkcol.stdout), "201");
    let put = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-u",
        "dj:turntable",
        "-T",
        song.to_str().expect("utf-8"),
        &format!("{base}/music/Uploaded%20Song.mp3"),
    ]);
    assert_eq!(String::from_utf8_lossy(&put.stdout), "201");
    // The playlist looks at an empty folder again within seconds.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = status(radio);
        if page["icestats"]["source"]["title"] == "Uploaded Song" {
            assert_eq!(page["icestats"]["source"]["bitrate"], 128);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "on the air with the upload: {page}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
