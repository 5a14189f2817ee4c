//! Swarming: the verified chunks of a download in progress are served to other peers, and the
//! peers that hold part of a resource are sources for the chunks they have (`/v1/have/{hash}`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{Shared, discovery};
use crate::auth::Expect;
use crate::wire::{HaveMap, Holder, MAX_HAVE_BYTES, Resource};

/// A download in progress whose verified chunks are served to other peers (swarming).
#[derive(Clone)]
pub struct Partial {
    pub path: PathBuf,
    pub resource: Resource,
    pub done: Arc<Mutex<Vec<bool>>>,
}

/// Where to read chunk `index` of `hash` when it is verified in a partial download: path,
/// offset, length and the chunk's hash.
pub fn partial_chunk(
    shared: &Shared,
    hash: &str,
    index: u64,
) -> Option<(PathBuf, u64, u64, String)> {
    let partials = shared.downloads.partials.lock().ok()?;
    let p = partials.get(hash)?;
    let done = p.done.lock().ok()?;
    done.get(index as usize).copied().filter(|d| *d).map(|_| {
        (
            p.path.clone(),
            index * p.resource.chunk_size,
            p.resource.chunk_len(index),
            p.resource.chunks[index as usize].clone(),
        )
    })
}

/// Which chunks of `hash` this peer can serve: `1`/`0` per chunk; `None` when it has none.
pub fn have_map(shared: &Shared, hash: &str) -> Option<String> {
    if let Some(f) = shared.catalog.by_hash(hash) {
        return Some("1".repeat(f.resource.chunks.len()));
    }
    let partials = shared.downloads.partials.lock().ok()?;
    let done = partials.get(hash)?.done.lock().ok()?.clone();
    Some(done.iter().map(|d| if *d { '1' } else { '0' }).collect())
}

/// Which chunks a peer holds, shared with the workers that fetch from it.
pub type ChunkMap = Arc<Mutex<Vec<bool>>>;

/// Peers (other than the complete holders) that already hold verified chunks of the resource,
/// with their chunk maps (`GET /v1/have/{hash}`).
pub async fn partial_sources(
    shared: &Shared,
    resource: &Resource,
    complete: &[Holder],
) -> Vec<(Holder, Vec<bool>)> {
    use futures_util::StreamExt;
    let candidates: Vec<Holder> = discovery::known_peers(shared)
        .into_iter()
        .filter(|p| p.id != shared.id && !complete.iter().any(|c| c.id == p.id))
        .map(|p| Holder {
            id: p.id,
            address: p.address,
            last_seen: p.last_seen,
        })
        .collect();
    let total = resource.chunks.len();
    futures_util::stream::iter(candidates)
        .map(|holder| async move {
            let url = shared
                .client
                .peer_url(&holder.address, &format!("/v1/have/{}", resource.hash))
                .ok()?;
            let (map, _): (HaveMap, _) = shared
                .client
                .get_json(&url, MAX_HAVE_BYTES, Expect::Peer(&holder.id))
                .await
                .ok()?;
            parse_have(&map.have, total).map(|have| (holder, have))
        })
        .buffer_unordered(8)
        .filter_map(|x| async move { x })
        .collect()
        .await
}

/// A `/v1/have` map for a resource of `total` chunks: one `1` or `0` per chunk, at least one
/// `1`; anything else is no map.
pub fn parse_have(map: &str, total: usize) -> Option<Vec<bool>> {
    if map.len() != total || !map.bytes().all(|b| b == b'0' || b == b'1') {
        return None;
    }
    let have: Vec<bool> = map.bytes().map(|b| b == b'1').collect();
    have.iter().any(|h| *h).then_some(have)
}

/// The chunks in random order, so that peers downloading at once fetch different chunks first
/// and can trade them.
pub fn shuffled(mut list: VecDeque<u64>) -> VecDeque<u64> {
    fastrand::shuffle(list.make_contiguous());
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn have_maps_are_exact() {
        assert_eq!(parse_have("101", 3), Some(vec![true, false, true]));
        for bad in ["000", "10", "1011", "1x1", ""] {
            assert_eq!(parse_have(bad, 3), None, "{bad}");
        }
    }
}
