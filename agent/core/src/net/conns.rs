//! What the listener knows about each open connection: requests in flight, when it went idle,
//! whether its writes are stuck, and who it belongs to (the client address), so that it can
//!
//! - close a connection idle for too long (no first request, keep-alive or HTTP/2 idle),
//! - close one whose client stopped reading a response (nginx's `send_timeout`),
//! - make room for a new client when the listener or the client's address is full, by closing
//!   the connection that has been idle longest (nginx does the same with keep-alive
//!   connections), so that silent connections cannot keep out a probe or a browser.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::limits::HttpLimits;
use super::preface::{self, Start};

/// The unit of the per-address cap: an IPv4 address, or an IPv6 /64 (one host usually holds a
/// whole /64, so a cap per address would not bind it).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                ClientKey(IpAddr::V6(bits.into()))
            }
            v4 => ClientKey(v4),
        }
    }
}

/// The open connections of one listener.
pub struct Registry {
    epoch: Instant,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
    per_client: HashMap<ClientKey, usize>,
}

/// One open connection.
pub struct Conn {
    id: u64,
    client: ClientKey,
    epoch: Instant,
    /// Requests whose response is not yet fully sent.
    in_flight: AtomicUsize,
    /// Requests started on this connection.
    started: AtomicU64,
    /// Milliseconds since `epoch` at which `in_flight` last dropped to zero (or the accept).
    idle_since: AtomicU64,
    /// Milliseconds since `epoch` (plus one) since which a write waits on the client; 0: none.
    write_blocked_since: AtomicU64,
    /// Cancelled to close the connection at once (eviction).
    close: CancellationToken,
    evicted: AtomicBool,
}

/// Whether a new connection may be served.
pub enum Admission {
    Admitted(Arc<Conn>),
    /// The client's address holds its share of connections, all busy.
    ClientFull,
}

/// What the watchdog should do with a connection now.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing before this instant.
    Fine(Instant),
    /// No request for too long: close it.
    Idle,
    /// A response has not moved for too long: the client stopped reading.
    Stuck,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The lock guards counters only; a panic while holding it leaves them usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `client`, closing that client's longest-idle connection first
    /// when it already holds `per_client`.
    pub fn admit(&self, client: ClientKey, per_client: usize) -> Admission {
        let mut inner = self.lock();
        let held = inner.per_client.get(&client).copied().unwrap_or(0);
        if held >= per_client && !evict_oldest_idle(&mut inner, Some(client)) {
            return Admission::ClientFull;
        }
        inner.next_id += 1;
        let conn = Arc::new(Conn {
            id: inner.next_id,
            client,
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            idle_since: AtomicU64::new(millis(self.epoch)),
            write_blocked_since: AtomicU64::new(0),
            close: CancellationToken::new(),
            evicted: AtomicBool::new(false),
        });
        inner.conns.insert(conn.id, conn.clone());
        *inner.per_client.entry(client).or_insert(0) += 1;
        Admission::Admitted(conn)
    }

    /// Closes the listener's longest-idle connection; false when every connection is busy.
    pub fn evict_one(&self) -> bool {
        evict_oldest_idle(&mut self.lock(), None)
    }

    /// Forgets a connection that ended.
    pub fn remove(&self, conn: &Conn) {
        let mut inner = self.lock();
        if inner.conns.remove(&conn.id).is_some() {
            release(&mut inner, conn.client);
        }
    }

    #[cfg(test)]
    fn held_by(&self, client: ClientKey) -> usize {
        self.lock().per_client.get(&client).copied().unwrap_or(0)
    }
}

fn release(inner: &mut Inner, client: ClientKey) {
    if let Some(n) = inner.per_client.get_mut(&client) {
        *n -= 1;
        if *n == 0 {
            inner.per_client.remove(&client);
        }
    }
}

/// Closes the idle connection (of `client`, or of anyone) that has been idle longest.
fn evict_oldest_idle(inner: &mut Inner, client: Option<ClientKey>) -> bool {
    let victim = inner
        .conns
        .values()
        .filter(|c| client.is_none_or(|k| c.client == k))
        .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
        .min_by_key(|c| c.idle_since.load(Ordering::Acquire))
        .cloned();
    let Some(victim) = victim else { return false };
    inner.conns.remove(&victim.id);
    release(inner, victim.client);
    victim.evicted.store(true, Ordering::Release);
    victim.close.cancel();
    true
}

fn millis(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Conn {
    /// Resolves when the listener wants this connection closed at once.
    pub fn closed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.close.cancelled()
    }

    pub fn evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }

    /// Marks the connection busy (a command or request in flight) until the guard drops: a
    /// busy connection is never evicted, and its idle time starts when the guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.begin()
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// When the connection must be looked at again, or why it must close now.
    pub fn verdict(&self, limits: &HttpLimits) -> Verdict {
        let now_ms = millis(self.epoch);
        let at = |ms: u64| self.epoch + Duration::from_millis(ms);
        let blocked = self.write_blocked_since.load(Ordering::Acquire);
        if blocked != 0 {
            let deadline = blocked - 1 + duration_ms(limits.idle_timeout);
            if now_ms >= deadline {
                return Verdict::Stuck;
            }
            return Verdict::Fine(at(deadline));
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Verdict::Fine(at(now_ms + duration_ms(limits.idle_timeout)));
        }
        let limit = if self.started.load(Ordering::Acquire) == 0 {
            limits.header_timeout
        } else {
            limits.idle_timeout
        };
        let deadline = self.idle_since.load(Ordering::Acquire) + duration_ms(limit);
        if now_ms >= deadline {
            Verdict::Idle
        } else {
            Verdict::Fine(at(deadline))
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 4)
}

/// A request in flight; its end (the response body dropped) makes the connection idle.
pub struct InFlight(Arc<Conn>);

/// A command in flight on a line-protocol connection (see [`Conn::busy`]).
pub type Busy = InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.idle_since.store(millis(conn.epoch), Ordering::Release);
        conn.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The role's router as hyper sees it: counts requests in flight per connection, and answers
/// 400 instead of a 5xx when the request's own body was malformed (a chunk size `zz`, a
/// truncated body): the role could only fail because the client did. Every request carries the
/// client's address as axum's `ConnectInfo<SocketAddr>`.
#[derive(Clone)]
pub struct Tracked {
    pub router: Router,
    pub conn: Arc<Conn>,
    pub peer: std::net::SocketAddr,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let guard = self.conn.begin();
        let body_failed = Arc::new(AtomicBool::new(false));
        // Who is asking, for handlers that back off per client (password checks).
        let mut request = request;
        request.extensions_mut().insert(self.conn.client);
        let mut request = request.map(|inner| WatchedBody {
            inner,
            failed: body_failed.clone(),
        });
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let router = self.router.clone();
        Box::pin(async move {
            let mut response = match router.oneshot(request).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if body_failed.load(Ordering::Acquire) && response.status().is_server_error() {
                *response.status_mut() = StatusCode::BAD_REQUEST;
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok(response.map(|inner| TrackedBody {
                inner,
                _guard: guard,
            }))
        })
    }
}

/// A request body that remembers whether reading it failed.
pub struct WatchedBody {
    inner: Incoming,
    failed: Arc<AtomicBool>,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.failed.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted until it is sent (or dropped).
pub struct TrackedBody {
    inner: axum::body::Body,
    _guard: InFlight,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's socket as hyper sees it: refuses a connection that starts with neither an
/// HTTP/1 request line nor the HTTP/2 preface (closing it without an answer, RFC 9113 3.4),
/// and notes when a write waits on the client.
pub struct Io<S = TcpStream> {
    inner: S,
    conn: Arc<Conn>,
    start: Option<Vec<u8>>,
}

impl<S> Io<S> {
    pub fn new(inner: S, conn: Arc<Conn>) -> Self {
        Self {
            inner,
            conn,
            start: Some(Vec::new()),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Io<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(seen)) = (&polled, this.start.as_mut()) {
            let fresh = &buf.filled()[before..];
            if fresh.is_empty() {
                this.start = None;
                return polled;
            }
            seen.extend_from_slice(fresh);
            match preface::judge(seen) {
                Start::Http1 | Start::Http2 => this.start = None,
                Start::NeedMore => {}
                Start::Invalid => {
                    this.start = None;
                    // Read what else the client sent, so that closing sends a FIN, not the RST
                    // that unread data causes (a client may read that as an error, not a close).
                    let mut scratch = [0u8; 4096];
                    for _ in 0..16 {
                        let mut sink = ReadBuf::new(&mut scratch);
                        match Pin::new(&mut this.inner).poll_read(cx, &mut sink) {
                            Poll::Ready(Ok(())) if !sink.filled().is_empty() => {}
                            _ => break,
                        }
                    }
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "neither an HTTP/1 request line nor the HTTP/2 connection preface",
                    )));
                }
            }
        }
        polled
    }
}

impl<S> Io<S> {
    fn note_write<T>(&self, polled: &Poll<io::Result<T>>) {
        let blocked = &self.conn.write_blocked_since;
        if polled.is_pending() {
            if blocked.load(Ordering::Relaxed) == 0 {
                blocked.store(millis(self.conn.epoch) + 1, Ordering::Release);
            }
        } else if blocked.load(Ordering::Relaxed) != 0 {
            blocked.store(0, Ordering::Release);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Io<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str) -> ClientKey {
        ClientKey::of(ip.parse().expect("ip"))
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
    }

    #[test]
    fn a_full_client_loses_its_longest_idle_connection_and_busy_ones_are_kept() {
        let r = Registry::new();
        let a = key("10.0.0.1");
        let Admission::Admitted(first) = r.admit(a, 2) else {
            panic!("admitted")
        };
        std::thread::sleep(Duration::from_millis(5));
        let Admission::Admitted(second) = r.admit(a, 2) else {
            panic!("admitted")
        };
        // Full: the older idle one makes room.
        let Admission::Admitted(third) = r.admit(a, 2) else {
            panic!("admitted")
        };
        assert!(first.evicted() && !second.evicted());
        assert_eq!(r.held_by(a), 2);
        // Both remaining busy: refused; another client is not affected.
        let _busy = (second.begin(), third.begin());
        assert!(matches!(r.admit(a, 2), Admission::ClientFull));
        assert!(matches!(
            r.admit(key("10.0.0.2"), 2),
            Admission::Admitted(_)
        ));
        assert!(r.evict_one(), "the other client's idle connection");
        assert!(!r.evict_one(), "every remaining connection is busy");
        r.remove(&first); // already gone: not counted twice
        r.remove(&second);
        assert_eq!(r.held_by(a), 1);
    }

    #[test]
    fn the_watchdog_closes_silent_idle_and_stuck_connections_only() {
        let limits = HttpLimits {
            header_timeout: Duration::from_millis(30),
            idle_timeout: Duration::from_millis(80),
            max_connections_per_ip: None,
            max_connection_age: Duration::from_secs(600),
        };
        let r = Registry::new();
        let Admission::Admitted(c) = r.admit(key("10.0.0.1"), 8) else {
            panic!("admitted")
        };
        assert!(matches!(c.verdict(&limits), Verdict::Fine(_)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.verdict(&limits), Verdict::Idle, "no first request");
        let request = c.begin();
        assert!(matches!(c.verdict(&limits), Verdict::Fine(_)), "busy");
        drop(request);
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            matches!(c.verdict(&limits), Verdict::Fine(_)),
            "keep-alive gets the idle timeout"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(c.verdict(&limits), Verdict::Idle);
        let _request = c.begin();
        c.write_blocked_since
            .store(millis(c.epoch) + 1, Ordering::Release);
        assert!(matches!(c.verdict(&limits), Verdict::Fine(_)));
        std::thread::sleep(Duration::from_millis(90));
        assert_eq!(c.verdict(&limits), Verdict::Stuck);
    }
}
