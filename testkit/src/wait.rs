//! Waiting for a condition instead of sleeping for a while: every wait has a bound, and a
//! timeout names what did not happen.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often the blocking waits look again.
const POLL: Duration = Duration::from_millis(25);
/// How often [`eventually`] looks again (each look is usually a request to an API server).
const POLL_ASYNC: Duration = Duration::from_millis(250);

/// Calls `check` until it returns `Some`, at most for `limit`; panics naming `what` after that.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Calls `check` until it returns true, at most for `limit`; panics naming `what` after that.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    wait_for(what, limit, || check().then_some(()));
}

/// The async form of [`wait_for`] (for tests on tokio): polls `check` every 250 ms.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        tokio::time::sleep(POLL_ASYNC).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_the_condition_gives() {
        let mut calls = 0;
        let got = wait_for("the third call", Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(got, 3);
    }

    #[test]
    #[should_panic(expected = "timed out after 100ms waiting for something that never happens")]
    fn a_condition_that_never_holds_fails_naming_it() {
        wait_until(
            "something that never happens",
            Duration::from_millis(100),
            || false,
        );
    }
}
