//! Which Secrets and ConfigMaps a HostRole may use (docs/security.md, item 4): those whose owner
//! labelled them `hostrole.dev/use: "true"`. The translator decides what follows from the
//! answers (`hostrole_api::render`, through [`crate::world::World::with_usable`]); this module
//! gets them.
//!
//! The operator never reads a Secret: the API server answers a probe that can never be written
//! ([`ownership::probe_label`]: 400 labelled, 422 not, 404 missing). Of a ConfigMap only the
//! metadata is read. Answers are remembered in a bounded cache, a refusal briefly
//! ([`REFUSED_TTL`], and the HostRole looks again after [`REFUSED_RETRY`]: a label added later
//! is found without touching the HostRole), a consent for [`ALLOWED_TTL`] (a label removed
//! withdraws the object at the next reconcile after that). A ConfigMap labelled or unlabelled
//! also wakes the HostRoles that name it at once (a watch of labelled ConfigMaps, `run`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hostrole_api::HostRole;
use hostrole_api::access::{
    ObjectKind, ObjectUse, USE_LABEL, USE_LABEL_VALUE, labelled_for_use, object_uses,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::ownership;
use crate::reconcile::Error;

/// How long a "labelled" answer is used before the object is asked about again.
pub const ALLOWED_TTL: Duration = Duration::from_secs(60);
/// How long a "not labelled, or missing" answer is used.
pub const REFUSED_TTL: Duration = Duration::from_secs(25);
/// How soon a HostRole with a refused reference looks again (longer than [`REFUSED_TTL`], so it
/// asks the API server again then).
pub const REFUSED_RETRY: Duration = Duration::from_secs(30);
/// Most answers remembered at once.
pub const CAPACITY: usize = 4096;

/// An object by kind, namespace and name.
pub type Key = (ObjectKind, String, String);

/// Answers about objects' labels, each with the time it was given. Bounded: when full, expired
/// answers go first, then the oldest.
#[derive(Debug)]
pub struct UseCache {
    entries: HashMap<Key, (bool, Instant)>,
    capacity: usize,
}

impl Default for UseCache {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

impl UseCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The answer about `key`, unless there is none or it expired at `now`.
    pub fn get(&self, key: &Key, now: Instant) -> Option<bool> {
        let (usable, at) = self.entries.get(key)?;
        let ttl = if *usable { ALLOWED_TTL } else { REFUSED_TTL };
        (now.saturating_duration_since(*at) < ttl).then_some(*usable)
    }

    /// Remembers the answer about `key`, given at `now`.
    pub fn put(&mut self, key: Key, usable: bool, now: Instant) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, (usable, at)| {
                let ttl = if *usable { ALLOWED_TTL } else { REFUSED_TTL };
                now.saturating_duration_since(*at) < ttl
            });
            if self.entries.len() >= self.capacity
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (usable, now));
    }

    /// Forgets the answer about `key` (its labels changed).
    pub fn forget(&mut self, key: &Key) {
        self.entries.remove(key);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What the API server's answer to a label probe of a Secret says: labelled (400: the test
/// passed, the rename was refused), not labelled or missing (422, 404), or nothing (`None`: an
/// error to report; a 2xx is one too, since the probe must never be written).
pub fn probe_verdict(status: u16) -> Option<bool> {
    match status {
        400 => Some(true),
        404 | 422 => Some(false),
        _ => None,
    }
}

/// The references of one HostRole, judged.
#[derive(Debug, Default)]
pub struct Checked {
    /// The objects it may use.
    pub usable: Vec<Key>,
    /// Whether any it names may not be used (then it looks again soon).
    pub refused: bool,
}

/// Finds out which Secrets and ConfigMaps `hr` (in `ns`) names that may be used, from the cache
/// or by asking the API server.
pub async fn check(
    client: &Client,
    cache: &Mutex<UseCache>,
    hr: &HostRole,
    ns: &str,
) -> Result<Checked, Error> {
    let mut checked = Checked::default();
    for ObjectUse { kind, name, .. } in object_uses(hr) {
        let key = (kind, ns.to_string(), name.clone());
        let known = lock(cache).get(&key, Instant::now());
        let usable = match known {
            Some(usable) => usable,
            None => {
                let usable = match kind {
                    ObjectKind::Secret => probe_secret(client, ns, &name).await?,
                    ObjectKind::ConfigMap => config_map_labelled(client, ns, &name).await?,
                };
                lock(cache).put(key.clone(), usable, Instant::now());
                usable
            }
        };
        if usable {
            checked.usable.push(key);
        } else {
            checked.refused = true;
        }
    }
    Ok(checked)
}

fn lock(cache: &Mutex<UseCache>) -> std::sync::MutexGuard<'_, UseCache> {
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether Secret `ns/name` carries the use label, without reading or writing it.
async fn probe_secret(client: &Client, ns: &str, name: &str) -> Result<bool, Error> {
    let patch: json_patch::Patch =
        serde_json::from_value(ownership::probe_label(USE_LABEL, USE_LABEL_VALUE, name)).map_err(
            |source| Error::Encode {
                kind: "Secret",
                name: name.to_string(),
                source,
            },
        )?;
    let result = Api::<Secret>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await;
    let status = match &result {
        Ok(_) => 200,
        Err(kube::Error::Api(status)) => status.code,
        Err(_) => 0,
    };
    match (probe_verdict(status), result) {
        (Some(usable), _) => Ok(usable),
        (None, Ok(_)) => Err(Error::ProbeAccepted {
            namespace: ns.to_string(),
            name: name.to_string(),
        }),
        (None, Err(source)) => Err(Error::Api {
            verb: "probe",
            kind: "Secret",
            namespace: ns.to_string(),
            name: name.to_string(),
            source: Box::new(source),
        }),
    }
}

/// Whether ConfigMap `ns/name` exists and carries the use label (its metadata only).
async fn config_map_labelled(client: &Client, ns: &str, name: &str) -> Result<bool, Error> {
    let meta = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get_metadata_opt(name)
        .await
        .map_err(|source| Error::Api {
            verb: "get",
            kind: "ConfigMap",
            namespace: ns.to_string(),
            name: name.to_string(),
            source: Box::new(source),
        })?;
    Ok(meta.is_some_and(|m| labelled_for_use(m.metadata.labels.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        (ObjectKind::Secret, "lan".into(), name.into())
    }

    #[test]
    fn answers_expire_refusals_sooner_than_consents() {
        let mut cache = UseCache::default();
        let t0 = Instant::now();
        cache.put(key("yes"), true, t0);
        cache.put(key("no"), false, t0);
        assert_eq!(cache.get(&key("yes"), t0), Some(true));
        assert_eq!(cache.get(&key("no"), t0), Some(false));
        let later = t0 + REFUSED_TTL;
        assert_eq!(
            cache.get(&key("no"), later),
            None,
            "a refusal is asked again"
        );
        assert_eq!(cache.get(&key("yes"), later), Some(true));
        assert_eq!(cache.get(&key("yes"), t0 + ALLOWED_TTL), None);
        assert!(
            REFUSED_RETRY > REFUSED_TTL,
            "a HostRole that looks again must find the refusal expired"
        );
        cache.forget(&key("yes"));
        assert_eq!(cache.get(&key("yes"), t0), None);
    }

    #[test]
    fn the_cache_is_bounded_dropping_expired_then_oldest_answers() {
        let mut cache = UseCache::new(3);
        let t0 = Instant::now();
        cache.put(key("a"), false, t0);
        cache.put(key("b"), true, t0 + Duration::from_secs(1));
        cache.put(key("c"), true, t0 + Duration::from_secs(2));
        // "a" expired: it goes, the others stay.
        let t1 = t0 + REFUSED_TTL + Duration::from_secs(1);
        cache.put(key("d"), true, t1);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&key("b"), t1), Some(true));
        // Nothing expired: the oldest goes.
        cache.put(key("e"), true, t1);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&key("b"), t1), None);
        assert_eq!(cache.get(&key("c"), t1), Some(true));
        // Updating a known key never evicts.
        cache.put(key("c"), false, t1);
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn a_probe_is_labelled_only_when_refused_for_its_rename() {
        assert_eq!(probe_verdict(400), Some(true));
        assert_eq!(probe_verdict(422), Some(false));
        assert_eq!(probe_verdict(404), Some(false));
        assert_eq!(probe_verdict(200), None, "a probe must never be written");
        assert_eq!(probe_verdict(403), None);
    }
}
