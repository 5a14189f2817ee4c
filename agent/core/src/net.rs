//! The HTTP listener every HTTP role and the admin endpoint share: HTTP/1.1 and HTTP/2 (prior
//! knowledge, h2c) on one port, a bound on open connections, a header read timeout against slow
//! clients, and a graceful stop that lets in-flight requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::Role;

/// A request's headers must arrive within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after an accept error (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    /// Connections served at once; further clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// How long in-flight requests may take after `stop` is cancelled.
    pub grace: Duration,
    /// Open connections, for metrics.
    pub open_connections: Gauge,
}

/// Serves `router` on `listener` until `stop` is cancelled, then stops accepting, lets open
/// connections finish their requests for up to `grace`, and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);

    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // the semaphore is never closed
            },
        };
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
        // Responses are written in a few small writes (headers, then body); with Nagle's
        // algorithm on, the client's delayed ACK held small responses back by tens of ms.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(role = options.role, error = %e, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let open = options.open_connections.clone();
        let role = options.role;
        open.inc();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(role, %peer, error = %e, "connection ended with an error");
            }
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(
        role = options.role,
        "stopped accepting; finishing in-flight requests"
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!(role = options.role, "all connections closed"),
        _ = tokio::time::sleep(options.grace) => {
            tracing::warn!(role = options.role, grace = ?options.grace, "grace period over; dropping open connections");
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
        }
    }
}

impl Role for HttpRole {
    fn name(&self) -> &'static str {
        self.role
    }

    fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        self.listener
            .local_addr()
            .map(|a| vec![(self.role, a)])
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
        };
        Box::pin(serve(self.listener, self.router, options, stop))
    }
}
