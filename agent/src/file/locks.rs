//! WebDAV locks (class 2): dav-server's in-memory `MemLs`, plus what a shared share needs around it.
//!
//! - **Locks expire.** `MemLs` records a lock's timeout but never acts on it, and a LOCK without a
//!   `Timeout` (or with `Infinite`) got a lock that lasted until restart. Here every lock lasts at
//!   most [`MAX_TIMEOUT`] after it was taken or last refreshed, and expired locks are dropped
//!   before any lock is looked at.
//! - **A lock belongs to the user who took it.** dav-server checks the principal when a token is
//!   submitted, but its UNLOCK does not, and tokens are public (`lockdiscovery`): here a handle
//!   acts for one user ([`ShareLs::for_user`]) and unlocks only that user's locks.
//! - **A user holds at most [`MAX_LOCKS_PER_USER`] locks**, so no account can grow the lock table
//!   without bound.
//!
//! Locks live in memory (as with `MemLs`): a restart releases them, which clients survive (they
//! see 412 on refresh and lock again).

use hostrole_agent_core::metrics::Reason;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use dav_server::davpath::DavPath;
use dav_server::ls::{DavLock, DavLockSystem, LsFuture};
use dav_server::memls::MemLs;
use xmltree::Element;

/// The longest a lock lasts without a refresh (dav-server's own cap for exclusive locks; davfs2
/// refreshes well within it, Windows and Office ask for less or refresh).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Locks one user may hold at once.
pub const MAX_LOCKS_PER_USER: usize = 256;

/// A lock as this layer tracks it.
#[derive(Debug, Clone)]
struct Held {
    path: DavPath,
    owner: Option<String>,
    expires: SystemTime,
}

/// The share's lock system: one per share, cloned per request with [`ShareLs::for_user`].
#[derive(Debug, Clone)]
pub struct ShareLs {
    inner: Box<MemLs>,
    held: Arc<Mutex<HashMap<String, Held>>>,
    /// The user this handle acts for (`None`: anonymous).
    user: Option<String>,
}

/// Why a lock is refused before dav-server sees the request.
#[derive(Debug, PartialEq, Eq)]
pub enum LockRefusal {
    /// The user holds [`MAX_LOCKS_PER_USER`] locks.
    TooMany,
    /// The token names another user's lock.
    NotYours,
}

impl LockRefusal {
    /// The metric reason.
    pub fn reason(&self) -> Reason {
        match self {
            LockRefusal::TooMany => Reason::TooManyLocks,
            LockRefusal::NotYours => Reason::LockNotYours,
        }
    }
}

impl axum::response::IntoResponse for LockRefusal {
    fn into_response(self) -> axum::response::Response {
        match self {
            LockRefusal::TooMany => (
                http::StatusCode::INSUFFICIENT_STORAGE,
                format!(
                    "this account holds {MAX_LOCKS_PER_USER} locks, the most it may: unlock some or let them expire\n"
                ),
            ),
            LockRefusal::NotYours => (
                http::StatusCode::FORBIDDEN,
                "this lock belongs to another user\n".to_string(),
            ),
        }
        .into_response()
    }
}

impl ShareLs {
    pub fn new() -> Self {
        Self {
            inner: MemLs::new(),
            held: Arc::default(),
            user: None,
        }
    }

    /// A handle acting for `user`.
    pub fn for_user(&self, user: Option<&str>) -> Box<dyn DavLockSystem> {
        let mut handle = self.clone();
        handle.user = user.map(str::to_string);
        Box::new(handle)
    }

    /// Whether `user` may take one more lock.
    pub fn may_lock(&self, user: Option<&str>) -> Result<(), LockRefusal> {
        self.sweep();
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.values().filter(|h| h.owner.as_deref() == user).count() >= MAX_LOCKS_PER_USER {
            return Err(LockRefusal::TooMany);
        }
        Ok(())
    }

    /// Whether `user` may release the lock `token` (an unknown token is for dav-server to answer).
    pub fn may_unlock(&self, user: Option<&str>, token: &str) -> Result<(), LockRefusal> {
        self.sweep();
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.get(token) {
            Some(h) if h.owner.as_deref() != user => Err(LockRefusal::NotYours),
            _ => Ok(()),
        }
    }

    /// Drops expired locks.
    fn sweep(&self) {
        let now = SystemTime::now();
        let expired: Vec<(String, DavPath)> = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            let gone: Vec<String> = held
                .iter()
                .filter(|(_, h)| h.expires <= now)
                .map(|(t, _)| t.clone())
                .collect();
            gone.into_iter()
                .filter_map(|t| held.remove(&t).map(|h| (t, h.path)))
                .collect()
        };
        for (token, path) in expired {
            // MemLs answers at once (no I/O); polling its ready future is enough.
            let _ = futures_util::FutureExt::now_or_never(self.inner.unlock(&path, &token));
        }
    }

    fn expiry(timeout: Option<Duration>) -> (Duration, SystemTime) {
        let timeout = timeout.map_or(MAX_TIMEOUT, |t| t.min(MAX_TIMEOUT));
        (timeout, SystemTime::now() + timeout)
    }
}

impl Default for ShareLs {
    fn default() -> Self {
        Self::new()
    }
}

/// True when `path` is `top` or below it.
fn under(path: &DavPath, top: &DavPath) -> bool {
    let trim = |p: &[u8]| -> Vec<u8> {
        let mut p = p.to_vec();
        while p.last() == Some(&b'/') {
            p.pop();
        }
        p
    };
    let (path, top) = (trim(path.as_bytes()), trim(top.as_bytes()));
    path.starts_with(&top) && (path.len() == top.len() || path.get(top.len()) == Some(&b'/'))
}

impl DavLockSystem for ShareLs {
    fn lock(
        &'_ self,
        path: &DavPath,
        principal: Option<&str>,
        owner: Option<&Element>,
        timeout: Option<Duration>,
        shared: bool,
        deep: bool,
    ) -> LsFuture<'_, Result<DavLock, DavLock>> {
        let path = path.clone();
        let principal = principal.map(str::to_string);
        let owner = owner.cloned();
        Box::pin(async move {
            let (timeout, expires) = Self::expiry(timeout);
            if self.may_lock(principal.as_deref()).is_err() {
                // dav-server answers 423 (the middleware answered 507 before, unless it raced).
                return Err(DavLock {
                    token: String::new(),
                    path: Box::new(path),
                    principal,
                    owner: None,
                    timeout_at: None,
                    timeout: None,
                    shared,
                    deep,
                });
            }
            let lock = self
                .inner
                .lock(
                    &path,
                    principal.as_deref(),
                    owner.as_ref(),
                    Some(timeout),
                    shared,
                    deep,
                )
                .await?;
            self.held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(
                    lock.token.clone(),
                    Held {
                        path,
                        owner: principal,
                        expires,
                    },
                );
            Ok(lock)
        })
    }

    fn unlock(&'_ self, path: &DavPath, token: &str) -> LsFuture<'_, Result<(), ()>> {
        let path = path.clone();
        let token = token.to_string();
        Box::pin(async move {
            if self.may_unlock(self.user.as_deref(), &token).is_err() {
                return Err(());
            }
            self.inner.unlock(&path, &token).await?;
            self.held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&token);
            Ok(())
        })
    }

    fn refresh(
        &'_ self,
        path: &DavPath,
        token: &str,
        timeout: Option<Duration>,
    ) -> LsFuture<'_, Result<DavLock, ()>> {
        let path = path.clone();
        let token = token.to_string();
        Box::pin(async move {
            self.sweep();
            if self.may_unlock(self.user.as_deref(), &token).is_err() {
                return Err(());
            }
            let (timeout, expires) = Self::expiry(timeout);
            let lock = self.inner.refresh(&path, &token, Some(timeout)).await?;
            if let Some(held) = self
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(&token)
            {
                held.expires = expires;
            }
            Ok(lock)
        })
    }

    fn check(
        &'_ self,
        path: &DavPath,
        principal: Option<&str>,
        ignore_principal: bool,
        deep: bool,
        submitted_tokens: &[String],
    ) -> LsFuture<'_, Result<(), DavLock>> {
        self.sweep();
        self.inner
            .check(path, principal, ignore_principal, deep, submitted_tokens)
    }

    fn discover(&'_ self, path: &DavPath) -> LsFuture<'_, Vec<DavLock>> {
        self.sweep();
        self.inner.discover(path)
    }

    fn delete(&'_ self, path: &DavPath) -> LsFuture<'_, Result<(), ()>> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, h| !under(&h.path, path));
        self.inner.delete(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> DavPath {
        DavPath::new(p).expect("path")
    }

    async fn lock(ls: &ShareLs, p: &str, who: &str, timeout: Option<Duration>) -> DavLock {
        ls.lock(&path(p), Some(who), None, timeout, false, false)
            .await
            .expect("locked")
    }

    #[tokio::test]
    async fn every_lock_gets_a_bounded_timeout() {
        let ls = ShareLs::new();
        let forever = lock(&ls, "/a", "alice", None).await;
        assert_eq!(forever.timeout, Some(MAX_TIMEOUT));
        let long = lock(&ls, "/b", "alice", Some(Duration::from_secs(86_400))).await;
        assert_eq!(long.timeout, Some(MAX_TIMEOUT));
        let short = lock(&ls, "/c", "alice", Some(Duration::from_secs(5))).await;
        assert_eq!(short.timeout, Some(Duration::from_secs(5)));
    }

    #[tokio::test]
    async fn an_expired_lock_no_longer_holds() {
        let ls = ShareLs::new();
        let l = lock(&ls, "/a", "alice", Some(Duration::from_millis(1))).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            ls.check(&path("/a"), Some("bob"), false, false, &[])
                .await
                .is_ok()
        );
        assert!(ls.discover(&path("/a")).await.is_empty());
        assert!(ls.held.lock().expect("held").get(&l.token).is_none());
    }

    #[tokio::test]
    async fn only_the_owner_unlocks_or_refreshes() {
        let ls = ShareLs::new();
        let l = lock(&ls, "/a", "alice", None).await;
        let bob = ls.for_user(Some("bob"));
        assert!(bob.unlock(&path("/a"), &l.token).await.is_err());
        assert!(bob.refresh(&path("/a"), &l.token, None).await.is_err());
        assert_eq!(
            ls.may_unlock(Some("bob"), &l.token),
            Err(LockRefusal::NotYours)
        );
        let alice = ls.for_user(Some("alice"));
        assert!(alice.refresh(&path("/a"), &l.token, None).await.is_ok());
        assert!(alice.unlock(&path("/a"), &l.token).await.is_ok());
    }

    #[tokio::test]
    async fn a_user_holds_a_bounded_number_of_locks() {
        let ls = ShareLs::new();
        for i in 0..MAX_LOCKS_PER_USER {
            lock(&ls, &format!("/f{i}"), "alice", None).await;
        }
        assert_eq!(ls.may_lock(Some("alice")), Err(LockRefusal::TooMany));
        assert!(
            ls.lock(&path("/one-more"), Some("alice"), None, None, false, false)
                .await
                .is_err()
        );
        assert!(ls.may_lock(Some("bob")).is_ok(), "others are not affected");
        ls.delete(&path("/f0")).await.expect("delete");
        assert!(
            ls.may_lock(Some("alice")).is_ok(),
            "a deleted resource frees its lock"
        );
    }

    #[test]
    fn under_compares_whole_segments() {
        assert!(under(&path("/a/b"), &path("/a/")));
        assert!(under(&path("/a"), &path("/a")));
        assert!(!under(&path("/ab"), &path("/a")));
        assert!(under(&path("/x"), &path("/")));
    }
}
