//! A mount point: one broadcast of audio chunks (an MP3 frame or a piece of a source's stream)
//! with the recent ~64 KiB kept as the burst a new listener gets first.
//!
//! Memory is bounded per mount, not per listener: the broadcast ring holds [`RING`] chunks
//! shared by every listener, and a listener that falls behind by more than the ring is told it
//! lagged and is disconnected.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{Notify, broadcast};

/// Bytes of recent audio a new listener gets at once.
pub const BURST_BYTES: usize = 64 << 10;
/// Chunks a listener may fall behind (shared ring): MP3 frames of 26 ms make ~6.6 s.
pub const RING: usize = 256;

/// What the mount plays now, for headers and the status page.
#[derive(Debug, Clone, Default)]
pub struct NowPlaying {
    pub content_type: String,
    pub title: String,
    /// kbit/s, when known.
    pub bitrate: Option<u32>,
    /// A source's `Ice-Name`/`Ice-Description`, while it is on.
    pub source_name: Option<String>,
    pub source_description: Option<String>,
    pub stream_start: Option<SystemTime>,
    /// Pages every listener needs before the audio (an Ogg stream's header pages).
    pub headers: Vec<Bytes>,
}

#[derive(Debug, Default)]
struct State {
    burst: VecDeque<Bytes>,
    burst_bytes: usize,
    now: NowPlaying,
    on_air: bool,
}

/// One mount point.
#[derive(Debug)]
pub struct Mount {
    pub path: String,
    pub description: Option<String>,
    pub max_listeners: usize,
    pub live_allowed: bool,
    pub has_playlist: bool,
    state: Mutex<State>,
    tx: broadcast::Sender<Bytes>,
    listeners: AtomicUsize,
    peak: AtomicUsize,
    live: AtomicBool,
    /// Signalled when a live source leaves.
    pub source_left: Notify,
}

/// A new listener's start: the burst, then the broadcast from just after it.
pub struct Subscription {
    pub burst: Vec<Bytes>,
    pub rx: broadcast::Receiver<Bytes>,
}

impl Mount {
    pub fn new(
        path: String,
        description: Option<String>,
        max_listeners: usize,
        live_allowed: bool,
        has_playlist: bool,
    ) -> Self {
        Self {
            path,
            description,
            max_listeners,
            live_allowed,
            has_playlist,
            state: Mutex::new(State::default()),
            tx: broadcast::channel(RING).0,
            listeners: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            live: AtomicBool::new(false),
            source_left: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a new stream (a playlist file or a source): what it is, and an empty burst when
    /// the format changes (a burst of the old format would confuse a new listener's decoder).
    pub fn start(&self, now: NowPlaying) {
        let mut s = self.state();
        if s.now.content_type != now.content_type || !now.headers.is_empty() {
            s.burst.clear();
            s.burst_bytes = 0;
        }
        // A playlist's next file continues the stream; a source starts its own.
        let kept = if s.on_air { s.now.stream_start } else { None };
        s.now = NowPlaying {
            stream_start: now.stream_start.or(kept).or(Some(SystemTime::now())),
            ..now
        };
        s.on_air = true;
    }

    /// The title now (a playlist's next file, a source's metadata update).
    pub fn set_title(&self, title: String) {
        self.state().now.title = title;
    }

    pub fn title(&self) -> String {
        self.state().now.title.clone()
    }

    /// The stream ended and nothing follows: listeners get 404 until it is back.
    pub fn off_air(&self) {
        let mut s = self.state();
        s.on_air = false;
        s.burst.clear();
        s.burst_bytes = 0;
        // An empty chunk ends every listener's stream.
        let _ = self.tx.send(Bytes::new());
    }

    pub fn on_air(&self) -> Option<NowPlaying> {
        let s = self.state();
        s.on_air.then(|| s.now.clone())
    }

    /// Sends one chunk (a frame, or a piece of a source's stream) to every listener.
    pub fn publish(&self, chunk: Bytes) {
        let mut s = self.state();
        s.burst_bytes += chunk.len();
        s.burst.push_back(chunk.clone());
        let State {
            burst, burst_bytes, ..
        } = &mut *s;
        trim_burst(burst, burst_bytes, BURST_BYTES);
        // Under the lock, so that a new subscriber's burst and broadcast meet exactly.
        let _ = self.tx.send(chunk);
    }

    /// A listener's start, or `None` when nothing plays.
    pub fn subscribe(&self) -> Option<Subscription> {
        let s = self.state();
        if !s.on_air {
            return None;
        }
        // An Ogg stream's headers first (once: the burst may hold them already).
        let headers = &s.now.headers;
        let mut burst = headers.clone();
        burst.extend(s.burst.iter().filter(|c| !headers.contains(c)).cloned());
        Some(Subscription {
            burst,
            rx: self.tx.subscribe(),
        })
    }

    /// Takes a listener slot when under `max_listeners`.
    pub fn try_listen(self: &Arc<Self>) -> Option<ListenerSlot> {
        let taken = self
            .listeners
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_listeners).then_some(n + 1)
            })
            .ok()?;
        self.peak.fetch_max(taken + 1, Ordering::AcqRel);
        Some(ListenerSlot(self.clone()))
    }

    pub fn listeners(&self) -> usize {
        self.listeners.load(Ordering::Acquire)
    }

    pub fn listener_peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// Takes the mount for a live source; `None` when one is connected already.
    pub fn try_take_live(self: &Arc<Self>) -> Option<LiveSlot> {
        self.live
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| LiveSlot(self.clone()))
    }
}

/// Drops the oldest chunks while the rest still hold `limit` bytes: the burst stays at least
/// `limit` (when there is that much) and starts on a chunk boundary, i.e. an MP3 frame.
pub fn trim_burst(burst: &mut VecDeque<Bytes>, bytes: &mut usize, limit: usize) {
    while let Some(front) = burst.front() {
        if *bytes - front.len() < limit {
            break;
        }
        *bytes -= front.len();
        burst.pop_front();
    }
}

/// A listener counted on its mount until dropped.
#[derive(Debug)]
pub struct ListenerSlot(Arc<Mount>);

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        self.0.listeners.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The mount's live source until dropped: then the playlist resumes, or the mount is off the
/// air.
#[derive(Debug)]
pub struct LiveSlot(Arc<Mount>);

impl Drop for LiveSlot {
    fn drop(&mut self) {
        if !self.0.has_playlist {
            self.0.off_air();
        }
        self.0.live.store(false, Ordering::Release);
        self.0.source_left.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(sizes: &[usize]) -> VecDeque<Bytes> {
        sizes.iter().map(|&n| Bytes::from(vec![0u8; n])).collect()
    }

    #[test]
    fn the_burst_keeps_whole_frames_and_at_least_the_limit() {
        let mut b = frames(&[400, 400, 400, 400]);
        let mut n = 1600;
        trim_burst(&mut b, &mut n, 1000);
        // 1200 >= 1000 after dropping one; dropping a second would leave 800.
        assert_eq!((b.len(), n), (3, 1200));
        let mut b = frames(&[100]);
        let mut n = 100;
        trim_burst(&mut b, &mut n, 1000);
        assert_eq!((b.len(), n), (1, 100));
    }

    #[test]
    fn a_new_listener_gets_the_burst_then_what_follows() {
        let m = Arc::new(Mount::new("/a".into(), None, 2, false, true));
        assert!(m.subscribe().is_none(), "off the air");
        m.start(NowPlaying {
            content_type: "audio/mpeg".into(),
            ..Default::default()
        });
        for i in 0..200u8 {
            m.publish(Bytes::from(vec![i; 1000]));
        }
        let mut sub = m.subscribe().expect("on the air");
        let burst: usize = sub.burst.iter().map(|b| b.len()).sum();
        assert!(
            (BURST_BYTES..BURST_BYTES + 1000).contains(&burst),
            "{burst}"
        );
        assert_eq!(sub.burst.last().map(|b| b[0]), Some(199));
        m.publish(Bytes::from_static(&[1, 2, 3]));
        assert_eq!(sub.rx.try_recv().ok(), Some(Bytes::from_static(&[1, 2, 3])));
    }

    #[test]
    fn a_listener_that_falls_behind_the_ring_is_told() {
        let m = Arc::new(Mount::new("/a".into(), None, 2, false, true));
        m.start(NowPlaying::default());
        let mut sub = m.subscribe().expect("on the air");
        for _ in 0..RING + 1 {
            m.publish(Bytes::from_static(&[0]));
        }
        assert!(matches!(
            sub.rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }

    #[test]
    fn listener_slots_are_bounded_and_counted() {
        let m = Arc::new(Mount::new("/a".into(), None, 2, false, true));
        let a = m.try_listen().expect("first");
        let _b = m.try_listen().expect("second");
        assert!(m.try_listen().is_none());
        drop(a);
        assert_eq!(m.listeners(), 1);
        assert!(m.try_listen().is_some());
        assert_eq!(m.listener_peak(), 2);
    }

    #[test]
    fn one_live_source_at_a_time() {
        let m = Arc::new(Mount::new("/a".into(), None, 2, true, false));
        let slot = m.try_take_live().expect("free");
        assert!(m.try_take_live().is_none());
        m.start(NowPlaying::default());
        drop(slot);
        assert!(!m.is_live());
        assert!(m.on_air().is_none(), "no playlist: off the air");
        assert!(m.try_take_live().is_some());
    }
}
