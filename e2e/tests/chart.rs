//! The Helm chart against a real API server: lint, schema-checked values, server-side dry run,
//! install, upgrade, uninstall, and proof that its RBAC is enough for the operator and no more.
//! Needs KUBECONFIG and HELM (`./test.sh` provides both).

use std::path::PathBuf;
use std::time::Duration;

use hostrole_api::HostRole;
use hostrole_e2e::{AGENT_IMAGE, Env, TempDir, eventually, repo_root, tempdir};
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
        ("imageTypo=1", "imageTypo"),
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
    ]);
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
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "no permission errors: {logs}"
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
        "-n",
        &apps,
        "-o",
        "name",
    ]);
    assert_eq!(made.lines().count(), 6, "{made}");
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
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "no permission errors: {logs}"
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
    assert!(
        !logs.to_lowercase().contains("forbidden"),
        "no permission errors: {logs}"
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
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: spy-host}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: spy-host}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {full}-agent}}\nsubjects: [{{kind: ServiceAccount, name: spy-host, namespace: {apps}}}]\n---\n{}{}",
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
