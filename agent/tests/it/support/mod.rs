//! What the agent's integration tests share beyond the workspace's test kit
//! (`hostrole-testkit`): the agent binary cargo built for them, started as a real process.
//!
//! Declared once in `main.rs`; each test module says `use crate::support;`.

pub mod clients;
pub mod p2p;
pub mod pki;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

pub use hostrole_testkit::http::{Response, curl, fetch, idle_connection, listening};
pub use hostrole_testkit::{
    Proc, free_consecutive_ports, free_port, repo_root, wait_for, wait_until, with_free_ports,
};

/// The agent binary built by cargo for these tests (with the `test-knobs` feature: the
/// dev-dependency of the agent on itself turns it on for test builds only).
pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hostrole-agent"))
}

/// Polls the admin port's `/readyz` until it answers 200; fails if the process exits first.
pub fn wait_ready(proc: &mut Proc, admin_port: u16, limit: Duration) {
    wait_ready_at(proc, "127.0.0.1", admin_port, limit)
}

/// [`wait_ready`] for an agent bound to `host`.
pub fn wait_ready_at(proc: &mut Proc, host: &str, admin_port: u16, limit: Duration) {
    let url = format!("http://{host}:{admin_port}/readyz");
    let deadline = std::time::Instant::now() + limit;
    loop {
        proc.assert_running();
        if hostrole_testkit::http::status(&[&url]) == 200 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not become ready within {limit:?}: {}",
            proc.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `hostrole-agent up` process; killed when dropped, so a failing test leaves nothing
/// behind.
pub struct Agent {
    pub proc: Proc,
    pub admin_port: u16,
    _logs: tempfile::TempDir,
}

impl Agent {
    /// Starts `hostrole-agent up MANIFEST` and waits until `/readyz` answers 200.
    pub fn up(manifest: &Path, data_dir: &Path, extra: &[&str]) -> Agent {
        Agent::up_at(manifest, data_dir, free_port(), extra, &[])
    }

    /// [`Agent::up`] with the (first host's) admin port chosen by the caller, and `env` set for
    /// the agent.
    pub fn up_at(
        manifest: &Path,
        data_dir: &Path,
        admin_port: u16,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Agent {
        let logs = tempfile::tempdir().expect("tempdir");
        let mut proc = Proc::spawn(
            "agent",
            Command::new(agent_bin())
                .arg("up")
                .arg(manifest)
                .args(["--admin-port", &admin_port.to_string()])
                .arg("--data-dir")
                .arg(data_dir)
                .args(extra)
                .envs(env.iter().copied()),
            logs.path(),
        );
        wait_ready(&mut proc, admin_port, Duration::from_secs(20));
        Agent {
            proc,
            admin_port,
            _logs: logs,
        }
    }

    /// Starts `hostrole-agent run --config CONFIG` (an agent configuration whose admin port is
    /// `admin_port`) and waits until `/readyz` answers 200.
    pub fn run(config: &Path, admin_port: u16) -> Agent {
        let logs = tempfile::tempdir().expect("tempdir");
        let mut proc = Proc::spawn(
            "agent",
            Command::new(agent_bin())
                .arg("run")
                .arg("--config")
                .arg(config),
            logs.path(),
        );
        wait_ready(&mut proc, admin_port, Duration::from_secs(20));
        Agent {
            proc,
            admin_port,
            _logs: logs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn stdout(&self) -> String {
        self.proc.stdout()
    }

    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.proc.terminate();
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        self.proc.wait_exit(limit)
    }
}

/// A finished command's stdout then stderr, as text.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a Python script (from the standard library only) with arguments; it must exit 0.
pub fn python(script: &str, args: &[&str]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("python3")
        .arg("-")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is installed");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script");
    let out = child.wait_with_output().expect("python3");
    let all = text(&out);
    assert!(out.status.success(), "python failed:\n{all}");
    all
}

/// The agent's hash of `password` (`hostrole-agent hash-password`), for a users file.
pub fn password_hash(password: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(agent_bin())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run hash-password");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write");
    let out = child.wait_with_output().expect("hash-password");
    assert!(out.status.success(), "hash-password failed");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// Fails the test, naming the package to install, when `tool` is not on PATH.
pub fn installed(tool: &str, package: &str) {
    assert!(
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success()),
        "{tool} is not installed: apt-get install {package} (scripts/install-deps.sh does)"
    );
}

/// A Get-Printer-Attributes request (RFC 8011 §4.2.5) to the IPP `url`, sent as HTTP by curl;
/// the answer's bytes.
pub fn get_printer_attributes(dir: &std::path::Path, url: &str) -> Vec<u8> {
    let mut body = vec![2, 0, 0, 0x0b, 0, 0, 0, 1, 0x01];
    let mut attr = |tag: u8, name: &str, value: &str| {
        body.push(tag);
        body.extend_from_slice(&(name.len() as u16).to_be_bytes());
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value.as_bytes());
    };
    attr(0x47, "attributes-charset", "utf-8");
    attr(0x48, "attributes-natural-language", "en");
    attr(0x45, "printer-uri", url);
    body.push(0x03);
    let file = dir.join("get-printer-attributes.ipp");
    std::fs::write(&file, &body).expect("write");
    let http = url.replacen("ipp://", "http://", 1);
    curl(&[
        "-s",
        "-H",
        "Content-Type: application/ipp",
        "--data-binary",
        &format!("@{}", file.display()),
        &http,
    ])
    .stdout
}
