//! The browser tests' tools: Debian's Chromium, its driver and Python with selenium.

/// Fails the test, naming what to install, unless chromium, chromedriver and python3 are there.
pub fn require() {
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
}

/// A `$BROWSER` for tests of `--open`: a script in `dir` that writes the URL it is given to a
/// file. Returns the script and the file.
pub fn recording_opener(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let opened = dir.join("opened");
    let script = dir.join("browser.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$1\" > '{}'\n", opened.display()),
    )
    .expect("write the browser script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the browser script");
    (script, opened)
}
