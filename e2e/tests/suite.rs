//! The user-facing e2e suite: install the chart, apply every example, check from inside the
//! cluster that each role really serves, run `helm test`, uninstall, and check nothing is left.
//!
//! It needs nodes that run containers and the images loaded into them (`e2e/kind.sh` does both).
//! The local control plane used in CI simulates pods with kwok, so CI runs the chart and operator
//! tests (`chart.rs`, `control_plane.rs`) instead of this one. Checks for the peer role join this
//! suite with that role.

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
    // HOSTROLE_IMAGE_PREFIX names images loaded without a registry (e.g. `hostrole.local/`).
    let prefix = std::env::var("HOSTROLE_IMAGE_PREFIX").unwrap_or_else(|_| "hostrole/".into());
    let tests_image = std::env::var("HOSTROLE_E2E_KUBECTL_IMAGE")
        .unwrap_or_else(|_| "bitnami/kubectl:1.34".into());
    let values = [
        format!("image.repository={prefix}operator"),
        format!("agent.image.repository={prefix}agent"),
        format!("image.tag={tag}"),
        format!("agent.image.tag={tag}"),
        format!("image.pullPolicy={pull}"),
        format!("agent.image.pullPolicy={pull}"),
        format!("tests.image={tests_image}"),
    ];
    let mut install = vec![
        "install",
        "hostrole",
        chart,
        "-n",
        &system,
        "--wait",
        "--timeout",
        "3m",
    ];
    for value in &values {
        install.extend(["--set", value.as_str()]);
    }
    env.helm_ok(&install);

    let ns = env.namespace("examples").await;
    // A cluster without a storage provisioner (the local real node) gets one from the harness.
    let _volumes = (std::env::var("HOSTROLE_E2E_PROVISION").as_deref() == Ok("1"))
        .then(|| env.provision_volumes(&ns));
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

    // The file role (examples/file-share.yaml): a WebDAV round trip with an account.
    let log = in_cluster(
        &env,
        &ns,
        "file-client",
        &format!(
            "echo 'round trip' > /tmp/note.txt \
             && curl -sf -u alice:change-me -T /tmp/note.txt http://share.{ns}.svc:8081/note.txt \
             && curl -sf -u alice:change-me http://share-0.share-hosts.{ns}.svc:8081/note.txt \
             && curl -s -o /dev/null -w 'anonymous %{{http_code}}\n' http://share.{ns}.svc:8081/"
        ),
    )
    .await;
    assert!(log.contains("round trip"), "{log}");
    assert!(log.contains("anonymous 401"), "{log}");

    // The mail role (examples/home-office.yaml): SMTP in, IMAP and POP3 out.
    let log = in_cluster(
        &env,
        &ns,
        "mail-client",
        &format!(
            "printf 'From: alice@office.lan\r\nTo: bob@office.lan\r\nSubject: e2e\r\n\r\nhello from the suite\r\n' > /tmp/m.eml \
             && curl -sf --url smtp://office.{ns}.svc:2525 --mail-from alice@office.lan --mail-rcpt bob@office.lan -T /tmp/m.eml \
             && curl -sf -u bob:change-me-too 'imap://office.{ns}.svc:1143/INBOX;UID=1' \
             && curl -sf -u bob:change-me-too pop3://office.{ns}.svc:1110/1"
        ),
    )
    .await;
    assert_eq!(
        log.matches("hello from the suite").count(),
        2,
        "read over IMAP and POP3: {log}"
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
    let selector = "app.kubernetes.io/instance=hostrole";
    let kinds = "deployments,pods,services,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings";
    // Pods of the deleted Deployment stop on their own time (the operator's grace period).
    eventually(
        "nothing of the release is left",
        Duration::from_secs(90),
        || async {
            let left = env.kubectl_ok(&["get", kinds, "-A", "-l", selector, "-o", "name"]);
            left.trim().is_empty().then_some(())
        },
    )
    .await;
    env.delete_namespace(&system).await;
}
