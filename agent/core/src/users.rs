//! User accounts shared by the roles that log users in (file, mail).
//!
//! The users file holds one account a line, `name:hash` or `name:hash:ro` for a read-only user,
//! where `hash` is an Argon2 PHC string (`$argon2id$…`, e.g. from `hostrole-agent hash-password`)
//! or a bcrypt hash (`$2b$…`, `$2y$…`, e.g. from `htpasswd -nbB`). Blank lines and `#` comments
//! are skipped. Passwords are never stored in clear.
//!
//! Checking a password is expensive on purpose (Argon2 with the default parameters takes
//! 19 MiB and tens of milliseconds), so [`Users::check`] is what every role calls: at most
//! [`MAX_CONCURRENT_CHECKS`] hashes run at once in the whole agent (further logins wait for a
//! turn, holding no memory), failures back off per client address and per account
//! ([`throttle`]), and an unknown name is checked against a dummy hash so that it takes as
//! long as a wrong password.

pub mod throttle;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::net::ClientKey;
use throttle::{Admission, Throttle};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};

/// Why a users file was refused.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read the users file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: {problem} (expected `name:hash` or `name:hash:ro`, hash from `hostrole-agent hash-password` or `htpasswd -nbB`)"
    )]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// One account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub read_only: bool,
}

#[derive(Debug, Clone)]
struct Account {
    hash: String,
    read_only: bool,
}

/// The accounts of one role.
#[derive(Debug, Clone, Default)]
pub struct Users {
    accounts: BTreeMap<String, Account>,
    throttle: Arc<Throttle>,
}

/// Password hashes computed at once in the whole agent. Argon2 with the default parameters
/// takes 19 MiB each: two keep a 256 MiB pod far from its limit whatever the number of
/// parallel logins, and still check ~20 passwords a second in a release build.
pub const MAX_CONCURRENT_CHECKS: usize = 2;
static CHECKS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_CHECKS);

/// The threads that hash passwords: [`MAX_CONCURRENT_CHECKS`] of them, always the same. On
/// tokio's blocking pool each check could land on a new thread, and glibc gives each thread its
/// own malloc arena that keeps a freed 19 MiB Argon2 buffer for the next use: 48 parallel
/// logins left ~570 MiB resident although only two ran at a time. Two threads keep two.
struct Hasher {
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Hasher {
    fn start() -> Hasher {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for i in 0..MAX_CONCURRENT_CHECKS {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    loop {
                        // Hold the lock only to take a job, not to run it.
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return, // the agent is exiting
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password-hashing thread");
            }
        }
        Hasher {
            jobs: std::sync::Mutex::new(jobs),
        }
    }

    /// Queues a job; it runs when one of the threads is free.
    fn run(&self, job: Job) {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(std::sync::mpsc::SendError(job)) = jobs.send(job) {
            // No thread could be started: hash here rather than never.
            job();
        }
    }
}

fn hasher() -> &'static Hasher {
    static HASHER: std::sync::OnceLock<Hasher> = std::sync::OnceLock::new();
    HASHER.get_or_init(Hasher::start)
}

/// Checked for an unknown name, so that it costs what a wrong password costs (no timing
/// oracle for valid names). The Argon2 defaults, as `hash-password` writes them.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$24fSI23Glv960GYB4KL8Og$Wp/XsooRe/5uAcR6M0HfBk6FYxECAx9L2GecBtWzGPU";

/// The result of [`Users::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Valid(User),
    /// Wrong name or password.
    Invalid,
    /// Too many recent failures from this client or on this account: refused unchecked.
    Throttled,
}

impl Users {
    /// No accounts at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads a users file.
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses the text of a users file; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, UsersError> {
        let mut accounts = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |problem: &str| UsersError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                problem: problem.to_string(),
            };
            let (name, rest) = line
                .split_once(':')
                .ok_or_else(|| bad("no ':' after the name"))?;
            let (hash, flags) = match rest.rsplit_once(':') {
                Some((hash, flag)) if flag == "ro" || flag == "rw" => (hash, flag),
                _ => (rest, "rw"),
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(bad("a name holds only letters, digits, '.', '_' and '-'"));
            }
            let known = hash.starts_with("$argon2")
                || hash.starts_with("$2a$")
                || hash.starts_with("$2b$")
                || hash.starts_with("$2y$");
            if !known {
                return Err(bad(
                    "the hash is not Argon2 or bcrypt (clear-text passwords are refused)",
                ));
            }
            let complete = |h: PasswordHash| h.salt.is_some() && h.hash.is_some();
            if hash.starts_with("$argon2") && !PasswordHash::new(hash).is_ok_and(complete) {
                return Err(bad("the Argon2 hash is malformed"));
            }
            if accounts.contains_key(name) {
                return Err(bad("the name appears twice"));
            }
            accounts.insert(
                name.to_string(),
                Account {
                    hash: hash.to_string(),
                    read_only: flags == "ro",
                },
            );
        }
        Ok(Self {
            accounts,
            throttle: Arc::default(),
        })
    }

    /// Checks a name and password for `client` (its address, when known): waits for its turn
    /// (backoff after failures, then one of the agent's few hashing slots) and hashes off the
    /// async threads. Use this, not [`Users::verify`], on every login path.
    pub async fn check(
        self: &Arc<Self>,
        client: Option<ClientKey>,
        name: &str,
        password: &str,
    ) -> Check {
        match self.throttle.admit(client, name, Instant::now()) {
            Admission::Refuse => return Check::Throttled,
            Admission::After(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
            Admission::After(_) => {}
        }
        let Ok(permit) = CHECKS.acquire().await else {
            return Check::Invalid; // the semaphore is never closed
        };
        let users = self.clone();
        let (n, p) = (name.to_string(), password.to_string());
        let (reply, answer) = tokio::sync::oneshot::channel();
        // The permit moves into the job: a caller that gives up (a closed connection) does not
        // free the slot before the hash is done.
        hasher().run(Box::new(move || {
            #[cfg(test)]
            {
                use std::sync::atomic::Ordering::SeqCst;
                PEAK.fetch_max(RUNNING.fetch_add(1, SeqCst) + 1, SeqCst);
            }
            let user = users.verify(&n, &p);
            #[cfg(test)]
            RUNNING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            drop(permit);
            let _ = reply.send(user);
        }));
        let user = answer.await.ok().flatten();
        self.throttle
            .record(client, name, user.is_some(), Instant::now());
        match user {
            Some(user) => Check::Valid(user),
            None => Check::Invalid,
        }
    }

    /// Checks a name and password now, on this thread (slow on purpose: see [`Users::check`]);
    /// the user when they match. An unknown name is checked against a dummy hash.
    pub fn verify(&self, name: &str, password: &str) -> Option<User> {
        let Some(account) = self.accounts.get(name) else {
            let _ = argon2_matches(DUMMY_HASH, password);
            return None;
        };
        let ok = if account.hash.starts_with("$argon2") {
            argon2_matches(&account.hash, password)
        } else {
            bcrypt::verify(password, &account.hash).unwrap_or(false)
        };
        ok.then(|| User {
            name: name.to_string(),
            read_only: account.read_only,
        })
    }

    /// Whether an account of that name exists (e.g. a local mailbox).
    pub fn exists(&self, name: &str) -> bool {
        self.accounts.contains_key(name)
    }

    /// Every account name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.accounts.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

#[cfg(test)]
thread_local! {
    /// Argon2 hashes computed on this thread (tests).
    static HASHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
#[cfg(test)]
static RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// The most hashes [`Users::check`] ran at once (tests).
#[cfg(test)]
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn argon2_matches(hash: &str, password: &str) -> bool {
    #[cfg(test)]
    HASHES.with(|h| h.set(h.get() + 1));
    argon2_check(hash, password).unwrap_or(false)
}

thread_local! {
    /// Argon2's working memory (19 MiB with the default parameters), kept by each hashing
    /// thread for the next check: allocated and freed per check, glibc kept the freed buffers
    /// in per-thread arenas and 48 checks left ~300 MiB resident.
    static ARGON2_MEMORY: std::cell::RefCell<Vec<argon2::Block>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Most Argon2 memory a hashing thread keeps between checks; a users file with a costlier hash
/// gets a buffer of its own for each check.
const KEEP_ARGON2_BLOCKS: usize = 64 * 1024;

/// Verifies `password` against an Argon2 PHC string in the thread's kept working memory.
fn argon2_check(hash: &str, password: &str) -> Option<bool> {
    let parsed = PasswordHash::new(hash).ok()?;
    let expected = parsed.hash?;
    let mut salt_buf = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt_buf).ok()?;
    let algorithm = argon2::Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(v) => argon2::Version::try_from(v).ok()?,
        None => argon2::Version::default(),
    };
    let params = argon2::Params::try_from(&parsed).ok()?;
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let hashed = if blocks <= KEEP_ARGON2_BLOCKS {
        ARGON2_MEMORY.with(|memory| {
            let mut memory = memory.borrow_mut();
            if memory.len() < blocks {
                memory.resize(blocks, argon2::Block::default());
            }
            argon.hash_password_into_with_memory(
                password.as_bytes(),
                salt,
                &mut out,
                &mut memory[..blocks],
            )
        })
    } else {
        argon.hash_password_into(password.as_bytes(), salt, &mut out)
    };
    hashed.ok()?;
    // `Output`'s equality is constant-time.
    let got = argon2::password_hash::Output::new(&out).ok()?;
    Some(got == expected)
}

/// An Argon2id hash of `password` for a users file.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_name_costs_a_hash_like_a_wrong_password() {
        let argon = hash_password("s3cret").expect("hash");
        let users = Users::parse(&format!("alice:{argon}\n"), Path::new("users")).expect("valid");
        let before = HASHES.with(|h| h.get());
        assert_eq!(users.verify("nobody", "s3cret"), None);
        assert_eq!(
            HASHES.with(|h| h.get()),
            before + 1,
            "an unknown name must be hashed too, or its quick answer tells names apart"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_checks_never_run_more_hashes_than_the_bound() {
        let argon = hash_password("s3cret").expect("hash");
        let users =
            Arc::new(Users::parse(&format!("alice:{argon}\n"), Path::new("users")).expect("valid"));
        let mut tasks = Vec::new();
        for i in 0..12u8 {
            let users = users.clone();
            // Distinct addresses and names: no backoff, only the bound.
            let client = Some(ClientKey::of(std::net::IpAddr::from([10, 0, 0, i])));
            tasks.push(tokio::spawn(async move {
                users.check(client, &format!("u{i}"), "guess").await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("task"), Check::Invalid);
        }
        let peak = PEAK.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            (1..=MAX_CONCURRENT_CHECKS).contains(&peak),
            "at most {MAX_CONCURRENT_CHECKS} hashes at once, saw {peak}"
        );
    }

    #[test]
    fn argon2_and_bcrypt_accounts_verify_and_read_only_is_kept() {
        let argon = hash_password("s3cret").expect("hash");
        let bcrypt = bcrypt::hash("hunter2", 4).expect("bcrypt");
        let text = format!("# users\nalice:{argon}\nbob:{bcrypt}:ro\n\n");
        let users = Users::parse(&text, Path::new("users")).expect("valid");
        assert_eq!(
            users.verify("alice", "s3cret"),
            Some(User {
                name: "alice".into(),
                read_only: false
            })
        );
        assert_eq!(
            users.verify("bob", "hunter2"),
            Some(User {
                name: "bob".into(),
                read_only: true
            })
        );
        assert_eq!(users.verify("alice", "wrong"), None);
        assert_eq!(users.verify("carol", "s3cret"), None);
        assert!(users.exists("bob") && !users.exists("carol"));
    }

    #[test]
    fn clear_text_and_malformed_lines_are_refused_with_the_line_number() {
        for (text, problem) in [
            ("alice:plain-password\n", "clear-text passwords are refused"),
            ("alice\n", "no ':'"),
            (
                "al ice:$2b$04$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0\n",
                "a name holds only",
            ),
            ("alice:$argon2id$nonsense\n", "malformed"),
        ] {
            let err = Users::parse(&format!("# c\n{text}"), Path::new("u")).expect_err(text);
            let msg = err.to_string();
            assert!(msg.contains("u:2:") && msg.contains(problem), "{msg}");
        }
        let argon = hash_password("x").expect("hash");
        let dup = format!("a:{argon}\na:{argon}\n");
        assert!(
            Users::parse(&dup, Path::new("u"))
                .expect_err("dup")
                .to_string()
                .contains("twice")
        );
    }
}
