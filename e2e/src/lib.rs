//! Harness for tests against a real API server: any cluster given by `KUBECONFIG` (the local
//! control plane of `e2e/cluster/up.sh` here, kind for users).
//!
//! Each test gets its own namespace, labelled so that the API server enforces the *restricted*
//! Pod Security Standard on every pod the operator asks for, and its own operator process that
//! watches only that namespace. Processes are killed when their guard drops, also on failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hostrole_api::HostRole;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, CustomResourceExt};

use hostrole_testkit::Proc;
pub use hostrole_testkit::{TempDir, TempManifest, eventually, free_port, repo_root, tempdir};

/// Image name given to the operator; kwok's fake node never pulls it.
pub const AGENT_IMAGE: &str = "example.invalid/hostrole-agent:e2e";

/// What every test needs: a client, kubectl and the operator binary.
pub struct Env {
    pub client: Client,
    pub kubectl: PathBuf,
    pub operator_bin: PathBuf,
    /// The kubectl plugin (HOSTROLE_PLUGIN_BIN, else `kubectl-hostrole` beside the operator:
    /// `cargo build -p hostrole-operator` builds both).
    pub plugin_bin: PathBuf,
}

impl Env {
    /// Connects to the cluster and makes sure the HostRole CRD is applied and Established.
    pub async fn new() -> Env {
        assert!(
            std::env::var_os("KUBECONFIG").is_some(),
            "KUBECONFIG is not set: start a cluster first (bash e2e/cluster/up.sh), or run ./test.sh"
        );
        let client = Client::try_default()
            .await
            .expect("a client from KUBECONFIG");
        let kubectl =
            std::env::var_os("KUBECTL").map_or_else(|| PathBuf::from("kubectl"), PathBuf::from);
        let operator_bin = std::env::var_os("HOSTROLE_OPERATOR_BIN").map_or_else(
            || repo_root().join("target/debug/hostrole-operator"),
            PathBuf::from,
        );
        let plugin_bin = std::env::var_os("HOSTROLE_PLUGIN_BIN").map_or_else(
            || operator_bin.with_file_name("kubectl-hostrole"),
            PathBuf::from,
        );
        let env = Env {
            client,
            kubectl,
            operator_bin,
            plugin_bin,
        };
        env.apply_crd().await;
        env
    }

    async fn apply_crd(&self) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let crd = HostRole::crd();
        let name = crd.metadata.name.clone().expect("CRD name");
        crds.patch(
            &name,
            &PatchParams::apply("hostrole-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("the CRD applies");
        eventually(
            "the HostRole CRD is Established",
            Duration::from_secs(30),
            || async {
                let crd = crds.get(&name).await.ok()?;
                let established = crd
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            },
        )
        .await;
    }

    /// Creates a fresh namespace `<prefix>-<random>` enforcing the restricted Pod Security Standard.
    pub async fn namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{:06x}", fastrand::u32(..0xff_ffff));
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "hostrole.dev/e2e": "true",
                }
            }
        }))
        .expect("namespace");
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace created");
        name
    }

    /// Binds every claim of `namespace` to a hostPath volume made for it, as a storage
    /// provisioner would (the local control plane has none). Stops when the guard drops.
    pub fn provision_volumes(&self, namespace: &str) -> Provisioner {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        let ns = namespace.to_string();
        let task = tokio::spawn(async move {
            loop {
                for claim in claims
                    .list(&Default::default())
                    .await
                    .map(|l| l.items)
                    .unwrap_or_default()
                {
                    let bound = claim
                        .spec
                        .as_ref()
                        .and_then(|s| s.volume_name.as_ref())
                        .is_some();
                    let Some(name) = claim.metadata.name.clone() else {
                        continue;
                    };
                    if bound {
                        continue;
                    }
                    let size = claim
                        .spec
                        .as_ref()
                        .and_then(|s| s.resources.as_ref())
                        .and_then(|r| r.requests.as_ref())
                        .and_then(|r| r.get("storage").cloned())
                        .map_or_else(|| "1Gi".to_string(), |q| q.0);
                    let pv: PersistentVolume = match serde_json::from_value(serde_json::json!({
                        "metadata": {"name": format!("e2e-{ns}-{name}"), "labels": {"hostrole.dev/e2e": "true"}},
                        "spec": {
                            "capacity": {"storage": size},
                            "accessModes": ["ReadWriteOnce"],
                            "persistentVolumeReclaimPolicy": "Retain",
                            "storageClassName": claim.spec.as_ref().and_then(|s| s.storage_class_name.clone()).unwrap_or_default(),
                            "hostPath": {"path": format!("/tmp/hostrole-e2e-volumes/{ns}/{name}"), "type": "DirectoryOrCreate"},
                            "claimRef": {"namespace": ns, "name": name}
                        }
                    })) {
                        Ok(pv) => pv,
                        Err(_) => continue,
                    };
                    // On this machine's real node the hostPath is local: let the non-root agent
                    // write there (a hostPath volume gets no fsGroup).
                    let dir = format!("/tmp/hostrole-e2e-volumes/{ns}/{name}");
                    if std::fs::create_dir_all(&dir).is_ok() {
                        use std::os::unix::fs::PermissionsExt;
                        let _ =
                            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
                    }
                    let _ = volumes.create(&PostParams::default(), &pv).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Provisioner(task)
    }

    /// Deletes a namespace (and so everything in it); does not wait.
    pub async fn delete_namespace(&self, name: &str) {
        let _ = Api::<Namespace>::all(self.client.clone())
            .delete(name, &DeleteParams::background())
            .await;
    }

    /// Runs kubectl with the test's KUBECONFIG.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.kubectl.display()))
    }

    /// kubectl that must succeed; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts the operator watching `namespace`, with the test's (admin) credentials.
    pub fn operator(&self, namespace: &str, extra: &[&str]) -> Operator {
        let mut args = vec!["--watch-namespace", namespace];
        args.extend_from_slice(extra);
        Operator::start(&self.operator_bin, &args, None)
    }

    /// Starts the operator with exactly `args` (after `run --agent-image ... --metrics-addr ...`)
    /// and, when given, another kubeconfig (e.g. a ServiceAccount's token).
    pub fn operator_as(&self, kubeconfig: &Path, args: &[&str]) -> Operator {
        Operator::start(&self.operator_bin, args, Some(kubeconfig))
    }

    /// The helm binary (HELM, else `helm` on PATH).
    pub fn helm(&self, args: &[&str]) -> Output {
        let helm = std::env::var_os("HELM").map_or_else(|| PathBuf::from("helm"), PathBuf::from);
        Command::new(&helm)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e} (set HELM)", helm.display()))
    }

    /// helm that must succeed; returns stdout. On failure the panic carries what the release's
    /// namespace (`-n`) holds: pods, their descriptions, events and the containers' last logs.
    pub fn helm_ok(&self, args: &[&str]) -> String {
        let out = self.helm(args);
        if !out.status.success() {
            let namespace = args
                .windows(2)
                .find(|w| w[0] == "-n" || w[0] == "--namespace")
                .map(|w| w[1]);
            panic!(
                "helm {args:?} failed: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                namespace.map_or_else(String::new, |ns| self.explain(ns))
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What a namespace holds, for a failing test's message: pods (wide), their descriptions,
    /// the events in time order, and the last lines of every container (and of its previous
    /// run). Never fails: a kubectl error is printed in its place.
    pub fn explain(&self, namespace: &str) -> String {
        let run = |args: &[&str]| {
            let out = self.kubectl(args);
            format!(
                "$ kubectl {}\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        let mut text = format!("--- what namespace {namespace} holds ---\n");
        text += &run(&[
            "get",
            "pods,pvc,statefulsets,deployments",
            "-o",
            "wide",
            "-n",
            namespace,
        ]);
        text += &run(&["describe", "pods", "-n", namespace]);
        text += &run(&["get", "events", "--sort-by=.lastTimestamp", "-n", namespace]);
        let pods = self.kubectl(&["get", "pods", "-n", namespace, "-o", "name"]);
        for pod in String::from_utf8_lossy(&pods.stdout).lines() {
            for previous in ["--previous=false", "--previous=true"] {
                text += &run(&[
                    "logs",
                    pod,
                    "-n",
                    namespace,
                    "--all-containers",
                    "--tail=40",
                    previous,
                ]);
            }
        }
        text
    }
}

/// The provisioning loop of [`Env::provision_volumes`]; stops when dropped.
pub struct Provisioner(tokio::task::JoinHandle<()>);

impl Drop for Provisioner {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running operator process, killed when dropped.
pub struct Operator {
    proc: Proc,
    pub metrics_port: u16,
    _dir: TempDir,
}

impl Operator {
    fn start(bin: &Path, args: &[&str], kubeconfig: Option<&Path>) -> Operator {
        assert!(
            bin.is_file(),
            "{} is missing: cargo build -p hostrole-operator (or set HOSTROLE_OPERATOR_BIN)",
            bin.display()
        );
        let dir = tempdir().expect("tempdir");
        let metrics_port = free_port();
        let mut command = Command::new(bin);
        command
            .args(["run", "--agent-image", AGENT_IMAGE])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(args)
            .env("RUST_LOG", "info,kube=warn");
        if let Some(kubeconfig) = kubeconfig {
            command.env("KUBECONFIG", kubeconfig);
        }
        let proc = Proc::spawn("operator", &mut command, dir.path());
        let mut op = Operator {
            proc,
            metrics_port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while op.metrics().is_none() {
            op.proc.assert_running();
            assert!(
                Instant::now() < deadline,
                "the operator did not serve /metrics: {}",
                op.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        op
    }

    /// The operator's `/metrics`, if it answers.
    pub fn metrics(&self) -> Option<String> {
        let out = Command::new("curl")
            .args([
                "-sf",
                "--max-time",
                "2",
                &format!("http://127.0.0.1:{}/metrics", self.metrics_port),
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The operator's `/metrics`; one that does not answer fails the test (it must not read as
    /// zeros).
    fn metrics_text(&self) -> String {
        self.metrics().unwrap_or_else(|| {
            panic!(
                "the operator's /metrics (port {}) does not answer: {}",
                self.metrics_port,
                self.logs()
            )
        })
    }

    /// Sum of the samples of metric `name` whose labels contain every `labels` pair, e.g.
    /// `metric("hostrole_operator_api_writes_total", &[("kind", "Secret")])`; 0 when there are none (a
    /// family with labels shows nothing until its first sample). An operator that does not
    /// answer fails the test.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_in(&self.metrics_text(), name, labels)
    }

    /// Sum of metric `name`'s samples, which must exist (a plain counter or gauge, e.g.
    /// `hostrole_operator_reconciles_total`, always has one): an operator that does not answer, or a name
    /// it does not report, fails the test instead of reading as 0.
    pub fn metric_sum(&self, name: &str) -> f64 {
        let text = self.metrics_text();
        let values: Vec<f64> = samples(&text, name)
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .collect();
        assert!(!values.is_empty(), "no metric {name} in:\n{text}");
        values.iter().sum()
    }

    pub fn logs(&self) -> String {
        self.proc.stderr()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.proc.running()
    }

    /// The operator's process (signals, exit status).
    pub fn process(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

/// Sum of the samples of metric `name` in a Prometheus text whose labels contain every `labels`
/// pair; 0 when there are none (a family with labels shows nothing until its first sample).
pub fn metric_in(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text, name)
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sample lines of metric `name` in a Prometheus text.
fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> {
    text.lines()
        .filter(move |l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
}

/// Runs `script` (`sh -c`) in a pod with curl under the restricted Pod Security Standard (image
/// `HOSTROLE_E2E_CLIENT_IMAGE`, default `curlimages/curl:8.10.1`), on `node` when given, with
/// `labels`; waits up to five minutes for it to finish and returns its log. The pod must succeed.
pub async fn run_client_pod(
    env: &Env,
    ns: &str,
    name: &str,
    node: Option<&str>,
    labels: &[(&str, &str)],
    script: &str,
) -> String {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::LogParams;
    let image = std::env::var("HOSTROLE_E2E_CLIENT_IMAGE")
        .unwrap_or_else(|_| "curlimages/curl:8.10.1".into());
    let labels: std::collections::BTreeMap<&str, &str> = labels.iter().copied().collect();
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "nodeName": node,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "client",
                "image": image,
                "command": ["/bin/sh", "-c", script],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true}
            }]
        }
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), ns);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("client pod");
    let phase = eventually(
        &format!("client pod {name} finishes"),
        Duration::from_secs(300),
        || async {
            let phase = pods.get(name).await.ok()?.status?.phase?;
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
        },
    )
    .await;
    let log = pods
        .logs(name, &LogParams::default())
        .await
        .unwrap_or_default();
    assert_eq!(phase, "Succeeded", "{name} failed: {log}");
    log
}
