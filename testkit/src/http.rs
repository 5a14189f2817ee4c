//! curl, with a time limit on every call, and its responses parsed.

use std::net::TcpStream;
use std::process::{Command, Output, Stdio};

/// Runs curl with a time limit on every call, and returns its output.
pub fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["--max-time", "20"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl is installed (Debian package curl)")
}

/// The HTTP status of a request (`curl -s -o /dev/null -w %{http_code} ARGS...`); 0 when curl
/// got no response at all.
pub fn status(args: &[&str]) -> u16 {
    let mut all = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    let out = curl(&all);
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
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

/// `curl -s -D - ARGS...`, parsed (the last response when curl followed several). Fails the
/// test when curl gets no response.
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

/// Whether anything accepts a TCP connection on `127.0.0.1:port` right now.
pub fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}
