//! Helpers for tests that start the real agent binary and talk to it with real clients.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on loopback for a server the test starts (bound, then released for it to take).
///
/// Ports come from below the kernel's ephemeral range (`ip_local_port_range`), so no
/// client connection made by a concurrent test can take the port between the check and
/// the server's bind, or while a server restarts on the same port. Each process starts
/// at an offset from its pid and walks forward, so concurrent test binaries rarely meet.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 12_000;
    let high: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
        .max(LOW + 2_000);
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = high - LOW;
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (start + n) % span;
        let port = u16::try_from(port).expect("ports are below 65536");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below the ephemeral range")
}

/// The agent binary built by cargo for these tests.
pub fn agent_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hostrole-agent"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A running agent process; killed when dropped, so a failing test leaves nothing behind.
pub struct Agent {
    pub child: Child,
    pub admin_port: u16,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
    _logs: tempfile::TempDir,
}

impl Agent {
    /// Starts `hostrole-agent up MANIFEST` and waits until `/readyz` answers 200.
    pub fn up(manifest: &Path, data_dir: &Path, extra: &[&str]) -> Agent {
        let admin_port = free_port();
        let logs = tempfile::tempdir().expect("tempdir");
        let stdout_path = logs.path().join("stdout");
        let stderr_path = logs.path().join("stderr");
        let child = Command::new(agent_bin())
            .arg("up")
            .arg(manifest)
            .args(["--admin-port", &admin_port.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("start the agent");
        let mut agent = Agent {
            child,
            admin_port,
            stdout_path,
            stderr_path,
            _logs: logs,
        };
        agent.wait_ready();
        agent
    }

    /// Starts `hostrole-agent run --config CONFIG` (an agent configuration whose admin port is
    /// `admin_port`) and waits until `/readyz` answers 200.
    pub fn run(config: &Path, admin_port: u16) -> Agent {
        let logs = tempfile::tempdir().expect("tempdir");
        let stdout_path = logs.path().join("stdout");
        let stderr_path = logs.path().join("stderr");
        let child = Command::new(agent_bin())
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("start the agent");
        let mut agent = Agent {
            child,
            admin_port,
            stdout_path,
            stderr_path,
            _logs: logs,
        };
        agent.wait_ready();
        agent
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the agent exited early ({status}): {}", self.stderr());
            }
            let out = curl(&[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &self.admin_url("/readyz"),
            ]);
            if out.stdout == b"200" {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the agent did not become ready: {}", self.stderr());
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs curl with a time limit on every call, and returns its output.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl is installed (Debian package curl)")
}

/// A response read with `curl -s -D -`: status, headers (lower-case names) and body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `curl -s -D - ARGS...`, parsed (the last response when curl followed several).
pub fn fetch(args: &[&str]) -> Response {
    let mut all = vec!["-s", "-D", "-"];
    all.extend_from_slice(args);
    let out = curl(&all);
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_response(&out.stdout)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end with a blank line");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body,
    }
}

/// Opens a TCP connection that sends nothing (it holds one of the server's connection slots).
pub fn idle_connection(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).expect("connect")
}
