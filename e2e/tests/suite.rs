//! The user-facing e2e suite: install the chart, apply every example, check from inside the
//! cluster that each role really serves, run `helm test`, uninstall, and check nothing is left.
//!
//! It needs nodes that run containers and the images loaded into them (`e2e/kind.sh` does both).
//! The local control plane used in CI simulates pods with kwok, so CI runs the chart and operator
//! tests (`chart.rs`, `control_plane.rs`) there, and this suite on a real local node
//! (`e2e/real-node.sh`).

use std::time::Duration;

use hostrole_api::HostRole;
use hostrole_api::rules::ADMIN_PORT;
use hostrole_e2e::{Env, eventually, repo_root, run_client_pod};
use kube::api::ListParams;
use kube::{Api, ResourceExt};

const WAIT: Duration = Duration::from_secs(300);

fn image_tag() -> String {
    std::env::var("HOSTROLE_IMAGE_TAG").unwrap_or_else(|_| "0.1.0".into())
}

/// Runs `script` in a pod with curl (restricted security context), stopping at the first
/// failing command, and returns its log.
async fn in_cluster(env: &Env, ns: &str, name: &str, script: &str) -> String {
    run_client_pod(env, ns, name, None, &[], &format!("set -e\n{script}")).await
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
    let values = [
        format!("image.repository={prefix}operator"),
        format!("agent.image.repository={prefix}agent"),
        format!("image.tag={tag}"),
        format!("agent.image.tag={tag}"),
        format!("image.pullPolicy={pull}"),
        format!("agent.image.pullPolicy={pull}"),
    ];
    let mut install = vec![
        "install",
        "hostrole",
        chart,
        "-n",
        &system,
        "--wait",
        // A cold CI machine starts two operator replicas on one node that is still busy with
        // image imports; a failure prints what the namespace holds (Env::helm_ok).
        "--timeout",
        "5m",
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

    // Every host's agent reports each of its roles ready on its own /metrics (read from inside
    // the cluster), and the status says Serving for each.
    roles_report_ready(&env, &ns, &hostroles).await;

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

    // Mail between hosts (examples/two-mail-hosts.yaml): alice submits on north for bob at
    // south; north's queue delivers it over its route to south, where bob reads it.
    let log = in_cluster(
        &env,
        &ns,
        "mail-between-hosts",
        &format!(
            "printf 'From: alice@north.lan\r\nTo: bob@south.lan\r\nSubject: e2e\r\n\r\nfrom north to south\r\n' > /tmp/m.eml \
             && curl -sf --url smtp://north.{ns}.svc:2587 -u alice:change-me --mail-from alice@north.lan --mail-rcpt bob@south.lan -T /tmp/m.eml \
             && for i in $(seq 1 60); do \
                  curl -sf -u bob:change-me-too 'imap://south.{ns}.svc:3143/INBOX' -X 'SEARCH BODY \"from north to south\"' | grep -q 'SEARCH [0-9]' && break; sleep 1; \
                done \
             && curl -sf -u bob:change-me-too 'imap://south.{ns}.svc:3143/INBOX' -X 'SEARCH BODY \"from north to south\"'"
        ),
    )
    .await;
    assert!(
        log.lines()
            .any(|l| l.starts_with("* SEARCH ") && l.len() > "* SEARCH ".len()),
        "bob at south has alice's mail from north: {log}"
    );

    // Peers (examples/p2p-*.yaml): in every network a file uploaded through one host's UI is
    // found and fetched through another's, and arrives intact.
    peers_exchange_a_file(&env, &ns, &hostroles).await;

    // Clients (examples/home-office.yaml's laptop): every client's result reaches the laptop's
    // status through its agent's report on its own pod, and the matrix shows it.
    clients_report_healthy(&env, &ns, &hostroles).await;

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
    let kinds = "deployments,pods,services,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings";
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

/// Each host's agent, asked on its admin port from a pod, reports every role it plays ready
/// (`hostrole_agent_role_ready{role=...} 1`); the HostRole's status calls every server role of
/// every host Serving.
async fn roles_report_ready(env: &Env, ns: &str, hostroles: &Api<HostRole>) {
    let all = hostroles
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    let mut script = String::new();
    let mut expected = Vec::new();
    for hr in &all {
        let name = hr.name_any();
        let mut roles = hr.spec.server_roles();
        if hr.spec.peer.is_some() {
            roles.push("peer");
        }
        if roles.is_empty() {
            continue;
        }
        let status = hr.status.clone().expect("status");
        assert_eq!(status.hosts.len() as i32, hr.spec.replicas, "{name}");
        for host in &status.hosts {
            let serving: Vec<&str> = host
                .roles
                .iter()
                .filter(|(_, state)| **state == hostrole_api::RoleState::Serving)
                .map(|(role, _)| role.as_str())
                .collect();
            assert_eq!(
                serving,
                {
                    let mut r = hr.spec.server_roles();
                    r.sort_unstable();
                    r
                },
                "{name}: {} serves every server role",
                host.name
            );
            script.push_str(&format!(
                "m=$(curl -sf http://{h}.{name}-hosts.{ns}.svc:{ADMIN_PORT}/metrics)\n",
                h = host.name
            ));
            for role in &roles {
                script.push_str(&format!(
                    "case \"$m\" in *'hostrole_agent_role_ready{{role=\"{role}\"}} 1'*) echo 'ready {h} {role}';; *) echo 'NOT READY {h} {role}';; esac\n",
                    h = host.name
                ));
                expected.push(format!("ready {} {role}", host.name));
            }
        }
    }
    assert!(!expected.is_empty(), "the examples have hosts with roles");
    let log = in_cluster(env, ns, "roles-client", &script).await;
    let missing: Vec<&String> = expected
        .iter()
        .filter(|line| !log.lines().any(|l| l == line.as_str()))
        .collect();
    assert!(missing.is_empty(), "not reported ready: {missing:?}\n{log}");
}

/// `kubectl port-forward` to a pod's port (the peer UI listens on the pod's loopback); killed
/// when dropped.
struct PortForward {
    _proc: hostrole_testkit::Proc,
    port: u16,
    _logs: hostrole_e2e::TempDir,
}

impl PortForward {
    fn start(env: &Env, ns: &str, pod: &str, port: u16) -> PortForward {
        let local = hostrole_e2e::free_port();
        let logs = hostrole_e2e::tempdir().expect("tempdir");
        let proc = hostrole_testkit::Proc::spawn(
            "port-forward",
            std::process::Command::new(&env.kubectl)
                .args(["port-forward", "-n", ns, &format!("pod/{pod}")])
                .arg(format!("{local}:{port}")),
            logs.path(),
        );
        PortForward {
            _proc: proc,
            port: local,
            _logs: logs,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn curl(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("curl")
        .args(["-sf", "--max-time", "20"])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn peers_exchange_a_file(env: &Env, ns: &str, hostroles: &Api<HostRole>) {
    let all = hostroles
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    let mut networks: std::collections::BTreeMap<String, Vec<(String, u16)>> = Default::default();
    for hr in &all {
        let Some(peer) = &hr.spec.peer else { continue };
        for i in 0..hr.spec.replicas {
            networks
                .entry(peer.network.clone())
                .or_default()
                .push((format!("{}-{i}", hr.name_any()), peer.ui.port as u16));
        }
    }
    assert!(
        networks.len() >= 2,
        "the examples hold a hybrid and a decentralized network: {networks:?}"
    );
    for (network, hosts) in networks {
        assert!(hosts.len() >= 2, "{network}: at least two peers");
        let (seeder, fetcher) = (&hosts[0], &hosts[hosts.len() - 1]);
        let a = PortForward::start(env, ns, &seeder.0, seeder.1);
        let b = PortForward::start(env, ns, &fetcher.0, fetcher.1);
        let content: String = (0..50_000)
            .map(|i| format!("{network} line {i}\n"))
            .collect();
        // Peers address files by their BLAKE3 hash and verify every chunk against it: a file
        // with this hash and size is, byte for byte, the one uploaded.
        let want = blake3::hash(content.as_bytes()).to_hex().to_string();
        let size = content.len() as u64;
        let dir = hostrole_e2e::tempdir().expect("tempdir");
        let file = dir.path().join("upload.txt");
        std::fs::write(&file, &content).expect("write");
        let name = format!("e2e-{network}.txt");
        eventually(
            &format!("{network}: upload through {}'s UI", seeder.0),
            WAIT,
            || async {
                curl(&[
                    "-X",
                    "POST",
                    "-H",
                    "X-Requested-With: hostrole-e2e",
                    "--data-binary",
                    &format!("@{}", file.display()),
                    &a.url(&format!("/api/upload?name={name}")),
                ])
            },
        )
        .await;
        let listed = |files: &str| -> Option<serde_json::Value> {
            let files: serde_json::Value = serde_json::from_str(files).ok()?;
            files
                .as_array()?
                .iter()
                .find(|f| f["name"] == name.as_str() && f["complete"] == true)
                .cloned()
        };
        let seeded = eventually(
            &format!("{network}: {} lists {name}", seeder.0),
            WAIT,
            || async { listed(&curl(&[&a.url("/api/files")])?) },
        )
        .await;
        assert_eq!(
            (seeded["hash"].as_str(), seeded["size"].as_u64()),
            (Some(want.as_str()), Some(size)),
            "{network}: {} shares what was uploaded",
            seeder.0
        );
        let hash = eventually(
            &format!("{network}: {} finds the file", fetcher.0),
            WAIT,
            || async {
                let found = curl(&[&b.url(&format!("/api/search?q={name}"))])?;
                let results: serde_json::Value = serde_json::from_str(&found).ok()?;
                results
                    .as_array()?
                    .iter()
                    .find(|r| r["name"] == name.as_str())
                    .and_then(|r| r["hash"].as_str().map(str::to_string))
            },
        )
        .await;
        assert_eq!(hash, want, "{network}: the file found is the one uploaded");
        curl(&[
            "-X",
            "POST",
            "-H",
            "X-Requested-With: hostrole-e2e",
            "-H",
            "content-type: application/json",
            "-d",
            &serde_json::json!({"hash": hash}).to_string(),
            &b.url("/api/downloads"),
        ])
        .unwrap_or_else(|| panic!("{network}: start the download on {}", fetcher.0));
        let fetched = eventually(
            &format!("{network}: the download completes on {}", fetcher.0),
            WAIT,
            || async { listed(&curl(&[&b.url("/api/files")])?) },
        )
        .await;
        assert_eq!(
            (fetched["hash"].as_str(), fetched["size"].as_u64()),
            (Some(want.as_str()), Some(size)),
            "{network}: {} holds, complete, what was uploaded to {}",
            fetcher.0,
            seeder.0
        );
    }
}

async fn clients_report_healthy(env: &Env, ns: &str, hostroles: &Api<HostRole>) {
    let all = hostroles
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    let with_clients: Vec<String> = all
        .iter()
        .filter(|hr| !hr.spec.clients.is_empty())
        .map(|hr| hr.name_any())
        .collect();
    assert!(!with_clients.is_empty(), "an example declares clients");
    for name in &with_clients {
        let hr = eventually(
            &format!("{name}: every client reports ok"),
            WAIT,
            || async {
                let hr = hostroles.get(name).await.ok()?;
                let status = hr.status.clone()?;
                let healthy = status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "ClientsHealthy" && c.status == "True");
                healthy.then_some(hr)
            },
        )
        .await;
        let status = hr.status.expect("status");
        for host in &status.hosts {
            for c in &host.clients {
                assert!(
                    c.ok && c.latency_ms.is_some() && c.last_success.is_some(),
                    "{c:?}"
                );
            }
        }
    }
    let matrix = std::process::Command::new(&env.operator_bin)
        .args(["matrix", "-n", ns])
        .output()
        .expect("hostrole-operator matrix");
    let table = String::from_utf8_lossy(&matrix.stdout);
    assert!(matrix.status.success(), "{table}");
    assert!(
        table.lines().count() >= 2 && table.contains(" ok "),
        "{table}"
    );
}
