//! The outbound queue: mail for other domains, on the mail volume beside the mailboxes.
//!
//! Layout of `<root>/.queue/` (user names cannot start with `.`, so it is never a mailbox; the
//! store, its migration and the quota walk only open `<root>/<user>`):
//!
//! - `tmp/<id>`: a message being received; whatever is here when the role starts is removed.
//! - `<id>.eml`: the message as it will be sent (our `Received:` line first), never changed.
//! - `<id>.json`: its envelope: sender, submitting user, first queued time, size, and each
//!   recipient with its state (`pending`, `delivered`, `failed`), attempts, next attempt and
//!   last error. It is the commit point: written to a temporary file, fsynced, renamed, and the
//!   directory fsynced, after `<id>.eml` was renamed in and fsynced, and before SMTP answers
//!   `250`. An `.eml` without its `.json` was never acknowledged and is removed at start.
//!
//! After each delivery attempt the envelope is rewritten the same way (temporary file and
//! rename), so a crash leaves the old state or the new, never a part. A recipient recorded as
//! delivered or failed is never tried again. The one duplicate left is RFC 5321's (section
//! 6.1): the remote answered `250` to the message and we died (or the connection broke) before
//! the envelope was rewritten; that recipient is tried again after the restart.
//!
//! The state changes are pure functions ([`Recipient::apply`], [`backoff`]), tested below.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hostrole_agent_core::fsutil::{sync_dir, write_atomic};
use hostrole_config::OutboundConfig;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use super::MailError;

/// The queue's directory under the mail root.
pub const QUEUE_DIR: &str = ".queue";
/// Messages the queue holds at most; past it submission answers `452 4.3.1`.
pub const MAX_MESSAGES: usize = 10_000;

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A queued message's envelope, as `<id>.json` holds it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    /// The reverse-path, `local@domain`; empty for `<>` (a bounce, never bounced itself).
    pub sender: String,
    /// The user who submitted it (whose quota its bytes count against); none for a bounce.
    #[serde(default)]
    pub owner: Option<String>,
    /// When it was accepted, in seconds since the epoch (the lifetime counts from here).
    pub queued_at: u64,
    /// The size of `<id>.eml`.
    pub bytes: u64,
    pub recipients: Vec<Recipient>,
}

/// One recipient of a queued message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// `local@domain`, as the client gave it.
    pub address: String,
    pub state: State,
    /// Attempts that ended in a temporary failure.
    #[serde(default)]
    pub attempts: u32,
    /// Not before this time (seconds since the epoch).
    #[serde(default)]
    pub next_attempt: u64,
    /// The last temporary failure, for the bounce when the lifetime runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum State {
    Pending,
    Delivered,
    /// Given up: `status` is the RFC 3463 code of the bounce, `diagnostic` the remote's reply
    /// (or our reason); `bounced` once the DSN is delivered or queued.
    Failed {
        status: String,
        diagnostic: String,
        bounced: bool,
    },
}

/// What one attempt did for a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// 4xx, a connection failure, a DNS failure: try again later.
    Temporary(String),
    /// 5xx or a null MX: `status` is the enhanced status (from the reply, or ours).
    Permanent {
        status: String,
        diagnostic: String,
    },
}

/// The retry schedule of RFC 5321 section 4.5.4.1: `first` seconds after the first failure,
/// doubling after each, never more than `max` (and at least one second).
pub fn backoff(first: u64, max: u64, attempts: u32) -> u64 {
    let exp = attempts.saturating_sub(1).min(32);
    first
        .max(1)
        .saturating_mul(1u64 << exp)
        .min(max.max(first).max(1))
}

/// The status of a bounce for a message whose lifetime ran out: the transient failures have
/// become a permanent one, "delivery time expired" (RFC 3463 X.4.7) with class 5.
pub const EXPIRED_STATUS: &str = "5.4.7";

impl Recipient {
    pub fn new(address: String, now: u64) -> Recipient {
        Recipient {
            address,
            state: State::Pending,
            attempts: 0,
            next_attempt: now,
            last_error: None,
        }
    }

    pub fn pending(&self) -> bool {
        self.state == State::Pending
    }

    /// Records an attempt. Only a pending recipient changes: delivered and failed are final.
    /// A temporary failure after `queued_at + lifetime` fails the recipient; before, the next
    /// attempt is scheduled by [`backoff`], never later than the end of the lifetime.
    pub fn apply(&mut self, attempt: Attempt, now: u64, queued_at: u64, config: &OutboundConfig) {
        if !self.pending() {
            return;
        }
        match attempt {
            Attempt::Delivered => self.state = State::Delivered,
            Attempt::Permanent { status, diagnostic } => {
                self.state = State::Failed {
                    status,
                    diagnostic,
                    bounced: false,
                }
            }
            Attempt::Temporary(why) => {
                self.attempts = self.attempts.saturating_add(1);
                let expires = queued_at.saturating_add(config.lifetime_seconds);
                if now >= expires {
                    self.state = State::Failed {
                        status: EXPIRED_STATUS.to_string(),
                        diagnostic: format!("delivery time expired; last error: {why}"),
                        bounced: false,
                    };
                } else {
                    let wait = backoff(
                        config.retry_seconds,
                        config.max_retry_seconds,
                        self.attempts,
                    );
                    self.next_attempt = now.saturating_add(wait).min(expires);
                }
                self.last_error = Some(why);
            }
        }
    }
}

impl Envelope {
    /// Nothing left to do: every recipient delivered or failed and bounced.
    pub fn done(&self) -> bool {
        self.recipients.iter().all(|r| match &r.state {
            State::Pending => false,
            State::Delivered => true,
            State::Failed { bounced, .. } => *bounced || self.sender.is_empty(),
        })
    }

    /// The lower-cased domain of an address.
    pub fn domain_of(address: &str) -> String {
        address
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or("")
            .trim_end_matches('.')
            .to_ascii_lowercase()
    }

    /// The pending recipients due at `now`, grouped by domain (one transaction per domain).
    pub fn due(&self, now: u64) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for r in self
            .recipients
            .iter()
            .filter(|r| r.pending() && r.next_attempt <= now)
        {
            let domain = Self::domain_of(&r.address);
            match groups.iter_mut().find(|(d, _)| *d == domain) {
                Some((_, list)) => list.push(r.address.clone()),
                None => groups.push((domain, vec![r.address.clone()])),
            }
        }
        groups
    }

    /// The earliest next attempt of a pending recipient after `now`.
    pub fn next_wake(&self, now: u64) -> Option<u64> {
        self.recipients
            .iter()
            .filter(|r| r.pending() && r.next_attempt > now)
            .map(|r| r.next_attempt)
            .min()
    }
}

/// One transaction to make: a message's pending recipients in one domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub sender: String,
    pub domain: String,
    pub recipients: Vec<String>,
}

/// Why the queue could not take or update a message.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("outbound queue: {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("outbound queue: the envelope {path} is unreadable: {source}")]
    Envelope {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> QueueError {
    let path = path.to_path_buf();
    move |source| QueueError::Io { what, path, source }
}

/// The queue: its directory, and every envelope in memory (the files are the truth; memory is
/// what the worker schedules from).
pub(crate) struct Queue {
    dir: PathBuf,
    pub config: OutboundConfig,
    entries: Mutex<HashMap<String, Envelope>>,
    /// Woken when a message is queued.
    pub wake: Notify,
    counter: AtomicU64,
}

impl Queue {
    /// Opens `<root>/.queue`, removing unfinished writes and loading every envelope.
    pub fn open(root: &Path, config: OutboundConfig) -> Result<Queue, MailError> {
        let dir = root.join(QUEUE_DIR);
        let storage = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| MailError::Storage { path, what, source }
        };
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(storage("creating the outbound queue", &tmp))?;
        for entry in std::fs::read_dir(&tmp).map_err(storage("listing the queue's tmp/", &tmp))? {
            let entry = entry.map_err(storage("listing the queue's tmp/", &tmp))?;
            tracing::info!(file = %entry.path().display(), "removing an unfinished queue write");
            std::fs::remove_file(entry.path())
                .map_err(storage("removing an unfinished queue write", &entry.path()))?;
        }
        let mut entries = HashMap::new();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(storage("listing the queue", &dir))? {
            let entry = entry.map_err(storage("listing the queue", &dir))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        for name in &names {
            let path = dir.join(name);
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A rewrite of an envelope that died before its rename: the old one stands.
                std::fs::remove_file(&path).map_err(storage("removing a staging file", &path))?;
            } else if let Some(id) = name.strip_suffix(".json") {
                let eml = dir.join(format!("{id}.eml"));
                let parsed = std::fs::read(&path)
                    .map_err(|e| QueueError::Io {
                        what: "reading",
                        path: path.clone(),
                        source: e,
                    })
                    .and_then(|bytes| {
                        serde_json::from_slice::<Envelope>(&bytes).map_err(|source| {
                            QueueError::Envelope {
                                path: path.clone(),
                                source,
                            }
                        })
                    });
                match parsed {
                    Ok(envelope) if eml.exists() && envelope.id == id => {
                        entries.insert(id.to_string(), envelope);
                    }
                    Ok(_) => tracing::error!(
                        envelope = %path.display(),
                        "a queued envelope without its message (or of another id): left alone"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "a queued message is unreadable: left alone")
                    }
                }
            }
        }
        for name in &names {
            if let Some(id) = name.strip_suffix(".eml")
                && !names.iter().any(|n| *n == format!("{id}.json"))
            {
                // Renamed in, but its envelope never was: the client never got `250`.
                let path = dir.join(name);
                tracing::info!(file = %path.display(), "removing a message that was never queued");
                std::fs::remove_file(&path)
                    .map_err(storage("removing an unacknowledged message", &path))?;
            }
        }
        sync_dir(&dir).map_err(storage("syncing the queue", &dir))?;
        if !entries.is_empty() {
            tracing::info!(messages = entries.len(), "outbound queue resumed");
        }
        Ok(Queue {
            dir,
            config,
            entries: Mutex::new(entries),
            wake: Notify::new(),
            counter: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Envelope>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages in the queue.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Bytes `user` has waiting in the queue.
    pub fn queued_bytes(&self, user: &str) -> u64 {
        self.lock()
            .values()
            .filter(|e| e.owner.as_deref() == Some(user))
            .map(|e| e.bytes)
            .sum()
    }

    /// Up to `limit` transactions due at `now` that are not in `in_flight` (message id,
    /// domain), and the earliest later attempt of the others: one pass under the lock, no copy
    /// of the envelopes.
    pub fn due(
        &self,
        now: u64,
        limit: usize,
        in_flight: &HashSet<(String, String)>,
    ) -> (Vec<Job>, Option<u64>) {
        let entries = self.lock();
        let mut jobs = Vec::new();
        let mut wake: Option<u64> = None;
        for envelope in entries.values() {
            for (domain, recipients) in envelope.due(now) {
                if jobs.len() >= limit || in_flight.contains(&(envelope.id.clone(), domain.clone()))
                {
                    continue;
                }
                jobs.push(Job {
                    id: envelope.id.clone(),
                    sender: envelope.sender.clone(),
                    domain,
                    recipients,
                });
            }
            wake = match (wake, envelope.next_wake(now)) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        (jobs, wake)
    }

    /// Every envelope (a copy).
    pub fn snapshot(&self) -> Vec<Envelope> {
        self.lock().values().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<Envelope> {
        self.lock().get(id).cloned()
    }

    pub fn message_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }

    fn envelope_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// A name unique to this message: `<secs>.<micros>.P<pid>Q<n>` (no `/`, no leading `.`).
    fn unique(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{}.{:06}.P{}Q{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Starts receiving a message into `tmp/`.
    pub async fn draft(&self) -> Result<QueueDraft, QueueError> {
        let id = self.unique();
        let path = self.dir.join("tmp").join(&id);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(io("creating", &path))?;
        Ok(QueueDraft {
            file: Some(tokio::io::BufWriter::with_capacity(64 * 1024, file)),
            path,
            id,
            bytes: 0,
            committed: false,
        })
    }

    /// Queues a finished draft for `recipients`: the message is fsynced and renamed to
    /// `<id>.eml`, then the envelope written atomically; when this returns `Ok`, both are on
    /// disk and the caller may answer `250`.
    pub async fn commit(
        &self,
        mut draft: QueueDraft,
        sender: String,
        owner: Option<String>,
        recipients: Vec<String>,
    ) -> Result<String, QueueError> {
        let file = draft.file.take();
        let Some(mut file) = file else {
            return Err(QueueError::Io {
                what: "committing a used draft",
                path: draft.path.clone(),
                source: std::io::Error::other("draft reused"),
            });
        };
        file.flush().await.map_err(io("writing", &draft.path))?;
        let file = file.into_inner();
        file.sync_all().await.map_err(io("syncing", &draft.path))?;
        drop(file);
        let now = now();
        let envelope = Envelope {
            id: draft.id.clone(),
            sender,
            owner,
            queued_at: now,
            bytes: draft.bytes,
            recipients: recipients
                .into_iter()
                .map(|a| Recipient::new(a, now))
                .collect(),
        };
        let (tmp, eml, json) = (
            draft.path.clone(),
            self.message_path(&draft.id),
            self.envelope_path(&draft.id),
        );
        let text = serde_json::to_vec_pretty(&envelope).map_err(|source| QueueError::Envelope {
            path: json.clone(),
            source,
        })?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(), QueueError> {
            std::fs::rename(&tmp, &eml).map_err(io("renaming", &eml))?;
            if let Some(parent) = tmp.parent() {
                sync_dir(parent).map_err(io("syncing", parent))?;
            }
            sync_dir(&dir).map_err(io("syncing", &dir))?;
            write_atomic(&json, &text, 0o600).map_err(|e| {
                // Not queued: the client is told 451; the message file goes too.
                let _ = std::fs::remove_file(&eml);
                io("writing", &json)(e)
            })
        })
        .await
        .map_err(|e| QueueError::Io {
            what: "queueing",
            path: self.dir.clone(),
            source: std::io::Error::other(e),
        })??;
        draft.committed = true;
        self.lock().insert(envelope.id.clone(), envelope);
        self.wake.notify_one();
        Ok(draft.id.clone())
    }

    /// Queues a whole message at once (a bounce to a remote sender).
    pub async fn enqueue(
        &self,
        bytes: &[u8],
        sender: String,
        owner: Option<String>,
        recipients: Vec<String>,
    ) -> Result<String, QueueError> {
        let mut draft = self.draft().await?;
        draft.write(bytes).await?;
        self.commit(draft, sender, owner, recipients).await
    }

    /// Rewrites an envelope atomically (after an attempt).
    pub async fn save(&self, envelope: &Envelope) -> Result<(), QueueError> {
        let json = self.envelope_path(&envelope.id);
        let text = serde_json::to_vec_pretty(envelope).map_err(|source| QueueError::Envelope {
            path: json.clone(),
            source,
        })?;
        let path = json.clone();
        tokio::task::spawn_blocking(move || write_atomic(&path, &text, 0o600))
            .await
            .map_err(|e| QueueError::Io {
                what: "writing",
                path: json.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(io("writing", &json))?;
        self.lock().insert(envelope.id.clone(), envelope.clone());
        Ok(())
    }

    /// Replaces an envelope in memory only (when writing it failed: it is not retried at once;
    /// a restart goes back to the state on disk).
    pub fn remember(&self, envelope: Envelope) {
        self.lock().insert(envelope.id.clone(), envelope);
    }

    /// Removes a finished message: the envelope first (the commit point), then the message.
    pub async fn remove(&self, id: &str) -> Result<(), QueueError> {
        let (json, eml, dir) = (
            self.envelope_path(id),
            self.message_path(id),
            self.dir.clone(),
        );
        tokio::task::spawn_blocking(move || -> Result<(), QueueError> {
            std::fs::remove_file(&json).map_err(io("removing", &json))?;
            sync_dir(&dir).map_err(io("syncing", &dir))?;
            match std::fs::remove_file(&eml) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("removing", &eml)(e)),
                _ => Ok(()),
            }
        })
        .await
        .map_err(|e| QueueError::Io {
            what: "removing",
            path: self.dir.clone(),
            source: std::io::Error::other(e),
        })??;
        self.lock().remove(id);
        Ok(())
    }
}

/// A message being received into the queue's `tmp/`; dropped without [`Queue::commit`], its
/// file is removed.
pub(crate) struct QueueDraft {
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    path: PathBuf,
    id: String,
    bytes: u64,
    committed: bool,
}

impl QueueDraft {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), QueueError> {
        match &mut self.file {
            Some(f) => {
                f.write_all(bytes)
                    .await
                    .map_err(io("writing", &self.path))?;
                self.bytes += bytes.len() as u64;
                Ok(())
            }
            None => Err(QueueError::Io {
                what: "writing a committed draft",
                path: self.path.clone(),
                source: std::io::Error::other("draft already committed"),
            }),
        }
    }
}

impl Drop for QueueDraft {
    fn drop(&mut self) {
        if !self.committed {
            self.file.take();
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> OutboundConfig {
        OutboundConfig {
            routes: Vec::new(),
            relay: None,
            retry_seconds: 300,
            max_retry_seconds: 3600,
            lifetime_seconds: 5 * 24 * 3600,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let waits: Vec<u64> = (1..=7).map(|n| backoff(300, 3600, n)).collect();
        assert_eq!(waits, [300, 600, 1200, 2400, 3600, 3600, 3600]);
        assert_eq!(backoff(1, 8, 100), 8, "no overflow after many attempts");
        assert_eq!(backoff(0, 0, 1), 1, "never a busy loop");
        assert_eq!(
            backoff(600, 60, 1),
            600,
            "a cap below the first wait is the first wait"
        );
    }

    #[test]
    fn transitions_are_final_and_expire_at_the_lifetime() {
        let c = config();
        let mut r = Recipient::new("carol@b.example".into(), 1000);
        r.apply(Attempt::Temporary("421 busy".into()), 1000, 1000, &c);
        assert!(r.pending());
        assert_eq!((r.attempts, r.next_attempt), (1, 1300));
        r.apply(Attempt::Temporary("421 busy".into()), 1300, 1000, &c);
        assert_eq!((r.attempts, r.next_attempt), (2, 1900));
        r.apply(Attempt::Delivered, 1900, 1000, &c);
        assert_eq!(r.state, State::Delivered);
        r.apply(
            Attempt::Permanent {
                status: "5.1.1".into(),
                diagnostic: "x".into(),
            },
            2000,
            1000,
            &c,
        );
        assert_eq!(
            r.state,
            State::Delivered,
            "a delivered recipient never changes"
        );

        let mut late = Recipient::new("dave@b.example".into(), 0);
        let short = OutboundConfig {
            lifetime_seconds: 500,
            ..config()
        };
        late.apply(
            Attempt::Temporary("connection refused".into()),
            400,
            0,
            &short,
        );
        assert_eq!(
            late.next_attempt, 500,
            "the last try is at the end of the lifetime"
        );
        late.apply(
            Attempt::Temporary("connection refused".into()),
            500,
            0,
            &short,
        );
        match &late.state {
            State::Failed {
                status,
                diagnostic,
                bounced,
            } => {
                assert_eq!(status, EXPIRED_STATUS);
                assert!(diagnostic.contains("connection refused"));
                assert!(!bounced);
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn due_groups_by_domain_and_done_needs_bounces() {
        let mut e = Envelope {
            id: "1".into(),
            sender: "alice@a.example".into(),
            owner: Some("alice".into()),
            queued_at: 0,
            bytes: 10,
            recipients: vec![
                Recipient::new("carol@B.example".into(), 0),
                Recipient::new("dave@b.example".into(), 0),
                Recipient::new("erin@c.example".into(), 50),
            ],
        };
        assert_eq!(
            e.due(10),
            vec![(
                "b.example".to_string(),
                vec!["carol@B.example".to_string(), "dave@b.example".to_string()]
            )]
        );
        assert_eq!(e.next_wake(10), Some(50), "the due ones are not waited for");
        e.recipients[2].state = State::Delivered;
        assert_eq!(e.next_wake(10), None);
        e.recipients[2] = Recipient::new("erin@c.example".into(), 50);
        e.recipients[0].state = State::Delivered;
        e.recipients[1].state = State::Delivered;
        e.recipients[2].state = State::Failed {
            status: "5.1.1".into(),
            diagnostic: "no".into(),
            bounced: false,
        };
        assert!(!e.done(), "a failure waits for its bounce");
        if let State::Failed { bounced, .. } = &mut e.recipients[2].state {
            *bounced = true;
        }
        assert!(e.done());
    }

    #[tokio::test]
    async fn due_jobs_respect_the_limit_and_what_is_in_flight() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queue = Queue::open(dir.path(), config()).expect("open");
        let mut ids = Vec::new();
        for to in [vec!["x@b.example", "y@B.example"], vec!["z@c.example"]] {
            let id = queue
                .enqueue(
                    b"Subject: s\r\n\r\n",
                    "alice@a.example".into(),
                    Some("alice".into()),
                    to.into_iter().map(String::from).collect(),
                )
                .await
                .expect("enqueue");
            ids.push(id);
        }
        let now = now();
        let (jobs, wake) = queue.due(now, 4, &HashSet::new());
        assert_eq!(jobs.len(), 2, "{jobs:?}");
        assert_eq!(wake, None, "everything is due");
        let b = jobs.iter().find(|j| j.domain == "b.example").expect("b");
        assert_eq!(b.recipients, ["x@b.example", "y@B.example"]);
        assert_eq!(queue.due(now, 1, &HashSet::new()).0.len(), 1, "the limit");
        let busy: HashSet<(String, String)> = [(b.id.clone(), "b.example".to_string())].into();
        let (jobs, _) = queue.due(now, 4, &busy);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].domain, "c.example", "in flight is not given twice");
        let mut later = queue.get(&ids[1]).expect("queued");
        later.recipients[0].next_attempt = now + 100;
        queue.remember(later);
        assert_eq!(queue.due(now, 4, &busy), (Vec::new(), Some(now + 100)));
    }

    #[tokio::test]
    async fn accepted_is_on_disk_and_resumes_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        let queue = Queue::open(root, config()).expect("open");
        let id = queue
            .enqueue(
                b"Subject: hi\r\n\r\nbody\r\n",
                "alice@a.example".into(),
                Some("alice".into()),
                vec!["carol@b.example".into()],
            )
            .await
            .expect("enqueue");
        assert_eq!(queue.queued_bytes("alice"), 21);
        // A draft that never finished, and a message renamed in without its envelope.
        let mut unfinished = queue.draft().await.expect("draft");
        unfinished.write(b"half").await.expect("write");
        std::mem::forget(unfinished);
        std::fs::write(root.join(".queue/999.eml"), b"never acknowledged").expect("write");
        let mut envelope = queue.get(&id).expect("queued");
        envelope.recipients[0].state = State::Delivered;
        queue.save(&envelope).await.expect("save");
        drop(queue);

        let again = Queue::open(root, config()).expect("reopen");
        assert_eq!(again.get(&id), Some(envelope), "the saved state is back");
        assert!(!root.join(".queue/999.eml").exists());
        assert_eq!(
            std::fs::read_dir(root.join(".queue/tmp"))
                .expect("tmp")
                .count(),
            0
        );
        assert_eq!(
            std::fs::read(again.message_path(&id)).expect("message"),
            b"Subject: hi\r\n\r\nbody\r\n"
        );
        // The store and the quota walk leave the queue alone: it is not a mailbox.
        let store = crate::store::Store::open(root.to_path_buf(), "host", &["alice".into()])
            .expect("the store opens beside the queue");
        drop(store);
        assert!(again.message_path(&id).exists());
        let quota = crate::quota::Quota::new(root.to_path_buf(), Some(1000));
        assert_eq!(
            quota.used("alice").await,
            0,
            "queued bytes are not in the Maildir walk"
        );
        again.remove(&id).await.expect("remove");
        assert_eq!(again.len(), 0);
        assert!(!again.message_path(&id).exists());
    }
}
