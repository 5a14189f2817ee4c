//! Who else is in the network, and what they hold.
//!
//! Hybrid: every heartbeat the peer re-registers its catalog at the index (a PUT is both
//! registration and heartbeat) and reads the network's peer list; lookups by name or hash go to
//! the index. While the index does not answer, the peer asks the peers it knows (remembered on
//! its volume across restarts) directly, as a decentralized peer would.
//! Decentralized: every round the peer contacts the seeds, the addresses DNS gives for the
//! discovery name, the peers it knows and those that called it, and pulls each one's
//! `/v1/resources` and `/v1/peers`; search runs over the union of those catalogs.
//! The bookkeeping is [`super::known::Roster`]'s (pure); this module only does the I/O.

use hostrole_agent_core::metrics::Reason;
use std::collections::HashSet;
use std::sync::Arc;

use futures_util::StreamExt;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

use super::{ContactResult, Discovery, Shared, download, known};
use crate::auth::{self, Expect};
use crate::wire::{
    Catalog, Found, MAX_CATALOG_BYTES, MAX_INDEX_ANSWER_BYTES, MAX_PEER_LIST_BYTES, PeerEntry,
    Registration, Resource,
};

/// Contacts made at once in a gossip round (a round picks at most
/// `known::NEW_PER_ROUND + known::KNOWN_PER_ROUND`).
const AT_ONCE: usize = 16;

/// The discovery loop: one round per heartbeat, or sooner when the catalog changed.
pub async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.settings.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut saved = Vec::new();
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => break,
            _ = tick.tick() => {},
            _ = shared.changed.notified() => {},
        }
        if let Err(e) = shared.catalog.rescan().await {
            tracing::warn!(error = %e, "cannot scan the shared folder");
        }
        match &shared.settings.discovery {
            Discovery::Hybrid { index_url } => hybrid_round(&shared, index_url).await,
            Discovery::Decentralized { dns, seeds } => {
                let mut extra = seeds.clone();
                if let Some(name) = dns {
                    match tokio::net::lookup_host((name.as_str(), shared.settings.port)).await {
                        Ok(addrs) => extra.extend(addrs.map(|a| a.to_string())),
                        Err(e) => {
                            tracing::debug!(name, error = %e, "discovery name does not resolve (yet)")
                        }
                    }
                }
                gossip_round(&shared, extra).await
            }
        }
        remember(&shared, &mut saved).await;
        want(&shared);
    }
}

/// Writes the known peers to the state folder when they changed.
async fn remember(shared: &Shared, saved: &mut Vec<known::Remembered>) {
    let Ok(now) = shared.peers.lock().map(|p| p.remembered()) else {
        return;
    };
    let same = now.len() == saved.len()
        && now
            .iter()
            .zip(saved.iter())
            .all(|(a, b)| a.id == b.id && a.address == b.address);
    if same {
        return;
    }
    let state = shared.state_dir();
    let list = now.clone();
    match tokio::task::spawn_blocking(move || known::save(&state, &list)).await {
        Ok(Ok(())) => *saved = now,
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot remember the known peers"),
        Err(e) => tracing::warn!(error = %e, "cannot remember the known peers"),
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
    shared.settings.discovery.index_url().map(|base| {
        format!(
            "{base}/v1/networks/{}/peers/{}",
            shared.settings.network, shared.id
        )
    })
}

async fn hybrid_round(shared: &Shared, base: &str) {
    let Some(url) = registration_url(shared) else {
        return;
    };
    let registration = Registration {
        address: shared.settings.address.clone(),
        resources: shared.catalog.resources(),
        services: shared.settings.services.clone(),
    };
    if let Err(e) = shared.client.put_json(&url, &registration).await {
        tracing::warn!(error = %e, "heartbeat to the index failed; asking the known peers directly");
        shared.agent.error(super::ROLE, Reason::IndexUnreachable);
        gossip_round(shared, Vec::new()).await;
        return;
    }
    let list_url = format!("{base}/v1/networks/{}/peers", shared.settings.network);
    match shared
        .client
        .get_json::<Vec<PeerEntry>>(&list_url, MAX_INDEX_ANSWER_BYTES, Expect::Index)
        .await
    {
        Ok((peers, _)) => {
            if let Ok(mut p) = shared.peers.lock() {
                p.replace_with_index(&shared.id, peers);
                shared.set_known_gauge(p.known.len());
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list the network's peers at the index"),
    }
}

/// One round of direct contacts: `extra` (seeds, DNS), the known peers and the heard
/// addresses; each answers with its signed catalog and the peers it knows.
async fn gossip_round(shared: &Shared, extra: Vec<String>) {
    let candidates: HashSet<String> = match shared.peers.lock() {
        Ok(mut p) => p.candidates(&shared.settings.address, extra),
        Err(_) => return,
    };
    let results: Vec<(String, Contact)> = futures_util::stream::iter(candidates)
        .map(|address| async move {
            let result = contact(shared, &address).await;
            (address, result)
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;

    let now = auth::now();
    shared
        .metrics
        .gossip_round(results.iter().map(|(_, r)| match r {
            Ok((_, known::Fetched::Catalog(_), _)) => ContactResult::Catalog,
            Ok((_, known::Fetched::Unchanged, _)) => ContactResult::Unchanged,
            Err(_) => ContactResult::Failed,
        }));
    let Ok(mut roster) = shared.peers.lock() else {
        return;
    };
    for (address, result) in results {
        match result {
            Ok((id, fetched, peers)) => {
                // The catalog's address is where the peer says it lives; the one that
                // answered is where it does. Keep the one that answered.
                match roster.contacted(&shared.id, &id, &address, fetched, now) {
                    known::Held::Kept => {}
                    refused => tracing::warn!(
                        peer = %id,
                        %address,
                        ?refused,
                        held_bytes = roster.held_total(),
                        "not keeping a peer's catalog: too large, or the catalogs held fill their budget"
                    ),
                }
                roster.learn(&shared.id, &shared.settings.address, peers, now);
            }
            Err(e) => {
                tracing::debug!(%address, error = %e, "contact failed");
                roster.failed(&address);
            }
        }
    }
    roster.forget_failing();
    shared.set_known_gauge(roster.known.len());
}

/// What one contact returns: the id that signed, its catalog (or "unchanged") and the peers it
/// knows.
type Contact = Result<(String, known::Fetched, Vec<PeerEntry>), String>;

async fn contact(shared: &Shared, address: &str) -> Contact {
    let held = shared.peers.lock().ok().and_then(|p| {
        p.held(address)
            .map(|(id, version)| (id.to_string(), version.to_string()))
    });
    let (expect, path) = match &held {
        // The version is ours (computed from the catalog we hold): 16 hex digits, safe in a URL.
        Some((id, version)) if crate::wire::valid_version(version) => {
            (Expect::Peer(id), format!("/v1/resources?unless={version}"))
        }
        Some((id, _)) => (Expect::Peer(id), "/v1/resources".to_string()),
        None => (Expect::AnyPeer, "/v1/resources".to_string()),
    };
    let url = shared
        .client
        .peer_url(address, &path)
        .map_err(|e| e.to_string())?;
    let (catalog, signer): (Option<Catalog>, _) = shared
        .client
        .get_json_unless_unchanged(&url, MAX_CATALOG_BYTES, expect)
        .await
        .map_err(|e| e.to_string())?;
    let signer = signer.unwrap_or_default();
    let fetched = match catalog {
        Some(catalog) if catalog.id != signer => {
            return Err(format!(
                "the catalog names {} but is signed by {signer}",
                catalog.id
            ));
        }
        Some(catalog) => known::Fetched::Catalog(known::Offer {
            resources: catalog.resources,
            services: catalog.services,
        }),
        // A 304 is signed by the peer we expected (`Expect::Peer`): only asked of a known one.
        None if held.is_some() => known::Fetched::Unchanged,
        None => return Err("an unasked 304".to_string()),
    };
    let url = shared
        .client
        .peer_url(address, "/v1/peers")
        .map_err(|e| e.to_string())?;
    let (peers, _): (Vec<PeerEntry>, _) = shared
        .client
        .get_json(&url, MAX_PEER_LIST_BYTES, Expect::Peer(&signer))
        .await
        .map_err(|e| e.to_string())?;
    Ok((signer, fetched, peers))
}

/// Starts the downloads the configuration asks for (`fetch`, `mirror`).
fn want(shared: &Arc<Shared>) {
    let settings = &shared.settings;
    if settings.fetch.is_empty() && !settings.mirror {
        return;
    }
    let offered: Vec<Resource> = match shared.peers.lock() {
        Ok(p) => p.known.values().flat_map(|k| k.resources.clone()).collect(),
        Err(_) => return,
    };
    let mut seen = HashSet::new();
    for r in offered {
        let wanted = settings.mirror || settings.fetch.iter().any(|f| *f == r.name || *f == r.hash);
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
/// back to the known peers), else over the catalogs gossip collected.
pub async fn search(shared: &Shared, q: &str) -> Vec<Hit> {
    let q = q.to_lowercase();
    let mut found = None;
    if let Some(base) = shared.settings.discovery.index_url() {
        let url = format!(
            "{base}/v1/networks/{}/lookup?name={}",
            shared.settings.network,
            utf8_percent_encode(&q, NON_ALPHANUMERIC)
        );
        match shared
            .client
            .get_json::<Vec<Found>>(&url, MAX_INDEX_ANSWER_BYTES, Expect::Index)
            .await
        {
            Ok((list, _)) => found = Some(list),
            Err(e) => {
                tracing::warn!(error = %e, "lookup at the index failed; searching the known peers")
            }
        }
    }
    let found =
        found.unwrap_or_else(|| known_matching(shared, |r| r.name.to_lowercase().contains(&q)));
    found
        .into_iter()
        .filter(|f| f.resource.consistent())
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
    if let Some(base) = shared.settings.discovery.index_url() {
        let url = format!(
            "{base}/v1/networks/{}/lookup?hash={hash}",
            shared.settings.network
        );
        match shared
            .client
            .get_json::<Vec<Found>>(&url, MAX_INDEX_ANSWER_BYTES, Expect::Index)
            .await
        {
            Ok((list, _)) => found = list.into_iter().find(|f| f.resource.consistent()),
            Err(e) => tracing::debug!(error = %e, "lookup at the index failed"),
        }
    }
    let from_known = known_matching(shared, |r| r.hash == hash)
        .into_iter()
        .next();
    let mut found = merge(found, from_known)?;
    found
        .peers
        .retain(|p| p.id != shared.id && crate::valid_address(&p.address));
    Some(found)
}

/// The index's answer with the holders the known peers add (by id, the index's first).
fn merge(index: Option<Found>, known: Option<Found>) -> Option<Found> {
    match (index, known) {
        (Some(mut a), Some(b)) => {
            for p in b.peers {
                if !a.peers.iter().any(|q| q.id == p.id) {
                    a.peers.push(p);
                }
            }
            Some(a)
        }
        (a, b) => a.or(b),
    }
}

fn known_matching(shared: &Shared, pred: impl Fn(&Resource) -> bool) -> Vec<Found> {
    let Ok(roster) = shared.peers.lock() else {
        return Vec::new();
    };
    let mut by_hash: std::collections::BTreeMap<String, Found> = Default::default();
    for (id, k) in roster.known.iter() {
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

/// The peers this one knows with their catalogs, for the UI.
pub fn known_peers(shared: &Shared) -> Vec<PeerEntry> {
    shared.peers.lock().map(|p| p.entries()).unwrap_or_default()
}

/// The peers this one knows, without their catalogs (who is where).
pub fn known_addresses(shared: &Shared) -> Vec<PeerEntry> {
    shared
        .peers
        .lock()
        .map(|p| p.entries_with(false))
        .unwrap_or_default()
}

/// This peer's `/v1/peers` answer (a bounded sample, see [`known::Roster::gossip`]).
pub fn gossip_list(shared: &Shared) -> Vec<PeerEntry> {
    shared.peers.lock().map(|p| p.gossip()).unwrap_or_default()
}

/// A peer called this one: remember its address so gossip contacts it (decentralized).
pub fn heard_from(shared: &Shared, id: &str, address: Option<&str>) {
    if !matches!(shared.settings.discovery, Discovery::Decentralized { .. }) {
        return;
    }
    let Some(address) = address else { return };
    if let Ok(mut p) = shared.peers.lock() {
        p.heard_from(&shared.id, id, address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Holder;

    fn found(ids: &[&str]) -> Found {
        Found {
            resource: Resource {
                name: "a".into(),
                size: 1,
                hash: "00".repeat(32),
                chunk_size: crate::wire::CHUNK_SIZE,
                chunks: vec!["11".repeat(32)],
            },
            peers: ids
                .iter()
                .map(|id| Holder {
                    id: id.to_string(),
                    address: "h:1".into(),
                    last_seen: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn the_index_and_the_known_peers_add_up_without_duplicates() {
        let ids = |f: Option<Found>| -> Vec<String> {
            f.map(|f| f.peers.into_iter().map(|p| p.id).collect())
                .unwrap_or_default()
        };
        assert_eq!(
            ids(merge(Some(found(&["a", "b"])), Some(found(&["b", "c"])))),
            ["a", "b", "c"]
        );
        assert_eq!(ids(merge(None, Some(found(&["c"])))), ["c"]);
        assert!(merge(None, None).is_none());
    }
}
