//! The peer's UI in a real browser: headless Chromium driven by chromedriver through Python's
//! selenium (Debian packages chromium, chromium-driver, python3-selenium; see
//! scripts/install-deps.sh). Search, Download, the progress the page shows while the source is
//! paused part-way, then "complete", the file listed locally; then an upload through the form,
//! and an upload rate set in the limits form; the printer another peer offers, in its row.

use crate::support;

use std::process::Command;
use std::time::Duration;

use support::p2p::*;
use support::{Proc, wait_until};

#[test]
fn a_user_downloads_and_uploads_through_the_page_in_chromium() {
    hostrole_testkit::browser::require();
    let net = Net::new();
    let data = random_bytes(12 << 20, 5);
    let hash = blake3_hex(&data);
    let a = net.peer(
        "a",
        PeerOptions {
            seeds: vec![format!("127.0.0.1:{}", free_port())],
            // Slow enough that the test pauses A before the download ends (12 chunks, 4 at once).
            chunk_delay_ms: Some(500),
            // A offers its host's printer to the network: B's page lists it.
            print: true,
            ..PeerOptions::default()
        },
        &[("holiday-video.bin", &data)],
    );
    let b = net.peer(
        "b",
        PeerOptions {
            seeds: vec![a.address()],
            ..PeerOptions::default()
        },
        &[],
    );
    wait_for("B to know A's files", Duration::from_secs(10), || {
        (!b.search("holiday").is_empty()).then_some(())
    });
    let upload = net.dir.path().join("notes from the browser.txt");
    std::fs::write(&upload, "uploaded through the form\n").expect("write");

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/peer_ui.py");
    let mut browser = Proc::spawn(
        "browser",
        Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(b.ui("/"))
            .arg("holiday")
            .arg(&hash)
            .arg(&upload),
        net.dir.path(),
    );
    let session = |browser: &Proc| {
        format!(
            "stdout:\n{}\nstderr:\n{}\nagent log:\n{}",
            browser.stdout(),
            browser.stderr(),
            b.log()
        )
    };

    // Once the page has started the download and a chunk has arrived, the only source pauses:
    // the download stands part-way until the page has shown that (the script says "partial:").
    let done_at_pause = wait_for(
        "the download started from the page to fetch a chunk",
        Duration::from_secs(60),
        || {
            browser.assert_running();
            let done = b.download(&hash)?["chunksDone"].as_u64()?;
            (done > 0).then_some(done)
        },
    );
    a.proc.signal("-STOP");
    let chunks = (data.len() >> 20) as u64; // 1 MiB chunks
    assert!(
        done_at_pause < chunks,
        "the download finished before its source could be paused ({done_at_pause} chunks)"
    );
    wait_until(
        "the page to show the paused download part done",
        Duration::from_secs(60),
        || {
            if browser.exited().is_some() {
                panic!("browser session ended early\n{}", session(&browser));
            }
            browser.stdout().contains("partial:")
        },
    );
    a.proc.signal("-CONT");
    let status = browser.wait_exit(Duration::from_secs(120));
    let stdout = browser.stdout();
    assert!(
        status.success(),
        "browser session failed\n{}",
        session(&browser)
    );
    println!("{stdout}");
    assert!(
        stdout.contains("download:") && stdout.contains("complete"),
        "{stdout}"
    );
    assert!(
        stdout.contains("limits: Applied: upload 512.0 KiB/s"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "printer: a printer ipp://127.0.0.1:{}/ipp/print",
            a.print_port
        )),
        "{stdout}"
    );
    assert_eq!(
        file_hash(&b.share().join("holiday-video.bin")),
        Some(hash.clone())
    );
    assert_eq!(
        std::fs::read_to_string(b.share().join("notes from the browser.txt")).expect("uploaded"),
        "uploaded through the form\n"
    );
    drop(a);
}

// Item 18: a page on another site whose DNS name is rebound to 127.0.0.1 reached the UI (the
// browser sends its own name as Host; X-Requested-With is same-origin for it), and
// `up --bind 0.0.0.0` opened the UI, which has no login, to the network.
#[test]
fn a_rebound_dns_name_gets_nothing_from_the_ui_and_bind_all_keeps_it_on_loopback() {
    let net = Net::new();
    let a = net.peer(
        "a",
        PeerOptions {
            seeds: vec![format!("127.0.0.1:{}", free_port())],
            ..PeerOptions::default()
        },
        &[("private.txt", b"mine")],
    );
    let port = a.ui_port;
    let url = a.ui("/api/files");
    let get = |extra: &[&str]| {
        let mut args = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}"];
        args.extend_from_slice(extra);
        args.push(&url);
        String::from_utf8_lossy(&support::curl(&args).stdout).into_owned()
    };
    assert_eq!(get(&[]), "200");
    assert_eq!(get(&["-H", &format!("Host: localhost:{port}")]), "200");
    let rebound = format!("Host: attacker.example:{port}");
    assert_eq!(
        get(&["-H", &rebound]),
        "403",
        "a rebound name reads the file list"
    );
    assert_eq!(
        get(&["-H", "Origin: http://attacker.example"]),
        "403",
        "a cross-origin page"
    );
    // The rebound page can send X-Requested-With (for the browser it is same-origin).
    let (code, _) = post_json_with(
        &a.ui("/api/upload?name=planted.txt"),
        "x",
        &[rebound.as_str()],
    );
    assert_eq!(code, 403);
    assert!(!a.share().join("planted.txt").exists());

    // `up --bind 0.0.0.0`: the services listen everywhere, the UI on loopback only.
    let text =
        std::fs::read_to_string(support::repo_root().join("examples/p2p-decentralized.yaml"))
            .expect("example");
    let (text, ports) = support::with_free_ports(&text, &[7011, 8091]);
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("p2p.yaml");
    std::fs::write(&manifest, text).expect("manifest");
    let agent = support::Agent::up(&manifest, &dir.path().join("data"), &["--bind", "0.0.0.0"]);
    let out = agent.stdout();
    let ui_line = out
        .lines()
        .find(|l| l.contains(&format!(":{}", ports[&8091])))
        .unwrap_or_else(|| panic!("no UI address in {out}"));
    assert!(ui_line.contains("127.0.0.1"), "{out}");
    let peer_line = out
        .lines()
        .find(|l| l.contains(&format!(":{}", ports[&7011])))
        .unwrap_or_else(|| panic!("no peer address in {out}"));
    assert!(peer_line.contains("0.0.0.0"), "{out}");
    // Reached through any other address of this machine, the UI port is closed.
    if let Some(ip) = non_loopback_ip() {
        let refused = std::net::TcpStream::connect((ip, ports[&8091])).is_err();
        assert!(refused, "the UI answers on {ip}");
    }
}

/// An address of this machine other than loopback, if it has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the outgoing address.
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}
