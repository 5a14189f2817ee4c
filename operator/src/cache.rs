//! The operator's watch caches: reflector stores that reconciles read instead of asking the API
//! server, each with a "first list complete" flag any number of reconciles may await.
//!
//! kube-runtime 5.0's `Store::wait_until_ready` keeps one waker: of several reconciles waiting
//! for the same store, only the last one is woken, and the others wait forever (their HostRoles
//! are never reconciled again). [`Cache::ready`] waits on a `tokio::sync::watch` instead.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

use futures::{Stream, TryStreamExt};
use kube::Resource;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

/// A reflector store and whether it holds a complete list.
#[derive(Clone)]
pub struct Cache<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    synced: watch::Receiver<bool>,
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
{
    /// A cache filled by `events` (a watcher's stream), and the stream to drive: it passes the
    /// events on after the store has taken them.
    pub fn fill<S>(
        events: S,
    ) -> (
        Self,
        impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    )
    where
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    {
        let (store, writer) = reflector::store::<K>();
        let (tx, synced) = watch::channel(false);
        let stream = events.reflect(writer).inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) {
                tx.send_replace(true);
            }
        });
        (Cache { store, synced }, stream)
    }

    /// The store, once its first list is complete (at once after that).
    pub async fn ready(&self) -> &Store<K> {
        let mut synced = self.synced.clone();
        // An error means the writer is gone: the store stays as it was; read it as it is.
        let _ = synced.wait_for(|s| *s).await;
        &self.store
    }

    /// The store if its first list is complete, without waiting.
    pub fn if_synced(&self) -> Option<&Store<K>> {
        (*self.synced.borrow()).then_some(&self.store)
    }

    /// The cached object `name` in `namespace`, `None` when it is not cached or the first list
    /// is not complete yet (the caller then asks the API server).
    pub fn get(&self, namespace: &str, name: &str) -> Option<K> {
        let store = self.if_synced()?;
        store
            .get(&ObjectRef::<K>::new(name).within(namespace))
            .map(|k| (*k).clone())
    }

    /// The store, for those that read every object (metrics, the world of HostRoles).
    pub fn store(&self) -> &Store<K> {
        &self.store
    }
}

/// Caches by object type, for code generic over the type (`Slot::fetch`).
#[derive(Default)]
pub struct Caches {
    by_type: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl Caches {
    pub fn insert<K>(&mut self, cache: Cache<K>)
    where
        K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
    {
        self.by_type.insert(TypeId::of::<K>(), Box::new(cache));
    }

    pub fn get<K>(&self) -> Option<&Cache<K>>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
    {
        self.by_type.get(&TypeId::of::<K>())?.downcast_ref()
    }
}

/// Where a slot's current object comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<K> {
    /// The cache holds it.
    Cached(K),
    /// Nothing to read: the object is not wanted and no object of ours is cached under that
    /// name (the operator's objects carry its label, so the cache would hold it).
    NotOurs,
    /// Ask the API server: no complete cache, or a wanted name the cache does not hold (absent,
    /// or someone else's object without the operator's label: a conflict to find).
    Ask,
}

/// Decides, from the cache alone, what a slot needs: the pure part of `Slot::fetch`.
pub fn lookup<K: Clone>(cached: Option<Option<K>>, wanted: bool) -> Lookup<K> {
    match cached {
        None => Lookup::Ask,
        Some(Some(object)) => Lookup::Cached(object),
        Some(None) if wanted => Lookup::Ask,
        Some(None) => Lookup::NotOurs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wanted_name_the_cache_lacks_is_asked_for_and_an_unwanted_one_is_not() {
        // No complete cache: ask.
        assert_eq!(lookup::<u8>(None, true), Lookup::Ask);
        assert_eq!(lookup::<u8>(None, false), Lookup::Ask);
        // Cached: read from the cache, wanted or not (an unwanted object of ours is deleted).
        assert_eq!(lookup(Some(Some(7u8)), true), Lookup::Cached(7));
        assert_eq!(lookup(Some(Some(7u8)), false), Lookup::Cached(7));
        // Not cached but wanted: absent, or someone else's; only the API server can say.
        assert_eq!(lookup::<u8>(Some(None), true), Lookup::Ask);
        // Not cached and not wanted: nothing of ours to delete.
        assert_eq!(lookup::<u8>(Some(None), false), Lookup::NotOurs);
    }

    #[tokio::test]
    async fn every_waiter_wakes_when_the_first_list_completes() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let (cache, stream) = Cache::<ConfigMap>::fill(rx);
        let driver = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while stream.try_next().await.ok().flatten().is_some() {}
        });
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.ready().await.state().len() })
            })
            .collect();
        tokio::task::yield_now().await;
        assert!(cache.if_synced().is_none());
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some("a".into()),
                namespace: Some("lan".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(cm),
            watcher::Event::InitDone,
        ] {
            tx.unbounded_send(Ok(event)).expect("send");
        }
        for waiter in waiters {
            let seen = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("every waiter wakes")
                .expect("waiter");
            assert_eq!(seen, 1);
        }
        assert!(cache.get("lan", "a").is_some());
        assert!(cache.get("lan", "b").is_none());
        drop(tx);
        let _ = driver.await;
    }
}
