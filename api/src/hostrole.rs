//! The `HostRole` custom resource (`hostrole.dev/v1alpha1`).
//!
//! The schema is designed once for every role of `../shared/design/hostrole-api.md`; roles that
//! the agent does not serve yet are rejected by CEL rules (see [`crate::rules`]) rather than left
//! out of the schema, so later releases relax a rule instead of reshaping the API.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules;

/// What a HostRole asks for: its hosts' servers, clients, peer network, placement, who may use
/// it and how it is reached from outside the cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "hostrole.dev",
    version = "v1alpha1",
    kind = "HostRole",
    doc = "A HostRole declares one logical host (or `replicas` identical hosts) and the roles it plays: the servers it runs (web, file, mail, index), the clients it uses against other hosts, and whether it is a peer of a peer-to-peer network. The operator runs each host as a pod of a StatefulSet, with a Service and a volume per host where a role keeps data, and reports in status whether every role serves. The same manifest runs on a machine without Kubernetes with `hostrole-agent up`.",
    plural = "hostroles",
    namespaced,
    shortname = "hrole",
    category = "hostrole",
    status = "HostRoleStatus",
    cel,
    scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"}"#,
    printcolumn = r#"{"name":"Roles","type":"string","jsonPath":".status.roles","description":"Roles each host plays"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyHosts","description":"Hosts serving every role"}"#,
    printcolumn = r#"{"name":"Hosts","type":"integer","jsonPath":".spec.replicas","description":"Hosts asked for"}"#,
    printcolumn = r#"{"name":"Clients","type":"string","jsonPath":".status.clients","description":"Healthy/declared client results over every host"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","description":"Reason of the Ready condition"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.endpoints[0].url","description":"Where the host's main role is reached (status.endpoints has every one)"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = rules::name_length(),
    validation = rules::name_not_reserved()
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = schemars::transform::RecursiveTransform(unwrap_description))]
#[x_kube(
    validation = rules::at_least_one_role(),
    validation = rules::unique_ports(),
    validation = rules::admin_port_reserved(),
    validation = rules::exposed_roles_served()
)]
pub struct HostRoleSpec {
    /// Number of hosts. Hosts are named `<name>-0` … `<name>-(n-1)`, keep their names and own
    /// volumes across restarts.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: i32,

    /// Server software this host runs; any number of server roles at once, each on its own port.
    #[serde(default)]
    pub servers: Servers,

    /// Client software this host runs, one entry per service it uses. Order matters: a client
    /// is named after its service and position (`mail-1`), so the list is replaced as a whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Atomic)]
    pub clients: Vec<ClientSpec>,

    /// Makes every host a peer of a peer-to-peer network: client and server at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerSpec>,

    /// Placement and resources of the host pods, passed through to the pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<HostTemplate>,
    /// Admit to this host's servers only the hosts that declare a client for them (and the
    /// peers of its network): a NetworkPolicy per HostRole, so the declared graph is also the
    /// allowed graph. The operator's `--network-policies` flag turns it on for every HostRole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network_policy: bool,
    /// Let the hosts reach only what they declare (egress rules in their NetworkPolicy): DNS,
    /// the servers their clients name (and `url` targets on their port), their network's peers
    /// and index, the cluster's other mail hosts and, with `outbound`, the relay's port or SMTP
    /// (25) anywhere, and for hosts with clients (which report on their own pod) the API server.
    /// Anything else is dropped where the network plugin enforces NetworkPolicies: a host
    /// taken over cannot scan the cluster or reach other services. The operator's
    /// `--egress-policies` flag turns it on for every HostRole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub egress_policy: bool,
    /// Namespaces whose HostRoles may be clients of this host's servers. HostRoles of the same
    /// namespace always may; any other namespace only when allowed here. To a client in a
    /// namespace that is not allowed, this HostRole looks as if it did not exist (its client
    /// reports `Forbidden`), and this host's NetworkPolicy admits no one from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_clients_from: Option<AllowClientsFrom>,
    /// Reach this host from outside the cluster: a NodePort or LoadBalancer Service for the
    /// roles named, its names outside, and Gateway API routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose: Option<Expose>,
}

/// Doc comments wrap at 100 columns and `kubectl explain` wraps again, so a line break kept
/// inside a paragraph shows as a ragged line. Descriptions keep paragraph breaks (blank lines)
/// only. (Applied to spec and status with `RecursiveTransform`, so to every field below them.)
fn unwrap_description(schema: &mut schemars::Schema) {
    let Some(text) = schema
        .get("description")
        .and_then(serde_json::Value::as_str)
    else {
        return;
    };
    let unwrapped = text
        .split("\n\n")
        .map(|paragraph| {
            paragraph
                .split('\n')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    schema.insert("description".into(), unwrapped.into());
}

fn default_replicas() -> i32 {
    1
}

/// Server roles. Each is optional; a host may run several at once.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::file_share_playlist_needs_the_file_role())]
#[x_kube(validation = rules::file_share_output_needs_the_file_role())]
pub struct Servers {
    /// A static web site over HTTP/1.1 and HTTP/2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebServer>,
    /// A WebDAV file share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileServer>,
    /// SMTP in, IMAP and POP3 out, Maildir on the host's volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailServer>,
    /// The directory server of a hybrid peer-to-peer network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexServer>,
    /// Instant messaging: an IRC server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatServer>,
    /// Internet radio: an Icecast-compatible streaming server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub radio: Option<RadioServer>,
    /// A shared printer: IPP Everywhere, printing to files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub print: Option<PrintServer>,
}

/// The web role: a static site.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::redirect_needs_tls())]
pub struct WebServer {
    /// TCP port the site listens on.
    #[serde(default = "default_web_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// Where the site comes from. Absent: a generated page that names the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<Site>,
    /// Most connections served at once; further clients wait in the accept queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_connections: Option<i32>,
    /// HTTPS on `port` (HTTP/2 by ALPN) with the certificate of a `kubernetes.io/tls` Secret
    /// (labelled `hostrole.dev/use: "true"`) or one cert-manager issues (`issuerRef`); a
    /// rotated certificate is served without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// With `tls`: a plain-HTTP port whose every request is redirected (308) to the HTTPS one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 65535))]
    pub http_redirect_port: Option<i32>,
}

impl Default for WebServer {
    fn default() -> Self {
        Self {
            port: default_web_port(),
            site: None,
            max_connections: None,
            tls: None,
            http_redirect_port: None,
        }
    }
}

fn default_web_port() -> i32 {
    8080
}

/// The content of a site: exactly one of `configMap`, `files` or `path`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::site_exactly_one())]
pub struct Site {
    /// A ConfigMap in the HostRole's namespace whose keys are the site's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub config_map: Option<String>,
    /// Files written inline in the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["path".into()]))]
    pub files: Option<Vec<SiteFile>>,
    /// A directory on the machine. Standalone agents only (`hostrole-agent up`); relative paths
    /// are taken from the manifest's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub path: Option<String>,
}

/// One inline file of a site.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SiteFile {
    /// Relative path of the file in the site, e.g. `index.html` or `css/site.css`.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = rules::relative_file_path())]
    pub path: String,
    /// The file's content (text).
    #[schemars(length(max = 1048576))]
    pub content: String,
}

/// The file role: a WebDAV share over the host's volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileServer {
    /// TCP port of the WebDAV share.
    #[serde(default = "default_file_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// Size of the share's volume (a PersistentVolumeClaim per host); also its quota. Raising it
    /// expands the claims where their StorageClass allows it (`allowVolumeExpansion`). Without
    /// it the share is scratch space (an emptyDir of twice `maxUploadSize`, at least 1Gi) and
    /// its quota that space less one `maxUploadSize`, so uploads and printouts past it are
    /// refused (507) instead of the pod being evicted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::byte_size())]
    pub storage: Option<Quantity>,
    /// Who may use the share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<UsersRef>,
    /// What anonymous clients may do. Default: nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous: Option<AnonymousAccess>,
    /// Largest upload accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::byte_size())]
    pub max_upload_size: Option<Quantity>,
    /// WebDAV over HTTPS (HTTP/2 by ALPN) with the certificate of a `kubernetes.io/tls` Secret
    /// (labelled `hostrole.dev/use: "true"`) or one cert-manager issues (`issuerRef`), so
    /// passwords never travel in the clear; a rotated certificate is served without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
}

fn default_file_port() -> i32 {
    8081
}

/// What clients that do not log in may do: `None` (the default), `ReadOnly` or `ReadWrite`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnonymousAccess {
    /// No anonymous access.
    None,
    /// Anonymous clients may read.
    ReadOnly,
    /// Anonymous clients may read and write.
    ReadWrite,
}

/// Where a role's user accounts come from: exactly one of `secret` or `file`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::users_exactly_one())]
pub struct UsersRef {
    /// A Secret in the HostRole's namespace (one key per user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub secret: Option<String>,
    /// A users file on the machine. Standalone agents only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub file: Option<String>,
}

/// The mail role: SMTP in, IMAP4rev1 and POP3 out, Maildir on disk.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MailServer {
    /// SMTP port for mail addressed to `domains`.
    #[serde(default = "default_smtp_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub smtp_port: i32,
    /// Submission port: authenticated users send mail out of the host's domains.
    #[serde(default = "default_submission_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub submission_port: i32,
    /// IMAP4rev1 port.
    #[serde(default = "default_imap_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub imap_port: i32,
    /// POP3 port.
    #[serde(default = "default_pop3_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub pop3_port: i32,
    /// Mail domains this host receives for, each once. Clients of this host send their test
    /// mail to the first.
    #[schemars(
        length(min = 1, max = 16),
        inner(
            length(min = 1, max = 253),
            regex(pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub domains: Vec<String>,
    /// Mailbox owners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<UsersRef>,
    /// Size of the mail volume (a PersistentVolumeClaim per host). Raising it expands the claims
    /// where their StorageClass allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::byte_size())]
    pub storage: Option<Quantity>,
    /// Largest message accepted (SMTP SIZE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::byte_size())]
    pub max_message_size: Option<Quantity>,
    /// Most bytes one mailbox may hold; SMTP answers `452 4.2.2` (full) or `552 5.2.2` (this
    /// message would not fit) beyond it. Default 1Gi, or `storage` when that is smaller; at
    /// least `maxMessageSize`, at most `storage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::byte_size())]
    pub mailbox_quota: Option<Quantity>,
    /// TLS certificate for STARTTLS and the implicit-TLS ports (`imapsPort`, `pop3sPort`,
    /// `submissionsPort`): a `kubernetes.io/tls` Secret, or one cert-manager issues
    /// (`issuerRef`). A renewed certificate is served without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// IMAP over implicit TLS (IMAPS, RFC 8314; 993 on a root server). Served only with `tls`.
    #[serde(default = "default_imaps_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub imaps_port: i32,
    /// POP3 over implicit TLS (POP3S; 995 on a root server). Served only with `tls`.
    #[serde(default = "default_pop3s_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub pop3s_port: i32,
    /// Submission over implicit TLS (`submissions`, RFC 8314; 465 on a root server). Served
    /// only with `tls`.
    #[serde(default = "default_submissions_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub submissions_port: i32,
    /// Whether users may log in with their password on a connection without TLS (SMTP AUTH,
    /// IMAP LOGIN, POP3 USER/PASS): anyone on the path reads it. Default false: without TLS,
    /// submission refuses AUTH (`538 5.7.11`), IMAP says LOGINDISABLED and POP3 `-ERR [AUTH]`;
    /// with `tls`, clients log in after STARTTLS or on the implicit-TLS ports. Exception: a
    /// standalone host (`hostrole-agent up`) without `tls` bound to a loopback address defaults
    /// to true, since its passwords never leave the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_plaintext_auth: Option<bool>,
    /// The user who receives mail for `postmaster@` every domain (RFC 5321 section 4.5.1).
    /// Default: a user named `postmaster`, else the first user in name order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 64),
        regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
    )]
    pub postmaster: Option<String>,
    /// Mail to other domains, sent for authenticated users of the submission port. Domains that
    /// another HostRole of the cluster (standalone: of the manifest) serves go straight to its
    /// SMTP port; the rest through `relay`, or to the domain's MX hosts when there is none.
    /// Accepted mail waits in a queue on the mail volume and is retried; the sender gets a
    /// bounce (a delivery status notification) when it cannot be delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<MailOutbound>,
}

/// How a mail host sends mail to other domains.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MailOutbound {
    /// A smarthost for every domain no HostRole serves (e.g. your provider's submission
    /// server); MX lookups when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<MailRelay>,
    /// First retry after a temporary failure; each next wait doubles up to
    /// `maxRetryInterval`. Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::duration("1s", "24h"))]
    pub retry_interval: Option<String>,
    /// Longest wait between two tries. Default 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::duration("1s", "24h"))]
    pub max_retry_interval: Option<String>,
    /// How long a message may wait before the sender gets a bounce. Default 120h (5 days,
    /// RFC 5321 section 4.5.4.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::duration("1m", "720h"))]
    pub queue_lifetime: Option<String>,
}

/// A smarthost the mail host sends through.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::relay_credentials_need_tls())]
pub struct MailRelay {
    /// Its DNS name or address.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[A-Za-z0-9]([-A-Za-z0-9.:]*[A-Za-z0-9])?$")
    )]
    pub host: String,
    /// The relay's port. Default 587 (465 with `tls: TLS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// `StartTLS` (default) or `TLS` (from the first byte), the relay's certificate verified
    /// either way; `None` only for a relay on a network you trust, and then without
    /// credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RelayTls>,
    /// A `kubernetes.io/basic-auth` Secret (`username`, `password`), labelled
    /// `hostrole.dev/use: "true"`, to log in to the relay with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<SecretRef>,
    /// A Secret whose `ca.crt` holds the CAs the relay's certificate must chain to (a private
    /// CA); the system's roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub ca_secret: Option<String>,
}

impl MailRelay {
    /// The relay's port: `port`, else 465 with `tls: TLS` and 587 otherwise.
    pub fn effective_port(&self) -> i32 {
        self.port.unwrap_or(if self.tls == Some(RelayTls::TLS) {
            465
        } else {
            587
        })
    }
}

/// TLS towards a relay.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayTls {
    StartTLS,
    TLS,
    None,
}

fn default_smtp_port() -> i32 {
    2525
}
fn default_submission_port() -> i32 {
    2587
}
fn default_imap_port() -> i32 {
    1143
}
fn default_pop3_port() -> i32 {
    1110
}
fn default_imaps_port() -> i32 {
    1993
}
fn default_pop3s_port() -> i32 {
    1995
}
fn default_submissions_port() -> i32 {
    2465
}

impl MailServer {
    /// The implicit-TLS ports (RFC 8314), named as in Services and containers; served only
    /// when `tls` is set.
    pub fn implicit_tls_ports(&self) -> [(&'static str, i32); 3] {
        [
            ("imaps", self.imaps_port),
            ("pop3s", self.pop3s_port),
            ("submissions", self.submissions_port),
        ]
    }
}

/// The chat role: an IRC server (RFC 1459/2812 as modern clients use them, with IRCv3
/// capability negotiation, `server-time`, `echo-message`, `message-tags` and SASL PLAIN).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::login_needs_users())]
pub struct ChatServer {
    /// Plain-text IRC port (6667 on most networks).
    #[serde(default = "default_irc_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// IRC over implicit TLS (RFC 7194; 6697 by convention). Served only with `tls`.
    #[serde(default = "default_ircs_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub tls_port: i32,
    /// TLS certificate for `tlsPort`: a `kubernetes.io/tls` Secret, or one cert-manager issues
    /// (`issuerRef`). A renewed certificate is served without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Accounts: users log in with SASL PLAIN or `PASS account:password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<UsersRef>,
    /// Whether only users with an account may connect. Default false (anyone may pick a nick;
    /// users with an account may still log in). Needs `users`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_login: Option<bool>,
    /// Whether users may log in on a connection without TLS: anyone on the path reads the
    /// password. Default false (SASL is then offered only on `tlsPort`), except on a
    /// standalone host without `tls` bound to a loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_plaintext_auth: Option<bool>,
    /// The network's name clients show (`NETWORK=` in the welcome). Default: the HostRole's
    /// name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 32),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    )]
    pub network: Option<String>,
    /// Most channels at once on the server. Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_channels: Option<i32>,
    /// Most channels one user may be in (`CHANLIMIT`). Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_channels_per_user: Option<i32>,
    /// Longest nick (`NICKLEN`). Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 9, max = 64))]
    pub nick_length: Option<i32>,
    /// Most users connected at once. Default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_users: Option<i32>,
    /// The message of the day shown on connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub motd: Option<String>,
}

fn default_irc_port() -> i32 {
    6667
}

fn default_ircs_port() -> i32 {
    6697
}

/// The radio role: internet radio as Icecast 2.4 serves it. Listeners `GET` a mount (ICY
/// metadata with `Icy-MetaData: 1`, a short burst, then real time); `/status-json.xsl` is
/// Icecast's status page. Each mount plays a playlist in a loop at the files' own bitrate,
/// replaced while a source client (ffmpeg, ezstream, BUTT, Mixxx, liquidsoap: `PUT` or `SOURCE`
/// with the source password) feeds it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::live_needs_source_password())]
pub struct RadioServer {
    /// HTTP port for listeners and source clients (Icecast's 8000 by default).
    #[serde(default = "default_radio_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// The station's name (`icy-name`, the status page). Default: the HostRole's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub station: Option<String>,
    /// HTTPS on `port` for listeners and sources, with the certificate of a `kubernetes.io/tls`
    /// Secret or one cert-manager issues (`issuerRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// The password source clients send (user `source`, as Icecast's `source-password`): the
    /// `password` key of a Secret labelled `hostrole.dev/use: "true"`, or a file (standalone).
    /// Needed by `live` mounts. Without `tls` it travels in the clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_password: Option<RadioPassword>,
    /// Most listeners at once over all mounts (403 beyond, as Icecast answers). Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_listeners: Option<i32>,
    /// The mount points.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["path".into()]))]
    pub mounts: Vec<RadioMount>,
}

fn default_radio_port() -> i32 {
    8000
}

/// Where the source password comes from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::exactly_one("secret", "file"))]
pub struct RadioPassword {
    /// A Secret in the HostRole's namespace with the password under the key `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub secret: Option<String>,
    /// A file holding the password. Standalone agents only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub file: Option<String>,
}

/// One mount point of a radio host.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::mount_has_audio())]
pub struct RadioMount {
    /// The path listeners ask for, e.g. `/live` or `/jazz.mp3`.
    #[schemars(
        length(min = 2, max = 64),
        regex(pattern = r"^/[A-Za-z0-9][A-Za-z0-9._-]*$")
    )]
    #[x_kube(validation = rules::mount_path_free())]
    pub path: String,
    /// Shown to listeners (`icy-description`, the status page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub description: Option<String>,
    /// Whether a source client may feed this mount (with `sourcePassword`); while it does, the
    /// playlist pauses. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<bool>,
    /// Audio files (MP3, Ogg Vorbis or Opus) played in a loop, in name order, at their own
    /// bitrate. Without one the mount is live only: off the air (404) while no source feeds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playlist: Option<Playlist>,
    /// Most listeners of this mount. Default: the role's `maxListeners`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_listeners: Option<i32>,
}

/// Where a playlist's files come from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::exactly_one_of(&["configMap", "fileShare", "path"]))]
pub struct Playlist {
    /// A ConfigMap in the HostRole's namespace (labelled `hostrole.dev/use: "true"`) whose
    /// `binaryData` keys are the audio files, e.g. `01-jingle.mp3` (a ConfigMap holds at most
    /// 1 MiB: short loops; files over 128 MiB are skipped anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub config_map: Option<String>,
    /// A folder of this host's file share (`servers.file`), e.g. `music`: users upload the
    /// station's files over WebDAV, and the playlist picks up what is there at each loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = rules::relative_file_path())]
    pub file_share: Option<String>,
    /// A directory on the machine. Standalone agents only; relative paths are taken from the
    /// manifest's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub path: Option<String>,
}

/// The print role: a shared printer as IPP Everywhere describes it (IPP/1.1 and 2.0 over HTTP at
/// `ipp://<host>:<port>/ipp/print`), which CUPS (`lpadmin -m everywhere`), macOS, Windows,
/// Android and iOS add without a driver. It accepts PDF, PWG raster and JPEG and prints each
/// job to a file: whole or not at all, in the host's print volume or a folder of its file share.
/// A job's owner fetches the printout at `/printouts/<job-id>`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrintServer {
    /// TCP port of the printer (IPP's own 631 needs privileges a pod does not have).
    #[serde(default = "default_print_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// The printer's name (`printer-name`, what users pick it by). Default: the HostRole's
    /// name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 127),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    )]
    pub name: Option<String>,
    /// Where the printer is, for people (`printer-location`), e.g. `2nd floor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 127))]
    pub location: Option<String>,
    /// What it is, for people (`printer-info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 127))]
    pub info: Option<String>,
    /// IPPS (IPP over HTTPS) on `port` with the certificate of a `kubernetes.io/tls` Secret or
    /// one cert-manager issues (`issuerRef`). Without it, documents and passwords travel in the
    /// clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Who may print: with users, every operation but asking the printer's attributes needs
    /// a login (HTTP Basic), and only a job's owner may see its details, cancel it or fetch
    /// its printout. Without, anyone who reaches the port may print.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<UsersRef>,
    /// Where printouts land. Default: the print volume of the host, beside the job queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<PrintOutput>,
    /// Size of the print volume (a PersistentVolumeClaim per host) that keeps the job queue
    /// and, without `output`, the printouts across restarts. Default: scratch space that lives
    /// as long as the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::byte_size())]
    pub storage: Option<Quantity>,
    /// Largest document a job may carry. Default 64Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::byte_size())]
    pub max_job_size: Option<Quantity>,
    /// Most jobs kept, pending and finished; the oldest finished ones are forgotten first, and
    /// new jobs are refused while every kept one is pending. Default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_jobs: Option<i32>,
}

fn default_print_port() -> i32 {
    8631
}

/// Where a printer's printouts land.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::exactly_one("fileShare", "path"))]
pub struct PrintOutput {
    /// A folder of this host's file share (`servers.file`), e.g. `printouts`: users fetch
    /// their printouts over WebDAV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = rules::relative_file_path())]
    pub file_share: Option<String>,
    /// A directory on the machine. Standalone agents only; relative paths are taken from the
    /// manifest's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub path: Option<String>,
}

/// The index role: the directory of a hybrid peer-to-peer network.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IndexServer {
    /// HTTP port of the directory.
    #[serde(default = "default_index_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// How long a peer stays listed without a heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::duration("1s", "1h"))]
    pub ttl: Option<String>,
    /// HTTPS for the directory with the certificate of a `kubernetes.io/tls` Secret (labelled
    /// `hostrole.dev/use: "true"`) or one cert-manager issues (`issuerRef`, Certificate
    /// `<name>-index`). The network's peers then reach the index over HTTPS and check its
    /// certificate (its name, and the CA in the Secret's `ca.crt`, else the system's roots). A
    /// renewed certificate is served without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
}

fn default_index_port() -> i32 {
    7000
}

/// How long an index keeps a silent peer when `ttl` is not given, in seconds.
pub const DEFAULT_INDEX_TTL_SECONDS: u64 = 90;

impl IndexServer {
    /// `ttl` in whole seconds (at least 1), or the default.
    pub fn ttl_seconds(&self) -> u64 {
        self.ttl
            .as_deref()
            .and_then(crate::duration::parse)
            .map_or(DEFAULT_INDEX_TTL_SECONDS, |d| d.as_secs().max(1))
    }

    /// How often the peers of this index send heartbeats: three per TTL, so one lost
    /// heartbeat never expires a peer, and at least every 10 s.
    pub fn heartbeat_seconds(&self) -> u64 {
        Self::heartbeat_for(self.ttl_seconds())
    }

    /// The heartbeat of a decentralized peer (no index): as for an index with the default TTL.
    pub fn default_heartbeat_seconds() -> u64 {
        Self::heartbeat_for(DEFAULT_INDEX_TTL_SECONDS)
    }

    fn heartbeat_for(ttl_seconds: u64) -> u64 {
        (ttl_seconds / 3).clamp(1, 10)
    }
}

/// A reference to a Secret in the HostRole's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub secret: String,
}

/// A role's certificate: exactly one of `secret` (a `kubernetes.io/tls` Secret you keep) or
/// `issuerRef` (cert-manager issues it for the host's names and renews it).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::tls_exactly_one())]
pub struct Tls {
    /// A `kubernetes.io/tls` Secret in the HostRole's namespace, labelled
    /// `hostrole.dev/use: "true"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub secret: Option<String>,
    /// A cert-manager Issuer (this namespace) or ClusterIssuer: the operator asks it, through a
    /// `Certificate` named `<name>-<role>`, for a certificate of every name the host has (its
    /// Service's and hosts' DNS names and `spec.expose.hostnames`), stored in the Secret
    /// `<name>-<role>-tls`, and mounts that Secret once issued. Clusters only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

impl Tls {
    /// The Secret of this certificate: the one named, or the one cert-manager fills for
    /// HostRole `hostrole`'s `role`.
    pub fn secret_name(&self, hostrole: &str, role: &str) -> String {
        match &self.secret {
            Some(secret) => secret.clone(),
            None => issued_secret_name(hostrole, role),
        }
    }
}

/// The Secret cert-manager fills for a role's `tls.issuerRef`.
pub fn issued_secret_name(hostrole: &str, role: &str) -> String {
    format!("{hostrole}-{role}-tls")
}

/// The cert-manager Certificate the operator keeps for a role's `tls.issuerRef`.
pub fn certificate_name(hostrole: &str, role: &str) -> String {
    format!("{hostrole}-{role}")
}

/// A cert-manager issuer, as in a Certificate's `issuerRef`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the Issuer or ClusterIssuer.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// `Issuer` (in the HostRole's namespace, the default) or `ClusterIssuer`.
    #[serde(default)]
    pub kind: IssuerKind,
    /// API group of the issuer: `cert-manager.io` (the default) or an external issuer's group.
    #[serde(default = "default_issuer_group")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub group: String,
}

fn default_issuer_group() -> String {
    "cert-manager.io".into()
}

/// The kind of a cert-manager issuer.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IssuerKind {
    /// An Issuer of the HostRole's namespace.
    #[default]
    Issuer,
    /// A cluster-wide ClusterIssuer.
    ClusterIssuer,
}

impl IssuerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::Issuer => "Issuer",
            IssuerKind::ClusterIssuer => "ClusterIssuer",
        }
    }
}

/// How a host is reached from outside the cluster: a Service of the chosen type for the roles
/// named (the `<name>` ClusterIP Service stays for clients inside), the names it has outside,
/// and optionally Gateway API routes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rules::expose_node_ports_need_type(),
    validation = rules::expose_lb_class_needs_lb(),
    validation = rules::expose_traffic_policy_needs_type(),
    validation = rules::expose_node_port_names()
)]
pub struct Expose {
    /// `ClusterIP` (the default: nothing outside the cluster; routes through a Gateway only),
    /// `NodePort` or `LoadBalancer`: the type of the Service `<name>-external`.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// The roles reached from outside, e.g. `[web, mail]` (the others stay internal).
    /// Default: every server role of the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub roles: Vec<ExposedRole>,
    /// `LoadBalancer` only: the load balancer implementation, e.g. `io.cilium/l2-announcer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub load_balancer_class: Option<String>,
    /// Annotations of the external Service (MetalLB address pools, cloud load balancer
    /// settings, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 32))]
    pub annotations: BTreeMap<String, String>,
    /// `Cluster` (default) or `Local` (keeps the client's address; only nodes running a host
    /// answer). `NodePort` and `LoadBalancer` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<TrafficPolicy>,
    /// Fixed node ports by port name (`web`, `web-redirect`, `webdav`, `smtp`, `submission`,
    /// `imap`, `pop3`, `imaps`, `pop3s`, `submissions`, `index`), e.g. `{web: 30443}`; others
    /// are allocated by the cluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 8,
        "additionalProperties" = {"type": "integer", "minimum": 1, "maximum": 65535}
    ))]
    pub node_ports: BTreeMap<String, i32>,
    /// The host's names outside the cluster, e.g. `www.example.lan`: in its certificates
    /// (`tls.issuerRef`), its routes and `status.endpoints`. You point them at the cluster
    /// (DNS) yourself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(
            length(min = 1, max = 253),
            regex(
                pattern = r"^(\*\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
            )
        )
    )]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub hostnames: Vec<String>,
    /// Gateway API routes to the exposed roles: an `HTTPRoute` `<name>-<role>` for web and
    /// file (with `hostnames`), a `TCPRoute` `<name>-<port>` for each mail port (the Gateway's
    /// TCP listener of that port must be named after it: `smtp`, `submission`, `imap`,
    /// `pop3`, and with `tls` `imaps`, `pop3s`, `submissions`, passed through as TCP: the mail
    /// role ends TLS itself). Created when the Gateway API CRDs are installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayRoutes>,
}

/// The type of the external Service.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// `externalTrafficPolicy` of the external Service.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrafficPolicy {
    Cluster,
    Local,
}

/// A role that may be exposed.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum ExposedRole {
    Web,
    File,
    Mail,
    Index,
    Chat,
    Radio,
    Print,
}

impl ExposedRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ExposedRole::Web => "web",
            ExposedRole::File => "file",
            ExposedRole::Mail => "mail",
            ExposedRole::Index => "index",
            ExposedRole::Chat => "chat",
            ExposedRole::Radio => "radio",
            ExposedRole::Print => "print",
        }
    }
}

/// Where the Gateway API routes attach.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRoutes {
    /// The Gateways (or their listeners) the routes attach to.
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Atomic)]
    pub parent_refs: Vec<GatewayParentRef>,
}

/// A Gateway the routes attach to, as a route's `parentRefs` entry.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayParentRef {
    /// Name of the Gateway.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Its namespace (default: the HostRole's; another one must allow the routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: Option<String>,
    /// The listener of the Gateway the HTTPRoutes attach to (TCPRoutes attach to the listener
    /// named after their port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub section_name: Option<String>,
}

/// One place a role is reached.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// The role (`web`, `file`, `mail`, `index`).
    pub role: String,
    /// A URL to paste into a browser or client, e.g. `https://www.example.lan/` or
    /// `imap://office.lan.svc:1143`.
    pub url: String,
    /// `External` (from outside the cluster) or `Cluster` (from its pods).
    #[schemars(extend("enum" = ["External", "Cluster"]))]
    pub scope: String,
}

/// A service this host uses as a client.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum ClientService {
    /// Fetch a page over HTTP.
    Web,
    /// A WebDAV round trip.
    File,
    /// Send over SMTP, read back over IMAP or POP3.
    Mail,
    /// Two IRC connections in one channel: a message one sends must reach the other.
    Chat,
    /// Listen to a radio mount: bytes per second against its bitrate, stalls, the title.
    Radio,
    /// Print a one-page PDF probe over IPP, wait for the job to complete and check the
    /// printout's hash.
    Print,
}

impl ClientService {
    /// The name manifests and reports use: `web`, `file`, `mail`, `chat`, `radio`, `print`.
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

/// Client software on this host: exactly one of `server` (a HostRole) or `url`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::client_target_exactly_one())]
#[x_kube(validation = rules::client_to_needs_a_mail_sender())]
#[x_kube(validation = rules::client_listen_within_timeout())]
pub struct ClientSpec {
    /// Which service the client uses.
    pub service: ClientService,
    /// A HostRole that serves it: `name` (same namespace) or `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 127),
        regex(pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub server: Option<String>,
    /// An address outside the operator's care, e.g. `http://example.lan/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = rules::client_url())]
    pub url: Option<String>,
    /// How often the client runs. Default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::duration("1s", "24h"))]
    pub every: Option<String>,
    /// How long one run may take. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::duration("100ms", "10m"))]
    pub timeout: Option<String>,
    /// Web: the path to fetch, e.g. `/status`. Radio: the mount to listen to, e.g. `/live`
    /// (default: the server's first mount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^/"))]
    pub path: Option<String>,
    /// Radio: how long each run listens. Default 5s; keep it under `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = rules::duration("1s", "5m"))]
    pub listen: Option<String>,
    /// Web: what the answer must look like.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expectation>,
    /// Credentials the client logs in with (file, mail, chat and print).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<SecretRef>,
    /// Mail: probe the way between two mail hosts. The client logs in to `server`'s submission
    /// port with `credentials`, sends to the mailbox of `to.credentials` on `to.server`, and
    /// reads it back there over IMAP; its delivery time is the whole trip (the sender's
    /// queue, its route, the other host's SMTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<MailProbeTo>,
}

/// The receiving end of a cross-host mail probe.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MailProbeTo {
    /// A HostRole with a mail server: `name` (same namespace) or `namespace/name`.
    #[schemars(
        length(min = 1, max = 127),
        regex(pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub server: String,
    /// The receiving mailbox's login (a `kubernetes.io/basic-auth` Secret labelled
    /// `hostrole.dev/use: "true"`).
    pub credentials: SecretRef,
}

/// What a web client expects of the answer.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Expectation {
    /// HTTP status. Default: any 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 599))]
    pub status: Option<i32>,
    /// A string the body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub contains: Option<String>,
}

/// The peer role: every host is client and server of a peer-to-peer network at once.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PeerSpec {
    /// The network: peers of one network find each other and share one secret.
    #[schemars(
        length(min = 1, max = 57),
        regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub network: String,
    /// Hybrid mode: the HostRole in this namespace whose `servers.index` keeps the
    /// directory. Absent: decentralized, no central component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub index: Option<String>,
    /// Decentralized mode outside a cluster (or to join peers outside it): `host:port` of
    /// peers to start from. In a cluster the peers of a network find each other through
    /// the network's headless Service without this.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 3, max = 255)))]
    #[x_kube(validation = rules::host_port_list())]
    #[x_kube(merge_strategy = kube::core::ListMerge::Atomic)]
    pub seeds: Vec<String>,
    /// Port of the peer protocol.
    #[serde(default = "default_peer_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// The shared folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<ShareSpec>,
    /// The user interface every peer gives its user.
    #[serde(default)]
    pub ui: PeerUi,
    /// Resources to fetch unattended (by name or content hash).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Atomic)]
    pub fetch: Vec<String>,
    /// Fetch everything the network shares (for unattended mirror hosts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mirror: bool,
    /// HTTPS between the peers of the network with the certificate of a `kubernetes.io/tls`
    /// Secret (labelled `hostrole.dev/use: "true"`) or one cert-manager issues (`issuerRef`,
    /// Certificate `<name>-peer`). The Secret's `ca.crt` is the network's CA: this peer accepts
    /// only peers whose certificate it signed (peers are reached by address, so the name in
    /// the certificate is not checked; each answer is still signed by the peer asked). Every
    /// peer of a network needs `tls`, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// How much of its host this peer gives the network: upload and download rates and upload
    /// slots, so that serving others cannot starve the host's own work. The peer's UI can
    /// change them while it runs, until the host restarts. Absent: no rate limits, 32 upload
    /// slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<PeerLimits>,
}

/// Bounds on what a peer sends and fetches.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PeerLimits {
    /// Most chunk bytes per second sent to other peers, as a quantity (`10Mi` is 10 MiB/s; at
    /// least `1Ki`). Unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::byte_rate())]
    pub upload_bytes_per_second: Option<Quantity>,
    /// Most chunk bytes per second fetched from other peers, as a quantity (at least `1Ki`).
    /// Unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::byte_rate())]
    pub download_bytes_per_second: Option<Quantity>,
    /// Chunks served at once; further requests are answered "busy" and the asking peer fetches
    /// those chunks from another peer or later. Default 32 (each slot may hold a 1 MiB chunk in
    /// memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub upload_slots: Option<i32>,
}

fn default_peer_port() -> i32 {
    7001
}

/// The peer's shared folder.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ShareSpec {
    /// Size of the shared folder's volume (a PersistentVolumeClaim per host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::byte_size())]
    pub storage: Option<Quantity>,
}

/// The peer's user interface.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PeerUi {
    /// HTTP port of the UI.
    #[serde(default = "default_ui_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
}

impl Default for PeerUi {
    fn default() -> Self {
        Self {
            port: default_ui_port(),
        }
    }
}

fn default_ui_port() -> i32 {
    8090
}

/// Placement and resources of the host pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HostTemplate {
    /// Node labels the hosts must run on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// CPU and memory of the agent container, as in a container's `resources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// Taints the hosts tolerate, as in a pod's `tolerations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Atomic)]
    pub tolerations: Option<Vec<Toleration>>,
    /// Priority class of the host pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
    /// Secrets of this namespace (type `kubernetes.io/dockerconfigjson`) for pulling the agent
    /// image from a private registry. Replaces the operator's default (chart value
    /// `agent.imagePullSecrets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub image_pull_secrets: Option<Vec<ImagePullSecret>>,
    /// StorageClass of the hosts' volumes (`storage` of the file and mail roles and of
    /// `peer.share`). Absent: the cluster's default StorageClass. To grow volumes later, choose a
    /// class with `allowVolumeExpansion: true`. A change applies to new claims only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub storage_class_name: Option<String>,
    /// What happens to the hosts' volumes when the HostRole is deleted or scaled down.
    /// Default: both `Retain` (data outlives its hosts; delete the claims by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_retention_policy: Option<ClaimRetentionPolicy>,
    /// How the hosts spread over the cluster (the pods' `topologySpreadConstraints`). Absent:
    /// with two or more hosts, as evenly as the scheduler can over nodes
    /// (`kubernetes.io/hostname`), never keeping a host from being scheduled
    /// (`ScheduleAnyway`). Zones are left out of the default because the scheduler ignores
    /// nodes without a constraint's key: add `topology.kubernetes.io/zone` here where nodes
    /// carry it. A constraint without `labelSelector` counts this HostRole's hosts. `[]`: no
    /// spreading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "topology_spread_schema")]
    pub topology_spread: Option<Vec<TopologySpreadConstraint>>,
    /// Voluntary disruptions (node drains, cluster upgrades) of the hosts: a
    /// PodDisruptionBudget. Absent: at most one host down at a time with two or more hosts, and
    /// no budget for a single host (it would block every drain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<DisruptionBudget>,
}

/// How many hosts a voluntary disruption may take down at once.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionBudget {
    /// Hosts that may be down at once: a number (`1`) or a percentage of `replicas` (`25%`).
    /// `0` blocks every voluntary eviction (drains wait until it changes).
    #[x_kube(validation = rules::count_or_percentage())]
    pub max_unavailable: IntOrString,
}

/// `template.resources`: a container's `ResourceRequirements`, with the list type Kubernetes
/// gives `claims` (a map by `name`) that k8s-openapi's schema leaves out.
fn resources_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<ResourceRequirements>();
    if let Some(claims) = schema
        .get_mut("properties")
        .and_then(|p| p.get_mut("claims"))
        .and_then(serde_json::Value::as_object_mut)
    {
        claims.insert("x-kubernetes-list-type".into(), "map".into());
        claims.insert(
            "x-kubernetes-list-map-keys".into(),
            serde_json::json!(["name"]),
        );
    }
    schema
}

/// `template.topologySpread`: at most 8 of Kubernetes' `topologySpreadConstraints`, with the
/// list types Kubernetes gives them (a map by `topologyKey` and `whenUnsatisfiable`; the lists
/// inside atomic) that k8s-openapi's schema leaves out.
fn topology_spread_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    fn atomic_lists(value: &mut serde_json::Value) {
        if let Some(object) = value.as_object_mut() {
            if object.get("type") == Some(&"array".into())
                && !object.contains_key("x-kubernetes-list-type")
            {
                object.insert("x-kubernetes-list-type".into(), "atomic".into());
            }
            object.values_mut().for_each(atomic_lists);
        }
    }
    let mut item = generator
        .subschema_for::<TopologySpreadConstraint>()
        .to_value();
    atomic_lists(&mut item);
    let mut schema = schemars::json_schema!({
        "type": "array",
        "maxItems": 8,
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["topologyKey", "whenUnsatisfiable"],
    });
    schema.insert("nullable".into(), true.into());
    schema
}

/// `status.conditions`: `metav1.Condition` as Kubernetes declares it (k8s-openapi's schema has
/// none of its validations): `status` one of `True`, `False`, `Unknown`, `type` and `reason`
/// CamelCase identifiers, `lastTransitionTime` a date-time. The JSON is the same.
fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 16,
        "items": {
            "description": "One aspect of the HostRole's state, as every Kubernetes object reports conditions.",
            "type": "object",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            "properties": {
                "type": {
                    "description": "What the condition is about, in CamelCase: Ready, Progressing, Degraded or ClientsHealthy.",
                    "type": "string",
                    "maxLength": 316,
                    "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
                },
                "status": {
                    "description": "Whether the condition holds: True, False, or Unknown when the operator cannot tell.",
                    "type": "string",
                    "enum": ["True", "False", "Unknown"]
                },
                "observedGeneration": {
                    "description": "The metadata.generation of the HostRole this condition was judged on; older than metadata.generation means the condition may be out of date.",
                    "type": "integer",
                    "format": "int64",
                    "minimum": 0
                },
                "lastTransitionTime": {
                    "description": "When the status last changed (RFC 3339).",
                    "type": "string",
                    "format": "date-time"
                },
                "reason": {
                    "description": "Why the condition has its status, as a CamelCase word programs can match, e.g. HostsNotReady.",
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 1024,
                    "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
                },
                "message": {
                    "description": "What the reason means here, for people; may be empty.",
                    "type": "string",
                    "maxLength": 32768
                }
            }
        }
    })
}

/// A pull secret for the agent image.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImagePullSecret {
    /// Name of a Secret in the HostRole's namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// The StatefulSet's `persistentVolumeClaimRetentionPolicy` for the hosts' volumes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRetentionPolicy {
    /// When the HostRole (and so its StatefulSet) is deleted. Default `Retain`.
    #[serde(default)]
    pub when_deleted: ClaimRetention,
    /// When `replicas` goes down: the volumes of the removed hosts. Default `Retain`.
    #[serde(default)]
    pub when_scaled: ClaimRetention,
}

/// Whether a host's volume is kept or deleted with it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClaimRetention {
    /// Keep the PersistentVolumeClaim (a host that comes back finds its data).
    #[default]
    Retain,
    /// Delete the PersistentVolumeClaim (and, by the StorageClass's reclaim policy, the data).
    Delete,
}

impl ClaimRetention {
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimRetention::Retain => "Retain",
            ClaimRetention::Delete => "Delete",
        }
    }
}

/// Other namespaces whose HostRoles may be clients of this one: those named in `namespaces`,
/// and those whose labels match `namespaceSelector` (a namespace allowed by either is allowed).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::allow_clients_from_not_empty())]
pub struct AllowClientsFrom {
    /// Namespaces allowed by name, e.g. `[team-a, team-b]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    #[x_kube(merge_strategy = kube::core::ListMerge::Set)]
    pub namespaces: Vec<String>,
    /// Namespaces allowed by their labels, as in a NetworkPolicy: `{matchLabels: {team: web}}`;
    /// `{}` allows every namespace. Whoever may label namespaces (usually the cluster admin)
    /// decides what it admits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
}

/// A label selector over namespaces: every `matchLabels` pair and every `matchExpressions`
/// requirement must hold. Empty, it selects every namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Labels the namespace must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 16,
        "additionalProperties" = {
            "type": "string",
            "maxLength": 63,
            "pattern": "^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"
        }
    ))]
    #[x_kube(validation = rules::label_keys())]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements on the namespace's labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Atomic)]
    pub match_expressions: Vec<NamespaceRequirement>,
}

/// One requirement of a namespace selector, as in `matchExpressions` of Kubernetes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::requirement_values())]
pub struct NamespaceRequirement {
    /// The label key, e.g. `team` or `example.com/tier`.
    #[schemars(
        length(min = 1, max = 317),
        regex(
            pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
        )
    )]
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: SelectorOperator,
    /// The values for `In` and `NotIn` (at least one); none for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(
            length(max = 63),
            regex(pattern = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
        )
    )]
    #[x_kube(merge_strategy = kube::core::ListMerge::Atomic)]
    pub values: Vec<String>,
}

/// How a requirement relates a label to its values.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectorOperator {
    /// The label's value is one of `values`.
    In,
    /// The label is absent, or its value is none of `values`.
    NotIn,
    /// The label is present (any value).
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// What the operator observed of a HostRole.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = schemars::transform::RecursiveTransform(unwrap_description))]
pub struct HostRoleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Hosts that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Hosts serving every role.
    #[serde(default)]
    pub ready_hosts: i32,
    /// The roles each host plays, comma-separated (for `kubectl get`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub roles: String,
    /// Label selector of the host pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// The latest observations of the HostRole's state, one per type: `Ready` (every host
    /// serves every role), `Progressing` (a change is rolling out), `Degraded` (a host fails)
    /// and `ClientsHealthy` (every client's last run succeeded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// One entry per host, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub hosts: Vec<HostStatus>,
    /// Healthy client results over declared ones, over every host (`3/4`; for `kubectl get`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub clients: String,
    /// The peer-to-peer network this host belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStatus>,
    /// Where each role is reached, the main one first: from outside the cluster (a
    /// LoadBalancer's address, a node's for a NodePort, `spec.expose.hostnames`), then from
    /// inside it (the Service's DNS name). `https` where the role has TLS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Atomic)]
    pub endpoints: Vec<Endpoint>,
}

/// A peer-to-peer network as the operator sees it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStatus {
    /// The network's name.
    pub name: String,
    /// `Hybrid` (an index keeps the directory) or `Decentralized`.
    #[schemars(extend("enum" = ["Hybrid", "Decentralized"]))]
    pub mode: String,
    /// Hybrid: the index HostRole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// The Secret the network's peers (and its index) share.
    pub secret: String,
    /// The headless Service its peers find each other through.
    pub service: String,
    /// Every host of every HostRole in the network, with whether it is ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub peers: Vec<NetworkPeer>,
}

/// One peer of a network.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPeer {
    /// The host (pod) name.
    pub name: String,
    /// Its HostRole.
    pub host_role: String,
    /// Whether the peer's host serves.
    pub ready: bool,
}

/// What one host is doing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    /// The host's name (its pod's name).
    pub name: String,
    /// Whether the host serves every role.
    pub ready: bool,
    /// The state of each server role on this host: all `Serving` while the host serves, all
    /// `Pending` before it has a pod. When the agent stopped because of one role (its last log
    /// line, `hostrole-agent: role <name> failed: <error>`, is the container's termination
    /// message), that role is `Failed` and the others `Starting`; a failure of the whole host
    /// (no node, no volume, no image) fails every role.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, RoleState>,
    /// Results of this host's clients, in the order of `spec.clients`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Atomic)]
    pub clients: Vec<ClientStatus>,
    /// Why the host does not serve every role, while it does not (CamelCase): `NoPod`,
    /// `Scheduling`, `Unschedulable`, `VolumeNotBound`, `ImagePullFailed`,
    /// `ContainerConfigError`, `CrashLooping`, `PodFailed`, `Starting` or `RoleNotReady`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the reason means for this host, with what the cluster said (the scheduler's
    /// message, the image pull error, the agent's last words) and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The state of one role on one host.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleState {
    /// The host does not exist yet.
    Pending,
    /// The host exists; the role is not serving yet.
    Starting,
    /// The role answers.
    Serving,
    /// The role failed.
    Failed,
}

/// The latest result of one client against one server.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClientStatus {
    /// The service used.
    pub service: String,
    /// The server: a HostRole reference or a URL.
    pub server: String,
    /// Whether the last run succeeded.
    pub ok: bool,
    /// Duration of the last run, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// Why the last run failed (or `Succeeded`, `Pending`, or why it cannot run: `ServerNotFound`,
    /// `Forbidden`, `RoleMissing`, `InvalidTarget`, `ReferenceNotAllowed`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Error of the last failed run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    /// When the client last succeeded (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_success: Option<String>,
}

impl NetworkStatus {
    /// The network `peer` is in, with its `peers`: hybrid when the peer names an index, its
    /// Secret and headless Service named after it.
    pub fn of(peer: &PeerSpec, peers: Vec<NetworkPeer>) -> NetworkStatus {
        NetworkStatus {
            name: peer.network.clone(),
            mode: if peer.index.is_some() {
                "Hybrid"
            } else {
                "Decentralized"
            }
            .into(),
            index: peer.index.clone(),
            secret: crate::render::network_object_name(&peer.network),
            service: crate::render::network_object_name(&peer.network),
            peers,
        }
    }
}

impl ClientStatus {
    /// A declared client before its first result: its service, its server (the HostRole it
    /// names, else its URL), not ok, `Pending`.
    pub fn pending(spec: &ClientSpec) -> ClientStatus {
        ClientStatus {
            service: spec.service.as_str().to_string(),
            server: spec
                .server
                .clone()
                .or_else(|| spec.url.clone())
                .unwrap_or_default(),
            ok: false,
            reason: "Pending".into(),
            ..Default::default()
        }
    }
}

impl HostRoleSpec {
    /// Names of the server roles this host runs, in a fixed order.
    pub fn server_roles(&self) -> Vec<&'static str> {
        let s = &self.servers;
        [
            (s.web.is_some(), "web"),
            (s.file.is_some(), "file"),
            (s.mail.is_some(), "mail"),
            (s.index.is_some(), "index"),
            (s.chat.is_some(), "chat"),
            (s.radio.is_some(), "radio"),
            (s.print.is_some(), "print"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }

    /// Every role this host plays (servers, then `peer` and `client`), for display.
    pub fn all_roles(&self) -> Vec<&'static str> {
        let mut roles = self.server_roles();
        if self.peer.is_some() {
            roles.push("peer");
        }
        if !self.clients.is_empty() {
            roles.push("client");
        }
        roles
    }

    /// Every TCP port a server role listens on, with a name for Services and containers.
    pub fn server_ports(&self) -> Vec<(&'static str, i32)> {
        let s = &self.servers;
        let mut ports = Vec::new();
        if let Some(web) = &s.web {
            ports.push(("web", web.port));
        }
        if let Some(file) = &s.file {
            ports.push(("webdav", file.port));
        }
        if let Some(mail) = &s.mail {
            ports.push(("smtp", mail.smtp_port));
            ports.push(("submission", mail.submission_port));
            ports.push(("imap", mail.imap_port));
            ports.push(("pop3", mail.pop3_port));
            // The implicit-TLS ports: only with a certificate.
            if mail.tls.is_some() {
                ports.extend(mail.implicit_tls_ports());
            }
        }
        if let Some(index) = &s.index {
            ports.push(("index", index.port));
        }
        if let Some(chat) = &s.chat {
            ports.push(("irc", chat.port));
            if chat.tls.is_some() {
                ports.push(("ircs", chat.tls_port));
            }
        }
        if let Some(radio) = &s.radio {
            ports.push(("radio", radio.port));
        }
        if let Some(print) = &s.print {
            ports.push(("ipp", print.port));
        }
        if let Some(peer) = &self.peer {
            // The UI listens on the pod's loopback (reached with `kubectl port-forward`).
            ports.push(("peer", peer.port));
        }
        ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(ttl: Option<&str>) -> IndexServer {
        IndexServer {
            port: 7000,
            ttl: ttl.map(str::to_string),
            tls: None,
        }
    }

    #[test]
    fn an_index_ttl_becomes_whole_seconds_and_sets_the_heartbeat() {
        assert_eq!(index(Some("1m30s")).ttl_seconds(), 90);
        assert_eq!(index(Some("500ms")).ttl_seconds(), 1, "at least a second");
        assert_eq!(index(None).ttl_seconds(), DEFAULT_INDEX_TTL_SECONDS);
        assert_eq!(index(Some("30s")).heartbeat_seconds(), 10);
        assert_eq!(index(Some("6s")).heartbeat_seconds(), 2);
        assert_eq!(index(Some("1s")).heartbeat_seconds(), 1);
        assert_eq!(IndexServer::default_heartbeat_seconds(), 10);
    }

    #[test]
    fn clients_are_named_by_service_and_position() {
        assert_eq!(ClientService::Mail.client_name(1), "mail-1");
        assert_eq!(ClientService::Web.as_str(), "web");
    }
}
