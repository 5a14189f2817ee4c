//! The print client (`service: print`) against CUPS' reference printer, `ippeveprinter`
//! (Debian cups-ipp-utils), in one agent started with `hostrole-agent run --config`: its
//! `/clients` results are read as users read them. ippeveprinter is an independent IPP
//! implementation, so this checks the client's Print-Job and Get-Job-Attributes encoding; it has
//! no output tray (`/printouts/`), so a completed job ends in `PrintoutMissing`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::clients::wait_for;
use support::{Agent, Proc, free_port, installed, listening};

fn message(r: &Value) -> &str {
    r["message"].as_str().unwrap_or_default()
}

/// A private D-Bus daemon: ippeveprinter will not start without a system bus for its DNS-SD
/// (Avahi) client, even with `-r off`; pointing `DBUS_SYSTEM_BUS_ADDRESS` at this one is enough
/// (no avahi-daemon is needed: the client waits for it and ippeveprinter goes on).
struct Bus {
    address: String,
    _daemon: Proc,
}

fn bus(dir: &Path) -> Bus {
    installed("dbus-daemon", "dbus-daemon");
    let socket = dir.join("bus");
    let address = format!("unix:path={}", socket.display());
    let mut daemon = Proc::spawn(
        "dbus",
        Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}")),
        dir,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        daemon.assert_running();
        assert!(Instant::now() < deadline, "dbus-daemon made no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    Bus {
        address,
        _daemon: daemon,
    }
}

/// ippeveprinter on a loopback port, accepting PDF, keeping its jobs' files in `spool`; each
/// job "prints" by running `command` on the file (`/bin/true`: completed at once, `/bin/false`:
/// aborted). `-n localhost`: with an address it fails to listen on IPv6 and exits.
struct Printer {
    port: u16,
    spool: PathBuf,
    _proc: Proc,
}

fn ippeveprinter(dir: &Path, bus: &Bus, name: &str, command: &str) -> Printer {
    installed("ippeveprinter", "cups-ipp-utils");
    let port = free_port();
    let spool = dir.join(format!("{name}-spool"));
    std::fs::create_dir_all(&spool).expect("mkdir");
    let mut proc = Proc::spawn(
        name,
        Command::new("ippeveprinter")
            .args([
                "-n",
                "localhost",
                "-p",
                &port.to_string(),
                "-k",
                "-r",
                "off",
            ])
            .args(["-f", "application/pdf", "-c", command])
            .arg("-d")
            .arg(&spool)
            .arg(name)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address),
        dir,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listening(port) {
        proc.assert_running();
        assert!(
            Instant::now() < deadline,
            "ippeveprinter did not listen on {port}: {}",
            proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Printer {
        port,
        spool,
        _proc: proc,
    }
}

/// A printer that completes every job: the IPP part of the probe works (Print-Job accepted,
/// the job followed to `completed`, the PDF arrives whole under its job name), and the client
/// then says that this printer offers no printout. A printer whose "print command" fails
/// aborts the job: the client reports `JobFailed` with the printer's job-state-message.
#[test]
fn print_clients_follow_a_job_on_cups_reference_printer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = bus(dir.path());
    let good = ippeveprinter(dir.path(), &bus, "good", "/bin/true");
    let broken = ippeveprinter(dir.path(), &bus, "broken", "/bin/false");

    let admin = free_port();
    let client = |i: usize, target: &str| {
        format!(
            "  - {{name: print-{i}, service: print, server: s{i}, target: !url \"{target}\", \
             everyMs: 60000, timeoutMs: 10000}}\n"
        )
    };
    let mut config = format!(
        "hostRole: print-test\nbind: 127.0.0.1\nadminPort: {admin}\nshutdownGraceSeconds: 1\n\
         clients:\n"
    );
    config.push_str(&client(
        0,
        &format!("ipp://localhost:{}/ipp/print", good.port),
    ));
    config.push_str(&client(
        1,
        &format!("ipp://localhost:{}/ipp/print", broken.port),
    ));
    // The http:// spelling and a path that is no printer there.
    config.push_str(&client(
        2,
        &format!("http://localhost:{}/ipp/nothing", good.port),
    ));
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, &config).expect("agent config");
    let agent = Agent::run(&path, admin);

    let missing = wait_for(
        &agent,
        "print-0",
        "PrintoutMissing",
        Duration::from_secs(30),
    );
    assert_eq!(missing["service"], "print", "{missing}");
    assert!(
        message(&missing).starts_with("the printer completed the job but offers no printout")
            && message(&missing).contains("404"),
        "{missing}"
    );
    // ippeveprinter kept the document it printed: the client's probe, whole, under its job name.
    let kept: Vec<PathBuf> = std::fs::read_dir(&good.spool)
        .expect("spool")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let name = kept[0].file_name().expect("name").to_string_lossy();
    assert!(name.ends_with("-hostrole-probe-print-0.pdf"), "{name}");
    let pdf = std::fs::read(&kept[0]).expect("read");
    let text = String::from_utf8_lossy(&pdf);
    assert!(
        text.starts_with("%PDF-1.4")
            && text.contains("(client: print-0)")
            && text.ends_with("%%EOF\n"),
        "{text}"
    );

    let aborted = wait_for(&agent, "print-1", "JobFailed", Duration::from_secs(30));
    assert!(
        message(&aborted).starts_with("the printer aborted the job"),
        "{aborted}"
    );

    let nothing = wait_for(&agent, "print-2", "Refused", Duration::from_secs(30));
    assert!(
        message(&nothing).starts_with("Print-Job answered client-error-not-found")
            && message(&nothing).contains("no printer at this URI"),
        "{nothing}"
    );

    let mut agent = agent;
    agent.terminate();
    let status = agent.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "{status}: {}", agent.stderr());
}

/// A job left pending on `uri`: Create-Job with no document (ipptool, CUPS' IPP client), so the
/// job waits for one and keeps its place in the queue.
fn create_pending_job(dir: &Path, uri: &str) {
    installed("ipptool", "cups-ipp-utils");
    let test = dir.join("create-job.test");
    std::fs::write(
        &test,
        "{\n  NAME \"Create-Job without a document\"\n  OPERATION Create-Job\n  GROUP operation\n  \
         ATTR charset attributes-charset utf-8\n  ATTR language attributes-natural-language en\n  \
         ATTR uri printer-uri $uri\n  ATTR name requesting-user-name someone\n  \
         ATTR name job-name waiting-for-a-document\n  STATUS successful-ok\n  EXPECT job-id\n}\n",
    )
    .expect("test file");
    let out = Command::new("ipptool")
        .args(["-t", uri])
        .arg(&test)
        .output()
        .expect("ipptool runs");
    assert!(
        out.status.success(),
        "ipptool Create-Job: {}",
        support::text(&out)
    );
}

fn write_credentials(dir: &Path, user: &str, password: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("username"), format!("{user}\n")).expect("username");
    std::fs::write(dir.join("password"), format!("{password}\n")).expect("password");
    dir.to_path_buf()
}

/// Our print role, in its own agent; another agent's clients print on it over the network.
/// Without users: the probe prints, its printout is fetched and matches (and is the file in the
/// output folder); with a full queue (`maxJobs: 1` and a job waiting for its document) the
/// printer refuses the next job. With a users file: the right login prints, a wrong password
/// and no login are refused (HTTP 401).
#[test]
fn print_clients_print_on_the_print_role_and_check_the_printout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users");
    std::fs::write(&users, format!("alice:{}\n", support::password_hash("ink"))).expect("users");
    let role = |name: &str, port: u16, admin: u16, max_jobs: usize, users: Option<&Path>| {
        let spool = dir.path().join(format!("{name}-spool"));
        let output = dir.path().join(format!("{name}-output"));
        let users = users.map_or(String::new(), |u| {
            format!(", usersFile: \"{}\"", u.display())
        });
        let config = format!(
            "hostRole: {name}\nbind: 127.0.0.1\nadminPort: {admin}\nshutdownGraceSeconds: 1\n\
             print: {{name: {name}, port: {port}, spoolDir: \"{}\", outputDir: \"{}\", \
             maxJobBytes: 1048576, maxJobs: {max_jobs}{users}}}\n",
            spool.display(),
            output.display()
        );
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, config).expect("config");
        (Agent::run(&path, admin), output)
    };
    let (open_port, open_admin) = (free_port(), free_port());
    let (_open, open_output) = role("open", open_port, open_admin, 1, None);
    let (office_port, office_admin) = (free_port(), free_port());
    let (_office, _) = role("office", office_port, office_admin, 10, Some(&users));

    let right = write_credentials(&dir.path().join("right"), "alice", "ink");
    let wrong = write_credentials(&dir.path().join("wrong"), "alice", "toner");
    let admin = free_port();
    let client = |i: usize, port: u16, credentials: Option<&Path>| {
        let login = credentials.map_or(String::new(), |c| {
            format!(", credentialsDir: \"{}\"", c.display())
        });
        format!(
            "  - {{name: print-{i}, service: print, server: s{i}, \
             target: !url \"ipp://127.0.0.1:{port}/ipp/print\", everyMs: 1000, \
             timeoutMs: 10000{login}}}\n"
        )
    };
    let config = format!(
        "hostRole: workstation\nbind: 127.0.0.1\nadminPort: {admin}\nshutdownGraceSeconds: 1\n\
         clients:\n{}{}{}{}",
        client(0, open_port, None),
        client(1, office_port, Some(&right)),
        client(2, office_port, Some(&wrong)),
        client(3, office_port, None),
    );
    let path = dir.path().join("workstation.yaml");
    std::fs::write(&path, config).expect("config");
    let agent = Agent::run(&path, admin);

    let ok = wait_for(&agent, "print-0", "Ok", Duration::from_secs(30));
    assert!(
        message(&ok).starts_with("Print-Job completed; the printout's SHA-256 matches the probe"),
        "{ok}"
    );
    for phase in ["submit", "printing", "printout", "total"] {
        assert!(ok["timingsMs"][phase].as_u64().is_some(), "{phase}: {ok}");
    }
    // The printout is a file of the output folder, named after the job.
    let printouts: Vec<String> = std::fs::read_dir(&open_output)
        .expect("output folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-hostrole-probe-print-0.pdf"))
        .collect();
    assert!(!printouts.is_empty(), "{printouts:?}");

    let ok = wait_for(&agent, "print-1", "Ok", Duration::from_secs(30));
    assert!(message(&ok).contains("matches the probe"), "{ok}");
    let wrong = wait_for(&agent, "print-2", "AuthFailed", Duration::from_secs(30));
    assert!(
        message(&wrong).starts_with("Print-Job answered HTTP 401 Unauthorized")
            && message(&wrong).contains("refused the login of \"alice\""),
        "{wrong}"
    );
    let anonymous = wait_for(&agent, "print-3", "AuthFailed", Duration::from_secs(30));
    assert!(
        message(&anonymous).contains("requires a login (give the client credentials)"),
        "{anonymous}"
    );

    // A job waiting for its document fills a queue of one: the next probe is refused.
    create_pending_job(
        dir.path(),
        &format!("ipp://127.0.0.1:{open_port}/ipp/print"),
    );
    let full = wait_for(&agent, "print-0", "Refused", Duration::from_secs(30));
    assert!(
        message(&full).starts_with("Print-Job answered server-error-too-many-jobs")
            && message(&full).contains("queue is full"),
        "{full}"
    );
}
