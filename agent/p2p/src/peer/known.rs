//! The other peers this one knows: who they are, where, what they hold, and the addresses it
//! heard of but has not contacted yet. Pure state ([`Roster`]: no I/O, time passed in), bounded
//! ([`MAX_KNOWN`], [`MAX_HEARD`]), and only valid ids and strict `host:port` addresses get in.
//! The ids and addresses are kept in the share's state folder ([`save`], [`load`]), so a peer
//! restarted while its index is down still knows whom to ask.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use hostrole_proto::envelope::key_of_peer_id;
use serde::{Deserialize, Serialize};

use crate::valid_address;
use crate::wire::{PeerEntry, Resource};

/// Peers known at once.
pub const MAX_KNOWN: usize = 1024;
/// Addresses heard of (gossip, callers) and not yet contacted.
pub const MAX_HEARD: usize = 1024;
/// Failed contacts in a row after which a peer is forgotten.
pub const FORGET_AFTER: u32 = 3;
/// The file in the state folder that remembers the known peers.
pub const FILE: &str = "peers.json";

/// Another peer, as this one knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    pub address: String,
    /// Unix seconds of the last successful contact (or index heartbeat).
    pub last_seen: u64,
    pub resources: Vec<Resource>,
    /// Failed contacts in a row.
    pub failures: u32,
}

/// Whether an id and address may enter the roster.
fn admissible(id: &str, address: &str) -> bool {
    key_of_peer_id(id).is_some() && valid_address(address)
}

/// Only the resources a downloader could accept.
fn sane(resources: Vec<Resource>) -> Vec<Resource> {
    resources.into_iter().filter(|r| r.consistent()).collect()
}

/// Known peers and heard addresses.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Roster {
    pub known: HashMap<String, Known>,
    heard: HashSet<String>,
}

impl Roster {
    /// The index's peer list replaces what this peer knows (itself left out, bad entries
    /// dropped, at most [`MAX_KNOWN`], freshest first).
    pub fn replace_with_index(&mut self, own_id: &str, mut peers: Vec<PeerEntry>) {
        peers.sort_by_key(|p| std::cmp::Reverse(p.last_seen));
        self.known = peers
            .into_iter()
            .filter(|p| p.id != own_id && admissible(&p.id, &p.address))
            .take(MAX_KNOWN)
            .map(|p| {
                (
                    p.id,
                    Known {
                        address: p.address,
                        last_seen: p.last_seen,
                        resources: sane(p.resources),
                        failures: 0,
                    },
                )
            })
            .collect();
    }

    /// A contact answered, signed as `id`, with its catalog.
    pub fn contacted(
        &mut self,
        own_id: &str,
        id: &str,
        address: &str,
        resources: Vec<Resource>,
        now: u64,
    ) {
        if id == own_id || !admissible(id, address) {
            return;
        }
        if !self.known.contains_key(id) && self.known.len() >= MAX_KNOWN {
            return;
        }
        self.heard.remove(address);
        self.known.insert(
            id.to_string(),
            Known {
                address: address.to_string(),
                last_seen: now,
                resources: sane(resources),
                failures: 0,
            },
        );
    }

    /// A contact at `address` failed.
    pub fn failed(&mut self, address: &str) {
        for k in self.known.values_mut().filter(|k| k.address == address) {
            k.failures += 1;
        }
    }

    /// Forgets the peers that failed [`FORGET_AFTER`] rounds in a row.
    pub fn forget_failing(&mut self) {
        self.known.retain(|_, k| k.failures < FORGET_AFTER);
    }

    /// Addresses another peer's `/v1/peers` named: the ones not known yet are heard of.
    pub fn learn(&mut self, own_id: &str, own_address: &str, peers: Vec<PeerEntry>) {
        for p in peers.into_iter().take(crate::wire::MAX_GOSSIP_PEERS) {
            if p.id != own_id
                && p.address != own_address
                && !self.known.contains_key(&p.id)
                && admissible(&p.id, &p.address)
            {
                self.hear(p.address);
            }
        }
    }

    /// A peer called this one from `address` (decentralized: contacted next round).
    pub fn heard_from(&mut self, own_id: &str, id: &str, address: &str) {
        if id != own_id && !self.known.contains_key(id) && admissible(id, address) {
            self.hear(address.to_string());
        }
    }

    fn hear(&mut self, address: String) {
        if self.heard.len() < MAX_HEARD {
            self.heard.insert(address);
        }
    }

    #[cfg(test)]
    pub fn heard(&self) -> usize {
        self.heard.len()
    }

    /// Whom to contact this round: `extra` (seeds, DNS), the known peers, the heard
    /// addresses (taken); never `own_address`, never an address that is not `host:port`.
    pub fn candidates(
        &mut self,
        own_address: &str,
        extra: impl IntoIterator<Item = String>,
    ) -> HashSet<String> {
        let mut out: HashSet<String> = extra.into_iter().collect();
        out.extend(self.known.values().map(|k| k.address.clone()));
        out.extend(self.heard.drain());
        out.remove(own_address);
        out.retain(|a| valid_address(a));
        out
    }

    /// The peers as `/v1/peers` and the UI list them, by id (resources included).
    pub fn entries(&self) -> Vec<PeerEntry> {
        let mut list: Vec<PeerEntry> = self
            .known
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

    /// What is remembered on disk: ids and addresses, not catalogs.
    pub fn remembered(&self) -> Vec<Remembered> {
        let mut list: Vec<Remembered> = self
            .known
            .iter()
            .map(|(id, k)| Remembered {
                id: id.clone(),
                address: k.address.clone(),
                last_seen: k.last_seen,
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// Peers remembered from a previous run (valid ones, at most [`MAX_KNOWN`]); their
    /// catalogs come with the first contact.
    pub fn restore(&mut self, own_id: &str, list: Vec<Remembered>) {
        for r in list {
            if self.known.len() >= MAX_KNOWN {
                break;
            }
            if r.id != own_id && admissible(&r.id, &r.address) {
                self.known.entry(r.id).or_insert(Known {
                    address: r.address,
                    last_seen: r.last_seen,
                    resources: Vec::new(),
                    failures: 0,
                });
            }
        }
    }
}

/// One remembered peer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Remembered {
    pub id: String,
    pub address: String,
    pub last_seen: u64,
}

/// Writes the remembered peers to `state/peers.json` (atomically).
pub fn save(state: &Path, list: &[Remembered]) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(list).map_err(std::io::Error::other)?;
    hostrole_agent_core::fsutil::write_atomic(&state.join(FILE), &bytes, 0o600)
}

/// Reads `state/peers.json`; nothing when it is missing or unreadable.
pub fn load(state: &Path) -> Vec<Remembered> {
    std::fs::read(state.join(FILE))
        .ok()
        .filter(|b| b.len() <= 4 << 20)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostrole_proto::envelope::peer_id;

    fn id(n: u8) -> String {
        peer_id("p", &[n; 32])
    }

    fn entry(n: u8, address: &str) -> PeerEntry {
        PeerEntry {
            id: id(n),
            address: address.into(),
            last_seen: n as u64,
            resources: vec![],
        }
    }

    #[test]
    fn bad_ids_and_addresses_never_get_in() {
        let mut r = Roster::default();
        r.replace_with_index(
            &id(0),
            vec![
                entry(0, "127.0.0.1:1"),
                entry(1, "127.0.0.1:2"),
                entry(2, "127.0.0.1:3/admin?x="),
                PeerEntry {
                    id: "no-key".into(),
                    ..entry(3, "127.0.0.1:4")
                },
            ],
        );
        assert_eq!(r.known.keys().collect::<Vec<_>>(), [&id(1)]);
        r.learn(
            &id(0),
            "127.0.0.1:1",
            vec![entry(4, "h:5#x"), entry(5, "h:5")],
        );
        r.heard_from(&id(0), &id(6), "evil/x:1");
        let c = r.candidates("127.0.0.1:1", ["bad address".to_string()]);
        let mut c: Vec<_> = c.into_iter().collect();
        c.sort();
        assert_eq!(c, ["127.0.0.1:2", "h:5"]);
    }

    #[test]
    fn the_heard_set_and_the_roster_are_capped() {
        let mut r = Roster::default();
        for i in 0..(MAX_HEARD as u32 + 500) {
            r.heard_from(
                &id(0),
                &id(1),
                &format!("10.0.{}.{}:7001", i / 250, i % 250),
            );
        }
        assert_eq!(r.heard(), MAX_HEARD);
        let many: Vec<PeerEntry> = (0..2000u32)
            .map(|i| PeerEntry {
                id: peer_id("p", &{
                    let mut k = [0u8; 32];
                    k[..4].copy_from_slice(&i.to_le_bytes());
                    k[31] = 1;
                    k
                }),
                address: "h:1".into(),
                last_seen: 0,
                resources: vec![],
            })
            .collect();
        r.replace_with_index(&id(0), many.clone());
        assert_eq!(r.known.len(), MAX_KNOWN);
        let mut g = Roster::default();
        g.learn(&id(0), "me:1", many);
        assert!(g.heard() <= crate::wire::MAX_GOSSIP_PEERS);
    }

    #[test]
    fn failing_peers_are_forgotten_and_the_roster_survives_a_restart() {
        let mut r = Roster::default();
        r.contacted(&id(0), &id(1), "h:1", vec![], 10);
        r.contacted(&id(0), &id(2), "h:2", vec![], 11);
        r.contacted(&id(0), &id(0), "h:0", vec![], 11);
        for _ in 0..FORGET_AFTER {
            r.failed("h:2");
        }
        r.forget_failing();
        assert_eq!(r.known.keys().collect::<Vec<_>>(), [&id(1)]);

        let dir = tempfile::tempdir().expect("tempdir");
        save(dir.path(), &r.remembered()).expect("save");
        let mut again = Roster::default();
        again.restore(&id(0), load(dir.path()));
        assert_eq!(again.remembered(), r.remembered());
        assert!(load(&dir.path().join("missing")).is_empty());
    }
}
