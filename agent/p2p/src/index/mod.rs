//! The index role: the directory of hybrid peer-to-peer networks, over HTTP+JSON
//! (`docs/peer-protocol.md`). Peers register what they hold and renew it with heartbeats; the
//! state is soft (memory only): after a restart every peer is back within one heartbeat.
//! Every request is signed with its network's secret and by the key its peer id names
//! ([`crate::auth`]), checked before any body is read; the secrets are files in
//! `networks_dir`, read at every request so a network added later needs no restart. Answers
//! carry the network's MAC, bound to the request they answer.

mod directory;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::ConnectInfo;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use hostrole_config::IndexRoleConfig;
use http::StatusCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, AuthError, Authenticated, Gate, ReplayGuard, error_response};
use crate::wire::Registration;
use crate::{valid_network, valid_peer_id};
use hostrole_agent_core::Role;
use hostrole_agent_core::metrics::{AgentMetrics, track};
use hostrole_agent_core::net::{self, BindError, HttpRole};
use hostrole_agent_core::tls::{self, TlsError};

pub use directory::{Directory, Limits, Query as Lookup};

/// The role's name in logs, metrics and readiness.
pub const ROLE: &str = "index";
/// Peers one network may list at once.
pub const MAX_PEERS_PER_NETWORK: usize = 1024;
/// Resources one peer may list.
pub const MAX_RESOURCES_PER_PEER: usize = 4096;
/// New peers one client address may register per network.
pub const MAX_PEERS_PER_CLIENT: usize = 64;
/// What one network's catalogs may take in the index's memory (estimated): members serving
/// huge catalogs under many ids cannot push the index past its pod's memory limit.
pub const MAX_HELD_PER_NETWORK: usize = 32 << 20;
/// Largest request body (a registration with its chunk lists).
pub const MAX_BODY: usize = 8 << 20;
/// Request bodies read at once (each up to [`MAX_BODY`]); more get 503 and try again at the
/// next heartbeat.
pub const MAX_UPLOADS: usize = 4;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 512;

/// Why the index role cannot start.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the index role's networks directory {path} cannot be read: {source}")]
    NetworksDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetworkLabels {
    network: String,
}

/// The index's own metrics (requests are counted by the shared `track` middleware).
#[derive(Clone, Default)]
pub struct IndexMetrics {
    peers: Family<NetworkLabels, Gauge>,
}

impl IndexMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry
            .sub_registry_with_prefix("hostrole_index")
            .register("peers", "Peers listed, by network", self.peers.clone());
    }
}

#[derive(Clone)]
struct AppState {
    directory: Arc<Mutex<Directory>>,
    metrics: IndexMetrics,
}

/// The bound index role.
pub struct Index {
    http: HttpRole,
    state: AppState,
    ttl: u64,
}

impl Index {
    /// Checks the networks directory and binds the port.
    pub async fn bind(
        config: &IndexRoleConfig,
        ip: IpAddr,
        metrics: &AgentMetrics,
        index_metrics: &IndexMetrics,
    ) -> Result<Index, IndexError> {
        std::fs::create_dir_all(&config.networks_dir)
            .and_then(|_| std::fs::read_dir(&config.networks_dir).map(|_| ()))
            .map_err(|source| IndexError::NetworksDir {
                path: config.networks_dir.clone(),
                source,
            })?;
        let ttl = config.ttl_seconds.max(1);
        let state = AppState {
            directory: Arc::new(Mutex::new(Directory::new(
                ttl,
                Limits {
                    max_peers_per_network: MAX_PEERS_PER_NETWORK,
                    max_resources_per_peer: MAX_RESOURCES_PER_PEER,
                    max_peers_per_client: MAX_PEERS_PER_CLIENT,
                    max_held_per_network: MAX_HELD_PER_NETWORK,
                },
            ))),
            metrics: index_metrics.clone(),
        };
        let tls = config
            .tls
            .as_ref()
            .map(|files| tls::acceptor(files, tls::ALPN_HTTP))
            .transpose()?;
        let listener = net::bind(ROLE, SocketAddr::new(ip, config.port)).await?;
        let router = router(config.networks_dir.clone(), state.clone(), metrics.clone());
        Ok(Index {
            http: HttpRole::new(
                ROLE,
                listener,
                router,
                MAX_CONNECTIONS,
                metrics.connections_of(ROLE),
            )
            .with_tls(tls),
            state,
            ttl,
        })
    }
}

impl Role for Index {
    fn name(&self) -> &'static str {
        ROLE
    }

    fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        self.http.addresses()
    }

    fn run(
        self: Box<Self>,
        stop: CancellationToken,
        grace: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let Index { http, state, ttl } = *self;
        let sweeper_stop = stop.clone();
        // Expiry also happens on every write; the sweeper keeps the gauge honest when idle.
        let sweeper = async move {
            let mut tick = tokio::time::interval(Duration::from_secs(ttl.div_ceil(2).max(1)));
            loop {
                tokio::select! {
                    _ = sweeper_stop.cancelled() => break,
                    _ = tick.tick() => {
                        if let Ok(mut d) = state.directory.lock() {
                            d.expire(auth::now());
                            publish(&state.metrics, &d);
                        }
                    }
                }
            }
        };
        Box::pin(async move {
            tokio::join!(Box::new(http).run(stop, grace), sweeper);
        })
    }
}

fn publish(metrics: &IndexMetrics, directory: &Directory) {
    metrics.peers.clear();
    for (network, n) in directory.counts() {
        metrics
            .peers
            .get_or_create(&NetworkLabels { network })
            .set(n as i64);
    }
}

/// The secret of the network named in `/v1/networks/{network}/…`.
fn network_secret(dir: &std::path::Path, path: &str) -> Result<Vec<u8>, AuthError> {
    let network = path
        .strip_prefix("/v1/networks/")
        .and_then(|r| r.split('/').next())
        .unwrap_or_default();
    if !valid_network(network) {
        return Err(AuthError::UnknownNetwork(network.to_string()));
    }
    auth::read_secret(&dir.join(network))
        .map_err(|_| AuthError::UnknownNetwork(network.to_string()))
}

fn router(networks_dir: PathBuf, state: AppState, metrics: AgentMetrics) -> Router {
    let refused = metrics.clone();
    let gate = Gate {
        secrets: Arc::new(move |path| network_secret(&networks_dir, path)),
        max_body: MAX_BODY,
        on_refused: Arc::new(move |e| refused.error(ROLE, e.reason())),
        identity: None,
        replay: Arc::new(Mutex::new(ReplayGuard::new(auth::REPLAY_CACHE))),
        bodies: Arc::new(tokio::sync::Semaphore::new(MAX_UPLOADS)),
    };
    Router::new()
        .route(
            "/v1/networks/{network}/peers/{id}",
            put(register).delete(deregister),
        )
        .route("/v1/networks/{network}/peers", get(list))
        .route("/v1/networks/{network}/lookup", get(lookup))
        .layer(from_fn_with_state(gate, auth::require))
        // The gate already bounds the body; lift axum's 2 MB default for large catalogs.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
        .layer(from_fn_with_state((ROLE, metrics), track))
}

fn same_peer(who: &Authenticated, id: &str) -> Result<(), Box<Response>> {
    if !valid_peer_id(id) || who.peer != id {
        return Err(Box::new(error_response(
            StatusCode::FORBIDDEN,
            format!(
                "peer {} may only register or deregister itself, not {id}",
                who.peer
            ),
        )));
    }
    Ok(())
}

async fn register(
    State(state): State<AppState>,
    Extension(who): Extension<Authenticated>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path((network, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = same_peer(&who, &id) {
        return *r;
    }
    let registration: Registration = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("the registration is not valid JSON: {e}"),
            );
        }
    };
    let Ok(mut directory) = state.directory.lock() else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "index state poisoned");
    };
    let result = directory.register(&network, &id, registration, client.ip(), auth::now());
    publish(&state.metrics, &directory);
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(
            e @ (directory::RegisterError::TooManyPeers { .. }
            | directory::RegisterError::CatalogsFull { .. }),
        ) => error_response(StatusCode::INSUFFICIENT_STORAGE, e.to_string()),
        Err(e @ directory::RegisterError::TooManyFromClient { .. }) => {
            error_response(StatusCode::TOO_MANY_REQUESTS, e.to_string())
        }
        Err(e) => error_response(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

async fn deregister(
    State(state): State<AppState>,
    Extension(who): Extension<Authenticated>,
    Path((network, id)): Path<(String, String)>,
) -> Response {
    if let Err(r) = same_peer(&who, &id) {
        return *r;
    }
    let Ok(mut directory) = state.directory.lock() else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "index state poisoned");
    };
    let removed = directory.deregister(&network, &id);
    publish(&state.metrics, &directory);
    if removed {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error_response(StatusCode::NOT_FOUND, format!("peer {id} is not listed"))
    }
}

async fn list(State(state): State<AppState>, Path(network): Path<String>) -> Response {
    let Ok(directory) = state.directory.lock() else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "index state poisoned");
    };
    Json(directory.peers(&network, auth::now())).into_response()
}

async fn lookup(
    State(state): State<AppState>,
    Path(network): Path<String>,
    Query(pairs): Query<HashMap<String, String>>,
) -> Response {
    let Some(query) = Lookup::from_pairs(&pairs) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "ask for exactly one of name=… (substring) or hash=… (content hash)",
        );
    };
    let Ok(directory) = state.directory.lock() else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "index state poisoned");
    };
    Json(directory.lookup(&network, &query, auth::now())).into_response()
}
