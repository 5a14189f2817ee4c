//! The Helm chart against a real API server: lint, schema-checked values, server-side dry run,
//! install, upgrade, uninstall, and proof that its RBAC is enough for the operator and no more.
//! Needs KUBECONFIG and HELM (`./test.sh` provides both).

use std::path::PathBuf;
use std::time::Duration;

use hostrole_api::HostRole;
use hostrole_e2e::{Env, TempDir, eventually, repo_root, tempdir};
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
    let who = format!("system:serviceaccount:{system}:{full}");

    for (verb, resource, allowed) in [
        ("list", "hostroles.hostrole.dev", true),
        ("patch", "hostroles.hostrole.dev --subresource=status", true),
        ("patch", "statefulsets.apps", true),
        ("delete", "services", true),
        ("create", "events.events.k8s.io", true),
        ("update", "hostroles.hostrole.dev", false),
        ("delete", "statefulsets.apps", false),
        ("delete", "configmaps", false),
        ("get", "secrets", false),
        ("create", "pods", false),
        ("get", "nodes", false),
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
    for hr in ["laptop", "tracker", "family"] {
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
"#;
