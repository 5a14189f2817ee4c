//! The HTTP listener every HTTP role and the admin endpoint share: HTTP/1.1 and HTTP/2 (prior
//! knowledge, h2c) on one port, a bound on open connections and on each client address's share
//! of them, timeouts for silent, idle and stuck connections, header size limits, and a graceful
//! stop that lets in-flight requests finish.
//!
//! Limits (defaults in [`limits`], overridable by `http:` in the agent configuration):
//! - a new connection must send a complete request head within the header timeout (20 s), which
//!   also covers HTTP version detection; HTTP/1 gets the same time for each later request head;
//! - a connection older than the maximum age (10 min) takes no new request and closes once
//!   the requests in flight are answered, however long they take (HTTP/1 `Connection: close`,
//!   HTTP/2 GOAWAY), so a client that keeps it busy still reconnects and meets NetworkPolicies
//!   and certificates changed since;
//! - a connection with no request in flight for the idle timeout (60 s) is closed (HTTP/1
//!   keep-alive and HTTP/2); HTTP/2 connections are PINGed every half idle timeout and dropped
//!   when a PING is not answered within the header timeout; a response the client stops reading for the idle timeout is
//!   dropped (nginx's `send_timeout`);
//! - `max_connections` are served at once; when they are all open, the connection idle longest
//!   is closed for a new one, and only when every connection has a request in flight do new
//!   clients wait in the kernel's accept queue. One client address (an IPv6 /64) holds at most
//!   a quarter of them (at least 8): beyond that its own longest-idle connection makes room, or
//!   the new connection is closed when all of its connections are busy;
//! - request heads: 32 KiB (request line and fields) and 256 fields for HTTP/1 (431 beyond),
//!   the same 32 KiB as HTTP/2's SETTINGS_MAX_HEADER_LIST_SIZE;
//! - a connection that starts with neither an HTTP/1 request line nor the HTTP/2 preface is
//!   closed without an answer; a 5xx caused by a malformed request body is answered 400.

mod conns;
pub mod limits;
pub mod loopback;
mod preface;
mod unframed;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Role;
use conns::{Conn, Io, Tracked, Verdict};
use unframed::Unframed;
pub use unframed::UnframedMethods;
// The connection registry (per-address caps, eviction of the longest-idle connection) is not
// HTTP-specific: the mail role's line-protocol listener uses it too.
pub use conns::{Admission, Busy, ClientKey, Conn as Slot, Registry};
pub use limits::HttpLimits;

/// Pause after an accept error (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// After an idle connection is asked to close (HTTP/2: GOAWAY), how long it may take.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Binding a listener failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for the {role} role: {source}")]
pub struct BindError {
    pub role: String,
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds a TCP listener, naming the role in the error.
pub async fn bind(role: &str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        role: role.to_string(),
        addr,
        source,
    })
}

/// How one HTTP server runs.
pub struct ServeOptions {
    /// Name used in logs.
    pub role: &'static str,
    /// Connections served at once (see the module's documentation for what happens beyond).
    pub max_connections: usize,
    /// How long in-flight requests may take after `stop` is cancelled.
    pub grace: Duration,
    /// Open connections, for metrics.
    pub open_connections: Gauge,
    /// HTTPS: the TLS handshake (ALPN `h2`, `http/1.1`) comes first, within the header timeout.
    pub tls: Option<TlsAcceptor>,
    /// Requests (by method) whose body, when it has neither `Content-Length` nor
    /// `Transfer-Encoding`, is the rest of the connection (Icecast's sources); `None` for HTTP's
    /// own rule (no body).
    pub unframed: Option<UnframedMethods>,
}

fn builder(limits_of: &HttpLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits_of.header_timeout)
        // No `max_headers`: hyper's own limit, 100 header fields (431 beyond; Apache's
        // `LimitRequestFields` too), is parsed in a buffer on the stack; any other value costs
        // two heap buffers per request (12 KiB at 256, a tenth of a small request's time in the
        // web benchmark's profile).
        .max_buf_size(limits::MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits_of.h2_ping_interval())
        .keep_alive_timeout(limits_of.h2_ping_timeout())
        .max_header_list_size(limits::MAX_HEADER_BYTES as u32);
    builder
}

/// Serves `router` on `listener` with the agent's limits (see [`serve_with`]).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    stop: CancellationToken,
) {
    serve_with(listener, router, options, limits::current(), stop).await
}

/// Serves `router` on `listener` until `stop` is cancelled, then stops accepting, lets open
/// connections finish their requests for up to `grace`, and returns.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let max_connections = options.max_connections.max(1);
    let per_client = limits.per_ip(max_connections);
    let permits = Arc::new(Semaphore::new(max_connections));
    let registry = Arc::new(Registry::new());
    let tasks = TaskTracker::new();
    let builder = Arc::new(builder(&limits));

    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(role = options.role, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Full: make room by closing the longest-idle connection; when every
                // connection is busy, wait for one to end (new clients queue in the kernel).
                if registry.evict_one() {
                    tracing::debug!(
                        role = options.role,
                        "full: closed the longest-idle connection"
                    );
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => break, // the semaphore is never closed
                    },
                }
            }
        };
        let conn = match registry.admit(ClientKey::of(peer.ip()), per_client) {
            Admission::Admitted(conn) => conn,
            Admission::ClientFull => {
                tracing::debug!(role = options.role, %peer, "refused: the client holds its share of connections, all busy");
                continue;
            }
        };
        // Responses are written in a few small writes (headers, then body); with Nagle's
        // algorithm on, the client's delayed ACK held small responses back by tens of ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(role = options.role, error = %e, "cannot set TCP_NODELAY");
        }
        let open = options.open_connections.clone();
        let role = options.role;
        let (builder, registry, router, stop, tls) = (
            builder.clone(),
            registry.clone(),
            router.clone(),
            stop.clone(),
            options.tls.clone(),
        );
        let unframed = options.unframed;
        open.inc();
        tasks.spawn(async move {
            match tls {
                None => {
                    connection(Unframed::new(stream, unframed), conn.clone(), &builder, router, limits, stop, role, peer)
                        .await
                }
                Some(acceptor) => {
                    // The handshake is part of the request head: the same time limit, and it
                    // ends when the connection is evicted or the server stops.
                    let handshake = tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
                    let accepted = tokio::select! {
                        r = handshake => r,
                        _ = conn.closed() => Ok(Err(std::io::ErrorKind::ConnectionAborted.into())),
                        _ = stop.cancelled() => Ok(Err(std::io::ErrorKind::ConnectionAborted.into())),
                    };
                    match accepted {
                        Ok(Ok(tls_stream)) => {
                            connection(Unframed::new(tls_stream, unframed), conn.clone(), &builder, router, limits, stop, role, peer)
                                .await
                        }
                        Ok(Err(e)) => tracing::debug!(role, %peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(role, %peer, "TLS handshake timed out"),
                    }
                }
            }
            registry.remove(&conn);
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    tasks.close();
    tracing::info!(
        role = options.role,
        "stopped accepting; finishing in-flight requests"
    );
    tokio::select! {
        _ = tasks.wait() => tracing::info!(role = options.role, "all connections closed"),
        _ = tokio::time::sleep(options.grace) => {
            tracing::warn!(role = options.role, grace = ?options.grace, "grace period over; dropping open connections");
        }
    }
}

/// Serves one connection until it ends, is evicted, times out, or the server stops.
#[allow(clippy::too_many_arguments)]
async fn connection<S>(
    stream: S,
    conn: Arc<Conn>,
    builder: &Builder<TokioExecutor>,
    router: Router,
    limits: HttpLimits,
    stop: CancellationToken,
    role: &'static str,
    peer: SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = Tracked {
        router,
        conn: conn.clone(),
        peer,
    };
    let served = builder
        .serve_connection_with_upgrades(TokioIo::new(Io::new(stream, conn.clone())), service);
    tokio::pin!(served);
    let watchdog = tokio::time::sleep(limits.header_timeout.min(limits.idle_timeout));
    tokio::pin!(watchdog);
    let aged = tokio::time::sleep(limits.max_connection_age);
    tokio::pin!(aged);
    let mut closing = false;
    // Closing because of its age: the requests in flight may take as long as they need (a
    // large download), so the watchdog keeps judging the connection as before.
    let mut aging = false;
    loop {
        tokio::select! {
            ended = served.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(role, %peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = conn.closed() => {
                tracing::debug!(role, %peer, evicted = conn.evicted(), "connection closed to make room");
                return;
            }
            _ = stop.cancelled(), if !closing || aging => {
                // Closing for its age already shut it down gracefully; from now on the stop's
                // grace applies.
                if !closing {
                    served.as_mut().graceful_shutdown();
                }
                closing = true;
                aging = false;
            }
            _ = aged.as_mut(), if !closing => {
                tracing::debug!(role, %peer, "closing a connection at its maximum age");
                closing = true;
                aging = true;
                served.as_mut().graceful_shutdown();
            }
            _ = watchdog.as_mut() => {
                if closing && !aging {
                    // Asked to close and did not within the grace: drop it.
                    if !stop.is_cancelled() {
                        return;
                    }
                    watchdog.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                    continue;
                }
                match conn.verdict(&limits) {
                    Verdict::Fine(at) => watchdog.as_mut().reset(at.into()),
                    Verdict::Idle => {
                        tracing::debug!(role, %peer, "closing an idle connection");
                        if !closing {
                            served.as_mut().graceful_shutdown();
                        }
                        closing = true;
                        // Idle: nothing is in flight, so the next look drops it.
                        aging = false;
                        watchdog.as_mut().reset(tokio::time::Instant::now() + CLOSE_GRACE);
                    }
                    Verdict::Stuck => {
                        tracing::debug!(role, %peer, "dropping a connection whose client stopped reading");
                        return;
                    }
                }
            }
        }
    }
}

/// An HTTP role whose listener is bound: what the web and file roles hand the supervisor.
pub struct HttpRole {
    role: &'static str,
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    open_connections: Gauge,
    tls: Option<TlsAcceptor>,
    unframed: Option<UnframedMethods>,
}

impl HttpRole {
    pub fn new(
        role: &'static str,
        listener: TcpListener,
        router: Router,
        max_connections: usize,
        open_connections: Gauge,
    ) -> Self {
        Self {
            role,
            listener,
            router,
            max_connections,
            open_connections,
            tls: None,
            unframed: None,
        }
    }

    /// Reads an unframed body of the requests `methods` names as the rest of the connection
    /// (see [`ServeOptions::unframed`]).
    pub fn with_unframed_bodies(mut self, methods: UnframedMethods) -> Self {
        self.unframed = Some(methods);
        self
    }

    /// Serves HTTPS with `acceptor` instead of plain HTTP.
    pub fn with_tls(mut self, acceptor: Option<TlsAcceptor>) -> Self {
        self.tls = acceptor;
        self
    }

    /// Whether the role serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

impl Role for HttpRole {
    fn name(&self) -> &'static str {
        self.role
    }

    /// The role's name, with `+tls` (a static name: `web+tls`, `file+tls`) when it serves HTTPS,
    /// so that whoever prints its address knows the scheme.
    fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        let label = match (self.role, self.tls.is_some()) {
            (role, false) => role,
            ("web", true) => "web+tls",
            ("file", true) => "file+tls",
            ("index", true) => "index+tls",
            ("peer", true) => "peer+tls",
            (role, true) => role,
        };
        self.listener
            .local_addr()
            .map(|a| vec![(label, a)])
            .unwrap_or_default()
    }

    fn run(
        self: Box<Self>,
        stop: CancellationToken,
        grace: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let options = ServeOptions {
            role: self.role,
            max_connections: self.max_connections,
            grace,
            open_connections: self.open_connections,
            tls: self.tls,
            unframed: self.unframed,
        };
        Box::pin(serve(self.listener, self.router, options, stop))
    }
}
