//! The shell around [`crate::core::Server`]: listeners, one reader task and one writer task per
//! connection, flood control, send queues, timeouts, password checks and the graceful stop.
//!
//! The core sits behind one `std::sync::Mutex`: every call into it is short, never awaits and
//! only pushes lines into unbounded per-connection channels whose *bytes* are bounded here
//! (a connection whose unsent output passes [`Tuning::send_queue_bytes`] is dropped with
//! "SendQ exceeded"), so fan-out to a channel never waits for a slow member, and no actor hop
//! or extra copy is needed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use hostrole_agent_core::metrics::{AgentMetrics, Direction, Reason};
use hostrole_agent_core::net::{Admission, ClientKey, Registry, Slot, limits};
use hostrole_agent_core::users::{Check, Users};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::ROLE;
use crate::core::{ClientId, MAX_LINE, Out, Server};

/// Pause after an accept error (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Time for an implicit-TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Time to wait for an evicted connection's slot when the server is full.
const EVICTION_WAIT: Duration = Duration::from_secs(1);
/// Time to send the last lines of a closing connection.
const CLOSE_FLUSH: Duration = Duration::from_secs(10);
/// A failed login waits this long before its answer.
const AUTH_FAILURE_DELAY: Duration = Duration::from_millis(300);

/// Timeouts and per-connection limits of the chat role (defaults suit production; tests shorten
/// them).
#[derive(Debug, Clone)]
pub struct Tuning {
    /// A connection must complete registration within this time.
    pub registration_timeout: Duration,
    /// A registered connection silent this long gets a `PING`.
    pub ping_interval: Duration,
    /// … and is closed when it stays silent this long after the `PING`.
    pub ping_timeout: Duration,
    /// Lines a connection may send at once before flood control slows it down.
    pub flood_burst: u32,
    /// Lines per second a connection may send after its burst.
    pub flood_rate: f64,
    /// A connection slowed down without a break for this long is closed ("Excess Flood").
    pub flood_excess_after: Duration,
    /// Unsent output a connection may have queued before it is closed ("SendQ exceeded").
    pub send_queue_bytes: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            registration_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(120),
            ping_timeout: Duration::from_secs(60),
            flood_burst: 20,
            flood_rate: 2.0,
            flood_excess_after: Duration::from_secs(10),
            send_queue_bytes: 1 << 20,
        }
    }
}

/// What the writer task of a connection is told.
enum Write {
    Line(Arc<str>),
    /// Send what came before, then close.
    Close,
}

/// The sending side of one connection, held by the hub.
struct Outbox {
    tx: mpsc::UnboundedSender<Write>,
    /// Bytes queued and not yet written.
    queued: Arc<AtomicUsize>,
    /// Cancelled to drop the connection at once, unsent output and all.
    kill: CancellationToken,
    /// Cancelled when the connection is to close (by the core, the send queue or the writer):
    /// the reader stops.
    closing: CancellationToken,
    peer: SocketAddr,
}

struct State {
    server: Server,
    outboxes: HashMap<ClientId, Outbox>,
}

/// What all connections share.
pub(crate) struct Hub {
    state: Mutex<State>,
    users: Arc<Users>,
    metrics: AgentMetrics,
    tuning: Tuning,
    next_id: AtomicU64,
    server_name: String,
    max_connections: usize,
}

impl Hub {
    pub fn new(
        server: Server,
        users: Arc<Users>,
        metrics: AgentMetrics,
        tuning: Tuning,
        server_name: String,
        max_connections: usize,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                server,
                outboxes: HashMap::new(),
            }),
            users,
            metrics,
            tuning,
            next_id: AtomicU64::new(1),
            server_name,
            max_connections,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic inside the core leaves the state as it was between two effects: go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the core and carries out its effects.
    fn with<F>(self: &Arc<Self>, f: F)
    where
        F: FnOnce(&mut Server, SystemTime) -> Vec<Out>,
    {
        let mut state = self.lock();
        let outs = f(&mut state.server, SystemTime::now());
        self.dispatch(&mut state, outs);
    }

    /// Carries out effects under the lock: never blocks.
    fn dispatch(self: &Arc<Self>, state: &mut State, mut outs: Vec<Out>) {
        loop {
            let mut overflowed = Vec::new();
            for out in outs {
                match out {
                    Out::Send { to, line } => {
                        let Some(outbox) = state.outboxes.get(&to) else {
                            continue;
                        };
                        let size = line.len() + 2;
                        let queued = outbox.queued.fetch_add(size, Ordering::AcqRel) + size;
                        if queued > self.tuning.send_queue_bytes {
                            outbox.kill.cancel();
                            outbox.closing.cancel();
                            state.outboxes.remove(&to);
                            self.metrics.error(ROLE, Reason::SendQueueFull);
                            overflowed.push(to);
                        } else if outbox.tx.send(Write::Line(line)).is_err() {
                            state.outboxes.remove(&to);
                        }
                    }
                    Out::Close { client, .. } => {
                        if let Some(outbox) = state.outboxes.remove(&client) {
                            let _ = outbox.tx.send(Write::Close);
                            outbox.closing.cancel();
                        }
                    }
                    Out::CheckPassword {
                        client,
                        account,
                        password,
                    } => {
                        let Some(peer) = state.outboxes.get(&client).map(|o| o.peer) else {
                            continue;
                        };
                        let hub = self.clone();
                        tokio::spawn(async move {
                            let result = hub.check(peer, &account, &password).await;
                            hub.with(|server, now| server.login_result(client, result, now));
                        });
                    }
                    Out::Count { verb, outcome } => self.metrics.command(ROLE, verb, outcome),
                }
            }
            if overflowed.is_empty() {
                break;
            }
            outs = Vec::new();
            for client in overflowed {
                outs.extend(
                    state
                        .server
                        .disconnect(client, "SendQ exceeded", SystemTime::now()),
                );
            }
        }
    }

    /// Checks a password (throttled per address and account by agent-core, hashed off the
    /// event loop).
    async fn check(&self, peer: SocketAddr, account: &str, password: &str) -> Option<String> {
        match self
            .users
            .check(Some(ClientKey::of(peer.ip())), account, password)
            .await
        {
            Check::Valid(user) => Some(user.name),
            Check::Invalid => {
                self.metrics.error(ROLE, Reason::AuthFailed);
                tokio::time::sleep(AUTH_FAILURE_DELAY).await;
                None
            }
            Check::Throttled => {
                self.metrics.error(ROLE, Reason::AuthThrottled);
                tokio::time::sleep(AUTH_FAILURE_DELAY).await;
                None
            }
        }
    }
}

/// One listener of the role.
pub(crate) struct Listen {
    pub name: &'static str,
    pub listener: TcpListener,
    pub tls: Option<TlsAcceptor>,
}

/// What the listeners of the role share: the connection limit covers both ports.
pub(crate) struct Admit {
    pub permits: Arc<Semaphore>,
    pub registry: Arc<Registry>,
}

impl Admit {
    pub fn new(max_connections: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            registry: Arc::new(Registry::new()),
        }
    }
}

/// Serves one listener until `stop`, then waits up to `grace` for its connections.
pub(crate) async fn serve(
    listen: Listen,
    hub: Arc<Hub>,
    admit: Arc<Admit>,
    stop: CancellationToken,
    grace: Duration,
) {
    let Listen {
        name,
        listener,
        tls,
    } = listen;
    let per_client = limits::current().per_ip(hub.max_connections.max(1));
    let open = hub.metrics.connections_of(ROLE);
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(role = ROLE, listener = name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Some(permit) = permit(&admit).await else {
            hub.metrics.error(ROLE, Reason::TooManyConnections);
            conns.spawn(refuse(stream, peer, "Server full"));
            continue;
        };
        let slot = match admit.registry.admit(ClientKey::of(peer.ip()), per_client) {
            Admission::Admitted(slot) => slot,
            Admission::ClientFull => {
                hub.metrics.error(ROLE, Reason::TooManyConnections);
                conns.spawn(refuse(
                    stream,
                    peer,
                    "Too many connections from your address",
                ));
                continue;
            }
        };
        let tls_port = tls.is_some();
        let (hub, stop, open, registry, tls) = (
            hub.clone(),
            stop.clone(),
            open.clone(),
            admit.registry.clone(),
            tls.clone(),
        );
        open.inc();
        conns.spawn(async move {
            let _ = stream.set_nodelay(true);
            let stream: Option<Box<dyn Stream>> = match tls {
                None => Some(Box::new(stream)),
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    tokio::select! {
                        r = handshake => match r {
                            Ok(Ok(s)) => Some(Box::new(s) as Box<dyn Stream>),
                            _ => {
                                hub.metrics.error(ROLE, Reason::TlsFailed);
                                None
                            }
                        },
                        _ = stop.cancelled() => None,
                        _ = slot.closed() => None,
                    }
                }
            };
            if let Some(stream) = stream {
                connection(hub, stream, peer, tls_port, slot.clone(), stop).await;
            }
            registry.remove(&slot);
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    let finished =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(
            role = ROLE,
            listener = name,
            ?grace,
            "grace period over; dropping open connections"
        );
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

/// A permit for a new connection: at once, or after the longest-idle unregistered connection
/// made room; `None` when every connection is registered.
async fn permit(admit: &Admit) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = admit.permits.clone().try_acquire_owned() {
        return Some(p);
    }
    if !admit.registry.evict_one() {
        return None;
    }
    tokio::time::timeout(EVICTION_WAIT, admit.permits.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// Tells a refused client why, without waiting for it.
async fn refuse(mut stream: tokio::net::TcpStream, peer: SocketAddr, why: &'static str) {
    let line = format!("ERROR :Closing Link: {} ({why})\r\n", peer.ip());
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(line.as_bytes())).await;
}

/// A connection's byte stream: TCP or TLS.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Token bucket of one connection.
struct Bucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    fn new(tuning: &Tuning) -> Self {
        let burst = f64::from(tuning.flood_burst.max(1));
        Self {
            tokens: burst,
            burst,
            rate: tuning.flood_rate.max(0.01),
            at: Instant::now(),
        }
    }

    /// Takes a token now, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

/// Why the reader stopped.
enum End {
    /// The core closed the connection (QUIT, failed login): the writer finishes.
    Closed,
    /// The client went away or broke the protocol: peers see `reason`.
    Lost(String),
    /// The server closes the connection with an `ERROR` line.
    Close(String, Option<Reason>),
    Shutdown,
}

/// Serves one connection.
async fn connection(
    hub: Arc<Hub>,
    stream: Box<dyn Stream>,
    peer: SocketAddr,
    tls: bool,
    slot: Arc<Slot>,
    stop: CancellationToken,
) {
    let id = hub.next_id.fetch_add(1, Ordering::Relaxed);
    let (rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let kill = CancellationToken::new();
    let closing = CancellationToken::new();
    {
        let mut state = hub.lock();
        state.server.connect(id, peer.ip().to_string(), tls);
        state.outboxes.insert(
            id,
            Outbox {
                tx,
                queued: queued.clone(),
                kill: kill.clone(),
                closing: closing.clone(),
                peer,
            },
        );
    }
    let writer = tokio::spawn(write_loop(
        wr,
        rx,
        queued,
        kill.clone(),
        closing.clone(),
        hub.metrics.clone(),
    ));
    let end = read_loop(&hub, id, rd, &slot, &stop, &closing).await;
    match end {
        End::Closed => {
            // Closed by the core (already forgotten: nothing happens), or the writer failed.
            hub.with(|server, now| server.disconnect(id, "Connection closed", now));
        }
        End::Lost(reason) => {
            hub.with(|server, now| server.disconnect(id, &reason, now));
            kill.cancel();
        }
        End::Close(reason, metric) => {
            if let Some(metric) = metric {
                hub.metrics.error(ROLE, metric);
            }
            hub.with(|server, now| server.close(id, &reason, now));
        }
        End::Shutdown => {
            let mut state = hub.lock();
            state.server.forget(id);
            if let Some(outbox) = state.outboxes.remove(&id) {
                let line = "ERROR :Closing Link: server shutting down";
                let _ = outbox.tx.send(Write::Line(Arc::from(line)));
                let _ = outbox.tx.send(Write::Close);
            }
        }
    }
    // Whatever happened, the hub forgets the connection (its writer ends when the queue
    // drains or the kill token fires).
    {
        let mut state = hub.lock();
        state.server.forget(id);
        if let Some(outbox) = state.outboxes.remove(&id) {
            let _ = outbox.tx.send(Write::Close);
        }
    }
    let mut writer = writer;
    if tokio::time::timeout(CLOSE_FLUSH, &mut writer)
        .await
        .is_err()
    {
        kill.cancel();
        let _ = writer.await;
    }
}

async fn read_loop(
    hub: &Arc<Hub>,
    id: ClientId,
    mut rd: tokio::io::ReadHalf<Box<dyn Stream>>,
    slot: &Arc<Slot>,
    stop: &CancellationToken,
    closing: &CancellationToken,
) -> End {
    let tuning = hub.tuning.clone();
    let started = Instant::now();
    let mut bucket = Bucket::new(&tuning);
    let mut throttled_since: Option<Instant> = None;
    let mut last_heard = Instant::now();
    let mut ping_sent: Option<Instant> = None;
    let mut registered = false;
    // Held once registered: the listener never evicts a registered connection to make room.
    let mut busy = None;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut discarding = false;
    let mut chunk = vec![0u8; 4096];
    loop {
        // Every complete line in the buffer, at the pace flood control allows.
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = buf.drain(..=pos).collect();
            if std::mem::take(&mut discarding) {
                continue; // the end of an over-long line
            }
            let mut waited = false;
            loop {
                let now = Instant::now();
                match bucket.take(now) {
                    Ok(()) => {
                        if !waited {
                            // A line that found a token free: not (or no longer) flooding.
                            throttled_since = None;
                        }
                        break;
                    }
                    Err(wait) => {
                        waited = true;
                        let since = *throttled_since.get_or_insert(now);
                        if now.duration_since(since) >= tuning.flood_excess_after {
                            return End::Close(
                                "Excess Flood".into(),
                                Some(Reason::TooManyCommands),
                            );
                        }
                        // Penalty: nothing more is read until a token is free.
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stop.cancelled() => return End::Shutdown,
                            _ = closing.cancelled() => return End::Closed,
                        }
                    }
                }
            }
            last_heard = Instant::now();
            ping_sent = None;
            let line = String::from_utf8_lossy(&raw);
            let line = line.trim_end_matches(['\r', '\n']);
            hub.metrics.moved(ROLE, Direction::In, raw.len() as u64);
            hub.with(|server, now| server.handle_line(id, line, now));
            if closing.is_cancelled() {
                return End::Closed;
            }
        }
        if buf.len() > MAX_LINE + 2 {
            // An over-long line: refused, and the rest of it skipped.
            buf.clear();
            discarding = true;
            hub.metrics.error(ROLE, Reason::LineTooLong);
            hub.with(|server, now| server.line_too_long(id, now));
        }
        if !registered {
            registered = hub.lock().server.is_registered(id);
        }
        if registered && busy.is_none() {
            busy = Some(slot.busy());
        }
        let deadline = if !registered {
            started + tuning.registration_timeout
        } else if let Some(sent) = ping_sent {
            sent + tuning.ping_timeout
        } else {
            last_heard + tuning.ping_interval
        };
        tokio::select! {
            read = rd.read(&mut chunk) => match read {
                Ok(0) => return End::Lost("Connection closed".into()),
                Ok(n) => {
                    if discarding && let Some(pos) = chunk[..n].iter().position(|b| *b == b'\n') {
                        discarding = false;
                        buf.extend_from_slice(&chunk[pos + 1..n]);
                    } else if !discarding {
                        buf.extend_from_slice(&chunk[..n]);
                    }
                }
                Err(e) => return End::Lost(format!("Read error: {}", e.kind())),
            },
            _ = tokio::time::sleep_until(deadline) => {
                if !registered {
                    if !hub.lock().server.is_registered(id) {
                        return End::Close("Registration timed out".into(), Some(Reason::Timeout));
                    }
                    registered = true;
                    busy = Some(slot.busy());
                } else if let Some(sent) = ping_sent {
                    let secs = Instant::now().duration_since(sent).as_secs()
                        + tuning.ping_interval.as_secs();
                    return End::Close(format!("Ping timeout: {secs} seconds"), Some(Reason::Timeout));
                } else {
                    ping_sent = Some(Instant::now());
                    let line = format!("PING :{}", hub.server_name);
                    hub.with(|_, _| vec![Out::Send { to: id, line: Arc::from(line) }]);
                }
            }
            _ = stop.cancelled() => return End::Shutdown,
            _ = closing.cancelled() => return End::Closed,
            _ = slot.closed() => return End::Close("Server full".into(), Some(Reason::Evicted)),
        }
    }
}

async fn write_loop(
    mut wr: tokio::io::WriteHalf<Box<dyn Stream>>,
    mut rx: mpsc::UnboundedReceiver<Write>,
    queued: Arc<AtomicUsize>,
    kill: CancellationToken,
    done: CancellationToken,
    metrics: AgentMetrics,
) {
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    'outer: loop {
        let first = tokio::select! {
            biased;
            _ = kill.cancelled() => break,
            m = rx.recv() => m,
        };
        let mut close = false;
        let mut next = first;
        // Gather what is queued into one write.
        loop {
            match next {
                Some(Write::Line(line)) => {
                    out.extend_from_slice(line.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                Some(Write::Close) | None => {
                    close = true;
                    break;
                }
            }
            if out.len() >= 64 * 1024 {
                break;
            }
            match rx.try_recv() {
                Ok(m) => next = Some(m),
                Err(_) => break,
            }
        }
        if !out.is_empty() {
            let n = out.len();
            let written = tokio::select! {
                biased;
                _ = kill.cancelled() => break 'outer,
                r = wr.write_all(&out) => r,
            };
            if written.is_err() {
                break;
            }
            queued.fetch_sub(n, Ordering::AcqRel);
            metrics.moved(ROLE, Direction::Out, n as u64);
            out.clear();
        }
        if close {
            break;
        }
    }
    if !kill.is_cancelled() {
        let _ = tokio::time::timeout(Duration::from_secs(5), wr.shutdown()).await;
    }
    done.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let tuning = Tuning {
            flood_burst: 3,
            flood_rate: 2.0,
            ..Tuning::default()
        };
        let mut bucket = Bucket::new(&tuning);
        let t0 = bucket.at;
        for _ in 0..3 {
            assert_eq!(bucket.take(t0), Ok(()));
        }
        let wait = bucket.take(t0).expect_err("empty");
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        assert_eq!(bucket.take(t0 + Duration::from_millis(500)), Ok(()));
        assert!(bucket.take(t0 + Duration::from_millis(600)).is_err());
        // Refills to the burst, no further.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.take(later), Ok(()));
        }
        assert!(bucket.take(later).is_err());
    }
}
