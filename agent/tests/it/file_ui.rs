//! The file share in a real browser: headless Chromium driven by chromedriver through Python's
//! selenium (Debian packages chromium, chromium-driver, python3-selenium; see
//! scripts/install-deps.sh). A Basic login, the HTML listing of the share and of a collection, and
//! a download compared byte for byte.

use crate::support;

use std::process::Command;

use hostrole_agent_core::users::hash_password;
use support::{Agent, curl, free_port};

#[test]
fn a_user_logs_in_sees_the_listing_and_downloads_a_file_in_chromium() {
    hostrole_testkit::browser::require();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let alice = hash_password("change-me").expect("hash");
    let manifest = dir.path().join("share.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: share-users, labels: {{hostrole.dev/use: \"true\"}}}}\nstringData:\n  users: |\n    alice:{alice}\n---\n\
             apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: share}}\nspec:\n  servers:\n    file:\n      port: {port}\n      users: {{secret: share-users}}\n"
        ),
    )
    .expect("manifest");
    let agent = Agent::up(&manifest, &dir.path().join("data"), &[]);
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let name = "holiday photos & notes.bin";
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let local = dir.path().join("upload.bin");
    std::fs::write(&local, &content).expect("write");
    for args in [
        vec!["-X", "MKCOL", &url("/docs/")]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>(),
        vec![
            "-T".to_string(),
            local.display().to_string(),
            url("/docs/holiday%20photos%20%26%20notes.bin"),
        ],
    ] {
        let mut all = vec![
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            "alice:change-me",
        ];
        all.extend(args.iter().map(String::as_str));
        assert_eq!(curl(&all).stdout, b"201", "{args:?}");
    }
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).expect("downloads");

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/file_ui.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(url("/"))
        .args(["alice", "change-me", name])
        .arg(&downloads)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser session failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nagent log:\n{}",
        agent.stderr()
    );
    println!("{stdout}");
    assert!(
        stdout.contains("listing:") && stdout.contains("docs/"),
        "{stdout}"
    );
    assert!(
        stdout.contains("195.31 KiB"),
        "the size in the listing: {stdout}"
    );
    assert_eq!(
        std::fs::read(downloads.join(name)).expect("downloaded"),
        content,
        "the bytes downloaded are the file's"
    );
}
