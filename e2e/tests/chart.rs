//! The Helm chart against a real API server: lint, schema-checked values, server-side dry run,
//! install, upgrade, uninstall, and proof that its RBAC is enough for the operator and no more.
//! Needs KUBECONFIG and HELM (`./test.sh` provides both).

use std::path::PathBuf;
use std::time::Duration;

use hostrole_api::HostRole;
use hostrole_e2e::{AGENT_IMAGE, Env, TempDir, eventually, repo_root, tempdir};
use hostrole_testkit::kube_score;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Api;

fn chart() -> String {
    repo_root()
        .join("charts/hostrole-operator")
        .display()
        .to_string()
}

/// A release name unique to one test run.
fn release(prefix: &str) -> String {
    format!("{prefix}-{:04x}", fastrand::u16(..))
}

#[tokio::test]
async fn lint_rejects_wrong_values_and_the_render_passes_a_server_dry_run() {
    let env = Env::new().await;
    env.helm_ok(&["lint", "--strict", &chart()]);
    for (value, field) in [
        ("replicaCount=0", "/replicaCount"),
        ("logFormat=xml", "/logFormat"),
        ("metrics.port=80", "/metrics/port"),
        ("view.port=80", "/view/port"),
        ("imageTypo=1", "imageTypo"),
        ("crds.enable=true", "'enable'"),
        ("nameOverride=Bad_Name", "/nameOverride"),
        (
            "serviceMonitor.scrapeTimeout=10",
            "/serviceMonitor/scrapeTimeout",
        ),
        ("podMonitor.relabelings=x", "/podMonitor/relabelings"),
        (
            "podDisruptionBudget.unhealthyPodEvictionPolicy=Sometimes",
            "/podDisruptionBudget/unhealthyPodEvictionPolicy",
        ),
    ] {
        let out = env.helm(&["lint", &chart(), "--set", value]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "--set {value} must be rejected");
        assert!(
            text.contains("values don't meet the specifications of the schema"),
            "{value}: {text}"
        );
        assert!(
            text.contains(field),
            "{value}: the message names {field}: {text}"
        );
    }

    let ns = env.namespace("chart-render").await;
    let rendered = env.helm_ok(&[
        "template",
        "hostrole",
        "--skip-tests",
        &chart(),
        "-n",
        &ns,
        "--set",
        "serviceMonitor.enabled=false",
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "view.enabled=true",
    ]);
    // The view, when asked for, listens on the pod's loopback only (port-forward reaches it).
    assert!(
        rendered.contains("- --view-addr=127.0.0.1:8088"),
        "{rendered}"
    );
    let default = env.helm_ok(&["template", "hostrole", "--skip-tests", &chart(), "-n", &ns]);
    assert!(
        !default.contains("--view-addr"),
        "the view is off by default"
    );
    let dir = tempdir().expect("tempdir");
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &rendered).expect("write");
    let out = env.kubectl_ok(&[
        "apply",
        "--dry-run=server",
        "-n",
        &ns,
        "-f",
        file.to_str().expect("utf-8"),
    ]);
    for kind in [
        "deployment.apps",
        "serviceaccount",
        "clusterrole.rbac.authorization.k8s.io",
        "service",
        "networkpolicy",
        "poddisruptionbudget",
    ] {
        assert!(out.contains(kind), "{kind} is rendered: {out}");
    }
    assert!(
        !rendered.contains("\"*\"") && !rendered.contains("- '*'") && !rendered.contains("[*]"),
        "no wildcard in RBAC"
    );
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn install_upgrade_and_uninstall_leave_nothing_behind() {
    let env = Env::new().await;
    let ns = env.namespace("chart").await;
    let name = release("hr");
    env.helm_ok(&[
        "install",
        &name,
        &chart(),
        "-n",
        &ns,
        "--wait",
        "--timeout",
        "3m",
        "--set",
        "image.tag=e2e",
    ]);

    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &ns);
    let full = format!("{name}-hostrole-operator");
    let deployment = deployments
        .get(&full)
        .await
        .expect("the operator Deployment");
    let status = deployment.status.clone().expect("status");
    assert_eq!(
        status.ready_replicas,
        Some(2),
        "two replicas ready (the namespace enforces the restricted standard)"
    );
    let args = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers[0].args.clone().unwrap_or_default())
        .expect("args");
    assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
    assert!(
        args.contains(&"--agent-image=hostrole/agent:0.1.0".to_string()),
        "{args:?}"
    );

    let role: ClusterRole = Api::all(env.client.clone())
        .get(&full)
        .await
        .expect("the ClusterRole");
    for rule in role.rules.unwrap_or_default() {
        for list in [
            rule.verbs,
            rule.resources.unwrap_or_default(),
            rule.api_groups.unwrap_or_default(),
        ] {
            assert!(!list.iter().any(|x| x == "*"), "no wildcards in RBAC");
        }
    }
    let notes = env.helm_ok(&["get", "notes", &name, "-n", &ns]);
    assert!(
        notes.contains("kubectl apply -f -") && notes.contains("kind: HostRole"),
        "NOTES tell what to apply next: {notes}"
    );

    env.helm_ok(&[
        "upgrade",
        &name,
        &chart(),
        "-n",
        &ns,
        "--reuse-values",
        "--set",
        "logFormat=json",
        "--set",
        "replicaCount=3",
        "--wait",
        "--timeout",
        "3m",
    ]);
    let deployment = deployments.get(&full).await.expect("Deployment");
    let args = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers[0].args.clone().unwrap_or_default())
        .expect("args");
    assert!(
        args.contains(&"--log-format=json".to_string()),
        "the upgrade changed the args: {args:?}"
    );
    assert_eq!(deployment.status.and_then(|s| s.ready_replicas), Some(3));
    let history = env.helm_ok(&["history", &name, "-n", &ns, "-o", "json"]);
    assert!(history.contains("\"revision\":2"), "{history}");

    eprintln!(
        "note: `helm test` is skipped here: kwok simulates pods without running containers; e2e/kind.sh runs it"
    );

    env.helm_ok(&["uninstall", &name, "-n", &ns, "--wait", "--timeout", "2m"]);
    let selector = format!("app.kubernetes.io/instance={name}");
    let kinds = "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,poddisruptionbudgets,networkpolicies,clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings";
    // Pods of the deleted ReplicaSet may take a moment to go.
    eventually(
        "every object of the release is gone",
        Duration::from_secs(60),
        || async {
            let out = env.kubectl_ok(&["get", kinds, "-A", "-l", &selector, "-o", "name"]);
            out.trim().is_empty().then_some(())
        },
    )
    .await;
    env.kubectl_ok(&["get", "crd", "hostroles.hostrole.dev"]);
    env.delete_namespace(&ns).await;
}

/// Writes a kubeconfig that authenticates as a ServiceAccount, with a short-lived token (bound
/// to a pod when `pod` is given, as the kubelet's projected tokens are).
fn service_account_kubeconfig(
    env: &Env,
    ns: &str,
    sa: &str,
    pod: Option<&str>,
    dir: &TempDir,
) -> PathBuf {
    let mut args = vec!["create", "token", sa, "-n", ns, "--duration=1h"];
    if let Some(pod) = pod {
        args.extend(["--bound-object-kind", "Pod", "--bound-object-name", pod]);
    }
    let token = env.kubectl_ok(&args);
    let raw = env.kubectl_ok(&["config", "view", "--raw", "--minify", "-o", "json"]);
    let config: serde_json::Value = serde_json::from_str(&raw).expect("kubeconfig json");
    let cluster = &config["clusters"][0]["cluster"];
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": sa, "user": {"token": token.trim()}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": sa}}],
        "current-context": "sa",
    });
    let path = dir
        .path()
        .join(format!("{sa}-{}.kubeconfig", pod.unwrap_or("any")));
    std::fs::write(&path, serde_json::to_string(&kubeconfig).expect("json")).expect("write");
    path
}

#[tokio::test]
async fn the_chart_rbac_is_enough_for_the_operator_and_no_more() {
    let env = Env::new().await;
    let system = env.namespace("chart-rbac").await;
    let name = release("rbac");
    // The operator below runs with the e2e agent image; the admission policy allows only the
    // chart's agent image in StatefulSets, so the chart is told the same one.
    let (repository, tag) = AGENT_IMAGE.rsplit_once(':').expect("image:tag");
    env.helm_ok(&[
        "install",
        &name,
        &chart(),
        "-n",
        &system,
        "--set",
        "replicaCount=1",
        "--set",
        &format!("agent.image.repository={repository}"),
        "--set",
        &format!("agent.image.tag={tag}"),
    ]);
    let full = format!("{name}-hostrole-operator");
    let who = format!("system:serviceaccount:{system}:{full}");

    for (verb, resource, allowed) in [
        ("list", "hostroles.hostrole.dev", true),
        ("patch", "hostroles.hostrole.dev --subresource=status", true),
        ("patch", "statefulsets.apps", true),
        // A StatefulSet whose claim templates change is deleted (orphaning its pods) and applied.
        ("delete", "statefulsets.apps", true),
        ("delete", "services", true),
        ("create", "events.events.k8s.io", true),
        ("get", "hostroles.hostrole.dev", false),
        ("update", "hostroles.hostrole.dev", false),
        ("delete", "configmaps", false),
        ("get", "secrets", false),
        ("list", "secrets", false),
        ("delete", "secrets", false),
        ("create", "serviceaccounts --subresource=token", false),
        ("create", "pods", false),
        ("get", "nodes", false),
        // Namespace labels, for allowClientsFrom.namespaceSelector: read, never written.
        ("list", "namespaces", true),
        ("watch", "namespaces", true),
        ("patch", "namespaces", false),
        ("get", "namespaces", false),
    ] {
        let mut args = vec!["auth", "can-i", verb];
        args.extend(resource.split(' '));
        args.extend(["--as", &who, "-n", "default"]);
        let out = env.kubectl(&args);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            answer == "yes",
            allowed,
            "can {who} {verb} {resource}? {answer}"
        );
    }
    let lease_here = env.kubectl(&[
        "auth",
        "can-i",
        "patch",
        "leases.coordination.k8s.io",
        "--as",
        &who,
        "-n",
        &system,
    ]);
    assert_eq!(String::from_utf8_lossy(&lease_here.stdout).trim(), "yes");
    let lease_elsewhere = env.kubectl(&[
        "auth",
        "can-i",
        "patch",
        "leases.coordination.k8s.io",
        "--as",
        &who,
        "-n",
        "default",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&lease_elsewhere.stdout).trim(),
        "no",
        "the Lease role is confined to the release namespace"
    );

    // The real operator, authenticated as the chart's ServiceAccount, does its whole job.
    let dir = tempdir().expect("tempdir");
    let kubeconfig = service_account_kubeconfig(&env, &system, &full, None, &dir);
    let operator = env.operator_as(
        &kubeconfig,
        &[
            "--leader-elect",
            "--lease-namespace",
            &system,
            "--lease-name",
            &full,
            "--identity",
            "rbac-test",
            "--agent-cluster-role",
            &format!("{full}-agent"),
            "--network-policies",
        ],
    );
    let apps = env.namespace("chart-rbac-apps").await;
    env.kubectl_ok(&[
        "apply",
        "-n",
        &apps,
        "-f",
        repo_root()
            .join("examples/web-host.yaml")
            .to_str()
            .expect("utf-8"),
    ]);
    let hostroles: Api<HostRole> = Api::namespaced(env.client.clone(), &apps);
    eventually(
        "the HostRole is Ready under the chart's RBAC",
        Duration::from_secs(90),
        || async {
            let hr = hostroles.get("web").await.ok()?;
            let ready = hr
                .status
                .as_ref()?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            ready.then_some(())
        },
    )
    .await;
    let logs = operator.logs();
    // A namespace another test is deleting refuses new events with 403 NamespaceTerminating:
    // the API server's lifecycle, not a permission this operator lacks.
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.to_lowercase().contains("forbidden") && !l.contains("NamespaceTerminating"))
        .collect();
    assert!(
        refused.is_empty(),
        "no permission errors: {refused:?}\n{logs}"
    );
    let events = env.kubectl_ok(&["get", "events.events.k8s.io", "-n", &apps, "-o", "name"]);
    assert!(!events.trim().is_empty(), "events were published");
    let holder = env.kubectl_ok(&[
        "get",
        "lease",
        &full,
        "-n",
        &system,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "rbac-test");

    let sts = env.kubectl_ok(&["get", "statefulsets", "-n", &apps, "-o", "name"]);
    assert_eq!(sts.trim(), "statefulset.apps/web");

    // Clients, a peer network with its index, and NetworkPolicies: still nothing forbidden.
    let more = dir.path().join("more.yaml");
    std::fs::write(&more, MORE_HOSTROLES).expect("manifest");
    env.kubectl_ok(&["apply", "-n", &apps, "-f", more.to_str().expect("utf-8")]);
    for hr in ["laptop", "tracker", "family", "nas"] {
        eventually(
            &format!("{hr} is Ready under the chart's RBAC"),
            Duration::from_secs(90),
            || async {
                let hr = hostroles.get(hr).await.ok()?;
                hr.status
                    .as_ref()?
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
                    .then_some(())
            },
        )
        .await;
    }
    let made = env.kubectl_ok(&[
        "get",
        "serviceaccount/laptop-host",
        "rolebinding/laptop-host",
        "secret/peers-family",
        "service/peers-family",
        "networkpolicy/web",
        "networkpolicy/family",
        // Two hosts: a disruption budget, through RBAC and the admission policy.
        "poddisruptionbudget/family",
        "-n",
        &apps,
        "-o",
        "name",
    ]);
    assert_eq!(made.lines().count(), 7, "{made}");
    // Without reading a Secret, the operator learns which carry hostrole.dev/use (item 4): the
    // labelled users Secret is mounted, the unlabelled credentials are refused, by name.
    let nas = eventually(
        "nas refuses its unlabelled credentials under the chart's RBAC",
        Duration::from_secs(60),
        || async {
            let hr = hostroles.get("nas").await.ok()?;
            hr.status
                .as_ref()?
                .conditions
                .iter()
                .any(|c| c.type_ == "Degraded" && c.reason == "ReferenceNotAllowed")
                .then_some(hr)
        },
    )
    .await;
    let degraded = nas
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        degraded.contains("spec.clients[0].credentials.secret")
            && degraded.contains("not-for-hosts")
            && !degraded.contains("nas-users"),
        "{degraded}"
    );
    let volumes = env.kubectl_ok(&[
        "get",
        "statefulset",
        "nas",
        "-n",
        &apps,
        "-o",
        "jsonpath={.spec.template.spec.volumes[*].secret.secretName}",
    ]);
    assert_eq!(volumes.trim(), "nas-users");
    let logs = operator.logs();
    // A namespace another test is deleting refuses new events with 403 NamespaceTerminating:
    // the API server's lifecycle, not a permission this operator lacks.
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.to_lowercase().contains("forbidden") && !l.contains("NamespaceTerminating"))
        .collect();
    assert!(
        refused.is_empty(),
        "no permission errors: {refused:?}\n{logs}"
    );

    // A peer gaining storage changes the StatefulSet's claim templates, which cannot change:
    // the operator deletes it (orphaning pods and claims) and applies the new one.
    let statefulsets: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(env.client.clone(), &apps);
    let old_uid = statefulsets
        .get("family")
        .await
        .expect("family's StatefulSet")
        .metadata
        .uid;
    env.kubectl_ok(&[
        "patch",
        "hrole",
        "family",
        "-n",
        &apps,
        "--type=merge",
        "-p",
        r#"{"spec":{"peer":{"share":{"storage":"1Gi"}}}}"#,
    ]);
    eventually(
        "the StatefulSet is recreated with a claim template under the chart's RBAC",
        Duration::from_secs(60),
        || async {
            let sts = statefulsets.get("family").await.ok()?;
            let claims = sts.spec.as_ref()?.volume_claim_templates.as_ref()?.len();
            (sts.metadata.uid != old_uid && claims == 1).then_some(())
        },
    )
    .await;
    let logs = operator.logs();
    // A namespace another test is deleting refuses new events with 403 NamespaceTerminating:
    // the API server's lifecycle, not a permission this operator lacks.
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.to_lowercase().contains("forbidden") && !l.contains("NamespaceTerminating"))
        .collect();
    assert!(
        refused.is_empty(),
        "no permission errors: {refused:?}\n{logs}"
    );

    // The laptop's agent may report on its own pod, its client conditions only; nothing else.
    let agent = format!("system:serviceaccount:{apps}:laptop-host");
    for (verb, resource, allowed) in [
        ("patch", "pods --subresource=status", true),
        ("get", "pods", false),
        ("patch", "pods", false),
        ("get", "secrets", false),
        ("list", "hostroles.hostrole.dev", false),
    ] {
        let mut args = vec!["auth", "can-i", verb];
        args.extend(resource.split(' '));
        args.extend(["--as", &agent, "-n", &apps]);
        let out = env.kubectl(&args);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(
            answer == "yes",
            allowed,
            "can {agent} {verb} {resource}? {answer}"
        );
    }
    let agent_config =
        service_account_kubeconfig(&env, &apps, "laptop-host", Some("laptop-0"), &dir);
    // Exactly the agent's call: a server-side apply of conditions on pods/status, no read.
    let kubeconfig = kube::config::Kubeconfig::read_from(&agent_config).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    let agent_client = kube::Client::try_from(config).expect("client");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(agent_client, &apps);
    let as_agent = |pod: &'static str, condition: &'static str, status: &'static str| {
        let pods = pods.clone();
        async move {
            let patch = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "status": {"conditions": [{
                    "type": condition,
                    "status": status,
                    "reason": "Succeeded",
                    "message": "latencyMs=7; lastSuccess=2026-11-25T03:00:00Z; GET → 200",
                }]},
            });
            pods.patch_status(
                pod,
                &kube::api::PatchParams::apply("hostrole-agent").force(),
                &kube::api::Patch::Apply(&patch),
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        }
    };
    let own = as_agent("laptop-0", "clients.hostrole.dev/web-0", "True").await;
    assert!(own.is_ok(), "{own:?}");
    let other = as_agent("web-0", "clients.hostrole.dev/web-0", "True").await;
    assert!(
        other
            .as_ref()
            .is_err_and(|e| e.contains("only report on its own pod")),
        "{other:?}"
    );
    let ready = as_agent("laptop-0", "Ready", "False").await;
    assert!(
        ready
            .as_ref()
            .is_err_and(|e| e.contains("only change its clients.hostrole.dev")),
        "{ready:?}"
    );
    // The operator reads the report into the laptop's status.
    eventually(
        "the laptop's web client shows as healthy",
        Duration::from_secs(60),
        || async {
            let hr = hostroles.get("laptop").await.ok()?;
            let status = hr.status?;
            let c = status.hosts.first()?.clients.first()?.clone();
            (c.ok && c.latency_ms == Some(7) && status.clients == "1/1").then_some(())
        },
    )
    .await;
    drop(operator);
    env.helm_ok(&["uninstall", &name, "-n", &system]);
    env.delete_namespace(&apps).await;
    env.delete_namespace(&system).await;
}

/// A host with a web client of `web`, and a hybrid peer network with its index.
const MORE_HOSTROLES: &str = r#"apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: laptop}
spec:
  clients:
    - {service: web, server: web}
---
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: tracker}
spec:
  servers:
    index: {port: 7000}
---
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: family}
spec:
  replicas: 2
  peer: {network: family, index: tracker}
---
apiVersion: v1
kind: Secret
metadata:
  name: nas-users
  labels: {hostrole.dev/use: "true"}
stringData: {users: "alice:$argon2id$v=19$m=19456,t=2,p=1$O/XIN5GQYily1IMlO0m5Ag$JYMabtH6rNn4sSxr01vli81N3DeANpvEwv81ZevXC64"}
---
apiVersion: v1
kind: Secret
metadata: {name: not-for-hosts}
type: kubernetes.io/basic-auth
stringData: {username: alice, password: change-me}
---
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: nas}
spec:
  servers:
    file: {users: {secret: nas-users}}
  clients:
    - {service: file, server: nas, credentials: {secret: not-for-hosts}}
"#;

/// Runs kubectl with another kubeconfig; Ok(stdout) or Err(stderr).
fn kubectl_as(env: &Env, kubeconfig: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["--kubeconfig", kubeconfig.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    let out = env.kubectl(&all);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Creates the objects of `yaml` in `ns` with another kubeconfig.
fn create_as(
    env: &Env,
    kubeconfig: &std::path::Path,
    ns: &str,
    yaml: &str,
) -> Result<String, String> {
    let dir = tempdir().expect("tempdir");
    let file = dir.path().join("object.yaml");
    std::fs::write(&file, yaml).expect("write");
    kubectl_as(
        env,
        kubeconfig,
        &["create", "-n", ns, "-f", file.to_str().expect("utf-8")],
    )
}

/// A client authenticated by a kubeconfig file.
async fn client_from(kubeconfig: &std::path::Path) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    kube::Client::try_from(config).expect("client")
}

/// Asserts that the chart's admission policy refused a write, with `why` in its message.
fn refused(what: &str, result: Result<String, String>, why: &str) {
    match result {
        Ok(out) => panic!("{what} was allowed: {out}"),
        Err(e) => assert!(
            e.contains("ValidatingAdmissionPolicy") && e.contains(why),
            "{what}: refused for another reason than {why:?}: {e}"
        ),
    }
}

const MANAGED_LABELS: &str = "{app.kubernetes.io/managed-by: hostrole-operator}";

#[tokio::test]
async fn a_compromised_operator_can_write_only_the_objects_it_makes() {
    let env = Env::new().await;
    let system = env.namespace("chart-vap").await;
    let name = release("vap");
    env.helm_ok(&[
        "install",
        &name,
        &chart(),
        "-n",
        &system,
        "--set",
        "replicaCount=1",
    ]);
    let full = format!("{name}-hostrole-operator");
    let apps = env.namespace("chart-vap-apps").await;
    // Someone else's objects in a namespace the operator serves.
    env.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        &apps,
        "--from-literal=db=prod",
    ]);
    env.kubectl_ok(&["create", "serviceaccount", "deployer", "-n", &apps]);
    let dir = tempdir().expect("tempdir");
    let operator = service_account_kubeconfig(&env, &system, &full, None, &dir);

    // The policies take effect once the API server has loaded them: probe the first and the
    // last of the chart's (each probe that gets through is a harmless object of its own).
    let mut attempt = 0;
    eventually(
        "the operator's admission policies are in force",
        Duration::from_secs(30),
        || {
            attempt += 1;
            let unlabelled =
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: probe-{attempt}}}\n");
            let every_pod = format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: probe-{attempt}\n  labels: {MANAGED_LABELS}\nspec: {{podSelector: {{matchLabels: {{app: probe}}}}}}\n"
            );
            let in_force = create_as(&env, &operator, &apps, &unlabelled).is_err()
                && create_as(&env, &operator, &apps, &every_pod).is_err();
            async move { in_force.then_some(()) }
        },
    )
    .await;

    // Minting a token for any ServiceAccount, to read it back from the create's answer.
    refused(
        "a service-account token Secret",
        create_as(
            &env,
            &operator,
            &apps,
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: peers-token\n  labels: {MANAGED_LABELS}\n  annotations: {{kubernetes.io/service-account.name: deployer}}\ntype: kubernetes.io/service-account-token\n"
            ),
        ),
        "named peers-*, of type Opaque",
    );
    refused(
        "an Opaque Secret not named peers-*",
        create_as(
            &env,
            &operator,
            &apps,
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: registry-login\n  labels: {MANAGED_LABELS}\ntype: Opaque\nstringData: {{token: abc}}\n"
            ),
        ),
        "named peers-*, of type Opaque",
    );
    refused(
        "an unlabelled Secret",
        create_as(
            &env,
            &operator,
            &apps,
            "apiVersion: v1\nkind: Secret\nmetadata: {name: peers-unlabelled}\ntype: Opaque\n",
        ),
        "labelled app.kubernetes.io/managed-by=hostrole-operator",
    );
    refused(
        "a patch of someone else's ConfigMap",
        kubectl_as(
            &env,
            &operator,
            &[
                "patch",
                "configmap",
                "settings",
                "-n",
                &apps,
                "--type=merge",
                "-p",
                r#"{"data":{"db":"attacker"}}"#,
            ],
        ),
        "labelled app.kubernetes.io/managed-by=hostrole-operator",
    );
    refused(
        "taking over someone else's ConfigMap by labelling it",
        kubectl_as(
            &env,
            &operator,
            &[
                "patch",
                "configmap",
                "settings",
                "-n",
                &apps,
                "--type=merge",
                "-p",
                r#"{"metadata":{"labels":{"app.kubernetes.io/managed-by":"hostrole-operator"}}}"#,
            ],
        ),
        "may not take over an object it did not create",
    );
    refused(
        "deleting someone else's ServiceAccount",
        kubectl_as(
            &env,
            &operator,
            &["delete", "serviceaccount", "deployer", "-n", &apps],
        ),
        "labelled app.kubernetes.io/managed-by=hostrole-operator",
    );
    refused(
        "a StatefulSet running another image",
        create_as(
            &env,
            &operator,
            &apps,
            &format!(
                "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: miner\n  labels: {MANAGED_LABELS}\nspec:\n  serviceName: miner\n  selector: {{matchLabels: {{app.kubernetes.io/name: hostrole-host}}}}\n  template:\n    metadata: {{labels: {{app.kubernetes.io/name: hostrole-host}}}}\n    spec:\n      containers: [{{name: agent, image: example.invalid/miner:1}}]\n"
            ),
        ),
        "runs the agent image only",
    );
    refused(
        "a StatefulSet mounting a Secret through a hostPath",
        create_as(
            &env,
            &operator,
            &apps,
            &format!(
                "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: peek\n  labels: {MANAGED_LABELS}\nspec:\n  serviceName: peek\n  selector: {{matchLabels: {{app.kubernetes.io/name: hostrole-host}}}}\n  template:\n    metadata: {{labels: {{app.kubernetes.io/name: hostrole-host}}}}\n    spec:\n      containers: [{{name: agent, image: hostrole/agent:0.1.0}}]\n      volumes: [{{name: node, hostPath: {{path: /}}}}]\n"
            ),
        ),
        "runs the agent image only",
    );
    refused(
        "a Service with externalIPs (intercepting traffic to that address)",
        create_as(
            &env,
            &operator,
            &apps,
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: intercept\n  labels: {MANAGED_LABELS}\nspec:\n  selector: {{app.kubernetes.io/name: hostrole-host}}\n  externalIPs: [10.0.0.1]\n  ports: [{{port: 443}}]\n"
            ),
        ),
        "without externalIPs",
    );
    refused(
        "a RoleBinding granting the agent role to another ServiceAccount",
        create_as(
            &env,
            &operator,
            &apps,
            &format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: web-host\n  labels: {MANAGED_LABELS}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {full}-agent}}\nsubjects: [{{kind: ServiceAccount, name: deployer, namespace: {apps}}}]\n"
            ),
        ),
        "binds the agent ClusterRole to the host ServiceAccount of the same name",
    );
    refused(
        "a NetworkPolicy isolating every pod of the namespace",
        create_as(
            &env,
            &operator,
            &apps,
            &format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: lockdown\n  labels: {MANAGED_LABELS}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress]\n"
            ),
        ),
        "selects host pods only",
    );
    refused(
        "a PodDisruptionBudget that freezes every pod of the namespace against drains",
        create_as(
            &env,
            &operator,
            &apps,
            &format!(
                "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: freeze\n  labels: {MANAGED_LABELS}\nspec:\n  maxUnavailable: 0\n  selector: {{}}\n"
            ),
        ),
        "selects the hosts of one HostRole only",
    );
    refused(
        "a PodDisruptionBudget over every host of the namespace, whatever HostRole",
        create_as(
            &env,
            &operator,
            &apps,
            &format!(
                "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: freeze-hosts\n  labels: {MANAGED_LABELS}\nspec:\n  maxUnavailable: 0\n  selector:\n    matchLabels: {{app.kubernetes.io/name: hostrole-host}}\n"
            ),
        ),
        "selects the hosts of one HostRole only",
    );

    // What the operator does make still passes: a network Secret, a host ConfigMap.
    let network_secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: peers-ok\n  labels: {MANAGED_LABELS}\ntype: Opaque\nstringData: {{secret: abc}}\n"
    );
    create_as(&env, &operator, &apps, &network_secret).expect("a network Secret");
    create_as(
        &env,
        &operator,
        &apps,
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-host\n  labels: {MANAGED_LABELS}\n"),
    )
    .expect("a host ConfigMap");
    // (kubectl patch reads the object first, which the operator may not do for Secrets.)
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client_from(&operator).await, &apps);
    refused(
        "changing a network secret's value",
        secrets
            .patch(
                "peers-ok",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({"stringData": {"secret": "known"}})),
            )
            .await
            .map(|_| String::new())
            .map_err(|e| e.to_string()),
        "never changes the value of a network secret",
    );
    // And nothing of the refused writes happened.
    let settings = env.kubectl_ok(&["get", "configmap", "settings", "-n", &apps, "-o", "json"]);
    assert!(
        settings.contains("\"db\": \"prod\"") && !settings.contains("hostrole-operator"),
        "{settings}"
    );
    env.kubectl_ok(&["get", "serviceaccount", "deployer", "-n", &apps]);
    let secrets = env.kubectl_ok(&["get", "secrets", "-n", &apps, "-o", "name"]);
    assert_eq!(secrets.trim(), "secret/peers-ok", "{secrets}");

    env.helm_ok(&["uninstall", &name, "-n", &system]);
    env.delete_namespace(&apps).await;
    env.delete_namespace(&system).await;
}

#[tokio::test]
async fn a_host_agent_cannot_change_its_pod_beyond_its_client_conditions() {
    let env = Env::new().await;
    let system = env.namespace("chart-agent").await;
    let name = release("agent");
    env.helm_ok(&[
        "install",
        &name,
        &chart(),
        "-n",
        &system,
        "--set",
        "replicaCount=1",
    ]);
    let full = format!("{name}-hostrole-operator");
    let apps = env.namespace("chart-agent-apps").await;
    // The policy applies to the ServiceAccounts the operator makes for hosts with clients,
    // found by their labels: those of a real one (the operator's own doing) are selected.
    let binding: serde_json::Value = serde_json::from_str(&env.kubectl_ok(&[
        "get",
        "validatingadmissionpolicybinding",
        &format!("{full}-agent-own-pod"),
        "-o",
        "json",
    ]))
    .expect("json");
    let host_labels = binding["spec"]["paramRef"]["selector"]["matchLabels"].clone();
    {
        let _operator = env.operator(&apps, &["--agent-cluster-role", &format!("{full}-agent")]);
        let (_dir, hosts) = dir_file(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: web}\nspec:\n  servers:\n    web:\n      site:\n        files: [{path: index.html, content: hi}]\n---\napiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: probe}\nspec:\n  clients:\n    - {service: web, server: web}\n",
        );
        env.kubectl_ok(&["apply", "-n", &apps, "-f", hosts.to_str().expect("utf-8")]);
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(env.client.clone(), &apps);
        let made = eventually(
            "the operator makes the host's ServiceAccount",
            Duration::from_secs(60),
            || async { accounts.get_opt("probe-host").await.ok().flatten() },
        )
        .await;
        let labels = serde_json::to_value(&made.metadata.labels).expect("labels");
        assert!(
            selects(&host_labels, &labels),
            "the policy's parameters select the operator's host ServiceAccounts: {host_labels} in {labels}"
        );
        env.kubectl_ok(&["delete", "hostroles", "--all", "-n", &apps, "--wait"]);
    }
    let host_labels = host_labels
        .as_object()
        .expect("matchLabels")
        .iter()
        .map(|(k, v)| format!("{k}: {}", v.as_str().expect("a string")))
        .collect::<Vec<_>>()
        .join(", ");
    // What the operator makes for a host with clients: its ServiceAccount bound to the agent
    // ClusterRole, and its pod (here made directly, restricted as the operator's are).
    let pod = |pod: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  labels: {{app.kubernetes.io/name: hostrole-host, app.kubernetes.io/instance: spy}}\nspec:\n  serviceAccountName: spy-host\n  securityContext: {{runAsNonRoot: true, runAsUser: 65532, seccompProfile: {{type: RuntimeDefault}}}}\n  containers:\n    - name: agent\n      image: example.invalid/hostrole-agent:e2e\n      securityContext: {{allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}\n---\n"
        )
    };
    let dir = tempdir().expect("tempdir");
    let manifest = dir.path().join("spy.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: spy-host, labels: {{{host_labels}}}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: spy-host}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {full}-agent}}\nsubjects: [{{kind: ServiceAccount, name: spy-host, namespace: {apps}}}]\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: foo-host}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: foo-host}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {full}-agent}}\nsubjects: [{{kind: ServiceAccount, name: foo-host, namespace: {apps}}}]\n---\n{}{}",
            pod("spy-0"),
            pod("other-0")
        ),
    )
    .expect("write");
    env.kubectl_ok(&[
        "apply",
        "-n",
        &apps,
        "-f",
        manifest.to_str().expect("utf-8"),
    ]);
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(env.client.clone(), &apps);
    let before = eventually(
        "the pod runs, with an IP",
        Duration::from_secs(60),
        || async {
            let p = pods.get("spy-0").await.ok()?;
            let ready = hostrole_operator::status::pod_ready(&p);
            (ready && p.status.as_ref()?.pod_ip.is_some()).then_some(p)
        },
    )
    .await;

    let kubeconfig = service_account_kubeconfig(&env, &apps, "spy-host", Some("spy-0"), &dir);
    let agent: Api<k8s_openapi::api::core::v1::Pod> =
        Api::namespaced(client_from(&kubeconfig).await, &apps);
    let merge = |body: serde_json::Value| {
        let agent = agent.clone();
        async move {
            agent
                .patch_status(
                    "spy-0",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&body),
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };
    // In force once reporting on another pod is refused.
    eventually(
        "the agent's admission policy is in force",
        Duration::from_secs(30),
        || async {
            let body = serde_json::json!({"status": {"conditions": [{"type": "clients.hostrole.dev/web-0", "status": "True"}]}});
            agent
                .patch_status("other-0", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&body))
                .await
                .is_err()
                .then_some(())
        },
    )
    .await;
    // Another ServiceAccount named like a host's, without the operator's labels (someone else's
    // controller that happens to be called foo-host): the policy leaves it alone, wherever it
    // writes and whatever condition.
    let foo = service_account_kubeconfig(&env, &apps, "foo-host", None, &dir);
    let foo: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client_from(&foo).await, &apps);
    let body = serde_json::json!({"status": {"conditions": [{"type": "example.com/Checked", "status": "True"}]}});
    foo.patch_status(
        "other-0",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Strategic(&body),
    )
    .await
    .expect("the policy does not match a ServiceAccount without the operator's labels");

    let expect_refused = |what: &str, result: Result<(), String>, why: &str| match result {
        Ok(()) => panic!("the agent could change {what}"),
        Err(e) => assert!(e.contains(why), "{what}: {e}"),
    };

    // Its own client condition: allowed (what the agent is for).
    let own = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "status": {"conditions": [{"type": "clients.hostrole.dev/web-0", "status": "True", "reason": "Ok"}]},
    });
    agent
        .patch_status(
            "spy-0",
            &kube::api::PatchParams::apply("hostrole-agent").force(),
            &kube::api::Patch::Apply(&own),
        )
        .await
        .expect("the agent reports its client result");

    let status_only = "nothing else of its pod's status";
    // Its pod IP: the endpoints of every Service selecting the pod would send traffic there.
    expect_refused(
        "its pod IP",
        merge(
            serde_json::json!({"status": {"podIP": "10.96.0.1", "podIPs": [{"ip": "10.96.0.1"}]}}),
        )
        .await,
        status_only,
    );
    expect_refused(
        "its phase",
        merge(serde_json::json!({"status": {"phase": "Failed"}})).await,
        status_only,
    );
    expect_refused(
        "its status message",
        merge(serde_json::json!({"status": {"message": "all good, nothing to see"}})).await,
        status_only,
    );
    expect_refused(
        "its container states",
        merge(serde_json::json!({"status": {"containerStatuses": []}})).await,
        status_only,
    );
    // pods/status also writes metadata: a new label would make the pod another HostRole's host.
    expect_refused(
        "its labels",
        merge(serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/instance": "web"}}}))
            .await,
        "labels, annotations or finalizers",
    );
    expect_refused(
        "its finalizers",
        merge(serde_json::json!({"metadata": {"finalizers": ["example.com/keep"]}})).await,
        "labels, annotations or finalizers",
    );
    // Another condition, even keeping its status: only client conditions are the agent's.
    let ready = before
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().position(|c| c.type_ == "Ready"))
        .expect("a Ready condition");
    let json_patch = |ops: serde_json::Value| {
        let agent = agent.clone();
        async move {
            let patch: json_patch::Patch = serde_json::from_value(ops).expect("json patch");
            agent
                .patch_status(
                    "spy-0",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::<()>::Json(patch),
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };
    expect_refused(
        "the message of its Ready condition",
        json_patch(serde_json::json!([{"op": "add", "path": format!("/status/conditions/{ready}/message"), "value": "trust me"}])).await,
        "only change its clients.hostrole.dev/* conditions",
    );
    expect_refused(
        "removing its Ready condition",
        json_patch(
            serde_json::json!([{"op": "remove", "path": format!("/status/conditions/{ready}")}]),
        )
        .await,
        "only change its clients.hostrole.dev/* conditions",
    );

    let after = pods.get("spy-0").await.expect("pod");
    let (b, a) = (
        before.status.expect("status"),
        after.status.expect("status"),
    );
    assert_eq!(a.pod_ip, b.pod_ip);
    assert_eq!(a.phase, b.phase);
    assert_eq!(after.metadata.labels, before.metadata.labels);
    assert_eq!(after.metadata.finalizers, before.metadata.finalizers);
    env.helm_ok(&["uninstall", &name, "-n", &system]);
    env.delete_namespace(&apps).await;
    env.delete_namespace(&system).await;
}

/// Copies a directory tree (the chart, into an umbrella chart's `charts/`).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn the_chart_works_as_a_subchart_with_a_global_registry_pull_secrets_and_digests() {
    let env = Env::new().await;
    // An umbrella chart, as a platform team writes one: `global` shared with every subchart
    // (with keys this chart does not know), and this chart's values under its name.
    let dir = tempdir().expect("tempdir");
    let umbrella = dir.path().join("platform");
    copy_tree(
        &repo_root().join("charts/hostrole-operator"),
        &umbrella.join("charts/hostrole-operator"),
    );
    std::fs::write(
        umbrella.join("Chart.yaml"),
        "apiVersion: v2\nname: platform\nversion: 1.0.0\ndependencies:\n  - name: hostrole-operator\n    version: 0.1.0\n",
    )
    .expect("Chart.yaml");
    std::fs::write(
        umbrella.join("values.yaml"),
        format!(
            "global:\n  imageRegistry: registry.example.com\n  imagePullSecrets: [regcred]\n  storageClass: shared\nhostrole-operator:\n  replicaCount: 1\n  agent:\n    image:\n      digest: {DIGEST}\n"
        ),
    )
    .expect("values.yaml");
    let umbrella = umbrella.to_str().expect("utf-8");
    env.helm_ok(&["lint", "--strict", umbrella]);

    let system = env.namespace("chart-sub").await;
    let name = release("sub");
    let rendered = env.helm_ok(&["template", &name, umbrella, "-n", &system]);
    let agent = format!("registry.example.com/hostrole/agent@{DIGEST}");
    for expect in [
        "image: registry.example.com/hostrole/operator:0.1.0".to_string(),
        format!("--agent-image={agent}"),
        "--agent-image-pull-secrets=regcred".to_string(),
        format!("c.image == '{agent}'"),
    ] {
        assert!(rendered.contains(&expect), "{expect} in:\n{rendered}");
    }

    env.helm_ok(&[
        "install",
        &name,
        umbrella,
        "-n",
        &system,
        "--wait",
        "--timeout",
        "3m",
    ]);
    let full = format!("{name}-hostrole-operator");
    let deployment: Deployment = Api::namespaced(env.client.clone(), &system)
        .get(&full)
        .await
        .expect("the operator Deployment");
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .expect("pod spec");
    let secrets: Vec<String> = pod
        .image_pull_secrets
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(secrets, ["regcred"]);

    // The admission policy allows the pinned agent image, exactly: a compromised operator may
    // not swap in the same repository at a tag.
    let operator = service_account_kubeconfig(&env, &system, &full, None, &dir);
    let apps = env.namespace("chart-sub-apps").await;
    let statefulset = |name: &str, image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: {name}\n  labels: {MANAGED_LABELS}\nspec:\n  serviceName: {name}\n  selector: {{matchLabels: {{app.kubernetes.io/name: hostrole-host}}}}\n  template:\n    metadata: {{labels: {{app.kubernetes.io/name: hostrole-host}}}}\n    spec:\n      containers: [{{name: agent, image: '{image}'}}]\n"
        )
    };
    let mut attempt = 0;
    let tagged = eventually(
        "the admission policy is in force",
        Duration::from_secs(30),
        || {
            attempt += 1;
            let result = create_as(
                &env,
                &operator,
                &apps,
                &statefulset(
                    &format!("tagged-{attempt}"),
                    "registry.example.com/hostrole/agent:0.1.0",
                ),
            );
            async move { result.is_err().then_some(result) }
        },
    )
    .await;
    refused("the agent at a tag", tagged, "runs the agent image only");
    create_as(&env, &operator, &apps, &statefulset("pinned", &agent))
        .expect("the pinned agent image is allowed");

    env.helm_ok(&["uninstall", &name, "-n", &system]);
    env.delete_namespace(&apps).await;
    env.delete_namespace(&system).await;
}

#[tokio::test]
async fn helm_test_runs_the_operator_image_against_the_watched_namespace() {
    let env = Env::new().await;
    let system = env.namespace("chart-test").await;
    let apps = env.namespace("chart-test-apps").await;
    let name = release("test");
    let (repository, tag) = AGENT_IMAGE.rsplit_once(':').expect("image:tag");
    env.helm_ok(&[
        "install",
        &name,
        &chart(),
        "-n",
        &system,
        "--set",
        "replicaCount=1",
        "--set",
        &format!("watchNamespace={apps}"),
        "--set",
        &format!("agent.image.repository={repository}"),
        "--set",
        &format!("agent.image.tag={tag}"),
        "--wait",
        "--timeout",
        "3m",
    ]);
    let full = format!("{name}-hostrole-operator");
    let deployment: Deployment = Api::namespaced(env.client.clone(), &system)
        .get(&full)
        .await
        .expect("the operator Deployment");
    let operator_image = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers[0].image.clone())
        .expect("operator image");
    let selector = deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .expect("selector");

    // The test hook as Helm would create it.
    let hooks = env.helm_ok(&["get", "hooks", &name, "-n", &system]);
    let mut pod = None;
    let mut rest = String::new();
    for doc in hooks.split("\n---") {
        let value: serde_json::Value = match serde_yaml::from_str(doc) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if value["kind"] == "Pod" {
            pod = Some(value);
        } else if value.is_object() {
            rest.push_str(doc);
            rest.push_str("\n---\n");
        }
    }
    let pod = pod.expect("a test Pod among the hooks");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        container["image"].as_str(),
        Some(operator_image.as_str()),
        "helm test runs the operator's own image: {pod}"
    );
    let labels = &pod["metadata"]["labels"];
    assert!(
        !selector
            .iter()
            .all(|(k, v)| labels[k].as_str() == Some(v.as_str())),
        "the test pod does not carry the operator's selector labels: {labels}"
    );
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    assert!(
        args.contains(&format!("--namespace={apps}")),
        "the test HostRole goes where the operator looks: {args:?}"
    );

    // Its ServiceAccount and roles, then its command, as the pod would run it.
    let dir = tempdir().expect("tempdir");
    let file = dir.path().join("hooks.yaml");
    std::fs::write(&file, &rest).expect("write");
    env.kubectl_ok(&["apply", "-f", file.to_str().expect("utf-8")]);
    let kubeconfig = service_account_kubeconfig(&env, &system, &format!("{full}-test"), None, &dir);
    let operator_config = service_account_kubeconfig(&env, &system, &full, None, &dir);
    let _operator = env.operator_as(
        &operator_config,
        &[
            "--watch-namespace",
            &apps,
            "--agent-cluster-role",
            &format!("{full}-agent"),
        ],
    );
    let out = std::process::Command::new(&env.operator_bin)
        .args(&args)
        .env("KUBECONFIG", &kubeconfig)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the self-test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "self-test failed: {text}");
    assert!(text.contains("is Ready"), "{text}");
    let hostroles: Api<HostRole> = Api::namespaced(env.client.clone(), &apps);
    eventually(
        "the test HostRole is deleted",
        Duration::from_secs(60),
        || async {
            hostroles
                .get_opt("helm-test")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    env.helm_ok(&["uninstall", &name, "-n", &system]);
    env.delete_namespace(&apps).await;
    env.delete_namespace(&system).await;
}

/// The size a claim requests.
async fn claim_size(env: &Env, ns: &str, name: &str) -> Option<String> {
    let pvc: k8s_openapi::api::core::v1::PersistentVolumeClaim =
        Api::namespaced(env.client.clone(), ns)
            .get(name)
            .await
            .ok()?;
    Some(pvc.spec?.resources?.requests?.get("storage")?.0.clone())
}

#[tokio::test]
async fn storage_grows_in_place_under_the_chart_rbac_or_the_status_says_why_not() {
    let env = Env::new().await;
    let system = env.namespace("chart-storage").await;
    let name = release("storage");
    let (repository, tag) = AGENT_IMAGE.rsplit_once(':').expect("image:tag");
    env.helm_ok(&[
        "install",
        &name,
        &chart(),
        "-n",
        &system,
        "--set",
        "replicaCount=1",
        "--set",
        &format!("agent.image.repository={repository}"),
        "--set",
        &format!("agent.image.tag={tag}"),
    ]);
    let full = format!("{name}-hostrole-operator");
    let who = format!("system:serviceaccount:{system}:{full}");
    for (verb, allowed) in [
        ("get", true),
        ("patch", true),
        ("list", false),
        ("create", false),
        ("delete", false),
    ] {
        let out = env.kubectl(&[
            "auth",
            "can-i",
            verb,
            "persistentvolumeclaims",
            "--as",
            &who,
            "-n",
            "default",
        ]);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(answer == "yes", allowed, "{verb} claims? {answer}");
    }
    // Two classes: one that lets claims grow, one that does not (no provisioner runs here: the
    // harness binds each claim to a volume of its class).
    let suffix = &name[name.len() - 4..];
    let (growing, fixed) = (format!("e2e-grows-{suffix}"), format!("e2e-fixed-{suffix}"));
    let classes = dir_file(&format!(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: {growing}}}\nprovisioner: example.com/none\nallowVolumeExpansion: true\nvolumeBindingMode: Immediate\n---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{name: {fixed}}}\nprovisioner: example.com/none\nvolumeBindingMode: Immediate\n"
    ));
    env.kubectl_ok(&["apply", "-f", classes.1.to_str().expect("utf-8")]);

    let dir = tempdir().expect("tempdir");
    let kubeconfig = service_account_kubeconfig(&env, &system, &full, None, &dir);
    let apps = env.namespace("chart-storage-apps").await;
    // Only its own namespace: an operator watching every namespace would also reconcile the
    // HostRoles of the tests running beside this one, with other flags.
    let _operator = env.operator_as(
        &kubeconfig,
        &[
            "--watch-namespace",
            &apps,
            "--agent-cluster-role",
            &format!("{full}-agent"),
        ],
    );
    let _volumes = env.provision_volumes(&apps);
    let hostroles = dir_file(&format!(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: nas}}\nspec:\n  servers: {{file: {{storage: 1Gi}}}}\n  template: {{storageClassName: {growing}}}\n---\napiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: attic}}\nspec:\n  servers: {{file: {{storage: 1Gi}}}}\n  template: {{storageClassName: {fixed}}}\n"
    ));
    env.kubectl_ok(&[
        "apply",
        "-n",
        &apps,
        "-f",
        hostroles.1.to_str().expect("utf-8"),
    ]);
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(env.client.clone(), &apps);
    for claim in ["file-data-nas-0", "file-data-attic-0"] {
        eventually(
            &format!("{claim} is bound"),
            Duration::from_secs(90),
            || async {
                let pvc = claims.get(claim).await.ok()?;
                (pvc.status?.phase.as_deref() == Some("Bound")).then_some(())
            },
        )
        .await;
    }
    for hr in ["nas", "attic"] {
        env.kubectl_ok(&[
            "patch",
            "hrole",
            hr,
            "-n",
            &apps,
            "--type=merge",
            "-p",
            r#"{"spec":{"servers":{"file":{"storage":"2Gi"}}}}"#,
        ]);
    }
    eventually(
        "nas's claim grows to 2Gi in place",
        Duration::from_secs(60),
        || async { (claim_size(&env, &apps, "file-data-nas-0").await? == "2Gi").then_some(()) },
    )
    .await;
    let hostroles: Api<HostRole> = Api::namespaced(env.client.clone(), &apps);
    let degraded = eventually(
        "attic says its claim cannot grow",
        Duration::from_secs(60),
        || async {
            let hr = hostroles.get("attic").await.ok()?;
            hr.status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Degraded" && c.reason == "StorageNotExpanded")
        },
    )
    .await;
    assert!(
        degraded.message.contains("spec.servers.file.storage")
            && degraded.message.contains("file-data-attic-0")
            && degraded.message.contains("allowVolumeExpansion"),
        "{}",
        degraded.message
    );
    assert_eq!(
        claim_size(&env, &apps, "file-data-attic-0")
            .await
            .as_deref(),
        Some("1Gi")
    );
    // New hosts get the new size from the StatefulSet (recreated under the chart's RBAC).
    let sts = env.kubectl_ok(&[
        "get",
        "statefulset",
        "nas",
        "-n",
        &apps,
        "-o",
        "jsonpath={.spec.volumeClaimTemplates[0].spec.resources.requests.storage}",
    ]);
    assert_eq!(sts.trim(), "2Gi");
    // The operator may grow a claim, nothing else of it.
    refused(
        "relabelling a host's claim",
        kubectl_as(
            &env,
            &kubeconfig,
            &[
                "patch",
                "pvc",
                "file-data-nas-0",
                "-n",
                &apps,
                "--type=merge",
                "-p",
                r#"{"metadata":{"labels":{"app.kubernetes.io/instance":"attic"}}}"#,
            ],
        ),
        "only grow the storage request",
    );
    env.helm_ok(&["uninstall", &name, "-n", &system]);
    env.delete_namespace(&apps).await;
    env.delete_namespace(&system).await;
    let _ = env.kubectl(&["delete", "storageclass", &growing, &fixed]);
}

/// Writes `text` to a file of a new temporary directory (kept alive by the returned guard).
fn dir_file(text: &str) -> (TempDir, PathBuf) {
    let dir = tempdir().expect("tempdir");
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, text).expect("write");
    (dir, file)
}

/// The objects of a `helm template` output (hooks included), as JSON values.
fn rendered_objects(yaml: &str) -> Vec<serde_json::Value> {
    yaml.split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<serde_json::Value>(doc).ok())
        .filter(|v| v.get("kind").is_some())
        .collect()
}

/// Whether a `matchLabels` map (non-empty) selects an object with `labels`.
fn selects(match_labels: &serde_json::Value, labels: &serde_json::Value) -> bool {
    match_labels
        .as_object()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

fn is_hook(object: &serde_json::Value) -> bool {
    object["metadata"]["annotations"]["helm.sh/hook"].is_string()
}

/// The one object of `kind` that is not a hook.
fn only<'a>(objects: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    let found: Vec<_> = objects
        .iter()
        .filter(|o| o["kind"] == kind && !is_hook(o))
        .collect();
    assert_eq!(found.len(), 1, "one {kind}: {found:?}");
    found[0]
}

/// Every value the chart added for real clusters, set (the monitors need their CRDs and are
/// checked in `monitors_only_where_the_prometheus_operator_serves_them`).
const EVERY_NEW_VALUE: &str = r#"
nameOverride: hr
fullnameOverride: platform-hostrole
service: {annotations: {example.com/scrape: "true"}}
podDisruptionBudget: {enabled: true, maxUnavailable: "50%", unhealthyPodEvictionPolicy: AlwaysAllow}
podLabels: {team: infra, app.kubernetes.io/name: not-the-selector}
podAnnotations: {example.com/owner: infra}
podSecurityContext: {runAsUser: 1000680000, runAsGroup: 1000680000}
securityContext: {readOnlyRootFilesystem: true}
extraArgs: ["--concurrency=4"]
extraEnv: [{name: HTTPS_PROXY, value: "http://proxy.example:3128"}]
extraVolumes: [{name: ca, configMap: {name: ca-bundle}}]
extraVolumeMounts: [{name: ca, mountPath: /etc/ssl/extra, readOnly: true}]
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway}
priorityClassName: system-cluster-critical
networkPolicy: {enabled: true}
"#;

#[tokio::test]
async fn name_overrides_rename_every_object_and_every_selector_still_matches() {
    let env = Env::new().await;
    let chart = chart();
    let monitors = [
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "podMonitor.enabled=true",
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
        "--api-versions",
        "monitoring.coreos.com/v1/PodMonitor",
        "--set",
        "networkPolicy.enabled=true",
    ];
    for (overrides, fullname, name) in [
        (vec![], "rel-hostrole-operator", "hostrole-operator"),
        (vec!["--set", "nameOverride=hr"], "rel-hr", "hr"),
        (
            vec![
                "--set",
                "nameOverride=hr",
                "--set",
                "fullnameOverride=platform-hostrole",
            ],
            "platform-hostrole",
            "hr",
        ),
    ] {
        let mut args = vec!["template", "rel", chart.as_str(), "-n", "ops"];
        args.extend_from_slice(&monitors);
        args.extend_from_slice(&overrides);
        let objects = rendered_objects(&env.helm_ok(&args));
        assert!(objects.len() > 20, "{objects:?}");
        for o in &objects {
            let what = format!("{} {}", o["kind"], o["metadata"]["name"]);
            let object_name = o["metadata"]["name"].as_str().expect("a name");
            assert!(
                object_name.starts_with(fullname),
                "{overrides:?}: {what} is named after {fullname}"
            );
            let expected = if is_hook(o) {
                format!("{name}-test")
            } else {
                name.to_string()
            };
            assert_eq!(
                o["metadata"]["labels"]["app.kubernetes.io/name"].as_str(),
                Some(expected.as_str()),
                "{overrides:?}: {what}"
            );
        }
        let deployment = only(&objects, "Deployment");
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let service = only(&objects, "Service");
        let selectors = [
            ("Deployment", &deployment["spec"]["selector"]["matchLabels"]),
            ("Service", &service["spec"]["selector"]),
            (
                "PodDisruptionBudget",
                &only(&objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
            ),
            (
                "NetworkPolicy",
                &only(&objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
            ),
            (
                "anti-affinity",
                &deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
                    [0]["podAffinityTerm"]["labelSelector"]["matchLabels"],
            ),
        ];
        let test_pod = objects
            .iter()
            .find(|o| o["kind"] == "Pod" && is_hook(o))
            .expect("the helm-test pod");
        for (what, selector) in selectors {
            assert!(
                selects(selector, pod_labels),
                "{overrides:?}: the {what} selects the operator pods"
            );
            assert!(
                !selects(selector, &test_pod["metadata"]["labels"]),
                "{overrides:?}: the {what} does not select the helm-test pod"
            );
        }
        assert!(
            selects(
                &only(&objects, "ServiceMonitor")["spec"]["selector"]["matchLabels"],
                &service["metadata"]["labels"]
            ),
            "{overrides:?}: the ServiceMonitor selects the metrics Service"
        );
        // The operator's flags name the objects the chart made.
        let args: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert!(args.contains(&format!("--lease-name={fullname}").as_str()));
        let role = format!("{fullname}-agent");
        assert!(args.contains(&format!("--agent-cluster-role={role}").as_str()));
        assert!(
            objects
                .iter()
                .any(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == role.as_str())
        );
    }

    // Every new value at once: rendered and accepted by the API server.
    let ns = env.namespace("chart-values").await;
    let (_dir, values) = dir_file(EVERY_NEW_VALUE);
    let rendered = env.helm_ok(&[
        "template",
        "rel",
        &chart,
        "-n",
        &ns,
        "--skip-tests",
        "-f",
        values.to_str().expect("utf-8"),
    ]);
    let objects = rendered_objects(&rendered);
    let deployment = only(&objects, "Deployment");
    let pod = &deployment["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["team"], "infra");
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/name"], "hr",
        "podLabels cannot replace a selector label"
    );
    assert_eq!(pod["metadata"]["annotations"]["example.com/owner"], "infra");
    let spec = &pod["spec"];
    assert_eq!(
        spec["securityContext"],
        serde_json::json!({
            "runAsNonRoot": true,
            "runAsUser": 1000680000,
            "runAsGroup": 1000680000,
            "seccompProfile": {"type": "RuntimeDefault"}
        }),
        "the ids a platform wants are set (whole numbers), the rest stays restricted"
    );
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");
    assert_eq!(spec["volumes"][0]["name"], "ca");
    let container = &spec["containers"][0];
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/etc/ssl/extra");
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert_eq!(
        container["args"].as_array().and_then(|a| a.last()),
        Some(&serde_json::json!("--concurrency=4"))
    );
    assert!(
        container["env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|e| e["name"] == "HTTPS_PROXY")
    );
    let spread = &spec["topologySpreadConstraints"][0];
    assert!(
        selects(
            &spread["labelSelector"]["matchLabels"],
            &pod["metadata"]["labels"]
        ),
        "a constraint without labelSelector gets the operator's: {spread}"
    );
    assert_eq!(
        only(&objects, "Service")["metadata"]["annotations"]["example.com/scrape"],
        "true"
    );
    let pdb = &only(&objects, "PodDisruptionBudget")["spec"];
    assert_eq!(pdb["maxUnavailable"], "50%");
    assert!(pdb.get("minAvailable").is_none(), "{pdb}");
    assert_eq!(pdb["unhealthyPodEvictionPolicy"], "AlwaysAllow");

    let dir = tempdir().expect("tempdir");
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &rendered).expect("write");
    env.kubectl_ok(&[
        "apply",
        "--dry-run=server",
        "-n",
        &ns,
        "-f",
        file.to_str().expect("utf-8"),
    ]);
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn an_existing_service_account_must_be_named() {
    let env = Env::new().await;
    let chart = chart();
    let out = env.helm(&[
        "template",
        "rel",
        &chart,
        "-n",
        "ops",
        "--set",
        "serviceAccount.create=false",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "create=false without a name must not bind the namespace's default ServiceAccount: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("serviceAccount.name is required when serviceAccount.create=false"),
        "{stderr}"
    );

    let objects = rendered_objects(&env.helm_ok(&[
        "template",
        "rel",
        &chart,
        "-n",
        "ops",
        "--skip-tests",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=platform-operator",
    ]));
    assert!(
        !objects.iter().any(|o| o["kind"] == "ServiceAccount"),
        "no ServiceAccount is created"
    );
    assert_eq!(
        only(&objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
        "platform-operator"
    );
    let subjects: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some("RoleBinding" | "ClusterRoleBinding")
            )
        })
        .flat_map(|o| o["subjects"].as_array().expect("subjects").iter())
        .collect();
    assert_eq!(
        subjects.len(),
        2,
        "the operator's and the leader election's"
    );
    for subject in subjects {
        assert_eq!(
            subject,
            &serde_json::json!({"kind": "ServiceAccount", "name": "platform-operator", "namespace": "ops"})
        );
    }
    let policy = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "rel-hostrole-operator-own-objects")
        .expect("the operator's admission policy");
    assert_eq!(
        policy["spec"]["matchConditions"][0]["expression"],
        "request.userInfo.username == 'system:serviceaccount:ops:platform-operator'"
    );
}

/// Numbers as floats: `helm`'s YAML round trip writes `1024.0` as `1024`.
fn numbers_as_floats(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, numbers_as_floats(v)))
                .collect(),
        ),
        other => other,
    }
}

#[tokio::test]
async fn crds_enabled_renders_the_generated_crd_unchanged() {
    let env = Env::new().await;
    let chart = chart();
    let generated: serde_json::Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            repo_root().join("charts/hostrole-operator/crds/hostrole.dev_hostroles.yaml"),
        )
        .expect("crds/ of the chart"),
    )
    .expect("YAML");
    let render = |extra: &[&str]| {
        let mut args = vec!["template", "rel", chart.as_str(), "-n", "ops"];
        args.extend_from_slice(extra);
        rendered_objects(&env.helm_ok(&args))
            .into_iter()
            .filter(|o| o["kind"] == "CustomResourceDefinition")
            .collect::<Vec<_>>()
    };
    assert!(render(&[]).is_empty(), "crds/ only, by default");
    for (keep, annotation) in [("true", Some("keep")), ("false", None)] {
        let crds = render(&[
            "--set",
            "crds.enabled=true",
            "--set",
            &format!("crds.keep={keep}"),
        ]);
        assert_eq!(crds.len(), 1);
        let mut crd = crds[0].clone();
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"].as_str(),
            annotation,
            "crds.keep={keep}"
        );
        assert_eq!(
            crd["metadata"]["labels"]["app.kubernetes.io/instance"],
            "rel"
        );
        let meta = crd["metadata"].as_object_mut().expect("metadata");
        meta.remove("labels");
        meta.remove("annotations");
        assert!(
            numbers_as_floats(crd) == numbers_as_floats(generated.clone()),
            "templates/crds.yaml renders crds/hostrole.dev_hostroles.yaml (make crds) unchanged"
        );
    }
}

/// The chart copied into `dir`, its CRD renamed to a kind and group of this test alone (the
/// cluster's HostRole CRD is every other test's), with `spec.probe` when `probe` (a later
/// version of the CRD). Returns the chart's path and the CRD's name.
fn chart_with_own_crd(dir: &std::path::Path, group: &str, probe: bool) -> (String, String) {
    let copy = dir.join(if probe { "v2" } else { "v1" });
    copy_tree(&repo_root().join("charts/hostrole-operator"), &copy);
    let file = copy.join("crds/hostrole.dev_hostroles.yaml");
    let mut crd: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&file).expect("crd")).expect("YAML");
    let name = format!("chartprobes.{group}");
    crd["metadata"]["name"] = name.clone().into();
    crd["spec"]["group"] = group.into();
    crd["spec"]["names"] = serde_json::json!({
        "kind": "ChartProbe", "listKind": "ChartProbeList",
        "plural": "chartprobes", "singular": "chartprobe",
    });
    if probe {
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["probe"] =
            serde_json::json!({"type": "string", "description": "Added by a later version."});
    }
    std::fs::write(&file, serde_yaml::to_string(&crd).expect("yaml")).expect("write");
    (copy.display().to_string(), name)
}

#[tokio::test]
async fn crds_enabled_upgrades_the_crd_with_the_release_and_keeps_it_on_uninstall() {
    let env = Env::new().await;
    let ns = env.namespace("chart-crds").await;
    let group = format!("chart-{:06x}.e2e.hostrole.dev", fastrand::u32(..0xff_ffff));
    let dir = tempdir().expect("tempdir");
    let (v1, crd) = chart_with_own_crd(dir.path(), &group, false);
    let (v2, _) = chart_with_own_crd(dir.path(), &group, true);
    let probe = dir.path().join("probe.yaml");
    std::fs::write(
        &probe,
        format!(
            "apiVersion: {group}/v1alpha1\nkind: ChartProbe\nmetadata: {{name: probe}}\nspec:\n  probe: served\n  servers:\n    web:\n      site:\n        files: [{{path: index.html, content: hi}}]\n"
        ),
    )
    .expect("write");
    let probe = probe.to_str().expect("utf-8");
    let create_probe = || env.kubectl(&["create", "--validate=strict", "-n", &ns, "-f", probe]);
    let common = ["--set", "replicaCount=1", "--set", "crds.enabled=true"];

    // As the README says: crds.enabled with --skip-crds, so that only the release makes the CRD.
    let name = release("crds");
    let mut install = vec!["install", &name, &v1, "-n", &ns, "--skip-crds"];
    install.extend_from_slice(&common);
    env.helm_ok(&install);
    let owner = env.kubectl_ok(&[
        "get",
        "crd",
        &crd,
        "-o",
        "jsonpath={.metadata.annotations.meta\\.helm\\.sh/release-name} {.metadata.annotations.helm\\.sh/resource-policy}",
    ]);
    assert_eq!(owner, format!("{name} keep"), "the release owns the CRD");
    env.kubectl_ok(&["wait", "--for=condition=Established", "crd", &crd]);
    let out = create_probe();
    assert!(!out.status.success(), "v1 has no spec.probe");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.probe"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A chart with a changed CRD: `helm upgrade` changes the served schema.
    let mut upgrade = vec!["upgrade", &name, &v2, "-n", &ns];
    upgrade.extend_from_slice(&common);
    env.helm_ok(&upgrade);
    eventually(
        "the API server serves the upgraded schema",
        Duration::from_secs(30),
        || async { create_probe().status.success().then_some(()) },
    )
    .await;

    // crds.keep: uninstall leaves the CRD and its objects.
    env.helm_ok(&["uninstall", &name, "-n", &ns, "--wait"]);
    env.kubectl_ok(&["get", "crd", &crd]);
    let kept = env.kubectl_ok(&[
        "get",
        &format!("chartprobes.{group}"),
        "-n",
        &ns,
        "-o",
        "name",
    ]);
    assert!(kept.contains("probe"), "the object survives: {kept}");
    env.kubectl_ok(&["delete", "crd", &crd, "--wait"]);

    // Without --skip-crds, crds/ makes the CRD first and Helm refuses to take it into the release:
    // never two owners, never a CRD overwritten.
    let other = release("crds");
    let mut install = vec!["install", &other, &v1, "-n", &ns];
    install.extend_from_slice(&common);
    let out = env.helm(&install);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "installed the CRD twice?");
    assert!(
        stderr.contains("cannot be imported into the current release"),
        "{stderr}"
    );
    // The README's way out: let the release adopt it, then install with --skip-crds.
    env.kubectl_ok(&["label", "crd", &crd, "app.kubernetes.io/managed-by=Helm"]);
    env.kubectl_ok(&[
        "annotate",
        "crd",
        &crd,
        &format!("meta.helm.sh/release-name={other}"),
        &format!("meta.helm.sh/release-namespace={ns}"),
    ]);
    let mut install = vec!["install", &other, &v2, "-n", &ns, "--skip-crds"];
    install.extend_from_slice(&common);
    install.extend_from_slice(&["--set", "crds.keep=false"]);
    env.helm_ok(&install);
    eventually(
        "the adopted CRD is upgraded",
        Duration::from_secs(30),
        || async { create_probe().status.success().then_some(()) },
    )
    .await;
    // crds.keep=false: uninstall deletes it (and its objects).
    env.helm_ok(&["uninstall", &other, "-n", &ns, "--wait"]);
    eventually(
        "the CRD is gone with the release",
        Duration::from_secs(60),
        || async {
            let out = env.kubectl(&["get", "crd", &crd]);
            (!out.status.success()).then_some(())
        },
    )
    .await;
    env.delete_namespace(&ns).await;
}

/// Minimal Prometheus Operator CRDs (any content) for ServiceMonitors and PodMonitors.
fn monitoring_crds() -> String {
    ["ServiceMonitor", "PodMonitor"]
        .iter()
        .map(|kind| {
            let plural = format!("{}s", kind.to_lowercase());
            format!(
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {plural}.monitoring.coreos.com}}\nspec:\n  group: monitoring.coreos.com\n  scope: Namespaced\n  names: {{kind: {kind}, listKind: {kind}List, plural: {plural}, singular: {}}}\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n---\n",
                kind.to_lowercase()
            )
        })
        .collect()
}

#[tokio::test]
async fn monitors_only_where_the_prometheus_operator_serves_them() {
    let env = Env::new().await;
    let (_crds_dir, crds) = dir_file(&monitoring_crds());
    let crds = crds.to_str().expect("utf-8");
    // Left over by an earlier run that failed: this test needs a cluster without them first.
    env.kubectl_ok(&["delete", "--ignore-not-found", "--wait", "-f", crds]);

    let system = env.namespace("chart-monitors").await;
    let apps = env.namespace("chart-monitors-apps").await;
    let name = release("mon");
    env.helm_ok(&[
        "install",
        &name,
        &chart(),
        "-n",
        &system,
        "--set",
        "replicaCount=1",
        "--set",
        &format!("watchNamespace={apps}"),
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "podMonitor.enabled=true",
    ]);
    let manifest = env.helm_ok(&["get", "manifest", &name, "-n", &system]);
    assert!(
        !manifest.contains("kind: ServiceMonitor") && !manifest.contains("kind: PodMonitor"),
        "no monitor without the monitoring.coreos.com/v1 API: {manifest}"
    );
    let notes = env.helm_ok(&["get", "notes", &name, "-n", &system]);
    assert!(
        notes.contains("NO ServiceMonitor was created")
            && notes.contains("NO PodMonitor was created"),
        "{notes}"
    );

    // The Prometheus Operator's CRDs arrive: the next upgrade makes both.
    env.kubectl_ok(&["apply", "-f", crds]);
    env.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd",
        "servicemonitors.monitoring.coreos.com",
        "podmonitors.monitoring.coreos.com",
    ]);
    env.helm_ok(&[
        "upgrade",
        &name,
        &chart(),
        "-n",
        &system,
        "--reuse-values",
        "--set",
        "serviceMonitor.scrapeTimeout=10s",
        "--set",
        "podMonitor.interval=15s",
        "--set",
        "podMonitor.metricRelabelings[0].action=drop",
        "--set",
        "podMonitor.metricRelabelings[0].regex=go_.*",
        "--set",
        "podMonitor.metricRelabelings[0].sourceLabels[0]=__name__",
    ]);
    let full = format!("{name}-hostrole-operator");
    let get = |kind: &str, object: &str| -> serde_json::Value {
        serde_json::from_str(&env.kubectl_ok(&["get", kind, object, "-n", &system, "-o", "json"]))
            .expect("json")
    };
    let sm = get("servicemonitors.monitoring.coreos.com", &full);
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], "metrics");
    assert_eq!(endpoint["scrapeTimeout"], "10s");
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"][0],
        system.as_str()
    );
    let service: serde_json::Value = serde_json::from_str(&env.kubectl_ok(&[
        "get",
        "service",
        &format!("{full}-metrics"),
        "-n",
        &system,
        "-o",
        "json",
    ]))
    .expect("json");
    assert!(selects(
        &sm["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));

    let pm = get(
        "podmonitors.monitoring.coreos.com",
        &format!("{full}-hosts"),
    );
    let endpoint = &pm["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["interval"], "15s");
    assert_eq!(endpoint["metricRelabelings"][0]["action"], "drop");
    assert_eq!(endpoint["relabelings"][0]["targetLabel"], "hostrole");
    assert_eq!(
        pm["spec"]["namespaceSelector"]["matchNames"][0],
        apps.as_str()
    );

    // It selects the pods the operator really makes, on the port their agent serves /metrics.
    let _operator = env.operator(&apps, &[]);
    let (_dir, host) = dir_file(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: hello}\nspec:\n  servers:\n    web:\n      site:\n        files: [{path: index.html, content: hi}]\n",
    );
    env.kubectl_ok(&["apply", "-n", &apps, "-f", host.to_str().expect("utf-8")]);
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(env.client.clone(), &apps);
    let pod = eventually("the host pod exists", Duration::from_secs(60), || async {
        pods.get_opt("hello-0").await.ok().flatten()
    })
    .await;
    let labels = serde_json::to_value(&pod.metadata.labels).expect("labels");
    assert!(
        selects(&pm["spec"]["selector"]["matchLabels"], &labels),
        "the PodMonitor selects the host pod: {labels}"
    );
    let port = endpoint["port"].as_str().expect("port");
    let served = pod
        .spec
        .as_ref()
        .map(|s| &s.containers[0])
        .and_then(|c| c.ports.as_ref())
        .is_some_and(|ports| {
            ports
                .iter()
                .any(|p| p.name.as_deref() == Some(port) && p.container_port == 9901)
        });
    assert!(served, "the agent serves /metrics on port {port} (9901)");

    env.helm_ok(&["uninstall", &name, "-n", &system, "--wait"]);
    env.delete_namespace(&apps).await;
    env.delete_namespace(&system).await;
    env.kubectl_ok(&["delete", "--ignore-not-found", "-f", crds]);
}

#[tokio::test]
async fn the_notes_commands_run_as_written() {
    let env = Env::new().await;
    let system = env.namespace("chart-notes").await;
    let apps = env.namespace("chart-notes-apps").await;
    let name = release("notes");
    env.helm_ok(&[
        "install",
        &name,
        &chart(),
        "-n",
        &system,
        "--set",
        "replicaCount=1",
        "--set",
        &format!("watchNamespace={apps}"),
    ]);
    let notes = env.helm_ok(&["get", "notes", &name, "-n", &system]);
    let block: Vec<&str> = notes
        .lines()
        .skip_while(|l| !l.starts_with("Declare a host"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| &l[2..])
        .collect();
    let script = block.join("\n");
    let bash = |script: &str, syntax_only: bool| {
        let kubectl_dir = env
            .kubectl
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let path = format!(
            "{kubectl_dir}:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        let flags = if syntax_only { "-n" } else { "-euo" };
        let mut command = std::process::Command::new("bash");
        command.arg(flags);
        if !syntax_only {
            command.arg("pipefail");
        }
        command
            .args(["-c", script])
            .env("PATH", path)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("bash")
    };
    let out = bash(&script, true);
    assert!(
        out.status.success(),
        "NOTES are shell: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The port-forward goes to the background and is ended; nothing waits forever (`-w`).
    let forward = block
        .iter()
        .position(|l| l.contains("port-forward"))
        .expect("NOTES forward a port");
    assert!(block[forward].contains(" &"), "{}", block[forward]);
    assert!(block[forward + 1].contains("curl"), "{script}");
    assert!(
        block.last().is_some_and(|l| l.starts_with("kill $!")),
        "{script}"
    );
    assert!(!script.contains(" -w"), "{script}");

    // Up to the port-forward, against this control plane (its pods carry no traffic; the kind
    // suite fetches pages), in the namespace the operator watches.
    let _operator = env.operator(&apps, &[]);
    let out = bash(&block[..forward].join("\n"), false);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}\n{script}");
    assert!(text.contains("condition met"), "{text}");
    assert!(text.contains("AllRolesServing"), "{text}");
    env.helm_ok(&["uninstall", &name, "-n", &system]);
    env.delete_namespace(&apps).await;
    env.delete_namespace(&system).await;
}

/// The args of the operator container in a `helm template` output.
fn operator_args(yaml: &str) -> Vec<String> {
    let objects = rendered_objects(yaml);
    let deployment = only(&objects, "Deployment");
    serde_json::from_value(deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone())
        .expect("args")
}

#[tokio::test]
async fn host_pod_ids_reach_the_operator_as_whole_numbers_or_are_left_to_the_platform() {
    let env = Env::new().await;
    let chart = chart();
    // Defaults: no user of our own for the operator or for hosts; volumes for group 65532.
    let yaml = env.helm_ok(&["template", "rel", &chart, "-n", "ops"]);
    let args = operator_args(&yaml);
    for arg in [
        "--agent-run-as-user=platform",
        "--agent-run-as-group=platform",
        "--agent-fs-group=65532",
    ] {
        assert!(args.iter().any(|a| a == arg), "{arg} in {args:?}");
    }
    let objects = rendered_objects(&yaml);
    let pod_sc = &only(&objects, "Deployment")["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(pod_sc["runAsNonRoot"], true);
    assert!(pod_sc.get("runAsUser").is_none(), "{pod_sc}");
    // OpenShift-sized ids from a values file (YAML numbers reach templates as floats).
    let (_dir, values) =
        dir_file("agent: {runAsUser: 1000680000, runAsGroup: 1000680000, fsGroup: null}\n");
    let yaml = env.helm_ok(&[
        "template",
        "rel",
        &chart,
        "-n",
        "ops",
        "-f",
        values.to_str().expect("utf-8"),
    ]);
    let args = operator_args(&yaml);
    for arg in [
        "--agent-run-as-user=1000680000",
        "--agent-run-as-group=1000680000",
        "--agent-fs-group=platform",
    ] {
        assert!(args.iter().any(|a| a == arg), "{arg} in {args:?}");
    }
    // Root is refused at render time, naming the value.
    let out = env.helm(&["template", "rel", &chart, "--set", "agent.runAsUser=0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/agent/runAsUser"));
}

#[tokio::test]
async fn kube_score_finds_nothing_critical_in_the_chart_that_is_not_explained() {
    let env = Env::new().await;
    let chart = chart();
    // Both renderings together: a finding of either is explained, and each line of the list
    // matches a finding of one of them.
    let mut found = Vec::new();
    for extra in [
        &[][..],
        &[
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "replicaCount=3",
        ][..],
    ] {
        let mut args = vec![
            "template",
            "hostrole",
            chart.as_str(),
            "-n",
            "hostrole-system",
        ];
        args.extend_from_slice(extra);
        found.extend(kube_score::critical_findings(&env.helm_ok(&args)));
    }
    kube_score::assert_explained(&found, "operator/tests/tools/kube-score/chart.tsv");
}
