//! The one listener of the line protocols (SMTP, submission, IMAP, POP3): the accept loop, the
//! bounds on open sessions, the TLS hooks and the graceful stop. What each protocol says lives
//! in its session type ([`crate::session::LineProtocol`]); this module never parses a byte.
//!
//! - `max_connections` sessions per listener (a semaphore). When they are all open, the session
//!   idle longest (waiting for a command, not running one) is closed with the protocol's
//!   goodbye to make room; only when every session is busy do new clients wait in the kernel's
//!   accept queue.
//! - One client address (an IPv6 /64) holds at most its share of them (the agent's `http:`
//!   per-address setting, by default a quarter, at least 8): beyond that its own longest-idle
//!   session makes room, or the new connection is closed when all of its sessions are busy.
//!   The registry is the HTTP listener's ([`hostrole_agent_core::net::Registry`]).
//! - Implicit TLS (a port that starts with the handshake) is a hook: a listener built with an
//!   acceptor shakes hands before the greeting; STARTTLS/STLS go through [`crate::conn::Conn`].
//! - A stop lets each session finish its current command and say goodbye; sessions still open
//!   after the grace period are dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hostrole_agent_core::metrics::Reason;
use hostrole_agent_core::net::{Admission, ClientKey, Registry, Slot, limits};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::conn::Conn;
use super::quickack::QuickAck;
use super::{Shared, imap, pop3, session, smtp};

/// Pause after an accept error (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Time for an implicit-TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

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

/// One listener of the role.
pub(crate) struct Listen {
    pub protocol: Protocol,
    /// The listener's name in logs and addresses: the protocol's, or `imaps`, `pop3s`,
    /// `submissions` for the implicit-TLS ports (their metrics count under the protocol).
    pub name: &'static str,
    pub listener: TcpListener,
    /// Implicit TLS (IMAPS, POP3S, submissions; RFC 8314): the handshake comes first. The other
    /// ports offer STARTTLS when the role has a certificate.
    pub implicit_tls: Option<TlsAcceptor>,
}

/// Serves one listener until `stop` is cancelled, then waits up to `grace` for the open
/// sessions.
pub(crate) async fn serve(
    listen: Listen,
    shared: Arc<Shared>,
    stop: CancellationToken,
    grace: Duration,
) {
    let Listen {
        protocol,
        name,
        listener,
        implicit_tls,
    } = listen;
    let max_connections = shared.max_connections.max(1);
    let per_client = limits::current().per_ip(max_connections);
    let permits = Arc::new(Semaphore::new(max_connections));
    let registry = Arc::new(Registry::new());
    let open = shared.metrics.connections_of(protocol.name());
    let mut sessions = JoinSet::new();
    loop {
        while sessions.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(role = name, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Full: the session idle longest makes room; when every session is busy,
                // wait for one to end.
                if registry.evict_one() {
                    tracing::debug!(role = name, "full: closing the longest-idle session");
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => break, // never closed
                    },
                }
            }
        };
        let slot = match registry.admit(ClientKey::of(peer.ip()), per_client) {
            Admission::Admitted(slot) => slot,
            Admission::ClientFull => {
                tracing::debug!(role = name, %peer, "refused: the client holds its share of sessions, all busy");
                shared.error(protocol, Reason::TooManyConnections);
                continue;
            }
        };
        let (shared, stop, open, registry, tls) = (
            shared.clone(),
            stop.clone(),
            open.clone(),
            registry.clone(),
            implicit_tls.clone(),
        );
        open.inc();
        sessions.spawn(async move {
            accepted(protocol, stream, peer, slot.clone(), tls, shared, stop).await;
            registry.remove(&slot);
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
            role = name,
            ?grace,
            "grace period over; dropping open sessions"
        );
        sessions.abort_all();
        while sessions.join_next().await.is_some() {}
    }
}

/// Runs one session: the implicit-TLS handshake when the listener has one, then the protocol.
async fn accepted(
    protocol: Protocol,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<Slot>,
    implicit_tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let stream = QuickAck(stream);
    let conn = match implicit_tls {
        None => Conn::new(
            Box::new(stream),
            peer,
            protocol,
            slot,
            shared.clone(),
            false,
        ),
        Some(acceptor) => {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let done = tokio::select! {
                r = handshake => r,
                _ = slot.closed() => return,
                _ = stop.cancelled() => return,
            };
            match done {
                Ok(Ok(tls)) => Conn::new(Box::new(tls), peer, protocol, slot, shared.clone(), true),
                _ => {
                    shared.error(protocol, Reason::TlsFailed);
                    return;
                }
            }
        }
    };
    let result = match protocol {
        Protocol::Smtp | Protocol::Submission => {
            session::drive(smtp::Session::new(conn, shared), &stop).await
        }
        Protocol::Imap => session::drive(imap::Session::new(conn, shared), &stop).await,
        Protocol::Pop3 => session::drive(pop3::Session::new(conn, shared), &stop).await,
    };
    if let Err(e) = result {
        tracing::debug!(role = protocol.name(), %peer, error = %e, "session ended with an error");
    }
}
