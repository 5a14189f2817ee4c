//! What the topology view shows of the hosts `hostrole-agent up` runs: each HostRole with a
//! status made from its agent's live state (which roles listen, the clients' latest results,
//! where the roles are reached), in the shape the operator writes from pods, so the one view
//! ([`hostrole_view`]) draws a machine as it draws a cluster. Pure.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use hostrole_api::{
    ClientStatus, Endpoint, HostRole, HostRoleStatus, HostStatus, NetworkPeer, NetworkStatus,
    RoleState,
};
use hostrole_clients::ClientResult;

/// The namespace a manifest's HostRole shows in when it names none (as `kubectl apply` would
/// put it).
pub const DEFAULT_NAMESPACE: &str = "default";

/// An agent's state now; `None` in [`hostroles`] while it has not bound its listeners yet.
#[derive(Debug, Clone, Default)]
pub struct HostNow {
    /// Each role the agent declared and whether it listens.
    pub roles: BTreeMap<String, bool>,
    pub stopping: bool,
    pub clients: Vec<ClientResult>,
    /// Its listeners, labelled as `up` prints them (`web`, `imaps`, `peer-ui`…).
    pub listeners: Vec<(&'static str, SocketAddr)>,
}

impl HostNow {
    fn ready(&self) -> bool {
        !self.stopping && !self.roles.is_empty() && self.roles.values().all(|r| *r)
    }
}

/// Each HostRole with its status: one host per HostRole (standalone runs no replicas), named
/// after it, in its namespace or [`DEFAULT_NAMESPACE`].
pub fn hostroles(hosts: &[(&HostRole, Option<&HostNow>)]) -> Vec<HostRole> {
    let peers: Vec<(String, &str, bool)> = hosts
        .iter()
        .filter_map(|(hr, now)| {
            let network = hr.spec.peer.as_ref()?.network.clone();
            Some((network, name_of(hr), now.is_some_and(|n| n.ready())))
        })
        .collect();
    hosts
        .iter()
        .map(|(hr, now)| {
            let mut hr = (*hr).clone();
            if hr.metadata.namespace.is_none() {
                hr.metadata.namespace = Some(DEFAULT_NAMESPACE.into());
            }
            hr.spec.replicas = 1;
            hr.status = Some(status(&hr, *now, &peers));
            hr
        })
        .collect()
}

fn name_of(hr: &HostRole) -> &str {
    hr.metadata.name.as_deref().unwrap_or("host")
}

/// The status of `hr`'s one host from its agent's state; `peers`: (network, host, ready) of
/// every peer run alongside.
fn status(hr: &HostRole, now: Option<&HostNow>, peers: &[(String, &str, bool)]) -> HostRoleStatus {
    let name = name_of(hr).to_string();
    let ready = now.is_some_and(HostNow::ready);
    let roles: BTreeMap<String, RoleState> = hr
        .spec
        .server_roles()
        .into_iter()
        .map(|role| {
            let listens = now.and_then(|n| n.roles.get(role)).copied();
            let state = match (now, listens) {
                (Some(n), Some(true)) if !n.stopping => RoleState::Serving,
                _ => RoleState::Starting,
            };
            (role.to_string(), state)
        })
        .collect();
    let message = match now {
        None => Some("starting: binding its listeners".to_string()),
        Some(n) if n.stopping => Some("stopping".to_string()),
        Some(n) if !ready => {
            let waiting: Vec<&str> = n
                .roles
                .iter()
                .filter(|(_, up)| !**up)
                .map(|(r, _)| r.as_str())
                .collect();
            Some(format!("not listening yet: {}", waiting.join(", ")))
        }
        Some(_) => None,
    };
    let host = HostStatus {
        name: name.clone(),
        ready,
        roles,
        clients: clients(hr, now.map_or(&[], |n| n.clients.as_slice())),
        reason: message.as_ref().map(|_| "Starting".to_string()),
        message,
    };
    HostRoleStatus {
        replicas: 1,
        ready_hosts: i32::from(ready),
        roles: hr.spec.all_roles().join(","),
        hosts: vec![host],
        network: hr.spec.peer.as_ref().map(|peer| NetworkStatus {
            // No Service on a machine: peers find each other at their loopback ports.
            service: String::new(),
            ..NetworkStatus::of(
                peer,
                peers
                    .iter()
                    .filter(|(network, _, _)| *network == peer.network)
                    .map(|(_, host, ready)| NetworkPeer {
                        name: host.to_string(),
                        host_role: host.to_string(),
                        ready: *ready,
                    })
                    .collect(),
            )
        }),
        endpoints: now.map_or_else(Vec::new, |n| {
            n.listeners
                .iter()
                .map(|(label, addr)| Endpoint {
                    role: role_of_listener(label).to_string(),
                    url: crate::standalone::url(label, addr),
                    scope: "External".into(),
                })
                .collect()
        }),
        ..Default::default()
    }
}

/// The role a listener label belongs to (`imaps` → `mail`, `peer-ui` → `peer`).
fn role_of_listener(label: &str) -> &str {
    let base = label.trim_end_matches("+tls");
    match base {
        "smtp" | "submission" | "submissions" | "imap" | "imaps" | "pop3" | "pop3s" => "mail",
        "irc" | "ircs" => "chat",
        "ipp" | "ipps" => "print",
        "web-redirect" => "web",
        "peer-ui" => "peer",
        other => other,
    }
}

/// Each declared client's latest result, in the order of `spec.clients`.
fn clients(hr: &HostRole, results: &[ClientResult]) -> Vec<ClientStatus> {
    hr.spec
        .clients
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let pending = ClientStatus::pending(spec);
            let name = spec.service.client_name(i);
            match results.iter().find(|r| r.name == name) {
                None => pending,
                Some(r) => ClientStatus {
                    ok: r.ok,
                    reason: r.reason.as_str().to_string(),
                    latency_ms: r.latency_ms.and_then(|l| i64::try_from(l).ok()),
                    last_error: if r.ok {
                        String::new()
                    } else {
                        r.message.clone()
                    },
                    last_success: r
                        .last_success
                        .map(|t| hostrole_clients::seconds(t).to_string()),
                    ..pending
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostrole_clients::Reason;
    use hostrole_config::ClientService;

    fn hostrole(text: &str) -> HostRole {
        serde_yaml::from_str(text).expect("hostrole")
    }

    fn result(name: &str, service: ClientService, ok: bool, message: &str) -> ClientResult {
        ClientResult {
            name: name.into(),
            service,
            server: "http://127.0.0.1:8080/".into(),
            ok,
            reason: if ok {
                Reason::Ok
            } else {
                Reason::UnexpectedStatus
            },
            message: message.into(),
            latency_ms: Some(12),
            timings_ms: BTreeMap::new(),
            last_success: None,
            last_run: None,
        }
    }

    const OFFICE: &str = "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: office}\nspec:\n  servers: {web: {}, print: {}}\n";
    const LAPTOP: &str = "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: laptop, namespace: home}\nspec:\n  clients:\n    - {service: web, server: office}\n    - {service: print, url: 'ipp://127.0.0.1:8631/ipp/print'}\n    - {service: chat, server: office}\n";

    #[test]
    fn roles_listen_one_by_one_and_the_host_is_ready_when_all_do() {
        let office = hostrole(OFFICE);
        let starting = hostroles(&[(&office, None)]);
        let status = starting[0].status.as_ref().expect("status");
        assert_eq!(starting[0].metadata.namespace.as_deref(), Some("default"));
        assert_eq!(status.hosts[0].name, "office");
        assert!(!status.hosts[0].ready);
        assert_eq!(status.hosts[0].roles["web"], RoleState::Starting);

        let mut now = HostNow {
            roles: [("web".to_string(), true), ("print".to_string(), false)].into(),
            listeners: vec![
                ("web", "127.0.0.1:8080".parse().expect("addr")),
                ("ipp", "127.0.0.1:8631".parse().expect("addr")),
            ],
            ..HostNow::default()
        };
        let half = hostroles(&[(&office, Some(&now))]);
        let status = half[0].status.as_ref().expect("status");
        assert_eq!(status.hosts[0].roles["web"], RoleState::Serving);
        assert_eq!(status.hosts[0].roles["print"], RoleState::Starting);
        assert_eq!(
            status.hosts[0].message.as_deref(),
            Some("not listening yet: print")
        );
        assert_eq!(status.ready_hosts, 0);

        now.roles.insert("print".into(), true);
        let up = hostroles(&[(&office, Some(&now))]);
        let status = up[0].status.as_ref().expect("status");
        assert!(status.hosts[0].ready && status.hosts[0].message.is_none());
        assert_eq!(status.ready_hosts, 1);
        let urls: Vec<(&str, &str)> = status
            .endpoints
            .iter()
            .map(|e| (e.role.as_str(), e.url.as_str()))
            .collect();
        assert_eq!(
            urls,
            [
                ("web", "http://127.0.0.1:8080/"),
                ("print", "ipp://127.0.0.1:8631/ipp/print")
            ]
        );

        now.stopping = true;
        let stopping = hostroles(&[(&office, Some(&now))]);
        let host = &stopping[0].status.as_ref().expect("status").hosts[0];
        assert!(!host.ready && host.roles["web"] == RoleState::Starting);
    }

    #[test]
    fn client_results_become_the_status_the_view_draws_edges_from() {
        let laptop = hostrole(LAPTOP);
        let now = HostNow {
            roles: [("client".to_string(), true)].into(),
            clients: vec![
                result("web-0", ClientService::Web, true, "200 OK"),
                result(
                    "print-1",
                    ClientService::Print,
                    false,
                    "the printer said busy",
                ),
            ],
            ..HostNow::default()
        };
        let list = hostroles(&[(&laptop, Some(&now))]);
        assert_eq!(list[0].metadata.namespace.as_deref(), Some("home"));
        let clients = &list[0].status.as_ref().expect("status").hosts[0].clients;
        assert_eq!(clients.len(), 3);
        assert_eq!(
            (clients[0].service.as_str(), clients[0].server.as_str()),
            ("web", "office")
        );
        assert!(clients[0].ok && clients[0].last_error.is_empty());
        assert_eq!(clients[0].latency_ms, Some(12));
        assert_eq!(clients[1].server, "ipp://127.0.0.1:8631/ipp/print");
        assert!(!clients[1].ok);
        assert_eq!(clients[1].reason, "UnexpectedStatus");
        assert_eq!(clients[1].last_error, "the printer said busy");
        // A client with no result yet.
        assert_eq!(clients[2].reason, "Pending");
    }

    #[test]
    fn peers_of_one_network_list_each_other_with_their_readiness() {
        let family = hostrole(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: family}\nspec:\n  peer: {network: family, index: tracker}\n",
        );
        let study = hostrole(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: study}\nspec:\n  replicas: 3\n  peer: {network: family, index: tracker}\n",
        );
        let other = hostrole(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: ann}\nspec:\n  peer: {network: friends}\n",
        );
        let ready = HostNow {
            roles: [("peer".to_string(), true)].into(),
            ..HostNow::default()
        };
        let list = hostroles(&[(&family, Some(&ready)), (&study, None), (&other, None)]);
        let net = list[1]
            .status
            .as_ref()
            .and_then(|s| s.network.clone())
            .expect("network");
        assert_eq!((net.name.as_str(), net.mode.as_str()), ("family", "Hybrid"));
        assert_eq!(net.index.as_deref(), Some("tracker"));
        let peers: Vec<(&str, bool)> = net
            .peers
            .iter()
            .map(|p| (p.name.as_str(), p.ready))
            .collect();
        assert_eq!(peers, [("family", true), ("study", false)]);
        // One host per HostRole on a machine.
        assert_eq!(list[1].spec.replicas, 1);
        let friends = list[2]
            .status
            .as_ref()
            .and_then(|s| s.network.clone())
            .expect("network");
        assert_eq!(friends.mode, "Decentralized");
        assert_eq!(friends.peers.len(), 1);
    }
}
