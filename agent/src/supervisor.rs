//! Starts the roles a configuration names, reports readiness once every role listens, and stops
//! them gracefully on SIGTERM or SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hostrole_api::agent::AgentConfig;
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AgentMetrics, Readiness};
use crate::clients::{self, Clients};
use crate::file::{self, FileError, FileShare};
use crate::index::{self, Index, IndexError, IndexMetrics};
use crate::mail::{self, Mail, MailError};
use crate::net::{self, BindError, ServeOptions};
use crate::peer::{self, Peer, PeerError, PeerMetrics};
use crate::web::{self, Web, WebError};

/// Connections the admin endpoint serves at once (probes and scrapes).
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Web(#[from] WebError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("the configuration names no role: nothing to serve")]
    NoRole,
    #[error("the {0} role stopped unexpectedly")]
    RoleStopped(String),
}

/// A role whose listeners are bound: what the supervisor needs of every role.
pub trait Role: Send {
    /// The role's name in logs, metrics and readiness.
    fn name(&self) -> &'static str;
    /// Each listener: (protocol, address).
    fn addresses(&self) -> Vec<(&'static str, SocketAddr)>;
    /// Serves until `stop` is cancelled, then finishes in-flight work within `grace`.
    fn run(
        self: Box<Self>,
        stop: CancellationToken,
        grace: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Where the agent listens, once every role is bound.
#[derive(Debug, Clone)]
pub struct Started {
    pub admin: SocketAddr,
    pub roles: Vec<(&'static str, SocketAddr)>,
}

/// Runs the agent until SIGTERM/SIGINT, or until `stop` is cancelled. `on_started` is called once
/// every role listens.
pub async fn run(
    config: AgentConfig,
    stop: CancellationToken,
    on_started: impl FnOnce(&Started),
) -> Result<(), AgentError> {
    let metrics = AgentMetrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let clients = Clients::new(config.clients.clone(), &config.host_role, &mut registry);
    let (index_metrics, peer_metrics) = (IndexMetrics::default(), PeerMetrics::default());
    if config.index.is_some() {
        index_metrics.register(&mut registry);
    }
    if config.peer.is_some() {
        peer_metrics.register(&mut registry);
    }
    let readiness = Readiness::new(metrics.clone());
    // Every HTTP listener (admin, web, file, index, peer) takes its limits from here.
    net::limits::configure(net::HttpLimits::from_config(config.http.as_ref()));
    let grace = Duration::from_secs(config.shutdown_grace_seconds);

    let admin_listener =
        net::bind("admin", SocketAddr::new(config.bind, config.admin_port)).await?;
    let admin_addr = admin_listener.local_addr().map_err(|source| BindError {
        role: "admin".into(),
        addr: SocketAddr::new(config.bind, config.admin_port),
        source,
    })?;
    let admin_stop = CancellationToken::new();
    let admin_task = tokio::spawn(net::serve(
        admin_listener,
        admin::router(Arc::new(registry), readiness.clone()).merge(clients.router()),
        ServeOptions {
            role: "admin",
            max_connections: ADMIN_MAX_CONNECTIONS,
            grace: Duration::from_secs(1),
            open_connections: metrics.connections_of("admin"),
        },
        admin_stop.clone(),
    ));

    // Bind every role before serving any, so that readiness means "every role listens".
    let mut bound: Vec<Box<dyn Role>> = Vec::new();
    if let Some(web_config) = &config.web {
        readiness.expect(web::ROLE);
        bound.push(Box::new(
            Web::bind(web_config, config.bind, &metrics).await?,
        ));
    }
    if let Some(file_config) = &config.file {
        readiness.expect(file::ROLE);
        bound.push(Box::new(
            FileShare::bind(file_config, config.bind, &metrics).await?,
        ));
    }
    if let Some(mail_config) = &config.mail {
        readiness.expect(mail::ROLE);
        bound.push(Box::new(
            Mail::bind(mail_config, config.bind, &metrics).await?,
        ));
    }
    // Clients count as a role: a host may only use services. The role is ready once its loops
    // run; a failing client does not make the host unready (its results say so).
    if !config.clients.is_empty() {
        readiness.expect(clients::ROLE);
        bound.push(Box::new(clients));
    }
    if let Some(c) = &config.index {
        readiness.expect(index::ROLE);
        let role = Index::bind(c, config.bind, &metrics, &index_metrics).await?;
        bound.push(Box::new(role));
    }
    if let Some(c) = &config.peer {
        readiness.expect(peer::ROLE);
        let role = Peer::bind(c, &config.host_role, config.bind, &metrics, &peer_metrics).await?;
        bound.push(Box::new(role));
    }

    let roles_stop = CancellationToken::new();
    let mut roles = JoinSet::new();
    let mut started = Started {
        admin: admin_addr,
        roles: Vec::new(),
    };
    for role in bound {
        let name = role.name();
        started.roles.extend(role.addresses());
        readiness.set(name, true);
        let stop = roles_stop.clone();
        roles.spawn(async move {
            role.run(stop, grace).await;
            name
        });
    }
    if roles.is_empty() {
        admin_stop.cancel();
        return Err(AgentError::NoRole);
    }
    tracing::info!(host_role = %config.host_role, roles = ?started.roles, admin = %admin_addr, "every role listens");
    on_started(&started);

    let failure = tokio::select! {
        _ = shutdown_signal() => None,
        _ = stop.cancelled() => None,
        ended = roles.join_next() => Some(match ended {
            Some(Ok(role)) => role.to_string(),
            Some(Err(e)) => format!("(task failed: {e})"),
            None => "(none)".to_string(),
        }),
    };
    tracing::info!("stopping: readiness off, no new connections, finishing in-flight requests");
    readiness.stopping();
    roles_stop.cancel();
    while roles.join_next().await.is_some() {}
    admin_stop.cancel();
    let _ = admin_task.await;
    match failure {
        Some(role) => Err(AgentError::RoleStopped(role)),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
