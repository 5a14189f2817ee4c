//! What the print role's tests share: starting the role on 127.0.0.1, document fixtures made in
//! the test (a hand-written PDF; PWG raster and JPEG rendered from it by Ghostscript), raw IPP
//! requests over HTTP/1.1, and external tools.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hostrole_agent_core::Role;
use hostrole_agent_core::metrics::AgentMetrics;
use hostrole_config::PrintRoleConfig;
use hostrole_print::wire::{self, Attribute, Group, Message, Value, group, tag};
use hostrole_print::{Print, PrintMetrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Fails with the Debian package to install when a tool is missing.
pub fn need(tool: &str, package: &str) {
    let found = Command::new("which")
        .arg(tool)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is missing: install the Debian package {package} (scripts/install-deps.sh)"
    );
}

pub struct Running {
    pub addr: SocketAddr,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    pub spool: PathBuf,
    pub output: PathBuf,
}

impl Running {
    pub fn uri(&self) -> String {
        format!("ipp://{}/ipp/print", self.addr)
    }

    pub async fn end(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the role stops within the grace")
            .expect("no panic");
    }

    /// The files of the output folder, sorted.
    pub fn printouts(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.output)
            .expect("output folder")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// The files of the spool folder but the job list, sorted.
    pub fn spooled(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.spool)
            .expect("spool folder")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n != "jobs.json")
            .collect();
        names.sort();
        names
    }
}

/// The role's configuration for `dir`, with `extra` merged in.
pub fn config(dir: &Path, extra: serde_json::Value) -> serde_json::Value {
    let mut c = serde_json::json!({
        "name": "hostrole-test",
        "location": "rack 3",
        "info": "the test printer",
        "port": 0,
        "spoolDir": dir.join("spool"),
        "outputDir": dir.join("out"),
        "maxJobBytes": 10_000_000,
        "maxJobs": 50,
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

pub async fn start(config: serde_json::Value) -> Running {
    let config: PrintRoleConfig = serde_json::from_value(config).expect("config");
    let print = Print::bind(
        &config,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &AgentMetrics::default(),
        &PrintMetrics::default(),
    )
    .await
    .expect("binds");
    let addr = print.addresses()[0].1;
    assert_eq!(print.addresses()[0].0, "ipp");
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(print).run(stop.clone(), Duration::from_secs(2)));
    Running {
        addr,
        stop,
        task,
        spool: config.spool_dir,
        output: config.output_dir,
    }
}

/// A one-page PDF of `width` x `height` points, written by hand (with a correct xref table).
pub fn pdf(width: u32, height: u32, text: &str) -> Vec<u8> {
    let content = format!("BT /F1 24 Tf 72 {} Td ({text}) Tj ET", height - 100);
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
        ),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// Renders `pdf` with Ghostscript's `device` (`pwgraster`, `jpeg`) at `dpi` into `out`.
pub fn render(pdf: &Path, device: &str, dpi: u32, out: &Path) {
    need("gs", "ghostscript");
    let o = Command::new("gs")
        .args(["-q", "-dBATCH", "-dNOPAUSE", "-dSAFER"])
        .arg(format!("-sDEVICE={device}"))
        .arg(format!("-r{dpi}"))
        .arg(format!("-sOutputFile={}", out.display()))
        .arg(pdf)
        .output()
        .expect("gs runs");
    assert!(
        o.status.success(),
        "gs: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The fixtures of `dir`: `document-a4.pdf`, `document-letter.pdf`, `document.pwg` (PWG
/// raster, 150 dpi sgray), `color.jpg`; returns their paths in that order.
pub fn fixtures(dir: &Path) -> [PathBuf; 4] {
    let a4 = dir.join("document-a4.pdf");
    std::fs::write(&a4, pdf(595, 842, "hostrole A4")).expect("write");
    let letter = dir.join("document-letter.pdf");
    std::fs::write(&letter, pdf(612, 792, "hostrole Letter")).expect("write");
    let pwg = dir.join("document.pwg");
    render(&a4, "pwgraster", 150, &pwg);
    let jpg = dir.join("color.jpg");
    render(&letter, "jpeg", 30, &jpg);
    [a4, letter, pwg, jpg]
}

/// A request's operation group: charset, language, printer-uri, requesting-user-name.
pub fn operation(uri: &str, user: &str) -> Group {
    let mut g = Group::new(group::OPERATION);
    g.push(
        "attributes-charset",
        Value::Bytes(tag::CHARSET, b"utf-8".to_vec()),
    );
    g.push(
        "attributes-natural-language",
        Value::Bytes(tag::LANGUAGE, b"en".to_vec()),
    );
    g.push("printer-uri", Value::uri(uri));
    g.push("requesting-user-name", Value::name(user));
    g
}

pub fn message(code: u16, groups: Vec<Group>) -> Vec<u8> {
    wire::encode(&Message {
        version: (2, 0),
        code,
        request_id: 7,
        groups,
    })
}

/// An HTTP response: status, lower-case headers, body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The IPP message of the body.
    pub fn ipp(&self) -> Message {
        wire::decode(&self.body).expect("an IPP response").0
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole response. `body` is
/// sent with a Content-Length.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    http_from(None, addr, method, path, headers, body).await
}

/// [`http`] from the loopback address `from` (127.0.0.2, …: another client to the server).
pub async fn http_from(
    from: Option<std::net::Ipv4Addr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut s = match from {
        None => TcpStream::connect(addr).await.expect("connects"),
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind((ip, 0).into())
                .expect("binds the source address");
            socket.connect(addr).await.expect("connects")
        }
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("writes");
    // The server may answer (and close) before reading all of a refused body.
    let _ = s.write_all(body).await;
    read_response(&mut s).await
}

/// Reads one response: its head, then its body by Content-Length, chunks, or to the close.
pub async fn read_response(s: &mut TcpStream) -> HttpResponse {
    tokio::time::timeout(Duration::from_secs(30), read_response_now(s))
        .await
        .expect("a response within 30 s")
}

async fn read_response_now(s: &mut TcpStream) -> HttpResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            // Skip interim responses (100 Continue).
            if buf.starts_with(b"HTTP/1.1 1") {
                buf.drain(..i + 4);
                continue;
            }
            break i;
        }
        let n = s.read(&mut chunk).await.unwrap_or(0);
        assert!(
            n > 0,
            "closed before the head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    if let Some(len) = get("content-length").and_then(|l| l.parse::<usize>().ok()) {
        while body.len() < len {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        while !body.ends_with(b"0\r\n\r\n") {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        body = dechunk(&body);
    } else {
        let _ = s.read_to_end(&mut body).await;
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..i])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
    out
}

/// POSTs an IPP request (message + document) to the printer.
pub async fn ipp(addr: SocketAddr, request: &[u8], auth: Option<&str>) -> HttpResponse {
    ipp_from(None, addr, request, auth).await
}

/// [`ipp`] from the loopback address `from`.
pub async fn ipp_from(
    from: Option<std::net::Ipv4Addr>,
    addr: SocketAddr,
    request: &[u8],
    auth: Option<&str>,
) -> HttpResponse {
    let mut headers = vec![("Content-Type", "application/ipp")];
    let basic;
    if let Some(a) = auth {
        basic = format!("Basic {}", base64_encode(a.as_bytes()));
        headers.push(("Authorization", basic.as_str()));
    }
    http_from(from, addr, "POST", "/ipp/print", &headers, request).await
}

pub fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The first value of attribute `name` in the first group tagged `tag_`.
pub fn find<'a>(m: &'a Message, tag_: u8, name: &str) -> Option<&'a Value> {
    m.groups
        .iter()
        .filter(|g| g.tag == tag_)
        .find_map(|g| g.get(name))
        .and_then(Attribute::first)
}

pub fn job_id(m: &Message) -> i32 {
    find(m, group::JOB, "job-id")
        .and_then(Value::as_int)
        .unwrap_or_else(|| panic!("a job-id in {m:?}"))
}

/// Waits until something accepts connections on `addr`.
pub async fn wait_listening(addr: SocketAddr) {
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing listens on {addr}");
}
