//! The web role's error pages in a real browser: headless Chromium driven by chromedriver through
//! Python's selenium (Debian packages chromium, chromium-driver, python3-selenium; see
//! scripts/install-deps.sh). A missing page shows the built-in 404 page, or the site's own
//! 404.html when it has one.

use crate::support;

use std::path::Path;
use std::process::Command;

use support::{Agent, free_port};

/// Serves `site` on a free port; returns the agent, its port and what must outlive it.
fn serve(site: &Path) -> (Agent, u16, tempfile::TempDir) {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("web.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata:\n  name: ui\nspec:\n  servers:\n    web:\n      port: {port}\n      site:\n        path: {}\n",
            site.display()
        ),
    )
    .expect("write manifest");
    std::fs::create_dir(dir.path().join("data")).expect("mkdir");
    let agent = Agent::up(&manifest, &dir.path().join("data"), &[]);
    (agent, port, dir)
}

#[test]
fn a_person_opening_a_missing_page_sees_an_error_page_in_chromium() {
    hostrole_testkit::browser::require();
    let plain = tempfile::tempdir().expect("tempdir");
    std::fs::write(plain.path().join("index.html"), "<h1>Home page</h1>\n").expect("write");
    let own = tempfile::tempdir().expect("tempdir");
    std::fs::write(own.path().join("index.html"), "<h1>Home</h1>\n").expect("write");
    std::fs::write(
        own.path().join("404.html"),
        "<!doctype html><title>Lost</title><h1>Nothing here, sorry</h1>\n",
    )
    .expect("write");
    let (a, plain_port, _a) = serve(plain.path());
    let (b, own_port, _b) = serve(own.path());

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/web_error_page.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{plain_port}/no/such/page.html"))
        .arg(format!("http://127.0.0.1:{own_port}/missing"))
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser session failed\nstdout:\n{stdout}\nstderr:\n{}\nagent logs:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        a.stderr(),
        b.stderr()
    );
    println!("{stdout}");
    assert!(stdout.contains("home link leads to: Home page"), "{stdout}");
}
