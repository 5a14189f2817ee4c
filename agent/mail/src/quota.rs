//! Per-mailbox quota: the bytes of a user's messages (`new/` and `cur/` of the Maildir and of
//! its Maildir++ folders `.<name>/`), compared with `mailboxQuotaBytes` before SMTP accepts a
//! recipient or a message. A stranger on port 25 can then fill one mailbox up to its quota, not
//! the volume.
//!
//! Usage is counted by walking the Maildir (a `stat` per message) at most every [`REFRESH`] per
//! user; in between, each delivery adds its size, so a burst of deliveries cannot overshoot by
//! more than the messages in flight at once. Deletions and other writers (IMAP) are seen at the
//! next walk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a walked usage is trusted.
const REFRESH: Duration = Duration::from_secs(10);

/// Whether a message fits a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    Fits,
    /// The mailbox is at or over its quota: nothing fits (`452 4.2.2`, try later).
    Full,
    /// The mailbox has room, but not for this many bytes (`552 5.2.2`).
    TooBig,
}

pub(crate) struct Quota {
    root: PathBuf,
    limit: Option<u64>,
    /// user → (walked at, bytes).
    usage: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Quota {
    pub fn new(root: PathBuf, limit: Option<u64>) -> Self {
        Self {
            root,
            limit,
            usage: Mutex::default(),
        }
    }

    fn cached(&self, user: &str) -> Option<u64> {
        let usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        usage
            .get(user)
            .filter(|(at, _)| at.elapsed() < REFRESH)
            .map(|(_, bytes)| *bytes)
    }

    /// The bytes `user`'s mailbox holds (walked off the async threads when the cache is old).
    pub async fn used(&self, user: &str) -> u64 {
        if let Some(bytes) = self.cached(user) {
            return bytes;
        }
        let dir = self.root.join(user);
        let bytes = tokio::task::spawn_blocking(move || walk(&dir))
            .await
            .unwrap_or(0);
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        usage.insert(user.to_string(), (Instant::now(), bytes));
        bytes
    }

    /// Whether `bytes` more (0: any message at all) fit `user`'s mailbox.
    pub async fn room(&self, user: &str, bytes: u64) -> Room {
        let Some(limit) = self.limit else {
            return Room::Fits;
        };
        let used = self.used(user).await;
        if used >= limit {
            Room::Full
        } else if used.saturating_add(bytes) > limit {
            Room::TooBig
        } else {
            Room::Fits
        }
    }

    /// Counts a delivery of `bytes` to each of `users`.
    pub fn charge(&self, users: &[String], bytes: u64) {
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        for user in users {
            if let Some((_, used)) = usage.get_mut(user) {
                *used = used.saturating_add(bytes);
            }
        }
    }
}

/// Sums the sizes of the messages of a Maildir and of its Maildir++ folders.
fn walk(maildir: &Path) -> u64 {
    let mut total = messages_in(maildir);
    if let Ok(entries) = std::fs::read_dir(maildir) {
        for entry in entries.flatten() {
            let folder = entry.file_name().to_string_lossy().starts_with('.');
            if folder && entry.file_type().is_ok_and(|t| t.is_dir()) {
                total = total.saturating_add(messages_in(&entry.path()));
            }
        }
    }
    total
}

fn messages_in(maildir: &Path) -> u64 {
    let mut total = 0u64;
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata()
                && meta.is_file()
            {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_too_big_and_fits_counting_folders_and_deliveries() {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["alice/new", "alice/cur", "alice/tmp", "alice/.Sent/cur"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        std::fs::write(dir.path().join("alice/new/1"), [0u8; 300]).expect("write");
        std::fs::write(dir.path().join("alice/.Sent/cur/2:2,S"), [0u8; 200]).expect("write");
        std::fs::write(dir.path().join("alice/tmp/3"), [0u8; 900]).expect("in flight");
        let q = Quota::new(dir.path().to_path_buf(), Some(1000));
        assert_eq!(q.used("alice").await, 500, "tmp/ is not counted");
        assert_eq!(q.room("alice", 400).await, Room::Fits);
        assert_eq!(q.room("alice", 600).await, Room::TooBig);
        q.charge(&["alice".into()], 500);
        assert_eq!(q.room("alice", 1).await, Room::Full);
        assert_eq!(q.room("bob", 1).await, Room::Fits, "no Maildir yet: empty");
        let unlimited = Quota::new(dir.path().to_path_buf(), None);
        assert_eq!(unlimited.room("alice", u64::MAX).await, Room::Fits);
    }
}
