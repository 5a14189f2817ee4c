//! The user-facing e2e suite: install the chart, apply every example, check from inside the
//! cluster that each role really serves, run `helm test`, uninstall, and check nothing is left.
//!
//! It needs nodes that run containers and the images loaded into them (`e2e/kind.sh` does both).
//! The local control plane used in CI simulates pods with kwok, so CI runs the chart and operator
//! tests (`chart.rs`, `control_plane.rs`) instead of this one. Checks for the file, mail and peer
//! roles join this suite with those roles.

use std::time::Duration;

use hostrole_api::HostRole;
use hostrole_e2e::{Env, eventually, repo_root};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams, PostParams};
use kube::{Api, ResourceExt};

const WAIT: Duration = Duration::from_secs(300);

fn image_tag() -> String {
    std::env::var("HOSTROLE_IMAGE_TAG").unwrap_or_else(|_| "0.1.0".into())
}

/// Runs `script` in a pod with curl (restricted security context) and returns its log.
async fn in_cluster(env: &Env, ns: &str, name: &str, script: &str) -> String {
    let image = std::env::var("HOSTROLE_E2E_CLIENT_IMAGE")
        .unwrap_or_else(|_| "curlimages/curl:8.10.1".into());
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "client",
                "image": image,
                "command": ["/bin/sh", "-ec", script],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true}
            }]
        }
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("client pod");
    let phase = eventually(&format!("client pod {name} finishes"), WAIT, || async {
        let phase = pods.get(name).await.ok()?.status?.phase?;
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
    })
    .await;
    let log = pods
        .logs(name, &LogParams::default())
        .await
        .unwrap_or_default();
    assert_eq!(phase, "Succeeded", "{name} failed: {log}");
    log
}

#[tokio::test]
#[ignore = "needs nodes that run containers and the hostrole images (e2e/kind.sh); CI's control plane simulates pods"]
async fn chart_examples_and_roles_work_in_a_real_cluster() {
    let env = Env::new().await;
    let system = env.namespace("hostrole-system").await;
    let tag = image_tag();
    let pull =
        std::env::var("HOSTROLE_IMAGE_PULL_POLICY").unwrap_or_else(|_| "IfNotPresent".into());
    let chart = repo_root().join("charts/hostrole-operator");
    let chart = chart.to_str().expect("utf-8");
    env.helm_ok(&[
        "install",
        "hostrole",
        chart,
        "-n",
        &system,
        "--wait",
        "--timeout",
        "5m",
        "--set",
        &format!("image.tag={tag}"),
        "--set",
        &format!("agent.image.tag={tag}"),
        "--set",
        &format!("image.pullPolicy={pull}"),
        "--set",
        &format!("agent.image.pullPolicy={pull}"),
    ]);

    let ns = env.namespace("examples").await;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("examples")).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|x| x == "yaml") {
            env.kubectl_ok(&["apply", "-n", &ns, "-f", path.to_str().expect("utf-8")]);
        }
    }
    let hostroles: Api<HostRole> = Api::namespaced(env.client.clone(), &ns);
    for hr in hostroles
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
    {
        names.push(hr.name_any());
    }
    for name in &names {
        eventually(&format!("{name} is Ready"), WAIT, || async {
            let hr = hostroles.get(name).await.ok()?;
            hr.status
                .as_ref()?
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                .then_some(())
        })
        .await;
    }

    // The web role, through the Service and through each host's own DNS name.
    let log = in_cluster(
        &env,
        &ns,
        "web-client",
        &format!(
            "curl -sf http://web.{ns}.svc:8080/ && curl -sf http://web-0.web-hosts.{ns}.svc:8080/css/site.css \
             && curl -sf --http2-prior-knowledge -o /dev/null -w 'h%{{http_version}}\\n' http://brochure.{ns}.svc:8080/ \
             && curl -sf http://brochure-1.brochure-hosts.{ns}.svc:8080/"
        ),
    )
    .await;
    assert!(log.contains("Hello from a hostrole web host"), "{log}");
    assert!(log.contains("font-family"), "{log}");
    assert!(log.contains("h2"), "{log}");
    assert!(
        log.contains("Served from the brochure-site ConfigMap"),
        "{log}"
    );

    env.helm_ok(&["test", "hostrole", "-n", &system, "--timeout", "5m"]);

    env.kubectl_ok(&["delete", "namespace", &ns, "--wait=true", "--timeout=5m"]);
    env.helm_ok(&[
        "uninstall",
        "hostrole",
        "-n",
        &system,
        "--wait",
        "--timeout",
        "5m",
    ]);
    let left = env.kubectl_ok(&[
        "get", "deployments,pods,services,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings",
        "-A", "-l", "app.kubernetes.io/instance=hostrole", "-o", "name",
    ]);
    assert!(left.trim().is_empty(), "left behind: {left}");
    env.delete_namespace(&system).await;
}
