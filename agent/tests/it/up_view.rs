//! `hostrole-agent up` with several hosts: examples/home-office.yaml in one process (the office
//! and its laptop, whose six clients use the office), and the topology view over them, in
//! headless Chromium. A client that starts failing turns its edge red within its period.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support;

use hostrole_testkit::http::status;
use support::{Agent, Proc, fetch, free_consecutive_ports, free_port, repo_root, with_free_ports};

/// The view's graph now.
fn topology(view: u16) -> serde_json::Value {
    let body = fetch(&[&format!("http://127.0.0.1:{view}/api/topology")]);
    serde_json::from_str(&body.text()).expect("topology json")
}

/// The laptop's edge of `service`: its health and reason.
fn edge(t: &serde_json::Value, service: &str) -> (String, String) {
    let e = t["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["service"] == service)
        .unwrap_or(&serde_json::Value::Null);
    (
        e["health"].as_str().unwrap_or("absent").to_string(),
        e["reason"].as_str().unwrap_or_default().to_string(),
    )
}

fn wait_topology(view: u16, what: &str, limit: Duration, ok: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let t = topology(view);
        if ok(&t) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}; the view says:\n{t:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn several_hosts_in_one_process_are_drawn_live_and_a_failing_client_turns_red() {
    let text =
        std::fs::read_to_string(repo_root().join("examples/home-office.yaml")).expect("example");
    // The laptop's web client every 2 s, so that its failure shows soon.
    let text = text.replace(
        "      expect: {status: 200, contains: The office}",
        "      every: 2s\n      expect: {status: 200, contains: The office}",
    );
    let (manifest, _) = with_free_ports(
        &text,
        &[8080, 8081, 2525, 2587, 1143, 1110, 6667, 8000, 8631],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("home-office.yaml");
    std::fs::write(&path, manifest).expect("write");
    let data = dir.path().join("data");
    let admin = free_consecutive_ports(2);
    let view = free_port();
    // --open hands the view's URL to $BROWSER.
    let (browser_cmd, opened) = hostrole_testkit::browser::recording_opener(dir.path());
    let agent = Agent::up_at(
        &path,
        &data,
        admin,
        &["--view-port", &view.to_string(), "--open"],
        &[("BROWSER", browser_cmd.to_str().expect("utf-8"))],
    );
    let stdout = agent.stdout();
    assert!(
        stdout.contains("starting 2 hosts: office, laptop")
            && stdout.contains("office is up")
            && stdout.contains(&format!("http://127.0.0.1:{view}/")),
        "{stdout}"
    );
    support::wait_until(
        "the browser was asked to open the view",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&opened)
                .is_ok_and(|u| u == format!("http://127.0.0.1:{view}/\n"))
        },
    );
    // Each host in a directory of its own name, each on its own admin port.
    assert!(data.join("office/site/index.html").is_file());
    assert!(data.join("laptop/clients").is_dir());
    assert_eq!(
        fetch(&[&format!("http://127.0.0.1:{}/readyz", admin + 1)]).text(),
        "ready\n"
    );

    // Both hosts, the office's six roles serving, and the laptop's six clients all healthy
    // against it (mail's first round trip takes the longest).
    wait_topology(view, "every client ok", Duration::from_secs(120), |t| {
        let edges = t["edges"].as_array().map_or(0, Vec::len);
        let ok = t["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["health"] == "Ok" && e["toGroup"] == true)
            .count();
        edges == 6 && ok == 6
    });
    let t = topology(view);
    let groups: Vec<&str> = t["regions"][0]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["id"].as_str())
        .collect();
    assert_eq!(groups, ["default/laptop", "default/office"], "{t:#}");
    let office = &t["regions"][0]["groups"][1];
    let badges: Vec<String> = office["hosts"][0]["badges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            format!(
                "{}:{}",
                b["role"].as_str().unwrap_or(""),
                b["state"].as_str().unwrap_or("")
            )
        })
        .collect();
    for role in ["web", "file", "mail", "chat", "radio", "print"] {
        assert!(
            badges.contains(&format!("{role}:Serving")),
            "{role}: {badges:?}"
        );
    }
    assert!(
        office["urls"].as_array().is_some_and(|u| u.iter().any(|u| u
            .as_str()
            .is_some_and(|u| u.starts_with("ipp://127.0.0.1:")))),
        "{office:#}"
    );

    // Read-only and for loopback names only, as the operator's view (DNS rebinding).
    let topology_url = format!("http://127.0.0.1:{view}/api/topology");
    assert_eq!(status(&["-H", "Host: evil.example", &topology_url]), 403);
    assert_eq!(status(&["-X", "POST", &topology_url]), 405);

    // The page: drawn, then the web client fails (the office's page is gone) and its edge
    // turns red.
    let browser_ok = std::path::Path::new("/usr/bin/chromium").exists();
    hostrole_testkit::browser::require();
    let logs = tempfile::tempdir().expect("tempdir");
    let screenshot = dir.path().join("view.png");
    let mut browser = Proc::spawn(
        "browser",
        Command::new("/usr/bin/python3")
            .arg(repo_root().join("operator/tests/ui/view.py"))
            .arg(format!("http://127.0.0.1:{view}/"))
            .arg(&screenshot)
            .env("VIEW_FAILING", "web")
            .env("VIEW_HOST", "office"),
        logs.path(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !browser.stdout().contains("drawn:") {
        assert!(
            browser.exited().is_none() && Instant::now() < deadline,
            "the page drew nothing (chromium: {browser_ok})\nstdout:\n{}\nstderr:\n{}",
            browser.stdout(),
            browser.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_file(data.join("office/site/index.html")).expect("remove the page");
    let status = browser.wait_exit(Duration::from_secs(90));
    let out = browser.stdout();
    assert!(
        status.success(),
        "stdout:\n{out}\nstderr:\n{}",
        browser.stderr()
    );
    assert!(
        out.contains("groups=2 hosts=2 edges=6 ok=6 failing=0"),
        "{out}"
    );
    assert!(out.contains("stroke=rgb(207, 34, 46)"), "{out}");
    assert!(out.contains("moved: 0 of 2 hosts"), "{out}");
    assert!(
        out.contains("details:")
            && out.contains("web: Serving")
            && out.contains("http://127.0.0.1:"),
        "{out}"
    );
    let (health, reason) = edge(&topology(view), "web");
    assert_eq!(health, "Failing", "{reason}");
    assert!(!reason.is_empty());
    agent.terminate();
}
