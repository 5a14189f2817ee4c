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
