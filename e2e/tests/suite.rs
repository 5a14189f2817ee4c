//! The user-facing e2e suite: install the chart, apply every example, check from inside the
//! cluster that each role really serves, reach web and mail from this machine through a NodePort
//! Service (`spec.expose`), run `helm test`, uninstall, and check nothing is left.
//!
//! It needs nodes that run containers and the images loaded into them (`e2e/kind.sh` does both),
//! and, for the NodePort step, a machine that reaches the nodes' addresses, and curl.
//! The local control plane used in CI simulates pods with kwok, so CI runs the chart and operator
//! tests (`chart.rs`, `control_plane.rs`) there, and this suite on a real local node
//! (`e2e/real-node.sh`).

use std::collections::BTreeMap;
use std::time::Duration;

use hostrole_api::HostRole;
use hostrole_api::rules::ADMIN_PORT;
use hostrole_e2e::{Env, eventually, repo_root, run_client_pod};
use k8s_openapi::api::core::v1::{Node, Service};
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
        ready(&hostroles, name).await;
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

    // Web and mail from this machine, outside the cluster, through a NodePort Service.
    web_and_mail_through_node_ports(&env, &ns, &hostroles).await;

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

/// HostRole `name` once its Ready condition is True.
async fn ready(hostroles: &Api<HostRole>, name: &str) -> HostRole {
    eventually(&format!("{name} is Ready"), WAIT, || async {
        let hr = hostroles.get(name).await.ok()?;
        hr.status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(hr)
    })
    .await
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

/// What a server says first on a new connection to `address` (an SMTP, IMAP or POP3 greeting),
/// read as plain TCP from this machine.
fn greeting(address: &str) -> std::io::Result<String> {
    use std::io::{BufRead, BufReader};
    use std::net::{TcpStream, ToSocketAddrs};
    let to = address.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no address for {address}"),
        )
    })?;
    let stream = TcpStream::connect_timeout(&to, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}

/// `spec.expose` with a NodePort Service, used from this machine as a user outside the cluster
/// uses it: the web page and the mail greetings through the node ports at every node's address
/// (with the default external traffic policy every node answers, also one that runs no host),
/// and a message sent over SMTP through one node read back over IMAP through another. This
/// machine must reach the nodes' addresses: kind's on Linux are on a Docker network it routes
/// to; the real node's is this machine's bridge address, where its kube-proxy opens node ports
/// (e2e/cluster/node-up.sh); Docker Desktop keeps kind's nodes in a VM it cannot reach.
async fn web_and_mail_through_node_ports(env: &Env, ns: &str, hostroles: &Api<HostRole>) {
    let manifest = hostrole_e2e::TempManifest::new(
        "outside.yaml",
        r#"
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: outside}
spec:
  replicas: 1
  servers:
    web:
      port: 8080
      site:
        files:
          - path: index.html
            content: "reached from outside through a node port\n"
    mail:
      smtpPort: 2525
      submissionPort: 2587
      imapPort: 1143
      pop3Port: 1110
      domains: [outside.lan]
      users: {secret: office-users}   # examples/home-office.yaml's accounts
      allowPlaintextAuth: true
  expose: {type: NodePort, roles: [web, mail]}
"#,
    );
    env.kubectl_ok(&[
        "apply",
        "-n",
        ns,
        "-f",
        manifest.path().to_str().expect("utf-8"),
    ]);
    let hr = ready(hostroles, "outside").await;
    let services: Api<Service> = Api::namespaced(env.client.clone(), ns);
    let spec = services
        .get("outside-external")
        .await
        .expect("the external Service")
        .spec
        .expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    let node_ports: BTreeMap<String, i32> = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| Some((p.name?, p.node_port?)))
        .collect();
    assert_eq!(
        node_ports.keys().map(String::as_str).collect::<Vec<_>>(),
        ["imap", "pop3", "smtp", "submission", "web"],
        "a node port for each port of web and mail"
    );
    // `address:port` of the node port named `name` (an IPv6 address in brackets).
    let at = |address: &str, name: &str| {
        let port = node_ports[name];
        if address.contains(':') {
            format!("[{address}]:{port}")
        } else {
            format!("{address}:{port}")
        }
    };

    // Every node's address, as the cluster gives it (kind: the node container's address on its
    // Docker network; a real node: its own). Not the real-node stage's kwok node: its kubelet is
    // simulated, and nothing listens on its address.
    let nodes: Api<Node> = Api::all(env.client.clone());
    let addresses: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .expect("nodes")
        .items
        .into_iter()
        .filter(|n| !n.annotations().contains_key("kwok.x-k8s.io/node"))
        .filter_map(|n| {
            n.status?
                .addresses?
                .into_iter()
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address)
        })
        .collect();
    assert!(!addresses.is_empty(), "nodes with an InternalIP");
    let url = |address: &str| format!("http://{}/", at(address, "web"));

    // The status names the web role's address outside: a node that runs the host.
    let external: Vec<String> = hr
        .status
        .expect("status")
        .endpoints
        .into_iter()
        .filter(|e| e.scope == "External" && e.role == "web")
        .map(|e| e.url)
        .collect();
    assert!(
        external
            .iter()
            .any(|u| addresses.iter().any(|a| *u == url(a))),
        "status.endpoints names a node's web address ({addresses:?}): {external:?}"
    );

    for address in &addresses {
        let page = eventually(
            &format!(
                "the web page through {} (from this machine: is the node's address reachable?)",
                url(address)
            ),
            Duration::from_secs(60),
            || async { curl(&[&url(address)]) },
        )
        .await;
        assert_eq!(
            page,
            "reached from outside through a node port\n",
            "{}",
            url(address)
        );
        for (name, first) in [("smtp", "220 "), ("imap", "* OK"), ("pop3", "+OK")] {
            let to = at(address, name);
            let said = greeting(&to).unwrap_or_else(|e| {
                panic!("{name} greeting at {to} (node {address}, from this machine): {e}")
            });
            assert!(said.starts_with(first), "{name} at {to} greets: {said:?}");
        }
    }

    let (first, last) = (&addresses[0], &addresses[addresses.len() - 1]);
    let dir = hostrole_e2e::tempdir().expect("tempdir");
    let message = dir.path().join("m.eml");
    std::fs::write(
        &message,
        "From: alice@outside.lan\r\nTo: bob@outside.lan\r\nSubject: e2e\r\n\r\nfrom outside the cluster\r\n",
    )
    .expect("write");
    curl(&[
        "--url",
        &format!("smtp://{}", at(first, "smtp")),
        "--mail-from",
        "alice@outside.lan",
        "--mail-rcpt",
        "bob@outside.lan",
        "-T",
        message.to_str().expect("utf-8"),
    ])
    .unwrap_or_else(|| panic!("SMTP through {}", at(first, "smtp")));
    let read = curl(&[
        "-u",
        "bob:change-me-too",
        &format!("imap://{}/INBOX;UID=1", at(last, "imap")),
    ])
    .unwrap_or_default();
    assert!(
        read.contains("from outside the cluster"),
        "bob reads it over IMAP through {}: {read:?}",
        at(last, "imap")
    );
}

async fn peers_exchange_a_file(env: &Env, ns: &str, hostroles: &Api<HostRole>) {
    let all = hostroles
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    let mut networks: std::collections::BTreeMap<String, Vec<(String, u16)>> = Default::default();
    // Per network, the printers its hosts share (host, printer name).
    let mut printers: std::collections::BTreeMap<String, Vec<(String, String)>> =
        Default::default();
    for hr in &all {
        let Some(peer) = &hr.spec.peer else { continue };
        for i in 0..hr.spec.replicas {
            let host = format!("{}-{i}", hr.name_any());
            networks
                .entry(peer.network.clone())
                .or_default()
                .push((host.clone(), peer.ui.port as u16));
            if let Some(print) = &hr.spec.servers.print {
                let name = print.name.clone().unwrap_or_else(|| hr.name_any());
                printers
                    .entry(peer.network.clone())
                    .or_default()
                    .push((host, name));
            }
        }
    }
    assert!(
        !printers.is_empty(),
        "an example shares a printer in a peer network: {networks:?}"
    );
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
        // The network's shared printers are listed in the seeder's UI, with where to reach
        // them (the printer's own host and port).
        for (host, printer) in printers.get(&network).into_iter().flatten() {
            if *host == seeder.0 {
                continue;
            }
            let url = eventually(
                &format!("{network}: {} lists {host}'s printer", seeder.0),
                WAIT,
                || async {
                    let peers: serde_json::Value =
                        serde_json::from_str(&curl(&[&a.url("/api/peers")])?).ok()?;
                    peers
                        .as_array()?
                        .iter()
                        .filter(|p| {
                            p["id"]
                                .as_str()
                                .is_some_and(|id| id.starts_with(&format!("{host}.")))
                        })
                        .flat_map(|p| p["printers"].as_array().cloned().unwrap_or_default())
                        .find(|p| p["name"] == printer.as_str())
                        .and_then(|p| p["url"].as_str().map(str::to_string))
                },
            )
            .await;
            assert!(
                url.starts_with("ipp://") && url.ends_with(":8631/ipp/print"),
                "{network}: {url}"
            );
        }
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
