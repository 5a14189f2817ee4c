//! References between HostRoles on a real API server: client targets resolved to Services,
//! a missing server or index reported and recovered by watch alone, peer networks' shared
//! Secret and Service owned by every member and collected with the last one, NetworkPolicies
//! following the declared clients; a server of another namespace only with its consent
//! (`allowClientsFrom`), Secrets and ConfigMaps only with their owner's label.
//!
//! Every test runs its own operator. Most watch their own namespace only; the cross-namespace
//! test needs one that watches every namespace, which would also act on the other tests'
//! HostRoles (with other flags): it runs alone ([`EXCLUSIVE`]).

use std::path::Path;
use std::time::Duration;

use hostrole_api::HostRole;
use hostrole_api::render::CONFIG_KEY;
use hostrole_config::{AgentConfig, ClientTarget};
use hostrole_e2e::{Env, TempManifest, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{Api, Client, ResourceExt};

const CONVERGE: Duration = Duration::from_secs(90);

/// Taken for reading by every test with an operator of its own namespace, for writing by a test
/// whose operator watches every namespace.
static EXCLUSIVE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn api<K>(client: &Client, ns: &str) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), ns)
}

fn apply_yaml(env: &Env, ns: &str, yaml: &str) {
    let manifest = TempManifest::new(
        "manifest.yaml",
        &format!(
            "apiVersion: hostrole.dev/v1alpha1
kind: HostRole
{yaml}"
        ),
    );
    env.kubectl_ok(&["apply", "-n", ns, "-f", manifest.arg()]);
}

/// Waits until the HostRole's condition `type_` has `status` and `reason`.
async fn wait_condition(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
) -> HostRole {
    let hrs = api::<HostRole>(client, ns);
    eventually(
        &format!("{ns}/{name} has {type_}={status} ({reason})"),
        CONVERGE,
        || async {
            let hr = hrs.get(name).await.ok()?;
            let generation = hr.metadata.generation;
            hr.status
                .as_ref()?
                .conditions
                .iter()
                .any(|c| {
                    c.type_ == type_
                        && c.status == status
                        && c.reason == reason
                        && c.observed_generation == generation
                })
                .then_some(hr)
        },
    )
    .await
}

async fn agent_config(client: &Client, ns: &str, name: &str) -> AgentConfig {
    let cm = api::<ConfigMap>(client, ns)
        .get(&format!("{name}-host"))
        .await
        .expect("host ConfigMap");
    serde_yaml::from_str(&cm.data.expect("data")[CONFIG_KEY]).expect("agent config")
}

#[tokio::test]
async fn a_client_of_a_missing_server_degrades_and_recovers_when_the_server_appears() {
    let _shared = EXCLUSIVE.read().await;
    let env = Env::new().await;
    let ns = env.namespace("refs").await;
    let operator = env.operator(&ns, &[]);
    apply_yaml(
        &env,
        &ns,
        "metadata: {name: laptop}\nspec:\n  clients:\n    - {service: web, server: office}\n    - {service: mail, server: office}\n",
    );
    let hr = wait_condition(
        &env.client,
        &ns,
        "laptop",
        "Degraded",
        "True",
        "ServerNotFound",
    )
    .await;
    let status = hr.status.expect("status");
    let clients = &status.hosts[0].clients;
    assert_eq!(clients.len(), 2);
    assert!(
        clients
            .iter()
            .all(|c| !c.ok && c.reason == "ServerNotFound")
    );
    assert!(
        clients[0]
            .last_error
            .contains(&format!("no HostRole {ns}/office"))
    );
    wait_condition(
        &env.client,
        &ns,
        "laptop",
        "ClientsHealthy",
        "False",
        "ServerNotFound",
    )
    .await;
    assert!(
        agent_config(&env.client, &ns, "laptop")
            .await
            .clients
            .is_empty()
    );

    // The server appears with web only: web resolves, mail still lacks its role.
    apply_yaml(
        &env,
        &ns,
        "metadata: {name: office}\nspec:\n  servers:\n    web: {port: 8080}\n",
    );
    wait_condition(
        &env.client,
        &ns,
        "laptop",
        "Degraded",
        "True",
        "RoleMissing",
    )
    .await;
    let config = agent_config(&env.client, &ns, "laptop").await;
    assert_eq!(config.clients.len(), 1);
    assert_eq!(
        config.clients[0].target,
        ClientTarget::Url(format!("http://office.{ns}.svc:8080/"))
    );

    // The server gains mail: the laptop recovers without anything touching it.
    apply_yaml(
        &env,
        &ns,
        "metadata: {name: office}\nspec:\n  servers:\n    web: {port: 8080}\n    mail: {domains: [office.lan]}\n",
    );
    wait_condition(
        &env.client,
        &ns,
        "laptop",
        "Degraded",
        "False",
        "AsExpected",
    )
    .await;
    let config = agent_config(&env.client, &ns, "laptop").await;
    let names: Vec<&str> = config.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["web-0", "mail-1"]);
    let laptop = api::<HostRole>(&env.client, &ns)
        .get("laptop")
        .await
        .expect("laptop");
    assert_eq!(
        laptop.metadata.generation,
        Some(1),
        "the laptop itself never changed: its recovery came from watching the server"
    );
    // The events say what happened.
    let events = env.kubectl_ok(&[
        "get",
        "events",
        "-n",
        &ns,
        "--field-selector",
        "involvedObject.name=laptop",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(
        events.contains("Degraded") && events.contains("Recovered"),
        "{events}"
    );
    drop(operator);
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn a_peer_network_gets_one_secret_and_service_owned_by_every_member() {
    let _shared = EXCLUSIVE.read().await;
    let env = Env::new().await;
    let ns = env.namespace("p2p").await;
    let operator = env.operator(&ns, &["--network-policies"]);
    apply_yaml(
        &env,
        &ns,
        "metadata: {name: family}\nspec:\n  replicas: 2\n  peer: {network: family, index: tracker}\n",
    );
    // Hybrid without its index: Degraded, named.
    wait_condition(
        &env.client,
        &ns,
        "family",
        "Degraded",
        "True",
        "IndexNotFound",
    )
    .await;
    apply_yaml(
        &env,
        &ns,
        "metadata: {name: tracker}\nspec:\n  servers:\n    web: {}\n",
    );
    wait_condition(
        &env.client,
        &ns,
        "family",
        "Degraded",
        "True",
        "IndexRoleMissing",
    )
    .await;
    apply_yaml(
        &env,
        &ns,
        "metadata: {name: tracker}\nspec:\n  servers:\n    index: {port: 7000, ttl: 30s}\n",
    );
    wait_condition(
        &env.client,
        &ns,
        "family",
        "Degraded",
        "False",
        "AsExpected",
    )
    .await;
    let config = agent_config(&env.client, &ns, "family").await;
    let peer = config.peer.expect("peer config");
    assert_eq!(
        peer.index_url.as_deref(),
        Some(format!("http://tracker.{ns}.svc:7000").as_str())
    );
    assert_eq!(peer.heartbeat_seconds, 10);

    apply_yaml(
        &env,
        &ns,
        "metadata: {name: cousins}\nspec:\n  peer: {network: family, index: tracker}\n",
    );
    let secrets = api::<Secret>(&env.client, &ns);
    let services = api::<Service>(&env.client, &ns);
    let owners_of = |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
        let mut names: Vec<String> = refs.iter().map(|o| o.name.clone()).collect();
        names.sort();
        names
    };
    let secret = eventually(
        "the network Secret is owned by both members",
        CONVERGE,
        || async {
            let s = secrets.get("peers-family").await.ok()?;
            (owners_of(s.owner_references()) == ["cousins", "family"]).then_some(s)
        },
    )
    .await;
    let value = secret.data.expect("data")["secret"].0.clone();
    assert_eq!(value.len(), 64, "32 random bytes, hex");
    let service = eventually("the network Service is owned by both", CONVERGE, || async {
        let s = services.get("peers-family").await.ok()?;
        (owners_of(s.owner_references()) == ["cousins", "family"]).then_some(s)
    })
    .await;
    assert_eq!(
        service.spec.expect("spec").selector.expect("selector")["hostrole.dev/network"],
        "family"
    );
    // The index mounts the network's secret; status lists the network's peers.
    let hr = eventually("family's status lists three peers", CONVERGE, || async {
        let hr = api::<HostRole>(&env.client, &ns).get("family").await.ok()?;
        let network = hr.status.clone()?.network?;
        (network.peers.len() == 3 && network.peers.iter().all(|p| p.ready)).then_some(hr)
    })
    .await;
    let network = hr.status.expect("status").network.expect("network");
    assert_eq!(network.mode, "Hybrid");
    assert_eq!(network.secret, "peers-family");
    let policy = api::<NetworkPolicy>(&env.client, &ns)
        .get("tracker")
        .await
        .expect("the index's NetworkPolicy");
    let text = serde_json::to_string(&policy.spec).expect("json");
    assert!(
        text.contains("hostrole.dev/network") && text.contains("7000"),
        "{text}"
    );

    // The secret is never rewritten: a restarted operator remembers nothing, so its reconcile
    // of a member finds the Secret there and sets its owners again with a metadata-only JSON
    // patch (the write it counts as Secret/patch); the value stays. Judged once that write has
    // happened, not after a while.
    drop(operator);
    let operator = env.operator(&ns, &["--network-policies"]);
    let secret_patches = || {
        operator.metric(
            "hostrole_operator_api_writes_total",
            &[("kind", "Secret"), ("verb", "patch")],
        )
    };
    eventually(
        "the restarted operator patches the network Secret's owners",
        CONVERGE,
        || async { (secret_patches() >= 1.0).then_some(()) },
    )
    .await;
    let again = secrets.get("peers-family").await.expect("secret");
    assert_eq!(
        String::from_utf8_lossy(&again.data.expect("data")["secret"].0),
        String::from_utf8_lossy(&value),
        "the restarted operator rewrote the network secret"
    );

    // The network's objects stay while one member is left, and go with the last.
    env.kubectl_ok(&["delete", "hrole", "cousins", "-n", &ns, "--wait=true"]);
    eventually(
        "the network objects lost cousins as an owner",
        CONVERGE,
        || async {
            let s = services.get("peers-family").await.ok()?;
            (owners_of(s.owner_references()) == ["family"]).then_some(())
        },
    )
    .await;
    env.kubectl_ok(&["delete", "hrole", "family", "-n", &ns, "--wait=true"]);
    eventually("the network objects are collected", CONVERGE, || async {
        let gone = secrets.get_opt("peers-family").await.ok()?.is_none()
            && services.get_opt("peers-family").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
    let _ = secret.metadata.name;
    drop(operator);
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn network_policies_follow_the_declared_clients() {
    let _shared = EXCLUSIVE.read().await;
    let env = Env::new().await;
    let ns = env.namespace("netpol").await;
    let operator = env.operator(&ns, &[]);
    apply_yaml(
        &env,
        &ns,
        "metadata: {name: office}\nspec:\n  networkPolicy: true\n  servers:\n    web: {port: 8080}\n    file: {port: 8081}\n",
    );
    let policies = api::<NetworkPolicy>(&env.client, &ns);
    let rules_of = |p: &NetworkPolicy| {
        p.spec
            .as_ref()
            .and_then(|s| s.ingress.clone())
            .unwrap_or_default()
    };
    eventually("only the admin port is open", CONVERGE, || async {
        let p = policies.get("office").await.ok()?;
        (rules_of(&p).len() == 1).then_some(())
    })
    .await;
    apply_yaml(
        &env,
        &ns,
        "metadata: {name: laptop}\nspec:\n  clients:\n    - {service: web, server: office}\n",
    );
    let p = eventually("the laptop may reach the web port", CONVERGE, || async {
        let p = policies.get("office").await.ok()?;
        (rules_of(&p).len() == 2).then_some(p)
    })
    .await;
    let rule = &rules_of(&p)[1];
    let text = serde_json::to_string(rule).expect("json");
    assert!(text.contains("8080") && !text.contains("8081"), "{text}");
    assert!(
        text.contains("\"app.kubernetes.io/instance\":\"laptop\""),
        "{text}"
    );
    // Turning the policy off removes it.
    apply_yaml(
        &env,
        &ns,
        "metadata: {name: office}\nspec:\n  servers:\n    web: {port: 8080}\n    file: {port: 8081}\n",
    );
    eventually("the policy is gone", CONVERGE, || async {
        policies
            .get_opt("office")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let _ = p.name_any();
    drop(operator);
    env.delete_namespace(&ns).await;
}

fn condition(hr: &HostRole, type_: &str) -> (String, String) {
    hr.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

/// Who `ns/name`'s NetworkPolicy admits to `port`: (namespace, HostRole) pairs.
async fn admitted(
    client: &Client,
    ns: &str,
    name: &str,
    port: i32,
) -> Option<Vec<(String, String)>> {
    let policy = api::<NetworkPolicy>(client, ns).get(name).await.ok()?;
    let rules = policy.spec?.ingress.unwrap_or_default();
    Some(
        rules
            .iter()
            .filter(|r| {
                r.ports.iter().flatten().any(|p| {
                    p.port
                        == Some(
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port),
                        )
                })
            })
            .flat_map(|r| r.from.clone().unwrap_or_default())
            .filter_map(|peer| {
                let ns =
                    peer.namespace_selector?.match_labels?["kubernetes.io/metadata.name"].clone();
                let name = peer.pod_selector?.match_labels?["app.kubernetes.io/instance"].clone();
                Some((ns, name))
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_server_of_another_namespace_serves_a_client_only_with_its_consent() {
    let _alone = EXCLUSIVE.write().await;
    let env = Env::new().await;
    let office_ns = env.namespace("consent-office").await;
    let guests = env.namespace("consent-guests").await;
    // Every namespace: a client and its server live in two.
    let operator = env.operator_as(
        Path::new(&std::env::var("KUBECONFIG").expect("KUBECONFIG")),
        &[],
    );
    apply_yaml(
        &env,
        &office_ns,
        "metadata: {name: office}\nspec:\n  networkPolicy: true\n  servers:\n    web: {port: 8443}\n    mail: {smtpPort: 2626, domains: [secret-office.example]}\n",
    );
    wait_condition(
        &env.client,
        &office_ns,
        "office",
        "Ready",
        "True",
        "AllRolesServing",
    )
    .await;
    // A client of the server that exists, and of one that does not: the answers must not tell
    // them apart.
    apply_yaml(
        &env,
        &guests,
        &format!(
            "metadata: {{name: visitor}}\nspec:\n  clients:\n    - {{service: web, server: {office_ns}/office}}\n    - {{service: web, server: {office_ns}/ghost}}\n"
        ),
    );
    let hr = wait_condition(
        &env.client,
        &guests,
        "visitor",
        "Degraded",
        "True",
        "Forbidden",
    )
    .await;
    assert_eq!(condition(&hr, "ClientsHealthy").0, "Forbidden");
    let status = hr.status.clone().expect("status");
    let clients = &status.hosts[0].clients;
    assert!(clients.iter().all(|c| c.reason == "Forbidden" && !c.ok));
    assert_eq!(
        clients[0]
            .last_error
            .replace("/office", "/X")
            .replace("clients[0]", "clients[i]"),
        clients[1]
            .last_error
            .replace("/ghost", "/X")
            .replace("clients[1]", "clients[i]"),
        "an existing server and a missing one get the same answer"
    );
    assert!(
        clients[0].last_error.contains("allowClientsFrom"),
        "{}",
        clients[0].last_error
    );
    let seen = serde_json::to_string(&status).expect("json")
        + &serde_json::to_string(&agent_config(&env.client, &guests, "visitor").await)
            .expect("json");
    for secret in ["8443", "2626", "secret-office", ".svc"] {
        assert!(
            !seen.contains(secret),
            "{secret} revealed to the client's namespace: {seen}"
        );
    }
    assert!(
        agent_config(&env.client, &guests, "visitor")
            .await
            .clients
            .is_empty()
    );
    // The server's NetworkPolicy admits no one from there, also after a reconcile that saw the
    // client (a spec change of the server, observed).
    apply_yaml(
        &env,
        &office_ns,
        "metadata: {name: office}\nspec:\n  networkPolicy: true\n  servers:\n    web: {port: 8443, maxConnections: 500}\n    mail: {smtpPort: 2626, domains: [secret-office.example]}\n",
    );
    wait_condition(
        &env.client,
        &office_ns,
        "office",
        "Ready",
        "True",
        "AllRolesServing",
    )
    .await;
    assert_eq!(
        admitted(&env.client, &office_ns, "office", 8443).await,
        Some(Vec::new())
    );

    // The server consents by name: the client resolves and is admitted, with nothing done to it.
    apply_yaml(
        &env,
        &office_ns,
        &format!(
            "metadata: {{name: office}}\nspec:\n  networkPolicy: true\n  allowClientsFrom: {{namespaces: [{guests}]}}\n  servers:\n    web: {{port: 8443, maxConnections: 500}}\n    mail: {{smtpPort: 2626, domains: [secret-office.example]}}\n"
        ),
    );
    let visitor = eventually("the visitor's web client resolves", CONVERGE, || async {
        let config = agent_config(&env.client, &guests, "visitor").await;
        (config.clients.len() == 1).then_some(config)
    })
    .await;
    assert_eq!(
        visitor.clients[0].target,
        ClientTarget::Url(format!("http://office.{office_ns}.svc:8443/"))
    );
    let want = vec![(guests.clone(), "visitor".to_string())];
    eventually("the server admits the visitor", CONVERGE, || async {
        (admitted(&env.client, &office_ns, "office", 8443).await? == want).then_some(())
    })
    .await;
    let hr = api::<HostRole>(&env.client, &guests)
        .get("visitor")
        .await
        .expect("visitor");
    assert_eq!(
        hr.metadata.generation,
        Some(1),
        "the client was never touched"
    );
    // The other reference stays Forbidden: the ghost does not exist.
    assert_eq!(condition(&hr, "Degraded").0, "Forbidden");

    // By labels: the server consents to namespaces labelled team=visitors; the guests'
    // namespace gains, then loses, the label. Only the namespace changes.
    apply_yaml(
        &env,
        &office_ns,
        "metadata: {name: office}\nspec:\n  networkPolicy: true\n  allowClientsFrom: {namespaceSelector: {matchLabels: {team: visitors}}}\n  servers:\n    web: {port: 8443, maxConnections: 500}\n    mail: {smtpPort: 2626, domains: [secret-office.example]}\n",
    );
    eventually(
        "unlabelled, the visitor is refused again",
        CONVERGE,
        || async {
            let refused = agent_config(&env.client, &guests, "visitor")
                .await
                .clients
                .is_empty();
            let shut = admitted(&env.client, &office_ns, "office", 8443)
                .await?
                .is_empty();
            (refused && shut).then_some(())
        },
    )
    .await;
    env.kubectl_ok(&["label", "namespace", &guests, "team=visitors"]);
    eventually(
        "labelled, the visitor is served and admitted",
        CONVERGE,
        || async {
            let served = agent_config(&env.client, &guests, "visitor")
                .await
                .clients
                .len()
                == 1;
            let admitted = admitted(&env.client, &office_ns, "office", 8443).await? == want;
            (served && admitted).then_some(())
        },
    )
    .await;
    env.kubectl_ok(&["label", "namespace", &guests, "team-"]);
    eventually("the label gone, so is the consent", CONVERGE, || async {
        let refused = agent_config(&env.client, &guests, "visitor")
            .await
            .clients
            .is_empty();
        let shut = admitted(&env.client, &office_ns, "office", 8443)
            .await?
            .is_empty();
        (refused && shut).then_some(())
    })
    .await;
    drop(operator);
    env.delete_namespace(&guests).await;
    env.delete_namespace(&office_ns).await;
}

#[tokio::test]
async fn unlabelled_credentials_and_site_are_refused_and_used_once_labelled() {
    let _shared = EXCLUSIVE.read().await;
    let env = Env::new().await;
    let ns = env.namespace("uses").await;
    let operator = env.operator(&ns, &[]);
    let objects = TempManifest::new(
        "objects.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: login}\ntype: kubernetes.io/basic-auth\nstringData: {username: alice, password: change-me}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: pages}\ndata: {index.html: '<h1>pages</h1>'}\n",
    );
    env.kubectl_ok(&["apply", "-n", &ns, "-f", objects.arg()]);
    apply_yaml(
        &env,
        &ns,
        "metadata: {name: laptop}\nspec:\n  clients:\n    - {service: file, url: 'http://nas.invalid:8081/', credentials: {secret: login}}\n",
    );
    apply_yaml(
        &env,
        &ns,
        "metadata: {name: brochure}\nspec:\n  servers:\n    web: {site: {configMap: pages}}\n",
    );
    let volumes = |name: &'static str| {
        let env = &env;
        let ns = ns.clone();
        async move {
            let sts = api::<k8s_openapi::api::apps::v1::StatefulSet>(&env.client, &ns)
                .get(name)
                .await
                .ok()?;
            let volumes = sts.spec?.template.spec?.volumes.unwrap_or_default();
            Some(serde_json::to_string(&volumes).expect("json"))
        }
    };
    for (name, field, object, kind) in [
        (
            "laptop",
            "spec.clients[0].credentials.secret",
            "login",
            "secret",
        ),
        (
            "brochure",
            "spec.servers.web.site.configMap",
            "pages",
            "configmap",
        ),
    ] {
        let hr = wait_condition(
            &env.client,
            &ns,
            name,
            "Degraded",
            "True",
            "ReferenceNotAllowed",
        )
        .await;
        let message = condition(&hr, "Degraded").1;
        assert!(
            message.contains(field)
                && message.contains(&format!(
                    "kubectl label {kind} {object} hostrole.dev/use=true"
                )),
            "{name}: {message}"
        );
        let mounted =
            eventually(&format!("{name}'s StatefulSet"), CONVERGE, || volumes(name)).await;
        assert!(
            !mounted.contains(&format!("\"{object}\"")),
            "{name} mounts {object}: {mounted}"
        );
    }
    assert_eq!(
        condition(
            &api::<HostRole>(&env.client, &ns)
                .get("laptop")
                .await
                .expect("laptop"),
            "ClientsHealthy"
        )
        .0,
        "ReferenceNotAllowed"
    );
    assert!(
        agent_config(&env.client, &ns, "laptop")
            .await
            .clients
            .is_empty()
    );

    // Their owner labels them: both are used, the HostRoles untouched (the Secret is asked
    // about again on a timer, the ConfigMap is watched).
    env.kubectl_ok(&[
        "label",
        "-n",
        &ns,
        "secret",
        "login",
        "hostrole.dev/use=true",
    ]);
    env.kubectl_ok(&[
        "label",
        "-n",
        &ns,
        "configmap",
        "pages",
        "hostrole.dev/use=true",
    ]);
    for (name, object) in [("laptop", "login"), ("brochure", "pages")] {
        let hr = wait_condition(&env.client, &ns, name, "Degraded", "False", "AsExpected").await;
        assert_eq!(hr.metadata.generation, Some(1), "{name} was never touched");
        let mounted = eventually(&format!("{name} mounts {object}"), CONVERGE, || async {
            let v = volumes(name).await?;
            v.contains(&format!("\"{object}\"")).then_some(v)
        })
        .await;
        assert!(mounted.contains(object));
    }
    let config = agent_config(&env.client, &ns, "laptop").await;
    assert_eq!(config.clients.len(), 1);
    assert!(config.clients[0].credentials_dir.is_some());

    // The label removed from the ConfigMap: the site is withdrawn.
    env.kubectl_ok(&[
        "label",
        "-n",
        &ns,
        "configmap",
        "pages",
        "hostrole.dev/use-",
    ]);
    wait_condition(
        &env.client,
        &ns,
        "brochure",
        "Degraded",
        "True",
        "ReferenceNotAllowed",
    )
    .await;
    drop(operator);
    env.delete_namespace(&ns).await;
}
