//! References between HostRoles, resolved without an API server: clients to their servers,
//! peers to their index and network, and the objects and status that follow from them.

use std::sync::Arc;

use hostrole_api::access::ObjectKind;
use hostrole_api::manifest;
use hostrole_api::{HostRole, RoleState};
use hostrole_config::{ClientTarget, MailTarget};
use hostrole_operator::desired::{self, Desired, NETWORK_LABEL, PodIds, Settings};
use hostrole_operator::matrix;
use hostrole_operator::status::{self, CLIENTS_HEALTHY, DEGRADED, Observed};
use hostrole_operator::world::World;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

fn settings(network_policies: bool) -> Settings {
    Settings {
        agent_image: "hostrole/agent:test".into(),
        image_pull_policy: None,
        agent_cluster_role: "hostrole-agent".into(),
        network_policies,
        egress_policies: false,
        api_server_cidrs: Vec::new(),
        image_pull_secrets: Vec::new(),
        pod_ids: PodIds::default(),
    }
}

fn hostrole(ns: &str, yaml: &str) -> HostRole {
    let mut hr = manifest::parse(
        &format!("apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\n{yaml}"),
        "test",
    )
    .expect("valid manifest");
    hr.metadata.namespace = Some(ns.into());
    hr.metadata.uid = Some(format!(
        "uid-{}",
        hr.metadata.name.clone().unwrap_or_default()
    ));
    hr.metadata.generation = Some(1);
    hr
}

fn office() -> HostRole {
    hostrole(
        "lan",
        "metadata: {name: office}\nspec:\n  servers:\n    web: {port: 8080}\n    file: {port: 8081}\n    mail: {smtpPort: 2525, imapPort: 1143, domains: [office.lan]}\n",
    )
}

fn laptop() -> HostRole {
    hostrole(
        "lan",
        "metadata: {name: laptop}\nspec:\n  clients:\n    - {service: web, server: office, path: /status, every: 1m}\n    - {service: mail, server: office, credentials: {secret: laptop-mail}}\n    - {service: file, server: lan/office, timeout: 3s}\n    - {service: web, url: 'http://example.lan/'}\n",
    )
}

/// The HostRoles, and the laptop's credentials Secret labelled for use by its owner.
fn world(hrs: &[&HostRole]) -> World {
    World::new(hrs.iter().map(|h| Arc::new((*h).clone()))).with_usable([(
        ObjectKind::Secret,
        "lan".to_string(),
        "laptop-mail".to_string(),
    )])
}

fn build(hr: &HostRole, world: &World, policies: bool) -> Desired {
    desired::desired(hr, &settings(policies), world).expect("buildable")
}

#[test]
fn clients_resolve_to_the_servers_services_and_ports() {
    let (office, laptop) = (office(), laptop());
    let w = world(&[&office, &laptop]);
    let d = build(&laptop, &w, false);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    let config = desired::plan(&laptop, "lan", &w).expect("renders").config;
    let names: Vec<&str> = config.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web-0", "mail-1", "file-2", "web-3"]);
    assert_eq!(
        config.clients[0].target,
        ClientTarget::Url("http://office.lan.svc:8080/".into())
    );
    assert_eq!(config.clients[0].path.as_deref(), Some("/status"));
    assert_eq!(config.clients[0].every_ms, 60_000);
    assert_eq!(
        config.clients[1].target,
        ClientTarget::Mail(MailTarget {
            host: "office.lan.svc".into(),
            smtp_port: 2525,
            submission_port: Some(2587),
            imap_port: Some(1143),
            pop3_port: Some(1110),
            domain: Some("office.lan".into()),
        })
    );
    assert_eq!(
        config.clients[1].credentials_dir.as_deref(),
        Some(std::path::Path::new("/etc/hostrole/clients/mail-1"))
    );
    assert_eq!(config.clients[2].timeout_ms, 3_000);
    assert_eq!(config.clients[2].server, "lan/office");
    assert_eq!(
        config.clients[3].target,
        ClientTarget::Url("http://example.lan/".into())
    );
    // The credentials Secret is mounted where the configuration says.
    let pod = d.stateful_set.spec.unwrap().template.spec.unwrap();
    let mounts = pod.containers[0].volume_mounts.clone().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m.mount_path == "/etc/hostrole/clients/mail-1" && m.read_only == Some(true))
    );
    // A host with clients reports with its own ServiceAccount, bound in its namespace only.
    assert_eq!(pod.service_account_name.as_deref(), Some("laptop-host"));
    assert_eq!(pod.automount_service_account_token, Some(true));
    let rb = d.role_binding.expect("role binding");
    assert_eq!(rb.role_ref.kind, "ClusterRole");
    assert_eq!(rb.role_ref.name, "hostrole-agent");
    assert_eq!(rb.metadata.namespace.as_deref(), Some("lan"));
    assert!(d.service_account.is_some());
    // A host without clients has no token at all.
    let d = build(&office, &w, false);
    let pod = d.stateful_set.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    assert!(d.service_account.is_none() && d.role_binding.is_none());
}

#[test]
fn a_missing_server_or_role_is_a_problem_naming_the_field() {
    let laptop = laptop();
    let d = build(&laptop, &world(&[&laptop]), false);
    let reasons: Vec<(&str, &str)> = d
        .problems
        .iter()
        .map(|p| (p.field.as_str(), p.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("spec.clients[0].server", "ServerNotFound"),
            ("spec.clients[1].server", "ServerNotFound"),
            ("spec.clients[2].server", "ServerNotFound"),
        ]
    );
    assert!(d.problems[0].message.contains("no HostRole lan/office"));
    // Unresolved clients are left out of the agent's configuration; the URL one stays.
    let config = desired::plan(&laptop, "lan", &world(&[&laptop]))
        .expect("renders")
        .config;
    assert_eq!(config.clients.len(), 1);

    let web_only = hostrole(
        "lan",
        "metadata: {name: office}\nspec:\n  servers:\n    web: {port: 8080}\n",
    );
    let d = build(&laptop, &world(&[&laptop, &web_only]), false);
    let reasons: Vec<&str> = d.problems.iter().map(|p| p.reason.as_str()).collect();
    assert_eq!(reasons, ["RoleMissing", "RoleMissing"]);
    assert!(d.problems[0].message.contains("does not serve mail"));
}

#[test]
fn dependents_are_the_hostroles_that_refer_to_a_changed_one() {
    let (office, laptop) = (office(), laptop());
    let tracker = hostrole(
        "lan",
        "metadata: {name: tracker}\nspec:\n  servers:\n    index: {port: 7000}\n",
    );
    let peer_a = hostrole(
        "lan",
        "metadata: {name: family}\nspec:\n  peer: {network: family, index: tracker}\n",
    );
    let peer_b = hostrole(
        "lan",
        "metadata: {name: cousins}\nspec:\n  peer: {network: family, index: tracker}\n",
    );
    let w = world(&[&office, &laptop, &tracker, &peer_a, &peer_b]);
    let names =
        |hr: &HostRole| -> Vec<String> { w.dependents(hr).into_iter().map(|r| r.name).collect() };
    assert_eq!(names(&office), ["laptop"]);
    assert_eq!(names(&tracker), ["cousins", "family"]);
    assert_eq!(names(&peer_a), ["cousins", "tracker"]);
    // A HostRole that does not exist yet (deleted, or about to be created) still finds them.
    let ghost = hostrole(
        "lan",
        "metadata: {name: office}\nspec:\n  servers:\n    web: {}\n",
    );
    assert_eq!(names(&ghost), ["laptop"]);
    let elsewhere = hostrole(
        "other",
        "metadata: {name: office}\nspec:\n  servers:\n    web: {}\n",
    );
    assert!(names(&elsewhere).is_empty());
}

#[test]
fn mail_hosts_admit_each_other_to_smtp_only_and_a_change_of_one_wakes_the_others() {
    let office = office();
    let branch = hostrole(
        "lan",
        "metadata: {name: branch}\nspec:\n  networkPolicy: true\n  servers:\n    mail: {smtpPort: 2626, domains: [branch.lan]}\n",
    );
    let elsewhere = hostrole(
        "other",
        "metadata: {name: shop}\nspec:\n  servers:\n    mail: {domains: [shop.example]}\n",
    );
    let web_only = hostrole(
        "lan",
        "metadata: {name: site}\nspec:\n  servers:\n    web: {}\n",
    );
    let w = world(&[&office, &branch, &elsewhere, &web_only]);
    let admitted = |port: i32| -> Vec<String> {
        admitted_to(&branch, &w, port)
            .into_iter()
            .map(|(_, name)| name)
            .collect()
    };
    // The office delivers its users' mail for branch.lan to branch's SMTP port; the other
    // namespace's mail host has no route to it, and no one declared a mail client.
    assert_eq!(admitted(2626), ["office"]);
    assert!(admitted(2587).is_empty(), "submission stays closed");
    let names =
        |hr: &HostRole| -> Vec<String> { w.dependents(hr).into_iter().map(|r| r.name).collect() };
    // The mail hosts of its namespace (the shop routes nothing to branch).
    assert_eq!(names(&branch), ["office"]);
    assert!(names(&web_only).is_empty());

    // A cross-host probe that reads back on branch is one of branch's mail clients: admitted to
    // its IMAP port, and woken when branch changes.
    let prober = hostrole(
        "lan",
        "metadata: {name: prober}\nspec:\n  clients:\n    - {service: mail, server: office, credentials: {secret: laptop-mail}, to: {server: branch, credentials: {secret: laptop-mail}}}\n",
    );
    let w = world(&[&office, &branch, &prober]);
    let imap: Vec<String> = admitted_to(&branch, &w, 1143)
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    assert_eq!(imap, ["prober"]);
    let woken: Vec<String> = w.dependents(&branch).into_iter().map(|r| r.name).collect();
    assert!(woken.contains(&"prober".to_string()), "{woken:?}");
}

#[test]
fn peers_of_a_network_share_a_secret_and_a_headless_service() {
    let tracker = hostrole(
        "lan",
        "metadata: {name: tracker}\nspec:\n  servers:\n    index: {port: 7000, ttl: 30s}\n",
    );
    let family = hostrole(
        "lan",
        "metadata: {name: family}\nspec:\n  replicas: 3\n  peer: {network: family, index: tracker, share: {storage: 2Gi}, limits: {uploadBytesPerSecond: 512Ki, downloadBytesPerSecond: 10M, uploadSlots: 4}}\n",
    );
    let cousins = hostrole(
        "lan",
        "metadata: {name: cousins}\nspec:\n  peer: {network: family, index: tracker}\n",
    );
    let w = world(&[&tracker, &family, &cousins]);
    let d = build(&family, &w, false);
    assert!(d.problems.is_empty());
    let network = d.network.expect("network objects");
    assert_eq!(network.secret_name, "peers-family");
    let owners: Vec<&str> = network.owners.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(owners, ["cousins", "family"]);
    assert!(network.owners.iter().all(|o| o.controller.is_none()));
    // Both members compute the same Service, so neither undoes the other's apply.
    assert_eq!(
        build(&cousins, &w, false).network.unwrap().service,
        network.service
    );
    let spec = network.service.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.selector.unwrap()[NETWORK_LABEL], "family");

    let config = desired::plan(&family, "lan", &w).expect("renders").config;
    let peer = config.peer.expect("peer config");
    assert_eq!(
        peer.index_url.as_deref(),
        Some("http://tracker.lan.svc:7000")
    );
    assert_eq!(peer.discovery_dns, None);
    assert_eq!(peer.heartbeat_seconds, 10);
    assert_eq!(peer.quota_bytes, Some(2 << 30));
    assert_eq!(peer.upload_bytes_per_second, Some(512 << 10));
    assert_eq!(peer.download_bytes_per_second, Some(10_000_000));
    assert_eq!(peer.upload_slots, Some(4));
    assert_eq!(peer.ui_bind, Some(std::net::Ipv4Addr::LOCALHOST.into()));
    let sts = d.stateful_set.spec.unwrap();
    let labels = sts.template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels[NETWORK_LABEL], "family");
    let claims: Vec<String> = sts
        .volume_claim_templates
        .unwrap()
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(claims, ["share-data"]);

    // The index mounts the secret of every network that uses it, optional until it exists.
    let config = desired::plan(&tracker, "lan", &w).expect("renders").config;
    assert_eq!(config.index.expect("index").ttl_seconds, 30);
    let pod = build(&tracker, &w, false)
        .stateful_set
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    let networks = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "networks")
        .and_then(|v| v.projected)
        .expect("projected networks volume");
    let sources = networks.sources.unwrap();
    assert_eq!(sources.len(), 1);
    let secret = sources[0].secret.clone().unwrap();
    assert_eq!(secret.name, "peers-family");
    assert_eq!(secret.optional, Some(true));
    assert_eq!(secret.items.unwrap()[0].path, "family");

    // Decentralized: the network's Service name is the discovery name.
    let friends = hostrole(
        "lan",
        "metadata: {name: friends}\nspec:\n  peer: {network: friends, mirror: true}\n",
    );
    let config = desired::plan(&friends, "lan", &world(&[&friends]))
        .expect("renders")
        .config;
    let peer = config.peer.unwrap();
    assert_eq!(peer.discovery_dns.as_deref(), Some("peers-friends.lan.svc"));
    assert_eq!(peer.index_url, None);
    assert!(peer.mirror);
}

#[test]
fn a_peer_whose_index_is_missing_or_serves_no_index_is_a_problem() {
    let family = hostrole(
        "lan",
        "metadata: {name: family}\nspec:\n  peer: {network: family, index: tracker}\n",
    );
    let d = build(&family, &world(&[&family]), false);
    assert_eq!(d.problems.len(), 1);
    assert_eq!(d.problems[0].reason.as_str(), "IndexNotFound");
    assert_eq!(d.problems[0].field, "spec.peer.index");
    let not_an_index = hostrole(
        "lan",
        "metadata: {name: tracker}\nspec:\n  servers:\n    web: {}\n",
    );
    let d = build(&family, &world(&[&family, &not_an_index]), false);
    assert_eq!(d.problems[0].reason.as_str(), "IndexRoleMissing");
    assert!(d.problems[0].message.contains("has no spec.servers.index"));
}

#[test]
fn network_policies_admit_only_declared_clients_and_peers() {
    let (office, laptop) = (office(), laptop());
    let w = world(&[&office, &laptop]);
    assert!(build(&office, &w, false).network_policy.is_none());
    let policy = build(&office, &w, true).network_policy.expect("policy");
    let spec = policy.spec.unwrap();
    assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
    let rules = spec.ingress.unwrap();
    let ports = |i: usize| -> Vec<String> {
        rules[i]
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.port.as_ref().map(|p| format!("{p:?}")))
            .collect()
    };
    // Admin (probes, metrics) from anywhere, then web, file, mail (submission, IMAP, POP3) and
    // SMTP from the laptop only.
    assert_eq!(rules.len(), 5);
    assert!(rules[0].from.is_none());
    assert_eq!(ports(1), ["Int(8080)"]);
    assert_eq!(ports(3).len(), 3);
    assert_eq!(ports(4), ["Int(2525)"]);
    for rule in &rules[1..] {
        let from = rule.from.clone().unwrap();
        assert_eq!(from.len(), 1);
        let pods = from[0].pod_selector.clone().unwrap().match_labels.unwrap();
        assert_eq!(pods["app.kubernetes.io/instance"], "laptop");
        let ns = from[0]
            .namespace_selector
            .clone()
            .unwrap()
            .match_labels
            .unwrap();
        assert_eq!(ns["kubernetes.io/metadata.name"], "lan");
    }
    // With no client declared for it, a server port is closed, never open to all.
    let lonely = hostrole(
        "lan",
        "metadata: {name: office}\nspec:\n  networkPolicy: true\n  servers:\n    web: {}\n",
    );
    let rules = build(&lonely, &world(&[&lonely]), false)
        .network_policy
        .unwrap()
        .spec
        .unwrap()
        .ingress
        .unwrap();
    assert_eq!(rules.len(), 1, "only the admin port");
    // Peers admit their network on the peer port.
    let peer = hostrole(
        "lan",
        "metadata: {name: friends}\nspec:\n  networkPolicy: true\n  peer: {network: friends}\n",
    );
    let rules = build(&peer, &world(&[&peer]), false)
        .network_policy
        .unwrap()
        .spec
        .unwrap()
        .ingress
        .unwrap();
    let from = rules[1].from.clone().unwrap();
    assert_eq!(
        from[0].pod_selector.clone().unwrap().match_labels.unwrap()[NETWORK_LABEL],
        "friends"
    );
}

fn pod_with(name: &str, conditions: Vec<PodCondition>) -> Pod {
    let mut all = vec![PodCondition {
        type_: "Ready".into(),
        status: "True".into(),
        ..Default::default()
    }];
    all.extend(conditions);
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        status: Some(PodStatus {
            conditions: Some(all),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn client_condition(name: &str, ok: bool, reason: &str, message: &str) -> PodCondition {
    PodCondition {
        type_: format!("clients.hostrole.dev/{name}"),
        status: if ok { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        ..Default::default()
    }
}

#[test]
fn client_results_come_from_the_agents_pod_conditions() {
    let (office, laptop) = (office(), laptop());
    let w = world(&[&office, &laptop]);
    let d = build(&laptop, &w, false);
    let now = Time(Timestamp::from_second(1_800_000_000).unwrap());
    let pods = vec![pod_with(
        "laptop-0",
        vec![
            client_condition(
                "web-0",
                true,
                "Succeeded",
                "latencyMs=4; lastSuccess=2026-11-25T03:00:00Z; GET → 200",
            ),
            client_condition(
                "mail-1",
                false,
                "AuthFailed",
                "latencyMs=12; lastSuccess=-; IMAP LOGIN refused",
            ),
            client_condition(
                "file-2",
                true,
                "Succeeded",
                "latencyMs=30; lastSuccess=2026-11-25T03:00:01Z; round trip ok",
            ),
        ],
    )];
    let observed = Observed {
        stateful_set: None,
        pods: &pods,
        failure: None,
        problems: &d.problems,
        network_pods: &[],
    };
    let s = status::status(&laptop, &observed, &now);
    let host = &s.hosts[0];
    assert_eq!(host.roles.len(), 0);
    let c = &host.clients;
    assert_eq!(c.len(), 4);
    assert!(c[0].ok);
    assert_eq!(c[0].latency_ms, Some(4));
    assert_eq!(c[0].last_success.as_deref(), Some("2026-11-25T03:00:00Z"));
    assert!(!c[1].ok);
    assert_eq!(c[1].reason, "AuthFailed");
    assert_eq!(c[1].last_error, "IMAP LOGIN refused");
    assert_eq!(c[3].reason, "Pending", "no report yet for the URL client");
    assert_eq!(s.clients, "2/4");
    let healthy = s
        .conditions
        .iter()
        .find(|c| c.type_ == CLIENTS_HEALTHY)
        .unwrap();
    assert_eq!(healthy.status, "False");
    assert_eq!(healthy.reason, "ClientsFailing");
    assert!(
        healthy
            .message
            .contains("laptop-0: mail → office: AuthFailed"),
        "{}",
        healthy.message
    );

    let table = matrix::render(&[{
        let mut hr = laptop.clone();
        hr.status = Some(s.clone());
        hr
    }]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("CLIENT HOST"));
    assert!(
        lines[1].contains("lan/laptop-0")
            && lines[1].contains("lan/office")
            && lines[1].contains("ok")
            && lines[1].contains("4ms"),
        "{table}"
    );
    assert!(
        lines[2].contains("AuthFailed") && lines[2].contains("IMAP LOGIN refused"),
        "{table}"
    );

    // An unresolved server: Degraded with its reason, and the client says so.
    let alone = world(&[&laptop]);
    let d = build(&laptop, &alone, false);
    let observed = Observed {
        stateful_set: None,
        pods: &pods,
        failure: None,
        problems: &d.problems,
        network_pods: &[],
    };
    let s = status::status(&laptop, &observed, &now);
    let degraded = s.conditions.iter().find(|c| c.type_ == DEGRADED).unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ServerNotFound")
    );
    let healthy = s
        .conditions
        .iter()
        .find(|c| c.type_ == CLIENTS_HEALTHY)
        .unwrap();
    assert_eq!(healthy.reason, "ServerNotFound");
    assert_eq!(s.hosts[0].clients[0].reason, "ServerNotFound");
    assert!(!s.hosts[0].clients[0].ok);
    let _ = RoleState::Serving;
}

#[test]
fn all_clients_ok_is_healthy_and_hosts_without_clients_say_nothing() {
    let office = office();
    let web_client = hostrole(
        "lan",
        "metadata: {name: kiosk}\nspec:\n  clients:\n    - {service: web, server: office}\n",
    );
    let w = world(&[&office, &web_client]);
    let d = build(&web_client, &w, false);
    let pods = vec![pod_with(
        "kiosk-0",
        vec![client_condition(
            "web-0",
            true,
            "Succeeded",
            "latencyMs=2; lastSuccess=2026-11-25T03:00:00Z; ok",
        )],
    )];
    let now = Time(Timestamp::from_second(1_800_000_000).unwrap());
    let observed = Observed {
        stateful_set: None,
        pods: &pods,
        failure: None,
        problems: &d.problems,
        network_pods: &[],
    };
    let s = status::status(&web_client, &observed, &now);
    let healthy = s
        .conditions
        .iter()
        .find(|c| c.type_ == CLIENTS_HEALTHY)
        .unwrap();
    assert_eq!(
        (healthy.status.as_str(), healthy.reason.as_str()),
        ("True", "AllClientsHealthy")
    );
    assert_eq!(s.clients, "1/1");
    let s = status::status(&office, &Observed::default(), &now);
    assert!(s.conditions.iter().all(|c| c.type_ != CLIENTS_HEALTHY));
    assert_eq!(s.clients, "");
}

/// A HostRole in namespace `guests` that uses every service of `lan/office`.
fn guest() -> HostRole {
    hostrole(
        "guests",
        "metadata: {name: visitor}\nspec:\n  clients:\n    - {service: web, server: lan/office}\n    - {service: mail, server: lan/office}\n",
    )
}

fn office_allowing(allow: &str) -> HostRole {
    let mut office = office();
    let with: HostRole = hostrole(
        "lan",
        &format!(
            "metadata: {{name: office}}\nspec:\n  servers:\n    web: {{}}\n  allowClientsFrom: {allow}\n"
        ),
    );
    office.spec.allow_clients_from = with.spec.allow_clients_from;
    office
}

/// Who the server's NetworkPolicy admits to `port`: (namespace, HostRole).
fn admitted_to(server: &HostRole, w: &World, port: i32) -> Vec<(String, String)> {
    let policy = build(server, w, true).network_policy.expect("policy");
    let rules = policy.spec.unwrap().ingress.unwrap();
    rules
        .iter()
        .filter(|r| {
            r.ports
                .iter()
                .flatten()
                .any(|p| p.port == Some(IntOrString::Int(port)))
        })
        .flat_map(|r| r.from.clone().unwrap_or_default())
        .map(|peer| {
            let ns = peer.namespace_selector.unwrap().match_labels.unwrap()
                ["kubernetes.io/metadata.name"]
                .clone();
            let name =
                peer.pod_selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"]
                    .clone();
            (ns, name)
        })
        .collect()
}

/// Who the office's NetworkPolicy admits to its web port.
fn admitted_to_web(office: &HostRole, w: &World) -> Vec<(String, String)> {
    admitted_to(office, w, 8080)
}

#[test]
fn a_client_in_another_namespace_gets_no_rule_and_learns_nothing_without_consent() {
    let (office, guest) = (office(), guest());
    let w = world(&[&office, &guest]);
    // The server admits no one from there…
    assert!(admitted_to_web(&office, &w).is_empty());
    // …and the client's objects hold nothing of the server.
    let d = build(&guest, &w, false);
    let reasons: Vec<&str> = d.problems.iter().map(|p| p.reason.as_str()).collect();
    assert_eq!(reasons, ["Forbidden", "Forbidden"]);
    let data = serde_json::to_string(&d.config_map.data).expect("json");
    for secret in ["office.lan.svc", "8080", "2525", "office.lan\"", "domain"] {
        assert!(!data.contains(secret), "{secret} in {data}");
    }
    // The same answer as for a server that does not exist.
    let alone = build(&guest, &world(&[&guest]), false);
    assert_eq!(d.problems, alone.problems);
    assert_eq!(d.config_map.data, alone.config_map.data);
}

#[test]
fn a_client_in_another_namespace_gets_a_rule_once_the_server_consents() {
    let guest = guest();
    let by_name = office_allowing("{namespaces: [guests]}");
    let w = world(&[&by_name, &guest]);
    assert_eq!(
        admitted_to_web(&by_name, &w),
        [("guests".to_string(), "visitor".to_string())]
    );
    let d = build(&guest, &w, false);
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    let config = desired::plan(&guest, "guests", &w).expect("renders").config;
    assert_eq!(
        config.clients[0].target,
        ClientTarget::Url("http://office.lan.svc:8080/".into())
    );

    // By labels: only when the namespace's labels are known and match, the same for the rule
    // and for the client's resolution (one rule decides both).
    let by_label = office_allowing("{namespaceSelector: {matchLabels: {team: visitors}}}");
    let labelled = |labels: &[(&str, &str)]| {
        world(&[&by_label, &guest]).with_namespaces([(
            "guests".to_string(),
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )])
    };
    for (w, admitted) in [
        (labelled(&[("team", "visitors")]), true),
        (labelled(&[("team", "others")]), false),
        (world(&[&by_label, &guest]), false),
    ] {
        assert_eq!(!admitted_to_web(&by_label, &w).is_empty(), admitted);
        assert_eq!(build(&guest, &w, false).problems.is_empty(), admitted);
    }
}

#[test]
fn consent_changes_wake_the_clients_and_client_changes_wake_consenting_servers() {
    let guest = guest();
    let office = office();
    let w = world(&[&office, &guest]);
    let names = |w: &World, hr: &HostRole| -> Vec<(String, String)> {
        w.dependents(hr)
            .into_iter()
            .map(|r| (r.namespace.unwrap_or_default(), r.name))
            .collect()
    };
    // The server changes (e.g. gains allowClientsFrom): the client in the other namespace is
    // reconciled, whether the server consented before or not.
    let consenting = office_allowing("{namespaces: [guests]}");
    assert!(names(&w, &consenting).contains(&("guests".into(), "visitor".into())));
    // The client changes: a server that does not consent is not woken by it…
    assert!(!names(&w, &guest).contains(&("lan".into(), "office".into())));
    // …one that does is (its NetworkPolicy admits the client).
    let w = world(&[&consenting, &guest]);
    assert!(names(&w, &guest).contains(&("lan".into(), "office".into())));
    // A namespace's labels change: its clients of other namespaces, and those servers.
    let affected: Vec<(String, String)> = w
        .affected_by_namespace("guests")
        .into_iter()
        .map(|r| (r.namespace.unwrap_or_default(), r.name))
        .collect();
    assert_eq!(
        affected,
        [
            ("guests".to_string(), "visitor".to_string()),
            ("lan".to_string(), "office".to_string())
        ]
    );
    assert!(w.affected_by_namespace("lan").is_empty());
}

/// The egress rules of `hr` as `(ports, destination)` lines: `anywhere`, `pods:<instance>@<ns>`,
/// `network:<name>` or `cidr:<block>`.
fn egress(hr: &HostRole, w: &World, settings: &Settings) -> Vec<(Vec<String>, String)> {
    let policy = desired::desired(hr, settings, w)
        .expect("buildable")
        .network_policy
        .expect("a policy");
    let spec = policy.spec.expect("spec");
    assert!(
        spec.policy_types.iter().flatten().any(|t| t == "Egress"),
        "{:?}",
        spec.policy_types
    );
    spec.egress
        .expect("egress rules")
        .into_iter()
        .map(|rule| {
            let ports = rule
                .ports
                .iter()
                .flatten()
                .map(|p| {
                    let port = match &p.port {
                        Some(IntOrString::Int(n)) => n.to_string(),
                        other => format!("{other:?}"),
                    };
                    format!("{}/{port}", p.protocol.as_deref().unwrap_or("TCP"))
                })
                .collect();
            let to = match rule.to.as_deref() {
                None => "anywhere".to_string(),
                Some(peers) => peers
                    .iter()
                    .map(|p| {
                        if let Some(block) = &p.ip_block {
                            return format!("cidr:{}", block.cidr);
                        }
                        let labels = p
                            .pod_selector
                            .clone()
                            .and_then(|s| s.match_labels)
                            .unwrap_or_default();
                        if let Some(network) = labels.get("hostrole.dev/network") {
                            return format!("network:{network}");
                        }
                        let ns = p
                            .namespace_selector
                            .clone()
                            .and_then(|s| s.match_labels)
                            .and_then(|l| l.get("kubernetes.io/metadata.name").cloned())
                            .unwrap_or_default();
                        format!(
                            "pods:{}@{ns}",
                            labels
                                .get("app.kubernetes.io/instance")
                                .cloned()
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            };
            (ports, to)
        })
        .collect()
}

fn line(ports: &[&str], to: &str) -> (Vec<String>, String) {
    (ports.iter().map(|p| p.to_string()).collect(), to.into())
}

// Issue 19: egress. A host reaches DNS and what it declares; nothing else is listed.
#[test]
fn egress_rules_list_dns_and_what_the_host_declares_and_nothing_else() {
    let office = office();
    let mut laptop = laptop();
    laptop.spec.egress_policy = true;
    let w = world(&[&office, &laptop]);
    let dns = line(&["UDP/53", "TCP/53"], "anywhere");
    assert_eq!(
        egress(&laptop, &w, &settings(false)),
        [
            dns.clone(),
            // The office's server ports: POP3, IMAP, SMTP, submission, web, file.
            line(
                &[
                    "TCP/1110", "TCP/1143", "TCP/2525", "TCP/2587", "TCP/8080", "TCP/8081"
                ],
                "pods:office@lan"
            ),
            // http://example.lan/ is outside the operator's care: its port, anywhere.
            line(&["TCP/80"], "anywhere"),
            // The agent reports its clients on its own pod.
            line(&["TCP/443", "TCP/6443"], "anywhere"),
        ]
    );
    // The API server's addresses, when the operator is told them.
    let narrow = Settings {
        api_server_cidrs: vec!["172.18.0.2/32".into()],
        ..settings(false)
    };
    assert_eq!(
        egress(&laptop, &w, &narrow).last().cloned(),
        Some(line(&[], "cidr:172.18.0.2/32"))
    );
    // A server that does not consent (another namespace, no allowClientsFrom) gets no rule.
    let elsewhere = hostrole(
        "home",
        "metadata: {name: roamer}\nspec:\n  egressPolicy: true\n  clients:\n    - {service: web, server: lan/office}\n",
    );
    let w2 = world(&[&office, &elsewhere]);
    assert_eq!(
        egress(&elsewhere, &w2, &settings(false)),
        [dns.clone(), line(&["TCP/443", "TCP/6443"], "anywhere")]
    );

    // A peer: its network's peers on every member's peer port, and its index.
    let tracker = hostrole(
        "lan",
        "metadata: {name: tracker}\nspec:\n  servers:\n    index: {port: 7000}\n",
    );
    let a = hostrole(
        "lan",
        "metadata: {name: a}\nspec:\n  egressPolicy: true\n  peer: {network: family, index: tracker}\n",
    );
    let b = hostrole(
        "lan",
        "metadata: {name: b}\nspec:\n  peer: {network: family, index: tracker, port: 7101}\n",
    );
    let w3 = world(&[&tracker, &a, &b]);
    assert_eq!(
        egress(&a, &w3, &settings(false)),
        [
            dns.clone(),
            line(&["TCP/7001", "TCP/7101"], "network:family"),
            line(&["TCP/7000"], "pods:tracker@lan"),
        ]
    );
    // The operator's flag gives every HostRole egress rules; a host with no server and no
    // client reaches DNS only.
    let everyone = Settings {
        egress_policies: true,
        ..settings(false)
    };
    assert_eq!(egress(&tracker, &w3, &everyone), std::slice::from_ref(&dns));

    // A mail host: the other mail hosts of its namespace on SMTP, and with outbound the relay.
    let other_mail = hostrole(
        "lan",
        "metadata: {name: branch}\nspec:\n  servers:\n    mail: {smtpPort: 2626, domains: [branch.lan]}\n",
    );
    let sender = hostrole(
        "lan",
        "metadata: {name: hq}\nspec:\n  egressPolicy: true\n  servers:\n    mail:\n      domains: [hq.lan]\n      outbound: {relay: {host: smtp.example.net, tls: TLS}}\n",
    );
    let w4 = world(&[&other_mail, &sender]);
    assert_eq!(
        egress(&sender, &w4, &settings(false)),
        [
            dns,
            line(&["TCP/2626"], "pods:branch@lan"),
            line(&["TCP/465"], "anywhere"),
        ]
    );
}

#[test]
fn without_egress_the_policy_stays_ingress_only_and_egress_alone_needs_no_server() {
    let office = office();
    let laptop = laptop();
    let w = world(&[&office, &laptop]);
    let spec = build(&office, &w, true)
        .network_policy
        .expect("policy")
        .spec
        .expect("spec");
    assert_eq!(spec.policy_types.expect("types"), ["Ingress"]);
    assert!(spec.egress.is_none());
    // The laptop serves nothing: no ingress rules, but egress ones.
    let mut laptop = laptop;
    laptop.spec.egress_policy = true;
    let spec = build(&laptop, &w, true)
        .network_policy
        .expect("policy")
        .spec
        .expect("spec");
    assert_eq!(spec.policy_types.expect("types"), ["Egress"]);
    assert!(spec.ingress.is_none());
}
