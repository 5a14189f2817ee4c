//! Real-time pacing: a frame is sent when the audio before it has had its time. The schedule
//! knows only durations of the frames sent (from the audio itself), never a configured rate.

use std::time::Duration;

use tokio::time::Instant;

/// Farthest the schedule may fall behind the clock (the process was suspended, a disk was
/// slow) before it starts over from now rather than sending the backlog at once.
const MAX_LAG: Duration = Duration::from_secs(1);

/// When each frame of a stream is due.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    sent: Duration,
}

impl Schedule {
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            sent: Duration::ZERO,
        }
    }

    /// When the next frame is due, given the time now: the end of the audio sent so far,
    /// restarting from `now` when the schedule lags more than [`MAX_LAG`].
    pub fn next_due(&mut self, now: Instant) -> Instant {
        let due = self.start + self.sent;
        if now > due + MAX_LAG {
            self.sent = Duration::ZERO;
            self.start = now;
            return now;
        }
        due
    }

    /// A frame of `duration` was sent.
    pub fn sent(&mut self, duration: Duration) {
        self.sent += duration;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_due_at_the_sum_of_earlier_durations() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        assert_eq!(s.next_due(t0), t0);
        // An MP3 frame of 1152 samples at 44.1 kHz, three times.
        let frame = Duration::from_secs_f64(1152.0 / 44100.0);
        for _ in 0..3 {
            s.sent(frame);
        }
        assert_eq!(s.next_due(t0), t0 + frame * 3);
    }

    #[test]
    fn a_schedule_far_behind_restarts_instead_of_bursting() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0);
        s.sent(Duration::from_millis(100));
        let late = t0 + Duration::from_secs(10);
        assert_eq!(s.next_due(late), late);
        s.sent(Duration::from_millis(26));
        assert_eq!(s.next_due(late), late + Duration::from_millis(26));
        // A little behind (under a second): catch up, keep the schedule.
        let mut s = Schedule::new(t0);
        s.sent(Duration::from_millis(100));
        assert_eq!(
            s.next_due(t0 + Duration::from_millis(500)),
            t0 + Duration::from_millis(100)
        );
    }
}
