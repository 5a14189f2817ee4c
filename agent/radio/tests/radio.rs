//! The radio role end to end on 127.0.0.1: fixtures made by ffmpeg in a temporary directory,
//! listeners as raw HTTP readers and ffmpeg, ffmpeg as a live source.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hostrole_agent_core::Role;
use hostrole_agent_core::metrics::AgentMetrics;
use hostrole_config::RadioRoleConfig;
use hostrole_radio::Radio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

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

/// `seconds` of a sine at `kbps` as MP3 in `dir/name.mp3`.
fn sine(dir: &Path, name: &str, seconds: u32, kbps: u32) -> PathBuf {
    need("ffmpeg", "ffmpeg");
    let path = dir.join(format!("{name}.mp3"));
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args(["-ac", "2", "-ar", "44100", "-c:a", "libmp3lame", "-b:a"])
        .arg(format!("{kbps}k"))
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

struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn end(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the role stops within the grace")
            .expect("no panic");
    }
}

async fn start(config: serde_json::Value) -> Running {
    // The agent's send timeout (a response the client stops reading is dropped after the idle
    // timeout, 60 s by default) shortened for this test binary, so that a stuck listener is
    // dropped within seconds.
    hostrole_agent_core::net::limits::configure(hostrole_agent_core::net::HttpLimits {
        idle_timeout: Duration::from_secs(4),
        ..Default::default()
    });
    let config: RadioRoleConfig = serde_json::from_value(config).expect("config");
    let radio = Radio::bind(
        &config,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &AgentMetrics::default(),
    )
    .await
    .expect("binds");
    let addr = radio.addresses()[0].1;
    assert_eq!(radio.addresses()[0].0, "radio");
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(radio).run(stop.clone(), Duration::from_secs(2)));
    Running { addr, stop, task }
}

/// A response head: status and lower-case headers.
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends a request and reads the head; returns the stream and the body bytes read past the head.
async fn request(addr: SocketAddr, text: &str) -> (TcpStream, Head, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connects");
    s.write_all(text.as_bytes()).await.expect("writes");
    let (head, rest) = read_head(&mut s).await;
    (s, head, rest)
}

async fn read_head(s: &mut TcpStream) -> (Head, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("a head within 10 s")
            .expect("reads");
        assert!(
            n > 0,
            "closed before the head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (Head { status, headers }, buf[end + 4..].to_vec())
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: radio.test\r\n{extra}\r\n")
}

async fn read_exact_more(s: &mut TcpStream, have: &mut Vec<u8>, want: usize) {
    let mut chunk = vec![0u8; 16384];
    while have.len() < want {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("data within 10 s")
            .expect("reads");
        assert!(n > 0, "stream ended after {} bytes", have.len());
        have.extend_from_slice(&chunk[..n]);
    }
}

async fn status(addr: SocketAddr) -> serde_json::Value {
    let (mut s, head, mut body) = request(
        addr,
        "GET /status-json.xsl HTTP/1.1\r\nHost: radio.test:8000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(head.status, 200);
    s.read_to_end(&mut body).await.expect("reads");
    // Tolerate chunked encoding: the JSON is between the first '{' and the last '}'.
    let text = String::from_utf8_lossy(&body);
    let (a, b) = (
        text.find('{').expect("json"),
        text.rfind('}').expect("json"),
    );
    serde_json::from_str(&text[a..=b]).expect("valid JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_playlist_mount_sends_icy_metadata_every_16000_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    sine(dir.path(), "Sine 440", 30, 128);
    std::fs::write(dir.path().join("notes.txt"), "not audio").expect("writes");
    let radio = start(serde_json::json!({
        "station": "Test Radio", "port": 0, "maxListeners": 10,
        "mounts": [{"path": "/radio", "playlistDir": dir.path(), "description": "Sines"}],
    }))
    .await;
    // The playlist task starts with the role: wait for the mount to be on the air.
    let mut tries = 0;
    let (_, head, _) = loop {
        let r = request(radio.addr, &get("/radio", "Icy-MetaData: 1\r\n")).await;
        if r.1.status == 200 || tries > 50 {
            break r;
        }
        tries += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(head.status, 200);
    assert_eq!(head.get("content-type"), Some("audio/mpeg"));
    assert_eq!(head.get("icy-metaint"), Some("16000"));
    assert_eq!(head.get("icy-name"), Some("Test Radio"));
    assert_eq!(head.get("icy-description"), Some("Sines"));
    assert_eq!(head.get("icy-br"), Some("128"));
    assert!(
        head.get("cache-control")
            .is_some_and(|v| v.contains("no-cache"))
    );
    assert_eq!(head.get("content-length"), None);
    assert_eq!(
        head.get("transfer-encoding"),
        None,
        "the raw stream, as Icecast sends it"
    );
    // The same in HTTP/1.0.
    let (mut s, head, mut body) = request(
        radio.addr,
        "GET /radio HTTP/1.0\r\nHost: radio.test\r\nIcy-MetaData: 1\r\n\r\n",
    )
    .await;
    assert_eq!(head.status, 200);
    // The burst makes the first two blocks come at once.
    let want = 16000 + 1 + 48 + 16000 + 1;
    read_exact_more(&mut s, &mut body, want).await;
    let len = body[16000] as usize * 16;
    let meta = String::from_utf8_lossy(&body[16001..16001 + len]);
    assert!(
        meta.starts_with("StreamTitle='Sine 440';"),
        "metadata block: {meta:?}"
    );
    assert_eq!(body[16001 + len + 16000], 0, "unchanged title: a zero byte");
    // The audio is MPEG frames: the burst starts on a frame header.
    assert_eq!(body[0], 0xff);
    assert_eq!(body[1] & 0xe0, 0xe0);
    // HEAD: the headers, no body.
    let (mut s, head, mut rest) = request(
        radio.addr,
        "HEAD /radio HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(head.get("content-type"), Some("audio/mpeg"));
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(rest.is_empty());
    let (_, head, _) = request(radio.addr, &get("/nothing", "")).await;
    assert_eq!(head.status, 404);
    radio.end().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_playlist_is_paced_by_its_own_bitrate() {
    let dir = tempfile::tempdir().expect("tempdir");
    sine(dir.path(), "a", 20, 128);
    let radio = start(serde_json::json!({
        "station": "S", "port": 0, "maxListeners": 10,
        "mounts": [{"path": "/m", "playlistDir": dir.path()}],
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut s, head, mut body) = request(radio.addr, "GET /m HTTP/1.0\r\nHost: x\r\n\r\n").await;
    assert_eq!(head.status, 200);
    // The burst (~64 KiB) comes at once; then the rate is the file's.
    let mut chunk = vec![0u8; 65536];
    let settle = Instant::now() + Duration::from_millis(700);
    while let Ok(Ok(n)) = tokio::time::timeout_at(settle.into(), s.read(&mut chunk)).await {
        assert!(n > 0);
        body.extend_from_slice(&chunk[..n]);
    }
    let burst = body.len();
    assert!((16_000..80_000).contains(&burst), "burst {burst}");
    let started = Instant::now();
    let mut paced = 0usize;
    while started.elapsed() < Duration::from_secs(4) {
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut chunk)).await
        {
            assert!(n > 0, "stream ended");
            paced += n;
        }
    }
    let rate = paced as f64 / started.elapsed().as_secs_f64();
    // 128 kbit/s = 16000 B/s.
    assert!(
        (12_000.0..20_000.0).contains(&rate),
        "{rate} bytes/s after the burst ({paced} bytes)"
    );
    radio.end().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_lists_mounts_and_listeners_and_limits_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    sine(dir.path(), "One", 30, 128);
    let radio = start(serde_json::json!({
        "station": "Status Radio", "port": 0, "maxListeners": 3,
        "mounts": [
            {"path": "/one", "playlistDir": dir.path(), "maxListeners": 1, "description": "first"},
            {"path": "/two", "playlistDir": dir.path()},
            {"path": "/off", "live": true},
        ],
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (_a, head, _) = request(radio.addr, &get("/one", "")).await;
    assert_eq!(head.status, 200);
    // The mount's limit: Icecast answers 403.
    let (_, head, _) = request(radio.addr, &get("/one", "")).await;
    assert_eq!(head.status, 403);
    let (_b, head, _) = request(radio.addr, &get("/two", "")).await;
    assert_eq!(head.status, 200);
    let (_c, head, _) = request(radio.addr, &get("/two", "")).await;
    assert_eq!(head.status, 200);
    // The role's limit (3).
    let (_, head, _) = request(radio.addr, &get("/two", "")).await;
    assert_eq!(head.status, 403);
    // A live-only mount with no source: 404.
    let (_, head, _) = request(radio.addr, &get("/off", "")).await;
    assert_eq!(head.status, 404);

    let page = status(radio.addr).await;
    let stats = &page["icestats"];
    assert!(
        stats["server_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("hostrole-"))
    );
    assert!(stats["server_start_iso8601"].is_string());
    let sources = stats["source"].as_array().expect("two sources: a list");
    assert_eq!(sources.len(), 2, "{page}");
    let one = sources
        .iter()
        .find(|s| s["listenurl"] == "http://radio.test:8000/one")
        .expect("/one listed");
    assert_eq!(one["listeners"], 1);
    assert_eq!(one["listener_peak"], 1);
    assert_eq!(one["server_name"], "Status Radio");
    assert_eq!(one["server_description"], "first");
    assert_eq!(one["server_type"], "audio/mpeg");
    assert_eq!(one["title"], "One");
    assert_eq!(one["bitrate"], 128);
    assert!(one["stream_start_iso8601"].is_string());
    let two = sources
        .iter()
        .find(|s| s["listenurl"] == "http://radio.test:8000/two")
        .expect("/two listed");
    assert_eq!(two["listeners"], 2);
    // Hammering the status page is cheap: 200 pages well within a few seconds.
    let started = Instant::now();
    for _ in 0..200 {
        status(radio.addr).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    radio.end().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listener_that_never_reads_is_dropped_while_another_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    sine(dir.path(), "Fast", 120, 320);
    let radio = start(serde_json::json!({
        "station": "S", "port": 0, "maxListeners": 10,
        "mounts": [{"path": "/m", "playlistDir": dir.path()}],
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The stuck listener: a tiny receive window, and it never reads.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(2048).expect("rcvbuf");
    let mut stuck = socket.connect(radio.addr).await.expect("connects");
    stuck
        .write_all(b"GET /m HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .expect("writes");
    let (mut good, head, _) = request(radio.addr, "GET /m HTTP/1.0\r\nHost: x\r\n\r\n").await;
    assert_eq!(head.status, 200);
    let started = Instant::now();
    let mut chunk = vec![0u8; 65536];
    let mut dropped = None;
    while started.elapsed() < Duration::from_secs(60) {
        let n = tokio::time::timeout(Duration::from_secs(5), good.read(&mut chunk))
            .await
            .expect("the good listener keeps getting data")
            .expect("reads");
        assert!(n > 0, "the good listener's stream ended");
        if dropped.is_none() {
            let page = status(radio.addr).await;
            if page["icestats"]["source"]["listeners"] == 1 {
                dropped = Some(started.elapsed());
            }
        } else if started.elapsed() > dropped.unwrap_or_default() + Duration::from_secs(2) {
            break;
        }
    }
    let dropped = dropped.expect("the stuck listener was dropped within 60 s");
    eprintln!("stuck listener dropped after {dropped:?}");
    // The stuck client finds the end of its stream once it reads what was buffered.
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stuck.read_to_end(&mut sink)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the stuck stream ends"
    );
    radio.end().await;
}

/// ffmpeg as a source: `icecast://` (Icecast's protocol, unframed body) or `http://` with
/// `-method PUT` (a chunked body).
fn ffmpeg_source(file: &Path, url: &str) -> std::process::Child {
    let mut c = Command::new("ffmpeg");
    c.args(["-v", "error", "-nostdin", "-re", "-i"])
        .arg(file)
        .args(["-c", "copy", "-content_type", "audio/mpeg", "-f", "mp3"]);
    if url.starts_with("http://") {
        c.args([
            "-method",
            "PUT",
            "-auth_type",
            "basic",
            "-headers",
            "Ice-Name: Live Test\r\n",
        ]);
    } else {
        c.args(["-ice_name", "Live Test"]);
    }
    c.arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ffmpeg runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn ffmpeg_feeds_a_live_mount_and_ffmpeg_decodes_it_in_real_time() {
    need("ffmpeg", "ffmpeg");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = sine(dir.path(), "live", 60, 320);
    let password = dir.path().join("password");
    std::fs::write(&password, "hackme\n").expect("writes");
    let radio = start(serde_json::json!({
        "station": "S", "port": 0, "maxListeners": 10, "sourcePasswordFile": password,
        "mounts": [{"path": "/live", "live": true}],
    }))
    .await;
    let port = radio.addr.port();
    let (_, head, _) = request(radio.addr, &get("/live", "")).await;
    assert_eq!(head.status, 404, "no source yet");
    // A wrong password: 401, and ffmpeg fails.
    let wrong = ffmpeg_source(
        &file,
        &format!("icecast://source:wrong@127.0.0.1:{port}/live"),
    );
    let out = tokio::task::spawn_blocking(move || wrong.wait_with_output())
        .await
        .expect("joins")
        .expect("waits");
    assert!(!out.status.success(), "ffmpeg with a wrong password fails");
    let (_, head, _) = request(
        radio.addr,
        "PUT /live HTTP/1.1\r\nHost: x\r\nAuthorization: Basic c291cmNlOndyb25n\r\nContent-Type: audio/mpeg\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(head.status, 401);

    // Icecast's own protocol: `PUT` with `Expect: 100-continue`, then the audio unframed.
    let mut source = ffmpeg_source(
        &file,
        &format!("icecast://source:hackme@127.0.0.1:{port}/live"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, head, _) = request(radio.addr, &get("/live", "")).await;
        if head.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the source came on within 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A second source for the same mount: 403 "Mountpoint in use" (sent raw: the password is
    // right, so the answer tells which).
    let (mut s, head, mut body) = request(
        radio.addr,
        "PUT /live HTTP/1.1\r\nHost: x\r\nAuthorization: Basic c291cmNlOmhhY2ttZQ==\r\nContent-Type: audio/mpeg\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(head.status, 403);
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut body)).await;
    assert!(String::from_utf8_lossy(&body).contains("Mountpoint in use"));
    // Let the burst fill up, then decode 6 s as a listener.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let url = format!("http://127.0.0.1:{port}/live");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("ffmpeg")
            .args([
                "-v", "error", "-nostdin", "-i", &url, "-t", "6", "-f", "null", "-",
            ])
            .output()
    })
    .await
    .expect("joins")
    .expect("ffmpeg runs");
    let wall = started.elapsed();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg decodes: {errors}");
    assert!(errors.trim().is_empty(), "decoding errors: {errors}");
    // 6 s of audio: the burst (~1.6 s at 320 kbit/s) at once, the rest in real time.
    assert!(
        wall >= Duration::from_millis(3500) && wall < Duration::from_secs(15),
        "decoded 6 s of audio in {wall:?}"
    );
    let page = status(radio.addr).await;
    assert_eq!(page["icestats"]["source"]["server_name"], "Live Test");
    let _ = source.kill();
    let _ = source.wait();
    // The source left and the mount has no playlist: 404 again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, head, _) = request(radio.addr, &get("/live", "")).await;
        if head.status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "the mount went off the air");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    radio.end().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_source_replaces_the_playlist_and_garbage_does_not_stall_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    sine(dir.path(), "Playlist", 60, 128);
    let password = dir.path().join("password");
    std::fs::write(&password, "pw").expect("writes");
    let radio = start(serde_json::json!({
        "station": "S", "port": 0, "maxListeners": 10, "sourcePasswordFile": password,
        "mounts": [{"path": "/m", "live": true, "playlistDir": dir.path()}],
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A raw source (HTTP/1.1 PUT, chunked) sending garbage; the answer comes when it ends.
    let mut src = TcpStream::connect(radio.addr).await.expect("connects");
    src.write_all(b"PUT /m HTTP/1.1\r\nHost: x\r\nAuthorization: Basic c291cmNlOnB3\r\nContent-Type: audio/mpeg\r\nIce-Name: Garbage\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .expect("writes");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    src.write_all(b"2000\r\n").await.expect("writes");
    src.write_all(&garbage).await.expect("writes");
    src.write_all(b"\r\n").await.expect("writes");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut l, head, mut got) = request(radio.addr, "GET /m HTTP/1.0\r\nHost: x\r\n\r\n").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.get("icy-name"), Some("Garbage"));
    src.write_all(b"b\r\nLIVE-MARKER\r\n")
        .await
        .expect("writes");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunk = vec![0u8; 65536];
    while !got.windows(11).any(|w| w == b"LIVE-MARKER") {
        assert!(
            Instant::now() < deadline,
            "the source's bytes reach the listener"
        );
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), l.read(&mut chunk)).await
        {
            assert!(n > 0);
            got.extend_from_slice(&chunk[..n]);
        }
    }
    // A metadata update, authenticated like the source.
    let (_, head, _) = request(
        radio.addr,
        "GET /admin/metadata?mount=/m&mode=updinfo&song=Hello+World HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(head.status, 401);
    let (_, head, _) = request(
        radio.addr,
        "GET /admin/metadata?mount=/m&mode=updinfo&song=Hello+World HTTP/1.1\r\nHost: x\r\nAuthorization: Basic c291cmNlOnB3\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(head.status, 200);
    let page = status(radio.addr).await;
    assert_eq!(page["icestats"]["source"]["title"], "Hello World");
    assert_eq!(page["icestats"]["source"]["server_name"], "Garbage");
    // The source leaves (ends its body: answered 200): the playlist resumes for the same listener.
    src.write_all(b"0\r\n\r\n").await.expect("writes");
    let (head, _) = read_head(&mut src).await;
    assert_eq!(head.status, 200);
    drop(src);
    let mut after = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while after.len() < 20_000 {
        assert!(Instant::now() < deadline, "the playlist resumed");
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), l.read(&mut chunk)).await
        {
            assert!(n > 0, "stream ended");
            after.extend_from_slice(&chunk[..n]);
        }
    }
    let page = status(radio.addr).await;
    assert_eq!(page["icestats"]["source"]["title"], "Playlist");
    radio.end().await;
}

/// `seconds` of a sine in Ogg with `codec` (libopus, libvorbis) at `kbps`.
fn sine_ogg(dir: &Path, name: &str, codec: &str, seconds: u32, kbps: u32) -> PathBuf {
    need("ffmpeg", "ffmpeg");
    let path = dir.join(format!("{name}.ogg"));
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args(["-ac", "2", "-ar", "48000", "-c:a", codec, "-b:a"])
        .arg(format!("{kbps}k"))
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

#[tokio::test(flavor = "multi_thread")]
async fn ogg_playlists_play_in_real_time_and_late_listeners_decode() {
    let dir = tempfile::tempdir().expect("tempdir");
    sine_ogg(dir.path(), "1 Opus", "libopus", 40, 96);
    sine_ogg(dir.path(), "2 Vorbis", "libvorbis", 40, 96);
    let radio = start(serde_json::json!({
        "station": "S", "port": 0, "maxListeners": 10,
        "mounts": [{"path": "/o.ogg", "playlistDir": dir.path()}],
    }))
    .await;
    // Join mid-file: the header pages must come first for ffmpeg to decode.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut s, head, mut body) =
        request(radio.addr, "GET /o.ogg HTTP/1.0\r\nHost: x\r\n\r\n").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.get("content-type"), Some("application/ogg"));
    read_exact_more(&mut s, &mut body, 64).await;
    assert!(body.starts_with(b"OggS"));
    assert!(body.windows(8).any(|w| w == b"OpusHead"), "headers first");
    drop(s);
    let url = format!("http://{}/o.ogg", radio.addr);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("ffmpeg")
            .args([
                "-v", "error", "-nostdin", "-i", &url, "-t", "10", "-f", "null", "-",
            ])
            .output()
    })
    .await
    .expect("joins")
    .expect("ffmpeg runs");
    let wall = started.elapsed();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg decodes: {errors}");
    assert!(errors.trim().is_empty(), "decoding errors: {errors}");
    // 10 s of audio: the burst (64 KiB: ~5.5 s at 96 kbit/s) at once, the rest in real time.
    assert!(
        wall >= Duration::from_millis(2500) && wall < Duration::from_secs(20),
        "decoded 10 s of Opus in {wall:?}"
    );
    let page = status(radio.addr).await;
    assert_eq!(page["icestats"]["source"]["title"], "1 Opus");
    assert_eq!(page["icestats"]["source"]["server_type"], "application/ogg");
    radio.end().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_serves_listeners_as_radio_tls() {
    need("openssl", "openssl");
    need("curl", "curl");
    let dir = tempfile::tempdir().expect("tempdir");
    sine(dir.path(), "Secure", 20, 128);
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext"])
        .arg("subjectAltName=IP:127.0.0.1")
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: RadioRoleConfig = serde_json::from_value(serde_json::json!({
        "station": "S", "port": 0, "maxListeners": 10,
        "tls": {"cert": cert, "key": key},
        "mounts": [{"path": "/s", "playlistDir": dir.path()}],
    }))
    .expect("config");
    let radio = Radio::bind(
        &config,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &AgentMetrics::default(),
    )
    .await
    .expect("binds");
    let (label, addr) = radio.addresses()[0];
    assert_eq!(label, "radio+tls");
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(radio).run(stop.clone(), Duration::from_secs(2)));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let cacert = cert.clone();
    let url = format!("https://127.0.0.1:{}/s", addr.port());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "2", "--cacert"])
            .arg(&cacert)
            .args([
                "-H",
                "Icy-MetaData: 1",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}\n",
            ])
            .arg(&url)
            .output()
    })
    .await
    .expect("joins")
    .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.to_ascii_lowercase().contains("icy-metaint: 16000"),
        "{text}"
    );
    let size: u64 = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("size downloaded");
    assert!(size > 20_000, "burst and stream over TLS: {size} bytes");
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops")
        .expect("no panic");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_source_is_dropped_after_the_idle_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("password");
    std::fs::write(&password, "pw").expect("writes");
    let radio = start(serde_json::json!({
        "station": "S", "port": 0, "maxListeners": 10, "sourcePasswordFile": password,
        "mounts": [{"path": "/m", "live": true}],
    }))
    .await;
    let mut src = TcpStream::connect(radio.addr).await.expect("connects");
    src.write_all(b"PUT /m HTTP/1.1\r\nHost: x\r\nAuthorization: Basic c291cmNlOnB3\r\nContent-Type: audio/mpeg\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
        .await
        .expect("writes");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, head, _) = request(radio.addr, &get("/m", "")).await;
    assert_eq!(head.status, 200, "on the air");
    // Answered at once (no `Expect`), as Icecast answers; then silence: the source is let go
    // after 10 s (Icecast's source-timeout), and its answer ends.
    let started = Instant::now();
    let (head, mut rest) = tokio::time::timeout(Duration::from_secs(2), read_head(&mut src))
        .await
        .expect("answered at once");
    assert_eq!(head.status, 200);
    let mut chunk = [0u8; 256];
    while !rest.ends_with(b"0\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(20), src.read(&mut chunk))
            .await
            .expect("the silent source is let go")
            .expect("reads");
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&chunk[..n]);
    }
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let (_, head, _) = request(radio.addr, &get("/m", "")).await;
    assert_eq!(head.status, 404, "off the air again");
    radio.end().await;
}

/// Icecast's source protocol as libshout and older tools speak it: `SOURCE` over HTTP/1.0, the
/// answer awaited before any audio, then the audio with no length and no chunks until the
/// source closes. Without the listener's unframed bodies the audio was read as further requests.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_source_with_an_unframed_body_is_answered_first_and_relayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("password");
    std::fs::write(&password, "pw").expect("writes");
    let radio = start(serde_json::json!({
        "station": "S", "port": 0, "maxListeners": 10, "sourcePasswordFile": password,
        "mounts": [{"path": "/m", "live": true}],
    }))
    .await;
    let (mut src, head, _) = request(
        radio.addr,
        "SOURCE /m HTTP/1.0\r\nAuthorization: Basic c291cmNlOnB3\r\nContent-Type: audio/mpeg\r\nice-name: Legacy\r\n\r\n",
    )
    .await;
    assert_eq!(head.status, 200, "answered before any audio");
    // Audio that looks like requests, to show it is not parsed as HTTP.
    let mut audio = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
    audio.extend_from_slice(b"LEGACY-MARKER");
    src.write_all(&audio).await.expect("writes");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // HTTP/1.0, as Icecast answers everyone: the body is the audio itself, not chunks.
    let (mut l, head, mut got) = request(radio.addr, "GET /m HTTP/1.0\r\nHost: x\r\n\r\n").await;
    assert_eq!(head.status, 200);
    assert_eq!(head.get("icy-name"), Some("Legacy"));
    read_until(&mut l, &mut got, b"LEGACY-MARKER").await;
    // The burst starts where the mount found a frame boundary: the end arrives unchanged.
    let tail = &audio[audio.len() - 2000..];
    assert!(
        got.windows(tail.len()).any(|w| w == tail),
        "the listener gets the source's bytes unchanged"
    );
    // More audio later on the same connection still reaches the listener.
    src.write_all(b"SECOND-MARKER").await.expect("writes");
    read_until(&mut l, &mut got, b"SECOND-MARKER").await;
    // The source closes: the mount goes off the air.
    drop(src);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, head, _) = request(radio.addr, &get("/m", "")).await;
        if head.status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "the mount went off the air");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    radio.end().await;
}

async fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, marker: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunk = vec![0u8; 65536];
    while !got.windows(marker.len()).any(|w| w == marker) {
        assert!(
            Instant::now() < deadline,
            "{} reaches the listener",
            String::from_utf8_lossy(marker)
        );
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), s.read(&mut chunk)).await
        {
            assert!(n > 0, "the stream ended");
            got.extend_from_slice(&chunk[..n]);
        }
    }
}

/// ezstream, a source client built on libshout (Icecast's own source library): it waits for
/// the `200 OK` before it sends, and sends unframed.
#[tokio::test(flavor = "multi_thread")]
async fn ezstream_feeds_a_live_mount_through_libshout() {
    need("ezstream", "ezstream");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = sine(dir.path(), "track", 30, 128);
    let password = dir.path().join("password");
    std::fs::write(&password, "hackme\n").expect("writes");
    let radio = start(serde_json::json!({
        "station": "S", "port": 0, "maxListeners": 10, "sourcePasswordFile": password,
        "mounts": [{"path": "/live", "live": true}],
    }))
    .await;
    let config = dir.path().join("ezstream.xml");
    std::fs::write(
        &config,
        format!(
            "<ezstream>\n<servers><server><protocol>HTTP</protocol><hostname>127.0.0.1</hostname>\
             <port>{}</port><password>hackme</password></server></servers>\n\
             <streams><stream><mountpoint>/live</mountpoint><format>MP3</format>\
             <stream_name>Ezstream Test</stream_name></stream></streams>\n\
             <intakes><intake><type>file</type><filename>{}</filename></intake></intakes>\n\
             </ezstream>\n",
            radio.addr.port(),
            file.display()
        ),
    )
    .expect("writes");
    // ezstream refuses a configuration others may read (it holds the password).
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let mut ezstream = Command::new("ezstream")
        .arg("-c")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ezstream runs");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, head, _) = request(radio.addr, &get("/live", "")).await;
        if head.status == 200 {
            assert_eq!(head.get("icy-name"), Some("Ezstream Test"));
            break;
        }
        if Instant::now() >= deadline {
            let _ = ezstream.kill();
            let out = ezstream.wait_with_output().expect("waits");
            panic!(
                "ezstream's source did not come on: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A listener decodes 4 s of it.
    let url = format!("http://{}/live", radio.addr);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("ffmpeg")
            .args([
                "-v", "error", "-nostdin", "-i", &url, "-t", "4", "-f", "null", "-",
            ])
            .output()
    })
    .await
    .expect("joins")
    .expect("ffmpeg runs");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg decodes: {errors}");
    assert!(errors.trim().is_empty(), "decoding errors: {errors}");
    let _ = ezstream.kill();
    let _ = ezstream.wait();
    radio.end().await;
}

/// Guessing the source password: a few free failures per address, then each attempt waits
/// longer (agent-core's login throttle), the right password included.
#[tokio::test(flavor = "multi_thread")]
async fn source_password_guessing_is_throttled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("password");
    std::fs::write(&password, "pw").expect("writes");
    let radio = start(serde_json::json!({
        "station": "S", "port": 0, "maxListeners": 10, "sourcePasswordFile": password,
        "mounts": [{"path": "/m", "live": true}],
    }))
    .await;
    // source:wrong, then source:pw.
    let attempt = |auth: &'static str| {
        let addr = radio.addr;
        async move {
            let started = Instant::now();
            let (_, head, _) = request(
                addr,
                &format!("GET /admin/metadata?mount=/m&mode=updinfo&song=x HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"),
            )
            .await;
            (head.status, started.elapsed())
        }
    };
    for _ in 0..3 {
        let (status, took) = attempt("c291cmNlOndyb25n").await;
        assert_eq!(status, 401);
        assert!(took < Duration::from_millis(400), "free failures: {took:?}");
    }
    let (status, took) = attempt("c291cmNlOndyb25n").await;
    assert_eq!(status, 401);
    assert!(
        took >= Duration::from_millis(400),
        "the fourth failure waits: {took:?}"
    );
    // The right password is checked too, after its wait (the mount has no source: 400).
    let (status, took) = attempt("c291cmNlOnB3").await;
    assert_eq!(status, 400, "authenticated; no source on the mount");
    assert!(took >= Duration::from_millis(400), "{took:?}");
    radio.end().await;
}

/// Listeners get the stream as Icecast sends it: an HTTP/1.0 answer whose body is the audio
/// itself until the close, also when they ask in HTTP/1.1 (no chunk sizes in the audio).
#[tokio::test(flavor = "multi_thread")]
async fn an_http11_listener_gets_the_raw_stream_as_from_icecast() {
    let dir = tempfile::tempdir().expect("tempdir");
    sine(dir.path(), "Raw", 30, 128);
    let radio = start(serde_json::json!({
        "station": "S", "port": 0, "maxListeners": 10,
        "mounts": [{"path": "/m", "playlistDir": dir.path()}],
    }))
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut s, head, mut body) = loop {
        let r = request(radio.addr, &get("/m", "")).await;
        if r.1.status == 200 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(head.status, 200);
    assert_eq!(head.get("transfer-encoding"), None, "not chunked");
    read_exact_more(&mut s, &mut body, 4096).await;
    // An MPEG frame sync at the start, where a chunked body would start with a size line.
    assert!(
        body[0] == 0xFF && body[1] & 0xE0 == 0xE0,
        "{:02x?}",
        &body[..8]
    );
    radio.end().await;
}
