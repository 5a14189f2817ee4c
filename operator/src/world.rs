//! The HostRoles the operator knows of, and who depends on whom: the members of a peer network,
//! the clients of a server, what to reconcile when one changes. (Resolving a client's server or a
//! peer's index is the translator's job: `hostrole_api::render`, which reads this as its
//! [`Directory`].) The controller hands in a snapshot of every HostRole it
//! watches; nothing here talks to the API server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hostrole_api::render::{Directory, split_ref};
use hostrole_api::{ClientService, HostRole};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

/// Every HostRole the operator knows of, by namespace and name.
#[derive(Clone, Debug, Default)]
pub struct World {
    by_key: BTreeMap<(String, String), Arc<HostRole>>,
}

impl World {
    pub fn new(hostroles: impl IntoIterator<Item = Arc<HostRole>>) -> Self {
        let by_key = hostroles
            .into_iter()
            .filter_map(|hr| Some(((hr.namespace()?, hr.name_any()), hr)))
            .collect();
        Self { by_key }
    }

    /// With `hr` itself in it (the store may lag behind the object being reconciled).
    pub fn with(mut self, hr: &HostRole) -> Self {
        if let Some(ns) = hr.namespace() {
            self.by_key
                .insert((ns, hr.name_any()), Arc::new(hr.clone()));
        }
        self
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<&HostRole> {
        self.by_key
            .get(&(namespace.to_string(), name.to_string()))
            .map(Arc::as_ref)
    }

    fn all(&self) -> impl Iterator<Item = (&str, &HostRole)> {
        self.by_key
            .iter()
            .map(|((ns, _), hr)| (ns.as_str(), hr.as_ref()))
    }

    /// The HostRoles of a peer network, by name.
    pub fn network_members(&self, namespace: &str, network: &str) -> Vec<&HostRole> {
        self.all()
            .filter(|(ns, hr)| {
                *ns == namespace && hr.spec.peer.as_ref().is_some_and(|p| p.network == network)
            })
            .map(|(_, hr)| hr)
            .collect()
    }

    /// The networks whose peers name `index` as their index.
    pub fn networks_using_index(&self, namespace: &str, index: &str) -> BTreeSet<String> {
        self.all()
            .filter(|(ns, _)| *ns == namespace)
            .filter_map(|(_, hr)| hr.spec.peer.as_ref())
            .filter(|p| p.index.as_deref() == Some(index))
            .map(|p| p.network.clone())
            .collect()
    }

    /// HostRoles (namespace, name) that declare a client of `service` against `ns/name`.
    pub fn clients_of(
        &self,
        namespace: &str,
        name: &str,
        service: ClientService,
    ) -> Vec<(String, String)> {
        self.all()
            .filter(|(client_ns, hr)| {
                hr.spec.clients.iter().any(|c| {
                    c.service == service
                        && c.server
                            .as_deref()
                            .map(|s| split_ref(client_ns, s))
                            .is_some_and(|(ns, n)| ns == namespace && n == name)
                })
            })
            .map(|(ns, hr)| (ns.to_string(), hr.name_any()))
            .collect()
    }

    /// The HostRoles whose desired objects or status depend on `changed`: those that use it as
    /// a server or an index, the index it uses, and the other members of its network.
    pub fn dependents(&self, changed: &HostRole) -> Vec<ObjectRef<HostRole>> {
        let Some(ns) = changed.namespace() else {
            return Vec::new();
        };
        let name = changed.name_any();
        let mut out: BTreeSet<(String, String)> = BTreeSet::new();
        for (other_ns, hr) in self.all() {
            let uses_it = hr.spec.clients.iter().any(|c| {
                c.server
                    .as_deref()
                    .map(|s| split_ref(other_ns, s))
                    .is_some_and(|(n_ns, n)| n_ns == ns && n == name)
            });
            let peer = hr.spec.peer.as_ref();
            let indexes_it =
                other_ns == ns && peer.is_some_and(|p| p.index.as_deref() == Some(&name));
            let same_network = other_ns == ns
                && peer.is_some_and(|p| {
                    changed
                        .spec
                        .peer
                        .as_ref()
                        .is_some_and(|c| c.network == p.network)
                });
            if uses_it || indexes_it || same_network {
                out.insert((other_ns.to_string(), hr.name_any()));
            }
        }
        if let Some(index) = changed.spec.peer.as_ref().and_then(|p| p.index.clone()) {
            out.insert((ns.clone(), index));
        }
        out.remove(&(ns, name));
        out.into_iter()
            .map(|(ns, n)| ObjectRef::new(&n).within(&ns))
            .collect()
    }
}

impl Directory for World {
    fn each(&self) -> Box<dyn Iterator<Item = (&str, &HostRole)> + '_> {
        Box::new(self.all())
    }

    fn get(&self, namespace: &str, name: &str) -> Option<&HostRole> {
        World::get(self, namespace, name)
    }
}
