//! The one place that names every role: which of them a configuration asks for, how each binds,
//! and what each adds to the admin endpoint (metrics, routes). The supervisor runs whatever this
//! returns through the [`Role`] trait and knows no role by name.

use std::net::IpAddr;

use axum::Router;
use hostrole_agent_core::Role;
use hostrole_agent_core::metrics::AgentMetrics;
use hostrole_agent_core::net::BindError;
use hostrole_chat::{Chat, ChatError};
use hostrole_clients::{Clients, Results};
use hostrole_config::AgentConfig;
use hostrole_mail::{Mail, MailError};
use hostrole_p2p::index::{Index, IndexError, IndexMetrics};
use hostrole_p2p::peer::{Peer, PeerError, PeerMetrics};
use hostrole_print::{Print, PrintError, PrintMetrics};
use hostrole_radio::{Radio, RadioError};
use prometheus_client::registry::Registry;

use crate::admin::Readiness;
use crate::file::{FileError, FileShare};
use crate::web::{Web, WebError};

/// Why a role could not start.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Web(#[from] WebError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Radio(#[from] RadioError),
    #[error(transparent)]
    Print(#[from] PrintError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Peer(#[from] PeerError),
}

/// A role that could not start, named.
#[derive(Debug, thiserror::Error)]
#[error("the {role} role cannot start: {source}")]
pub struct RoleFailure {
    pub role: &'static str,
    #[source]
    pub source: RoleError,
}

/// Names the role of an error.
fn named<E: Into<RoleError>>(role: &'static str) -> impl FnOnce(E) -> RoleFailure {
    move |e| RoleFailure {
        role,
        source: e.into(),
    }
}

/// The roles of a configuration, bound, with what they add to the admin endpoint.
pub struct Bound {
    pub roles: Vec<Box<dyn Role>>,
    /// Routes the roles add to the admin endpoint (the clients' `/clients`).
    pub admin_routes: Router,
    /// The clients' latest results, live.
    pub client_results: Results,
}

/// Binds every role `config` names, in a fixed order, registering each role's own metrics in
/// `registry` and declaring it to `readiness` (not ready until it runs).
pub async fn bind(
    config: &AgentConfig,
    metrics: &AgentMetrics,
    registry: &mut Registry,
    readiness: &Readiness,
) -> Result<Bound, RoleFailure> {
    let ip: IpAddr = config.bind;
    let mut roles: Vec<Box<dyn Role>> = Vec::new();
    // `/clients` answers on every host (an empty list without clients).
    let clients = Clients::new(config.clients.clone(), &config.host_role, registry);
    let admin_routes = clients.router();
    let client_results = clients.results();
    if let Some(c) = &config.web {
        readiness.expect(crate::web::ROLE);
        roles.push(Box::new(
            Web::bind(c, ip, metrics)
                .await
                .map_err(named(crate::web::ROLE))?,
        ));
    }
    if let Some(c) = &config.file {
        readiness.expect(crate::file::ROLE);
        roles.push(Box::new(
            FileShare::bind(c, ip, metrics)
                .await
                .map_err(named(crate::file::ROLE))?,
        ));
    }
    if let Some(c) = &config.mail {
        readiness.expect(hostrole_mail::ROLE);
        roles.push(Box::new(
            Mail::bind(c, ip, metrics)
                .await
                .map_err(named(hostrole_mail::ROLE))?,
        ));
    }
    if let Some(c) = &config.chat {
        readiness.expect(hostrole_chat::ROLE);
        roles.push(Box::new(
            Chat::bind(c, ip, metrics)
                .await
                .map_err(named(hostrole_chat::ROLE))?,
        ));
    }
    if let Some(c) = &config.radio {
        readiness.expect(hostrole_radio::ROLE);
        roles.push(Box::new(
            Radio::bind(c, ip, metrics)
                .await
                .map_err(named(hostrole_radio::ROLE))?,
        ));
    }
    if let Some(c) = &config.print {
        let print_metrics = PrintMetrics::default();
        print_metrics.register(registry);
        readiness.expect(hostrole_print::ROLE);
        roles.push(Box::new(
            Print::bind(c, ip, metrics, &print_metrics)
                .await
                .map_err(named(hostrole_print::ROLE))?,
        ));
    }
    // Clients count as a role: a host may only use services. The role is ready once its loops
    // run; a failing client does not make the host unready (its results say so).
    if !config.clients.is_empty() {
        readiness.expect(hostrole_clients::ROLE);
        roles.push(Box::new(clients));
    }
    if let Some(c) = &config.index {
        let index_metrics = IndexMetrics::default();
        index_metrics.register(registry);
        readiness.expect(hostrole_p2p::index::ROLE);
        roles.push(Box::new(
            Index::bind(c, ip, metrics, &index_metrics)
                .await
                .map_err(named(hostrole_p2p::index::ROLE))?,
        ));
    }
    if let Some(c) = &config.peer {
        let peer_metrics = PeerMetrics::default();
        peer_metrics.register(registry);
        readiness.expect(hostrole_p2p::peer::ROLE);
        roles.push(Box::new(
            Peer::bind(c, &config.host_role, ip, metrics, &peer_metrics)
                .await
                .map_err(named(hostrole_p2p::peer::ROLE))?,
        ));
    }
    Ok(Bound {
        roles,
        admin_routes,
        client_results,
    })
}
