//! The accept loop every mail protocol shares: a semaphore bounds open sessions (further
//! clients wait in the kernel's accept queue), and a stop lets each session finish its current
//! command before it says goodbye; sessions still open after the grace period are dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::conn::Conn;
use super::{Shared, imap, pop3, smtp};

/// Pause after an accept error (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The four listeners of the mail role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Port 25-style SMTP: delivery to local users only, no AUTH.
    Smtp,
    /// Message submission: AUTH required before MAIL.
    Submission,
    Imap,
    Pop3,
}

impl Protocol {
    /// The name in logs and in the `role` label of metrics.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Submission => "submission",
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
        }
    }
}

/// Serves `protocol` on `listener` until `stop` is cancelled, then waits up to `grace` for the
/// open sessions.
pub(crate) async fn serve(
    protocol: Protocol,
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    grace: Duration,
) {
    let permits = Arc::new(Semaphore::new(shared.max_connections.max(1)));
    let open = shared.metrics.connections_of(protocol.name());
    let mut sessions = JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(role = protocol.name(), error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let stop = stop.clone();
        let open = open.clone();
        open.inc();
        sessions.spawn(async move {
            session(protocol, stream, peer, shared, stop).await;
            open.dec();
            drop(permit);
        });
    }
    drop(listener);
    let finished = tokio::time::timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            role = protocol.name(),
            ?grace,
            "grace period over; dropping open sessions"
        );
        sessions.abort_all();
        while sessions.join_next().await.is_some() {}
    }
}

async fn session(
    protocol: Protocol,
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let conn = Conn::new(stream, peer, protocol, shared.clone());
    let result = match protocol {
        Protocol::Smtp | Protocol::Submission => smtp::session(conn, shared, stop).await,
        Protocol::Imap => imap::session(conn, shared, stop).await,
        Protocol::Pop3 => pop3::session(conn, shared, stop).await,
    };
    if let Err(e) = result {
        tracing::debug!(role = protocol.name(), %peer, error = %e, "session ended with an error");
    }
}
