//! The client role against the real server roles on loopback: a server agent (web, file and
//! mail) and a client agent, each a real `hostrole-agent up` process. Results are read where
//! users read them: `GET /clients` and `/metrics` on the client's admin port; what the clients
//! leave on the server is read from the server's data directory.

use crate::support;

use std::path::Path;
use std::time::Duration;

use hostrole_testkit::mail::Maildir;
use serde_json::Value;
use support::clients::{results, wait_for};
use support::{Agent, fetch, free_port, repo_root, with_free_ports};

/// The users Secret of examples/home-office.yaml (alice: change-me, bob: change-me-too).
fn users_secret() -> String {
    let text =
        std::fs::read_to_string(repo_root().join("examples/home-office.yaml")).expect("example");
    let start = text.find("apiVersion: v1\nkind: Secret").expect("a Secret");
    let end = text[start..].find("\n---\n").expect("end of the Secret") + start;
    text[start..end].to_string()
}

struct Ports {
    web: u16,
    file: u16,
    smtp: u16,
    submission: u16,
    imap: u16,
    pop3: u16,
}

impl Ports {
    fn new() -> Self {
        Self {
            web: free_port(),
            file: free_port(),
            smtp: free_port(),
            submission: free_port(),
            imap: free_port(),
            pop3: free_port(),
        }
    }
}

/// A manifest with the `office` server, `laptop` (whose clients are `clients`) and two
/// basic-auth Secrets: `right` (alice's password) and `wrong`.
fn manifest(ports: &Ports, clients: &str) -> String {
    let Ports {
        web,
        file,
        smtp,
        submission,
        imap,
        pop3,
    } = ports;
    format!(
        r#"{users}
---
apiVersion: v1
kind: Secret
metadata: {{name: right, labels: {{hostrole.dev/use: "true"}}}}
type: kubernetes.io/basic-auth
stringData: {{username: alice, password: change-me}}
---
apiVersion: v1
kind: Secret
metadata: {{name: wrong, labels: {{hostrole.dev/use: "true"}}}}
type: kubernetes.io/basic-auth
stringData: {{username: alice, password: not-her-password}}
---
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {{name: office}}
spec:
  servers:
    web:
      port: {web}
      site: {{files: [{{path: index.html, content: "<h1>The office</h1>"}}]}}
    file: {{port: {file}, users: {{secret: office-users}}}}
    mail:
      smtpPort: {smtp}
      submissionPort: {submission}
      imapPort: {imap}
      pop3Port: {pop3}
      domains: [office.lan]
      users: {{secret: office-users}}
---
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {{name: laptop}}
spec:
  clients:
{clients}
"#,
        users = users_secret()
    )
}

/// Files in a directory tree whose name contains `needle`. The directory must exist: an empty
/// list read from a wrong path would prove nothing.
fn files_named(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_named(&path, needle));
        } else if entry.file_name().to_string_lossy().contains(needle) {
            found.push(path.display().to_string());
        }
    }
    found
}

fn start(dir: &Path, text: &str, name: &str) -> Agent {
    let path = dir.join("hosts.yaml");
    std::fs::write(&path, text).expect("manifest");
    Agent::up(&path, &dir.join(name), &["--name", name])
}

/// Stops an agent with SIGTERM and waits for it (a run in flight finishes and cleans up).
fn stop(mut agent: Agent) {
    agent.terminate();
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}: {}", agent.stderr());
}

/// Two mail hosts of one manifest and a laptop whose mail client logs in to the office's
/// submission port as alice and sends to bob at the branch, reading it back there: the office's
/// queue and its route to the branch (the translator's transport map), end to end.
#[test]
fn a_mail_client_probes_the_way_from_one_mail_host_to_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let office = Ports::new();
    let branch = Ports::new();
    let mail = |name: &str, ports: &Ports| {
        format!(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: {name}}}\nspec:\n  servers:\n    mail:\n      smtpPort: {}\n      submissionPort: {}\n      imapPort: {}\n      pop3Port: {}\n      domains: [{name}.lan]\n      users: {{secret: office-users}}\n      outbound: {{retryInterval: 1s}}\n",
            ports.smtp, ports.submission, ports.imap, ports.pop3
        )
    };
    let text = format!(
        r#"{users}
---
apiVersion: v1
kind: Secret
metadata: {{name: alice, labels: {{hostrole.dev/use: "true"}}}}
type: kubernetes.io/basic-auth
stringData: {{username: alice, password: change-me}}
---
apiVersion: v1
kind: Secret
metadata: {{name: bob, labels: {{hostrole.dev/use: "true"}}}}
type: kubernetes.io/basic-auth
stringData: {{username: bob, password: change-me-too}}
---
{office}---
{branch}---
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {{name: laptop}}
spec:
  clients:
    - service: mail
      server: office
      credentials: {{secret: alice}}
      to: {{server: branch, credentials: {{secret: bob}}}}
      every: 1s
      timeout: 20s
"#,
        users = users_secret(),
        office = mail("office", &office),
        branch = mail("branch", &branch),
    );
    let office_agent = start(dir.path(), &text, "office");
    let branch_agent = start(dir.path(), &text, "branch");
    let laptop = start(dir.path(), &text, "laptop");

    let result = wait_for(&laptop, "mail-0", "Ok", Duration::from_secs(60));
    assert!(
        result["timingsMs"]["delivery"].as_u64().is_some(),
        "{result}"
    );
    let message = result["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("alice@office.lan") && message.contains("bob@branch.lan"),
        "{result}"
    );
    // The branch saw it come in over SMTP from the office, and the office's submission took it.
    let branch_metrics = fetch(&[&branch_agent.admin_url("/metrics")]).text();
    assert!(
        branch_metrics.contains(
            "hostrole_agent_commands_total{role=\"smtp\",command=\"DATA\",outcome=\"Ok\"}"
        ),
        "{branch_metrics}"
    );
    let office_metrics = fetch(&[&office_agent.admin_url("/metrics")]).text();
    assert!(
        office_metrics.contains(
            "hostrole_agent_commands_total{role=\"submission\",command=\"AUTH\",outcome=\"Ok\"}"
        ),
        "{office_metrics}"
    );

    // The probes are deleted where they were read; nothing is left for bob, or in the queue.
    stop(laptop);
    let branch_mail = dir.path().join("branch").join("mail");
    assert_eq!(Maildir::new(branch_mail).messages("bob"), 0);
    drop(branch_agent);
    drop(office_agent);
}

#[test]
fn web_file_and_mail_clients_succeed_against_the_real_roles_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = Ports::new();
    let text = manifest(
        &ports,
        "    - {service: web, server: office, every: 1s, expect: {status: 200, contains: The office}}
    - {service: file, server: office, every: 1s, credentials: {secret: right}}
    - {service: mail, server: office, every: 1s, timeout: 10s, credentials: {secret: right}}",
    );
    let office = start(dir.path(), &text, "office");
    let laptop = start(dir.path(), &text, "laptop");

    let web = wait_for(&laptop, "web-0", "Ok", Duration::from_secs(20));
    assert_eq!(web["service"], "web");
    assert_eq!(web["server"], "office");
    assert!(web["latencyMs"].as_u64().is_some(), "{web}");
    assert!(web["timingsMs"]["firstByte"].as_u64().is_some(), "{web}");
    assert!(web["timingsMs"]["total"].as_u64().is_some(), "{web}");
    assert!(
        web["lastSuccess"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{web}"
    );
    assert_eq!(web["message"], "GET / answered 200 OK");

    let file = wait_for(&laptop, "file-1", "Ok", Duration::from_secs(20));
    assert!(file["latencyMs"].as_u64().is_some(), "{file}");
    let mail = wait_for(&laptop, "mail-2", "Ok", Duration::from_secs(30));
    assert!(mail["timingsMs"]["delivery"].as_u64().is_some(), "{mail}");

    // The server saw the clients as real clients: requests in its own metrics.
    let server_metrics = fetch(&[&office.admin_url("/metrics")]).text();
    for needle in [
        "role=\"web\",method=\"GET\",code=\"200\"",
        "role=\"file\",method=\"PUT\",code=\"201\"",
        "role=\"file\",method=\"PROPFIND\",code=\"207\"",
        "role=\"file\",method=\"DELETE\",code=\"204\"",
        "hostrole_agent_commands_total{role=\"imap\",command=\"EXPUNGE\",outcome=\"Ok\"}",
    ] {
        assert!(
            server_metrics.contains(needle),
            "{needle}: {server_metrics}"
        );
    }

    // Let every client run a few times, then look at the metrics.
    std::thread::sleep(Duration::from_secs(2));
    let metrics = fetch(&[&laptop.admin_url("/metrics")]).text();
    for client in [("web-0", "web"), ("file-1", "file"), ("mail-2", "mail")] {
        let labels = format!(
            "client=\"{}\",service=\"{}\",server=\"office\"",
            client.0, client.1
        );
        for needle in [
            format!("hostrole_client_up{{{labels}}} 1"),
            format!("hostrole_client_duration_seconds_count{{{labels}}}"),
            format!("hostrole_client_last_success_timestamp_seconds{{{labels}}}"),
            format!("hostrole_client_runs_total{{{labels},result=\"ok\"}}"),
        ] {
            assert!(metrics.contains(&needle), "{needle}: {metrics}");
        }
    }
    let ready = fetch(&[&laptop.admin_url("/readyz")]);
    assert_eq!(ready.status, 200, "a host with only clients is ready");

    // Nothing left behind once the laptop has stopped: no probe file, no probe message.
    stop(laptop);
    let office_data = dir.path().join("office");
    assert_eq!(
        files_named(&office_data.join("file"), "hostrole-probe"),
        Vec::<String>::new()
    );
    // The probes went to alice (the client's credentials): her Maildir exists, and is empty.
    assert_eq!(Maildir::new(office_data.join("mail")).messages("alice"), 0);
    drop(office);
}

#[test]
fn failures_carry_a_clear_reason_and_clients_recover_when_the_server_comes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = Ports::new();
    let text = manifest(
        &ports,
        "    - {service: web, server: office, every: 1s}
    - {service: file, server: office, every: 1s, credentials: {secret: wrong}}
    - {service: mail, server: office, every: 1s, credentials: {secret: wrong}}
    - {service: web, server: office, every: 1s, expect: {contains: not on the page}}
    - {service: web, server: office, every: 1s, path: /missing.html}
    - {service: web, server: office, every: 1s, expect: {status: 201}}
    - {service: file, server: office, every: 1s, credentials: {secret: right}}",
    );
    // The laptop starts first: every server is down.
    let laptop = start(dir.path(), &text, "laptop");
    let pending = results(&laptop);
    assert_eq!(pending.len(), 7);
    for name in ["web-0", "file-1", "mail-2", "file-6"] {
        let r = wait_for(&laptop, name, "ConnectFailed", Duration::from_secs(15));
        assert!(
            r["message"].as_str().is_some_and(|m| m.contains("connect")),
            "{r}"
        );
        assert_eq!(r["lastSuccess"], Value::Null);
    }
    let ready = fetch(&[&laptop.admin_url("/readyz")]);
    assert_eq!(
        ready.status, 200,
        "failing clients do not make the host unready"
    );
    let metrics = fetch(&[&laptop.admin_url("/metrics")]).text();
    assert!(
        metrics
            .contains("hostrole_client_up{client=\"web-0\",service=\"web\",server=\"office\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("result=\"ConnectFailed\""), "{metrics}");

    // The server comes up: the clients recover (backoff is capped at `every`).
    let office = start(dir.path(), &text, "office");
    let recovered = wait_for(&laptop, "web-0", "Ok", Duration::from_secs(10));
    assert!(recovered["lastSuccess"].is_string());
    wait_for(&laptop, "file-6", "Ok", Duration::from_secs(10));
    let file = wait_for(&laptop, "file-1", "AuthFailed", Duration::from_secs(10));
    assert!(
        file["message"]
            .as_str()
            .is_some_and(|m| m.contains("credentials")),
        "{file}"
    );
    let mail = wait_for(&laptop, "mail-2", "AuthFailed", Duration::from_secs(10));
    assert!(
        mail["message"]
            .as_str()
            .is_some_and(|m| m.contains("LOGIN")),
        "{mail}"
    );
    let content = wait_for(
        &laptop,
        "web-3",
        "UnexpectedContent",
        Duration::from_secs(10),
    );
    assert!(
        content["message"]
            .as_str()
            .is_some_and(|m| m.contains("not on the page")),
        "{content}"
    );
    let missing = wait_for(
        &laptop,
        "web-4",
        "UnexpectedStatus",
        Duration::from_secs(10),
    );
    assert!(
        missing["message"]
            .as_str()
            .is_some_and(|m| m.contains("404")),
        "{missing}"
    );
    let status = wait_for(
        &laptop,
        "web-5",
        "UnexpectedStatus",
        Duration::from_secs(10),
    );
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("200 OK, expected 201")),
        "{status}"
    );

    // No probe is left by the failed or successful runs. A probe file lives for one run (a few
    // milliseconds, every second): one seen now and still there after three more runs was left.
    let share = dir.path().join("office/file");
    let now = files_named(&share, "hostrole-probe");
    std::thread::sleep(Duration::from_millis(3_500));
    let later = files_named(&share, "hostrole-probe");
    let left: Vec<&String> = now.iter().filter(|f| later.contains(f)).collect();
    assert!(left.is_empty(), "probes left behind: {left:?}");

    // The server goes away again: reported at once, the last success kept. (Killed between a
    // probe's PUT and its DELETE, the server keeps that probe: nobody is left to delete it.)
    drop(office);
    let down = wait_for(&laptop, "web-0", "ConnectFailed", Duration::from_secs(10));
    let (before, kept) = (
        recovered["lastSuccess"].as_str().expect("a success"),
        down["lastSuccess"]
            .as_str()
            .expect("the last success is kept"),
    );
    assert!(kept >= before, "{kept} >= {before}");
    stop(laptop);
}

#[test]
fn the_home_office_laptop_uses_every_service_of_the_office_standalone() {
    let example =
        std::fs::read_to_string(repo_root().join("examples/home-office.yaml")).expect("example");
    let (text, _) = with_free_ports(
        &example,
        &[8080, 8081, 2525, 2587, 1143, 1110, 6667, 8000, 8631],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let office = start(dir.path(), &text, "office");
    let laptop = start(dir.path(), &text, "laptop");
    for (name, limit) in [
        ("web-0", 15),
        ("file-1", 15),
        ("mail-2", 30),
        ("chat-3", 30),
        ("radio-4", 30),
        ("print-5", 30),
    ] {
        wait_for(&laptop, name, "Ok", Duration::from_secs(limit));
    }
    let all = results(&laptop);
    assert_eq!(all.len(), 6);
    // The probe's printout landed in the share's printouts/ folder, where alice fetches it
    // over WebDAV like any file.
    let printouts = files_named(&dir.path().join("office/file/printouts"), "hostrole-probe");
    assert!(!printouts.is_empty(), "{all:?}");
    assert!(all.iter().all(|r| r["ok"] == true), "{all:?}");
    // The credentials were written owner-only.
    use std::os::unix::fs::PermissionsExt;
    let password = dir.path().join("laptop/clients/file-1/password");
    let mode = std::fs::metadata(&password)
        .expect("written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    stop(laptop);
    drop(office);
}

#[test]
fn a_client_server_outside_the_manifest_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("laptop.yaml");
    std::fs::write(
        &path,
        "apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: laptop}
spec:
  clients:
    - {service: web, url: \"http://127.0.0.1:1/\"}
    - {service: web, server: nas}
",
    )
    .expect("manifest");
    let out = std::process::Command::new(support::agent_bin())
        .arg("up")
        .arg(&path)
        .args(["--admin-port", &free_port().to_string()])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.clients[1].server")
            && stderr.contains("nas")
            && stderr.contains("url:"),
        "{stderr}"
    );
}

/// The chat client against the real chat role (`requireLogin`, accounts from the users Secret):
/// two connections of alice meet in the probe channel and one's message reaches the other;
/// wrong credentials are `AuthFailed`, and a client without any is refused by the server, with
/// the server's own words.
#[test]
fn chat_clients_log_in_and_see_their_message_delivered_or_say_why_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let irc = free_port();
    let text = format!(
        r#"{users}
---
apiVersion: v1
kind: Secret
metadata: {{name: right, labels: {{hostrole.dev/use: "true"}}}}
type: kubernetes.io/basic-auth
stringData: {{username: alice, password: change-me}}
---
apiVersion: v1
kind: Secret
metadata: {{name: wrong, labels: {{hostrole.dev/use: "true"}}}}
type: kubernetes.io/basic-auth
stringData: {{username: alice, password: not-her-password}}
---
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {{name: office}}
spec:
  servers:
    chat: {{port: {irc}, users: {{secret: office-users}}, requireLogin: true}}
---
apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {{name: laptop}}
spec:
  clients:
    - {{service: chat, server: office, every: 1s, timeout: 10s, credentials: {{secret: right}}}}
    - {{service: chat, server: office, every: 1s, timeout: 10s, credentials: {{secret: wrong}}}}
    - {{service: chat, url: "irc://127.0.0.1:{irc}/", every: 1s, timeout: 10s}}
"#,
        users = users_secret()
    );
    let office = start(dir.path(), &text, "office");
    let laptop = start(dir.path(), &text, "laptop");

    let ok = wait_for(&laptop, "chat-0", "Ok", Duration::from_secs(30));
    assert_eq!(ok["service"], "chat");
    assert!(ok["timingsMs"]["delivery"].as_u64().is_some(), "{ok}");
    assert!(ok["timingsMs"]["register"].as_u64().is_some(), "{ok}");
    let wrong = wait_for(&laptop, "chat-1", "AuthFailed", Duration::from_secs(30));
    assert!(
        wrong["message"]
            .as_str()
            .is_some_and(|m| m.contains("alice")),
        "{wrong}"
    );
    let anonymous = wait_for(&laptop, "chat-2", "AuthFailed", Duration::from_secs(30));
    assert!(
        anonymous["message"]
            .as_str()
            .is_some_and(|m| m.contains("the server answered 464") && m.contains("Login required")),
        "the server's refusal is shown: {anonymous}"
    );
    // The server counted the probes' messages as chat commands.
    let server_metrics = fetch(&[&office.admin_url("/metrics")]).text();
    for needle in [
        "hostrole_agent_commands_total{role=\"chat\",command=\"PRIVMSG\",outcome=\"Ok\"}",
        "hostrole_agent_commands_total{role=\"chat\",command=\"AUTHENTICATE\"",
    ] {
        assert!(
            server_metrics.contains(needle),
            "{needle}: {server_metrics}"
        );
    }
    stop(laptop);
    drop(office);
}
