//! What `/readyz` answers: whether the controller's watches are established and not failing.
//!
//! - Ready once the HostRole watch has delivered its initial list (the controller's cache is
//!   filled) and while its watches are not failing.
//! - Not ready while the watches fail persistently: at least [`FAILING_AFTER`] watch errors in a
//!   row, each within [`QUIET`] of the previous one, spanning at least [`PERSISTENT`]. The watches
//!   retry with back-off (0.8 s doubling to 30 s), so with the API server down errors keep coming
//!   well within [`QUIET`] and the operator is unready after about 12 s; one error, or a burst of
//!   them (every watch expiring at once and listing again), does not make it unready. Ready
//!   again as soon as the HostRole watch has listed again, or once [`QUIET`] passes without an
//!   error.
//! - A replica waiting for the leader lease runs no watches: it is ready (it serves metrics and
//!   takes over when the leader goes; a Deployment rollout must not stall on it).
//!
//! `/healthz` (liveness) stays "the process answers": restarting the operator does not bring
//! an unreachable API server back, and restart loops would only add load when it returns.
//! See docs/observability.md.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Watch errors in a row that make the operator unready...
pub const FAILING_AFTER: u32 = 3;
/// ... when they span at least this long (a burst is not a failure).
pub const PERSISTENT: Duration = Duration::from_secs(10);
/// A watch error more than this after the previous one starts a new streak; this long without
/// one and the watches count as healthy again. Longer than the watches' longest back-off (30 s).
pub const QUIET: Duration = Duration::from_secs(45);

#[derive(Debug, Default)]
struct State {
    /// Running the controller (false: waiting for the leader lease).
    leading: bool,
    /// The HostRole watch delivered its initial list.
    synced: bool,
    streak: u32,
    /// When the current streak of errors began.
    streak_start: Option<Instant>,
    last_error: Option<(Instant, String)>,
}

/// The controller's watch health, shared by the controller and the HTTP server.
#[derive(Debug, Default)]
pub struct WatchHealth {
    state: Mutex<State>,
}

/// Why the operator is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("the watches have not delivered their initial list yet")]
    NotSynced,
    #[error("the watches are failing ({errors} errors in a row), last: {last}")]
    WatchFailing { errors: u32, last: String },
}

impl WatchHealth {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The controller starts (this replica leads, or there is no election): not ready until
    /// its watches have listed.
    pub fn leading(&self) {
        let mut s = self.state();
        s.leading = true;
        s.synced = false;
    }

    /// The HostRole watch delivered its initial list (again, after a re-list: it got through,
    /// which ends a streak of errors); true the first time.
    pub fn synced(&self) -> bool {
        let mut s = self.state();
        s.streak = 0;
        s.streak_start = None;
        s.last_error = None;
        !std::mem::replace(&mut s.synced, true)
    }

    /// A watch failed at `now`.
    pub fn watch_failed(&self, now: Instant, error: String) {
        let mut s = self.state();
        let continues = s
            .last_error
            .as_ref()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) <= QUIET);
        if continues {
            s.streak = s.streak.saturating_add(1);
        } else {
            s.streak = 1;
            s.streak_start = Some(now);
        }
        s.last_error = Some((now, error));
    }

    /// Ready at `now`, or why not.
    pub fn check(&self, now: Instant) -> Result<(), NotReady> {
        let s = self.state();
        if !s.leading {
            return Ok(());
        }
        if let (Some((at, last)), Some(start)) = (&s.last_error, s.streak_start)
            && s.streak >= FAILING_AFTER
            && at.saturating_duration_since(start) >= PERSISTENT
            && now.saturating_duration_since(*at) <= QUIET
        {
            return Err(NotReady::WatchFailing {
                errors: s.streak,
                last: last.clone(),
            });
        }
        if !s.synced {
            return Err(NotReady::NotSynced);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_replica_is_ready() {
        assert_eq!(WatchHealth::default().check(Instant::now()), Ok(()));
    }

    #[test]
    fn leading_is_ready_once_synced() {
        let h = WatchHealth::default();
        let t = Instant::now();
        h.leading();
        assert_eq!(h.check(t), Err(NotReady::NotSynced));
        assert!(h.synced());
        assert_eq!(h.check(t), Ok(()));
    }

    #[test]
    fn one_error_is_not_a_failure_but_a_streak_is_until_quiet() {
        let h = WatchHealth::default();
        let t = Instant::now();
        h.leading();
        assert!(h.synced());
        h.watch_failed(t, "expired".into());
        assert_eq!(h.check(t), Ok(()));
        h.watch_failed(t + Duration::from_secs(1), "refused".into());
        h.watch_failed(t + Duration::from_secs(3), "refused".into());
        // Three errors within 3 s: a burst so far.
        assert_eq!(h.check(t + Duration::from_secs(4)), Ok(()));
        h.watch_failed(t + Duration::from_secs(11), "refused".into());
        assert!(matches!(
            h.check(t + Duration::from_secs(12)),
            Err(NotReady::WatchFailing { errors: 4, .. })
        ));
        // Back-off at its cap: still failing.
        h.watch_failed(t + Duration::from_secs(33), "refused".into());
        assert!(h.check(t + Duration::from_secs(60)).is_err());
        // No error for longer than QUIET: the watches got through.
        assert_eq!(h.check(t + Duration::from_secs(33) + QUIET + QUIET), Ok(()));
        // Or the HostRole watch listed again: ready at once.
        for s in [100, 110, 120] {
            h.watch_failed(t + Duration::from_secs(s), "refused".into());
        }
        assert!(h.check(t + Duration::from_secs(121)).is_err());
        assert!(!h.synced(), "not the first list");
        assert_eq!(h.check(t + Duration::from_secs(121)), Ok(()));
        // A burst later (every watch expired at once) starts a new streak, and is no failure.
        for ms in [0, 10, 20, 30, 40, 50, 60] {
            h.watch_failed(t + Duration::from_millis(200_000 + ms), "expired".into());
        }
        assert_eq!(h.check(t + Duration::from_secs(201)), Ok(()));
    }
}
