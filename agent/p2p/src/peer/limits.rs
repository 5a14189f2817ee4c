//! How much of its machine a peer gives the network: an upload rate, a download rate and a
//! number of upload slots. A peer is client and server at once, and without bounds its serving
//! can starve its own user's downloads and interface (the seed's fourth weakness of
//! peer-to-peer). The limits come from the configuration and can be changed while the peer runs
//! from its UI (`/api/limits`); a change lasts until the host restarts.
//!
//! - The rates are token buckets with a burst of one second's worth (at least one chunk), in the
//!   GCRA form: each transfer reserves its bytes and waits until the bucket would have held
//!   them, so concurrent transfers share the rate fairly and in order.
//! - An upload slot is held while a chunk is read and paced; when all are taken, a request is
//!   answered `503` with `Retry-After`, and the asking peer fetches that chunk elsewhere or later
//!   (as BitTorrent's choking does) instead of queueing here.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Slowest rate accepted: a 1 MiB chunk then takes about 17 minutes; anything slower would look
/// like a hung transfer.
pub const MIN_RATE: u64 = 1024;
/// Most upload slots (connections serving chunks at once are bounded by the listener anyway).
pub const MAX_SLOTS: u32 = 256;
/// Upload slots when none are set: each slot may hold a 1 MiB chunk in memory, so this bounds
/// what the network's members can make a peer spend on serving to 32 MiB.
pub const DEFAULT_SLOTS: u32 = 32;

/// The limits in force. `None` is unlimited, except for `upload_slots`: [`DEFAULT_SLOTS`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    pub upload_bytes_per_second: Option<u64>,
    #[serde(default)]
    pub download_bytes_per_second: Option<u64>,
    #[serde(default)]
    pub upload_slots: Option<u32>,
}

/// Why a set of limits is refused; the message names the field and what it accepts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error(
        "{field}: {value} bytes per second is below the slowest rate accepted, {MIN_RATE} (1Ki); leave it out (or null) for no limit"
    )]
    RateTooLow { field: &'static str, value: u64 },
    #[error(
        "uploadSlots: {0} is not between 1 and {MAX_SLOTS}; leave it out (or null) for the default, {DEFAULT_SLOTS}"
    )]
    Slots(u32),
}

impl Limits {
    /// Checks every field, naming the first one out of range.
    pub fn validate(&self) -> Result<(), LimitError> {
        for (field, rate) in [
            ("uploadBytesPerSecond", self.upload_bytes_per_second),
            ("downloadBytesPerSecond", self.download_bytes_per_second),
        ] {
            if let Some(value) = rate.filter(|r| *r < MIN_RATE) {
                return Err(LimitError::RateTooLow { field, value });
            }
        }
        match self.upload_slots {
            Some(n) if n == 0 || n > MAX_SLOTS => Err(LimitError::Slots(n)),
            _ => Ok(()),
        }
    }
}

/// A token bucket of bytes per second whose rate can change while it runs.
#[derive(Debug)]
pub struct Bucket {
    state: Mutex<Gcra>,
}

/// The bucket's state: the rate, and the theoretical time at which every byte reserved so far
/// has been earned.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    rate: Option<u64>,
    earned_at: Option<Instant>,
}

impl Gcra {
    /// Reserves `bytes` at `now` and says how long to wait before moving them: the burst is one
    /// second's worth or the transfer itself, whichever is more.
    fn reserve(&mut self, now: Instant, bytes: u64) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let burst = cost.max(Duration::from_secs(1));
        let start = self.earned_at.map_or(now, |t| t.max(now));
        let earned = start + cost;
        self.earned_at = Some(earned);
        (earned.saturating_duration_since(now)).saturating_sub(burst)
    }

    /// Gives back `bytes` reserved and never moved (the peer was busy, the request failed), so
    /// the next transfer does not wait for them.
    fn refund(&mut self, bytes: u64) {
        let (Some(rate), Some(earned)) = (self.rate, self.earned_at) else {
            return;
        };
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        self.earned_at = Some(earned.checked_sub(cost).unwrap_or(earned));
    }
}

impl Bucket {
    pub fn new(rate: Option<u64>) -> Bucket {
        Bucket {
            state: Mutex::new(Gcra {
                rate,
                earned_at: None,
            }),
        }
    }

    /// Changes the rate; what was reserved at the old rate is forgiven.
    pub fn set_rate(&self, rate: Option<u64>) {
        if let Ok(mut s) = self.state.lock() {
            *s = Gcra {
                rate,
                earned_at: None,
            };
        }
    }

    pub fn rate(&self) -> Option<u64> {
        self.state.lock().ok().and_then(|s| s.rate)
    }

    /// Gives back `bytes` taken and not moved. After a rate change it does nothing: the new
    /// rate forgave what was reserved.
    pub fn refund(&self, bytes: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.refund(bytes);
        }
    }

    /// Waits until `bytes` may move.
    pub async fn take(&self, bytes: u64) {
        let wait = match self.state.lock() {
            Ok(mut s) => s.reserve(Instant::now(), bytes),
            Err(_) => Duration::ZERO,
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Upload slots: how many chunks this peer serves at once.
#[derive(Debug)]
pub struct Slots {
    used: AtomicU32,
    max: AtomicU32,
}

/// A slot held; it is given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    pub fn new(max: Option<u32>) -> Slots {
        Slots {
            used: AtomicU32::new(0),
            max: AtomicU32::new(max.unwrap_or(DEFAULT_SLOTS)),
        }
    }

    /// Sets the number of slots; `None` is [`DEFAULT_SLOTS`].
    pub fn set_max(&self, max: Option<u32>) {
        self.max
            .store(max.unwrap_or(DEFAULT_SLOTS), Ordering::Release);
    }

    pub fn max(&self) -> u32 {
        self.max.load(Ordering::Acquire)
    }

    pub fn in_use(&self) -> u32 {
        self.used.load(Ordering::Acquire)
    }

    /// A slot, unless all are taken. Lowering `max` below the slots in use takes effect as they
    /// are given back.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        let max = self.max.load(Ordering::Acquire);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }
}

/// The limits of one peer, live.
#[derive(Debug)]
pub struct Limiter {
    pub upload: Bucket,
    pub download: Bucket,
    pub slots: Arc<Slots>,
    /// What the configuration said, for the UI to show next to the live values.
    pub configured: Limits,
}

impl Limiter {
    pub fn new(configured: Limits) -> Limiter {
        Limiter {
            upload: Bucket::new(configured.upload_bytes_per_second),
            download: Bucket::new(configured.download_bytes_per_second),
            slots: Arc::new(Slots::new(configured.upload_slots)),
            configured,
        }
    }

    pub fn current(&self) -> Limits {
        Limits {
            upload_bytes_per_second: self.upload.rate(),
            download_bytes_per_second: self.download.rate(),
            upload_slots: Some(self.slots.max()),
        }
    }

    /// Puts new limits in force after checking them.
    pub fn set(&self, limits: Limits) -> Result<(), LimitError> {
        limits.validate()?;
        self.upload.set_rate(limits.upload_bytes_per_second);
        self.download.set_rate(limits.download_bytes_per_second);
        self.slots.set_max(limits.upload_slots);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn unlimited_never_waits() {
        let mut g = Gcra {
            rate: None,
            earned_at: None,
        };
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(g.reserve(now, MIB), Duration::ZERO);
        }
    }

    #[test]
    fn a_rate_paces_transfers_after_a_one_second_burst() {
        let mut g = Gcra {
            rate: Some(MIB),
            earned_at: None,
        };
        let now = Instant::now();
        // One second's worth passes at once, the next MiB waits one second, the next two.
        assert_eq!(g.reserve(now, MIB / 2), Duration::ZERO);
        assert_eq!(g.reserve(now, MIB / 2), Duration::ZERO);
        assert_eq!(g.reserve(now, MIB), Duration::from_secs(1));
        assert_eq!(g.reserve(now, MIB), Duration::from_secs(2));
        // Time earns the debt back: four seconds later, one more MiB waits no longer.
        let later = now + Duration::from_secs(4);
        assert_eq!(g.reserve(later, MIB), Duration::ZERO);
        // An idle bucket does not save up more than its burst.
        let idle = later + Duration::from_secs(60);
        assert_eq!(g.reserve(idle, MIB), Duration::ZERO);
        assert_eq!(g.reserve(idle, MIB), Duration::from_secs(1));
    }

    #[test]
    fn a_transfer_larger_than_a_second_passes_alone_then_pays() {
        let mut g = Gcra {
            rate: Some(64 << 10),
            earned_at: None,
        };
        let now = Instant::now();
        // A 1 MiB chunk at 64 KiB/s: it goes (it is the burst), the next waits its 16 s.
        assert_eq!(g.reserve(now, MIB), Duration::ZERO);
        assert_eq!(g.reserve(now, MIB), Duration::from_secs(16));
    }

    #[test]
    fn bytes_never_moved_are_given_back() {
        let mut g = Gcra {
            rate: Some(MIB),
            earned_at: None,
        };
        let now = Instant::now();
        assert_eq!(g.reserve(now, MIB), Duration::ZERO);
        // Four chunks asked of busy peers and given back: the next one waits as if they had
        // never been asked for.
        for _ in 0..4 {
            g.reserve(now, MIB);
            g.refund(MIB);
        }
        assert_eq!(g.reserve(now, MIB), Duration::from_secs(1));
        // Unlimited, or before anything was reserved: nothing to give back, nothing breaks.
        let mut free = Gcra {
            rate: None,
            earned_at: None,
        };
        free.refund(MIB);
        assert_eq!(free.reserve(now, MIB), Duration::ZERO);
    }

    #[test]
    fn a_new_rate_forgives_the_old_debt() {
        let b = Bucket::new(Some(MIN_RATE));
        let now = Instant::now();
        if let Ok(mut s) = b.state.lock() {
            s.reserve(now, MIB);
            assert!(s.reserve(now, MIB) > Duration::from_secs(60));
        }
        b.set_rate(Some(MIB));
        let wait = b.state.lock().map(|mut s| s.reserve(now, MIB)).ok();
        assert_eq!(wait, Some(Duration::ZERO));
        assert_eq!(b.rate(), Some(MIB));
    }

    #[test]
    fn slots_refuse_when_full_and_come_back_when_dropped() {
        let slots = Arc::new(Slots::new(Some(2)));
        let a = slots.try_take();
        let b = slots.try_take();
        assert!(a.is_some() && b.is_some());
        assert!(slots.try_take().is_none());
        drop(a);
        assert!(slots.try_take().is_some());
        assert_eq!(
            slots.in_use(),
            1,
            "the slot taken just above was dropped at once"
        );
        // Lowering the limit below what is in use refuses new ones until enough come back.
        slots.set_max(Some(1));
        assert!(slots.try_take().is_none());
        drop(b);
        assert!(slots.try_take().is_some());
        assert_eq!(slots.in_use(), 0);
        // No number is the default, which bounds the memory serving can hold.
        slots.set_max(None);
        let held: Vec<_> = (0..500).filter_map(|_| slots.try_take()).collect();
        assert_eq!(held.len() as u32, DEFAULT_SLOTS);
        assert_eq!(slots.max(), DEFAULT_SLOTS);
    }

    #[test]
    fn limits_name_the_field_out_of_range() {
        let ok = Limits {
            upload_bytes_per_second: Some(MIN_RATE),
            download_bytes_per_second: None,
            upload_slots: Some(MAX_SLOTS),
        };
        assert_eq!(ok.validate(), Ok(()));
        let slow = Limits {
            download_bytes_per_second: Some(10),
            ..ok
        };
        let e = slow
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("downloadBytesPerSecond: 10 "), "{e}");
        for n in [0, MAX_SLOTS + 1] {
            let bad = Limits {
                upload_slots: Some(n),
                ..ok
            };
            assert_eq!(bad.validate(), Err(LimitError::Slots(n)));
        }
        let parsed: Result<Limits, _> = serde_json::from_str(r#"{"uploadSlot": 3}"#);
        assert!(parsed.is_err(), "a misspelt field is refused, not ignored");
    }
}
