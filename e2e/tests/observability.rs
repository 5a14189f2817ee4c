//! What the operator tells those who watch it, against the real API server: `/readyz` follows
//! its watches (not ready before they have listed, nor while the API server is out of reach,
//! while `/healthz` stays ok), the per-HostRole ready gauge follows the HostRoles (and forgets a
//! deleted one), and every reconcile log line names the HostRole.
//!
//! The API server "goes away" without stopping the shared control plane: the operator reaches it
//! through a TCP proxy of this test, which is stopped (listener closed, connections cut) and
//! started again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hostrole_api::HostRole;
use hostrole_e2e::{Env, Operator, eventually, repo_root, tempdir};
use kube::Api;
use kube::api::DeleteParams;
use tokio::net::{TcpSocket, TcpStream};

/// A TCP proxy to the API server on a fixed local port, that can be stopped and started again.
struct Proxy {
    port: u16,
    upstream: String,
    /// `true` while the proxy is to run; stopping closes the listener and every connection.
    running: Option<tokio::sync::watch::Sender<bool>>,
    /// Connections accepted (for failure messages).
    accepted: Arc<AtomicUsize>,
}

impl Proxy {
    fn new(upstream: String) -> Proxy {
        // A port below Linux's ephemeral range (32768-60999), as e2e/cluster/up.sh picks them:
        // one from bind(0) is in that range, and while the proxy is stopped the operator's own
        // connection attempts (or any other outgoing connection on the machine) may take it as
        // their source port: a connect to a local port nobody listens on can even connect to
        // itself. Then the operator never reaches the proxy.
        let seed = std::process::id() as u16;
        let port = (0..2000u16)
            .map(|i| 20000 + (seed.wrapping_mul(7).wrapping_add(i * 13)) % 12000)
            .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .expect("a free port below the ephemeral range");
        Proxy {
            port,
            upstream,
            running: None,
            accepted: Arc::default(),
        }
    }

    /// Listens again, on a thread and runtime of its own so that the test's blocking calls never
    /// stall the operator's traffic.
    fn start(&mut self) {
        let (tx, rx) = tokio::sync::watch::channel(true);
        self.running = Some(tx);
        let (port, upstream, accepted) = (self.port, self.upstream.clone(), self.accepted.clone());
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let socket = TcpSocket::new_v4().expect("socket");
                socket.set_reuseaddr(true).expect("SO_REUSEADDR");
                socket
                    .bind(([127, 0, 0, 1], port).into())
                    .expect("bind the proxy port again");
                let listener = socket.listen(64).expect("listen");
                let _ = bound_tx.send(());
                let mut stop = rx.clone();
                loop {
                    let (mut inbound, _) = tokio::select! {
                        conn = listener.accept() => match conn {
                            Ok(c) => c,
                            Err(_) => return,
                        },
                        _ = stop.changed() => return,
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            });
            // Dropping the runtime drops every connection task: the connections are cut.
        });
        bound_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the proxy listens");
    }

    /// Closes the listener and cuts every connection: the API server is out of reach.
    fn stop(&mut self) {
        if let Some(tx) = self.running.take() {
            let _ = tx.send(false);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs its closure when dropped (also when the test panics): context for a failure.
struct Report<F: Fn()>(F);

impl<F: Fn()> Drop for Report<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// A copy of the test's kubeconfig whose cluster is reached through `proxy`; and the API
/// server's `host:port`.
fn kubeconfig_through(dir: &Path, port: u16) -> (PathBuf, String) {
    let path = std::env::var("KUBECONFIG").expect("KUBECONFIG (see e2e/cluster/README.md)");
    let text = std::fs::read_to_string(&path).expect("read KUBECONFIG");
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeconfig YAML");
    let mut upstream = None;
    for cluster in doc["clusters"].as_sequence_mut().expect("clusters") {
        let server = cluster["cluster"]["server"]
            .as_str()
            .expect("server")
            .to_string();
        let host_port = server
            .strip_prefix("https://")
            .expect("an https server")
            .trim_end_matches('/')
            .to_string();
        let (host, _) = host_port.rsplit_once(':').expect("host:port");
        cluster["cluster"]["server"] = format!("https://{host}:{port}").into();
        upstream.get_or_insert(host_port);
    }
    let out = dir.join("kubeconfig");
    std::fs::write(&out, serde_yaml::to_string(&doc).expect("YAML")).expect("write kubeconfig");
    (out, upstream.expect("a cluster"))
}

/// The HTTP status of the operator's `path`, 0 when it does not answer.
fn status(operator: &Operator, path: &str) -> u16 {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
            &format!("http://127.0.0.1:{}{path}", operator.metrics_port),
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

async fn wait_status(operator: &Operator, path: &str, want: u16, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    while status(operator, path) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "{path} did not answer {want} within {limit:?}:\n{}",
            operator.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_watches_and_healthz_stays_ok_while_the_api_server_is_away() {
    let env = Env::new().await;
    let ns = env.namespace("readyz").await;
    let dir = tempdir().expect("tempdir");
    let mut proxy = Proxy::new(String::new());
    let (kubeconfig, upstream) = kubeconfig_through(dir.path(), proxy.port);
    proxy.upstream = upstream;

    // The API server out of reach from the start: alive, not ready (its watches never listed).
    let operator = env.operator_as(
        &kubeconfig,
        &["--watch-namespace", &ns, "--concurrency", "2"],
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status(&operator, "/healthz"), 200, "{}", operator.logs());
    assert_eq!(status(&operator, "/readyz"), 503, "{}", operator.logs());

    // The API server reachable: ready once the watches have listed.
    proxy.start();
    eprintln!("proxy started on {} to {}", proxy.port, proxy.upstream);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while status(&operator, "/readyz") != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz not ready 60 s after the API server came back ({} connections through \
             the proxy):\n{}",
            proxy.accepted.load(Ordering::SeqCst),
            operator.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(operator.metric_sum("hostrole_operator_watches_ready"), 1.0);

    // Out of reach again: not ready within a few back-off rounds, still alive.
    proxy.stop();
    wait_status(&operator, "/readyz", 503, Duration::from_secs(30)).await;
    assert_eq!(status(&operator, "/healthz"), 200);
    assert_eq!(operator.metric_sum("hostrole_operator_watches_ready"), 0.0);
    assert!(operator.metric_sum("hostrole_operator_watch_errors_total") >= 3.0);
    // It stays unready for as long as the API server is away (longer than the back-off cap).
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(status(&operator, "/readyz"), 503, "{}", operator.logs());
        assert_eq!(status(&operator, "/healthz"), 200);
    }

    // Back: ready again without a restart.
    let before = proxy.accepted.load(Ordering::SeqCst);
    proxy.start();
    let accepted = proxy.accepted.clone();
    let _report = Report(move || {
        eprintln!(
            "connections through the proxy since it came back: {}",
            accepted.load(Ordering::SeqCst) - before
        )
    });
    // The watches' back-off is at its cap (30 s, jittered) by now; ready once they list again.
    wait_status(&operator, "/readyz", 200, Duration::from_secs(120)).await;
    drop(operator);
    env.delete_namespace(&ns).await;
}

#[tokio::test]
async fn the_ready_gauge_follows_each_hostrole_and_logs_name_it() {
    let env = Env::new().await;
    let ns = env.namespace("gauge").await;
    let operator = env.operator(&ns, &[]);
    let _volumes = env.provision_volumes(&ns);
    let example = repo_root().join("examples/web-host.yaml");
    env.kubectl_ok(&["apply", "-n", &ns, "-f", example.to_str().expect("path")]);

    let series = |condition: &str| {
        operator.metric(
            "hostrole_operator_hostrole_ready_status",
            &[
                ("namespace", &ns),
                ("name", "web"),
                ("condition", condition),
            ],
        )
    };
    eventually(
        "the gauge says Ready=True",
        Duration::from_secs(90),
        || async { (series("True") == 1.0).then_some(()) },
    )
    .await;
    assert_eq!(series("False") + series("Unknown"), 0.0);
    assert_eq!(
        operator.metric("hostrole_operator_build_info", &[]),
        1.0,
        "build_info"
    );
    assert!(operator.metric_sum("process_resident_memory_bytes") > 0.0);
    assert!(operator.metric_sum("process_start_time_seconds") > 1.7e9);
    let logs = operator.logs();
    assert!(
        logs.contains(&format!("reconcile{{namespace={ns} name=web}}")),
        "reconcile log lines carry the HostRole's namespace and name:\n{logs}"
    );

    Api::<HostRole>::namespaced(env.client.clone(), &ns)
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    eventually(
        "the deleted HostRole's series are gone",
        Duration::from_secs(60),
        || async {
            let text = operator.metrics()?;
            (!text.contains("name=\"web\"")).then_some(())
        },
    )
    .await;
    drop(operator);
    env.delete_namespace(&ns).await;
}

/// The chart ships the alerts and the dashboard as they are in its files/: a PrometheusRule only
/// where the Prometheus Operator's CRD is served, a ConfigMap with the sidecar's label.
#[tokio::test]
async fn the_chart_ships_the_alerts_and_the_dashboard_when_asked() {
    let env = Env::new().await;
    let chart = repo_root().join("charts/hostrole-operator");
    let chart = chart.to_str().expect("path");
    let render = |extra: &[&str]| -> Vec<serde_yaml::Value> {
        let mut args = vec!["template", "t", chart, "--namespace", "monitoring"];
        args.extend_from_slice(extra);
        let out = env.helm_ok(&args);
        out.split("\n---")
            .map(|d| serde_yaml::from_str::<serde_yaml::Value>(d).expect("a YAML document"))
            .filter(|d| !d.is_null())
            .collect()
    };
    let kinds = |docs: &[serde_yaml::Value]| -> Vec<String> {
        docs.iter()
            .filter_map(|d| d["kind"].as_str().map(str::to_string))
            .collect()
    };
    // Off by default.
    let docs = render(&[]);
    assert!(!kinds(&docs).contains(&"PrometheusRule".to_string()));
    assert!(
        !docs
            .iter()
            .any(|d| d["metadata"]["name"] == "t-hostrole-operator-dashboards")
    );
    // Asked for, but the CRD is not served: no PrometheusRule (it could not be installed).
    let docs = render(&["--set", "prometheusRule.enabled=true"]);
    assert!(!kinds(&docs).contains(&"PrometheusRule".to_string()));

    let docs = render(&[
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.labels.release=kps",
        "--set",
        "dashboards.enabled=true",
        "--api-versions",
        "monitoring.coreos.com/v1/PrometheusRule",
    ]);
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "kps");
    let file: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(
            repo_root().join("charts/hostrole-operator/files/prometheusrule.yaml"),
        )
        .expect("rules file"),
    )
    .expect("rules YAML");
    assert_eq!(
        rule["spec"], file,
        "the PrometheusRule's spec is the rules file"
    );
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("a dashboard ConfigMap with the sidecar label");
    let json: serde_json::Value =
        serde_json::from_str(cm["data"]["hostrole.json"].as_str().expect("hostrole.json"))
            .expect("the dashboard is JSON");
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            repo_root().join("charts/hostrole-operator/files/dashboards/hostrole.json"),
        )
        .expect("dashboard file"),
    )
    .expect("dashboard JSON");
    assert_eq!(json, file);

    // The API server takes the ConfigMap as rendered.
    let ns = env.namespace("dashboards").await;
    let dir = tempdir().expect("tempdir");
    let path = dir.path().join("cm.yaml");
    let mut cm = cm.clone();
    cm["metadata"]["namespace"] = ns.clone().into();
    std::fs::write(&path, serde_yaml::to_string(&cm).expect("YAML")).expect("write");
    env.kubectl_ok(&[
        "apply",
        "--dry-run=server",
        "-f",
        path.to_str().expect("path"),
    ]);
    env.delete_namespace(&ns).await;
}
