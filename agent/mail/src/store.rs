//! The mail store, in Dovecot's Maildir++ layout (see [`crate::folders`]): INBOX is
//! `<root>/<user>/{tmp,new,cur}`, each other folder `<root>/<user>/.<Name>/{tmp,new,cur}`.
//!
//! Delivery streams a message into the first recipient's `tmp/`, fsyncs it, hard-links it (or,
//! where links fail, copies it through `tmp/`) into the other recipients' `new/`, renames it into
//! the first one's `new/` (links and renames are atomic: a reader sees the whole file or
//! nothing) and fsyncs those directories; only then does SMTP answer `250`. A delivery that dies removes
//! its `tmp/` file, and a crash's leftovers are removed when the role starts (the agent is the
//! only writer of the store, so any file in `tmp/` at start is a delivery that never finished).
//! APPEND, COPY and MOVE work the same way: the file is complete and fsynced before it gets a
//! name in `cur/`, and that directory and the folder's UID list are fsynced before the reply.
//!
//! IMAP UIDs are kept per folder in `dovecot-uidlist` (version 3: `3 V<validity> N<next>
//! G<guid>` then `<uid> :<name>` lines), rewritten atomically when it changes; keywords in
//! `dovecot-keywords` (`<n> <keyword>`, letter `a`+n in file names); subscriptions in the
//! user's `subscriptions` file. Flags live in file names (`:2,FRSTa`). A store written by an
//! earlier version (INBOX only, `hostrole-uidlist`) is converted when the role starts, keeping
//! UIDVALIDITY and every UID.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedMutexGuard;

use super::MailError;

/// The UID list of a folder, as Dovecot names it.
const UIDLIST: &str = "dovecot-uidlist";
/// The UID list of earlier versions (INBOX only), converted at start.
const OLD_UIDLIST: &str = "hostrole-uidlist";
const KEYWORDS: &str = "dovecot-keywords";
const SUBSCRIPTIONS: &str = "subscriptions";
/// Present once a user's default folders were created (so a deleted one stays deleted).
const DEFAULTS_MARKER: &str = "hostrole-folders";
/// Prefix of a folder being deleted (renamed first, so a crash leaves no half folder).
const DELETING: &str = "hostrole-deleting-";
/// Keywords a folder can hold: letters `a` to `z` in file names.
pub const MAX_KEYWORDS: usize = 26;

pub(crate) struct Store {
    root: PathBuf,
    /// The host part of unique names (no `/` or `:`).
    host: String,
    counter: AtomicU64,
    /// Serialises flag changes, UID assignment, expunges and folder changes per user.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// POP3's exclusive maildrop lock (RFC 1939 section 8).
    pop_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// A counter per folder directory, bumped by every change, so sessions with that folder
    /// selected know when to look again.
    versions: Mutex<HashMap<PathBuf, u64>>,
}

/// One message of a mailbox.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// The unique part of the file name (before `:2,`).
    pub base: String,
    pub path: PathBuf,
    /// Maildir flag letters, sorted (`D`raft, `F`lagged, `R`eplied, `S`een, `T`rashed, and
    /// `a`..`z` for the folder's keywords).
    pub flags: String,
    pub size: u64,
    pub mtime: SystemTime,
    pub uid: u32,
}

/// Why a folder operation was refused (answered `NO` with a response code).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FolderError {
    #[error("[CANNOT] {0}")]
    Name(#[from] crate::folders::NameError),
    #[error("[ALREADYEXISTS] the folder already exists")]
    Exists,
    #[error("[NONEXISTENT] no such folder")]
    Missing,
    #[error("[CANNOT] {0}")]
    Cannot(&'static str),
    #[error("[SERVERBUG] the store failed: {0}")]
    Io(#[from] std::io::Error),
}

/// A folder as LIST shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FolderInfo {
    pub name: String,
    /// Only a parent of other folders (`\Noselect`).
    pub virtual_parent: bool,
    pub has_children: bool,
}

fn storage(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> MailError {
    let path = path.to_path_buf();
    move |source| MailError::Storage { path, what, source }
}

use hostrole_agent_core::fsutil::{sync_dir, write_atomic};

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// Creates a Maildir's `tmp`, `new` and `cur` (and, for a folder, `maildirfolder`).
fn make_maildir(dir: &Path, folder: bool) -> std::io::Result<()> {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    if folder {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("maildirfolder"))?;
    }
    sync_dir(dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Removes what a crash left in `tmp/` (the agent is the only writer of the store).
fn clean_tmp(dir: &Path) -> Result<(), MailError> {
    let tmp = dir.join("tmp");
    let entries = match std::fs::read_dir(&tmp) {
        Ok(e) => e,
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(storage(&tmp, "listing tmp/")(e)),
    };
    for entry in entries {
        let entry = entry.map_err(storage(&tmp, "listing tmp/"))?;
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            tracing::info!(file = %entry.path().display(), "removing an unfinished delivery");
            std::fs::remove_file(entry.path())
                .map_err(storage(&entry.path(), "removing an unfinished write"))?;
        }
    }
    Ok(())
}

/// Converts an earlier version's `hostrole-uidlist` (`V<validity> N<next>`, `<uid> <name>`)
/// into `dovecot-uidlist`, keeping UIDVALIDITY and every UID, then removes the old file.
fn migrate_uidlist(maildir: &Path) -> std::io::Result<bool> {
    let old = maildir.join(OLD_UIDLIST);
    let text = match std::fs::read_to_string(&old) {
        Ok(t) => t,
        Err(e) if not_found(&e) => return Ok(false),
        Err(e) => return Err(e),
    };
    let new = maildir.join(UIDLIST);
    if !new.exists() {
        let mut lines = text.lines();
        let (mut validity, mut next) = (0u32, 1u32);
        if let Some(head) = lines.next() {
            for word in head.split_whitespace() {
                if let Some(v) = word.strip_prefix('V') {
                    validity = v.parse().unwrap_or(0);
                } else if let Some(n) = word.strip_prefix('N') {
                    next = n.parse().unwrap_or(1);
                }
            }
        }
        let mut list = UidList {
            validity,
            next,
            guid: String::new(),
            uids: HashMap::new(),
        };
        for line in lines {
            if let Some((uid, base)) = line.split_once(' ')
                && let Ok(uid) = uid.parse::<u32>()
            {
                list.next = list.next.max(uid.saturating_add(1));
                list.uids.insert(base.to_string(), uid);
            }
        }
        if list.validity == 0 {
            list.validity = new_validity();
        }
        list.guid = guid(maildir);
        list.save(maildir)?;
    }
    std::fs::remove_file(&old)?;
    sync_dir(maildir)?;
    Ok(true)
}

fn new_validity() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    ((secs & 0x7fff_ffff) as u32).max(1)
}

/// A 128-bit mailbox GUID in hex (Dovecot's `G` field): unique enough from time, process and
/// path.
fn guid(dir: &Path) -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut parts = [0u64; 2];
    for (i, part) in parts.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now.as_nanos());
        h.write_u32(std::process::id());
        h.write(dir.as_os_str().as_encoded_bytes());
        h.write_usize(i);
        *part = h.finish();
    }
    format!("{:016x}{:016x}", parts[0], parts[1])
}

/// A folder's `dovecot-uidlist`.
struct UidList {
    validity: u32,
    next: u32,
    guid: String,
    /// Base name → UID.
    uids: HashMap<String, u32>,
}

impl UidList {
    fn load(dir: &Path) -> std::io::Result<UidList> {
        let text = match std::fs::read_to_string(dir.join(UIDLIST)) {
            Ok(t) => t,
            Err(e) if not_found(&e) => String::new(),
            Err(e) => return Err(e),
        };
        let mut list = UidList {
            validity: 0,
            next: 1,
            guid: String::new(),
            uids: HashMap::new(),
        };
        let mut lines = text.lines();
        if let Some(head) = lines.next() {
            let mut words = head.split_whitespace();
            // Version 3 only (what Dovecot writes today); other versions start a new list.
            if words.next() == Some("3") {
                for word in words {
                    if let Some(v) = word.strip_prefix('V') {
                        list.validity = v.parse().unwrap_or(0);
                    } else if let Some(n) = word.strip_prefix('N') {
                        list.next = n.parse().unwrap_or(1);
                    } else if let Some(g) = word.strip_prefix('G') {
                        list.guid = g.to_string();
                    }
                }
            }
        }
        if list.validity == 0 {
            list.uids.clear();
            return Ok(list);
        }
        for line in lines {
            // `<uid> [extensions] :<file name>`
            let Some((uid, rest)) = line.split_once(' ') else {
                continue;
            };
            let Ok(uid) = uid.parse::<u32>() else {
                continue;
            };
            let Some((_, name)) = rest.split_once(':') else {
                continue;
            };
            let base = name.split(':').next().unwrap_or(name);
            list.next = list.next.max(uid.saturating_add(1));
            list.uids.insert(base.to_string(), uid);
        }
        Ok(list)
    }

    fn save(&self, dir: &Path) -> std::io::Result<()> {
        let mut entries: Vec<(&u32, &String)> = self.uids.iter().map(|(b, u)| (u, b)).collect();
        entries.sort();
        let mut text = format!("3 V{} N{} G{}\n", self.validity, self.next, self.guid);
        for (uid, base) in entries {
            text.push_str(&format!("{uid} :{base}\n"));
        }
        write_atomic(&dir.join(UIDLIST), text.as_bytes(), 0o600)
    }

    /// Makes sure the list has a validity (a new folder's list starts here).
    fn init(&mut self, dir: &Path) {
        if self.validity == 0 {
            self.validity = new_validity();
            self.guid = guid(dir);
            self.uids.clear();
        }
    }

    fn add(&mut self, base: &str) -> std::io::Result<u32> {
        let uid = self.next;
        if uid == u32::MAX {
            return Err(std::io::Error::other("the folder ran out of UIDs"));
        }
        self.next += 1;
        self.uids.insert(base.to_string(), uid);
        Ok(uid)
    }
}

/// A folder's keywords, in letter order.
pub(crate) fn load_keywords(dir: &Path) -> std::io::Result<Vec<String>> {
    let text = match std::fs::read_to_string(dir.join(KEYWORDS)) {
        Ok(t) => t,
        Err(e) if not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = vec![String::new(); MAX_KEYWORDS];
    for line in text.lines() {
        if let Some((n, name)) = line.split_once(' ')
            && let Ok(n) = n.parse::<usize>()
            && n < MAX_KEYWORDS
        {
            out[n] = name.to_string();
        }
    }
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    Ok(out)
}

impl Store {
    /// Creates the root and every user's INBOX, converts an earlier version's UID list, removes
    /// leftovers in every folder's `tmp/`, and proves the store writable (write, fsync and
    /// remove a probe file).
    pub fn open(root: PathBuf, hostname: &str, users: &[String]) -> Result<Store, MailError> {
        std::fs::create_dir_all(&root).map_err(storage(&root, "creating the root"))?;
        for user in users {
            let maildir = root.join(user);
            make_maildir(&maildir, false).map_err(storage(&maildir, "creating a Maildir"))?;
            if migrate_uidlist(&maildir).map_err(storage(&maildir, "converting the UID list"))? {
                tracing::info!(user, "converted the UID list to dovecot-uidlist");
            }
            clean_tmp(&maildir)?;
            let entries =
                std::fs::read_dir(&maildir).map_err(storage(&maildir, "listing folders"))?;
            for entry in entries {
                let entry = entry.map_err(storage(&maildir, "listing folders"))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if name.starts_with(DELETING) {
                    std::fs::remove_dir_all(entry.path())
                        .map_err(storage(&entry.path(), "finishing a folder's deletion"))?;
                } else if crate::folders::from_dir_name(&name).is_some() {
                    clean_tmp(&entry.path())?;
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
            versions: Mutex::default(),
        })
    }

    fn maildir(&self, user: &str) -> PathBuf {
        self.root.join(user)
    }

    /// The directory of a user's folder (a canonical name), whether or not it exists.
    pub fn folder_dir(&self, user: &str, name: &str) -> PathBuf {
        self.maildir(user).join(crate::folders::dir_name(name))
    }

    /// The change counter of a folder directory.
    pub fn version(&self, dir: &Path) -> u64 {
        let versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        versions.get(dir).copied().unwrap_or(0)
    }

    /// Notes a change to a folder, for the sessions that have it selected.
    pub fn touch(&self, dir: &Path) {
        let mut versions = self.versions.lock().unwrap_or_else(|p| p.into_inner());
        *versions.entry(dir.to_path_buf()).or_default() += 1;
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
        for user in recipients {
            self.touch(&self.maildir(user));
        }
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

    /// Lists `user`'s INBOX (POP3).
    pub fn scan(&self, user: &str, move_new: bool) -> std::io::Result<(Vec<Message>, usize)> {
        self.scan_dir(&self.maildir(user), move_new)
    }

    /// Lists a folder's messages (`cur/` then `new/`, so a message moved meanwhile is not seen
    /// twice), oldest first. With `move_new`, messages in `new/` move to `cur/` (IMAP SELECT);
    /// the result then says how many did ("recent").
    pub fn scan_dir(&self, dir: &Path, move_new: bool) -> std::io::Result<(Vec<Message>, usize)> {
        let mut messages = Vec::new();
        let mut moved = 0;
        for sub in ["cur", "new"] {
            let sub_dir = dir.join(sub);
            let entries = match std::fs::read_dir(&sub_dir) {
                Ok(e) => e,
                Err(e) if not_found(&e) => continue,
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
                    let target = dir.join("cur").join(format!("{base}:2,{flags}"));
                    match std::fs::rename(&path, &target) {
                        Ok(()) => {
                            path = target;
                            moved += 1;
                        }
                        Err(e) if not_found(&e) => continue,
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
            sync_dir(&dir.join("cur"))?;
            sync_dir(&dir.join("new"))?;
        }
        messages.sort_by(|a, b| a.mtime.cmp(&b.mtime).then_with(|| a.base.cmp(&b.base)));
        Ok((messages, moved))
    }

    /// Gives every message of the folder in `dir` its UID (new messages get the next ones, in
    /// order) and returns (UIDVALIDITY, UIDNEXT). Messages end sorted by UID.
    pub fn assign_uids(&self, dir: &Path, messages: &mut [Message]) -> std::io::Result<(u32, u32)> {
        let mut list = UidList::load(dir)?;
        let mut changed = list.validity == 0;
        list.init(dir);
        for m in messages.iter_mut() {
            match list.uids.get(&m.base) {
                Some(uid) => m.uid = *uid,
                None => {
                    m.uid = list.add(&m.base)?;
                    changed = true;
                }
            }
        }
        if list.uids.len() != messages.len() {
            let present: std::collections::HashSet<&str> =
                messages.iter().map(|m| m.base.as_str()).collect();
            list.uids.retain(|base, _| present.contains(base.as_str()));
            changed = true;
        }
        messages.sort_by_key(|m| m.uid);
        if changed {
            list.save(dir)?;
        }
        Ok((list.validity, list.next))
    }

    /// (UIDVALIDITY, UIDNEXT) of a folder, without scanning it.
    pub fn uid_state(&self, dir: &Path) -> std::io::Result<(u32, u32)> {
        let mut list = UidList::load(dir)?;
        if list.validity == 0 {
            list.init(dir);
            list.save(dir)?;
        }
        Ok((list.validity, list.next))
    }

    /// Renames a message to carry `flags` (moving it to `cur/` of its folder).
    pub fn set_flags(&self, message: &mut Message, flags: &str) -> std::io::Result<()> {
        let flags = sorted(flags);
        let folder = message
            .path
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| std::io::Error::other("a message outside a Maildir"))?
            .to_path_buf();
        let target = folder
            .join("cur")
            .join(format!("{}:2,{flags}", message.base));
        if target != message.path {
            std::fs::rename(&message.path, &target)?;
            message.path = target;
            self.touch(&folder);
        }
        message.flags = flags;
        Ok(())
    }

    /// Where a message is now, if it still exists (another session may have renamed it).
    pub fn locate(&self, message: &Message) -> Option<PathBuf> {
        let folder = message.path.parent()?.parent()?;
        let prefix = format!("{}:", message.base);
        for sub in ["cur", "new"] {
            let dir = folder.join(sub);
            if sub == "new" && dir.join(&message.base).exists() {
                return Some(dir.join(&message.base));
            }
            for entry in std::fs::read_dir(&dir).ok()?.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    return Some(entry.path());
                }
            }
        }
        None
    }

    /// Removes a message for good.
    pub fn remove(&self, message: &Message) -> std::io::Result<()> {
        match std::fs::remove_file(&message.path) {
            Err(e) if !not_found(&e) => Err(e),
            _ => {
                if let Some(folder) = message.path.parent().and_then(Path::parent) {
                    self.touch(folder);
                }
                Ok(())
            }
        }
    }

    /// Makes removals in `dir` durable (after a batch of [`Store::remove`]).
    pub fn sync_removals(&self, dir: &Path) -> std::io::Result<()> {
        sync_dir(&dir.join("cur"))?;
        sync_dir(&dir.join("new"))
    }

    /// The letter of a keyword in the folder `dir`, adding it to `dovecot-keywords` when `add`;
    /// `None` when unknown (and not added) or when the folder has all 26.
    pub fn keyword_letter(
        &self,
        dir: &Path,
        keyword: &str,
        add: bool,
    ) -> std::io::Result<Option<char>> {
        let mut words = load_keywords(dir)?;
        if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case(keyword)) {
            return Ok(Some((b'a' + i as u8) as char));
        }
        if !add {
            return Ok(None);
        }
        let i = match words.iter().position(String::is_empty) {
            Some(i) => i,
            None if words.len() < MAX_KEYWORDS => {
                words.push(String::new());
                words.len() - 1
            }
            None => return Ok(None),
        };
        words[i] = keyword.to_string();
        let mut text = String::new();
        for (n, w) in words.iter().enumerate().filter(|(_, w)| !w.is_empty()) {
            text.push_str(&format!("{n} {w}\n"));
        }
        write_atomic(&dir.join(KEYWORDS), text.as_bytes(), 0o600)?;
        Ok(Some((b'a' + i as u8) as char))
    }

    /// Stores a new message in the folder `dir` (APPEND): `tmp/`, fsync, internal date, rename
    /// into `cur/` with its flags, fsync `cur/`, UID recorded and fsynced. Returns
    /// (UIDVALIDITY, UID). The caller holds the user's lock.
    pub fn append(
        &self,
        dir: &Path,
        bytes: &[u8],
        flags: &str,
        date: Option<SystemTime>,
    ) -> std::io::Result<(u32, u32)> {
        if !dir.join("cur").is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such folder",
            ));
        }
        let unique = self.unique();
        let tmp = dir.join("tmp").join(&unique);
        let written = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(bytes)?;
            if let Some(date) = date {
                f.set_modified(date)?;
            }
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let target = dir
            .join("cur")
            .join(format!("{unique}:2,{}", sorted(flags)));
        if let Err(e) = std::fs::rename(&tmp, &target) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(&dir.join("cur"))?;
        let mut list = UidList::load(dir)?;
        list.init(dir);
        let uid = list.add(&unique)?;
        list.save(dir)?;
        self.touch(dir);
        Ok((list.validity, uid))
    }

    /// Copies messages into the folder `to` (COPY, and MOVE with `remove`): each is hard-linked
    /// (or copied and fsynced) under a new name into `to/tmp/`, then all are renamed into
    /// `to/cur/`, the directory and the UID list fsynced; with `remove` the sources are then
    /// removed. Returns (UIDVALIDITY, new UIDs in order). The caller holds the user's lock.
    pub fn copy(
        &self,
        messages: &[Message],
        to: &Path,
        flags: &[String],
        remove: bool,
    ) -> std::io::Result<(u32, Vec<u32>)> {
        if !to.join("cur").is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such folder",
            ));
        }
        let mut staged = Vec::with_capacity(messages.len());
        let result = (|| -> std::io::Result<()> {
            for (m, flags) in messages.iter().zip(flags) {
                let unique = self.unique();
                let tmp = to.join("tmp").join(&unique);
                if std::fs::hard_link(&m.path, &tmp).is_err() {
                    std::fs::copy(&m.path, &tmp)?;
                    let f = std::fs::File::options().write(true).open(&tmp)?;
                    f.set_modified(m.mtime)?;
                    f.sync_all()?;
                }
                staged.push((tmp, unique, flags));
            }
            Ok(())
        })();
        if let Err(e) = result {
            for (tmp, _, _) in &staged {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e);
        }
        let mut list = UidList::load(to)?;
        list.init(to);
        let mut uids = Vec::with_capacity(staged.len());
        for (tmp, unique, flags) in &staged {
            let target = to.join("cur").join(format!("{unique}:2,{}", sorted(flags)));
            std::fs::rename(tmp, &target)?;
            uids.push(list.add(unique)?);
        }
        sync_dir(&to.join("cur"))?;
        list.save(to)?;
        self.touch(to);
        if remove {
            for m in messages {
                self.remove(m)?;
            }
            if let Some(from) = messages
                .first()
                .and_then(|m| m.path.parent())
                .and_then(Path::parent)
            {
                self.sync_removals(from)?;
            }
        }
        Ok((list.validity, uids))
    }

    /// The user's folders, INBOX first, with the parents that exist only as part of a
    /// name (`\Noselect`).
    pub fn folders(&self, user: &str) -> std::io::Result<Vec<FolderInfo>> {
        let maildir = self.maildir(user);
        let mut names = vec!["INBOX".to_string()];
        for entry in std::fs::read_dir(&maildir)? {
            let entry = entry?;
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Some(name) = crate::folders::from_dir_name(&entry.file_name().to_string_lossy())
            {
                names.push(name);
            }
        }
        let real: std::collections::HashSet<String> = names.iter().cloned().collect();
        let mut all: std::collections::BTreeSet<String> = real.iter().cloned().collect();
        for name in &names {
            for parent in crate::folders::parents(name) {
                all.insert(parent.to_string());
            }
        }
        let mut out: Vec<FolderInfo> = all
            .iter()
            .map(|name| FolderInfo {
                name: name.clone(),
                virtual_parent: !real.contains(name),
                has_children: all.range(format!("{name}/")..).next().is_some_and(|n| {
                    n.starts_with(name.as_str()) && n[name.len()..].starts_with('/')
                }),
            })
            .collect();
        out.sort_by(|a, b| (a.name != "INBOX", &a.name).cmp(&(b.name != "INBOX", &b.name)));
        Ok(out)
    }

    /// Whether a (canonical) folder exists and can be selected.
    pub fn folder_exists(&self, user: &str, name: &str) -> bool {
        self.folder_dir(user, name).join("cur").is_dir()
    }

    /// CREATE: a new Maildir++ folder (parents stay virtual, as in Dovecot).
    pub fn create_folder(&self, user: &str, name: &str) -> Result<(), FolderError> {
        let name = crate::folders::canonical(name)?;
        if name == "INBOX" || self.folder_exists(user, &name) {
            return Err(FolderError::Exists);
        }
        let dir = self.folder_dir(user, &name);
        make_maildir(&dir, true)?;
        self.uid_state(&dir)?;
        Ok(())
    }

    /// DELETE: the folder is renamed aside (atomic), then removed; its children stay.
    pub fn delete_folder(&self, user: &str, name: &str) -> Result<(), FolderError> {
        let name = crate::folders::canonical(name)?;
        if name == "INBOX" {
            return Err(FolderError::Cannot("INBOX cannot be deleted"));
        }
        let dir = self.folder_dir(user, &name);
        if !dir.is_dir() {
            return Err(FolderError::Missing);
        }
        let aside = self
            .maildir(user)
            .join(format!("{DELETING}{}", self.unique()));
        std::fs::rename(&dir, &aside)?;
        sync_dir(&self.maildir(user))?;
        self.touch(&dir);
        std::fs::remove_dir_all(&aside)?;
        Ok(())
    }

    /// RENAME: the folder and its children (each an atomic directory rename); subscriptions
    /// follow. INBOX cannot be renamed here.
    pub fn rename_folder(&self, user: &str, from: &str, to: &str) -> Result<(), FolderError> {
        let from = crate::folders::canonical(from)?;
        let to = crate::folders::canonical(to)?;
        if from == "INBOX" {
            return Err(FolderError::Cannot(
                "INBOX cannot be renamed; move its messages instead",
            ));
        }
        if to == "INBOX" || to.starts_with(&format!("{from}/")) {
            return Err(FolderError::Cannot(
                "cannot rename a folder into itself or INBOX",
            ));
        }
        let all = self.folders(user)?;
        if !all.iter().any(|f| f.name == from) {
            return Err(FolderError::Missing);
        }
        if all
            .iter()
            .any(|f| f.name == to || f.name.starts_with(&format!("{to}/")))
        {
            return Err(FolderError::Exists);
        }
        let moving: Vec<&FolderInfo> = all
            .iter()
            .filter(|f| !f.virtual_parent)
            .filter(|f| f.name == from || f.name.starts_with(&format!("{from}/")))
            .collect();
        for f in &moving {
            let new_name = format!("{to}{}", &f.name[from.len()..]);
            let old_dir = self.folder_dir(user, &f.name);
            std::fs::rename(&old_dir, self.folder_dir(user, &new_name))?;
            self.touch(&old_dir);
        }
        sync_dir(&self.maildir(user))?;
        let subscribed = self.subscriptions(user)?;
        let renamed: Vec<String> = subscribed
            .iter()
            .map(|s| {
                if *s == from || s.starts_with(&format!("{from}/")) {
                    format!("{to}{}", &s[from.len()..])
                } else {
                    s.clone()
                }
            })
            .collect();
        if renamed != subscribed {
            self.save_subscriptions(user, renamed)?;
        }
        Ok(())
    }

    /// The user's subscribed folder names.
    pub fn subscriptions(&self, user: &str) -> std::io::Result<Vec<String>> {
        match std::fs::read_to_string(self.maildir(user).join(SUBSCRIPTIONS)) {
            Ok(text) => Ok(crate::folders::parse_subscriptions(&text)),
            Err(e) if not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn save_subscriptions(&self, user: &str, mut names: Vec<String>) -> std::io::Result<()> {
        names.sort();
        names.dedup();
        let text = crate::folders::subscriptions_text(&names);
        write_atomic(
            &self.maildir(user).join(SUBSCRIPTIONS),
            text.as_bytes(),
            0o600,
        )
    }

    /// SUBSCRIBE / UNSUBSCRIBE (a name need not exist, RFC 3501 section 6.3.6).
    pub fn subscribe(&self, user: &str, name: &str, on: bool) -> Result<(), FolderError> {
        let name = crate::folders::canonical(name)?;
        let mut names = self.subscriptions(user)?;
        let had = names.contains(&name);
        if on && !had {
            names.push(name);
        } else if !on && had {
            names.retain(|n| *n != name);
        } else {
            return Ok(());
        }
        self.save_subscriptions(user, names)?;
        Ok(())
    }

    /// Creates and subscribes the special-use folders the first time a user logs in; a folder
    /// the user later deletes is not created again.
    pub fn ensure_defaults(&self, user: &str) -> std::io::Result<()> {
        let maildir = self.maildir(user);
        let marker = maildir.join(DEFAULTS_MARKER);
        if marker.exists() {
            return Ok(());
        }
        let mut subscribed = self.subscriptions(user)?;
        subscribed.push("INBOX".into());
        for (name, _) in crate::folders::SPECIAL {
            let dir = self.folder_dir(user, name);
            if !dir.join("cur").is_dir() {
                make_maildir(&dir, true)?;
                self.uid_state(&dir)?;
            }
            subscribed.push(name.to_string());
        }
        self.save_subscriptions(user, subscribed)?;
        write_atomic(&marker, b"special-use folders created\n", 0o600)
    }
}

fn sorted(flags: &str) -> String {
    let mut f: Vec<char> = flags.chars().filter(char::is_ascii_alphabetic).collect();
    f.sort_unstable();
    f.dedup();
    f.into_iter().collect()
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
        let inbox = store.folder_dir("alice", "INBOX");
        let (validity, next) = store.assign_uids(&inbox, &mut messages).expect("uids");
        assert!(validity > 0);
        assert_eq!((messages[0].uid, next), (1, 2));
        store.set_flags(&mut messages[0], "TS").expect("flags");
        assert!(messages[0].path.ends_with(format!("cur/{id}:2,ST")));
        let (mut again, moved) = store.scan("alice", true).expect("scan");
        assert_eq!((again.len(), moved, again[0].flags.as_str()), (1, 0, "ST"));
        assert_eq!(
            store.assign_uids(&inbox, &mut again).expect("uids"),
            (validity, 2)
        );
        assert_eq!(again[0].uid, 1, "UIDs survive a rescan");
        store.remove(&again[0]).expect("remove");
        assert!(store.scan("alice", true).expect("scan").0.is_empty());
    }

    /// APPEND and COPY leave nothing half written after a crash: a file in a folder's `tmp/`
    /// and a folder caught mid-deletion are removed at start; UIDs already handed out are
    /// never handed out again.
    #[tokio::test]
    async fn folders_append_copy_and_crash_leftovers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("mail");
        let store = Store::open(root.clone(), "host", &names()).expect("open");
        store.ensure_defaults("alice").expect("defaults");
        let sent = store.folder_dir("alice", "Sent");
        let (validity, uid) = store
            .append(&sent, b"Subject: a\r\n\r\na\r\n", "S", None)
            .expect("append");
        assert_eq!(uid, 1);
        let (mut messages, _) = store.scan_dir(&sent, true).expect("scan");
        assert_eq!(
            store.assign_uids(&sent, &mut messages).expect("uids"),
            (validity, 2)
        );
        let inbox = store.folder_dir("alice", "INBOX");
        let (v2, uids) = store
            .copy(&messages, &inbox, &["S".to_string()], false)
            .expect("copy");
        assert_eq!(uids, vec![1]);
        assert_ne!(v2, 0);
        // A crash: a half message in Sent's tmp/, a folder renamed aside for deletion.
        std::fs::write(sent.join("tmp/half"), b"Subject: ha").expect("half");
        let aside = root.join("alice").join(format!("{DELETING}x"));
        std::fs::create_dir_all(aside.join("cur")).expect("aside");
        // The last UID handed out is gone from the folder: it is not reused.
        store.remove(&messages[0]).expect("remove");
        drop(store);
        let store = Store::open(root.clone(), "host", &names()).expect("reopen");
        assert!(
            !sent.join("tmp/half").exists(),
            "the half message is removed"
        );
        assert!(!aside.exists(), "the deletion is finished");
        let uid = store
            .append(&sent, b"Subject: b\r\n\r\nb\r\n", "", None)
            .expect("append");
        assert_eq!(uid, (validity, 2), "UID 1 is not handed out again");
        let folders: Vec<String> = store
            .folders("alice")
            .expect("folders")
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            folders,
            vec!["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
        );
    }
}
