//! What only a cluster of more than one node shows (e2e/kind.sh runs these on its two-node kind
//! cluster after the users' suite): a generated NetworkPolicy really blocking an undeclared
//! client and admitting the declared one, from either node; a peer of another network refused at
//! the peer port that the peers of its own network reach; an egress policy letting a host reach
//! only what it declares; hosts of one HostRole on both nodes;
//! `kubectl drain` of a node moving its hosts and the HostRole recovering; a stopped node
//! (`docker stop`) named in the status as hosts not ready, and the hosts back when it returns.
//!
//! They need the chart's images loaded into the nodes (as for suite.rs) and, for the node tests,
//! HOSTROLE_KIND_CLUSTER (the kind cluster's name, whose nodes are Docker containers).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hostrole_api::rules::ADMIN_PORT;
use hostrole_api::{HostRole, IndexServer};
use hostrole_e2e::{Env, eventually, metric_in, repo_root, run_client_pod};
use hostrole_operator::desired::NETWORK_LABEL;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

const WAIT: Duration = Duration::from_secs(300);

/// The chart installed as suite.rs installs it; uninstalled when dropped.
struct Release<'a> {
    env: &'a Env,
    namespace: String,
}

impl<'a> Release<'a> {
    async fn install(env: &'a Env) -> Release<'a> {
        let namespace = env.namespace("hostrole-system").await;
        let tag = std::env::var("HOSTROLE_IMAGE_TAG").unwrap_or_else(|_| "0.1.0".into());
        let pull =
            std::env::var("HOSTROLE_IMAGE_PULL_POLICY").unwrap_or_else(|_| "IfNotPresent".into());
        let prefix = std::env::var("HOSTROLE_IMAGE_PREFIX").unwrap_or_else(|_| "hostrole/".into());
        let chart = repo_root().join("charts/hostrole-operator");
        let values = [
            format!("image.repository={prefix}operator"),
            format!("agent.image.repository={prefix}agent"),
            format!("image.tag={tag}"),
            format!("agent.image.tag={tag}"),
            format!("image.pullPolicy={pull}"),
            format!("agent.image.pullPolicy={pull}"),
        ];
        let mut args = vec![
            "install",
            "hostrole",
            chart.to_str().expect("utf-8"),
            "-n",
            &namespace,
            "--wait",
            "--timeout",
            "3m",
        ];
        for v in &values {
            args.extend(["--set", v.as_str()]);
        }
        env.helm_ok(&args);
        Release { env, namespace }
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let _ = self.env.helm(&[
            "uninstall",
            "hostrole",
            "-n",
            &self.namespace,
            "--wait",
            "--timeout",
            "2m",
        ]);
        let _ = self
            .env
            .kubectl(&["delete", "namespace", &self.namespace, "--wait=false"]);
    }
}

fn apply(env: &Env, ns: &str, manifest: &str) {
    let file = hostrole_e2e::TempManifest::new("kind-e2e.yaml", manifest);
    env.kubectl_ok(&[
        "apply",
        "-n",
        ns,
        "-f",
        file.path().to_str().expect("utf-8"),
    ]);
}

async fn ready(hostroles: &Api<HostRole>, name: &str, replicas: i32) -> HostRole {
    eventually(
        &format!("{name} is Ready with {replicas} hosts"),
        WAIT,
        || async {
            let hr = hostroles.get(name).await.ok()?;
            let status = hr.status.as_ref()?;
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && status.ready_hosts == replicas).then_some(hr)
        },
    )
    .await
}

/// Node of each host pod of HostRole `name`.
async fn placement(pods: &Api<Pod>, name: &str) -> BTreeMap<String, String> {
    nodes_of(host_pods(pods, name).await)
}

/// The host pods of HostRole `name`.
async fn host_pods(pods: &Api<Pod>, name: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!(
        "app.kubernetes.io/name=hostrole-host,app.kubernetes.io/instance={name}"
    )))
    .await
    .expect("pods")
    .items
}

/// Pod name → node name, for the pods that are scheduled.
fn nodes_of(pods: impl IntoIterator<Item = Pod>) -> BTreeMap<String, String> {
    pods.into_iter()
        .filter_map(|p| Some((p.name_any(), p.spec?.node_name?)))
        .collect()
}

/// Node of each host pod of HostRole `name` that is ready and not being deleted: where the
/// hosts have settled. A pod deleted a moment ago (still terminating on its old node) or one
/// just created (not started yet) is left out, so a wait on this cannot pass in between.
async fn settled(pods: &Api<Pod>, name: &str) -> BTreeMap<String, String> {
    nodes_of(host_pods(pods, name).await.into_iter().filter(|p| {
        p.metadata.deletion_timestamp.is_none()
            && p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }))
}

async fn node_names(env: &Env) -> Vec<String> {
    let nodes: Api<Node> = Api::all(env.client.clone());
    let mut names: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .expect("nodes")
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    names.sort();
    names
}

/// Runs `script` in a curl pod (restricted) on node `node`, with `labels` besides its own;
/// returns its log. The pod must finish with success: scripts print what they saw rather than
/// fail.
async fn on_node(
    env: &Env,
    ns: &str,
    name: &str,
    node: &str,
    labels: &[(&str, &str)],
    script: &str,
) -> String {
    let mut all = vec![("app", "kind-e2e-probe")];
    all.extend_from_slice(labels);
    run_client_pod(env, ns, name, Some(node), &all, script).await
}

#[tokio::test]
#[ignore = "needs a kind cluster with a NetworkPolicy enforcer and the hostrole images (e2e/kind.sh)"]
async fn network_policy_blocks_undeclared_clients_and_admits_the_declared_one() {
    let env = Env::new().await;
    let _release = Release::install(&env).await;
    let ns = env.namespace("netpol").await;
    apply(
        &env,
        &ns,
        r#"
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: site}
spec:
  replicas: 1
  networkPolicy: true
  servers:
    web:
      port: 8080
      site:
        files:
          - path: index.html
            content: "only for declared clients\n"
---
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: reader}
spec:
  replicas: 2
  clients:
    - service: web
      server: site
      every: 5s
      expect: {status: 200, contains: only for declared clients}
"#,
    );
    let hostroles: Api<HostRole> = Api::namespaced(env.client.clone(), &ns);
    ready(&hostroles, "site", 1).await;
    ready(&hostroles, "reader", 2).await;
    let policy = env.kubectl_ok(&["get", "networkpolicy", "site", "-n", &ns, "-o", "json"]);
    assert!(
        policy.contains("\"reader\""),
        "the policy admits the reader: {policy}"
    );

    // The declared client, wherever its hosts run, succeeds through the policy: every host of
    // the reader reports its client ok (ClientsHealthy True).
    eventually("the reader's clients are healthy", WAIT, || async {
        let hr = hostroles.get("reader").await.ok()?;
        let status = hr.status?;
        let healthy = status
            .conditions
            .iter()
            .any(|c| c.type_ == "ClientsHealthy" && c.status == "True");
        let all_ok = status.hosts.len() == 2
            && status
                .hosts
                .iter()
                .all(|h| !h.clients.is_empty() && h.clients.iter().all(|c| c.ok));
        (healthy && all_ok).then_some(())
    })
    .await;

    // A pod that is not a declared client, on each node: the web port is closed to it, the admin
    // port (left open for probes and metrics) of the same pod answers, so the refusal is the
    // policy's and not a broken network.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let site_node = placement(&pods, "site").await;
    for (i, node) in node_names(&env).await.iter().enumerate() {
        let log = on_node(
            &env,
            &ns,
            &format!("stranger-{i}"),
            node,
            &[],
            &format!(
                "if curl -s --max-time 5 -o /dev/null http://site-0.site-hosts.{ns}.svc:8080/; then echo 'web REACHED'; else echo 'web blocked'; fi\n\
                 if curl -sf --max-time 5 -o /dev/null http://site-0.site-hosts.{ns}.svc:9901/healthz; then echo 'admin open'; else echo 'admin CLOSED'; fi"
            ),
        )
        .await;
        assert!(
            log.contains("web blocked") && log.contains("admin open"),
            "from node {node} (site runs on {site_node:?}): {log}"
        );
    }
    env.delete_namespace(&ns).await;
}

/// The peer port of the tests' peers.
const PEER_PORT: i32 = 7001;

/// The agent's metrics of host pod `pod`, read through the API server's pod proxy (the admin
/// port stays open to everyone under the generated policies).
fn host_metrics(env: &Env, ns: &str, pod: &str) -> Option<String> {
    let out = env.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/{ns}/pods/{pod}:{ADMIN_PORT}/proxy/metrics"),
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
#[ignore = "needs a kind cluster with a NetworkPolicy enforcer and the hostrole images (e2e/kind.sh)"]
async fn network_policy_refuses_a_peer_of_another_network() {
    let env = Env::new().await;
    let _release = Release::install(&env).await;
    let nodes = node_names(&env).await;
    let ns = env.namespace("peernet").await;
    // Network alpha: a host on the first node and one on the last, of two HostRoles (so the
    // policy must admit the other HostRole's pods for their network).
    let alpha = |name: &str, node: &str| {
        format!(
            r#"
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {{name: {name}}}
spec:
  replicas: 1
  networkPolicy: true
  peer: {{network: alpha, port: {PEER_PORT}}}
  template:
    nodeSelector: {{kubernetes.io/hostname: {node}}}
"#
        )
    };
    apply(
        &env,
        &ns,
        &format!(
            "{}---{}",
            alpha("alpha-one", nodes.first().expect("a node")),
            alpha("alpha-two", nodes.last().expect("a node")),
        ),
    );
    let hostroles: Api<HostRole> = Api::namespaced(env.client.clone(), &ns);
    for name in ["alpha-one", "alpha-two"] {
        ready(&hostroles, name, 1).await;
    }
    let policy = env.kubectl_ok(&["get", "networkpolicy", "alpha-one", "-n", &ns, "-o", "json"]);
    assert!(
        policy.contains(&format!(r#""{NETWORK_LABEL}": "alpha""#)),
        "alpha-one's policy admits the peers of alpha by their network: {policy}"
    );

    // A peer of alpha reaches the other through its policy, across nodes: each knows the other
    // (a peer counts as known only once it answered a signed call of this one).
    let known = "hostrole_peer_peers_known";
    for host in ["alpha-one-0", "alpha-two-0"] {
        eventually(
            &format!("{host} knows the other peer of alpha"),
            WAIT,
            || async {
                (metric_in(&host_metrics(&env, &ns, host)?, known, &[]) == 1.0).then_some(())
            },
        )
        .await;
    }

    // A pod of network beta (labelled as beta's hosts are) on each node: alpha's peer ports do
    // not even connect while alpha's admin ports answer, so the refusal is the policy's; a pod
    // of network alpha on the same node gets an answer from the same peer ports (401: the probe
    // signs nothing). Not connecting is curl's exit 7 when the enforcer rejects (kube-router,
    // on the offline node image: ICMP port unreachable), 28 (a timeout) when it drops.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    let alpha_nodes = [
        placement(&pods, "alpha-one").await,
        placement(&pods, "alpha-two").await,
    ];
    let url = |host: &str, port: i32, path: &str| {
        format!("http://{host}-0.{host}-hosts.{ns}.svc:{port}{path}")
    };
    let probe = |label: &str, url: String| {
        format!(
            "code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 {url}); echo \"{label} $code exit $?\"\n"
        )
    };
    for (i, node) in nodes.iter().enumerate() {
        let mut script = String::new();
        for host in ["alpha-one", "alpha-two"] {
            script.push_str(&probe(
                &format!("{host}-peer"),
                url(host, PEER_PORT, "/v1/resources"),
            ));
            script.push_str(&probe(
                &format!("{host}-admin"),
                url(host, ADMIN_PORT, "/healthz"),
            ));
        }
        let log = on_node(
            &env,
            &ns,
            &format!("beta-pod-{i}"),
            node,
            &[(NETWORK_LABEL, "beta")],
            &script,
        )
        .await;
        let seen = format!("a pod of beta on {node} (alpha on {alpha_nodes:?}): {log}");
        for host in ["alpha-one", "alpha-two"] {
            assert!(
                ["7", "28"]
                    .iter()
                    .any(|exit| log.contains(&format!("{host}-peer 000 exit {exit}\n"))),
                "{seen}"
            );
            assert!(log.contains(&format!("{host}-admin 200 exit 0")), "{seen}");
        }
        // The enforcer may admit a new pod a moment after it starts: up to 30 s for the 401.
        let mut script = String::new();
        for host in ["alpha-one", "alpha-two"] {
            let peer = url(host, PEER_PORT, "/v1/resources");
            script.push_str(&format!(
                "for i in $(seq 1 30); do [ \"$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 {peer})\" = 401 ] && break; sleep 1; done\n{}",
                probe(&format!("{host}-peer"), peer.clone())
            ));
        }
        let log = on_node(
            &env,
            &ns,
            &format!("alpha-pod-{i}"),
            node,
            &[(NETWORK_LABEL, "alpha")],
            &script,
        )
        .await;
        for host in ["alpha-one", "alpha-two"] {
            assert!(
                log.contains(&format!("{host}-peer 401 exit 0")),
                "a pod of alpha on {node} (alpha on {alpha_nodes:?}): {log}"
            );
        }
    }

    // A host of network beta, given alpha's hosts as seeds, calls their peer ports every gossip
    // round and never gets through: alpha refuses no call for a wrong network secret (its
    // answer to a peer of another network that reaches it), and beta knows no peer, after
    // three rounds. beta starts only now, with alpha's policy seen enforced: a policy governs
    // new connections, and one a peer opened before the enforcer had set up a new pod's rules
    // outlives them (kube-router accepts ESTABLISHED first; the peer keeps it alive).
    let seeds = ["alpha-one", "alpha-two"]
        .map(|h| format!("{h}-0.{h}-hosts.{ns}.svc:{PEER_PORT}"))
        .join(", ");
    apply(
        &env,
        &ns,
        &format!(
            r#"
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {{name: beta}}
spec:
  replicas: 1
  networkPolicy: true
  peer: {{network: beta, port: {PEER_PORT}, seeds: [{seeds}]}}
"#
        ),
    );
    ready(&hostroles, "beta", 1).await;
    tokio::time::sleep(Duration::from_secs(
        3 * IndexServer::default_heartbeat_seconds(),
    ))
    .await;
    let refused = [("role", "peer"), ("reason", "AuthBadSignature")];
    for host in ["alpha-one-0", "alpha-two-0"] {
        let metrics = host_metrics(&env, &ns, host).expect("metrics");
        assert_eq!(
            metric_in(&metrics, "hostrole_agent_errors_total", &refused),
            0.0,
            "{host} was reached by a peer of another network"
        );
    }
    let metrics = host_metrics(&env, &ns, "beta-0").expect("metrics");
    assert_eq!(metric_in(&metrics, known, &[]), 0.0, "beta knows a peer");
    env.delete_namespace(&ns).await;
}

// Issue 19: egress. A host with egressPolicy reaches DNS, the server its client names (on that
// server's ports), and the API server (its agent reports on its own pod); another server, and
// the admin port of its own server, are closed to it.
#[tokio::test]
#[ignore = "needs a kind cluster with a NetworkPolicy enforcer and the hostrole images (e2e/kind.sh)"]
async fn egress_policy_lets_a_host_reach_only_what_it_declares() {
    let env = Env::new().await;
    let _release = Release::install(&env).await;
    let ns = env.namespace("egress").await;
    let site = |name: &str| {
        format!(
            r#"
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {{name: {name}}}
spec:
  replicas: 1
  servers:
    web:
      port: 8080
      site:
        files:
          - path: index.html
            content: "served by {name}\n"
"#
        )
    };
    apply(
        &env,
        &ns,
        &format!(
            "{}---{}---{}",
            site("site"),
            site("other"),
            r#"
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: reader}
spec:
  replicas: 1
  egressPolicy: true
  clients:
    - service: web
      server: site
      every: 5s
      expect: {status: 200, contains: served by site}
"#
        ),
    );
    let hostroles: Api<HostRole> = Api::namespaced(env.client.clone(), &ns);
    for name in ["site", "other", "reader"] {
        ready(&hostroles, name, 1).await;
    }
    let policy = env.kubectl_ok(&["get", "networkpolicy", "reader", "-n", &ns, "-o", "json"]);
    assert!(
        policy.contains("\"Egress\"") && !policy.contains("\"Ingress\""),
        "an egress-only policy: {policy}"
    );
    // Through the policy, by name (DNS), the reader's host fetches the declared page and writes
    // the result on its pod (the API server): its client is healthy.
    eventually("the reader's client is healthy", WAIT, || async {
        let status = hostroles.get("reader").await.ok()?.status?;
        let ok = status
            .hosts
            .iter()
            .all(|h| !h.clients.is_empty() && h.clients.iter().all(|c| c.ok));
        let healthy = status
            .conditions
            .iter()
            .any(|c| c.type_ == "ClientsHealthy" && c.status == "True");
        (ok && healthy && !status.hosts.is_empty()).then_some(())
    })
    .await;

    // A pod that the reader's policy selects (its hosts' labels), on each node: the declared
    // server answers, the other server and the site's admin port do not even connect, the API
    // server does.
    let url = |host: &str, port: i32, path: &str| {
        format!("http://{host}-0.{host}-hosts.{ns}.svc:{port}{path}")
    };
    let probe = |label: &str, url: &str| {
        format!(
            "code=$(curl -sk -o /dev/null -w '%{{http_code}}' --max-time 5 {url}); echo \"{label} $code exit $?\"\n"
        )
    };
    let declared = url("site", 8080, "/");
    let other = url("other", 8080, "/");
    // The enforcer sets up a new pod's egress rules a moment after it starts: first wait (up to
    // 60 s) until the undeclared server stops answering, and for the declared one to answer.
    let mut script = format!(
        "for i in $(seq 1 60); do curl -s -o /dev/null --max-time 2 {other} || break; sleep 1; done\n\
         for i in $(seq 1 30); do [ \"$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 {declared})\" = 200 ] && break; sleep 1; done\n"
    );
    script.push_str(&probe("declared", &declared));
    script.push_str(&probe("other", &other));
    script.push_str(&probe("admin", &url("site", ADMIN_PORT, "/healthz")));
    script.push_str(&probe("api", "https://kubernetes.default.svc/version"));
    for (i, node) in node_names(&env).await.iter().enumerate() {
        let log = on_node(
            &env,
            &ns,
            &format!("reader-probe-{i}"),
            node,
            &[
                ("app.kubernetes.io/name", "hostrole-host"),
                ("app.kubernetes.io/instance", "reader"),
            ],
            &script,
        )
        .await;
        let seen = format!("from node {node}: {log}");
        assert!(log.contains("declared 200 exit 0"), "{seen}");
        for closed in ["other", "admin"] {
            assert!(
                ["7", "28"]
                    .iter()
                    .any(|exit| log.contains(&format!("{closed} 000 exit {exit}\n"))),
                "{seen}"
            );
        }
        assert!(
            ["200", "401", "403"]
                .iter()
                .any(|code| log.contains(&format!("api {code} exit 0"))),
            "{seen}"
        );
    }
    env.delete_namespace(&ns).await;
}

/// The kind node (a Docker container) named `node`: `docker stop` / `docker start`.
fn docker(args: &[&str]) {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
#[ignore = "needs a kind cluster of two schedulable nodes and the hostrole images (e2e/kind.sh)"]
async fn hosts_spread_move_on_drain_and_come_back_after_a_node_stops() {
    assert!(
        std::env::var_os("HOSTROLE_KIND_CLUSTER").is_some(),
        "HOSTROLE_KIND_CLUSTER names the kind cluster whose node containers this test stops"
    );
    let env = Env::new().await;
    let release = Release::install(&env).await;
    let nodes = node_names(&env).await;
    assert_eq!(nodes.len(), 2, "two nodes: {nodes:?}");
    let ns = env.namespace("nodes").await;
    let replicas = 4;
    apply(
        &env,
        &ns,
        &format!(
            r#"
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {{name: fleet}}
spec:
  replicas: {replicas}
  servers:
    web:
      port: 8080
      site:
        files:
          - path: index.html
            content: "fleet\n"
"#
        ),
    );
    let hostroles: Api<HostRole> = Api::namespaced(env.client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &ns);
    ready(&hostroles, "fleet", replicas).await;

    // Spread: the hosts run on both nodes.
    let placed = placement(&pods, "fleet").await;
    let used: BTreeSet<&String> = placed.values().collect();
    assert_eq!(used.len(), 2, "hosts on both nodes: {placed:?}");

    // Drain the worker: its hosts move to the other node and the HostRole is Ready again.
    let worker = nodes
        .iter()
        .find(|n| n.ends_with("-worker"))
        .expect("a worker node")
        .clone();
    let other = nodes.iter().find(|n| **n != worker).expect("other").clone();
    env.kubectl_ok(&[
        "drain",
        &worker,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=3m",
    ]);
    eventually("every host runs on the undrained node", WAIT, || async {
        let placed = settled(&pods, "fleet").await;
        (placed.len() == replicas as usize && placed.values().all(|n| *n == other)).then_some(())
    })
    .await;
    ready(&hostroles, "fleet", replicas).await;
    env.kubectl_ok(&["uncordon", &worker]);

    // Spread again: delete half of the hosts so that the scheduler places them anew.
    for i in 0..replicas / 2 {
        env.kubectl_ok(&[
            "delete",
            "pod",
            "-n",
            &ns,
            &format!("fleet-{i}"),
            "--wait=false",
        ]);
    }
    // Settled, not merely placed: a CI run once saw the deleted fleet-1 still terminating on
    // the other node, took it as placed, and stopped the worker while the new fleet-1 was yet
    // to be scheduled there; the status then rightly named two hosts where the test expected one.
    eventually("hosts ready on both nodes again", WAIT, || async {
        let placed = settled(&pods, "fleet").await;
        let used: BTreeSet<&String> = placed.values().collect();
        (placed.len() == replicas as usize && used.len() == 2).then_some(())
    })
    .await;
    ready(&hostroles, "fleet", replicas).await;

    // Stop the worker's container: the status names the hosts that ran there as not ready and
    // only them; they come back when the node does.
    let placed = settled(&pods, "fleet").await;
    assert_eq!(
        placed.len(),
        replicas as usize,
        "every host settled: {placed:?}"
    );
    let lost: BTreeSet<String> = placed
        .iter()
        .filter(|(_, n)| **n == worker)
        .map(|(p, _)| p.clone())
        .collect();
    assert!(!lost.is_empty(), "hosts on {worker}: {placed:?}");
    docker(&["stop", &worker]);
    let restart = scopeguard(&worker);
    // Polled by hand rather than with `eventually`: when it times out, the failure shows what the
    // status, the pods, the nodes and the operator said (a CI run once timed out here and the
    // message alone could not say why).
    let deadline = std::time::Instant::now() + WAIT;
    let mut last = String::from("no status read yet");
    loop {
        if let Ok(hr) = hostroles.get("fleet").await
            && let Some(status) = hr.status
        {
            let not_ready: BTreeSet<String> = status
                .hosts
                .iter()
                .filter(|h| !h.ready)
                .map(|h| h.name.clone())
                .collect();
            let ready_cond = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| format!("{} ({}: {})", c.status, c.reason, c.message));
            if not_ready == lost
                && status.ready_hosts == replicas - lost.len() as i32
                && ready_cond
                    .as_deref()
                    .is_some_and(|c| c.starts_with("False"))
            {
                break;
            }
            last = format!(
                "not ready {not_ready:?}, readyHosts {}, Ready {ready_cond:?}",
                status.ready_hosts
            );
        }
        if std::time::Instant::now() >= deadline {
            panic!(
                "timed out after {WAIT:?} waiting until the status names {lost:?} as not ready \
                 once {worker} stopped; last status: {last}\n{}",
                diagnose(&env, &ns, &release.namespace)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(restart);
    ready(&hostroles, "fleet", replicas).await;
    env.delete_namespace(&ns).await;
}

/// What the cluster looks like, for a failure message: nodes, the namespace's pods with their
/// Ready conditions, its events, and the operator's pods and last log lines.
fn diagnose(env: &Env, ns: &str, operator_ns: &str) -> String {
    let show = |args: &[&str]| {
        let out = env.kubectl(args);
        format!(
            "$ kubectl {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let ready = "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} \
                 {.status.phase} {.status.conditions[?(@.type=='Ready')]}{'\\n'}{end}";
    [
        show(&["get", "nodes", "-o", "wide"]),
        show(&["get", "pods", "-n", ns, "-o", "wide"]),
        show(&["get", "pods", "-n", ns, "-o", ready]),
        show(&["get", "events", "-n", ns, "--sort-by=.lastTimestamp"]),
        show(&["get", "pods", "-n", operator_ns, "-o", "wide"]),
        show(&[
            "logs",
            "-n",
            operator_ns,
            "-l",
            "app.kubernetes.io/name=hostrole-operator",
            "--prefix",
            "--tail=60",
        ]),
    ]
    .join("\n")
}

/// Starts the stopped node container again when dropped (also when the test fails).
struct NodeRestart(String);

fn scopeguard(node: &str) -> NodeRestart {
    NodeRestart(node.to_string())
}

impl Drop for NodeRestart {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["start", &self.0])
            .output();
    }
}
