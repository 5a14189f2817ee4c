//! HTTP/2 conformance of the web role over h2c (prior knowledge): h2spec, every test case.
//! h2spec is built from the Go module proxy at the version pinned in
//! agent/tests/tools/h2spec/go.mod and cached under ~/.cache/hostrole
//! (agent/tests/tools/h2spec/build.sh; a warm run needs no Go).

use crate::support;

use std::path::PathBuf;
use std::process::Command;

use support::{Agent, free_port};

fn h2spec() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tools/h2spec/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run tests/tools/h2spec/build.sh");
    assert!(
        out.status.success(),
        "building h2spec failed (needs Go, see scripts/install-deps.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn h2spec_passes_every_case_against_the_web_role() {
    let bin = h2spec();
    let site = tempfile::tempdir().expect("tempdir");
    std::fs::write(site.path().join("index.html"), "<h1>h2spec</h1>\n").expect("write");
    // A body larger than the windows h2spec sets, so that its flow-control cases run
    // rather than being skipped.
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(site.path().join("body.bin"), body).expect("write");
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("h2spec.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata:\n  name: h2spec\nspec:\n  servers:\n    web:\n      port: {port}\n      site:\n        path: {}\n",
            site.path().display()
        ),
    )
    .expect("write manifest");
    let data = tempfile::tempdir().expect("tempdir");
    let agent = Agent::up(&manifest, data.path(), &[]);

    let out = Command::new(&bin)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-o",
            "5",
            "-P",
            "/body.bin",
        ])
        .output()
        .expect("run h2spec");
    let report = String::from_utf8_lossy(&out.stdout);
    let summary = report
        .lines()
        .rfind(|l| l.contains(" tests, "))
        .unwrap_or("no summary")
        .to_string();
    println!("h2spec: {summary}");
    assert!(
        out.status.success() && summary.ends_with(" 0 skipped, 0 failed"),
        "h2spec: {summary}\n{report}\nagent log:\n{}",
        agent.stderr()
    );
    // Every case ran: the count is h2spec's (145 in 2.2.1).
    let total: usize = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(total >= 145, "{summary}");
}
