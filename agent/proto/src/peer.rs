//! The peer protocol on the wire (documented in `docs/peer-protocol.md`): the JSON bodies of the
//! index and peer roles, and the rules for the names and addresses they carry.

use serde::{Deserialize, Serialize};

/// Bytes per chunk: a resource is cut into chunks of this size (the last may be shorter).
pub const CHUNK_SIZE: u64 = 1 << 20;

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
    /// Whether the chunk list agrees with the size (what a receiver checks before trusting it).
    pub fn consistent(&self) -> bool {
        self.chunk_size > 0
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

/// `host:port` with a port number.
pub fn valid_address(address: &str) -> bool {
    address.len() <= 255
        && address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
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
    }
}
