//! Starts index and peer agents (`hostrole-agent run --config`) with generated configurations
//! on loopback, and talks to their UI API with curl.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hostrole_config::{
    AgentConfig, IndexRoleConfig, OfferedPrinter, PeerRoleConfig, PrintRoleConfig,
};
use hostrole_p2p::peer::ENV_CHUNK_DELAY_MS;
pub use hostrole_testkit::{free_port, wait_for};

use super::{Proc, agent_bin, curl, wait_ready_at};

pub const NETWORK: &str = "family";
pub const SECRET: &str = "correct horse battery staple";

/// A temporary network: its secret, and the folders of its members.
pub struct Net {
    pub dir: tempfile::TempDir,
}

impl Net {
    pub fn new() -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("networks")).expect("mkdir");
        std::fs::write(
            dir.path().join("networks").join(NETWORK),
            format!("{SECRET}\n"),
        )
        .expect("secret");
        Net { dir }
    }

    pub fn secret_file(&self) -> PathBuf {
        self.dir.path().join("networks").join(NETWORK)
    }

    pub fn networks_dir(&self) -> PathBuf {
        self.dir.path().join("networks")
    }

    /// An index agent on `port`.
    pub fn index(&self, port: u16, ttl_seconds: u64) -> Node {
        self.index_with(port, ttl_seconds, None)
    }

    /// An index agent on `port`, over HTTPS with `tls`.
    pub fn index_with(
        &self,
        port: u16,
        ttl_seconds: u64,
        tls: Option<hostrole_config::TlsFiles>,
    ) -> Node {
        let mut config = base("tracker");
        config.index = Some(IndexRoleConfig {
            port,
            ttl_seconds,
            networks_dir: self.networks_dir(),
            tls,
        });
        Node::start(self.dir.path().join("tracker.yaml"), config, &[], None)
    }

    /// A peer agent named `name`; `files` are written into its share before it starts.
    pub fn peer(&self, name: &str, options: PeerOptions, files: &[(&str, &[u8])]) -> Node {
        let root = self.dir.path().join(name).join("share");
        std::fs::create_dir_all(&root).expect("share");
        for (file, bytes) in files {
            std::fs::write(root.join(file), bytes).expect("seed file");
        }
        let port = free_port();
        let ui_port = free_port();
        let mut config = base(name);
        if let Some(ip) = options.bind {
            config.bind = ip;
        }
        let host = config.bind.to_string();
        // As the translator does for a HostRole with servers.print and a peer: the host's
        // printer, offered to the network.
        let mut printer = None;
        if options.print {
            let print = PrintRoleConfig {
                name: format!("{name} printer"),
                location: None,
                info: None,
                port: free_port(),
                tls: None,
                spool_dir: self.dir.path().join(name).join("print-queue"),
                output_dir: self.dir.path().join(name).join("printouts"),
                users_file: None,
                max_job_bytes: 1 << 20,
                max_jobs: 10,
                output_quota: None,
            };
            printer = Some(OfferedPrinter {
                name: print.name.clone(),
                port: print.port,
                tls: false,
            });
            config.print = Some(print);
        }
        config.peer = Some(PeerRoleConfig {
            network: NETWORK.into(),
            port,
            ui_port,
            ui_bind: None,
            root: root.clone(),
            quota_bytes: options.quota,
            secret_file: self.secret_file(),
            index_url: options.index_url.clone(),
            discovery_dns: None,
            seeds: options.seeds.clone(),
            advertise: Some(format!("{host}:{port}")),
            heartbeat_seconds: 1,
            fetch: options.fetch.clone(),
            mirror: options.mirror,
            tls: options.tls.clone(),
            network_ca: options.network_ca.clone(),
            index_ca: options.index_ca.clone(),
            upload_bytes_per_second: options.limits.upload_bytes_per_second,
            download_bytes_per_second: options.limits.download_bytes_per_second,
            upload_slots: options.limits.upload_slots,
            printer: printer.clone(),
        });
        let mut env: Vec<(String, String)> = options
            .chunk_delay_ms
            .map(|ms| vec![(ENV_CHUNK_DELAY_MS.to_string(), ms.to_string())])
            .unwrap_or_default();
        if let Some(filter) = &options.log {
            env.push(("RUST_LOG".into(), filter.clone()));
        }
        let mut node = Node::start(
            self.dir.path().join(format!("{name}.yaml")),
            config,
            &env,
            Some(root),
        );
        node.peer_port = port;
        node.ui_port = ui_port;
        node.print_port = printer.as_ref().map_or(0, |p| p.port);
        node
    }
}

#[derive(Default, Clone)]
pub struct PeerOptions {
    pub index_url: Option<String>,
    /// HTTPS for the peer protocol, and the network's CA.
    pub tls: Option<hostrole_config::TlsFiles>,
    pub network_ca: Option<PathBuf>,
    /// The index's CA.
    pub index_ca: Option<PathBuf>,
    pub seeds: Vec<String>,
    pub fetch: Vec<String>,
    pub mirror: bool,
    pub quota: Option<u64>,
    pub chunk_delay_ms: Option<u64>,
    /// The agent's log filter (`RUST_LOG`), e.g. to see what is logged at debug level.
    pub log: Option<String>,
    /// Upload and download rates and upload slots.
    pub limits: hostrole_p2p::peer::limits::Limits,
    /// The agent's bind address (default 127.0.0.1); the peer advertises it.
    pub bind: Option<std::net::IpAddr>,
    /// The agent also runs a print role, and the peer offers its printer to the network.
    pub print: bool,
}

fn base(name: &str) -> AgentConfig {
    AgentConfig {
        host_role: name.into(),
        namespace: None,
        bind: "127.0.0.1".parse().expect("ip"),
        admin_port: free_port(),
        shutdown_grace_seconds: 2,
        web: None,
        file: None,
        mail: None,
        chat: None,
        radio: None,
        print: None,
        index: None,
        peer: None,
        clients: Vec::new(),
        http: None,
    }
}

/// A running agent; killed when dropped.
pub struct Node {
    pub proc: Proc,
    pub config_path: PathBuf,
    /// The address it is bound to (its admin port and peer port listen there).
    pub host: String,
    pub admin_port: u16,
    pub peer_port: u16,
    pub ui_port: u16,
    /// The print role's port (0 without one).
    pub print_port: u16,
    pub root: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl Node {
    fn start(
        config_path: PathBuf,
        config: AgentConfig,
        env: &[(String, String)],
        root: Option<PathBuf>,
    ) -> Node {
        std::fs::write(&config_path, serde_yaml::to_string(&config).expect("yaml"))
            .expect("config");
        let mut proc = spawn(&config_path, env);
        let host = config.bind.to_string();
        wait_ready_at(&mut proc, &host, config.admin_port, Duration::from_secs(30));
        Node {
            proc,
            config_path,
            host,
            admin_port: config.admin_port,
            peer_port: 0,
            ui_port: 0,
            print_port: 0,
            root,
            env: env.to_vec(),
        }
    }

    /// What the agent logged (it logs to stderr; stdout holds its addresses).
    pub fn log(&self) -> String {
        format!("{}{}", self.proc.stdout(), self.proc.stderr())
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts the same configuration again (its log continues in the same files).
    pub fn restart(&mut self) {
        self.kill();
        self.proc = spawn(&self.config_path, &self.env);
        wait_ready_at(
            &mut self.proc,
            &self.host,
            self.admin_port,
            Duration::from_secs(30),
        );
    }

    pub fn ui(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ui_port)
    }

    /// The agent's `/metrics`; an agent that does not answer fails the test (an empty text
    /// would read as zeros).
    pub fn metrics(&self) -> String {
        let response =
            super::fetch(&[&format!("http://{}:{}/metrics", self.host, self.admin_port)]);
        assert_eq!(response.status, 200, "/metrics: {}", response.text());
        response.text()
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.peer_port)
    }

    pub fn share(&self) -> &Path {
        self.root.as_deref().expect("a peer has a share")
    }

    pub fn status(&self) -> serde_json::Value {
        get_json(&self.ui("/api/status"))
    }

    pub fn id(&self) -> String {
        self.status()["peerId"]
            .as_str()
            .expect("peerId")
            .to_string()
    }

    pub fn downloads(&self) -> Vec<serde_json::Value> {
        get_json(&self.ui("/api/downloads"))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn download(&self, hash: &str) -> Option<serde_json::Value> {
        self.downloads().into_iter().find(|d| d["hash"] == hash)
    }

    /// POST /api/downloads; returns the HTTP status.
    pub fn start_download(&self, hash: &str) -> (u16, serde_json::Value) {
        post_json(
            &self.ui("/api/downloads"),
            &format!("{{\"hash\":\"{hash}\"}}"),
        )
    }

    pub fn search(&self, q: &str) -> Vec<serde_json::Value> {
        get_json(&self.ui(&format!("/api/search?q={q}")))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The search hit for `hash` once a search for `query` lists it (`what` names the wait).
    pub fn find(&self, what: &str, query: &str, hash: &str) -> serde_json::Value {
        wait_for(what, Duration::from_secs(20), || {
            self.search(query).into_iter().find(|h| h["hash"] == hash)
        })
    }

    /// Downloads `hash` through the UI and checks that `name` in the share is it, BLAKE3 and
    /// all; the download's record.
    pub fn fetch_as(&self, hash: &str, name: &str) -> serde_json::Value {
        assert_eq!(self.start_download(hash).0, 202);
        let record = wait_complete(self, hash, Duration::from_secs(30));
        assert_eq!(
            file_hash(&self.share().join(name)).as_deref(),
            Some(hash),
            "{name} on disk"
        );
        record
    }
}

/// `hostrole-agent run --config CONFIG`, logging to `CONFIG.out`/`CONFIG.err` beside it.
fn spawn(config: &Path, env: &[(String, String)]) -> Proc {
    let name = config
        .file_stem()
        .and_then(|n| n.to_str())
        .expect("a config file name");
    Proc::spawn(
        name,
        Command::new(agent_bin())
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v))),
        config.parent().expect("the config's directory"),
    )
}

pub fn get_json(url: &str) -> serde_json::Value {
    let out = curl(&["-s", url]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// POSTs JSON as the UI does; returns status and body.
pub fn post_json(url: &str, body: &str) -> (u16, serde_json::Value) {
    post_json_with(url, body, &[])
}

/// [`post_json`] with more headers.
pub fn post_json_with(url: &str, body: &str, headers: &[&str]) -> (u16, serde_json::Value) {
    let mut args = vec![
        "-s",
        "-w",
        "\n%{http_code}",
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Requested-With: test",
    ];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.extend(["--data-binary", body, url]);
    let out = curl(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Deterministic pseudo-random bytes (xorshift), so a failure can be reproduced.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// BLAKE3 of a file on disk (None while it does not exist).
pub fn file_hash(path: &Path) -> Option<String> {
    std::fs::read(path).ok().map(|b| blake3_hex(&b))
}

/// Waits until the download of `hash` on `node` is complete; returns its record.
pub fn wait_complete(node: &Node, hash: &str, limit: Duration) -> serde_json::Value {
    wait_for("a download to complete", limit, || {
        let d = node.download(hash)?;
        if d["state"] == "failed" {
            panic!("download failed: {d}\n{}", node.log());
        }
        (d["state"] == "complete").then_some(d)
    })
}

/// A metric's value summed over its series. A metric the text does not have fails the test: a
/// wrong name, or a text that is not the agent's metrics, must not read as 0.
pub fn metric(text: &str, name: &str) -> f64 {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    assert!(!values.is_empty(), "no metric {name} in:\n{text}");
    values.iter().sum()
}

/// An answer read by [`raw`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A connection to `addr` (`host:port`), from `source` when given (any 127.x address works on
/// Linux loopback: a second client address for one machine).
pub fn connect(addr: &str, source: Option<std::net::IpAddr>) -> std::net::TcpStream {
    let target: std::net::SocketAddr = addr.parse().expect("an ip:port");
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        None,
    )
    .expect("socket");
    if let Some(ip) = source {
        socket
            .bind(&std::net::SocketAddr::new(ip, 0).into())
            .expect("bind the source address");
    }
    socket.connect(&target.into()).expect("connect");
    let stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
}

/// Writes an HTTP/1.1 request head (Connection: close) on `stream`.
pub fn write_head(
    stream: &mut std::net::TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    content_length: usize,
) {
    use std::io::Write;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {content_length}\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("write the head");
}

/// Reads a whole answer (the server closes after it); fails the test when none comes.
pub fn read_response(stream: &mut std::net::TcpStream) -> RawResponse {
    use std::io::Read;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.is_empty() => panic!("no answer: {e}"),
            Err(_) => break,
        }
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    RawResponse {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// A signed request as `who` (network secret [`SECRET`]) to `addr` (`ip:port`), from `source`.
pub fn signed(
    who: &hostrole_p2p::auth::Identity,
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    source: Option<std::net::IpAddr>,
) -> RawResponse {
    use std::io::Write;
    let header =
        hostrole_p2p::auth::sign_request(SECRET.as_bytes(), who, method, path, body).expect("sign");
    let mut stream = connect(addr, source);
    write_head(
        &mut stream,
        method,
        path,
        &[("Authorization", header)],
        body.len(),
    );
    stream.write_all(body).expect("write the body");
    read_response(&mut stream)
}

/// A registration body for `address` with one resource called `name`.
pub fn registration(address: &str, name: &str) -> Vec<u8> {
    format!(
        "{{\"address\":\"{address}\",\"resources\":[{{\"name\":{},\"size\":1,\"hash\":\"{}\",\"chunkSize\":1048576,\"chunks\":[\"{}\"]}}]}}",
        serde_json::Value::String(name.into()),
        "ab".repeat(32),
        "cd".repeat(32)
    )
    .into_bytes()
}
