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
