//! Starts the roles a configuration names, reports readiness once every role listens, and stops
//! them gracefully on SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hostrole_agent_core::metrics::AgentMetrics;
use hostrole_agent_core::net::{self, BindError, ServeOptions};
use hostrole_agent_core::telemetry::shutdown_signal;
use hostrole_clients::Results;
use hostrole_config::AgentConfig;
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, Readiness};
use crate::roles::{self, RoleFailure};

/// Connections the admin endpoint serves at once (probes and scrapes).
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Role(#[from] RoleFailure),
    #[error("the configuration names no role: nothing to serve")]
    NoRole,
    #[error("the {0} role stopped unexpectedly")]
    RoleStopped(String),
}

impl AgentError {
    /// The role that made the agent stop, if one did.
    pub fn role(&self) -> Option<&str> {
        match self {
            Self::Role(failure) => Some(failure.role),
            Self::RoleStopped(role) => Some(role),
            Self::Bind(_) | Self::NoRole => None,
        }
    }
}

/// Where the agent listens, once every role is bound, and its live state.
#[derive(Debug, Clone)]
pub struct Started {
    pub admin: SocketAddr,
    pub roles: Vec<(&'static str, SocketAddr)>,
    pub live: Live,
}

/// What the agent's admin endpoint reports, live: which roles listen, the clients' results.
#[derive(Clone)]
pub struct Live {
    pub readiness: Readiness,
    pub clients: Results,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("roles", &self.readiness.roles())
            .finish_non_exhaustive()
    }
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
    let readiness = Readiness::new(metrics.clone());
    // Every HTTP listener (admin, web, file, index, peer) takes its limits from here.
    net::limits::configure(net::HttpLimits::from_config(config.http.as_ref()));
    let grace = Duration::from_secs(config.shutdown_grace_seconds);

    // The admin port is taken first, so a clash is reported before any role starts.
    let admin_addr = SocketAddr::new(config.bind, config.admin_port);
    let admin_listener = net::bind("admin", admin_addr).await?;
    let admin_addr = admin_listener.local_addr().map_err(|source| BindError {
        role: "admin".into(),
        addr: admin_addr,
        source,
    })?;

    // Bind every role before serving any, so that readiness means "every role listens".
    let bound = roles::bind(&config, &metrics, &mut registry, &readiness).await?;
    let live = Live {
        readiness: readiness.clone(),
        clients: bound.client_results.clone(),
    };
    let admin_stop = CancellationToken::new();
    let admin_task = tokio::spawn(net::serve(
        admin_listener,
        admin::router(Arc::new(registry), readiness.clone()).merge(bound.admin_routes),
        ServeOptions {
            role: "admin",
            max_connections: ADMIN_MAX_CONNECTIONS,
            grace: Duration::from_secs(1),
            open_connections: metrics.connections_of("admin"),
            tls: None,
            unframed: None,
        },
        admin_stop.clone(),
    ));

    let roles_stop = CancellationToken::new();
    let mut roles = JoinSet::new();
    let mut started = Started {
        admin: admin_addr,
        roles: Vec::new(),
        live,
    };
    for role in bound.roles {
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
