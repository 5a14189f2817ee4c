//! The peer protocol on the wire (documented in `docs/peer-protocol.md`): the JSON bodies of the
//! index and peer roles, and the rules for the names and addresses they carry.

use serde::{Deserialize, Serialize};

/// Bytes per chunk: a resource is cut into chunks of this size (the last may be shorter).
pub const CHUNK_SIZE: u64 = 1 << 20;

/// Largest answers a peer reads, by what it asked: a peer's catalog (`/v1/resources`)…
pub const MAX_CATALOG_BYTES: usize = 16 << 20;
/// … the peers another peer knows (`/v1/peers`, at most [`MAX_GOSSIP_PEERS`] entries) …
pub const MAX_PEER_LIST_BYTES: usize = 1 << 20;
/// … a chunk map (`/v1/have/{hash}`: one byte per chunk, 1 TiB of chunks) …
pub const MAX_HAVE_BYTES: usize = (1 << 20) + 64;
/// … and anything from the index (its peer list carries every peer's catalog).
pub const MAX_INDEX_ANSWER_BYTES: usize = 64 << 20;
/// Entries a peer's `/v1/peers` lists at most, and takes from another's.
pub const MAX_GOSSIP_PEERS: usize = 256;

/// The memory a catalog takes once parsed, estimated: per resource its name and fixed parts,
/// per chunk a 64-digit hash in its own `String`. What budgets of held catalogs count.
pub fn footprint(resources: &[Resource]) -> usize {
    resources
        .iter()
        .map(|r| 160 + r.name.len() + r.chunks.len() * 96)
        .sum()
}

/// A resource a peer holds: a file, addressed by the BLAKE3 hash of its whole content.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// Path relative to the shared folder, `/`-separated.
    pub name: String,
    pub size: u64,
    /// BLAKE3 of the whole content, hex.
    pub hash: String,
    pub chunk_size: u64,
    /// BLAKE3 of each chunk, hex, in order.
    pub chunks: Vec<String>,
}

impl Resource {
    /// Whether the chunk list agrees with the size and the protocol's chunk size, and the name
    /// is a plain relative path (what a receiver checks before trusting a resource).
    pub fn consistent(&self) -> bool {
        self.chunk_size == CHUNK_SIZE
            && valid_resource_name(&self.name)
            && self.chunks.len() as u64 == self.size.div_ceil(self.chunk_size)
            && valid_hash(&self.hash)
            && self.chunks.iter().all(|c| valid_hash(c))
    }

    /// Byte length of chunk `index`.
    pub fn chunk_len(&self, index: u64) -> u64 {
        let start = index * self.chunk_size;
        self.size.saturating_sub(start).min(self.chunk_size)
    }
}

/// `PUT /v1/networks/{network}/peers/{id}`: a registration or heartbeat.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Registration {
    /// Where other peers reach this one (`host:port`).
    pub address: String,
    #[serde(default)]
    pub resources: Vec<Resource>,
    /// What else it offers the network (its printer). Left out when empty, so a peer without
    /// services registers with an index that predates them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
}

/// Services a peer may list (an index refuses a registration with more).
pub const MAX_SERVICES: usize = 8;

/// A service a peer offers the network beside its shared folder: today a printer (the host's
/// print role). Reached on the peer's own host (the host part of its address) and this port,
/// so a member can point others only at itself, never at another machine.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    pub kind: ServiceKind,
    pub port: u16,
    /// Over TLS (`ipps://`).
    #[serde(default)]
    pub tls: bool,
    /// What people see: the printer's name.
    pub name: String,
}

/// What a [`Service`] is.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// An IPP printer at `/ipp/print`.
    Print,
}

impl Service {
    /// A port, and a name of 1–127 bytes with no control characters (it is shown to people).
    pub fn valid(&self) -> bool {
        self.port > 0
            && !self.name.is_empty()
            && self.name.len() <= 127
            && !self.name.chars().any(char::is_control)
    }

    /// Where a member reaches it, given the offering peer's (valid) `host:port` address:
    /// `ipp://host:port/ipp/print`, `ipps://` with TLS.
    pub fn url(&self, peer_address: &str) -> Option<String> {
        let (host, _) = peer_address.rsplit_once(':')?;
        if host.is_empty() {
            return None;
        }
        Some(match self.kind {
            ServiceKind::Print => format!(
                "{}://{host}:{}/ipp/print",
                if self.tls { "ipps" } else { "ipp" },
                self.port
            ),
        })
    }
}

/// The valid ones of `services`, at most [`MAX_SERVICES`]: what a peer keeps of another's word.
pub fn sane_services(services: Vec<Service>) -> Vec<Service> {
    services
        .into_iter()
        .filter(Service::valid)
        .take(MAX_SERVICES)
        .collect()
}

/// A peer as the index or a peer's gossip lists it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PeerEntry {
    pub id: String,
    pub address: String,
    /// Unix seconds of the last heartbeat (index) or last successful contact (gossip).
    pub last_seen: u64,
    /// The resources it holds (left empty by peers' `/v1/peers`, whose catalog is `/v1/resources`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Resource>,
    /// In a peer's `/v1/peers`: the version of this peer's catalog as the lister last fetched
    /// it (see [`Catalog::version`]); a reader whose copy is older fetches the catalog again.
    /// Empty from the index and from peers that predate versions.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// What else it offers (see [`Service`]); empty in gossip lists, as the catalog is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
}

/// A peer holding a resource, in lookup answers.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub id: String,
    pub address: String,
    pub last_seen: u64,
}

/// `GET /v1/networks/{network}/lookup`: one entry per distinct content hash.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Found {
    #[serde(flatten)]
    pub resource: Resource,
    /// Freshest first.
    pub peers: Vec<Holder>,
}

/// `GET /v1/resources` of a peer: who it is and what it holds.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    pub id: String,
    pub address: String,
    pub resources: Vec<Resource>,
    /// A digest of the resources (16 hex digits over the sorted names and content hashes). `GET /v1/resources?unless={version}` answers `304 Not Modified`
    /// (signed like any answer) when the catalog still has this version, so gossip pulls a
    /// catalog only when it changed. Empty from peers that predate versions.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// What else the peer offers (see [`Service`]); part of the version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
}

/// A catalog version as the peer's catalog writes it: 16 lower-case hex digits.
pub fn valid_version(version: &str) -> bool {
    version.len() == 16
        && version
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `GET /v1/have/{hash}` of a peer: which chunks it can serve, `1` or `0` per chunk.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct HaveMap {
    pub have: String,
}

/// Every error answer: `{"error": "..."}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ErrorBody {
    pub error: String,
}

/// A network name is a DNS label: it names a secret file, so it must never be a path.
pub fn valid_network(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A peer id: 1–128 characters of `[A-Za-z0-9._-]`.
pub fn valid_peer_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Strictly `host:port`: a DNS name or IPv4 address (letters, digits, `.`, `-`), or an IPv6
/// address in brackets, then a port of 1–65535 in digits. Nothing else: an address becomes
/// `http://{address}/v1/...`, so `/`, `?`, `#`, `@` or spaces would let whoever registered it
/// choose the path other peers request (blind SSRF).
pub fn valid_address(address: &str) -> bool {
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    let port_ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    port_ok && host_ok
}

/// A resource name as peers and the index accept it: a relative `/`-separated path of plain
/// components, none hidden (so never `..`, `/etc/...` or `.hostrole/...`), at most 1024 bytes.
pub fn valid_resource_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 1024
        && !name.contains(['\0', '\\'])
        && name
            .split('/')
            .all(|c| !c.is_empty() && !c.starts_with('.'))
}

/// A content hash as the protocol writes it: 64 lower-case hex digits (BLAKE3).
pub fn valid_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_be_paths_are_refused() {
        assert!(valid_network("family"));
        for bad in ["", "../x", "a/b", "-a", "A", ".hidden"] {
            assert!(!valid_network(bad), "{bad}");
        }
        assert!(valid_peer_id("family-0.x_y"));
        assert!(!valid_peer_id("a b") && !valid_peer_id("a/b"));
        assert!(valid_hash(&"ab".repeat(32)));
        assert!(!valid_hash(&"AB".repeat(32)) && !valid_hash("abc"));
        for bad in [
            "",
            "../../x",
            "/etc/passwd",
            ".hostrole/id",
            "a/.b",
            "a//b",
            "a/",
            "a\\b",
        ] {
            assert!(!valid_resource_name(bad), "{bad}");
        }
        assert!(valid_resource_name("films/holiday 2.mkv"));
    }

    fn printer(port: u16, tls: bool, name: &str) -> Service {
        Service {
            kind: ServiceKind::Print,
            port,
            tls,
            name: name.into(),
        }
    }

    #[test]
    fn a_service_is_reached_on_its_peers_own_host() {
        let p = printer(8631, false, "Office printer");
        assert!(p.valid());
        assert_eq!(
            p.url("10.0.0.7:7001").as_deref(),
            Some("ipp://10.0.0.7:8631/ipp/print")
        );
        assert_eq!(
            printer(631, true, "x").url("[fd00::7]:7001").as_deref(),
            Some("ipps://[fd00::7]:631/ipp/print")
        );
        assert_eq!(p.url(":7001"), None);
        for bad in [
            printer(0, false, "x"),
            printer(1, false, ""),
            printer(1, false, "a\u{1b}[2Jb"),
            printer(1, false, &"n".repeat(128)),
        ] {
            assert!(!bad.valid(), "{bad:?}");
        }
        let many = vec![p.clone(); MAX_SERVICES + 3];
        assert_eq!(sane_services(many).len(), MAX_SERVICES);
        assert!(sane_services(vec![printer(0, false, "x"), p.clone()]) == vec![p]);
        // On the wire: lower-case kind, and an unknown one is refused rather than misread.
        let json = serde_json::to_string(&printer(1, false, "x")).unwrap();
        assert_eq!(json, r#"{"kind":"print","port":1,"tls":false,"name":"x"}"#);
        assert!(serde_json::from_str::<Service>(&json.replace("print", "scan")).is_err());
    }

    #[test]
    fn a_registration_without_services_looks_as_it_did_before_them() {
        let r = Registration {
            address: "a:1".into(),
            resources: vec![],
            services: vec![],
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"address":"a:1","resources":[]}"#
        );
    }

    #[test]
    fn addresses_are_strictly_host_and_port() {
        for good in [
            "127.0.0.1:7001",
            "family-0.peers.ns.svc:7001",
            "[::1]:80",
            "a:65535",
        ] {
            assert!(valid_address(good), "{good}");
        }
        for bad in [
            "127.0.0.1:7001/admin?x=",
            "h:1/x",
            "h:1?x",
            "h:1#x",
            "user@h:1",
            "h :1",
            "h:0",
            "h:+80",
            "h:65536",
            ":80",
            "h",
            "[::1:80",
            "[zz]:80",
            "-h:1",
            "h..x:1",
            "10.0.0.1/32:80",
        ] {
            assert!(!valid_address(bad), "{bad}");
        }
    }

    #[test]
    fn only_the_protocols_chunk_size_is_consistent() {
        let r = Resource {
            name: "a".into(),
            size: 10,
            hash: "00".repeat(32),
            chunk_size: CHUNK_SIZE,
            chunks: vec!["11".repeat(32)],
        };
        assert!(r.consistent());
        let huge = Resource {
            chunk_size: 1 << 40,
            size: 1 << 40,
            ..r.clone()
        };
        assert!(!huge.consistent(), "one chunk of 1 TiB");
        let escaping = Resource {
            name: "../x".into(),
            ..r
        };
        assert!(!escaping.consistent());
    }
}
