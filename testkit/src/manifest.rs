//! Manifests a test writes: in a temporary directory of their own, or a shipped example moved
//! onto free ports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::free_port;

/// A manifest file in a temporary directory of its own, removed when dropped. The directory
/// also holds what goes with it (site files, a users file, the data directory).
pub struct TempManifest {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl TempManifest {
    /// Writes `text` to `DIR/NAME` in a fresh temporary directory.
    pub fn new(name: &str, text: &str) -> TempManifest {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        TempManifest { dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory the manifest is in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path as a string, for command lines.
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }
}

/// `text` with every `port: N` and `Port: N` (as in `smtpPort: 2525`) of the given ports moved
/// to a free port, so that shipped examples run beside each other and beside other tests.
/// Returns the new text and the mapping; a port that does not occur is an error of the test.
pub fn with_free_ports(text: &str, ports: &[u16]) -> (String, BTreeMap<u16, u16>) {
    let mut text = text.to_string();
    let mut moved = BTreeMap::new();
    for &from in ports {
        let to = free_port();
        let before = text.clone();
        for key in ["port", "Port"] {
            text = text.replace(&format!("{key}: {from}\n"), &format!("{key}: {to}\n"));
            text = text.replace(&format!("{key}: {from},"), &format!("{key}: {to},"));
            text = text.replace(&format!("{key}: {from}}}"), &format!("{key}: {to}}}"));
        }
        assert_ne!(text, before, "port {from} does not occur in the manifest");
        moved.insert(from, to);
    }
    (text, moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_move_wherever_they_are_written() {
        let text = "web:\n  port: 8080\nmail: {smtpPort: 2525, imapPort: 1143}\n";
        let (moved, map) = with_free_ports(text, &[8080, 2525, 1143]);
        assert_eq!(
            moved,
            format!(
                "web:\n  port: {}\nmail: {{smtpPort: {}, imapPort: {}}}\n",
                map[&8080], map[&2525], map[&1143]
            )
        );
    }

    #[test]
    #[should_panic(expected = "port 9999 does not occur")]
    fn a_port_the_manifest_lacks_is_an_error() {
        with_free_ports("port: 8080\n", &[9999]);
    }

    #[test]
    fn a_temp_manifest_holds_its_text_until_dropped() {
        let m = TempManifest::new("m.yaml", "kind: HostRole\n");
        let path = m.path().to_path_buf();
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "kind: HostRole\n"
        );
        drop(m);
        assert!(!path.exists());
    }
}
