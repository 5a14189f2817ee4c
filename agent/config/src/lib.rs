//! What a hostrole agent runs: the configuration that hostrole-api's one translator
//! (`hostrole_api::render`) writes, for a pod (into the host's ConfigMap) and for a standalone
//! agent alike, and that the agent reads. Serde only: no Kubernetes types, so the agent's role
//! crates depend on this and nothing of the API.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Environment variables a pod sets from the downward API; the agent reads them.
pub const ENV_POD_NAME: &str = "POD_NAME";
pub const ENV_POD_NAMESPACE: &str = "POD_NAMESPACE";
pub const ENV_POD_IP: &str = "POD_IP";
/// Prefix of the pod condition types a host's clients report (`<prefix><client name>`).
pub const CLIENT_CONDITION_PREFIX: &str = "clients.hostrole.dev/";

/// A share's root and its quota, for a role that writes into it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutputQuota {
    pub share_root: PathBuf,
    pub quota_bytes: u64,
}

/// Everything the agent needs to start a host's roles.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    /// Name of the HostRole this host belongs to.
    pub host_role: String,
    /// Its namespace; absent for a standalone agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Address every listener binds to.
    pub bind: IpAddr,
    /// Port of `/healthz`, `/readyz` and `/metrics`.
    pub admin_port: u16,
    /// How long in-flight requests may take to finish after SIGTERM, in seconds.
    #[serde(default = "default_grace")]
    pub shutdown_grace_seconds: u64,
    /// The web role, when the host serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebRoleConfig>,
    /// The file role (WebDAV), when the host serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRoleConfig>,
    /// The mail role (SMTP, IMAP, POP3), when the host serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailRoleConfig>,
    /// The chat role (an IRC server), when the host serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatRoleConfig>,
    /// The radio role (an Icecast-compatible streaming server), when the host serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radio: Option<RadioRoleConfig>,
    /// The print role (a shared IPP printer), when the host serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub print: Option<PrintRoleConfig>,
    /// The index role (directory of hybrid peer-to-peer networks), when the host serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexRoleConfig>,
    /// The peer role, when the host is a peer of a network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerRoleConfig>,
    /// Client software: one loop per service this host uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<ClientConfig>,
    /// Limits of every HTTP listener (web, file, index, peer and its UI, admin); defaults when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpLimitsConfig>,
}

/// Overrides of the HTTP listeners' limits; each absent field keeps its default (see the agent's
/// `net` module and docs/decisions.md).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpLimitsConfig {
    /// Seconds a client has to send a complete request head: from connecting (before the HTTP
    /// version is known) and between keep-alive requests. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_timeout_seconds: Option<u64>,
    /// Seconds a connection may stay open with no request in flight (HTTP/1 and HTTP/2).
    /// Default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<u64>,
    /// Connections one client address (an IPv6 /64) may hold on one listener. Default: a quarter
    /// of the listener's connection limit, at least 8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_ip: Option<usize>,
    /// Seconds after which a connection takes no new request and closes once the ones in flight
    /// are answered (HTTP/1 `Connection: close`, HTTP/2 GOAWAY), so long-lived clients pick up
    /// NetworkPolicy and certificate changes. Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_age_seconds: Option<u64>,
}

/// The index role's configuration.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexRoleConfig {
    /// HTTP port of the directory.
    pub port: u16,
    /// Seconds a peer stays listed without a heartbeat.
    pub ttl_seconds: u64,
    /// Directory with one file per network the index serves: the file's name is the network,
    /// its content the network's shared secret. Read at every request, so a network added
    /// later is served without a restart.
    pub networks_dir: PathBuf,
    /// HTTPS (HTTP/2 by ALPN) with this certificate; plain HTTP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
}

/// The peer role's configuration.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerRoleConfig {
    /// The network this peer belongs to.
    pub network: String,
    /// Port of the peer protocol (other peers fetch chunks here).
    pub port: u16,
    /// Port of the user interface.
    pub ui_port: u16,
    /// Address the user interface listens on; the agent's `bind` when absent. In a pod it is
    /// loopback: the user reaches it with `kubectl port-forward`, nobody else in the cluster can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_bind: Option<IpAddr>,
    /// The shared folder: files in it are offered to the network, downloads land in it.
    pub root: PathBuf,
    /// Most bytes the shared folder may hold; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    /// File holding the network's shared secret.
    pub secret_file: PathBuf,
    /// Hybrid mode: the index's base URL (`http://tracker.ns.svc:7000`). Absent: decentralized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_url: Option<String>,
    /// Decentralized discovery: a DNS name whose A/AAAA records are the network's peers (the
    /// per-network headless Service in a cluster); they are contacted on `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_dns: Option<String>,
    /// Decentralized discovery: `host:port` of peers to start from (outside a cluster).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<String>,
    /// The address other peers reach this one at (`host:port`); when absent, `$POD_IP:port`,
    /// else the bind address and `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Seconds between heartbeats to the index and gossip rounds among peers.
    pub heartbeat_seconds: u64,
    /// Resources to fetch unattended (names or content hashes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fetch: Vec<String>,
    /// Fetch everything the network shares.
    #[serde(default)]
    pub mirror: bool,
    /// HTTPS for the peer protocol with this certificate, and HTTPS to every other peer; plain
    /// HTTP when absent. Every peer of a network has it, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// With `tls`: PEM file of the network's CA. Other peers' certificates must chain to it
    /// (their names are not checked: peers are reached by address, and each answer is signed by
    /// the peer asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_ca: Option<PathBuf>,
    /// PEM file of the CAs the index's certificate (HTTPS `index_url`) chains to (in a
    /// HostRole: the network's CA); the system's roots when absent or when the file does not
    /// exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_ca: Option<PathBuf>,
    /// Most chunk bytes per second this peer sends to the others; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_bytes_per_second: Option<u64>,
    /// Most chunk bytes per second this peer fetches; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_bytes_per_second: Option<u64>,
    /// Chunks this peer serves at once; more requests are answered 503 and fetched elsewhere.
    /// 32 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_slots: Option<u32>,
    /// The host's printer (its print role), offered to the network: the index lists it with
    /// this peer, and other peers' UIs show it. Reached on this peer's own host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer: Option<OfferedPrinter>,
}

/// A printer a peer offers its network.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OfferedPrinter {
    /// Its name, as people see it (the print role's `name`).
    pub name: String,
    /// The print role's port.
    pub port: u16,
    /// IPPS rather than IPP.
    #[serde(default)]
    pub tls: bool,
}

/// One client loop.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConfig {
    /// Unique among the host's clients, a DNS label: `<service>-<position in spec.clients>`,
    /// e.g. `web-0`. Names the metrics series and the pod condition it reports.
    pub name: String,
    pub service: ClientService,
    /// The server as the manifest wrote it (a HostRole `name`/`ns/name` or the URL), for reports.
    pub server: String,
    /// Where the client connects.
    pub target: ClientTarget,
    /// Milliseconds between runs.
    pub every_ms: u64,
    /// Milliseconds one run may take.
    pub timeout_ms: u64,
    /// Web: the path to fetch (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Web: what the answer must look like.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expectation>,
    /// Directory with `username` and `password` files (a `kubernetes.io/basic-auth` Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_dir: Option<PathBuf>,
    /// Mail: send through the target's submission port (as the `credentials_dir` user) to a
    /// mailbox of another host, and read it back there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_to: Option<MailReadBack>,
    /// Radio: how long to listen to the mount, in milliseconds (5000 when absent). The bytes
    /// received after the server's initial burst are judged against the stream's bitrate; it
    /// must be shorter than `timeout_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_ms: Option<u64>,
}

/// The other end of a cross-host mail probe.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailReadBack {
    /// The HostRole as the manifest wrote it, for reports.
    pub server: String,
    pub target: MailTarget,
    /// Directory with `username` and `password` files of the receiving mailbox.
    pub credentials_dir: PathBuf,
}

/// Where a client connects.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ClientTarget {
    /// Web and file: the base URL (`http://office.ns.svc:8080/`); chat: `irc://host:port/`.
    Url(String),
    /// Mail: SMTP to deliver the probe, IMAP (or POP3 when `imapPort` is absent) to read it back.
    Mail(MailTarget),
}

/// A mail server as a client sees it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailTarget {
    pub host: String,
    pub smtp_port: u16,
    /// Submission (AUTH), for probes that send to another host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imap_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pop3_port: Option<u16>,
    /// Domain of the probe's mailbox (`<username>@<domain>`); when absent, the username
    /// must already be an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// The file role's configuration.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileRoleConfig {
    /// Port of the WebDAV share.
    pub port: u16,
    /// Directory shared.
    pub root: PathBuf,
    /// Users file (`name:hash[:ro]` lines); no users when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_file: Option<PathBuf>,
    /// What clients that do not log in may do.
    pub anonymous: AnonymousAccess,
    /// Most bytes the share may hold; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    /// Largest single upload.
    pub max_upload_bytes: u64,
    /// HTTPS (HTTP/2 by ALPN) with this certificate; plain HTTP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Most connections served at once.
    pub max_connections: usize,
}

/// The mail role's configuration.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailRoleConfig {
    /// Name the servers greet with (EHLO, banners).
    pub hostname: String,
    pub smtp_port: u16,
    pub submission_port: u16,
    pub imap_port: u16,
    pub pop3_port: u16,
    /// Domains delivered locally.
    pub domains: Vec<String>,
    /// Directory holding one Maildir per user (`<root>/<user>/{tmp,new,cur}`).
    pub root: PathBuf,
    /// Users file (`name:hash[:ro]` lines); mailbox owners and who may log in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_file: Option<PathBuf>,
    /// Largest message accepted (SMTP SIZE).
    pub max_message_bytes: u64,
    /// Most bytes one mailbox may hold (messages in `new/` and `cur/`, of every folder); no
    /// limit when absent. The translator always sets it (default 1 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_quota_bytes: Option<u64>,
    /// Certificate and key for STARTTLS and the implicit-TLS ports; neither when absent. The
    /// files are read again when they change (a rotated Secret), without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// IMAP over implicit TLS (IMAPS, RFC 8314): the handshake comes first. Needs `tls`; no
    /// listener when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imaps_port: Option<u16>,
    /// POP3 over implicit TLS (POP3S, RFC 8314). Needs `tls`; no listener when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pop3s_port: Option<u16>,
    /// Submission over implicit TLS (`submissions`, RFC 8314 section 3.3). Needs `tls`; no
    /// listener when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submissions_port: Option<u16>,
    /// Whether passwords may be sent on a connection without TLS (SMTP AUTH, IMAP LOGIN and
    /// AUTHENTICATE, POP3 USER/PASS). Default false: without TLS, submission does not offer
    /// AUTH (`538 5.7.11`), IMAP says LOGINDISABLED (`NO [PRIVACYREQUIRED]`), POP3 `-ERR [AUTH]`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_plaintext_auth: bool,
    /// Most connections per protocol at once.
    pub max_connections: usize,
    /// Who gets `postmaster@` mail; default a user named `postmaster`, else the first user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postmaster: Option<String>,
    /// Mail to other domains: a durable queue and where each domain goes. When absent, the host
    /// sends nothing out and submission refuses foreign recipients (`550 5.7.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<OutboundConfig>,
}

/// Mail leaving the host: accepted = in the queue on the mail volume (`<root>/.queue`, beside
/// the mailboxes; user names cannot start with `.`), delivered with retries, bounced (a DSN to
/// the sender) on permanent failure or when `lifetime_seconds` runs out.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundConfig {
    /// Domains served by other hosts of the cluster or manifest, and their SMTP servers (the
    /// translator's transport map). Used before the relay and before MX lookups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<MailRoute>,
    /// Everything without a route goes through this server (a smarthost); when absent, to the
    /// domain's MX hosts (RFC 5321 section 5.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<MailRelay>,
    /// First retry after a temporary failure, in seconds; each next wait doubles, up to
    /// `max_retry_seconds` (RFC 5321 section 4.5.4.1).
    #[serde(default = "default_retry_seconds")]
    pub retry_seconds: u64,
    /// The longest wait between two attempts, in seconds (default 1 hour).
    #[serde(default = "default_max_retry_seconds")]
    pub max_retry_seconds: u64,
    /// How long a message may wait before it is bounced, in seconds (default 5 days).
    #[serde(default = "default_queue_lifetime_seconds")]
    pub lifetime_seconds: u64,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// Outbound mail when nothing says otherwise: first retry after 5 minutes, at most an hour
/// between tries, a bounce after 5 days (RFC 5321 section 4.5.4.1).
pub const DEFAULT_RETRY_SECONDS: u64 = 300;
pub const DEFAULT_MAX_RETRY_SECONDS: u64 = 3600;
pub const DEFAULT_QUEUE_LIFETIME_SECONDS: u64 = 5 * 24 * 3600;

fn default_retry_seconds() -> u64 {
    DEFAULT_RETRY_SECONDS
}
fn default_max_retry_seconds() -> u64 {
    DEFAULT_MAX_RETRY_SECONDS
}
fn default_queue_lifetime_seconds() -> u64 {
    DEFAULT_QUEUE_LIFETIME_SECONDS
}

/// One entry of the transport map: mail for `domain` goes to `host:port`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailRoute {
    /// A mail domain, lower-case.
    pub domain: String,
    pub host: String,
    pub port: u16,
}

/// A smarthost.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailRelay {
    pub host: String,
    pub port: u16,
    /// How the connection is protected.
    pub tls: RelayTls,
    /// Directory with `username` and `password` files (a `kubernetes.io/basic-auth` Secret);
    /// no AUTH when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_dir: Option<PathBuf>,
    /// PEM file of the CAs the relay's certificate must chain to; the system's roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// TLS towards a relay.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTls {
    /// STARTTLS, required (the relay's certificate is verified).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on a trusted network; credentials are refused on it.
    None,
}

/// A service a host uses as a client.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ClientService {
    Web,
    File,
    Mail,
    Chat,
    /// Listen to an internet radio mount (Icecast-compatible) and judge the stream.
    Radio,
    /// Print a one-page probe on an IPP printer and check the printout.
    Print,
}

impl ClientService {
    /// The name manifests, reports and metrics use: `web`, `file`, `mail`, `chat`, `radio`,
    /// `print`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientService::Web => "web",
            ClientService::File => "file",
            ClientService::Mail => "mail",
            ClientService::Chat => "chat",
            ClientService::Radio => "radio",
            ClientService::Print => "print",
        }
    }

    /// The name of the client at `position` in `spec.clients`: `<service>-<position>` (its
    /// metrics series, pod condition and credentials directory).
    pub fn client_name(self, position: usize) -> String {
        format!("{}-{position}", self.as_str())
    }
}

/// What a web client expects of the answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expectation {
    /// HTTP status; any 2xx when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// A string the body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
}

/// What clients that do not log in may do on a file share.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnonymousAccess {
    None,
    ReadOnly,
    ReadWrite,
}

/// The chat role's configuration: an IRC server (RFC 1459/2812 as modern clients use it, with
/// IRCv3 capability negotiation).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatRoleConfig {
    /// The server's name in replies (the prefix of numerics), e.g. the host's DNS name.
    pub server_name: String,
    /// The network's name (`NETWORK=` in `RPL_ISUPPORT`).
    pub network: String,
    /// Plain-text IRC port (6667 by convention).
    pub port: u16,
    /// IRC over implicit TLS (6697, RFC 7194). Needs `tls`; no listener when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_port: Option<u16>,
    /// Certificate and key for `tls_port`, read again when they change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Users file (`name:hash[:ro]` lines): the accounts SASL PLAIN and `PASS` check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_file: Option<PathBuf>,
    /// Whether a client must log in (SASL PLAIN, or `PASS user:password`) before registration
    /// completes; its nick is then its account name or starts with it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub require_login: bool,
    /// Whether passwords may be sent on a connection without TLS. Default false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_plaintext_auth: bool,
    /// Most connections at once (both ports).
    pub max_connections: usize,
    /// Most channels that exist at once.
    pub max_channels: usize,
    /// Most channels one client may be in (`CHANLIMIT`).
    pub max_channels_per_client: usize,
    /// Longest nick (`NICKLEN`).
    pub nick_length: usize,
    /// Message of the day, one line per line; `ERR_NOMOTD` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motd: Option<String>,
}

/// The radio role's configuration: internet radio as Icecast serves it (listeners `GET /mount`,
/// ICY metadata, `/status-json.xsl`), each mount fed by a source client or a playlist.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RadioRoleConfig {
    /// The station's name (`icy-name`, the status page's `server_name`).
    pub station: String,
    /// HTTP port for listeners and source clients.
    pub port: u16,
    /// HTTPS for listeners and sources with this certificate; plain HTTP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// The mount points.
    pub mounts: Vec<RadioMount>,
    /// File holding the source password (Icecast's `source-password`: a source client sends
    /// `source:<password>` as HTTP basic auth). No live sources when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_password_file: Option<PathBuf>,
    /// Most listeners at once over all mounts.
    pub max_listeners: usize,
}

/// One mount point.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RadioMount {
    /// The path listeners ask for, e.g. `/live` or `/jazz.ogg`.
    pub path: String,
    /// A directory of audio files (MP3, Ogg) played in a loop at their own bitrate, in name
    /// order, while no source client feeds the mount. No playlist when absent: the mount is
    /// live only (404 while no source is connected, as Icecast answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playlist_dir: Option<PathBuf>,
    /// Whether a source client may feed this mount (with the source password).
    #[serde(default, skip_serializing_if = "is_false")]
    pub live: bool,
    /// Most listeners of this mount; the role's `max_listeners` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_listeners: Option<usize>,
    /// Shown to listeners (`icy-description`, the status page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The print role's configuration: a shared printer as IPP Everywhere describes it (RFC 8011
/// over HTTP, `ipp://host:port/ipp/print`). It "prints" a job by writing its document to
/// `output_dir`, whole or not at all.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrintRoleConfig {
    /// The printer's name (`printer-name`, the name peers list it under).
    pub name: String,
    /// Where the printer is, for people (`printer-location`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// What it is, for people (`printer-info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<String>,
    /// HTTP port of the IPP endpoint and of the printouts.
    pub port: u16,
    /// IPPS (IPP over HTTPS) with this certificate; plain IPP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// The job queue: the spooled documents and the job list, kept across restarts.
    pub spool_dir: PathBuf,
    /// Where printouts land, one file per job (`<job-id>-<job name>.pdf`, `.pwg` or `.jpg`); may be a
    /// folder of the file role's share, so users fetch their printouts over WebDAV.
    pub output_dir: PathBuf,
    /// Users file (`name:hash[:ro]` lines, as the file role's): when present, every operation
    /// but Get-Printer-Attributes needs HTTP Basic authentication, and a job belongs to the user
    /// who sent it. Anyone who reaches the port may print when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_file: Option<PathBuf>,
    /// Largest document a job may carry, in bytes.
    pub max_job_bytes: u64,
    /// Most jobs kept (pending, held, and finished ones in the history); a new job past it is
    /// refused while none can be forgotten.
    pub max_jobs: usize,
    /// When the output folder is in the file role's share and the share has a quota: the
    /// share and its quota. A printout that would take the share past it is not written (its
    /// job is aborted), as the file role refuses an upload past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_quota: Option<OutputQuota>,
}

/// PEM files of a TLS certificate chain and its key.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn default_grace() -> u64 {
    20
}

/// The web role's configuration.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebRoleConfig {
    /// Port to listen on.
    pub port: u16,
    /// Directory served as the site root.
    pub root: PathBuf,
    /// Most connections served at once.
    pub max_connections: usize,
    /// HTTPS (HTTP/2 by ALPN) with this certificate; plain HTTP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// With `tls`: a plain-HTTP port that redirects every request to the HTTPS one (308).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_port: Option<u16>,
}

/// The line an agent prints last when a role made it stop, shared by the agent (who prints it)
/// and the operator (who reads it from the container's termination message, which the pod
/// takes from the log's end: `terminationMessagePolicy: FallbackToLogsOnError`):
/// `hostrole-agent: role <name> failed: <error>`.
pub const ROLE_FAILURE_PREFIX: &str = "hostrole-agent: role ";

/// [`ROLE_FAILURE_PREFIX`]`<role> failed: <error>`, on one line.
pub fn role_failure_line(role: &str, error: &str) -> String {
    let error: String = error
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{ROLE_FAILURE_PREFIX}{role} failed: {error}")
}

/// The role named by the last [`role_failure_line`] in `message` (a termination message: the
/// log's last lines), if it is one of `roles`; a name that is not one of them (a line the agent
/// did not write, cut, or forged) names nothing.
pub fn failed_role<'a>(message: &str, roles: &[&'a str]) -> Option<&'a str> {
    let line = message
        .lines()
        .rev()
        .find_map(|l| l.trim_start().strip_prefix(ROLE_FAILURE_PREFIX))?;
    let (role, _) = line.split_once(" failed: ")?;
    roles.iter().copied().find(|r| *r == role)
}

/// Longest human detail a client condition carries; the API server caps a condition's message
/// at 32768 bytes and a status line stays readable.
pub const CLIENT_DETAIL_MAX: usize = 1024;

/// The message of a client's pod condition, shared by the agent (who writes it) and the
/// operator (who reads it into `status.hosts[].clients[]`). On the wire it is
/// `latencyMs=<n>; lastSuccess=<RFC 3339>; <human detail>`, with `-` for an unknown latency
/// (no run yet) or no success yet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientConditionMessage {
    /// Duration of the last run, in milliseconds.
    pub latency_ms: Option<u64>,
    /// When the client last succeeded (RFC 3339).
    pub last_success: Option<String>,
    /// What happened, for people (the error of a failed run).
    pub detail: String,
}

impl ClientConditionMessage {
    /// `latencyMs=<n>; lastSuccess=<RFC 3339 or ->; <detail>`; the detail is cut to
    /// [`CLIENT_DETAIL_MAX`] bytes (at a character boundary) and kept on one line.
    pub fn format(&self) -> String {
        let latency = self
            .latency_ms
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        let success = self.last_success.as_deref().unwrap_or("-");
        let mut detail: String = self
            .detail
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if detail.len() > CLIENT_DETAIL_MAX {
            let mut end = CLIENT_DETAIL_MAX;
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
        }
        format!("latencyMs={latency}; lastSuccess={success}; {detail}")
    }

    /// Reads what [`ClientConditionMessage::format`] wrote; `None` when the text does not
    /// start with the `latencyMs=…; lastSuccess=…;` prefix.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("latencyMs=")?;
        let (latency, rest) = rest.split_once(';')?;
        let latency_ms = match latency {
            "-" => None,
            n => Some(n.parse().ok()?),
        };
        let rest = rest.strip_prefix(" lastSuccess=")?;
        let (success, detail) = match rest.split_once(';') {
            Some((s, d)) => (s, d.strip_prefix(' ').unwrap_or(d)),
            None => (rest, ""),
        };
        if success.is_empty() || success.contains(' ') {
            return None;
        }
        Some(Self {
            latency_ms,
            last_success: (success != "-").then(|| success.to_string()),
            detail: detail.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(
        latency: Option<u64>,
        success: Option<&str>,
        detail: &str,
    ) -> ClientConditionMessage {
        ClientConditionMessage {
            latency_ms: latency,
            last_success: success.map(str::to_string),
            detail: detail.into(),
        }
    }

    #[test]
    fn client_messages_have_the_documented_prefix_and_read_back() {
        let ok = message(Some(12), Some("2026-11-25T03:00:00Z"), "200 OK, 512 bytes");
        assert_eq!(
            ok.format(),
            "latencyMs=12; lastSuccess=2026-11-25T03:00:00Z; 200 OK, 512 bytes"
        );
        assert_eq!(ClientConditionMessage::parse(&ok.format()), Some(ok));

        let pending = message(None, None, "not run yet");
        assert_eq!(pending.format(), "latencyMs=-; lastSuccess=-; not run yet");
        assert_eq!(
            ClientConditionMessage::parse(&pending.format()),
            Some(pending)
        );

        // A detail may itself hold `;` and `=`.
        let failed = message(Some(3), None, "PUT answered 507; quota=1Gi");
        assert_eq!(
            ClientConditionMessage::parse(&failed.format()),
            Some(failed)
        );
        let empty = message(Some(0), None, "");
        assert_eq!(ClientConditionMessage::parse(&empty.format()), Some(empty));
    }

    #[test]
    fn client_message_details_are_one_bounded_line() {
        let long = message(Some(1), None, &format!("a\nb{}", "é".repeat(2000)));
        let text = long.format();
        assert!(!text.contains('\n'));
        let back = ClientConditionMessage::parse(&text).expect("parses");
        assert!(back.detail.len() <= CLIENT_DETAIL_MAX);
        assert!(back.detail.starts_with("a b"));
    }

    #[test]
    fn other_messages_are_not_client_messages() {
        for text in [
            "",
            "connection refused",
            "latencyMs=abc; lastSuccess=-; x",
            "latencyMs=1 lastSuccess=-; x",
            "latencyMs=1; lastSuccess=; x",
        ] {
            assert_eq!(ClientConditionMessage::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn the_failed_role_is_read_back_from_the_logs_last_lines() {
        let roles = ["web", "mail"];
        let line = role_failure_line("mail", "cannot listen on 0.0.0.0:25\nfor the smtp role");
        assert!(!line.contains('\n'), "{line}");
        let logs = format!(
            "INFO starting\n{}\nsome trailing noise\n",
            role_failure_line("web", "x")
        ) + &line;
        assert_eq!(failed_role(&logs, &roles), Some("mail"));
        assert_eq!(failed_role("INFO starting\nerror: disk full", &roles), None);
        // A role the host does not have names nothing.
        assert_eq!(failed_role(&role_failure_line("peer", "x"), &roles), None);
        assert_eq!(failed_role("hostrole-agent: role mail", &roles), None);
    }
}
