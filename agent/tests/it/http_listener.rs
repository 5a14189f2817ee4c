//! Attacks on the HTTP listener every HTTP role and the admin port share (agent/src/net.rs),
//! each with real sockets against the real agent binary: silent, idle and stuck connections,
//! one client taking every slot, a full admin port, invalid HTTP/2 prefaces, malformed bodies,
//! header floods, and metric labels from client input.

use crate::support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::{Agent, curl, fetch, free_port, idle_connection};

/// An agent with a web role (a site with a small page and a 64 MiB file served from disk) and
/// a file role open to anonymous writers, run from an agent configuration so that the `http:`
/// limits can be set.
struct Host {
    agent: Agent,
    web: u16,
    file: u16,
    _dir: tempfile::TempDir,
}

/// Size of `/huge.bin`: far more than the socket buffers hold, so a client that does not read
/// keeps its request in flight.
const HUGE: u64 = 64 << 20;

impl Host {
    fn start(http: &str, web_max_connections: usize) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = dir.path().join("site");
        std::fs::create_dir_all(&site).expect("mkdir");
        std::fs::write(site.join("index.html"), "<h1>home</h1>\n").expect("write");
        let huge = std::fs::File::create(site.join("huge.bin")).expect("create");
        huge.set_len(HUGE).expect("sparse file");
        let share = dir.path().join("share");
        let (web, file, admin) = (free_port(), free_port(), free_port());
        let config = format!(
            "hostRole: listener-test\nbind: 127.0.0.1\nadminPort: {admin}\nshutdownGraceSeconds: 1\n\
             web:\n  port: {web}\n  root: {}\n  maxConnections: {web_max_connections}\n\
             file:\n  port: {file}\n  root: {}\n  anonymous: ReadWrite\n  maxUploadBytes: 1048576\n  maxConnections: 64\n{http}",
            site.display(),
            share.display()
        );
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, config).expect("write config");
        let agent = Agent::run(&path, admin);
        Host {
            agent,
            web,
            file,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.web)
    }
}

/// Reads until the server closes the connection (EOF or reset) and returns what came and when
/// it closed; panics if it is still open after `limit`.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, started.elapsed()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, started.elapsed()),
        }
        assert!(
            started.elapsed() < limit,
            "the server kept the connection open for {limit:?} ({} bytes received)",
            got.len()
        );
    }
}

/// A connection from `source` (any 127/8 address: each is another client to the server) with a
/// small receive buffer, so that an unread response stalls the server's writes.
fn connect_from(source: Ipv4Addr, port: u16) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .expect("bind a loopback source address");
    socket
        .connect(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())
        .expect("connect");
    socket.into()
}

/// Sends a GET for `path` on `stream` and does not read the answer.
fn request_and_stall(stream: &mut TcpStream, path: &str) {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: attack\r\n\r\n"
    )
    .expect("send");
}

#[test]
fn a_silent_connection_is_closed_on_every_http_port() {
    let host = Host::start("http:\n  headerTimeoutSeconds: 1\n", 64);
    for (port, what) in [
        (host.web, "web"),
        (host.file, "file"),
        (host.agent.admin_port, "admin"),
    ] {
        let mut silent = idle_connection(port);
        let (got, after) = read_until_closed(&mut silent, Duration::from_secs(5));
        assert!(got.is_empty(), "{what}: nothing is sent to a silent client");
        assert!(
            after >= Duration::from_millis(800),
            "{what}: closed too early: {after:?}"
        );
        println!("{what}: silent connection closed after {after:?}");
    }
}

#[test]
fn a_partial_request_line_or_preface_is_closed_at_the_header_timeout() {
    let host = Host::start("http:\n  headerTimeoutSeconds: 1\n", 64);
    // Stops inside HTTP version detection (a prefix of the HTTP/2 preface)…
    let mut stream = idle_connection(host.web);
    stream.write_all(b"PRI * HTTP/2").expect("send");
    let (got, _) = read_until_closed(&mut stream, Duration::from_secs(5));
    assert!(got.is_empty());
    // …or inside an HTTP/1 request line (slowloris).
    let mut stream = idle_connection(host.web);
    stream.write_all(b"GET /index.html HT").expect("send");
    let (_, after) = read_until_closed(&mut stream, Duration::from_secs(5));
    println!("partial request line closed after {after:?}");
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let host = Host::start(
        "http:\n  headerTimeoutSeconds: 1\n  idleTimeoutSeconds: 2\n",
        64,
    );
    let mut stream = idle_connection(host.web);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let (got, after) = read_until_closed(&mut stream, Duration::from_secs(6));
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("<h1>home</h1>"), "{text}");
    println!("HTTP/1.1 keep-alive closed after {after:?}");
}

/// A minimal HTTP/2 client: the preface, an empty SETTINGS frame and, if `path_index` is set, a
/// GET of a static-table path (4: `/`) or of `/huge.bin` (literal), on stream 1.
fn h2_request(stream: &mut TcpStream, path: Option<&str>) {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS, empty
    if let Some(path) = path {
        // :method GET (2), :scheme http (6), :path literal without indexing (name index 4).
        let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
        block.extend_from_slice(path.as_bytes());
        let len = block.len();
        out.extend_from_slice(&[0, 0, len as u8, 1, 0x05, 0, 0, 0, 1]); // HEADERS, END_STREAM|END_HEADERS
        out.extend_from_slice(&block);
    }
    stream.write_all(&out).expect("send");
}

/// Frame types seen in `bytes` (server frames; the first is the server's SETTINGS).
fn frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let len = (usize::from(bytes[at]) << 16)
            | (usize::from(bytes[at + 1]) << 8)
            | usize::from(bytes[at + 2]);
        types.push(bytes[at + 3]);
        at += 9 + len;
    }
    types
}

#[test]
fn an_idle_http2_connection_is_closed_with_goaway() {
    // The PING timeout is the header timeout: longer here, so that the idle timeout acts first.
    let host = Host::start(
        "http:\n  headerTimeoutSeconds: 5\n  idleTimeoutSeconds: 2\n",
        64,
    );
    let mut stream = idle_connection(host.web);
    h2_request(&mut stream, Some("/"));
    let (got, after) = read_until_closed(&mut stream, Duration::from_secs(8));
    let types = frame_types(&got);
    assert!(types.contains(&0x1), "a HEADERS response: {types:?}");
    assert!(types.contains(&0x7), "a GOAWAY: {types:?}");
    assert!(
        after >= Duration::from_millis(1800),
        "idle for the idle timeout: {after:?}"
    );
    println!("HTTP/2 idle connection closed after {after:?}: frames {types:?}");
}

#[test]
fn an_http2_client_that_stops_answering_pings_is_dropped() {
    // A response held back by flow control (the client never opens its window) keeps the
    // request in flight; the client reads everything but never answers the server's PINGs.
    let host = Host::start(
        "http:\n  headerTimeoutSeconds: 1\n  idleTimeoutSeconds: 2\n",
        64,
    );
    let mut stream = idle_connection(host.web);
    h2_request(&mut stream, Some("/huge.bin"));
    let (got, after) = read_until_closed(&mut stream, Duration::from_secs(10));
    let types = frame_types(&got);
    assert!(types.contains(&0x6), "the server PINGed: {types:?}");
    println!("unanswered PINGs: dropped after {after:?}: frames {types:?}");
}

#[test]
fn a_client_that_stops_reading_a_response_is_dropped() {
    let host = Host::start(
        "http:\n  headerTimeoutSeconds: 1\n  idleTimeoutSeconds: 2\n",
        64,
    );
    let mut stream = connect_from(Ipv4Addr::new(127, 0, 0, 1), host.web);
    request_and_stall(&mut stream, "/huge.bin");
    std::thread::sleep(Duration::from_secs(5));
    // Read what the kernel still holds: the response stops short and the connection is closed.
    let (got, _) = read_until_closed(&mut stream, Duration::from_secs(10));
    assert!(
        (got.len() as u64) < HUGE,
        "the whole file was sent to a client that did not read"
    );
    println!("stalled reader dropped after {} bytes", got.len());
}

#[test]
fn silent_connections_do_not_starve_the_admin_probes() {
    // Default limits: the admin port serves 64 connections at once.
    let host = Host::start("", 64);
    let silent: Vec<TcpStream> = (0..200)
        .map(|_| idle_connection(host.agent.admin_port))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for probe in ["/healthz", "/readyz"] {
        let out = curl(&[
            "-s",
            "--max-time",
            "2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &host.agent.admin_url(probe),
        ]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "{probe} answers with 200 silent connections open"
        );
    }
    // The same on a role's port: a browser still gets the page.
    let silent_web: Vec<TcpStream> = (0..100).map(|_| idle_connection(host.web)).collect();
    let page = fetch(&["--max-time", "2", &host.url("/")]);
    assert_eq!(page.status, 200);
    drop((silent, silent_web));
}

#[test]
fn one_client_cannot_take_every_connection() {
    // 8 connections, at most 3 per client address; the attacker (127.0.0.2) keeps requests in
    // flight by not reading the responses.
    let host = Host::start("http:\n  maxConnectionsPerIp: 3\n", 8);
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = connect_from(attacker, host.web);
            request_and_stall(&mut s, "/huge.bin");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut fourth = connect_from(attacker, host.web);
    // The listener may close it before the request is even written (a broken pipe here): that
    // is the refusal too.
    let _ = write!(
        fourth,
        "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: attack\r\n\r\n"
    );
    let (got, _) = read_until_closed(&mut fourth, Duration::from_secs(5));
    assert!(
        got.is_empty(),
        "the fourth busy connection of one client is refused"
    );
    // Everyone else is served.
    let page = fetch(&["--max-time", "2", &host.url("/")]);
    assert_eq!(page.status, 200);
    held.clear();
}

#[test]
fn an_invalid_http2_preface_closes_the_connection_without_an_answer() {
    let host = Host::start("", 64);
    for port in [host.web, host.file, host.agent.admin_port] {
        for attempt in [
            &b"INVALID CONNECTION PREFACE\r\n\r\n"[..],
            &b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"[..],
        ] {
            let mut stream = idle_connection(port);
            stream.write_all(attempt).expect("send");
            let (got, _) = read_until_closed(&mut stream, Duration::from_secs(3));
            assert!(
                got.is_empty(),
                "port {port}: answered {:?}",
                String::from_utf8_lossy(&got)
            );
        }
    }
    // HTTP/1.1 and HTTP/2 with prior knowledge still work.
    for flag in ["--http1.1", "--http2-prior-knowledge"] {
        assert_eq!(fetch(&[flag, &host.url("/")]).status, 200, "{flag}");
    }
}

#[test]
fn a_malformed_chunked_body_is_a_client_error() {
    let host = Host::start("", 64);
    for chunk in ["zz", "100000000000000000000"] {
        let mut stream = idle_connection(host.file);
        write!(
            stream,
            "PUT /upload.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}\r\nhello\r\n0\r\n\r\n"
        )
        .expect("send");
        let (got, _) = read_until_closed(&mut stream, Duration::from_secs(5));
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 400"),
            "chunk size {chunk}: {text}"
        );
    }
    assert!(
        !host._dir.path().join("share/upload.txt").exists(),
        "nothing stored from a malformed body"
    );
}

/// `curl` with `n` extra header fields of `size` bytes each; returns the status.
fn status_with_headers(url: &str, n: usize, size: usize, http2: bool) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("headers");
    let lines: String = (0..n)
        .map(|i| format!("X-Field-{i}: {}\n", "v".repeat(size)))
        .collect();
    std::fs::write(&file, lines).expect("write");
    let header_arg = format!("@{}", file.display());
    let mut args = vec![
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &header_arg,
    ];
    if http2 {
        args.push("--http2-prior-knowledge");
    }
    args.push(url);
    String::from_utf8_lossy(&curl(&args).stdout).into_owned()
}

#[test]
fn header_limits_are_coherent_bytes_and_count() {
    let host = Host::start("", 64);
    let url = host.url("/");
    // Up to 100 fields within 32 KiB pass (curl adds 3); one field of 40 KB does not; nor
    // 101 fields or more.
    assert_eq!(
        status_with_headers(&url, 97, 20, false),
        "200",
        "100 small fields"
    );
    assert_eq!(
        status_with_headers(&url, 98, 20, false),
        "431",
        "101 small fields"
    );
    assert_eq!(
        status_with_headers(&url, 1, 40_000, false),
        "431",
        "one 40 KB field"
    );
    assert_eq!(
        status_with_headers(&url, 300, 4, false),
        "431",
        "300 fields"
    );
    assert_eq!(
        status_with_headers(&url, 200, 20, true),
        "200",
        "HTTP/2: 200 small fields"
    );
    // HTTP/2 refuses a header list beyond its advertised size (curl reports no status).
    assert_ne!(
        status_with_headers(&url, 1, 40_000, true),
        "200",
        "HTTP/2: one 40 KB field"
    );
}

#[test]
fn bogus_methods_do_not_add_metric_series() {
    let host = Host::start("", 64);
    let series = |host: &Host| {
        fetch(&[&host.agent.admin_url("/metrics")])
            .text()
            .lines()
            .filter(|l| l.starts_with("hostrole_agent_http_requests_total"))
            .count()
    };
    fetch(&["-X", "FOO0", &host.url("/")]);
    let before = series(&host);
    for i in 1..100 {
        let method = format!("ATTACK{i}");
        for port in [host.web, host.file, host.agent.admin_port] {
            let r = fetch(&["-X", &method, &format!("http://127.0.0.1:{port}/")]);
            assert!(r.status >= 400, "{method} on {port}: {}", r.status);
        }
    }
    let after = series(&host);
    let metrics = fetch(&[&host.agent.admin_url("/metrics")]).text();
    assert!(
        after <= before + 3,
        "{before} series before, {after} after:\n{metrics}"
    );
    assert!(
        !metrics.contains("ATTACK"),
        "client input in a label:\n{metrics}"
    );
    assert!(metrics.contains("method=\"OTHER\""), "{metrics}");
}

#[test]
fn the_file_role_honours_if_range_and_several_ranges_too() {
    // The file role serves GET through dav-server, which evaluates If-Range itself.
    let host = Host::start("", 64);
    let url = format!("http://127.0.0.1:{}/doc.txt", host.file);
    let put = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-T",
        "-",
        &url,
    ]);
    assert!(put.status.success());
    std::fs::write(
        host._dir.path().join("share/doc.txt"),
        "0123456789".repeat(10),
    )
    .expect("write");
    let first = fetch(&[&url]);
    let etag = first.header("etag").expect("etag").to_string();
    let r = fetch(&["-r", "10-19", "-H", &format!("If-Range: {etag}"), &url]);
    assert_eq!((r.status, r.text().as_str()), (206, "0123456789"));
    let r = fetch(&["-r", "10-19", "-H", "If-Range: \"stale\"", &url]);
    assert_eq!(r.status, 200, "a stale If-Range gets the whole file");
    assert_eq!(r.body.len(), 100);
    let r = fetch(&["-r", "0-1,10-11", &url]);
    assert_eq!(r.status, 206);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("multipart/byteranges")),
        "{:?}",
        r.headers
    );
}

/// Reads one HTTP/1.1 response (head and a `Content-Length` body); `None` at EOF.
fn read_response(stream: &mut TcpStream) -> Option<(String, usize)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(_) => head.push(byte[0]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((head, length))
}

// A client that keeps one connection busy forever would never meet a NetworkPolicy or a
// certificate changed after it connected: at its maximum age the connection ends (after the
// answer in flight, if any).
#[test]
fn a_busy_connection_is_closed_at_its_maximum_age() {
    let host = Host::start("http:\n  maxConnectionAgeSeconds: 2\n", 64);
    let mut stream = idle_connection(host.web);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    let mut answers = 0;
    let last = loop {
        assert!(
            started.elapsed() < Duration::from_secs(12),
            "still open after {answers} requests"
        );
        if stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .is_err()
        {
            break None;
        }
        match read_response(&mut stream) {
            None => break None,
            Some((head, _)) => {
                assert!(head.starts_with("http/1.1 200"), "{head}");
                answers += 1;
                if head.contains("connection: close") {
                    break Some(head);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let age = started.elapsed();
    // Either a request was in flight at that age (its answer says `Connection: close`) or the
    // connection was between requests and is closed there (a client sends its next request on
    // a new connection, as after any keep-alive close).
    println!(
        "closed after {answers} answers; last with Connection: close: {}",
        last.is_some()
    );
    assert!(
        age >= Duration::from_secs(2) && answers > 5,
        "closed at {age:?} after {answers} answers"
    );
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the close");
}

// …but a request in flight at that age is answered to its end, however long it takes.
#[test]
fn a_download_in_flight_at_the_maximum_age_is_finished() {
    let host = Host::start("http:\n  maxConnectionAgeSeconds: 1\n", 64);
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(64 << 10).expect("small buffer");
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], host.web)).into())
        .expect("connect");
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let started = Instant::now();
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    // At most 64 KiB per 4 ms: 64 MiB take over 4 s, past the age and the grace after it.
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) => panic!("the download was cut after {total} bytes: {e}"),
        }
        std::thread::sleep(Duration::from_millis(4));
    }
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(3),
        "the download outlived the age: {took:?}"
    );
    assert!(total > HUGE, "the whole body and its head: {total} bytes");
}
