//! The mail store: one Maildir per user under the role's root, `<root>/<user>/{tmp,new,cur}`.
//!
//! Delivery streams a message into the first recipient's `tmp/`, fsyncs it, hard-links it (or,
//! where links fail, copies it through `tmp/`) into the other recipients' `new/`, renames it into
//! the first one's `new/` (links and renames are atomic: a reader sees the whole file or
//! nothing) and fsyncs those directories; only then does SMTP answer `250`. A delivery that dies removes
//! its `tmp/` file, and a crash's leftovers are removed when the role starts (the agent is the
//! only writer of the store, so any file in `tmp/` at start is a delivery that never finished).
//!
//! IMAP UIDs are kept in `<user>/hostrole-uidlist` (`V<validity> N<next>` then `<uid> <name>`
//! lines), rewritten atomically when it changes. Flags live in file names (`:2,FRST`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedMutexGuard;

use super::MailError;

const UIDLIST: &str = "hostrole-uidlist";

pub(crate) struct Store {
    root: PathBuf,
    /// The host part of unique names (no `/` or `:`).
    host: String,
    counter: AtomicU64,
    /// Serialises flag changes, UID assignment and expunges per user.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// POP3's exclusive maildrop lock (RFC 1939 section 8).
    pop_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// One message of a mailbox.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// The unique part of the file name (before `:2,`).
    pub base: String,
    pub path: PathBuf,
    /// Maildir flag letters, sorted (`D`raft, `F`lagged, `R`eplied, `S`een, `T`rashed).
    pub flags: String,
    pub size: u64,
    pub mtime: SystemTime,
    pub uid: u32,
}

fn storage(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> MailError {
    let path = path.to_path_buf();
    move |source| MailError::Storage { path, what, source }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl Store {
    /// Creates the root and every user's Maildir, removes leftovers in `tmp/`, and proves the
    /// store writable (write, fsync and remove a probe file).
    pub fn open(root: PathBuf, hostname: &str, users: &[String]) -> Result<Store, MailError> {
        std::fs::create_dir_all(&root).map_err(storage(&root, "creating the root"))?;
        for user in users {
            let maildir = root.join(user);
            for sub in ["tmp", "new", "cur"] {
                let dir = maildir.join(sub);
                std::fs::create_dir_all(&dir).map_err(storage(&dir, "creating a Maildir"))?;
            }
            let tmp = maildir.join("tmp");
            for entry in std::fs::read_dir(&tmp).map_err(storage(&tmp, "listing tmp/"))? {
                let entry = entry.map_err(storage(&tmp, "listing tmp/"))?;
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    tracing::info!(file = %entry.path().display(), "removing an unfinished delivery");
                    std::fs::remove_file(entry.path())
                        .map_err(storage(&entry.path(), "removing an unfinished delivery"))?;
                }
            }
        }
        let probe = root.join(format!(".hostrole-probe-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&probe)?;
            f.write_all(b"probe\n")?;
            f.sync_all()?;
            std::fs::remove_file(&probe)
        };
        write().map_err(storage(&probe, "writing a probe file"))?;
        let host: String = hostname
            .chars()
            .map(|c| if c == '/' || c == ':' { '_' } else { c })
            .collect();
        Ok(Store {
            root,
            host,
            counter: AtomicU64::new(0),
            locks: Mutex::default(),
            pop_locks: Mutex::default(),
        })
    }

    fn maildir(&self, user: &str) -> PathBuf {
        self.root.join(user)
    }

    /// The directory of `user`'s Maildir.
    pub fn maildir_of(&self, user: &str) -> PathBuf {
        self.maildir(user)
    }

    /// A name unique to this delivery: `<secs>.M<micros>P<pid>Q<n>.<host>`.
    fn unique(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{}.M{}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed),
            self.host
        )
    }

    /// Starts a delivery in `user`'s `tmp/`.
    pub async fn draft(&self, user: &str) -> std::io::Result<Draft> {
        let unique = self.unique();
        let path = self.maildir(user).join("tmp").join(&unique);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(Draft {
            file: Some(tokio::io::BufWriter::with_capacity(64 * 1024, file)),
            path,
            unique,
            committed: false,
        })
    }

    /// Finishes a delivery: fsync, link into each recipient's `new/`, fsync, remove the `tmp/` name.
    pub async fn commit(&self, mut draft: Draft, recipients: &[String]) -> std::io::Result<String> {
        let mut file = draft
            .file
            .take()
            .ok_or_else(|| std::io::Error::other("draft reused"))?;
        file.flush().await?;
        let file = file.into_inner();
        file.sync_all().await?;
        drop(file);
        let targets: Vec<PathBuf> = recipients
            .iter()
            .map(|u| self.maildir(u).join("new"))
            .collect();
        let tmp = draft.path.clone();
        let unique = draft.unique.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let (first, others) = targets
                .split_first()
                .ok_or_else(|| std::io::Error::other("no recipient"))?;
            for dir in others {
                let target = dir.join(&unique);
                if std::fs::hard_link(&tmp, &target).is_err() {
                    // A filesystem without hard links: copy through that user's tmp/.
                    let staging = dir.with_file_name("tmp").join(&unique);
                    std::fs::copy(&tmp, &staging)?;
                    std::fs::File::open(&staging)?.sync_all()?;
                    std::fs::rename(&staging, &target)?;
                }
                sync_dir(dir)?;
            }
            // The draft sits in the first recipient's tmp/: a rename, atomic, completes it.
            std::fs::rename(&tmp, first.join(&unique))?;
            sync_dir(first)?;
            if let Some(parent) = tmp.parent() {
                sync_dir(parent)?;
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)??;
        draft.committed = true;
        Ok(draft.unique.clone())
    }

    /// The per-user lock for changes to a mailbox.
    pub fn lock(&self, user: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(user.to_string()).or_default().clone()
    }

    /// POP3's exclusive lock on a maildrop; `None` when another POP3 session holds it.
    pub fn pop_lock(&self, user: &str) -> Option<OwnedMutexGuard<()>> {
        let lock = {
            let mut locks = self.pop_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(user.to_string()).or_default().clone()
        };
        lock.try_lock_owned().ok()
    }

    /// Lists `user`'s messages (`cur/` then `new/`, so a message moved meanwhile is not seen
    /// twice), oldest first. With `move_new`, messages in
    /// `new/` move to `cur/` (IMAP SELECT); the result then says how many did ("recent").
    pub fn scan(&self, user: &str, move_new: bool) -> std::io::Result<(Vec<Message>, usize)> {
        let maildir = self.maildir(user);
        let mut messages = Vec::new();
        let mut moved = 0;
        for sub in ["cur", "new"] {
            let dir = maildir.join(sub);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let (base, flags) = match name.split_once(":2,") {
                    Some((b, f)) => (b.to_string(), f.to_string()),
                    None => (
                        name.split(':').next().unwrap_or(&name).to_string(),
                        String::new(),
                    ),
                };
                let mut path = entry.path();
                if sub == "new" && move_new {
                    let target = maildir.join("cur").join(format!("{base}:2,{flags}"));
                    match std::fs::rename(&path, &target) {
                        Ok(()) => {
                            path = target;
                            moved += 1;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                }
                messages.push(Message {
                    base,
                    path,
                    flags: sorted(&flags),
                    size: meta.len(),
                    mtime: meta.modified().unwrap_or(UNIX_EPOCH),
                    uid: 0,
                });
            }
        }
        if moved > 0 {
            sync_dir(&maildir.join("cur"))?;
        }
        messages.sort_by(|a, b| a.mtime.cmp(&b.mtime).then_with(|| a.base.cmp(&b.base)));
        Ok((messages, moved))
    }

    /// Gives every message its UID (new messages get the next ones, in order) and returns
    /// (UIDVALIDITY, UIDNEXT). Messages end sorted by UID.
    pub fn assign_uids(&self, user: &str, messages: &mut [Message]) -> std::io::Result<(u32, u32)> {
        let path = self.maildir(user).join(UIDLIST);
        let (mut validity, mut next, mut known) = match std::fs::read_to_string(&path) {
            Ok(text) => parse_uidlist(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, 1, HashMap::new()),
            Err(e) => return Err(e),
        };
        let mut changed = false;
        if validity == 0 {
            validity = (SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
                & 0x7fff_ffff) as u32;
            validity = validity.max(1);
            changed = true;
        }
        for m in messages.iter_mut() {
            match known.get(&m.base) {
                Some(uid) => m.uid = *uid,
                None => {
                    m.uid = next;
                    known.insert(m.base.clone(), next);
                    next += 1;
                    changed = true;
                }
            }
        }
        if known.len() != messages.len() {
            known.retain(|base, _| messages.iter().any(|m| m.base == *base));
            changed = true;
        }
        messages.sort_by_key(|m| m.uid);
        if changed {
            let mut text = format!("V{validity} N{next}\n");
            for m in messages.iter() {
                text.push_str(&format!("{} {}\n", m.uid, m.base));
            }
            let tmp = path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok((validity, next))
    }

    /// Renames a message to carry `flags` (moving it to `cur/`).
    pub fn set_flags(&self, user: &str, message: &mut Message, flags: &str) -> std::io::Result<()> {
        let flags = sorted(flags);
        let target = self
            .maildir(user)
            .join("cur")
            .join(format!("{}:2,{flags}", message.base));
        if target != message.path {
            std::fs::rename(&message.path, &target)?;
            message.path = target;
        }
        message.flags = flags;
        Ok(())
    }

    /// Removes a message for good.
    pub fn remove(&self, message: &Message) -> std::io::Result<()> {
        match std::fs::remove_file(&message.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn sorted(flags: &str) -> String {
    let mut f: Vec<char> = flags.chars().filter(char::is_ascii_alphabetic).collect();
    f.sort_unstable();
    f.dedup();
    f.into_iter().collect()
}

fn parse_uidlist(text: &str) -> (u32, u32, HashMap<String, u32>) {
    let mut lines = text.lines();
    let mut validity = 0;
    let mut next = 1;
    if let Some(head) = lines.next() {
        for word in head.split_whitespace() {
            if let Some(v) = word.strip_prefix('V') {
                validity = v.parse().unwrap_or(0);
            } else if let Some(n) = word.strip_prefix('N') {
                next = n.parse().unwrap_or(1);
            }
        }
    }
    let mut known = HashMap::new();
    for line in lines {
        if let Some((uid, base)) = line.split_once(' ')
            && let Ok(uid) = uid.parse::<u32>()
        {
            next = next.max(uid + 1);
            known.insert(base.to_string(), uid);
        }
    }
    (validity, next, known)
}

/// A message being received into `tmp/`. Dropped without [`Store::commit`], its file is removed.
pub(crate) struct Draft {
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    path: PathBuf,
    unique: String,
    committed: bool,
}

impl Draft {
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(bytes).await,
            None => Err(std::io::Error::other("draft already committed")),
        }
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        if !self.committed {
            // Close before removing; a blocking unlink is cheap and must not be skipped.
            self.file.take();
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["alice".into(), "bob".into()]
    }

    #[tokio::test]
    async fn delivery_flags_uids_and_leftovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("mail");
        std::fs::create_dir_all(root.join("alice/tmp")).expect("mkdir");
        std::fs::write(root.join("alice/tmp/leftover"), b"half a message").expect("write");
        let store = Store::open(root.clone(), "host/x:y", &names()).expect("open");
        assert!(
            !root.join("alice/tmp/leftover").exists(),
            "a crash's leftover is removed"
        );

        let mut draft = store.draft("alice").await.expect("draft");
        draft
            .write(b"Subject: hi\r\n\r\nbody\r\n")
            .await
            .expect("write");
        let id = store.commit(draft, &names()).await.expect("commit");
        assert!(id.ends_with(".host_x_y"), "{id}");
        for user in ["alice", "bob"] {
            let stored = std::fs::read(root.join(user).join("new").join(&id)).expect("delivered");
            assert_eq!(stored, b"Subject: hi\r\n\r\nbody\r\n");
            assert_eq!(
                std::fs::read_dir(root.join(user).join("tmp"))
                    .expect("tmp")
                    .count(),
                0
            );
        }

        // A dropped draft leaves nothing.
        let mut draft = store.draft("alice").await.expect("draft");
        draft.write(b"partial").await.expect("write");
        drop(draft);
        assert_eq!(
            std::fs::read_dir(root.join("alice/tmp"))
                .expect("tmp")
                .count(),
            0
        );

        let (mut messages, moved) = store.scan("alice", true).expect("scan");
        assert_eq!((messages.len(), moved), (1, 1));
        let (validity, next) = store.assign_uids("alice", &mut messages).expect("uids");
        assert!(validity > 0);
        assert_eq!((messages[0].uid, next), (1, 2));
        store
            .set_flags("alice", &mut messages[0], "TS")
            .expect("flags");
        assert!(messages[0].path.ends_with(format!("cur/{id}:2,ST")));
        let (mut again, moved) = store.scan("alice", true).expect("scan");
        assert_eq!((again.len(), moved, again[0].flags.as_str()), (1, 0, "ST"));
        assert_eq!(
            store.assign_uids("alice", &mut again).expect("uids"),
            (validity, 2)
        );
        assert_eq!(again[0].uid, 1, "UIDs survive a rescan");
        store.remove(&again[0]).expect("remove");
        assert!(store.scan("alice", true).expect("scan").0.is_empty());
    }
}
