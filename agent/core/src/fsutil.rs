//! Writing a file so that a crash leaves either the old content or the new, never a part: the
//! bytes go to a temporary file beside the target, are fsynced, renamed over the target, and the
//! directory is fsynced so the rename itself survives.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Bytes the files under `dir` hold (their lengths, all the way down; `skip` and what is under
/// it left out). Blocking: call it off the async threads. What cannot be read counts 0.
pub fn tree_bytes(dir: &Path, skip: Option<&Path>) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let path = e.path();
            if Some(path.as_path()) == skip {
                return 0;
            }
            match e.metadata() {
                Ok(m) if m.is_dir() => tree_bytes(&path, None),
                Ok(m) => m.len(),
                Err(_) => 0,
            }
        })
        .sum()
}

/// What a directory tree holds as last counted (a walk's time and bytes), plus what writers
/// in this process stored since. One per tree and process ([`tree_usage`]), so that every role
/// writing into the same tree (the file role's uploads, the print role's printouts into a
/// folder of the share) sees the others' writes before its next walk.
#[derive(Debug, Default)]
pub struct TreeUsage(Mutex<Option<(Instant, u64)>>);

impl TreeUsage {
    /// The count, while its walk is younger than `within`.
    pub fn fresh(&self, within: Duration) -> Option<u64> {
        let usage = self.0.lock().ok()?;
        usage
            .filter(|(at, _)| at.elapsed() < within)
            .map(|(_, bytes)| bytes)
    }

    /// A walk just counted `bytes`.
    pub fn walked(&self, bytes: u64) {
        if let Ok(mut usage) = self.0.lock() {
            *usage = Some((Instant::now(), bytes));
        }
    }

    /// A write completed: `added` bytes stored, `removed` bytes (a replaced file) gone.
    pub fn grew(&self, added: u64, removed: u64) {
        if let Ok(mut usage) = self.0.lock()
            && let Some((_, bytes)) = usage.as_mut()
        {
            *bytes = bytes.saturating_add(added).saturating_sub(removed);
        }
    }
}

/// The [`TreeUsage`] of the tree at `root` (by its canonical path), shared by every caller in
/// this process while one of them holds it.
pub fn tree_usage(root: &Path) -> Arc<TreeUsage> {
    static TREES: Mutex<BTreeMap<PathBuf, Weak<TreeUsage>>> = Mutex::new(BTreeMap::new());
    let key = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let mut trees = TREES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(usage) = trees.get(&key).and_then(Weak::upgrade) {
        return usage;
    }
    trees.retain(|_, usage| usage.strong_count() > 0);
    let usage = Arc::new(TreeUsage::default());
    trees.insert(key, Arc::downgrade(&usage));
    usage
}

/// Writes `bytes` to `path` atomically and durably, creating the parent directory if needed.
/// `mode` is the new file's permission bits (e.g. `0o600` for a secret).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let staging = staging_path(path);
    let result = (|| {
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&staging)?;
        out.write_all(bytes)?;
        out.sync_all()?;
        std::fs::rename(&staging, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    result
}

/// Fsyncs a directory, so that entries created, renamed or removed in it are on disk.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Async [`sync_dir`], off the async threads.
pub async fn sync_dir_async(dir: &Path) -> std::io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

/// `.<name>.<pid>.tmp` beside `path`: hidden, and unique per process.
fn staging_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_content_whole_with_the_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/secret");
        write_atomic(&path, b"one", 0o600).expect("write");
        write_atomic(&path, b"two", 0o600).expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("secret")]);
    }

    #[test]
    fn one_tree_has_one_usage_whoever_asks_and_however_they_spell_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("share/printouts")).expect("dirs");
        let files = tree_usage(&dir.path().join("share"));
        let printer = tree_usage(&dir.path().join("share/printouts/.."));
        let other = tree_usage(&dir.path().join("share/printouts"));
        assert_eq!(
            files.fresh(Duration::from_secs(60)),
            None,
            "nothing counted yet"
        );
        files.walked(6_000);
        printer.grew(3_000, 0);
        assert_eq!(files.fresh(Duration::from_secs(60)), Some(9_000));
        files.grew(100, 1_000);
        assert_eq!(printer.fresh(Duration::from_secs(60)), Some(8_100));
        assert_eq!(other.fresh(Duration::from_secs(60)), None);
        assert_eq!(files.fresh(Duration::ZERO), None, "stale");
    }

    #[test]
    fn a_failed_write_leaves_the_old_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("file");
        write_atomic(&path, b"old", 0o644).expect("write");
        // A directory where the target should be: the rename fails, the staging file goes.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("inside")).expect("dir");
        assert!(write_atomic(&blocked, b"new", 0o644).is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 2);
    }
}
