//! The peer role: client and server of a peer-to-peer network at once.
//!
//! - [`catalog`]: the shared folder, chunked and hashed (BLAKE3), cached by (size, mtime);
//! - [`server`]: the peer protocol other peers call (`/v1/resources`, `/v1/chunks`, `/v1/have`,
//!   `/v1/peers`);
//! - [`discovery`]: who else is in the network: the index (hybrid) or DNS, seeds and gossip
//!   (decentralized), and search over what they hold;
//! - [`download`]: parallel, verified, resumable downloads from every peer holding a resource
//!   or part of it ([`swarm`]: verified chunks of downloads in progress are served too);
//! - [`ui`]: the user's page and its JSON API (no login: bind it to loopback).
//!
//! Every request between peers is signed with the network's secret ([`crate::auth`]).

mod catalog;
mod client;
mod discovery;
mod download;
mod server;
mod swarm;
mod ui;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostrole_config::{ENV_POD_IP, ENV_POD_NAME, PeerRoleConfig};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{auth, valid_network};
use hostrole_agent_core::Role;
use hostrole_agent_core::metrics::AgentMetrics;
use hostrole_agent_core::net::{self, BindError, ServeOptions};

/// The role's name in logs, metrics and readiness.
pub const ROLE: &str = "peer";
/// The UI listener's name in logs and the agent's address list.
pub const UI: &str = "peer-ui";
/// Connections the peer protocol serves at once.
const MAX_CONNECTIONS: usize = 256;
/// Connections the UI serves at once.
const UI_MAX_CONNECTIONS: usize = 64;
/// Chunk requests in flight at once, over all downloads.
const TOTAL_FETCHES: usize = 16;
/// Environment variable that delays every chunk this peer serves, in milliseconds, so that a
/// test can act while a transfer runs (kill or pause a source mid-way). Test builds only: the
/// `test-knobs` feature, which release builds and images never have.
#[cfg(feature = "test-knobs")]
pub const ENV_CHUNK_DELAY_MS: &str = "HOSTROLE_PEER_CHUNK_DELAY_MS";

/// Why the peer role cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("the peer role's network {0:?} is not a DNS label")]
    Network(String),
    #[error("cannot read the network secret {path}: {source}")]
    Secret {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the peer role's shared folder {path} is not a writable directory: {source}")]
    Share {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the peer role needs an index URL, discovery DNS name or seeds to find other peers")]
    NoDiscovery,
    #[error("cannot build the peer HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    Bind(#[from] BindError),
}

/// The peer role's own metrics.
#[derive(Clone, Default)]
pub struct PeerMetrics {
    bytes_served: Counter,
    bytes_fetched: Counter,
    chunks_verified: Counter,
    chunks_rejected: Counter,
    peers_known: Gauge,
    downloads_active: Gauge,
}

impl PeerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("hostrole_peer");
        r.register(
            "served_bytes",
            "Chunk bytes sent to other peers",
            self.bytes_served.clone(),
        );
        r.register(
            "fetched_bytes",
            "Chunk bytes received from other peers (verified or not)",
            self.bytes_fetched.clone(),
        );
        r.register(
            "chunks_verified",
            "Chunks whose BLAKE3 matched",
            self.chunks_verified.clone(),
        );
        r.register(
            "chunks_rejected",
            "Chunks whose BLAKE3 did not match (the sender is skipped for that resource)",
            self.chunks_rejected.clone(),
        );
        r.register(
            "peers_known",
            "Other peers of the network known now",
            self.peers_known.clone(),
        );
        r.register(
            "downloads_active",
            "Downloads running now",
            self.downloads_active.clone(),
        );
    }
}

/// How this peer finds the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Hybrid,
    Decentralized,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Hybrid => "hybrid",
            Mode::Decentralized => "decentralized",
        }
    }
}

/// Another peer, as this one knows it.
#[derive(Debug, Clone)]
struct Known {
    address: String,
    /// Unix seconds of the last successful contact (or index heartbeat).
    last_seen: u64,
    resources: Vec<crate::wire::Resource>,
    /// Failed contacts in a row.
    failures: u32,
}

/// What every part of the role shares.
struct Shared {
    id: String,
    network: String,
    address: String,
    mode: Mode,
    port: u16,
    root: PathBuf,
    quota: Option<u64>,
    heartbeat: Duration,
    index_url: Option<String>,
    discovery_dns: Option<String>,
    seeds: Vec<String>,
    fetch: Vec<String>,
    mirror: bool,
    chunk_delay: Duration,
    secret: Arc<Vec<u8>>,
    catalog: catalog::Catalog,
    client: client::Client,
    known: Mutex<HashMap<String, Known>>,
    /// Addresses of peers that called this one (decentralized: contacted next round).
    heard: Mutex<HashSet<String>>,
    downloads: Mutex<BTreeMap<String, download::Record>>,
    /// Downloads in progress whose verified chunks this peer serves.
    partials: Mutex<HashMap<String, swarm::Partial>>,
    slots: Arc<Semaphore>,
    changed: Notify,
    metrics: PeerMetrics,
    agent: AgentMetrics,
    stop: CancellationToken,
}

impl Shared {
    fn state_dir(&self) -> PathBuf {
        self.root.join(catalog::STATE_DIR)
    }

    /// Bytes the share holds: complete files and partial downloads.
    fn used_bytes(&self) -> u64 {
        let partial: u64 = std::fs::read_dir(self.state_dir().join(download::PARTIAL))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        self.catalog.used_bytes() + partial
    }

    fn set_known_gauge(&self, n: usize) {
        self.metrics.peers_known.set(n as i64);
    }
}

/// The bound peer role: the peer protocol and the UI listen.
pub struct Peer {
    shared: Arc<Shared>,
    listener: TcpListener,
    ui_listener: TcpListener,
    agent: AgentMetrics,
}

impl Peer {
    /// Reads the secret, prepares the share (state folder, peer id, first scan) and binds both
    /// ports.
    pub async fn bind(
        config: &PeerRoleConfig,
        host_role: &str,
        ip: IpAddr,
        metrics: &AgentMetrics,
        peer_metrics: &PeerMetrics,
    ) -> Result<Peer, PeerError> {
        if !valid_network(&config.network) {
            return Err(PeerError::Network(config.network.clone()));
        }
        let secret =
            auth::read_secret(&config.secret_file).map_err(|source| PeerError::Secret {
                path: config.secret_file.clone(),
                source,
            })?;
        let mode = if config.index_url.is_some() {
            Mode::Hybrid
        } else if config.discovery_dns.is_some() || !config.seeds.is_empty() {
            Mode::Decentralized
        } else {
            return Err(PeerError::NoDiscovery);
        };
        let share_err = |source| PeerError::Share {
            path: config.root.clone(),
            source,
        };
        let state = config.root.join(catalog::STATE_DIR);
        for dir in [state.join(download::PARTIAL), state.join(ui::STAGING)] {
            std::fs::create_dir_all(&dir).map_err(share_err)?;
        }
        // Uploads cut short by a crash leave staging files behind; nobody will finish them.
        if let Ok(entries) = std::fs::read_dir(state.join(ui::STAGING)) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let id = peer_id(host_role, &state).map_err(share_err)?;
        let address = config.advertise.clone().unwrap_or_else(|| {
            let ip = std::env::var(ENV_POD_IP)
                .ok()
                .and_then(|v| v.parse::<IpAddr>().ok())
                .unwrap_or(ip);
            SocketAddr::new(ip, config.port).to_string()
        });
        let catalog = catalog::Catalog::new(config.root.clone());
        catalog.rescan().await.map_err(share_err)?;
        let client = client::Client::new(secret.clone(), id.clone(), address.clone())
            .map_err(PeerError::Client)?;
        let chunk_delay = chunk_delay();
        let listener = net::bind(ROLE, SocketAddr::new(ip, config.port)).await?;
        let ui_ip = config.ui_bind.unwrap_or(ip);
        let ui_listener = net::bind(UI, SocketAddr::new(ui_ip, config.ui_port)).await?;
        let shared = Arc::new(Shared {
            id,
            network: config.network.clone(),
            address,
            mode,
            port: config.port,
            root: config.root.clone(),
            quota: config.quota_bytes,
            heartbeat: Duration::from_secs(config.heartbeat_seconds.max(1)),
            index_url: config
                .index_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
            discovery_dns: config.discovery_dns.clone(),
            seeds: config.seeds.clone(),
            fetch: config.fetch.clone(),
            mirror: config.mirror,
            chunk_delay,
            secret: Arc::new(secret),
            catalog,
            client,
            known: Mutex::default(),
            heard: Mutex::default(),
            downloads: Mutex::default(),
            partials: Mutex::default(),
            slots: Arc::new(Semaphore::new(TOTAL_FETCHES)),
            changed: Notify::new(),
            metrics: peer_metrics.clone(),
            agent: metrics.clone(),
            stop: CancellationToken::new(),
        });
        tracing::info!(peer = %shared.id, network = %shared.network, mode = shared.mode.as_str(), address = %shared.address, "peer prepared");
        Ok(Peer {
            shared,
            listener,
            ui_listener,
            agent: metrics.clone(),
        })
    }
}

/// The delay before each chunk this peer serves: `HOSTROLE_PEER_CHUNK_DELAY_MS` in test builds,
/// none otherwise.
#[cfg(feature = "test-knobs")]
fn chunk_delay() -> Duration {
    Duration::from_millis(
        std::env::var(ENV_CHUNK_DELAY_MS)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

#[cfg(not(feature = "test-knobs"))]
fn chunk_delay() -> Duration {
    Duration::ZERO
}

/// `$POD_NAME`, else `<host role>-<random>` kept in `<share>/.hostrole/id`.
fn peer_id(host_role: &str, state: &std::path::Path) -> std::io::Result<String> {
    if let Ok(name) = std::env::var(ENV_POD_NAME)
        && crate::valid_peer_id(&name)
    {
        return Ok(name);
    }
    let file = state.join("id");
    if let Ok(id) = std::fs::read_to_string(&file) {
        let id = id.trim().to_string();
        if crate::valid_peer_id(&id) {
            return Ok(id);
        }
    }
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).map_err(std::io::Error::other)?;
    let prefix: String = host_role
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(100)
        .collect();
    let id = format!("{prefix}-{}", hex::encode(random));
    std::fs::write(&file, format!("{id}\n"))?;
    Ok(id)
}

impl Role for Peer {
    fn name(&self) -> &'static str {
        ROLE
    }

    fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut out = Vec::new();
        if let Ok(a) = self.listener.local_addr() {
            out.push((ROLE, a));
        }
        if let Ok(a) = self.ui_listener.local_addr() {
            out.push((UI, a));
        }
        out
    }

    fn run(
        self: Box<Self>,
        stop: CancellationToken,
        grace: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let Peer {
            shared,
            listener,
            ui_listener,
            agent,
        } = *self;
        Box::pin(async move {
            let background = shared.stop.clone();
            download::resume(&shared);
            let discovery = tokio::spawn(discovery::run(shared.clone()));
            let peer_server = net::serve(
                listener,
                server::router(shared.clone()),
                ServeOptions {
                    role: ROLE,
                    max_connections: MAX_CONNECTIONS,
                    grace,
                    open_connections: agent.connections_of(ROLE),
                    tls: None,
                },
                stop.clone(),
            );
            let ui_server = net::serve(
                ui_listener,
                ui::router(shared.clone()),
                ServeOptions {
                    role: UI,
                    max_connections: UI_MAX_CONNECTIONS,
                    grace,
                    open_connections: agent.connections_of(UI),
                    tls: None,
                },
                stop.clone(),
            );
            let stopper = async {
                stop.cancelled().await;
                background.cancel();
            };
            tokio::join!(peer_server, ui_server, stopper);
            let _ = discovery.await;
            discovery::leave(&shared).await;
        })
    }
}
