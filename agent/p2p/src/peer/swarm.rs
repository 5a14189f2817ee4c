//! Swarming: the verified chunks of a download in progress are served to other peers, and the
//! peers that hold part of a resource are sources for the chunks they have (`/v1/have/{hash}`).

use std::collections::{HashMap, VecDeque};
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

/// Known peers asked for their chunk map at each refresh of a download (every heartbeat).
pub const HAVE_PER_REFRESH: usize = 8;

/// Which of `candidates` to ask for their chunk map at refresh `round`: at most
/// [`HAVE_PER_REFRESH`], never asked ones first (in random order, so that the downloaders of a
/// network do not all ask the same few), then those asked longest ago. `asked` remembers the
/// round each one was last asked. A map not refreshed stays usable: chunks are only ever
/// added to a download in progress, and a chunk that went away fails and is put back.
pub fn pick_for_have(
    mut candidates: Vec<Holder>,
    asked: &mut HashMap<String, u64>,
    round: u64,
) -> Vec<Holder> {
    fastrand::shuffle(&mut candidates);
    candidates.sort_by_key(|h| asked.get(&h.id).copied().unwrap_or(0));
    candidates.truncate(HAVE_PER_REFRESH);
    for h in &candidates {
        asked.insert(h.id.clone(), round);
    }
    candidates
}

/// Peers (other than the complete holders) that already hold verified chunks of the resource,
/// with their chunk maps (`GET /v1/have/{hash}`): a few per refresh ([`pick_for_have`]), not
/// every known peer, so a swarm's cost per downloader does not grow with the network.
pub async fn partial_sources(
    shared: &Shared,
    resource: &Resource,
    complete: &[Holder],
    asked: &mut HashMap<String, u64>,
    round: u64,
) -> Vec<(Holder, Vec<bool>)> {
    use futures_util::StreamExt;
    let candidates: Vec<Holder> = discovery::known_addresses(shared)
        .into_iter()
        .filter(|p| p.id != shared.id && !complete.iter().any(|c| c.id == p.id))
        .map(|p| Holder {
            id: p.id,
            address: p.address,
            last_seen: p.last_seen,
        })
        .collect();
    let candidates = pick_for_have(candidates, asked, round);
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
    fn a_refresh_asks_a_few_peers_for_their_maps_and_each_in_turn() {
        let holders: Vec<Holder> = (0..20)
            .map(|i| Holder {
                id: format!("p{i:02}"),
                address: format!("10.0.0.{i}:7001"),
                last_seen: 0,
            })
            .collect();
        let mut asked = HashMap::new();
        let mut seen = std::collections::BTreeSet::new();
        for round in 1..=2 {
            let picked = pick_for_have(holders.clone(), &mut asked, round);
            assert_eq!(picked.len(), HAVE_PER_REFRESH);
            for h in picked {
                assert!(
                    seen.insert(h.id.clone()),
                    "{} asked twice in two refreshes",
                    h.id
                );
            }
        }
        // The third refresh takes the four never asked, then four of those asked first.
        let third = pick_for_have(holders.clone(), &mut asked, 3);
        assert_eq!(third.len(), HAVE_PER_REFRESH);
        let new: Vec<&Holder> = third.iter().filter(|h| !seen.contains(&h.id)).collect();
        assert_eq!(new.len(), 20 - 2 * HAVE_PER_REFRESH);
        assert_eq!(asked.len(), 20, "every peer asked within three refreshes");
        assert_eq!(asked.values().filter(|r| **r == 1).count(), 4);
        // Fewer candidates than the bound: all of them, every refresh.
        let few = pick_for_have(holders[..3].to_vec(), &mut asked, 4);
        assert_eq!(few.len(), 3);
    }

    #[test]
    fn have_maps_are_exact() {
        assert_eq!(parse_have("101", 3), Some(vec![true, false, true]));
        for bad in ["000", "10", "1011", "1x1", ""] {
            assert_eq!(parse_have(bad, 3), None, "{bad}");
        }
    }
}
