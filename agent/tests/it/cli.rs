//! Bad input gets a clear error that names the field and the fix, and starts nothing.

use crate::support;

use std::process::Command;

use support::{agent_bin, curl, free_port, repo_root};

fn run_agent(args: &[&str]) -> std::process::Output {
    Command::new(agent_bin())
        .args(args)
        .output()
        .expect("run the agent")
}

#[test]
fn check_accepts_examples_and_rejects_each_invalid_manifest_with_its_message() {
    let examples = [
        repo_root().join("examples/web-host.yaml"),
        repo_root().join("examples/web-configmap.yaml"),
    ];
    let out = Command::new(agent_bin())
        .arg("check")
        .args(&examples)
        .output()
        .expect("check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("HostRole web is valid") && stdout.contains("HostRole brochure is valid"),
        "{stdout}"
    );

    let invalid = repo_root().join("e2e/manifests/invalid");
    let mut count = 0;
    for entry in std::fs::read_dir(&invalid).expect("list") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let out = Command::new(agent_bin())
            .arg("check")
            .arg(&path)
            .output()
            .expect("check");
        assert!(!out.status.success(), "{} must fail", path.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        for expect in text.lines().filter_map(|l| l.strip_prefix("# expect: ")) {
            assert!(
                stderr.contains(expect),
                "{}: {expect:?} not in {stderr}",
                path.display()
            );
        }
        count += 1;
    }
    assert!(count >= 20);
}

#[test]
fn up_refuses_an_invalid_manifest_and_listens_on_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The test holds the manifest's port and the admin port while the agent runs: an agent that
    // bound anything before judging the manifest would fail on them with "cannot listen", not
    // with the manifest's error. (Probing the ports afterwards would prove nothing: by then the
    // process has exited.)
    let held = std::net::TcpListener::bind(("127.0.0.1", free_port())).expect("hold a port");
    let admin = std::net::TcpListener::bind(("127.0.0.1", free_port())).expect("hold a port");
    let port = held.local_addr().expect("addr").port();
    let manifest = dir.path().join("bad.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: bad}}\nspec:\n  servers:\n    web: {{port: {port}}}\n    file: {{port: {port}}}\n"
        ),
    )
    .expect("write");
    let out = run_agent(&[
        "up",
        manifest.to_str().expect("utf-8"),
        "--admin-port",
        &admin.local_addr().expect("addr").port().to_string(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("two server roles use the same port"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("cannot listen"),
        "the agent tried to listen before refusing the manifest: {stderr}"
    );
}

#[test]
fn a_role_that_cannot_start_is_named_in_the_last_line_the_operator_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The file role's port is taken: web binds, file cannot.
    let held = std::net::TcpListener::bind(("0.0.0.0", free_port())).expect("hold a port");
    let taken = held.local_addr().expect("addr").port();
    let manifest = dir.path().join("host.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: busy}}\nspec:\n  servers:\n    web: {{port: {}}}\n    file: {{port: {taken}}}\n",
            free_port()
        ),
    )
    .expect("write");
    let out = run_agent(&[
        "up",
        manifest.to_str().expect("utf-8"),
        "--admin-port",
        &free_port().to_string(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("hostrole-agent: role file failed: ") && last.contains("cannot listen"),
        "{stderr}"
    );
    assert_eq!(
        hostrole_config::failed_role(&stderr, &["web", "file"]),
        Some("file")
    );
}

#[test]
fn up_explains_fields_that_need_a_cluster_or_a_missing_directory() {
    let out = run_agent(&[
        "up",
        repo_root()
            .join("examples/web-configmap.yaml")
            .to_str()
            .expect("utf-8"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.servers.web.site.configMap needs a cluster"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("m.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: m}\nspec:\n  servers:\n    web: {site: {path: no-such-dir}}\n",
    )
    .expect("write");
    let out = run_agent(&["up", manifest.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("spec.servers.web.site.path"), "{stderr}");
    assert!(stderr.contains("no-such-dir"), "{stderr}");
}

#[test]
fn up_with_two_hosts_on_one_port_names_both_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("two.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: one}\nspec: {servers: {web: {site: {files: [{path: index.html, content: one}]}}}}\n---\napiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: two}\nspec: {servers: {web: {}}}\n",
    )
    .expect("write");
    let data = dir.path().join("data");
    let out = run_agent(&[
        "up",
        manifest.to_str().expect("utf-8"),
        "--data-dir",
        data.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "port 8080 is taken twice: by one (spec.servers.web.port) and by two (spec.servers.web.port)"
        ) && stderr.contains("change one of the ports"),
        "{stderr}"
    );
    assert!(!data.exists(), "nothing was written");
    // --name picks one of them, as before.
    let out = run_agent(&["up", manifest.to_str().expect("utf-8"), "--name", "three"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no HostRole named three (it holds: one, two)"),
        "{stderr}"
    );
}

#[test]
fn up_with_several_hosts_stops_them_all_when_one_cannot_start_and_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let (free, admin) = (free_port(), support::free_consecutive_ports(2));
    let manifest = dir.path().join("two.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: one}}\nspec: {{servers: {{web: {{port: {free}, site: {{files: [{{path: index.html, content: one}}]}}}}}}}}\n---\n\
             apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: two}}\nspec: {{servers: {{web: {{port: {taken_port}, site: {{files: [{{path: index.html, content: two}}]}}}}}}}}\n"
        ),
    )
    .expect("write");
    let data = dir.path().join("data");
    let out = run_agent(&[
        "up",
        manifest.to_str().expect("utf-8"),
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--admin-port",
        &admin.to_string(),
        "--view-port",
        "0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: two: the web role cannot start: cannot listen on 127.0.0.1:{taken_port}"
        )),
        "{stderr}"
    );
    drop(taken);
}

#[test]
fn run_reads_the_operator_config_and_names_a_bad_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "hostRole: x\nbind: 127.0.0.1\nadminPort: 1\nwbe: {}\n",
    )
    .expect("write");
    let out = run_agent(&["run", "--config", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(bad.to_str().expect("utf-8")) && stderr.contains("wbe"),
        "{stderr}"
    );

    // A config as the operator renders it, pointed at a local site.
    let site = dir.path().join("site");
    std::fs::create_dir(&site).expect("mkdir");
    std::fs::write(site.join("index.html"), "from run").expect("write");
    let (port, admin) = (free_port(), free_port());
    let good = dir.path().join("agent.yaml");
    std::fs::write(
        &good,
        format!(
            "hostRole: office\nnamespace: lan\nbind: 127.0.0.1\nadminPort: {admin}\nweb:\n  port: {port}\n  root: {}\n  maxConnections: 16\n",
            site.display()
        ),
    )
    .expect("write");
    let mut child = Command::new(agent_bin())
        .args(["run", "--config", good.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    let mut body = String::new();
    for _ in 0..200 {
        let out = curl(&[
            "-s",
            "--max-time",
            "1",
            &format!("http://127.0.0.1:{port}/"),
        ]);
        if out.status.success() {
            body = String::from_utf8_lossy(&out.stdout).into_owned();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(body, "from run");
}
