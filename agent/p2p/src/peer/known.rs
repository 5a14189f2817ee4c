//! The other peers this one knows: who they are, where, what they hold, and the addresses it
//! heard of but has not contacted yet. Pure state ([`Roster`]: no I/O, time passed in), bounded
//! ([`MAX_KNOWN`], [`MAX_HEARD`]), and only valid ids and strict `host:port` addresses get in.
//! The ids and addresses are kept in the share's state folder ([`save`], [`load`]), so a peer
//! restarted while its index is down still knows whom to ask.
//!
//! Gossip scales by contacting a few peers per round, not all of them ([`Roster::candidates`]):
//! new addresses first, then peers whose catalog gossip says changed, then the ones contacted
//! longest ago, so every known peer is still reached every `known / KNOWN_PER_ROUND` rounds.
//! Each peer's `/v1/peers` carries the catalog version it last fetched of every peer it knows
//! ([`Roster::learn`] marks a copy older than that stale), and a catalog is pulled with the
//! version held (`?unless=`), so an unchanged one costs a signed `304`. A change spreads like an
//! epidemic: in about log(N) rounds, not N.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use hostrole_proto::envelope::key_of_peer_id;
use serde::{Deserialize, Serialize};

use crate::valid_address;
use crate::wire::{PeerEntry, Resource, Service, footprint, sane_services};

/// Peers known at once.
pub const MAX_KNOWN: usize = 1024;
/// Addresses heard of (gossip, callers) and not yet contacted.
pub const MAX_HEARD: usize = 1024;
/// Known peers contacted per gossip round (besides new addresses): the stale ones first, then
/// those contacted longest ago.
pub const KNOWN_PER_ROUND: usize = 8;
/// New addresses (seeds, DNS, heard of) contacted per round; the rest wait for the next ones.
pub const NEW_PER_ROUND: usize = 16;
/// Entries of this peer's `/v1/peers` answer: a random sample when it knows more, so the
/// answer's size (and a round's bytes) does not grow with the network; over a few rounds a
/// reader still sees every peer, and versions still spread.
pub const GOSSIP_SAMPLE: usize = 32;
/// What the catalogs held from other peers may take in memory, all together, as
/// [`footprint`] estimates it: a member (or one with many ids) serving huge catalogs must not
/// be able to push the agent, and every role it runs, past its memory limit.
pub const HELD_BUDGET: usize = 64 << 20;
/// What one peer's catalog may take of [`HELD_BUDGET`] (about 160 000 chunks: 160 GiB of files).
pub const HELD_PER_PEER: usize = HELD_BUDGET / 4;

/// What became of a catalog pulled whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Kept.
    Kept,
    /// Larger than [`HELD_PER_PEER`]: the peer stays known without its catalog (until it changes).
    TooLarge,
    /// The catalogs held already fill [`HELD_BUDGET`]: the same.
    OverBudget,
}

/// Seconds another peer's clock may run ahead of this one's.
pub const CLOCK_SKEW: u64 = 300;
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
    /// What else it offers (its printer): valid ones only, at most
    /// [`crate::wire::MAX_SERVICES`]; kept when its catalog is not (they are small).
    pub services: Vec<Service>,
    /// Failed contacts in a row.
    pub failures: u32,
    /// The catalog version of `resources` (computed here, never taken on a peer's word);
    /// empty while no catalog was fetched.
    pub version: String,
    /// Another peer saw a different catalog more recently than this copy: pull it soon.
    pub stale: bool,
    /// The gossip round it was last picked for a contact (0: never).
    pub picked: u64,
    /// [`footprint`] of `resources`.
    pub held: usize,
}

impl Known {
    /// `fetched`: `resources` is the peer's own catalog (so it has a version), not the index's
    /// copy or nothing yet.
    fn new(address: String, last_seen: u64, offer: Offer, fetched: bool) -> Known {
        let resources = sane(offer.resources);
        let services = sane_services(offer.services);
        let version = if fetched {
            super::catalog::with_services(
                &super::catalog::version_of(&resources.iter().collect::<Vec<_>>()),
                &services,
            )
        } else {
            String::new()
        };
        Known {
            address,
            last_seen,
            held: footprint(&resources),
            resources,
            services,
            failures: 0,
            version,
            stale: false,
            picked: 0,
        }
    }

    /// Keeps the peer but not its catalog (its version stays, so it is not pulled again until
    /// it changes).
    fn without_catalog(mut self) -> Known {
        self.resources = Vec::new();
        self.held = 0;
        self
    }
}

/// What a peer offers the network: its catalog's resources and its services.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Offer {
    pub resources: Vec<Resource>,
    pub services: Vec<Service>,
}

/// What a successful contact brought.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// A catalog, whole.
    Catalog(Offer),
    /// `304`: the version asked with is still current.
    Unchanged,
}

/// Whether an id and address may enter the roster.
fn admissible(id: &str, address: &str) -> bool {
    key_of_peer_id(id).is_some() && valid_address(address)
}

/// Only the resources a downloader could accept.
fn sane(resources: Vec<Resource>) -> Vec<Resource> {
    resources.into_iter().filter(|r| r.consistent()).collect()
}

/// Whether a catalog of footprint `size` may be held beside `others`.
fn budget(size: usize, others: usize) -> Held {
    if size > HELD_PER_PEER {
        Held::TooLarge
    } else if others + size > HELD_BUDGET {
        Held::OverBudget
    } else {
        Held::Kept
    }
}

/// Known peers and heard addresses.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Roster {
    pub known: HashMap<String, Known>,
    heard: HashSet<String>,
    /// Gossip rounds so far.
    round: u64,
}

impl Roster {
    /// The index's peer list replaces what this peer knows (itself left out, bad entries
    /// dropped, at most [`MAX_KNOWN`], freshest first).
    pub fn replace_with_index(&mut self, own_id: &str, mut peers: Vec<PeerEntry>) {
        peers.sort_by_key(|p| std::cmp::Reverse(p.last_seen));
        let mut total = 0;
        self.known = peers
            .into_iter()
            .filter(|p| p.id != own_id && admissible(&p.id, &p.address))
            .take(MAX_KNOWN)
            .map(|p| {
                let offer = Offer {
                    resources: p.resources,
                    services: p.services,
                };
                let k = Known::new(p.address, p.last_seen, offer, false);
                let k = match budget(k.held, total) {
                    Held::Kept => k,
                    Held::TooLarge | Held::OverBudget => k.without_catalog(),
                };
                total += k.held;
                (p.id, k)
            })
            .collect();
    }

    /// [`footprint`] of every catalog held.
    pub fn held_total(&self) -> usize {
        self.known.values().map(|k| k.held).sum()
    }

    /// A contact answered, signed as `id`, with its catalog or a `304` for the one held. A
    /// catalog over [`HELD_PER_PEER`], or one that would take the catalogs held past
    /// [`HELD_BUDGET`], is not kept (the peer is).
    pub fn contacted(
        &mut self,
        own_id: &str,
        id: &str,
        address: &str,
        got: Fetched,
        now: u64,
    ) -> Held {
        if id == own_id || !admissible(id, address) {
            return Held::Kept;
        }
        if !self.known.contains_key(id) && self.known.len() >= MAX_KNOWN {
            return Held::Kept;
        }
        self.heard.remove(address);
        let picked = self.known.get(id).map_or(self.round, |k| k.picked);
        match got {
            Fetched::Catalog(offer) => {
                let mut k = Known::new(address.to_string(), now, offer, true);
                k.picked = picked;
                let others = self.held_total() - self.known.get(id).map_or(0, |old| old.held);
                let held = budget(k.held, others);
                if held != Held::Kept {
                    k = k.without_catalog();
                }
                self.known.insert(id.to_string(), k);
                held
            }
            Fetched::Unchanged => {
                // Only asked with a version of a known peer; a 304 from anyone else says nothing.
                if let Some(k) = self.known.get_mut(id) {
                    k.address = address.to_string();
                    k.last_seen = now;
                    k.failures = 0;
                    k.stale = false;
                }
                Held::Kept
            }
        }
    }

    /// The id and catalog version held for the peer at `address`, to ask it with.
    pub fn held(&self, address: &str) -> Option<(&str, &str)> {
        self.known
            .iter()
            .find(|(_, k)| k.address == address)
            .map(|(id, k)| (id.as_str(), k.version.as_str()))
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

    /// Another peer's `/v1/peers`: the addresses not known yet are heard of, and a known peer
    /// whose catalog the lister fetched more recently than this copy, with another version, is
    /// marked stale (its catalog is pulled at one of the next rounds).
    /// A sighting dated after `now` plus [`CLOCK_SKEW`] is not believed.
    pub fn learn(&mut self, own_id: &str, own_address: &str, peers: Vec<PeerEntry>, now: u64) {
        for p in peers.into_iter().take(crate::wire::MAX_GOSSIP_PEERS) {
            if p.id == own_id || p.address == own_address {
                continue;
            }
            if let Some(k) = self.known.get_mut(&p.id) {
                if crate::wire::valid_version(&p.version)
                    && p.version != k.version
                    && p.last_seen >= k.last_seen
                    && p.last_seen <= now.saturating_add(CLOCK_SKEW)
                {
                    k.stale = true;
                }
            } else if admissible(&p.id, &p.address) {
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

    /// Whom to contact this round: up to [`NEW_PER_ROUND`] addresses no known peer has
    /// (`extra`, from seeds and DNS, first, then heard ones, which are taken), and up to
    /// [`KNOWN_PER_ROUND`] known peers: stale ones first, then those picked longest ago. Never
    /// `own_address`, never an address that is not `host:port`.
    pub fn candidates(
        &mut self,
        own_address: &str,
        extra: impl IntoIterator<Item = String>,
    ) -> HashSet<String> {
        self.round += 1;
        let known_at: HashSet<&str> = self.known.values().map(|k| k.address.as_str()).collect();
        let usable =
            |a: &String| a != own_address && valid_address(a) && !known_at.contains(a.as_str());
        let mut out: HashSet<String> = HashSet::new();
        for a in extra {
            if out.len() >= NEW_PER_ROUND {
                break;
            }
            if usable(&a) {
                out.insert(a);
            }
        }
        let mut heard: Vec<String> = self.heard.iter().cloned().collect();
        heard.sort();
        for a in heard {
            if out.len() >= NEW_PER_ROUND {
                break;
            }
            self.heard.remove(&a);
            if usable(&a) {
                out.insert(a);
            }
        }
        // Stale peers take at most half of the known slots, so that a member who keeps saying
        // some catalogs changed cannot starve the round-robin that reaches everyone else.
        let mut order: Vec<(&String, &Known)> = self
            .known
            .iter()
            .filter(|(_, k)| k.address != own_address && valid_address(&k.address))
            .collect();
        order.sort_by(|(a, x), (b, y)| (x.picked, *a).cmp(&(y.picked, *b)));
        let mut chosen: Vec<String> = order
            .iter()
            .filter(|(_, k)| k.stale)
            .take(KNOWN_PER_ROUND / 2)
            .map(|(id, _)| (*id).clone())
            .collect();
        for (id, _) in &order {
            if chosen.len() >= KNOWN_PER_ROUND {
                break;
            }
            if !chosen.contains(id) {
                chosen.push((*id).clone());
            }
        }
        for id in chosen {
            if let Some(k) = self.known.get_mut(&id) {
                k.picked = self.round;
                out.insert(k.address.clone());
            }
        }
        out
    }

    /// The peers as the UI lists them, by id (resources included).
    pub fn entries(&self) -> Vec<PeerEntry> {
        self.entries_with(true)
    }

    /// The peers by id, with their catalogs or without (no copy of what may be 64 MiB when
    /// only who is where is wanted).
    pub fn entries_with(&self, catalogs: bool) -> Vec<PeerEntry> {
        let mut list: Vec<PeerEntry> = self
            .known
            .iter()
            .map(|(id, k)| PeerEntry {
                id: id.clone(),
                address: k.address.clone(),
                last_seen: k.last_seen,
                resources: if catalogs {
                    k.resources.clone()
                } else {
                    Vec::new()
                },
                version: k.version.clone(),
                services: if catalogs {
                    k.services.clone()
                } else {
                    Vec::new()
                },
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// This peer's `/v1/peers` answer: at most [`GOSSIP_SAMPLE`] known peers, a random sample
    /// when it knows more, freshest first, without catalogs (each is pulled from its peer).
    pub fn gossip(&self) -> Vec<PeerEntry> {
        let mut list = self.entries_with(false);
        if list.len() > GOSSIP_SAMPLE {
            fastrand::shuffle(&mut list);
            list.truncate(GOSSIP_SAMPLE);
        }
        list.sort_by_key(|p| std::cmp::Reverse(p.last_seen));
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
                self.known
                    .entry(r.id)
                    .or_insert_with(|| Known::new(r.address, r.last_seen, Offer::default(), false));
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

    fn cat(resources: Vec<Resource>) -> Fetched {
        Fetched::Catalog(Offer {
            resources,
            services: vec![],
        })
    }
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
            version: String::new(),
            services: vec![],
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
            0,
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
                id: key(i),
                address: "h:1".into(),
                last_seen: 0,
                resources: vec![],
                version: String::new(),
                services: vec![],
            })
            .collect();
        r.replace_with_index(&id(0), many.clone());
        assert_eq!(r.known.len(), MAX_KNOWN);
        let mut g = Roster::default();
        g.learn(&id(0), "me:1", many, 0);
        assert!(g.heard() <= crate::wire::MAX_GOSSIP_PEERS);
    }

    fn key(i: u32) -> String {
        peer_id("p", &{
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            k[31] = 1;
            k
        })
    }

    fn resource(name: &str, fill: char) -> Resource {
        let hash: String = std::iter::repeat_n(fill, 64).collect();
        Resource {
            name: name.into(),
            size: 1,
            hash: hash.clone(),
            chunk_size: crate::wire::CHUNK_SIZE,
            chunks: vec![hash],
        }
    }

    /// A roster that contacted peers `key(1..=n)` at `10.0.0.i:7001` at time `at` (for
    /// `i`, its time plus `i` when `staggered`), each with catalog `catalog`.
    fn roster_of(n: u32, catalog: &[Resource], at: u64, staggered: bool) -> Roster {
        let mut r = Roster::default();
        for i in 1..=n {
            let seen = if staggered { at + u64::from(i) } else { at };
            r.contacted(
                &id(0),
                &key(i),
                &format!("10.0.0.{i}:7001"),
                cat(catalog.to_vec()),
                seen,
            );
        }
        r
    }

    /// Ids of the known peers at the addresses of one round's candidates.
    fn known_in(r: &Roster, round: &HashSet<String>) -> HashSet<String> {
        r.known
            .iter()
            .filter(|(_, k)| round.contains(&k.address))
            .map(|(id, _)| id.clone())
            .collect()
    }

    #[test]
    fn a_round_contacts_a_few_known_peers_and_every_one_in_turn() {
        let n = 5 * KNOWN_PER_ROUND as u32;
        let mut r = roster_of(n, &[], 1, false);
        let mut seen: HashMap<String, u32> = HashMap::new();
        for _ in 0..5 {
            let round = r.candidates("me:1", []);
            assert_eq!(round.len(), KNOWN_PER_ROUND, "{round:?}");
            for id in known_in(&r, &round) {
                *seen.entry(id).or_default() += 1;
            }
        }
        // Five rounds of eight reach each of the forty once: none skipped, none twice.
        assert_eq!(seen.len(), n as usize);
        assert!(seen.values().all(|c| *c == 1), "{seen:?}");
    }

    #[test]
    fn new_addresses_are_capped_per_round_and_wait_their_turn() {
        let mut r = Roster::default();
        for i in 0..40u32 {
            r.heard_from(&id(0), &key(i), &format!("10.0.1.{i}:7001"));
        }
        let seeds = ["10.0.2.1:7001".to_string(), "10.0.2.2:7001".to_string()];
        let first = r.candidates("me:1", seeds.clone());
        assert_eq!(first.len(), NEW_PER_ROUND);
        assert!(seeds.iter().all(|s| first.contains(s)), "seeds go first");
        let second = r.candidates("me:1", []);
        let third = r.candidates("me:1", []);
        assert_eq!(
            (second.len(), third.len()),
            (NEW_PER_ROUND, 40 + 2 - 2 * NEW_PER_ROUND)
        );
        assert!(first.is_disjoint(&second) && second.is_disjoint(&third));
        // Addresses DNS gives every round that are known peers' take their turns as known
        // peers: a headless Service of 20 pods does not make every round contact all 20.
        let dns: Vec<String> = (0..20).map(|i| format!("10.0.3.{i}:7001")).collect();
        for (i, a) in dns.iter().enumerate() {
            r.contacted(&id(0), &key(200 + i as u32), a, cat(vec![]), 1);
        }
        assert_eq!(r.candidates("me:1", dns.clone()).len(), KNOWN_PER_ROUND);
    }

    #[test]
    fn gossip_of_a_newer_catalog_marks_the_copy_stale_and_it_is_pulled_first() {
        let mut r = roster_of(20, &[resource("a", 'a')], 100, false);
        // Everyone was just contacted; key(20) would wait two rounds for its turn.
        for _ in 0..2 {
            r.candidates("me:1", []);
        }
        let held = r.known[&key(20)].version.clone();
        assert!(crate::wire::valid_version(&held), "{held}");
        // The version is ours, from the catalog, in any order: the same files, the same version.
        let reordered = super::super::catalog::version_of(&[&resource("a", 'a')]);
        assert_eq!(held, reordered);
        let newer = super::super::catalog::version_of(&[&resource("a", 'a'), &resource("b", 'b')]);
        let told = |version: &str, last_seen: u64| PeerEntry {
            id: key(20),
            address: "10.0.0.20:7001".into(),
            last_seen,
            resources: vec![],
            version: version.into(),
            services: vec![],
        };
        // An older sighting, the same version, or a version that is not one: nothing to do.
        r.learn(
            &id(0),
            "me:1",
            vec![told(&newer, 99), told(&held, 120), told("x&y=1", 120)],
            120,
        );
        assert!(!r.known[&key(20)].stale);
        // Nor one dated far in the future (a member's clock, or a member making it up).
        r.learn(
            &id(0),
            "me:1",
            vec![told(&newer, 100 + CLOCK_SKEW + 1)],
            100,
        );
        assert!(!r.known[&key(20)].stale);
        r.learn(&id(0), "me:1", vec![told(&newer, 101)], 101);
        assert!(r.known[&key(20)].stale);
        let round = r.candidates("me:1", []);
        assert!(
            known_in(&r, &round).contains(&key(20)),
            "the stale peer goes first"
        );
        assert_eq!(
            r.held("10.0.0.20:7001"),
            Some((key(20).as_str(), held.as_str()))
        );
        // It answers 304 after all (the lister was wrong): the copy is current again.
        r.contacted(&id(0), &key(20), "10.0.0.20:7001", Fetched::Unchanged, 130);
        assert!(!r.known[&key(20)].stale);
        assert_eq!(r.known[&key(20)].last_seen, 130);
        assert_eq!(r.known[&key(20)].resources.len(), 1);
        // A 304 from a peer never asked with a version says nothing.
        r.contacted(&id(0), &key(99), "10.0.9.9:7001", Fetched::Unchanged, 130);
        assert!(!r.known.contains_key(&key(99)));
        // Its own catalog, pulled whole, brings the new version; `/v1/peers` lists it.
        r.contacted(
            &id(0),
            &key(20),
            "10.0.0.20:7001",
            cat(vec![resource("b", 'b'), resource("a", 'a')]),
            140,
        );
        assert_eq!(r.known[&key(20)].version, newer);
        assert!(
            r.entries()
                .iter()
                .any(|e| e.id == key(20) && e.version == newer)
        );
    }

    #[test]
    fn a_member_crying_stale_every_round_cannot_starve_the_others() {
        let mut r = roster_of(20, &[], 10, false);
        let quiet: HashSet<String> = (11..=20).map(key).collect();
        let mut reached = HashSet::new();
        for round in 0..4u64 {
            // Before each round a member says peers 1–10 changed their catalogs.
            let lies: Vec<PeerEntry> = (1..=10u32)
                .map(|i| PeerEntry {
                    id: key(i),
                    address: format!("10.0.0.{i}:7001"),
                    last_seen: 11 + round,
                    resources: vec![],
                    version: format!("{:016x}", round + 1),
                    services: vec![],
                })
                .collect();
            r.learn(&id(0), "me:1", lies, 11 + round);
            let round = r.candidates("me:1", []);
            let picked = known_in(&r, &round);
            reached.extend(picked.into_iter().filter(|id| quiet.contains(id)));
        }
        // Stale-first without a cap would spend every round on peers 1–10.
        assert_eq!(reached, quiet, "the ten quiet peers are reached in turn");
    }

    /// A catalog of `chunks` chunks in one resource named `name`.
    fn big(name: &str, chunks: usize) -> Vec<Resource> {
        let mut r = resource(name, 'c');
        r.size = chunks as u64 * crate::wire::CHUNK_SIZE;
        r.chunks = vec![r.hash.clone(); chunks];
        vec![r]
    }

    #[test]
    fn the_catalogs_held_stay_within_their_budget_however_many_ids_serve_huge_ones() {
        let mut r = Roster::default();
        // One catalog over the per-peer share: the peer is known, its catalog is not held,
        // and its version is, so it is not pulled again while it stays the same.
        let huge = big("huge", HELD_PER_PEER / 96 + 1);
        assert!(huge[0].consistent());
        let held = r.contacted(&id(0), &key(1), "10.0.0.1:7001", cat(huge), 1);
        assert_eq!(held, Held::TooLarge);
        assert!(r.known[&key(1)].resources.is_empty());
        assert!(crate::wire::valid_version(&r.known[&key(1)].version));
        assert_eq!(r.held_total(), 0);
        // Many ids, each just under the share: the total stops at the budget.
        let mut refused = 0;
        for i in 2..8u32 {
            let catalog = big(&format!("f{i}"), HELD_PER_PEER / 96 - 10);
            let at = format!("10.0.0.{i}:7001");
            if r.contacted(&id(0), &key(i), &at, cat(catalog), 1) == Held::OverBudget {
                refused += 1;
            }
            assert!(r.held_total() <= HELD_BUDGET, "{}", r.held_total());
        }
        // Four fit in the budget (with the room the refused one left), the other two do not.
        assert_eq!(refused, 2, "{refused} refused");
        assert_eq!(r.known.len(), 7, "every peer stays known");
        // A small honest catalog still fits beside them; a peer's new catalog replaces its
        // old one in the count.
        let small = vec![resource("notes.txt", 'd')];
        let held = r.contacted(&id(0), &key(50), "10.0.0.50:7001", cat(small), 2);
        assert_eq!(held, Held::Kept);
        let before = r.held_total();
        let again = big("f2", 10);
        r.contacted(&id(0), &key(2), "10.0.0.2:7001", cat(again), 3);
        assert!(r.held_total() < before);
        // The index's list is held within the same budget.
        let listed: Vec<PeerEntry> = (1..=6u32)
            .map(|i| PeerEntry {
                id: key(i),
                address: format!("10.0.0.{i}:7001"),
                last_seen: u64::from(i),
                resources: big(&format!("g{i}"), HELD_PER_PEER / 96 - 10),
                version: String::new(),
                services: vec![],
            })
            .collect();
        r.replace_with_index(&id(0), listed);
        assert_eq!(r.known.len(), 6);
        assert!(r.held_total() <= HELD_BUDGET);
        assert_eq!(
            r.known.values().filter(|k| k.resources.is_empty()).count(),
            2
        );
    }

    #[test]
    fn the_gossip_list_is_a_bounded_sample_that_covers_everyone_over_rounds() {
        let r = roster_of(100, &[resource("a", 'a')], 0, true);
        let mut seen = HashSet::new();
        for _ in 0..40 {
            let list = r.gossip();
            assert_eq!(list.len(), GOSSIP_SAMPLE);
            assert!(
                list.iter()
                    .all(|p| p.resources.is_empty() && !p.version.is_empty())
            );
            assert!(list.windows(2).all(|w| w[0].last_seen >= w[1].last_seen));
            let ids: HashSet<&String> = list.iter().map(|p| &p.id).collect();
            assert_eq!(ids.len(), GOSSIP_SAMPLE, "no peer twice");
            seen.extend(list.into_iter().map(|p| p.id));
        }
        // 40 samples of 32 out of 100 miss a given peer with odds (68/100)^40 < 1e-6.
        assert_eq!(seen.len(), 100);
        // A small network is listed whole.
        let mut small = Roster::default();
        small.contacted(&id(0), &key(1), "10.0.0.1:7001", cat(vec![]), 1);
        assert_eq!(small.gossip().len(), 1);
    }

    #[test]
    fn services_are_kept_sane_and_a_new_printer_changes_the_catalog_version() {
        let printer = |port: u16, name: &str| Service {
            kind: crate::wire::ServiceKind::Print,
            port,
            tls: false,
            name: name.into(),
        };
        let mut r = Roster::default();
        // From the index: the bad one and those past the cap are dropped.
        let mut listed = entry(1, "10.0.0.1:7001");
        listed.services = vec![printer(0, "bad"), printer(631, "ok")];
        listed.services.extend(vec![printer(632, "more"); 20]);
        r.replace_with_index(&id(0), vec![listed]);
        let kept = &r.known[&id(1)].services;
        assert_eq!(kept.len(), crate::wire::MAX_SERVICES);
        assert_eq!(kept[0], printer(631, "ok"));
        // From a catalog: the same resources with a printer make another version, so a peer
        // holding the old one is not answered 304 and learns of the printer.
        let plain = Offer::default();
        let with = Offer {
            resources: vec![],
            services: vec![printer(631, "ok")],
        };
        r.contacted(&id(0), &key(2), "10.0.0.2:7001", Fetched::Catalog(plain), 1);
        let before = r.known[&key(2)].version.clone();
        r.contacted(&id(0), &key(2), "10.0.0.2:7001", Fetched::Catalog(with), 2);
        let after = r.known[&key(2)].version.clone();
        assert!(crate::wire::valid_version(&before) && crate::wire::valid_version(&after));
        assert_ne!(before, after);
        // Kept for the UI, left out of the gossip list (each is pulled from its peer).
        let ui = r.entries();
        assert_eq!(
            ui.iter().find(|p| p.id == key(2)).map(|p| p.services.len()),
            Some(1)
        );
        assert!(r.gossip().iter().all(|p| p.services.is_empty()));
    }

    #[test]
    fn failing_peers_are_forgotten_and_the_roster_survives_a_restart() {
        let mut r = Roster::default();
        r.contacted(&id(0), &id(1), "h:1", cat(vec![]), 10);
        r.contacted(&id(0), &id(2), "h:2", cat(vec![]), 11);
        r.contacted(&id(0), &id(0), "h:0", cat(vec![]), 11);
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
