//! Who else is in the network, and what they hold.
//!
//! Hybrid: every heartbeat the peer re-registers its catalog at the index (a PUT is both
//! registration and heartbeat) and reads the network's peer list; lookups by name or hash go to
//! the index. Decentralized: every round the peer contacts the seeds, the addresses DNS gives
//! for the discovery name, the peers it knows and those that called it, and pulls each one's
//! `/v1/resources` and `/v1/peers`; search runs over the union of those catalogs.

use hostrole_agent_core::metrics::Reason;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

use super::client::peer_url;
use super::{Known, Mode, Shared, download};
use crate::auth;
use crate::wire::{Catalog, Found, PeerEntry, Registration, Resource};

/// Contacts made at once in a gossip round.
const GOSSIP_FANOUT: usize = 16;
/// Failed rounds in a row after which a peer is forgotten.
const FORGET_AFTER: u32 = 3;

/// The discovery loop: one round per heartbeat, or sooner when the catalog changed.
pub async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => break,
            _ = tick.tick() => {},
            _ = shared.changed.notified() => {},
        }
        if let Err(e) = shared.catalog.rescan().await {
            tracing::warn!(error = %e, "cannot scan the shared folder");
        }
        match shared.mode {
            Mode::Hybrid => hybrid_round(&shared).await,
            Mode::Decentralized => gossip_round(&shared).await,
        }
        want(&shared);
    }
}

/// On stop, a hybrid peer deregisters so that lookups stop naming it at once.
pub async fn leave(shared: &Shared) {
    if let Some(url) = registration_url(shared)
        && let Err(e) = shared.client.delete(&url).await
    {
        tracing::debug!(error = %e, "could not deregister from the index");
    }
}

fn registration_url(shared: &Shared) -> Option<String> {
    shared
        .index_url
        .as_ref()
        .map(|base| format!("{base}/v1/networks/{}/peers/{}", shared.network, shared.id))
}

async fn hybrid_round(shared: &Shared) {
    let (Some(base), Some(url)) = (&shared.index_url, registration_url(shared)) else {
        return;
    };
    let registration = Registration {
        address: shared.address.clone(),
        resources: shared.catalog.resources(),
    };
    if let Err(e) = shared.client.put_json(&url, &registration).await {
        tracing::warn!(error = %e, "heartbeat to the index failed");
        shared.agent.error(super::ROLE, Reason::IndexUnreachable);
        return;
    }
    let list_url = format!("{base}/v1/networks/{}/peers", shared.network);
    match shared.client.get_json::<Vec<PeerEntry>>(&list_url).await {
        Ok(peers) => {
            let known: HashMap<String, Known> = peers
                .into_iter()
                .filter(|p| p.id != shared.id)
                .map(|p| {
                    (
                        p.id,
                        Known {
                            address: p.address,
                            last_seen: p.last_seen,
                            resources: p.resources,
                            failures: 0,
                        },
                    )
                })
                .collect();
            shared.set_known_gauge(known.len());
            if let Ok(mut k) = shared.known.lock() {
                *k = known;
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list the network's peers at the index"),
    }
}

async fn gossip_round(shared: &Shared) {
    let mut candidates: HashSet<String> = shared.seeds.iter().cloned().collect();
    if let Some(name) = &shared.discovery_dns {
        match tokio::net::lookup_host((name.as_str(), shared.port)).await {
            Ok(addrs) => candidates.extend(addrs.map(|a| a.to_string())),
            Err(e) => tracing::debug!(name, error = %e, "discovery name does not resolve (yet)"),
        }
    }
    if let Ok(known) = shared.known.lock() {
        candidates.extend(known.values().map(|k| k.address.clone()));
    }
    if let Ok(mut heard) = shared.heard.lock() {
        candidates.extend(heard.drain());
    }
    candidates.remove(&shared.address);

    let results: Vec<(String, Contact)> = futures_util::stream::iter(candidates)
        .map(|address| async move {
            let result = contact(shared, &address).await;
            (address, result)
        })
        .buffer_unordered(GOSSIP_FANOUT)
        .collect()
        .await;

    let now = auth::now();
    let mut next: HashSet<String> = HashSet::new();
    let Ok(mut known) = shared.known.lock() else {
        return;
    };
    for (address, result) in results {
        match result {
            Ok((catalog, peers)) => {
                if catalog.id == shared.id {
                    continue;
                }
                known.insert(
                    catalog.id.clone(),
                    Known {
                        address: catalog.address,
                        last_seen: now,
                        resources: catalog.resources,
                        failures: 0,
                    },
                );
                for p in peers {
                    if p.id != shared.id && !known.contains_key(&p.id) {
                        next.insert(p.address);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(%address, error = %e, "gossip contact failed");
                for k in known.values_mut().filter(|k| k.address == address) {
                    k.failures += 1;
                }
            }
        }
    }
    known.retain(|_, k| k.failures < FORGET_AFTER);
    shared.set_known_gauge(known.len());
    drop(known);
    if let Ok(mut heard) = shared.heard.lock() {
        heard.extend(next);
    }
}

/// What one gossip contact returns: the peer's catalog and the peers it knows.
type Contact = Result<(Catalog, Vec<PeerEntry>), String>;

async fn contact(shared: &Shared, address: &str) -> Contact {
    let catalog: Catalog = shared
        .client
        .get_json(&peer_url(address, "/v1/resources"))
        .await
        .map_err(|e| e.to_string())?;
    let peers: Vec<PeerEntry> = shared
        .client
        .get_json(&peer_url(address, "/v1/peers"))
        .await
        .map_err(|e| e.to_string())?;
    Ok((catalog, peers))
}

/// Starts the downloads the configuration asks for (`fetch`, `mirror`).
fn want(shared: &Arc<Shared>) {
    if shared.fetch.is_empty() && !shared.mirror {
        return;
    }
    let offered: Vec<Resource> = match shared.known.lock() {
        Ok(k) => k.values().flat_map(|p| p.resources.clone()).collect(),
        Err(_) => return,
    };
    let mut seen = HashSet::new();
    for r in offered {
        let wanted = shared.mirror || shared.fetch.iter().any(|f| *f == r.name || *f == r.hash);
        if wanted && seen.insert(r.hash.clone()) {
            download::start_unattended(shared, r);
        }
    }
}

/// A search result.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Hit {
    pub name: String,
    pub size: u64,
    pub hash: String,
    /// Ids of the peers holding it.
    pub peers: Vec<String>,
    /// Whether this peer holds it too.
    pub local: bool,
}

/// Resources whose name contains `q` (case-insensitive): at the index in hybrid mode (falling
/// back to the last peer list), else over the catalogs gossip collected.
pub async fn search(shared: &Shared, q: &str) -> Vec<Hit> {
    let q = q.to_lowercase();
    let mut found = None;
    if let Some(base) = &shared.index_url {
        let url = format!(
            "{base}/v1/networks/{}/lookup?name={}",
            shared.network,
            utf8_percent_encode(&q, NON_ALPHANUMERIC)
        );
        match shared.client.get_json::<Vec<Found>>(&url).await {
            Ok(list) => found = Some(list),
            Err(e) => {
                tracing::warn!(error = %e, "lookup at the index failed; searching the last peer list")
            }
        }
    }
    let found =
        found.unwrap_or_else(|| known_matching(shared, |r| r.name.to_lowercase().contains(&q)));
    found
        .into_iter()
        .map(|f| {
            let local = shared.catalog.by_hash(&f.resource.hash).is_some();
            Hit {
                name: f.resource.name,
                size: f.resource.size,
                hash: f.resource.hash,
                peers: f
                    .peers
                    .into_iter()
                    .map(|p| p.id)
                    .filter(|id| *id != shared.id)
                    .collect(),
                local,
            }
        })
        .collect()
}

/// The resource with this hash and the peers holding it (never this one).
pub async fn sources(shared: &Shared, hash: &str) -> Option<Found> {
    let mut found: Option<Found> = None;
    if let Some(base) = &shared.index_url {
        let url = format!("{base}/v1/networks/{}/lookup?hash={hash}", shared.network);
        match shared.client.get_json::<Vec<Found>>(&url).await {
            Ok(list) => found = list.into_iter().next(),
            Err(e) => tracing::debug!(error = %e, "lookup at the index failed"),
        }
    }
    let from_known = known_matching(shared, |r| r.hash == hash)
        .into_iter()
        .next();
    let mut found = match (found, from_known) {
        (Some(mut a), Some(b)) => {
            for p in b.peers {
                if !a.peers.iter().any(|q| q.id == p.id) {
                    a.peers.push(p);
                }
            }
            a
        }
        (a, b) => a.or(b)?,
    };
    found.peers.retain(|p| p.id != shared.id);
    Some(found)
}

fn known_matching(shared: &Shared, pred: impl Fn(&Resource) -> bool) -> Vec<Found> {
    let Ok(known) = shared.known.lock() else {
        return Vec::new();
    };
    let mut by_hash: std::collections::BTreeMap<String, Found> = Default::default();
    for (id, k) in known.iter() {
        for r in k.resources.iter().filter(|r| pred(r)) {
            by_hash
                .entry(r.hash.clone())
                .or_insert_with(|| Found {
                    resource: r.clone(),
                    peers: Vec::new(),
                })
                .peers
                .push(crate::wire::Holder {
                    id: id.clone(),
                    address: k.address.clone(),
                    last_seen: k.last_seen,
                });
        }
    }
    let mut list: Vec<Found> = by_hash.into_values().collect();
    for f in &mut list {
        f.peers.sort_by_key(|p| std::cmp::Reverse(p.last_seen));
    }
    list
}

/// The peers this one knows, for `/v1/peers` and the UI.
pub fn known_peers(shared: &Shared) -> Vec<PeerEntry> {
    let Ok(known) = shared.known.lock() else {
        return Vec::new();
    };
    let mut list: Vec<PeerEntry> = known
        .iter()
        .map(|(id, k)| PeerEntry {
            id: id.clone(),
            address: k.address.clone(),
            last_seen: k.last_seen,
            resources: k.resources.clone(),
        })
        .collect();
    list.sort_by(|a, b| a.id.cmp(&b.id));
    list
}

/// A peer called this one: remember its address so gossip contacts it (decentralized).
pub fn heard_from(shared: &Shared, id: &str, address: Option<&str>) {
    if shared.mode != Mode::Decentralized || id == shared.id {
        return;
    }
    let Some(address) = address else { return };
    if !crate::valid_address(address) {
        return;
    }
    let known = shared
        .known
        .lock()
        .map(|k| k.contains_key(id))
        .unwrap_or(true);
    if !known
        && let Ok(mut heard) = shared.heard.lock()
        && heard.len() < 1024
    {
        heard.insert(address.to_string());
    }
}
