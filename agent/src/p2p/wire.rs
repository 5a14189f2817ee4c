//! JSON bodies of the index and peer protocols (documented in `docs/peer-protocol.md`).

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
            && crate::p2p::valid_hash(&self.hash)
            && self.chunks.iter().all(|c| crate::p2p::valid_hash(c))
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
