//! Backoff after failed logins, per client address and per account name.
//!
//! Each key (an address, an IPv6 /64, or a name) may fail [`FREE_FAILURES`] times without
//! delay. After that every attempt on the key reserves the next slot: it waits until the
//! previous attempt's slot plus a delay that doubles with each further failure (from
//! [`FIRST_DELAY`] up to [`MAX_DELAY`]). An attempt whose slot is more than [`MAX_WAIT`] away is
//! refused at once, without a password hash: a flood costs neither memory nor CPU, and holds a
//! connection for at most `MAX_WAIT`. A key is forgotten [`FORGET_AFTER`] after its last failure
//! and on a successful login; refused attempts do not extend anything, so an attacker cannot
//! lock a user out for longer than the current window.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backoff::{Backoff, Jitter};
use crate::net::ClientKey;

/// Failures of one key before attempts are delayed.
pub const FREE_FAILURES: u32 = 3;
/// The delay after the first failure beyond the free ones…
pub const FIRST_DELAY: Duration = Duration::from_millis(500);
/// …doubling up to this.
pub const MAX_DELAY: Duration = Duration::from_secs(8);
/// Attempts that would wait longer are refused without checking the password.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// A key with no failure for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Keys remembered per kind; beyond it, the stalest are dropped (a flood of random names
/// cannot grow memory).
pub const MAX_KEYS: usize = 10_000;

const BACKOFF: Backoff = Backoff {
    first: FIRST_DELAY,
    cap: MAX_DELAY,
    jitter: Jitter::None,
};

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    /// The earliest time the next attempt may be checked.
    next_slot: Instant,
}

#[derive(Debug)]
struct Table<K> {
    records: HashMap<K, Record>,
}

impl<K> Default for Table<K> {
    fn default() -> Self {
        Self {
            records: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn live(&mut self, key: &K, now: Instant) -> Option<&mut Record> {
        let stale = self
            .records
            .get(key)
            .is_some_and(|r| now.duration_since(r.last_failure) >= FORGET_AFTER);
        if stale {
            self.records.remove(key);
        }
        self.records.get_mut(key)
    }

    /// The slot an attempt on `key` gets now (`now` when the key has free failures left).
    fn slot(&mut self, key: &K, now: Instant) -> Instant {
        match self.live(key, now) {
            Some(r) if r.failures >= FREE_FAILURES => r.next_slot.max(now),
            _ => now,
        }
    }

    /// Reserves `at` for an attempt on `key`: the next one comes one delay later.
    fn reserve(&mut self, key: &K, at: Instant, now: Instant) {
        if let Some(r) = self.live(key, now)
            && r.failures >= FREE_FAILURES
        {
            r.next_slot = at + BACKOFF.delay(r.failures - FREE_FAILURES + 1);
        }
    }

    fn failed(&mut self, key: K, now: Instant) {
        if self.live(&key, now).is_none() && self.records.len() >= MAX_KEYS {
            self.records
                .retain(|_, r| now.duration_since(r.last_failure) < FORGET_AFTER);
            if self.records.len() >= MAX_KEYS
                && let Some(oldest) = self
                    .records
                    .iter()
                    .min_by_key(|(_, r)| r.last_failure)
                    .map(|(k, _)| k.clone())
            {
                self.records.remove(&oldest);
            }
        }
        let r = self.records.entry(key).or_insert(Record {
            failures: 0,
            last_failure: now,
            next_slot: now,
        });
        r.failures = r.failures.saturating_add(1);
        r.last_failure = now;
        if r.failures == FREE_FAILURES {
            r.next_slot = now + BACKOFF.delay(1);
        }
    }

    fn forget(&mut self, key: &K) {
        self.records.remove(key);
    }
}

/// What an attempt may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Check the password after waiting this long (zero: at once).
    After(Duration),
    /// Too many recent failures: refuse without checking.
    Refuse,
}

/// The failure records of one set of accounts.
#[derive(Debug, Default)]
pub struct Throttle {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    clients: Table<ClientKey>,
    accounts: Table<String>,
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Counters only: a panic while holding the lock leaves them usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits an attempt by `client` on `name`, reserving its slot.
    pub fn admit(&self, client: Option<ClientKey>, name: &str, now: Instant) -> Admission {
        let mut inner = self.lock();
        let account = name.to_string();
        let mut at = inner.accounts.slot(&account, now);
        if let Some(c) = client {
            at = at.max(inner.clients.slot(&c, now));
        }
        let wait = at.duration_since(now);
        if wait > MAX_WAIT {
            return Admission::Refuse;
        }
        inner.accounts.reserve(&account, at, now);
        if let Some(c) = client {
            inner.clients.reserve(&c, at, now);
        }
        Admission::After(wait)
    }

    /// Records a checked attempt's result.
    pub fn record(&self, client: Option<ClientKey>, name: &str, ok: bool, now: Instant) {
        let mut inner = self.lock();
        if ok {
            inner.accounts.forget(&name.to_string());
            if let Some(c) = client {
                inner.clients.forget(&c);
            }
        } else {
            inner.accounts.failed(name.to_string(), now);
            if let Some(c) = client {
                inner.clients.failed(c, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<ClientKey> {
        Some(ClientKey::of(s.parse().expect("ip")))
    }

    #[test]
    fn free_failures_then_doubling_slots_then_refusal_and_success_forgets() {
        let t = Throttle::default();
        let now = Instant::now();
        let a = ip("10.0.0.1");
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.admit(a, "alice", now), Admission::After(Duration::ZERO));
            t.record(a, "alice", false, now);
        }
        // Delayed from now on, each attempt one (doubling) delay after the previous one.
        assert_eq!(t.admit(a, "alice", now), Admission::After(FIRST_DELAY));
        let mut refused = false;
        for _ in 0..64 {
            if t.admit(a, "alice", now) == Admission::Refuse {
                refused = true;
                break;
            }
        }
        assert!(refused, "a flood is refused without checking");
        // Another address on another account is not affected…
        assert_eq!(
            t.admit(ip("10.0.0.2"), "bob", now),
            Admission::After(Duration::ZERO)
        );
        // …but the attacked account is, from anywhere.
        assert_eq!(t.admit(ip("10.0.0.3"), "alice", now), Admission::Refuse);
        // Forgotten after a while; a success forgets at once.
        let later = now + FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(t.admit(a, "alice", later), Admission::After(Duration::ZERO));
        t.record(a, "carol", false, now);
        t.record(a, "carol", true, now);
        assert_eq!(t.admit(a, "carol", now), Admission::After(Duration::ZERO));
    }

    #[test]
    fn random_names_cannot_grow_the_table() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..(MAX_KEYS + 50) {
            t.record(None, &format!("user{i}"), false, now);
        }
        assert!(t.lock().accounts.records.len() <= MAX_KEYS);
    }
}
