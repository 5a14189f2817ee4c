//! The operator binary as a process, without a cluster.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// With the API server out of reach the controller keeps retrying its watches; SIGTERM must
/// still end the process well inside a pod's 30 s termination grace period.
#[test]
fn sigterm_ends_the_operator_even_when_the_api_server_is_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = hostrole_testkit::unreachable_kubeconfig(dir.path());
    let mut operator = Command::new(env!("CARGO_BIN_EXE_hostrole-operator"))
        .args([
            "run",
            "--agent-image",
            "example/agent:1",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the operator");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        operator.try_wait().expect("status").is_none(),
        "the operator keeps running (and retrying) while the API server is away"
    );
    let status = Command::new("kill")
        .args(["-TERM", &operator.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let sent = Instant::now();
    let exited = loop {
        if let Some(status) = operator.try_wait().expect("status") {
            break Some(status);
        }
        if sent.elapsed() > Duration::from_secs(25) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let Some(status) = exited else {
        let _ = operator.kill();
        panic!("still running 25 s after SIGTERM");
    };
    assert!(status.success(), "exit status {status}");
}

/// The view has no login: `run` refuses to serve it beyond loopback, as `view` does, before it
/// reaches for the cluster.
#[test]
fn the_view_is_refused_beyond_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = hostrole_testkit::unreachable_kubeconfig(dir.path());
    for (command, flag) in [("run", "--view-addr"), ("view", "--addr")] {
        let mut args = vec![command];
        if command == "run" {
            args.extend(["--agent-image", "example/agent:1"]);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_hostrole-operator"))
            .args(args)
            .args([flag, "0.0.0.0:8089"])
            .env("KUBECONFIG", &kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs");
        let started = Instant::now();
        while child.try_wait().expect("status").is_none() {
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!("{command} {flag} 0.0.0.0:8089 is still running: it was not refused");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("loopback"),
            "{command}: {stderr}"
        );
    }
}
