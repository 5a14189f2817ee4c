//! The kubectl plugin against a real API server: `kubectl-hostrole status` prints a HostRole the
//! operator made Ready, `kubectl hostrole ...` finds the plugin on PATH as kubectl does,
//! `matrix` is the operator's own matrix, and `logs` finds a host's pod or says why not.
//! The binary is HOSTROLE_PLUGIN_BIN, else kubectl-hostrole beside HOSTROLE_OPERATOR_BIN.
//!
//! On the local control plane the hosts run on kwok's simulated node, which serves no logs:
//! `logs` is proven here up to the pod and its agent container (the API server's refusal is
//! reported with both); reading a log needs a node that runs containers.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hostrole_api::HostRole;
use hostrole_e2e::{Env, TempManifest, eventually};
use kube::Api;

const CONVERGE: Duration = Duration::from_secs(90);

fn web(name: &str, replicas: i32) -> String {
    format!(
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  servers:\n    web: {{}}\n"
    )
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn plugin(env: &Env, args: &[&str]) -> Output {
    assert!(
        env.plugin_bin.is_file(),
        "{} is missing: cargo build -p hostrole-operator (or set HOSTROLE_PLUGIN_BIN)",
        env.plugin_bin.display()
    );
    Command::new(&env.plugin_bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", env.plugin_bin.display()))
}

fn plugin_ok(env: &Env, args: &[&str]) -> String {
    let out = plugin(env, args);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "kubectl-hostrole {args:?} failed: {stdout}{stderr}"
    );
    stdout
}

/// kubectl with only the plugin's directory in front of PATH: kubectl finds `kubectl-hostrole`
/// there, as it would after a krew install.
fn kubectl_with_plugin(env: &Env, args: &[&str]) -> Output {
    let dir = env.plugin_bin.parent().expect("the plugin has a directory");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(&path));
    Command::new(&env.kubectl)
        .args(args)
        .env("PATH", std::env::join_paths(dirs).expect("PATH"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", env.kubectl.display()))
}

fn is_ready(hr: &HostRole) -> bool {
    hr.status.as_ref().is_some_and(|s| {
        s.observed_generation == hr.metadata.generation
            && s.hosts.iter().any(|h| h.ready)
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

fn apply(env: &Env, ns: &str, yaml: &str) {
    let manifest = TempManifest::new("hostrole.yaml", yaml);
    env.kubectl_ok(&["apply", "-n", ns, "-f", manifest.arg()]);
}

#[tokio::test]
async fn status_matrix_and_logs_against_a_real_api_server() {
    let env = Env::new().await;
    let ns = env.namespace("plugin").await;
    let _operator = env.operator(&ns, &[]);
    apply(&env, &ns, &web("site", 1));
    let hrs: Api<HostRole> = Api::namespaced(env.client.clone(), &ns);
    eventually(
        &format!("HostRole {ns}/site is Ready"),
        CONVERGE,
        || async { hrs.get("site").await.ok().filter(is_ready) },
    )
    .await;

    // status: the HostRole, its Ready condition and its host, as the operator reported them.
    let status = plugin_ok(&env, &["status", "-n", &ns]);
    let first = status.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "{ns}/site  roles web  hosts 1/1 ready  Ready=True"
        )),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.trim_start().starts_with("Ready ") && l.contains("True")),
        "no Ready condition row: {status}"
    );
    assert!(
        status.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.first() == Some(&"site-0") && cells.get(1) == Some(&"yes")
        }),
        "no ready host site-0: {status}"
    );
    // By name, and a name that is not there.
    assert!(plugin_ok(&env, &["status", "-n", &ns, "site"]).starts_with(&format!("{ns}/site")));
    assert_eq!(
        plugin_ok(&env, &["status", "-n", &ns, "other"]),
        format!("No HostRoles named other in namespace {ns}.\n")
    );

    // kubectl finds the plugin on PATH: `kubectl hostrole status` is the same command.
    let list = kubectl_with_plugin(&env, &["plugin", "list"]);
    let (stdout, stderr) = text(&list);
    assert!(
        stdout.contains("kubectl-hostrole"),
        "kubectl plugin list: {stdout}{stderr}"
    );
    let via_kubectl = kubectl_with_plugin(&env, &["hostrole", "status", "-n", &ns]);
    let (stdout, stderr) = text(&via_kubectl);
    assert!(via_kubectl.status.success(), "kubectl hostrole: {stderr}");
    assert!(
        stdout.starts_with(&format!(
            "{ns}/site  roles web  hosts 1/1 ready  Ready=True"
        )),
        "{stdout}"
    );
    // Without kubectl-hostrole on PATH, kubectl does not know the command (the check above is
    // the plugin's doing).
    let without = Command::new(&env.kubectl)
        .args(["hostrole", "status", "-n", &ns])
        .env("PATH", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("kubectl");
    assert!(!without.status.success(), "{:?}", text(&without));

    // matrix: exactly what `hostrole-operator matrix` prints (the same library code).
    let matrix = plugin_ok(&env, &["matrix", "-n", &ns]);
    let operator = Command::new(&env.operator_bin)
        .args(["matrix", "-n", &ns])
        .output()
        .expect("hostrole-operator matrix");
    assert!(operator.status.success(), "{:?}", text(&operator));
    assert_eq!(matrix, text(&operator).0);
    assert_eq!(
        matrix,
        "No clients declared: no HostRole here has spec.clients.\n"
    );
    // The topology of the same HostRoles as JSON: the plugin and the operator agree, and the
    // host the operator reported is there with its role serving.
    let json = plugin_ok(&env, &["matrix", "-n", &ns, "-f", "json"]);
    let operator = Command::new(&env.operator_bin)
        .args(["matrix", "-n", &ns, "--format", "json"])
        .output()
        .expect("hostrole-operator matrix");
    assert_eq!(json, text(&operator).0);
    let topology: serde_json::Value = serde_json::from_str(&json).expect("json");
    let group = &topology["regions"][0]["groups"][0];
    assert_eq!(group["id"], format!("{ns}/site"), "{json}");
    assert_eq!(group["hosts"][0]["name"], "site-0", "{json}");
    assert_eq!(
        group["hosts"][0]["badges"],
        serde_json::json!([{"role": "web", "state": "Serving"}]),
        "{json}"
    );

    // logs: an unknown host is named with the ones there are.
    let out = plugin(&env, &["logs", "-n", &ns, "nope"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert_eq!(
        stderr.trim(),
        format!("error: no host nope in namespace {ns}; hosts: site-0")
    );
    // A known host, by name and by its one-host HostRole: the request reaches the pod's agent
    // container (kwok's node serves no logs, so the API server's answer is the error).
    for host in ["site-0", "site"] {
        let out = plugin(&env, &["logs", "-n", &ns, host, "--tail", "5"]);
        let (stdout, stderr) = text(&out);
        if out.status.success() {
            // A node that serves logs: the agent's log is there.
            assert!(!stdout.is_empty(), "an empty log for {host}");
        } else {
            assert!(
                stderr.contains(&format!("cannot read the log of {ns}/site-0 (agent)")),
                "{host}: {stderr}"
            );
        }
    }

    // The live view with the same kubeconfig: its own watch finds the HostRole, and one
    // applied later appears without a reload.
    let port = hostrole_e2e::free_port();
    let logs = hostrole_e2e::tempdir().expect("tempdir");
    // --open hands the URL to $BROWSER once the view serves.
    let (browser, opened) = hostrole_testkit::browser::recording_opener(logs.path());
    let _view = hostrole_testkit::Proc::spawn(
        "view",
        Command::new(&env.operator_bin)
            .args([
                "view",
                "-n",
                &ns,
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--open",
            ])
            .env("BROWSER", &browser),
        logs.path(),
    );
    let groups = || async {
        let out = Command::new("curl")
            .args(["-sf", &format!("http://127.0.0.1:{port}/api/topology")])
            .output()
            .ok()?;
        let t: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(
            t["regions"][0]["groups"]
                .as_array()?
                .iter()
                .filter_map(|g| g["name"].as_str().map(str::to_string))
                .collect::<Vec<String>>(),
        )
    };
    eventually("the view lists site", CONVERGE, || async {
        groups().await.filter(|g| g == &["site"])
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/\n");
    eventually(
        "the browser was asked to open the view",
        CONVERGE,
        || async { std::fs::read_to_string(&opened).ok().filter(|u| *u == url) },
    )
    .await;
    apply(&env, &ns, &web("kiosk", 1));
    eventually("the view follows a new HostRole", CONVERGE, || async {
        groups().await.filter(|g| g == &["kiosk", "site"])
    })
    .await;
    // Not for other names (DNS rebinding), and not on another address than loopback.
    let rebound = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: evil.example",
            &format!("http://127.0.0.1:{port}/api/topology"),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&rebound.stdout), "403");
    let open = Command::new(&env.operator_bin)
        .args(["view", "--addr", "0.0.0.0:0"])
        .output()
        .expect("view");
    assert!(!open.status.success());
    assert!(
        String::from_utf8_lossy(&open.stderr).contains("listen on loopback"),
        "{:?}",
        text(&open)
    );

    // The same host name in two namespaces: -A asks which.
    let other = env.namespace("plugin").await;
    apply(&env, &other, &web("site", 1));
    let out = plugin(&env, &["logs", "-A", "site-0"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    let mut both = [ns.as_str(), other.as_str()];
    both.sort();
    assert_eq!(
        stderr.trim(),
        format!(
            "error: host site-0 exists in several namespaces ({}, {}): say which with -n",
            both[0], both[1]
        )
    );

    // A kubeconfig that is not there is an error, not a panic.
    let out = plugin(&env, &["status", "--kubeconfig", "/nonexistent/kubeconfig"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("error: cannot read the kubeconfig"),
        "{stderr}"
    );

    env.delete_namespace(&ns).await;
    env.delete_namespace(&other).await;
}
