//! Pure resolution of the references between HostRoles: a client's server, a peer's index,
//! the members of a peer network. The controller hands in a snapshot of every HostRole it
//! watches; nothing here talks to the API server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use hostrole_api::agent::{CLIENT_CREDENTIALS_DIR, ClientConfig, ClientTarget, MailTarget};
use hostrole_api::duration;
use hostrole_api::target::mail_target_from_url;
use hostrole_api::{ClientService, ClientSpec, HostRole};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

/// How often a client runs and how long a run may take when the manifest does not say.
pub const DEFAULT_EVERY_MS: u64 = 30_000;
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// Every HostRole the operator knows of, by namespace and name.
#[derive(Clone, Debug, Default)]
pub struct World {
    by_key: BTreeMap<(String, String), Arc<HostRole>>,
}

/// A reference that cannot be honoured (yet): the condition reason and what to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The field that holds the reference, e.g. `spec.clients[1].server`.
    pub field: String,
    /// `ServerNotFound`, `RoleMissing`, `IndexNotFound`, `IndexRoleMissing`, `InvalidTarget`.
    pub reason: &'static str,
    pub message: String,
}

/// The client of position `index` in `spec.clients`: its configuration, or why not.
pub type Resolved = Result<ClientConfig, Problem>;

/// Name of the Secret and of the headless Service of a peer network.
pub fn network_object_name(network: &str) -> String {
    format!("peers-{network}")
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

/// `name` or `namespace/name`, relative to `namespace`.
pub fn split_ref<'a>(namespace: &'a str, reference: &'a str) -> (&'a str, &'a str) {
    reference.split_once('/').unwrap_or((namespace, reference))
}

/// Resolves every client of `hr` (in `namespace`) to what its agent connects to.
pub fn resolve_clients(hr: &HostRole, namespace: &str, world: &World) -> Vec<Resolved> {
    hr.spec
        .clients
        .iter()
        .enumerate()
        .map(|(i, spec)| resolve_client(i, spec, namespace, world))
        .collect()
}

fn resolve_client(i: usize, spec: &ClientSpec, namespace: &str, world: &World) -> Resolved {
    let name = spec.service.client_name(i);
    let service = spec.service.as_str();
    let (server, target) = match (&spec.server, &spec.url) {
        (Some(reference), _) => {
            let field = format!("spec.clients[{i}].server");
            let (ns, server_name) = split_ref(namespace, reference);
            let Some(server) = world.get(ns, server_name) else {
                return Err(Problem {
                    field: field.clone(),
                    reason: "ServerNotFound",
                    message: format!(
                        "{field}: no HostRole {ns}/{server_name}; create it, or point the client at another server"
                    ),
                });
            };
            let host = format!("{server_name}.{ns}.svc");
            let servers = &server.spec.servers;
            let target = match spec.service {
                ClientService::Web => servers
                    .web
                    .as_ref()
                    .map(|w| ClientTarget::Url(format!("http://{host}:{}/", w.port))),
                ClientService::File => servers
                    .file
                    .as_ref()
                    .map(|f| ClientTarget::Url(format!("http://{host}:{}/", f.port))),
                ClientService::Mail => servers.mail.as_ref().map(|m| {
                    ClientTarget::Mail(MailTarget {
                        host: host.clone(),
                        smtp_port: m.smtp_port as u16,
                        imap_port: Some(m.imap_port as u16),
                        pop3_port: Some(m.pop3_port as u16),
                        domain: m.domains.first().cloned(),
                    })
                }),
            };
            let Some(target) = target else {
                return Err(Problem {
                    field: field.clone(),
                    reason: "RoleMissing",
                    message: format!(
                        "{field}: HostRole {ns}/{server_name} does not serve {service} (add spec.servers.{service} to it, or point the client at another server)"
                    ),
                });
            };
            (reference.clone(), target)
        }
        (None, Some(url)) => {
            let target = match spec.service {
                ClientService::Mail => {
                    ClientTarget::Mail(mail_target_from_url(url).map_err(|e| Problem {
                        field: format!("spec.clients[{i}].url"),
                        reason: "InvalidTarget",
                        message: format!("spec.clients[{i}].url: {e}"),
                    })?)
                }
                ClientService::Web | ClientService::File => ClientTarget::Url(url.clone()),
            };
            (url.clone(), target)
        }
        (None, None) => {
            return Err(Problem {
                field: format!("spec.clients[{i}]"),
                reason: "InvalidTarget",
                message: format!("spec.clients[{i}]: set server or url"),
            });
        }
    };
    let millis = |text: &Option<String>, default: u64| {
        text.as_deref()
            .and_then(duration::parse)
            .map_or(default, |d| d.as_millis() as u64)
    };
    Ok(ClientConfig {
        name: name.clone(),
        service: spec.service,
        server,
        target,
        every_ms: millis(&spec.every, DEFAULT_EVERY_MS),
        timeout_ms: millis(&spec.timeout, DEFAULT_TIMEOUT_MS),
        path: spec.path.clone(),
        expect: spec.expect.clone(),
        credentials_dir: spec
            .credentials
            .as_ref()
            .map(|_| format!("{CLIENT_CREDENTIALS_DIR}/{name}").into()),
    })
}

/// Why a hybrid peer's index cannot be used, if it cannot.
pub fn index_problem(hr: &HostRole, namespace: &str, world: &World) -> Option<Problem> {
    let index = hr.spec.peer.as_ref()?.index.as_deref()?;
    let field = "spec.peer.index".to_string();
    match world.get(namespace, index) {
        None => Some(Problem {
            message: format!(
                "{field}: no HostRole {namespace}/{index}; create it with spec.servers.index, or remove spec.peer.index for a decentralized network"
            ),
            field,
            reason: "IndexNotFound",
        }),
        Some(target) if target.spec.servers.index.is_none() => Some(Problem {
            message: format!(
                "{field}: HostRole {namespace}/{index} has no spec.servers.index; add it there, or name another index"
            ),
            field,
            reason: "IndexRoleMissing",
        }),
        Some(_) => None,
    }
}

/// The index's base URL for a hybrid peer, when the index exists and serves.
pub fn index_url(hr: &HostRole, namespace: &str, world: &World) -> Option<String> {
    let index = hr.spec.peer.as_ref()?.index.as_deref()?;
    let port = world
        .get(namespace, index)?
        .spec
        .servers
        .index
        .as_ref()?
        .port;
    Some(format!("http://{index}.{namespace}.svc:{port}"))
}
