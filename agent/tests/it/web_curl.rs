//! The web role, started as the real agent binary on loopback and exercised with curl.

use crate::support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Agent, curl, fetch, free_port, idle_connection, listening, wait_until};

const BIG_SIZE: usize = 2 * 1024 * 1024;

/// A site with the kinds of files a real one has, and a few traps.
struct Site {
    dir: tempfile::TempDir,
    _outside: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let write = |p: &str, c: &[u8]| {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, c).expect("write");
        };
        write(
            "index.html",
            b"<!doctype html><title>home</title><h1>Welcome home</h1>\n",
        );
        write(
            "about/index.html",
            b"<!doctype html><title>about</title><p>About us</p>\n",
        );
        write(
            "css/site.css",
            "body { color: #222; }\n".repeat(200).as_bytes(),
        );
        write("app.js", b"console.log('hi');\n");
        write("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>\n");
        write("data.json", b"{\"ok\": true}\n");
        write(".secret", b"do not serve\n");
        // Incompressible content, so that sizes on the wire are the sizes on disk.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let big: Vec<u8> = (0..BIG_SIZE)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        write("big.bin", &big);
        std::fs::write(outside.path().join("passwd"), b"root:x:0:0\n").expect("write");
        std::os::unix::fs::symlink(outside.path().join("passwd"), root.join("leak"))
            .expect("symlink");
        Site {
            dir,
            _outside: outside,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes a manifest serving `site` on a free port; returns (manifest dir, port).
fn manifest(site: &Path, max_connections: Option<u32>) -> (tempfile::TempDir, PathBuf, u16) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let limit = max_connections
        .map(|m| format!("\n      maxConnections: {m}"))
        .unwrap_or_default();
    let text = format!(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata:\n  name: curl-test\nspec:\n  servers:\n    web:\n      port: {port}{limit}\n      site:\n        path: {}\n",
        site.display()
    );
    let path = dir.path().join("host.yaml");
    std::fs::write(&path, text).expect("write manifest");
    (dir, path, port)
}

struct Running {
    agent: Agent,
    port: u16,
    site: Site,
    _manifest: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Running {
    fn start(max_connections: Option<u32>) -> Running {
        let site = Site::new();
        let (manifest_dir, manifest, port) = manifest(site.path(), max_connections);
        let data = tempfile::tempdir().expect("tempdir");
        let agent = Agent::up(&manifest, data.path(), &[]);
        Running {
            agent,
            port,
            site,
            _manifest: manifest_dir,
            _data: data,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

#[test]
fn get_and_head_serve_files_with_content_types() {
    let web = Running::start(None);
    let home = fetch(&[&web.url("/")]);
    assert_eq!(home.status, 200);
    assert!(home.text().contains("Welcome home"));
    assert_eq!(home.header("content-type"), Some("text/html"));
    assert!(home.header("etag").is_some(), "ETag is set");
    assert!(
        home.header("last-modified").is_some(),
        "Last-Modified is set"
    );

    let about = fetch(&[&web.url("/about/")]);
    assert_eq!(about.status, 200, "a directory serves its index.html");
    assert!(about.text().contains("About us"));

    for (path, mime) in [
        ("/css/site.css", "text/css"),
        ("/app.js", "text/javascript"),
        ("/logo.svg", "image/svg+xml"),
        ("/data.json", "application/json"),
        ("/big.bin", "application/octet-stream"),
    ] {
        let r = fetch(&["-o", "/dev/null", &web.url(path)]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some(mime), "{path}");
    }

    let head = fetch(&["-I", "-o", "/dev/null", &web.url("/big.bin")]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(BIG_SIZE.to_string().as_str())
    );
    assert!(head.body.is_empty(), "HEAD has no body");

    let missing = fetch(&[&web.url("/nope.html")]);
    assert_eq!(missing.status, 404);
    let post = fetch(&["-X", "POST", "-d", "x", &web.url("/")]);
    assert_eq!(post.status, 405, "a static site refuses writes");
}

#[test]
fn conditional_requests_answer_304() {
    let web = Running::start(None);
    let first = fetch(&[&web.url("/css/site.css")]);
    let etag = first.header("etag").expect("etag").to_string();
    let modified = first
        .header("last-modified")
        .expect("last-modified")
        .to_string();

    let by_etag = fetch(&[
        "-H",
        &format!("If-None-Match: {etag}"),
        &web.url("/css/site.css"),
    ]);
    assert_eq!(by_etag.status, 304);
    assert!(by_etag.body.is_empty());

    let by_date = fetch(&[
        "-H",
        &format!("If-Modified-Since: {modified}"),
        &web.url("/css/site.css"),
    ]);
    assert_eq!(by_date.status, 304);

    let other = fetch(&[
        "-H",
        "If-None-Match: \"something-else\"",
        &web.url("/css/site.css"),
    ]);
    assert_eq!(other.status, 200, "a different ETag gets the file");
    assert_eq!(other.body, first.body);

    // If-None-Match wins over If-Modified-Since (RFC 9110, 13.2.2).
    let both = fetch(&[
        "-H",
        "If-None-Match: \"something-else\"",
        "-H",
        &format!("If-Modified-Since: {modified}"),
        &web.url("/css/site.css"),
    ]);
    assert_eq!(both.status, 200);
}

#[test]
fn range_requests_answer_206() {
    let web = Running::start(None);
    let full = fetch(&[&web.url("/big.bin")]);
    assert_eq!(full.body.len(), BIG_SIZE);

    let part = fetch(&["-r", "1000-1999", &web.url("/big.bin")]);
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 1000-1999/{BIG_SIZE}").as_str())
    );
    assert_eq!(part.body, full.body[1000..2000]);

    let tail = fetch(&["-r", "-100", &web.url("/big.bin")]);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, full.body[BIG_SIZE - 100..]);

    let beyond = fetch(&["-r", &format!("{}-", BIG_SIZE + 10), &web.url("/big.bin")]);
    assert_eq!(beyond.status, 416);

    // Resuming a download gets exactly the rest.
    let resumed = fetch(&["-C", "500000", &web.url("/big.bin")]);
    assert_eq!(resumed.status, 206);
    assert_eq!(resumed.body, full.body[500_000..]);

    // The same on a small file (served from the role's memory cache, big.bin from disk).
    let css = fetch(&[&web.url("/css/site.css")]);
    let part = fetch(&["-r", "22-43", &web.url("/css/site.css")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, css.body[22..44]);
}

/// Polls `url` until its body is `want` (the role trusts a cached file for a second).
fn eventually_serves(url: &str, want: &str) -> support::Response {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = fetch(&[url]);
        if r.text() == want || std::time::Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn changes_on_disk_are_served_soon_after() {
    let web = Running::start(None);
    let root = web.site.path().to_path_buf();
    let first = fetch(&[&web.url("/data.json")]);
    assert_eq!(first.text(), "{\"ok\": true}\n");
    let etag = first.header("etag").expect("etag").to_string();

    // Rewritten in place, to a body of the same length.
    std::fs::write(root.join("data.json"), "{\"ok\": 1234}\n").expect("write");
    let changed = eventually_serves(&web.url("/data.json"), "{\"ok\": 1234}\n");
    assert_eq!(changed.text(), "{\"ok\": 1234}\n");
    assert_ne!(changed.header("etag"), Some(etag.as_str()), "a new ETag");

    // Replaced by rename, as deployment tools (and ConfigMap volumes) do.
    std::fs::write(root.join(".next"), "<h1>v2</h1>\n").expect("write");
    std::fs::rename(root.join(".next"), root.join("index.html")).expect("rename");
    assert_eq!(
        eventually_serves(&web.url("/"), "<h1>v2</h1>\n").text(),
        "<h1>v2</h1>\n"
    );

    // Removed: gone. Added: served.
    std::fs::remove_file(root.join("app.js")).expect("remove");
    std::fs::write(root.join("new.txt"), "new\n").expect("write");
    assert_eq!(fetch(&[&web.url("/new.txt")]).text(), "new\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fetch(&[&web.url("/app.js")]).status != 404 {
        assert!(
            std::time::Instant::now() < deadline,
            "a removed file is still served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn paths_outside_the_site_are_refused() {
    let web = Running::start(None);
    for path in [
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/css/..%2f..%2f..%2fetc/passwd",
        "/leak",
        "/.secret",
        "/%2esecret",
    ] {
        let r = fetch(&["--path-as-is", &web.url(path)]);
        assert!(r.status == 404 || r.status == 400, "{path}: {}", r.status);
        assert!(!r.text().contains("root:"), "{path} leaked a file");
        assert!(
            !r.text().contains("do not serve"),
            "{path} served a hidden file"
        );
    }
    for path in ["/a%00b", "/..%5c..%5cetc%5cpasswd"] {
        let r = fetch(&["--path-as-is", &web.url(path)]);
        assert_eq!(r.status, 400, "{path}");
    }
}

#[test]
fn http2_with_prior_knowledge() {
    let web = Running::start(None);
    let out = curl(&[
        "-s",
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        &web.url("/"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
    let r = fetch(&[
        "--http2-prior-knowledge",
        "-r",
        "0-99",
        &web.url("/big.bin"),
    ]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body.len(), 100);
    // HTTP/1.1 still works on the same port.
    let out = curl(&[
        "-s",
        "--http1.1",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        &web.url("/"),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.1");
}

#[test]
fn compression_when_the_client_asks_but_never_on_ranges() {
    let web = Running::start(None);
    let plain = fetch(&[&web.url("/css/site.css")]);
    assert_eq!(
        plain.header("content-encoding"),
        None,
        "no compression unless asked"
    );
    for encoding in ["gzip", "br"] {
        let r = fetch(&[
            "-H",
            &format!("Accept-Encoding: {encoding}"),
            &web.url("/css/site.css"),
        ]);
        assert_eq!(r.header("content-encoding"), Some(encoding));
        assert!(
            r.body.len() < plain.body.len() / 4,
            "{encoding} shrinks repetitive CSS"
        );
        let decoded = fetch(&[
            "--compressed",
            "-H",
            &format!("Accept-Encoding: {encoding}"),
            &web.url("/css/site.css"),
        ]);
        assert_eq!(decoded.body, plain.body, "{encoding} decodes to the file");
    }
    let range = fetch(&[
        "-H",
        "Accept-Encoding: gzip, br",
        "-r",
        "0-99",
        &web.url("/css/site.css"),
    ]);
    assert_eq!(range.status, 206);
    assert_eq!(range.header("content-encoding"), None);
    assert_eq!(range.body, plain.body[..100]);
}

#[test]
fn admin_endpoint_reports_health_readiness_and_metrics() {
    let web = Running::start(None);
    assert_eq!(fetch(&[&web.agent.admin_url("/healthz")]).status, 200);
    assert_eq!(fetch(&[&web.agent.admin_url("/readyz")]).status, 200);
    fetch(&["-o", "/dev/null", &web.url("/")]);
    let metrics = fetch(&[&web.agent.admin_url("/metrics")]).text();
    assert!(
        metrics.contains("hostrole_agent_role_ready{role=\"web\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "hostrole_agent_http_requests_total{role=\"web\",method=\"GET\",code=\"200\"}"
        ),
        "{metrics}"
    );
}

/// A download slow enough to keep its request in flight for the test's length: 64 MiB (more
/// than the socket buffers hold, so the server's writes wait on the client) at 32 KiB/s.
fn slow_download(web: &Running) -> std::process::Child {
    let huge = web.site.path().join("huge.bin");
    if !huge.exists() {
        std::fs::File::create(&huge)
            .and_then(|f| f.set_len(64 << 20))
            .expect("sparse file");
    }
    Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "60",
            "--limit-rate",
            "32K",
            "-o",
            "/dev/null",
        ])
        .arg(web.url("/huge.bin"))
        .stdin(Stdio::null())
        .spawn()
        .expect("curl")
}

#[test]
fn connections_beyond_the_limit_wait_while_all_are_busy() {
    let web = Running::start(Some(2));
    let mut first = slow_download(&web);
    let mut second = slow_download(&web);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        first.try_wait().expect("wait").is_none() && second.try_wait().expect("wait").is_none(),
        "the slow downloads run"
    );
    let blocked = curl(&[
        "-s",
        "--max-time",
        "1",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &web.url("/"),
    ]);
    assert!(
        !blocked.status.success(),
        "a third connection is not served while two requests are in flight: {blocked:?}"
    );
    let _ = first.kill();
    let _ = first.wait();
    let served = curl(&[
        "-s",
        "--max-time",
        "5",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &web.url("/"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&served.stdout),
        "200",
        "served once a slot is free"
    );
    let _ = second.kill();
    let _ = second.wait();
}

#[test]
fn idle_connections_make_room_for_new_clients() {
    let web = Running::start(Some(2));
    let first = idle_connection(web.port);
    let second = idle_connection(web.port);
    std::thread::sleep(Duration::from_millis(200));
    let served = fetch(&["--max-time", "2", &web.url("/")]);
    assert_eq!(served.status, 200, "the longest-idle connection made room");
    drop((first, second));
}

/// A slow HTTP/1.1 download of `path` from loopback `port`: the client reads 16 KiB every 50 ms
/// (about 320 KiB/s) through an 8 KiB receive buffer, so the server cannot have handed the
/// whole body to the kernel long before the client has read it (curl's `--limit-rate` is no
/// such client: it reads ahead into its buffers). Returns the whole response; `read` counts
/// the bytes so far.
fn slow_raw_download(
    port: u16,
    path: &str,
    read: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::thread::JoinHandle<std::io::Result<Vec<u8>>> {
    use std::io::Read;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    std::thread::spawn(move || {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_recv_buffer_size(8 * 1024)?;
        socket.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())?;
        let mut stream: std::net::TcpStream = socket.into();
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(request.as_bytes())?;
        let mut response = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(response);
            }
            response.extend_from_slice(&chunk[..n]);
            read.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

#[test]
fn sigterm_finishes_in_flight_downloads_then_exits() {
    let mut web = Running::start(None);
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let download = slow_raw_download(web.port, "/big.bin", read.clone());
    wait_until(
        "the download to be under way",
        Duration::from_secs(10),
        || read.load(std::sync::atomic::Ordering::SeqCst) > 0,
    );
    web.agent.terminate();
    wait_until(
        "the listener to close after SIGTERM",
        Duration::from_secs(5),
        || !listening(web.port),
    );
    assert!(
        !download.is_finished(),
        "the download was still in flight when the listener closed ({} bytes read)",
        read.load(std::sync::atomic::Ordering::SeqCst)
    );
    let refused = curl(&["-s", "--max-time", "2", "-o", "/dev/null", &web.url("/")]);
    assert!(
        !refused.status.success(),
        "no new connections after SIGTERM"
    );

    let response = download
        .join()
        .expect("the download thread")
        .expect("the in-flight download completed");
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response[..head_end])
    );
    assert_eq!(
        response.len() - head_end - 4,
        BIG_SIZE,
        "the whole body arrived"
    );
    let exit = web.agent.wait_exit(Duration::from_secs(15));
    assert!(
        exit.success(),
        "the agent exits 0 after a graceful stop: {exit}"
    );
}

#[test]
fn standalone_up_serves_the_shipped_example() {
    let example = support::repo_root().join("examples/web-host.yaml");
    let text = std::fs::read_to_string(&example).expect("example");
    // Serve the example as shipped, on a free port so tests never collide.
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("web-host.yaml");
    let mut f = std::fs::File::create(&manifest).expect("create");
    f.write_all(
        text.replace("port: 8080", &format!("port: {port}"))
            .as_bytes(),
    )
    .expect("write");
    let data = tempfile::tempdir().expect("tempdir");
    let agent = Agent::up(&manifest, data.path(), &[]);

    let stdout = agent.stdout();
    assert!(
        stdout.contains(&format!("web    http://127.0.0.1:{port}/")),
        "prints the URL: {stdout}"
    );
    let home = fetch(&[&format!("http://127.0.0.1:{port}/")]);
    assert_eq!(home.status, 200);
    assert!(home.text().contains("Hello from a hostrole web host"));
    let css = fetch(&[&format!("http://127.0.0.1:{port}/css/site.css")]);
    assert_eq!(css.header("content-type"), Some("text/css"));
    assert!(
        data.path().join("site/index.html").is_file(),
        "inline files are written to the data dir"
    );
}

#[test]
fn if_range_with_an_old_validator_gets_the_whole_new_file() {
    let web = Running::start(None);
    let url = web.url("/css/site.css");
    let first = fetch(&[&url]);
    let etag = first.header("etag").expect("etag").to_string();
    let modified = first.header("last-modified").expect("lm").to_string();

    // Current validators: the range is served.
    for validator in [&etag, &modified] {
        let r = fetch(&["-r", "10-19", "-H", &format!("If-Range: {validator}"), &url]);
        assert_eq!(r.status, 206, "If-Range: {validator}");
        assert_eq!(r.body, first.body[10..20]);
    }
    // A weak tag never matches (strong comparison).
    let weak = fetch(&["-r", "10-19", "-H", &format!("If-Range: W/{etag}"), &url]);
    assert_eq!(weak.status, 200);

    // The file changes; a client resuming with the old ETag must get the new file whole, not
    // new bytes to splice onto its old ones.
    std::fs::write(
        web.site.path().join("css/site.css"),
        "p { margin: 0; }\n".repeat(300),
    )
    .expect("write");
    let new_body = eventually_serves(&url, &"p { margin: 0; }\n".repeat(300)).body;
    for validator in [&etag, "Wed, 21 Oct 2015 07:28:00 GMT"] {
        let r = fetch(&["-r", "10-19", "-H", &format!("If-Range: {validator}"), &url]);
        assert_eq!(r.status, 200, "stale If-Range: {validator}");
        assert_eq!(r.header("content-range"), None);
        assert_eq!(r.body, new_body, "the whole current file");
    }
    // The same on a large file served from disk, and on HTTP/2.
    let big = web.url("/big.bin");
    let big_etag = fetch(&["-I", &big])
        .header("etag")
        .expect("etag")
        .to_string();
    let r = fetch(&[
        "--http2-prior-knowledge",
        "-r",
        "0-9",
        "-H",
        &format!("If-Range: {big_etag}"),
        &big,
    ]);
    assert_eq!((r.status, r.body.len()), (206, 10));
    let r = fetch(&[
        "-r",
        "0-9",
        "-H",
        "If-Range: \"stale\"",
        "-o",
        "/dev/null",
        &big,
    ]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(BIG_SIZE.to_string().as_str())
    );
}

#[test]
fn several_ranges_get_one_range_that_covers_them() {
    let web = Running::start(None);
    let full = fetch(&[&web.url("/big.bin")]).body;
    let r = fetch(&["-r", "0-9,100-109", &web.url("/big.bin")]);
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 0-109/{BIG_SIZE}").as_str())
    );
    assert_eq!(r.body, full[..110]);
    let r = fetch(&["-r", "500-599,-100", &web.url("/big.bin")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, full[500..]);
}

#[test]
fn a_path_segment_too_long_for_the_file_system_is_not_found() {
    let web = Running::start(None);
    for path in [
        format!("/{}", "a".repeat(256)),
        format!("/{}/x", "b".repeat(300)),
        format!("/css/{}.css", "c".repeat(4000)),
    ] {
        let r = fetch(&[&web.url(&path)]);
        assert_eq!(r.status, 404, "{} bytes", path.len());
    }
    assert!(
        !web.agent.stderr().contains("ERROR"),
        "no error logged: {}",
        web.agent.stderr()
    );
}

#[test]
fn errors_are_small_html_pages_and_the_site_can_bring_its_own_404() {
    let web = Running::start(None);
    for (args, status) in [
        (vec![web.url("/nope.html")], 404),
        (
            vec![
                "-X".into(),
                "POST".into(),
                "-d".into(),
                "x".into(),
                web.url("/"),
            ],
            405,
        ),
        (vec!["--path-as-is".into(), web.url("/a%00b")], 400),
        (vec![web.url("/.secret")], 404),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = fetch(&args);
        assert_eq!(r.status, status, "{args:?}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
        assert!(
            r.text().contains(&format!("<title>{status} ")),
            "{}",
            r.text()
        );
        assert!(!r.text().contains("do not serve"));
    }
    std::fs::write(
        web.site.path().join("404.html"),
        "<h1>Lost? Our own page.</h1>\n",
    )
    .expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = fetch(&[&web.url("/still/missing")]);
        assert_eq!(r.status, 404);
        if r.text() == "<h1>Lost? Our own page.</h1>\n" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the site's 404.html is used: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn head_describes_what_get_sends_under_compression() {
    let web = Running::start(None);
    for encoding in ["gzip", "br", "identity"] {
        let accept = format!("Accept-Encoding: {encoding}");
        let get = fetch(&["-H", &accept, &web.url("/css/site.css")]);
        let head = fetch(&[
            "-I",
            "-o",
            "/dev/null",
            "-H",
            &accept,
            &web.url("/css/site.css"),
        ]);
        assert_eq!(head.status, get.status);
        for name in [
            "content-encoding",
            "content-length",
            "content-type",
            "etag",
            "vary",
        ] {
            assert_eq!(head.header(name), get.header(name), "{encoding}: {name}");
        }
        assert!(head.body.is_empty());
    }
}

#[test]
fn incompressible_content_is_sent_as_it_is() {
    let web = Running::start(None);
    std::fs::write(web.site.path().join("photo.png"), vec![0x42u8; 64 << 10]).expect("write");
    for path in ["/big.bin", "/photo.png"] {
        let r = fetch(&[
            "-H",
            "Accept-Encoding: br, gzip",
            "-o",
            "/dev/null",
            &web.url(path),
        ]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), None, "{path}");
    }
    // Text is still compressed.
    let r = fetch(&[
        "-H",
        "Accept-Encoding: br",
        "-o",
        "/dev/null",
        &web.url("/css/site.css"),
    ]);
    assert_eq!(r.header("content-encoding"), Some("br"));
}
