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
//! Every request and answer between peers is signed with the network's secret and the peer's
//! own key ([`crate::auth`]); the state is split into [`Settings`] (fixed), the known peers
//! ([`known::Roster`]) and the downloads.

mod catalog;
mod client;
mod discovery;
mod download;
mod known;
pub use known::{KNOWN_PER_ROUND, NEW_PER_ROUND};
pub mod limits;
mod server;
mod swarm;
mod ui;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hostrole_config::{ENV_POD_IP, ENV_POD_NAME, PeerRoleConfig};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::{auth, valid_network};
use hostrole_agent_core::Role;
use hostrole_agent_core::metrics::AgentMetrics;
use hostrole_agent_core::net::{self, BindError, ServeOptions};
use hostrole_agent_core::tls::{self, TlsAcceptor, TlsError};

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
    #[error("the peer role's seed {0:?} is not host:port (a DNS name or IP address and a port)")]
    Seed(String),
    #[error(
        "the peer's address {0:?} is not host:port: set advertise to the address other peers reach it at"
    )]
    Address(String),
    #[error("cannot read or create the peer's key {path}: {source}")]
    Identity {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the peer HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(
        "the peer role has tls but no network CA at {path}: peers of a network accept each other by the CA that signed their certificates; put that CA's certificate in the tls Secret as ca.crt (cert-manager's CA and self-signed issuers write it)"
    )]
    NoNetworkCa { path: PathBuf },
    #[error("the peer role's limits: {0}")]
    Limits(#[from] limits::LimitError),
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
    gossip_rounds: Counter,
    gossip_contacts: Family<ContactLabels, Counter>,
}

/// How a gossip contact went: `result` of `hostrole_peer_gossip_contacts_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum ContactResult {
    /// A catalog came whole (new peer, or it changed).
    Catalog,
    /// A signed `304`: the catalog held is current.
    Unchanged,
    /// No usable answer.
    Failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContactLabels {
    result: ContactResult,
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
        r.register(
            "gossip_rounds",
            "Discovery rounds that contacted peers directly (decentralized, or hybrid while the index is away)",
            self.gossip_rounds.clone(),
        );
        r.register(
            "gossip_contacts",
            "Peers contacted by gossip, by result: Catalog (pulled whole), Unchanged (304), Failed",
            self.gossip_contacts.clone(),
        );
    }

    /// A gossip round with these contact results.
    pub fn gossip_round(&self, results: impl IntoIterator<Item = ContactResult>) {
        self.gossip_rounds.inc();
        for result in results {
            self.gossip_contacts
                .get_or_create(&ContactLabels { result })
                .inc();
        }
    }
}

/// How this peer finds the others: one of two modes, each with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// Through an index (base URL without a trailing `/`); the peers it lists are also
    /// remembered and asked directly while the index is away.
    Hybrid { index_url: String },
    /// By DNS (A/AAAA records of a name, contacted on the peer port), seeds and gossip.
    Decentralized {
        dns: Option<String>,
        seeds: Vec<String>,
    },
}

impl Discovery {
    /// The mode the configuration asks for: an index URL makes it hybrid; else a DNS name or
    /// seeds make it decentralized; seeds must be strict `host:port`.
    pub fn from_config(config: &PeerRoleConfig) -> Result<Discovery, PeerError> {
        if let Some(url) = &config.index_url {
            return Ok(Discovery::Hybrid {
                index_url: url.trim_end_matches('/').to_string(),
            });
        }
        if let Some(bad) = config.seeds.iter().find(|s| !crate::valid_address(s)) {
            return Err(PeerError::Seed(bad.clone()));
        }
        if config.discovery_dns.is_none() && config.seeds.is_empty() {
            return Err(PeerError::NoDiscovery);
        }
        Ok(Discovery::Decentralized {
            dns: config.discovery_dns.clone(),
            seeds: config.seeds.clone(),
        })
    }

    fn as_str(&self) -> &'static str {
        match self {
            Discovery::Hybrid { .. } => "hybrid",
            Discovery::Decentralized { .. } => "decentralized",
        }
    }

    fn index_url(&self) -> Option<&str> {
        match self {
            Discovery::Hybrid { index_url } => Some(index_url),
            Discovery::Decentralized { .. } => None,
        }
    }
}

/// The services the configuration offers the network: the valid ones (an index refuses a
/// registration with an invalid one, so it is left out, and said).
fn offered(config: &PeerRoleConfig) -> Vec<crate::wire::Service> {
    let all: Vec<crate::wire::Service> = config
        .printer
        .iter()
        .map(|p| crate::wire::Service {
            kind: crate::wire::ServiceKind::Print,
            port: p.port,
            tls: p.tls,
            name: p.name.clone(),
        })
        .collect();
    let count = all.len();
    let valid = crate::wire::sane_services(all);
    if valid.len() < count {
        tracing::warn!(
            "the printer is not offered to the network: its name must be 1-127 bytes without control characters"
        );
    }
    valid
}

/// What the configuration says; fixed while the role runs.
struct Settings {
    network: String,
    address: String,
    port: u16,
    root: PathBuf,
    quota: Option<u64>,
    heartbeat: Duration,
    discovery: Discovery,
    fetch: Vec<String>,
    mirror: bool,
    chunk_delay: Duration,
    /// What else this peer offers the network (its host's printer).
    services: Vec<crate::wire::Service>,
}

/// Downloads running or done, and the partial files whose verified chunks this peer serves.
#[derive(Default)]
struct Downloads {
    records: Mutex<BTreeMap<String, download::Record>>,
    /// Downloads in progress whose verified chunks this peer serves.
    partials: Mutex<HashMap<String, swarm::Partial>>,
}

/// What every part of the role shares: settings, identity, the share, known peers, downloads.
struct Shared {
    settings: Settings,
    id: String,
    identity: Arc<auth::Identity>,
    secret: Arc<Vec<u8>>,
    catalog: catalog::Catalog,
    client: client::Client,
    peers: Mutex<known::Roster>,
    downloads: Downloads,
    slots: Arc<Semaphore>,
    /// Upload and download rates and upload slots, changeable from the UI.
    limits: limits::Limiter,
    changed: Notify,
    metrics: PeerMetrics,
    agent: AgentMetrics,
    stop: CancellationToken,
}

impl Shared {
    fn state_dir(&self) -> PathBuf {
        self.settings.root.join(catalog::STATE_DIR)
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
    /// HTTPS for the peer protocol.
    tls: Option<TlsAcceptor>,
    ui_listener: TcpListener,
    agent: AgentMetrics,
}

/// Where the UI listens: `ui_bind` when the configuration names it, else the loopback address
/// of the agent's address family. It has no login, so `up --bind 0.0.0.0` (which opens the
/// services to the network) never opens the UI with them.
pub fn ui_address(ui_bind: Option<IpAddr>, bind: IpAddr) -> IpAddr {
    ui_bind.unwrap_or(match bind {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    })
}

impl Peer {
    /// Reads the secret and the peer's key, prepares the share (state folder, first scan) and
    /// binds both ports.
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
        let discovery = Discovery::from_config(config)?;
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
        let identity = Arc::new(
            auth::Identity::load_or_create(&state, &peer_name(host_role)).map_err(|source| {
                PeerError::Identity {
                    path: state.join(auth::KEY_FILE),
                    source,
                }
            })?,
        );
        let id = identity.id().to_string();
        let address = config.advertise.clone().unwrap_or_else(|| {
            let ip = std::env::var(ENV_POD_IP)
                .ok()
                .and_then(|v| v.parse::<IpAddr>().ok())
                .unwrap_or(ip);
            SocketAddr::new(ip, config.port).to_string()
        });
        if !crate::valid_address(&address) {
            return Err(PeerError::Address(address));
        }
        let catalog = catalog::Catalog::new(config.root.clone());
        catalog.rescan().await.map_err(share_err)?;
        let secret = Arc::new(secret);
        let (acceptor, transport) = transport(config)?;
        let client = client::Client::new(
            secret.clone(),
            identity.clone(),
            address.clone(),
            transport,
            ip,
        )
        .map_err(PeerError::Client)?;
        let chunk_delay = chunk_delay();
        let limits = limits::Limits {
            upload_bytes_per_second: config.upload_bytes_per_second,
            download_bytes_per_second: config.download_bytes_per_second,
            upload_slots: config.upload_slots,
        };
        limits.validate()?;
        let listener = net::bind(ROLE, SocketAddr::new(ip, config.port)).await?;
        let ui_ip = ui_address(config.ui_bind, ip);
        let ui_listener = net::bind(UI, SocketAddr::new(ui_ip, config.ui_port)).await?;
        let mut roster = known::Roster::default();
        roster.restore(&id, known::load(&state));
        let shared = Arc::new(Shared {
            settings: Settings {
                network: config.network.clone(),
                address,
                port: config.port,
                root: config.root.clone(),
                quota: config.quota_bytes,
                heartbeat: Duration::from_secs(config.heartbeat_seconds.max(1)),
                discovery,
                fetch: config.fetch.clone(),
                mirror: config.mirror,
                chunk_delay,
                services: offered(config),
            },
            id,
            identity,
            secret,
            catalog,
            client,
            peers: Mutex::new(roster),
            downloads: Downloads::default(),
            slots: Arc::new(Semaphore::new(TOTAL_FETCHES)),
            limits: limits::Limiter::new(limits),
            changed: Notify::new(),
            metrics: peer_metrics.clone(),
            agent: metrics.clone(),
            stop: CancellationToken::new(),
        });
        tracing::info!(peer = %shared.id, network = %shared.settings.network, mode = shared.settings.discovery.as_str(), address = %shared.settings.address, "peer prepared");
        Ok(Peer {
            shared,
            listener,
            tls: acceptor,
            ui_listener,
            agent: metrics.clone(),
        })
    }
}

/// The peer protocol's TLS: what this peer serves, and how it reaches the others and the
/// index.
fn transport(
    config: &PeerRoleConfig,
) -> Result<(Option<TlsAcceptor>, client::Transport), PeerError> {
    let index = match &config.index_ca {
        Some(path) if path.exists() => Some(tls::client_config(tls::roots(path)?)?),
        _ => None,
    };
    let Some(files) = &config.tls else {
        return Ok((None, client::Transport { peers: None, index }));
    };
    let ca = config.network_ca.clone().unwrap_or_default();
    if !ca.is_file() {
        return Err(PeerError::NoNetworkCa { path: ca });
    }
    let acceptor = tls::acceptor(files, tls::ALPN_HTTP)?;
    let peers = tls::network_client_config(tls::roots(&ca)?)?;
    Ok((
        Some(acceptor),
        client::Transport {
            peers: Some(peers),
            index,
        },
    ))
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

/// The name part of this peer's id: `$POD_NAME`, else the HostRole's name (the key part makes
/// the id unique).
fn peer_name(host_role: &str) -> String {
    std::env::var(ENV_POD_NAME)
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| host_role.to_string())
}

impl Role for Peer {
    fn name(&self) -> &'static str {
        ROLE
    }

    fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut out = Vec::new();
        if let Ok(a) = self.listener.local_addr() {
            out.push((if self.tls.is_some() { "peer+tls" } else { ROLE }, a));
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
            tls,
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
                    tls,
                    unframed: None,
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
                    unframed: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(index: Option<&str>, dns: Option<&str>, seeds: &[&str]) -> PeerRoleConfig {
        PeerRoleConfig {
            network: "n".into(),
            port: 7001,
            ui_port: 8090,
            ui_bind: None,
            root: PathBuf::from("/tmp/x"),
            quota_bytes: None,
            secret_file: PathBuf::from("/tmp/s"),
            index_url: index.map(str::to_string),
            discovery_dns: dns.map(str::to_string),
            seeds: seeds.iter().map(|s| s.to_string()).collect(),
            advertise: None,
            heartbeat_seconds: 5,
            fetch: vec![],
            mirror: false,
            tls: None,
            network_ca: None,
            index_ca: None,
            upload_bytes_per_second: None,
            download_bytes_per_second: None,
            upload_slots: None,
            printer: None,
        }
    }

    #[test]
    fn a_peer_with_tls_and_no_network_ca_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut with_tls = config(None, None, &["127.0.0.1:7001"]);
        with_tls.tls = Some(hostrole_config::TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        });
        with_tls.network_ca = Some(dir.path().join("ca.crt"));
        let Err(err) = transport(&with_tls) else {
            panic!("a peer with tls and no CA");
        };
        let text = err.to_string();
        assert!(
            text.contains(&dir.path().join("ca.crt").display().to_string())
                && text.contains("as ca.crt"),
            "{text}"
        );
        // Without tls, plain HTTP to peers and the system's roots for an https index.
        let (acceptor, transport) =
            transport(&config(None, None, &["127.0.0.1:7001"])).expect("plain");
        assert!(acceptor.is_none() && transport.peers.is_none() && transport.index.is_none());
    }

    #[test]
    fn the_mode_is_one_enum_with_what_it_needs() {
        assert_eq!(
            Discovery::from_config(&config(Some("http://idx:7000/"), None, &[])).expect("hybrid"),
            Discovery::Hybrid {
                index_url: "http://idx:7000".into()
            }
        );
        assert_eq!(
            Discovery::from_config(&config(None, Some("peers-n"), &["h:1"])).expect("dec"),
            Discovery::Decentralized {
                dns: Some("peers-n".into()),
                seeds: vec!["h:1".into()]
            }
        );
        assert!(matches!(
            Discovery::from_config(&config(None, None, &[])),
            Err(PeerError::NoDiscovery)
        ));
        let e = Discovery::from_config(&config(None, None, &["h:1/x?"])).expect_err("bad seed");
        assert!(e.to_string().contains("host:port"), "{e}");
    }

    #[test]
    fn the_ui_stays_on_loopback_unless_configured() {
        let any4: IpAddr = "0.0.0.0".parse().expect("ip");
        let any6: IpAddr = "::".parse().expect("ip");
        assert_eq!(ui_address(None, any4), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(ui_address(None, any6), "::1".parse::<IpAddr>().expect("ip"));
        let set: IpAddr = "127.0.0.5".parse().expect("ip");
        assert_eq!(ui_address(Some(set), any4), set);
    }
}
