//! The index's soft state: per network, the peers that registered and what they hold. Pure (no
//! I/O, time passed in), so expiry, caps and lookups are tested without a server.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::valid_address;
use crate::wire::CHUNK_SIZE;
use crate::wire::{
    Found, Holder, MAX_SERVICES, PeerEntry, Registration, Resource, Service, footprint,
};
use hostrole_proto::peer::valid_resource_name;

/// Bounds that keep one network from filling the index's memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_peers_per_network: usize,
    pub max_resources_per_peer: usize,
    /// New peer ids one client address may hold in one network: a flood of registrations from
    /// one place cannot fill the network (each identity is one entry by construction: the id
    /// names its key).
    pub max_peers_per_client: usize,
    /// What one network's catalogs may take in memory together, as
    /// [`crate::wire::footprint`] estimates it.
    pub max_held_per_network: usize,
}

/// Why a registration is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegisterError {
    #[error("network {network} already lists {max} peers: the index's limit")]
    TooManyPeers { network: String, max: usize },
    #[error(
        "{client} already registered {max} peers in network {network}: the limit per client address"
    )]
    TooManyFromClient {
        network: String,
        client: IpAddr,
        max: usize,
    },
    #[error(
        "resource name {0:?} is not a plain relative path (no `..`, no leading `/`, nothing hidden)"
    )]
    Name(String),
    #[error("resource {name:?}: chunkSize {got} is not the protocol's {CHUNK_SIZE}")]
    ChunkSize { name: String, got: u64 },
    #[error("a peer may list at most {max} resources; this one lists {got}")]
    TooManyResources { max: usize, got: usize },
    #[error("resource {name:?}: its chunk list does not match its size, or a hash is malformed")]
    Inconsistent { name: String },
    #[error("address {0:?} is not host:port")]
    Address(String),
    #[error("a peer may list at most {max} services; this one lists {got}")]
    TooManyServices { max: usize, got: usize },
    #[error(
        "service {0:?}: its port must be 1-65535 and its name 1-127 bytes without control characters"
    )]
    Service(String),
    #[error(
        "network {network} already holds catalogs of about {held} bytes; this one (about {size}) would pass the index's budget of {max}"
    )]
    CatalogsFull {
        network: String,
        held: usize,
        size: usize,
        max: usize,
    },
}

struct Peer {
    address: String,
    client: IpAddr,
    last_seen: u64,
    resources: Vec<Resource>,
    services: Vec<Service>,
    /// [`footprint`] of `resources`.
    held: usize,
}

/// Every network's peers.
pub struct Directory {
    ttl: u64,
    limits: Limits,
    networks: HashMap<String, BTreeMap<String, Peer>>,
}

impl Directory {
    pub fn new(ttl: u64, limits: Limits) -> Self {
        Self {
            ttl,
            limits,
            networks: HashMap::new(),
        }
    }

    /// Registers or renews a peer (a heartbeat is the same PUT) from `client`.
    pub fn register(
        &mut self,
        network: &str,
        id: &str,
        registration: Registration,
        client: IpAddr,
        now: u64,
    ) -> Result<(), RegisterError> {
        if registration.resources.len() > self.limits.max_resources_per_peer {
            return Err(RegisterError::TooManyResources {
                max: self.limits.max_resources_per_peer,
                got: registration.resources.len(),
            });
        }
        if let Some(bad) = registration
            .resources
            .iter()
            .find(|r| !valid_resource_name(&r.name))
        {
            return Err(RegisterError::Name(bad.name.clone()));
        }
        if let Some(bad) = registration
            .resources
            .iter()
            .find(|r| r.chunk_size != CHUNK_SIZE)
        {
            return Err(RegisterError::ChunkSize {
                name: bad.name.clone(),
                got: bad.chunk_size,
            });
        }
        if let Some(bad) = registration.resources.iter().find(|r| !r.consistent()) {
            return Err(RegisterError::Inconsistent {
                name: bad.name.clone(),
            });
        }
        if !valid_address(&registration.address) {
            return Err(RegisterError::Address(registration.address));
        }
        if registration.services.len() > MAX_SERVICES {
            return Err(RegisterError::TooManyServices {
                max: MAX_SERVICES,
                got: registration.services.len(),
            });
        }
        if let Some(bad) = registration.services.iter().find(|s| !s.valid()) {
            return Err(RegisterError::Service(bad.name.chars().take(127).collect()));
        }
        self.expire(now);
        let peers = self.networks.entry(network.to_string()).or_default();
        if !peers.contains_key(id) {
            let from_client = peers.values().filter(|p| p.client == client).count();
            if from_client >= self.limits.max_peers_per_client {
                return Err(RegisterError::TooManyFromClient {
                    network: network.to_string(),
                    client,
                    max: self.limits.max_peers_per_client,
                });
            }
            if peers.len() >= self.limits.max_peers_per_network {
                return Err(RegisterError::TooManyPeers {
                    network: network.to_string(),
                    max: self.limits.max_peers_per_network,
                });
            }
        }
        let size = footprint(&registration.resources);
        let held: usize = peers
            .iter()
            .filter(|(other, _)| *other != id)
            .map(|(_, p)| p.held)
            .sum();
        if held + size > self.limits.max_held_per_network {
            return Err(RegisterError::CatalogsFull {
                network: network.to_string(),
                held,
                size,
                max: self.limits.max_held_per_network,
            });
        }
        peers.insert(
            id.to_string(),
            Peer {
                address: registration.address,
                client,
                last_seen: now,
                held: size,
                resources: registration.resources,
                services: registration.services,
            },
        );
        Ok(())
    }

    /// Removes a peer; whether it was listed.
    pub fn deregister(&mut self, network: &str, id: &str) -> bool {
        self.networks
            .get_mut(network)
            .is_some_and(|p| p.remove(id).is_some())
    }

    /// Drops peers whose last heartbeat is older than the TTL.
    pub fn expire(&mut self, now: u64) {
        let ttl = self.ttl;
        for peers in self.networks.values_mut() {
            peers.retain(|_, p| now.saturating_sub(p.last_seen) <= ttl);
        }
        self.networks.retain(|_, p| !p.is_empty());
    }

    /// Peers listed per network (for the gauge).
    pub fn counts(&self) -> Vec<(String, usize)> {
        self.networks
            .iter()
            .map(|(n, p)| (n.clone(), p.len()))
            .collect()
    }

    /// The network's live peers, freshest first.
    pub fn peers(&self, network: &str, now: u64) -> Vec<PeerEntry> {
        let mut list: Vec<PeerEntry> = self
            .live(network, now)
            .map(|(id, p)| PeerEntry {
                id: id.clone(),
                address: p.address.clone(),
                last_seen: p.last_seen,
                resources: p.resources.clone(),
                version: String::new(),
                services: p.services.clone(),
            })
            .collect();
        list.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id)));
        list
    }

    /// Resources whose name contains `name` (case-insensitive) or whose hash is `hash`, each
    /// with the peers holding it, freshest first.
    pub fn lookup(&self, network: &str, query: &Query, now: u64) -> Vec<Found> {
        let mut found: BTreeMap<String, Found> = BTreeMap::new();
        for (id, peer) in self.live(network, now) {
            for r in peer.resources.iter().filter(|r| query.matches(r)) {
                let entry = found.entry(r.hash.clone()).or_insert_with(|| Found {
                    resource: r.clone(),
                    peers: Vec::new(),
                });
                entry.peers.push(Holder {
                    id: id.clone(),
                    address: peer.address.clone(),
                    last_seen: peer.last_seen,
                });
            }
        }
        let mut list: Vec<Found> = found.into_values().collect();
        for f in &mut list {
            f.peers
                .sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id)));
        }
        list.sort_by(|a, b| a.resource.name.cmp(&b.resource.name));
        list
    }

    fn live<'a>(
        &'a self,
        network: &str,
        now: u64,
    ) -> impl Iterator<Item = (&'a String, &'a Peer)> + 'a {
        let ttl = self.ttl;
        self.networks
            .get(network)
            .into_iter()
            .flat_map(|p| p.iter())
            .filter(move |(_, p)| now.saturating_sub(p.last_seen) <= ttl)
    }
}

/// What a lookup asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Case-insensitive substring of the name.
    Name(String),
    /// Exact content hash.
    Hash(String),
}

impl Query {
    /// Parses `name=…` or `hash=…` from a query string (already percent-decoded pairs).
    pub fn from_pairs(pairs: &HashMap<String, String>) -> Option<Query> {
        match (pairs.get("name"), pairs.get("hash")) {
            (Some(n), None) => Some(Query::Name(n.to_lowercase())),
            (None, Some(h)) => Some(Query::Hash(h.to_lowercase())),
            _ => None,
        }
    }

    pub fn matches(&self, r: &Resource) -> bool {
        match self {
            Query::Name(n) => r.name.to_lowercase().contains(n.as_str()),
            Query::Hash(h) => r.hash == *h,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn resource(name: &str, byte: u8) -> Resource {
        Resource {
            name: name.into(),
            size: 10,
            hash: format!("{byte:02x}").repeat(32),
            chunk_size: CHUNK_SIZE,
            chunks: vec![format!("{byte:02x}").repeat(32)],
        }
    }

    fn reg(address: &str, resources: Vec<Resource>) -> Registration {
        Registration {
            address: address.into(),
            resources,
            services: vec![],
        }
    }

    const LIMITS: Limits = Limits {
        max_peers_per_network: 2,
        max_resources_per_peer: 2,
        max_peers_per_client: 10,
        max_held_per_network: 1 << 20,
    };

    #[test]
    fn services_are_listed_with_their_peer_and_bad_ones_refused() {
        let printer = |port: u16, name: &str| Service {
            kind: crate::wire::ServiceKind::Print,
            port,
            tls: false,
            name: name.into(),
        };
        let mut d = Directory::new(10, LIMITS);
        let mut r = reg("h:1", vec![]);
        r.services = vec![printer(8631, "Office printer")];
        d.register("n", "a", r.clone(), C, 100).expect("a printer");
        let listed = d.peers("n", 100);
        assert_eq!(listed[0].services, r.services);
        assert_eq!(
            listed[0].services[0].url(&listed[0].address).as_deref(),
            Some("ipp://h:8631/ipp/print")
        );
        // A bad service, or one too many: refused, naming why; the peer keeps what it had.
        for (services, why) in [
            (vec![printer(0, "x")], "port"),
            (vec![printer(1, "a\nb")], "control"),
            (vec![printer(1, "x"); MAX_SERVICES + 1], "at most"),
        ] {
            let mut bad = reg("h:1", vec![]);
            bad.services = services;
            let err = d.register("n", "a", bad, C, 101).expect_err(why);
            assert!(err.to_string().contains(why), "{err}");
        }
        assert_eq!(d.peers("n", 101)[0].services, r.services);
        // A heartbeat without them takes them away.
        d.register("n", "a", reg("h:1", vec![]), C, 102)
            .expect("renewal");
        assert!(d.peers("n", 102)[0].services.is_empty());
    }

    #[test]
    fn a_networks_catalogs_stay_within_the_index_budget() {
        // Room for two one-chunk resources and a bit.
        let one = footprint(&[resource("a", 1)]);
        let limits = Limits {
            max_peers_per_network: 10,
            max_resources_per_peer: 2,
            max_peers_per_client: 10,
            max_held_per_network: 2 * one + 10,
        };
        let mut d = Directory::new(10, limits);
        d.register("n", "a", reg("h:1", vec![resource("a", 1)]), C, 100)
            .expect("a");
        d.register("n", "b", reg("h:2", vec![resource("b", 2)]), C, 100)
            .expect("b");
        // A third catalog would pass the budget: refused, naming it; nothing changes.
        let err = d
            .register("n", "c", reg("h:3", vec![resource("c", 3)]), C, 100)
            .expect_err("over budget");
        assert!(matches!(err, RegisterError::CatalogsFull { .. }), "{err}");
        assert!(err.to_string().contains("budget"), "{err}");
        assert_eq!(d.peers("n", 100).len(), 2);
        // A heartbeat with the same catalog is not counted twice; a peer that grows past the
        // budget is refused and keeps what it had.
        d.register("n", "a", reg("h:1", vec![resource("a", 1)]), C, 101)
            .expect("renewal");
        let grown = vec![resource("a", 1), resource("a2", 4)];
        assert!(d.register("n", "a", reg("h:1", grown), C, 101).is_err());
        assert_eq!(
            d.peers("n", 101)
                .iter()
                .find(|p| p.id == "a")
                .map(|p| p.resources.len()),
            Some(1)
        );
        // Other networks have their own budget; a peer that leaves frees its share.
        d.register("m", "c", reg("h:3", vec![resource("c", 3)]), C, 101)
            .expect("another network");
        assert!(d.deregister("n", "b"));
        d.register("n", "c", reg("h:3", vec![resource("c", 3)]), C, 102)
            .expect("room again");
    }

    #[test]
    fn lookups_by_name_and_hash_list_holders_freshest_first() {
        let mut d = Directory::new(10, LIMITS);
        d.register("n", "a", reg("h:1", vec![resource("Movie.mkv", 1)]), C, 100)
            .expect("a");
        d.register("n", "b", reg("h:2", vec![resource("movie.mkv", 1)]), C, 105)
            .expect("b");
        let found = d.lookup("n", &Query::Name("movie".into()), 106);
        assert_eq!(found.len(), 1, "one entry per hash");
        let ids: Vec<_> = found[0].peers.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        let by_hash = d.lookup("n", &Query::Hash("01".repeat(32)), 106);
        assert_eq!(by_hash.len(), 1);
        assert!(
            d.lookup("other", &Query::Name("movie".into()), 106)
                .is_empty()
        );
    }

    #[test]
    fn peers_expire_without_heartbeat_and_may_deregister() {
        let mut d = Directory::new(10, LIMITS);
        d.register("n", "a", reg("h:1", vec![]), C, 100).expect("a");
        d.register("n", "b", reg("h:2", vec![]), C, 100).expect("b");
        d.register("n", "a", reg("h:1", vec![]), C, 109)
            .expect("heartbeat");
        assert_eq!(d.peers("n", 111).len(), 1, "b expired, a renewed");
        assert!(d.deregister("n", "a"));
        assert!(d.peers("n", 111).is_empty());
    }

    #[test]
    fn caps_and_consistency_are_enforced() {
        let mut d = Directory::new(10, LIMITS);
        d.register("n", "a", reg("h:1", vec![]), C, 0).expect("a");
        d.register("n", "b", reg("h:1", vec![]), C, 0).expect("b");
        assert!(matches!(
            d.register("n", "c", reg("h:1", vec![]), C, 0),
            Err(RegisterError::TooManyPeers { .. })
        ));
        d.register("n", "a", reg("h:1", vec![]), C, 1)
            .expect("a known peer renews at the cap");
        let three = vec![resource("x", 1), resource("y", 2), resource("z", 3)];
        assert!(matches!(
            d.register("n", "a", reg("h:1", three), C, 1),
            Err(RegisterError::TooManyResources { .. })
        ));
        let mut bad = resource("x", 1);
        bad.chunks.push("00".repeat(32));
        assert!(matches!(
            d.register("n", "a", reg("h:1", vec![bad]), C, 1),
            Err(RegisterError::Inconsistent { .. })
        ));
        assert!(matches!(
            d.register("n", "a", reg("nohostport", vec![]), C, 1),
            Err(RegisterError::Address(_))
        ));
        for name in ["../../x", "/etc/passwd", ".hostrole/id"] {
            assert!(matches!(
                d.register("n", "a", reg("h:1", vec![resource(name, 1)]), C, 1),
                Err(RegisterError::Name(_))
            ));
        }
        let mut odd = resource("x", 1);
        odd.chunk_size = 10;
        assert!(matches!(
            d.register("n", "a", reg("h:1", vec![odd]), C, 1),
            Err(RegisterError::ChunkSize { .. })
        ));
    }

    #[test]
    fn one_client_cannot_fill_a_network() {
        let limits = Limits {
            max_peers_per_network: 4,
            max_resources_per_peer: 1,
            max_peers_per_client: 2,
            max_held_per_network: 1 << 20,
        };
        let mut d = Directory::new(10, limits);
        let flood: IpAddr = "10.0.0.66".parse().expect("ip");
        d.register("n", "f1", reg("h:1", vec![]), flood, 0)
            .expect("1");
        d.register("n", "f2", reg("h:1", vec![]), flood, 0)
            .expect("2");
        assert!(matches!(
            d.register("n", "f3", reg("h:1", vec![]), flood, 0),
            Err(RegisterError::TooManyFromClient { .. })
        ));
        d.register("n", "f1", reg("h:1", vec![]), flood, 1)
            .expect("its own peers still renew");
        d.register("n", "real", reg("h:2", vec![]), C, 1)
            .expect("a genuine peer elsewhere registers");
    }
}
