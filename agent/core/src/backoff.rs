//! One exponential backoff for every retry loop of the agent and the operator: the first delay,
//! doubled after each failure in a row, capped, and spread by jitter so that many retrying
//! parties do not fire together.

use std::time::Duration;

/// How a delay is spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// None: the delay as computed.
    None,
    /// Between `1 - f` and all of the delay (never later than the cap).
    Down(f64),
    /// Within ±`f` of the delay.
    Around(f64),
}

/// `first · 2^(failures − 1)`, capped at `cap`, then spread by `jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
    pub jitter: Jitter,
}

impl Backoff {
    /// The delay after `failures` failures in a row (1 for the first), with a random spread.
    pub fn delay(&self, failures: u32) -> Duration {
        self.delay_with(failures, fastrand::f64())
    }

    /// As [`Backoff::delay`], with `unit` in [0, 1) choosing the spread (for tests).
    pub fn delay_with(&self, failures: u32, unit: f64) -> Duration {
        let base = self.first.min(self.cap);
        let exp = base
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
            .min(self.cap);
        let unit = unit.clamp(0.0, 1.0);
        match self.jitter {
            Jitter::None => exp,
            Jitter::Down(f) => exp.mul_f64(1.0 - f + f * unit),
            Jitter::Around(f) => exp.mul_f64(1.0 - f + 2.0 * f * unit),
        }
    }
}

/// `d` spread within ±`fraction` at random (periodic work that should not synchronise).
pub fn jittered(d: Duration, fraction: f64) -> Duration {
    d.mul_f64(1.0 - fraction + 2.0 * fraction * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_spreads() {
        let b = Backoff {
            first: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            jitter: Jitter::Down(0.5),
        };
        assert_eq!(b.delay_with(1, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay_with(5, 1.0), Duration::from_secs(16));
        assert_eq!(b.delay_with(6, 1.0), Duration::from_secs(30));
        assert_eq!(b.delay_with(u32::MAX, 1.0), Duration::from_secs(30));
        assert_eq!(b.delay_with(6, 0.0), Duration::from_secs(15));
        let around = Backoff {
            jitter: Jitter::Around(0.2),
            ..b
        };
        assert_eq!(around.delay_with(2, 0.0), Duration::from_millis(1600));
        assert_eq!(around.delay_with(2, 1.0), Duration::from_millis(2400));
        // A first delay above the cap starts at the cap.
        let fast = Backoff {
            first: Duration::from_secs(1),
            cap: Duration::from_millis(300),
            jitter: Jitter::None,
        };
        assert_eq!(fast.delay_with(3, 0.5), Duration::from_millis(300));
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(10), 0.1);
            assert!(d >= Duration::from_secs(9) && d <= Duration::from_secs(11));
        }
    }
}
