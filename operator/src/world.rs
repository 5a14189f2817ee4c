//! The HostRoles the operator knows of, and who depends on whom: the members of a peer network,
//! the clients of a server, what to reconcile when one changes. (Resolving a client's server or a
//! peer's index is the translator's job: `hostrole_api::render`, which reads this as its
//! [`Directory`].) The controller hands in a snapshot of every HostRole it
//! watches, the labels of the namespaces (cluster-wide only) and, for the HostRole being
//! reconciled, which of its Secrets and ConfigMaps may be used; nothing here talks to the API
//! server. Consent across namespaces is decided by one function,
//! [`hostrole_api::access::allows_client`], here and in the translator alike.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hostrole_api::access::{ObjectKind, allows_client};
use hostrole_api::render::{Directory, split_ref};
use hostrole_api::{ClientService, HostRole};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

/// Every HostRole the operator knows of, by namespace and name.
#[derive(Clone, Debug, Default)]
pub struct World {
    by_key: BTreeMap<(String, String), Arc<HostRole>>,
    /// Namespace name → its labels (empty when the operator watches one namespace).
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Secrets and ConfigMaps (kind, namespace, name) labelled for use.
    usable: BTreeSet<(ObjectKind, String, String)>,
}

impl World {
    pub fn new(hostroles: impl IntoIterator<Item = Arc<HostRole>>) -> Self {
        let by_key = hostroles
            .into_iter()
            .filter_map(|hr| Some(((hr.namespace()?, hr.name_any()), hr)))
            .collect();
        Self {
            by_key,
            ..Default::default()
        }
    }

    /// With the labels of these namespaces (what `allowClientsFrom.namespaceSelector` matches).
    pub fn with_namespaces(
        mut self,
        namespaces: impl IntoIterator<Item = (String, BTreeMap<String, String>)>,
    ) -> Self {
        self.namespaces.extend(namespaces);
        self
    }

    /// With these Secrets and ConfigMaps (kind, namespace, name) known to be labelled for use.
    pub fn with_usable(
        mut self,
        usable: impl IntoIterator<Item = (ObjectKind, String, String)>,
    ) -> Self {
        self.usable.extend(usable);
        self
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

    /// Whether `server` (in `server_ns`) lets HostRoles of `client_ns` use it: the one rule
    /// ([`allows_client`]) with the labels this world knows.
    pub fn consents(&self, server_ns: &str, server: &HostRole, client_ns: &str) -> bool {
        allows_client(server_ns, server, client_ns, self.namespaces.get(client_ns))
    }

    /// HostRoles (namespace, name) that declare a client of `service` against `ns/name`, and
    /// that `ns/name` consents to serve (none when it is unknown).
    pub fn clients_of(
        &self,
        namespace: &str,
        name: &str,
        service: ClientService,
    ) -> Vec<(String, String)> {
        let Some(server) = self.get(namespace, name) else {
            return Vec::new();
        };
        self.all()
            .filter(|(client_ns, _)| self.consents(namespace, server, client_ns))
            .filter(|(client_ns, hr)| {
                hr.spec.clients.iter().any(|c| {
                    c.service == service
                        && client_servers(c)
                            .map(|s| split_ref(client_ns, s))
                            .any(|(ns, n)| ns == namespace && n == name)
                })
            })
            .map(|(ns, hr)| (ns.to_string(), hr.name_any()))
            .collect()
    }

    /// Mail hosts (namespace, name) that send mail to the mail host `ns/name` by a route: every
    /// other HostRole with a mail server in its namespace (the translator routes only within a
    /// namespace). None when it is unknown or serves no mail.
    pub fn mail_senders_to(&self, namespace: &str, name: &str) -> Vec<(String, String)> {
        if self
            .get(namespace, name)
            .is_none_or(|hr| hr.spec.servers.mail.is_none())
        {
            return Vec::new();
        }
        self.all()
            .filter(|(ns, hr)| *ns == namespace && hr.name_any() != name)
            .filter(|(_, hr)| hr.spec.servers.mail.is_some())
            .map(|(ns, hr)| (ns.to_string(), hr.name_any()))
            .collect()
    }

    /// The HostRoles whose desired objects or status depend on `changed`: those that use it as
    /// a server or an index (whether it consents or not: its consent may just have changed),
    /// the servers it names that consent to it (their NetworkPolicies admit it), the index it
    /// uses, and the other members of its network.
    pub fn dependents(&self, changed: &HostRole) -> Vec<ObjectRef<HostRole>> {
        let Some(ns) = changed.namespace() else {
            return Vec::new();
        };
        let name = changed.name_any();
        let mut out: BTreeSet<(String, String)> = BTreeSet::new();
        for (other_ns, hr) in self.all() {
            let uses_it = hr.spec.clients.iter().any(|c| {
                client_servers(c)
                    .map(|s| split_ref(other_ns, s))
                    .any(|(n_ns, n)| n_ns == ns && n == name)
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
            // Mail hosts of a namespace route to each other's domains and admit each other's
            // SMTP: a change of one concerns the others. One that stops serving mail is dropped
            // from their routes at their next resync.
            let mail_neighbour = other_ns == ns
                && hr.spec.servers.mail.is_some()
                && changed.spec.servers.mail.is_some();
            if uses_it || indexes_it || same_network || mail_neighbour {
                out.insert((other_ns.to_string(), hr.name_any()));
            }
        }
        if let Some(index) = changed.spec.peer.as_ref().and_then(|p| p.index.clone()) {
            out.insert((ns.clone(), index));
        }
        for (server_ns, server) in changed
            .spec
            .clients
            .iter()
            .flat_map(client_servers)
            .map(|s| split_ref(&ns, s))
        {
            if self
                .get(server_ns, server)
                .is_some_and(|hr| self.consents(server_ns, hr, &ns))
            {
                out.insert((server_ns.to_string(), server.to_string()));
            }
        }
        out.remove(&(ns, name));
        out.into_iter()
            .map(|(ns, n)| ObjectRef::new(&n).within(&ns))
            .collect()
    }

    /// The HostRoles a change of namespace `namespace`'s labels may concern (a namespace selector
    /// in `allowClientsFrom` may now match or not): its HostRoles with a client of a server in
    /// another namespace, and those servers.
    pub fn affected_by_namespace(&self, namespace: &str) -> Vec<ObjectRef<HostRole>> {
        let mut out: BTreeSet<(String, String)> = BTreeSet::new();
        for (ns, hr) in self.all().filter(|(ns, _)| *ns == namespace) {
            for server in hr.spec.clients.iter().flat_map(client_servers) {
                let (server_ns, server) = split_ref(ns, server);
                if server_ns != namespace {
                    out.insert((ns.to_string(), hr.name_any()));
                    out.insert((server_ns.to_string(), server.to_string()));
                }
            }
        }
        out.into_iter()
            .map(|(ns, n)| ObjectRef::new(&n).within(&ns))
            .collect()
    }

    /// The HostRoles of `namespace` that name `kind` object `name` (to reconcile when its label
    /// changes).
    pub fn users_of(
        &self,
        kind: ObjectKind,
        namespace: &str,
        name: &str,
    ) -> Vec<ObjectRef<HostRole>> {
        self.all()
            .filter(|(ns, hr)| {
                *ns == namespace
                    && hostrole_api::access::object_uses(hr)
                        .iter()
                        .any(|u| u.kind == kind && u.name == name)
            })
            .map(|(ns, hr)| ObjectRef::new(&hr.name_any()).within(ns))
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

    fn namespace_labels(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.namespaces.get(namespace)
    }

    fn usable(&self, kind: ObjectKind, namespace: &str, name: &str) -> bool {
        self.usable
            .contains(&(kind, namespace.to_string(), name.to_string()))
    }
}

/// The HostRoles a client names: its server, and the receiving host of a cross-host mail
/// probe.
fn client_servers(client: &hostrole_api::ClientSpec) -> impl Iterator<Item = &str> {
    client
        .server
        .as_deref()
        .into_iter()
        .chain(client.to.as_ref().map(|t| t.server.as_str()))
}
