//! The peer's UI in a real browser: headless Chromium driven by chromedriver through Python's
//! selenium (Debian packages chromium, chromium-driver, python3-selenium; see
//! scripts/install-deps.sh). Search, Download, live progress to "complete", the file listed
//! locally; then an upload through the form.

mod p2p_support;

use std::process::Command;
use std::time::Duration;

use p2p_support::*;

#[test]
fn a_user_downloads_and_uploads_through_the_page_in_chromium() {
    for tool in [
        "/usr/bin/chromium",
        "/usr/bin/chromedriver",
        "/usr/bin/python3",
    ] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: run scripts/install-deps.sh (Debian: chromium chromium-driver python3-selenium)"
        );
    }
    let net = Net::new();
    let data = random_bytes(12 << 20, 5);
    let hash = blake3_hex(&data);
    let a = net.peer(
        "a",
        PeerOptions {
            seeds: vec![format!("127.0.0.1:{}", free_port())],
            // Slow enough that the page shows the progress moving.
            chunk_delay_ms: Some(500),
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
    wait_for(Duration::from_secs(10), "B to know A's files", || {
        (!b.search("holiday").is_empty()).then_some(())
    });
    let upload = net.dir.path().join("notes from the browser.txt");
    std::fs::write(&upload, "uploaded through the form\n").expect("write");

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/peer_ui.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(b.ui("/"))
        .arg("holiday")
        .arg(&hash)
        .arg(&upload)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser session failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nagent log:\n{}",
        b.log()
    );
    println!("{stdout}");
    assert!(
        stdout.contains("download:") && stdout.contains("complete"),
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
    let _ = a;
}
