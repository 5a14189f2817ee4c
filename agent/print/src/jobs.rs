//! The job queue: the job list in `spool_dir/jobs.json` (rewritten atomically after every
//! change) and the spooled documents beside it (`<job-id>.doc`).
//!
//! A restart keeps finished jobs listed; a job that was waiting for its document or being
//! received becomes aborted ("interrupted by a restart") and its spooled document is removed.
//! At most `max_jobs` jobs are kept: the oldest finished ones are forgotten first, and a new job
//! is refused while every kept job is unfinished.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::document::Format;

/// The file of the job list in the spool folder.
pub const LIST: &str = "jobs.json";

/// RFC 8011 job states (the values are the enum's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Created, waiting for its document (Create-Job).
    Pending = 3,
    /// Its document is arriving or being printed.
    Processing = 5,
    Canceled = 7,
    Aborted = 8,
    Completed = 9,
}

impl State {
    pub fn finished(self) -> bool {
        matches!(self, State::Canceled | State::Aborted | State::Completed)
    }
}

/// One job.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: i32,
    /// `job-name` as shown (control characters dropped, bounded).
    pub name: String,
    /// `job-originating-user-name`.
    pub user: String,
    pub state: State,
    /// The `job-state-reasons` keyword.
    pub reason: String,
    /// `job-state-message`.
    pub message: String,
    /// The `document-format` the client declared (or `application/octet-stream`).
    pub declared_format: String,
    /// The format printed, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Unix seconds.
    pub created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<u64>,
    /// Document bytes received.
    pub bytes: u64,
    /// The printout's file name in the output folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printout: Option<String>,
    /// Who sent it, for the cap on unfinished jobs per sender ([`Queue::unfinished_from`]):
    /// the user with a users file, else the client's address. Not kept across restarts (which
    /// finish every job).
    #[serde(skip)]
    pub origin: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Persisted {
    next_id: i32,
    /// The printer's `printer-uuid`, made once.
    uuid: String,
    jobs: Vec<Job>,
}

/// Why the queue could not be opened or saved.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("print role: the spool folder {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("print role: the job list {path} is unreadable: {source}")]
    List {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("print role: no randomness for the printer's uuid: {0}")]
    Random(String),
}

/// Why a job was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The job list and where it lives.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    /// The output folder: a forgotten job's printout is removed from it.
    printouts: PathBuf,
    max_jobs: usize,
    state: Persisted,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Queue {
    /// Opens (or creates) the queue of `dir`, whose printouts are in `printouts`; jobs a stop
    /// interrupted become aborted and their spooled documents are removed. Returns the queue
    /// and the ids it aborted.
    pub fn open(
        dir: &Path,
        printouts: &Path,
        max_jobs: usize,
    ) -> Result<(Queue, Vec<i32>), QueueError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(LIST);
        let mut state = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<Persisted>(&bytes).map_err(|source| QueueError::List {
                    path: path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted {
                next_id: 1,
                uuid: new_uuid()?,
                jobs: Vec::new(),
            },
            Err(e) => return Err(io(&path)(e)),
        };
        let mut aborted = Vec::new();
        for job in &mut state.jobs {
            if !job.state.finished() {
                job.state = State::Aborted;
                job.reason = "aborted-by-system".to_string();
                job.message = "interrupted by a restart of the printer".to_string();
                job.finished = Some(now());
                aborted.push(job.id);
            }
        }
        state.next_id = state
            .next_id
            .max(
                state
                    .jobs
                    .iter()
                    .map(|j| j.id.saturating_add(1))
                    .max()
                    .unwrap_or(1),
            )
            .max(1);
        // Ids go on after the printouts in the folder, also when the job list was lost: a new
        // job never takes the id (and the URI, `/printouts/<id>`) of an earlier one's printout.
        if let Ok(entries) = std::fs::read_dir(printouts) {
            let last = entries
                .filter_map(Result::ok)
                .filter_map(|e| crate::document::printout_id(e.file_name().to_str()?))
                .max();
            if let Some(last) = last {
                state.next_id = state.next_id.max(last.saturating_add(1));
            }
        }
        // Spooled documents of no unfinished job: the aborted ones', and any a crash left.
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.ends_with(".doc")) {
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        let mut queue = Queue {
            dir: dir.to_path_buf(),
            printouts: printouts.to_path_buf(),
            max_jobs: max_jobs.max(1),
            state,
        };
        queue.trim();
        queue.save_now()?;
        Ok((queue, aborted))
    }

    pub fn uuid(&self) -> &str {
        &self.state.uuid
    }

    pub fn jobs(&self) -> &[Job] {
        &self.state.jobs
    }

    pub fn get(&self, id: i32) -> Option<&Job> {
        self.state.jobs.iter().find(|j| j.id == id)
    }

    pub fn get_mut(&mut self, id: i32) -> Option<&mut Job> {
        self.state.jobs.iter_mut().find(|j| j.id == id)
    }

    /// Jobs not finished.
    pub fn queued(&self) -> usize {
        self.state
            .jobs
            .iter()
            .filter(|j| !j.state.finished())
            .count()
    }

    /// Where a job's document is spooled.
    pub fn spool_path(&self, id: i32) -> PathBuf {
        self.dir.join(format!("{id}.doc"))
    }

    /// Forgets the oldest finished jobs while the list is over its bound, and their printouts
    /// with them: the output folder holds at most `max_jobs` printouts, whatever anyone prints.
    fn trim(&mut self) {
        while self.state.jobs.len() > self.max_jobs {
            match self.state.jobs.iter().position(|j| j.state.finished()) {
                Some(i) => {
                    let job = self.state.jobs.remove(i);
                    if let Some(name) = job.printout {
                        self.remove_printout(&name);
                    }
                }
                None => break,
            }
        }
    }

    /// Removes the printout `name` (a plain file name, as the list holds it) from the output
    /// folder; one already gone (a share user took it) is fine.
    fn remove_printout(&self, name: &str) {
        if Path::new(name).file_name().and_then(|n| n.to_str()) != Some(name) {
            tracing::warn!(
                name,
                "print role: a printout name in the job list is not a file name; left alone"
            );
            return;
        }
        let path = self.printouts.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "print role: a forgotten job's printout could not be removed")
            }
        }
    }

    /// How many unfinished jobs `origin` has.
    pub fn unfinished_from(&self, origin: &str) -> usize {
        self.state
            .jobs
            .iter()
            .filter(|j| !j.state.finished() && j.origin.as_deref() == Some(origin))
            .count()
    }

    /// The most unfinished jobs one sender may have: a quarter of the queue (at least 1), so
    /// one sender cannot take every place.
    pub fn per_origin(&self) -> usize {
        (self.max_jobs / 4).max(1)
    }

    /// Aborts the jobs made by Create-Job whose document has not begun to arrive by `before`
    /// (unix seconds), as CUPS does after its `MultipleOperationTimeout`: a client that makes
    /// jobs and sends nothing cannot keep their places. Returns their ids.
    pub fn expire_incoming(&mut self, before: u64) -> Vec<i32> {
        let mut expired = Vec::new();
        for job in &mut self.state.jobs {
            if job.state == State::Pending && job.created < before {
                job.state = State::Aborted;
                job.reason = "aborted-by-system".to_string();
                job.message = "no document arrived in time after Create-Job".to_string();
                job.finished = Some(now());
                expired.push(job.id);
            }
        }
        expired
    }

    /// Whether a new job would fit (forgetting finished ones as needed).
    pub fn has_room(&self) -> bool {
        self.state.jobs.len() < self.max_jobs || self.state.jobs.iter().any(|j| j.state.finished())
    }

    /// A new job in `state`, or [`Full`] when every kept job is unfinished.
    pub fn create(
        &mut self,
        name: String,
        user: String,
        declared_format: String,
        state: State,
        origin: Option<String>,
    ) -> Result<i32, Full> {
        if !self.has_room() {
            return Err(Full);
        }
        // Ids wrap after i32::MAX to 1; one a kept job has is skipped (at most `max_jobs`).
        let next = |id: i32| id.checked_add(1).unwrap_or(1);
        let mut id = self.state.next_id.max(1);
        while self.get(id).is_some() {
            id = next(id);
        }
        self.state.next_id = next(id);
        let reason = match state {
            State::Pending => "job-incoming",
            _ => "job-printing",
        };
        self.state.jobs.push(Job {
            id,
            name,
            user,
            state,
            reason: reason.to_string(),
            message: String::new(),
            declared_format,
            format: None,
            created: now(),
            processing: (state == State::Processing).then(now),
            origin,
            finished: None,
            bytes: 0,
            printout: None,
        });
        // The new job is unfinished: trimming forgets a finished one if the list is over.
        self.trim();
        Ok(id)
    }

    /// Ends a job: `state` with its reason and message.
    pub fn finish(&mut self, id: i32, state: State, reason: &str, message: String) {
        if let Some(job) = self.get_mut(id) {
            job.state = state;
            job.reason = reason.to_string();
            job.message = message;
            job.finished = Some(now());
        }
    }

    /// The bytes of the job list, for [`save`].
    pub fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.state).unwrap_or_default()
    }

    /// Writes the job list now (blocking).
    pub fn save_now(&self) -> Result<(), QueueError> {
        save(&self.dir, &self.snapshot())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Writes a job list snapshot into `dir` atomically and durably (blocking).
pub fn save(dir: &Path, bytes: &[u8]) -> Result<(), QueueError> {
    let path = dir.join(LIST);
    hostrole_agent_core::fsutil::write_atomic(&path, bytes, 0o600).map_err(io(&path))
}

fn new_uuid() -> Result<String, QueueError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| QueueError::Random(e.to_string()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_aborts_unfinished_jobs_and_removes_their_documents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut q, _) = Queue::open(dir.path(), dir.path(), 10).expect("opens");
        let uuid = q.uuid().to_string();
        let done = q
            .create(
                "a".into(),
                "u".into(),
                "application/pdf".into(),
                State::Processing,
                None,
            )
            .expect("room");
        q.finish(
            done,
            State::Completed,
            "job-completed-successfully",
            String::new(),
        );
        let waiting = q
            .create(
                "b".into(),
                "u".into(),
                "application/pdf".into(),
                State::Pending,
                None,
            )
            .expect("room");
        std::fs::write(q.spool_path(waiting), b"%PDF-").expect("spool");
        q.save_now().expect("saves");
        drop(q);
        let (q, aborted) = Queue::open(dir.path(), dir.path(), 10).expect("reopens");
        assert_eq!(aborted, vec![waiting]);
        assert_eq!(q.uuid(), uuid, "the printer keeps its uuid");
        assert_eq!(q.get(done).map(|j| j.state), Some(State::Completed));
        let job = q.get(waiting).expect("listed");
        assert_eq!(job.state, State::Aborted);
        assert!(job.message.contains("restart"));
        assert!(!q.spool_path(waiting).exists());
        let (mut q, _) = Queue::open(dir.path(), dir.path(), 10).expect("reopens");
        let next = q
            .create("c".into(), "u".into(), "x".into(), State::Pending, None)
            .expect("room");
        assert!(next > waiting, "ids are never reused");
    }

    #[test]
    fn ids_go_on_after_the_printouts_when_the_job_list_is_lost_and_skip_kept_jobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (spool, out) = (dir.path().join("queue"), dir.path().join("out"));
        std::fs::create_dir_all(&out).expect("out");
        std::fs::write(out.join("41-report.pdf"), b"%PDF-").expect("printout");
        std::fs::write(out.join("7-old-2.jpg"), b"x").expect("printout");
        std::fs::write(out.join("notes.txt"), b"x").expect("a user's file");
        let (mut q, _) = Queue::open(&spool, &out, 10).expect("opens");
        let id = q
            .create("a".into(), "u".into(), "x".into(), State::Pending, None)
            .expect("room");
        assert_eq!(id, 42, "the list was lost: ids go on after 41-report.pdf");

        // A share's user can put `2147483647-x` in the folder: ids wrap to 1, past kept jobs.
        std::fs::write(out.join("2147483647-x.pdf"), b"x").expect("file");
        drop(q);
        let (mut q, _) = Queue::open(&spool, &out, 10).expect("reopens");
        let last = q
            .create("b".into(), "u".into(), "x".into(), State::Pending, None)
            .expect("room");
        assert_eq!(last, i32::MAX);
        let wrapped = q
            .create("c".into(), "u".into(), "x".into(), State::Pending, None)
            .expect("room");
        assert_eq!(wrapped, 1);
        q.state.next_id = 1;
        let skipped = q
            .create("d".into(), "u".into(), "x".into(), State::Pending, None)
            .expect("room");
        assert_eq!(skipped, 2, "1 is a kept job's");
        assert_eq!(q.get(1).map(|j| j.name.as_str()), Some("c"));
    }

    #[test]
    fn jobs_without_a_document_expire_and_each_sender_holds_a_quarter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut q, _) = Queue::open(dir.path(), dir.path(), 8).expect("opens");
        assert_eq!(q.per_origin(), 2);
        let from = |who: &str| Some(who.to_string());
        let a = q
            .create(
                "a".into(),
                "u".into(),
                "x".into(),
                State::Pending,
                from("10.0.0.9"),
            )
            .expect("room");
        let b = q
            .create(
                "b".into(),
                "u".into(),
                "x".into(),
                State::Processing,
                from("10.0.0.9"),
            )
            .expect("room");
        q.create(
            "c".into(),
            "u".into(),
            "x".into(),
            State::Pending,
            from("alice"),
        )
        .expect("room");
        assert_eq!(q.unfinished_from("10.0.0.9"), 2);
        assert_eq!(q.unfinished_from("alice"), 1);
        // An hour later: the job still waiting for its document goes, the one printing stays.
        for job in &mut q.state.jobs {
            job.created -= 3_600;
        }
        let expired = q.expire_incoming(now() - 300);
        assert_eq!(expired.len(), 2, "a and c");
        assert!(expired.contains(&a));
        assert_eq!(q.get(a).map(|j| j.state), Some(State::Aborted));
        assert_eq!(q.get(b).map(|j| j.state), Some(State::Processing));
        assert_eq!(q.unfinished_from("10.0.0.9"), 1);
        assert!(q.expire_incoming(now() - 300).is_empty());
    }

    #[test]
    fn the_oldest_finished_jobs_are_forgotten_and_a_full_queue_refuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut q, _) = Queue::open(dir.path(), dir.path(), 2).expect("opens");
        let a = q
            .create("a".into(), "u".into(), "x".into(), State::Processing, None)
            .expect("room");
        q.finish(
            a,
            State::Completed,
            "job-completed-successfully",
            String::new(),
        );
        let b = q
            .create("b".into(), "u".into(), "x".into(), State::Pending, None)
            .expect("room");
        let c = q
            .create("c".into(), "u".into(), "x".into(), State::Pending, None)
            .expect("room");
        assert!(q.get(a).is_none(), "the finished job is forgotten first");
        assert!(q.get(b).is_some() && q.get(c).is_some());
        assert_eq!(
            q.create("d".into(), "u".into(), "x".into(), State::Pending, None),
            Err(Full)
        );
    }
}
