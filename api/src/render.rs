//! The one translator from a HostRole to what its agent runs, for a pod and for a standalone
//! agent alike.
//!
//! [`render`] is pure: given a HostRole, the environment it runs in and the other HostRoles it
//! may name, it returns a [`HostPlan`] — the agent's configuration, and for every role the ports
//! it serves and the files it needs ([`Mount`]s). What differs between a cluster and a laptop is
//! only *where* things are ([`Environment`]): mounted volumes at fixed paths and Service DNS
//! names in a pod; a data directory, the manifest's directory and loopback on a machine. The two
//! callers are thin adapters: the operator turns mounts into volumes and claims, the standalone
//! agent writes the same files into its data directory. Defaults, names and checks live here
//! once, so the two worlds agree by construction.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use hostrole_config::{
    AgentConfig, ChatRoleConfig, ClientConfig, ClientTarget, DEFAULT_MAX_RETRY_SECONDS,
    DEFAULT_QUEUE_LIFETIME_SECONDS, DEFAULT_RETRY_SECONDS, FileRoleConfig, IndexRoleConfig,
    MailReadBack, MailRelay as MailRelayConfig, MailRoleConfig, MailRoute, MailTarget,
    OfferedPrinter, OutboundConfig, OutputQuota, PeerRoleConfig, PrintRoleConfig,
    RadioMount as RadioMountConfig, RadioRoleConfig, RelayTls as RelayTlsConfig, TlsFiles,
    WebRoleConfig,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::access::{self, ObjectKind, USE_LABEL, USE_LABEL_VALUE};
use crate::hostrole::{
    AnonymousAccess, ClientService, ClientSpec, Expectation, FileServer, HostRole, IndexServer,
    MailServer, Playlist, PrintOutput, RadioPassword, SiteFile, Tls, UsersRef, certificate_name,
};
use crate::quantity::parse_bytes;
use crate::rules::ADMIN_PORT;
use crate::target::mail_target_from_url;

/// Key of the users file in a users Secret.
pub const USERS_KEY: &str = "users";
/// Key of the shared secret in a network Secret.
pub const NETWORK_SECRET_KEY: &str = "secret";
/// Keys of a `kubernetes.io/tls` Secret.
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
/// Keys of a `kubernetes.io/basic-auth` Secret a client logs in with.
pub const USERNAME_KEY: &str = "username";
pub const PASSWORD_KEY: &str = "password";
/// The keys of a login Secret.
const LOGIN_KEYS: [&str; 2] = [USERNAME_KEY, PASSWORD_KEY];
/// Key of the CA bundle in a Secret cert-manager (or its owner) fills.
pub const CA_KEY: &str = "ca.crt";

/// Connections a role serves at once when the manifest does not say.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Chat: most channels on a server, most channels one user may be in, longest nick.
pub const DEFAULT_MAX_CHANNELS: usize = 1000;
pub const DEFAULT_MAX_CHANNELS_PER_USER: usize = 20;
pub const DEFAULT_NICK_LENGTH: usize = 30;
/// Radio: most listeners at once when the manifest does not say.
pub const DEFAULT_MAX_LISTENERS: usize = 100;
/// The key of the radio role's source password in its Secret.
pub const SOURCE_PASSWORD_KEY: &str = "password";
/// Print: largest document and most jobs kept when the manifest does not say.
pub const DEFAULT_MAX_JOB_BYTES: u64 = 64 << 20;
pub const DEFAULT_MAX_JOBS: usize = 100;
/// Largest upload when the manifest does not say: 1 GiB.
pub const DEFAULT_MAX_UPLOAD: u64 = 1 << 30;
/// Largest message when the manifest does not say: 25 MiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 25 << 20;
/// A mailbox's quota when the spec sets none (or the volume's size when smaller).
pub const DEFAULT_MAILBOX_QUOTA: u64 = 1 << 30;
/// How often a client runs and how long a run may take when the manifest does not say.
pub const DEFAULT_CLIENT_EVERY_MS: u64 = 30_000;
pub const DEFAULT_CLIENT_TIMEOUT_MS: u64 = 10_000;

/// In a pod: the directory holding the agent's configuration, and the file's key in the host
/// ConfigMap.
pub const CONFIG_DIR: &str = "/etc/hostrole";
pub const CONFIG_KEY: &str = "agent.yaml";

/// Name of the Secret and of the headless Service of a peer network.
pub fn network_object_name(network: &str) -> String {
    format!("peers-{network}")
}

/// `name` or `namespace/name`, relative to `namespace`.
pub fn split_ref<'a>(namespace: &'a str, reference: &'a str) -> (&'a str, &'a str) {
    reference.split_once('/').unwrap_or((namespace, reference))
}

/// Where a HostRole's agent runs.
#[derive(Debug, Clone, Copy)]
pub enum Environment<'a> {
    /// A pod in `namespace`: the agent's files are volumes mounted at fixed paths
    /// ([`Location::cluster_path`]); other hosts are reached by their Services' DNS names.
    Cluster { namespace: &'a str },
    /// `hostrole-agent up` on a machine.
    Local(&'a Local),
}

/// A standalone agent's surroundings.
#[derive(Debug, Clone)]
pub struct Local {
    /// Where the agent keeps its files ([`Location::relative`] under it).
    pub data_dir: PathBuf,
    /// Relative paths of the manifest (`site.path`, `users.file`) start here.
    pub manifest_dir: PathBuf,
    pub bind: IpAddr,
    pub admin_port: u16,
    /// Added to this agent's own index, peer and peer UI ports, to run several peers of one
    /// manifest on one machine (not to the ports it connects to).
    pub port_offset: u16,
    /// Decentralized peers: more `host:port` addresses to start from.
    pub seeds: Vec<String>,
    /// The port offsets of the manifest's other HostRoles that run on this machine too
    /// (`hostrole-agent up` with several hosts), by name: a decentralized peer seeds from
    /// where its fellow peers really listen.
    pub offsets: BTreeMap<String, u16>,
}

/// What a HostRole may name: the other HostRoles (its clients' servers, its index, its
/// network), the labels of their namespaces (for `allowClientsFrom`), and which Secrets and
/// ConfigMaps their owners labelled for use. In a cluster, what the operator watches and probes;
/// standalone, what the manifest holds. What is not known is not allowed.
pub trait Directory {
    /// Every HostRole with its namespace.
    fn each(&self) -> Box<dyn Iterator<Item = (&str, &HostRole)> + '_>;

    /// The HostRole `name` in `namespace`.
    fn get(&self, namespace: &str, name: &str) -> Option<&HostRole> {
        self.each()
            .find(|(ns, hr)| *ns == namespace && hr.metadata.name.as_deref() == Some(name))
            .map(|(_, hr)| hr)
    }

    /// The labels of `namespace`, when known (a server's `allowClientsFrom.namespaceSelector`
    /// matches them; an unknown namespace matches no selector).
    fn namespace_labels(&self, _namespace: &str) -> Option<&BTreeMap<String, String>> {
        None
    }

    /// Whether the Secret or ConfigMap `name` of `namespace` exists and its owner labelled it
    /// `hostrole.dev/use: "true"` (docs/security.md, item 4). Unknown: no.
    fn usable(&self, _kind: ObjectKind, _namespace: &str, _name: &str) -> bool {
        false
    }
}

/// HostRoles on this machine with no Secrets at all: they share one (empty) namespace.
impl Directory for Vec<HostRole> {
    fn each(&self) -> Box<dyn Iterator<Item = (&str, &HostRole)> + '_> {
        Box::new(self.iter().map(|hr| ("", hr)))
    }
}

/// One manifest on one machine: its HostRoles (one empty namespace) and the Secrets and
/// ConfigMaps in it that are labelled for use (`crate::manifest::labelled_for_use`).
#[derive(Debug, Clone, Default)]
pub struct LocalDirectory {
    pub hostroles: Vec<HostRole>,
    pub labelled: BTreeSet<(ObjectKind, String)>,
}

impl Directory for LocalDirectory {
    fn each(&self) -> Box<dyn Iterator<Item = (&str, &HostRole)> + '_> {
        Box::new(self.hostroles.iter().map(|hr| ("", hr)))
    }

    fn usable(&self, kind: ObjectKind, _namespace: &str, name: &str) -> bool {
        self.labelled.contains(&(kind, name.to_string()))
    }
}

/// A file or directory a role needs, by meaning; each environment puts it at its own path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The web role's site.
    Site,
    /// The file role's share.
    FileData,
    /// The mail role's Maildirs.
    MailData,
    /// The peer role's shared folder.
    ShareData,
    /// A role's users file (`<dir>/users`).
    Users(&'static str),
    /// The mail role's certificate and key.
    Tls(&'static str),
    /// An index's network secrets, one file per network.
    Networks,
    /// A peer's network secret (`<dir>/secret`).
    Network,
    /// A client's credentials (`<dir>/{username,password}`).
    ClientCredentials(String),
    /// The mail relay's credentials (`<dir>/{username,password}`).
    RelayCredentials,
    /// The CAs the mail relay's certificate chains to (`<dir>/ca.crt`).
    RelayCa,
    /// The CA of a role's certificate (`<dir>/ca.crt`, when its Secret has one): for `peer`,
    /// the network's CA.
    Ca(&'static str),
    /// The radio role's source password (`<dir>/password`).
    SourcePassword,
    /// The audio files of the radio mount at this position in `mounts`.
    Playlist(usize),
    /// The print role's volume: the job queue (`queue/`) and, by default, the printouts
    /// (`printouts/`).
    PrintData,
}

impl Location {
    /// The path in a pod, where the operator mounts it.
    pub fn cluster_path(&self) -> PathBuf {
        match self {
            Location::Site => PathBuf::from("/srv/hostrole/site"),
            Location::Playlist(_) => Path::new("/srv/hostrole").join(self.relative()),
            Location::FileData | Location::MailData | Location::ShareData | Location::PrintData => {
                Path::new("/var/lib/hostrole").join(self.relative())
            }
            _ => Path::new(CONFIG_DIR).join(self.relative()),
        }
    }

    /// The path under a standalone agent's data directory.
    pub fn relative(&self) -> PathBuf {
        match self {
            Location::Site => "site".into(),
            Location::FileData => "file".into(),
            Location::MailData => "mail".into(),
            Location::ShareData => "share".into(),
            Location::Users(role) => Path::new("users").join(role),
            Location::Tls(role) => Path::new("tls").join(role),
            Location::Networks => "networks".into(),
            Location::Network => "network".into(),
            Location::ClientCredentials(name) => Path::new("clients").join(name),
            Location::RelayCredentials => Path::new("relay").join("credentials"),
            Location::RelayCa => Path::new("relay").join("ca"),
            Location::Ca(role) => Path::new("tls").join(format!("{role}-ca")),
            Location::SourcePassword => Path::new("radio").join("source"),
            Location::Playlist(i) => Path::new("radio").join(format!("playlist-{i}")),
            Location::PrintData => "print".into(),
        }
    }
}

/// What a HostRole's agent runs and needs.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPlan {
    pub config: AgentConfig,
    /// One plan per role, in the order web, file, mail, chat, radio, print, index, peer,
    /// clients.
    pub roles: Vec<RolePlan>,
    /// References that cannot be honoured yet; the affected clients are left out of `config`.
    /// A cluster shows them in status (they recover when the other HostRole appears); a
    /// standalone agent refuses to start.
    pub problems: Vec<Problem>,
}

impl HostPlan {
    /// Every mount of every role, in role order.
    pub fn mounts(&self) -> impl Iterator<Item = &Mount> {
        self.roles.iter().flat_map(|r| r.mounts.iter())
    }

    /// Every port the host serves to others, in role order (the peer UI is not one: it is for
    /// the host's own user).
    pub fn ports(&self) -> impl Iterator<Item = (&'static str, u16)> + '_ {
        self.roles.iter().flat_map(|r| r.ports.iter().copied())
    }
}

/// One role's part of a host.
#[derive(Debug, Clone, PartialEq)]
pub struct RolePlan {
    /// `web`, `file`, `mail`, `chat`, `radio`, `print`, `index`, `peer` or `clients`.
    pub role: &'static str,
    /// Ports served to other hosts: (name, port).
    pub ports: Vec<(&'static str, u16)>,
    pub mounts: Vec<Mount>,
}

/// A file or directory a role needs, where it is, and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// Name of the pod volume (and of the claim template for data with `storage`).
    pub volume: String,
    pub location: Location,
    /// Where it is in this environment (the agent configuration names paths under it).
    pub path: PathBuf,
    pub source: Source,
}

/// Where a mount's content comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Data the role keeps: a claim of `storage` per host when given, else scratch space that
    /// lives as long as the pod, of at most `scratch` (an emptyDir's `sizeLimit`; standalone, a
    /// directory of the data directory, not limited).
    Data {
        storage: Option<Quantity>,
        scratch: Quantity,
    },
    /// Keys of a Secret, each as a file (`(key, file name)`), readable by the agent only.
    Secret {
        name: String,
        items: Vec<(&'static str, String)>,
    },
    /// One key of a Secret as a file of the same name, when the Secret has that key (a
    /// `kubernetes.io/tls` Secret's `ca.crt`); nothing otherwise.
    OptionalKey { name: String, key: &'static str },
    /// A peer network's secret (`secret`), in the Secret the operator keeps for the network;
    /// standalone, from that Secret in the manifest, else generated once and kept.
    NetworkSecret { network: String },
    /// The secret of each network whose peers use this index, one file per network, each
    /// optional (a network whose Secret does not exist yet is answered 401 until it does).
    NetworkSecrets { networks: BTreeSet<String> },
    /// A ConfigMap of the namespace whose keys are the site's files (clusters only).
    ConfigMap { name: String },
    /// Files written in the manifest (or the generated page): stored in the host's ConfigMap,
    /// written to the data directory standalone.
    InlineSite { files: Vec<SiteFile> },
}

/// A reference that cannot be honoured (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field that holds the reference, e.g. `spec.clients[1].server`.
    pub field: String,
    pub reason: ProblemReason,
    pub message: String,
}

/// Why a reference cannot be honoured: the reason of the Degraded and ClientsHealthy
/// conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemReason {
    ServerNotFound,
    /// A server in another namespace that does not exist or does not allow clients from this
    /// one (the two are told apart nowhere: `spec.allowClientsFrom`).
    Forbidden,
    RoleMissing,
    InvalidTarget,
    IndexNotFound,
    IndexRoleMissing,
    /// A Secret or ConfigMap that does not exist or is not labelled `hostrole.dev/use: "true"`:
    /// not mounted.
    ReferenceNotAllowed,
    /// A host's volume is smaller than `storage` asks and the API server refused to expand it
    /// (its StorageClass does not allow expansion, or the claim is not bound yet).
    StorageNotExpanded,
    /// A `tls.issuerRef` whose certificate cert-manager has not issued (yet).
    CertificatePending,
    /// A `tls.issuerRef` on a cluster without cert-manager's API.
    CertManagerMissing,
    /// `spec.expose.gateway` on a cluster without the Gateway API.
    GatewayAPIMissing,
    /// Peers of one network of which some have `spec.peer.tls` and some do not.
    PeerTlsMismatch,
}

impl ProblemReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemReason::ServerNotFound => "ServerNotFound",
            ProblemReason::Forbidden => "Forbidden",
            ProblemReason::RoleMissing => "RoleMissing",
            ProblemReason::InvalidTarget => "InvalidTarget",
            ProblemReason::IndexNotFound => "IndexNotFound",
            ProblemReason::IndexRoleMissing => "IndexRoleMissing",
            ProblemReason::ReferenceNotAllowed => "ReferenceNotAllowed",
            ProblemReason::StorageNotExpanded => "StorageNotExpanded",
            ProblemReason::CertificatePending => "CertificatePending",
            ProblemReason::CertManagerMissing => "CertManagerMissing",
            ProblemReason::GatewayAPIMissing => "GatewayAPIMissing",
            ProblemReason::PeerTlsMismatch => "PeerTlsMismatch",
        }
    }
}

/// Why a HostRole cannot be rendered at all in this environment.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    /// A field only the other environment can honour.
    #[error("{field} {why}; {instead}")]
    Unsupported {
        field: &'static str,
        why: &'static str,
        instead: &'static str,
    },
    /// A size the agent cannot read.
    #[error("{field}: {value:?} is not a size; write it like 1Gi, 500Mi or 1048576")]
    Size { field: &'static str, value: String },
    /// A duration the agent cannot read.
    #[error("{field}: {value:?} is not a duration; write it like 500ms, 30s, 5m or 1h30m")]
    Duration { field: String, value: String },
    /// A value that contradicts another field.
    #[error("{field}: {why}; {fix}")]
    Inconsistent {
        field: &'static str,
        why: String,
        fix: &'static str,
    },
    /// The HostRole has no name (never true of an object read from the API).
    #[error("the HostRole has no {0}")]
    Missing(&'static str),
}

impl RenderError {
    /// A CamelCase reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            RenderError::Unsupported { .. } => "UnsupportedInCluster",
            RenderError::Size { .. } | RenderError::Inconsistent { .. } => "InvalidSize",
            RenderError::Duration { .. } => "InvalidDuration",
            RenderError::Missing(_) => "InvalidObject",
        }
    }
}

/// Renders what the agent of `hr` runs in `env`; `others` holds the HostRoles it may name.
pub fn render(
    hr: &HostRole,
    env: Environment<'_>,
    others: &dyn Directory,
) -> Result<HostPlan, RenderError> {
    let name = hr
        .metadata
        .name
        .as_deref()
        .ok_or(RenderError::Missing("name"))?;
    let r = Renderer {
        hr,
        name,
        env,
        others,
    };
    let mut roles = Vec::new();
    let mut problems = Vec::new();
    let web = r.web(&mut roles, &mut problems)?;
    let file = r.file(&mut roles, &mut problems)?;
    let mail = r.mail(&mut roles, &mut problems)?;
    let chat = r.chat(&mut roles, &mut problems)?;
    let radio = r.radio(&mut roles, &mut problems)?;
    let print = r.print(&mut roles, &mut problems)?;
    let index = r.index(&mut roles, &mut problems)?;
    let mut peer = r.peer(&mut roles, &mut problems)?;
    // The host's printer is its network's too (the NetworkPolicy admits the network's peers
    // to its port): offered as the print role runs it.
    if let (Some(peer), Some(print)) = (peer.as_mut(), print.as_ref()) {
        peer.printer = Some(OfferedPrinter {
            name: print.name.clone(),
            port: print.port,
            tls: print.tls.is_some(),
        });
    }
    let clients = r.clients(&mut roles, &mut problems)?;
    let (namespace, bind, admin_port, shutdown_grace_seconds) = match env {
        Environment::Cluster { namespace } => (
            Some(namespace.to_string()),
            Ipv4Addr::UNSPECIFIED.into(),
            ADMIN_PORT as u16,
            20,
        ),
        Environment::Local(local) => (None, local.bind, local.admin_port, 10),
    };
    Ok(HostPlan {
        config: AgentConfig {
            host_role: name.to_string(),
            namespace,
            bind,
            admin_port,
            shutdown_grace_seconds,
            http: None,
            web,
            file,
            mail,
            chat,
            radio,
            print,
            index,
            peer,
            clients,
        },
        roles,
        problems,
    })
}

/// The inline files of a web site, or the generated page when the manifest names no site.
/// `None` when the site comes from a ConfigMap or a path, or the host has no web role.
pub fn inline_site_files(hr: &HostRole) -> Option<Vec<SiteFile>> {
    let web = hr.spec.servers.web.as_ref()?;
    let name = hr.metadata.name.as_deref().unwrap_or("host");
    match &web.site {
        Some(site) => site.files.clone(),
        None => Some(vec![SiteFile {
            path: "index.html".into(),
            content: default_page(name),
        }]),
    }
}

/// What a web role serves while its site's ConfigMap may not be used (nothing of why: the
/// reason is in the HostRole's status, for its owner).
fn unpublished_page(name: &str) -> SiteFile {
    SiteFile {
        path: "index.html".into(),
        content: format!(
            "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{name}</title></head>\n\
             <body>\n<h1>{name}</h1>\n<p>This site is not published yet.</p>\n</body>\n</html>\n"
        ),
    }
}

fn default_page(name: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{name}</title></head>\n\
         <body>\n<h1>{name}</h1>\n<p>This host is served by hostrole. Set <code>spec.servers.web.site</code> \
         to publish your own pages.</p>\n</body>\n</html>\n"
    )
}

struct Renderer<'a> {
    hr: &'a HostRole,
    name: &'a str,
    env: Environment<'a>,
    others: &'a dyn Directory,
}

impl Renderer<'_> {
    /// Where `location` is in this environment.
    fn path(&self, location: &Location) -> PathBuf {
        match self.env {
            Environment::Cluster { .. } => location.cluster_path(),
            Environment::Local(local) => local.data_dir.join(location.relative()),
        }
    }

    fn mount(&self, volume: &str, location: Location, source: Source) -> Mount {
        Mount {
            volume: volume.to_string(),
            path: self.path(&location),
            location,
            source,
        }
    }

    fn local(&self) -> Option<&Local> {
        match self.env {
            Environment::Local(local) => Some(local),
            Environment::Cluster { .. } => None,
        }
    }

    /// Whether the `kind` object `name`, named by `field`, may be used (item 4 of
    /// docs/security.md); if not, the problem, saying what follows (`meanwhile`) and the fix.
    fn may_use(
        &self,
        field: &str,
        kind: ObjectKind,
        name: &str,
        meanwhile: &str,
        problems: &mut Vec<Problem>,
    ) -> bool {
        if self.others.usable(kind, self.namespace(), name) {
            return true;
        }
        let what = kind.as_str();
        let message = match self.env {
            Environment::Cluster { .. } => format!(
                "{field}: {what} {name} does not exist or is not labelled {USE_LABEL}={USE_LABEL_VALUE}, so it is not used ({meanwhile}); its owner lets HostRoles of this namespace use it with: kubectl label {} {name} {USE_LABEL}={USE_LABEL_VALUE}",
                kind.kubectl()
            ),
            Environment::Local(_) => format!(
                "{field}: the manifest holds no {what} {name} labelled {USE_LABEL}: \"{USE_LABEL_VALUE}\"; add the label under its metadata.labels (a cluster asks for it too)"
            ),
        };
        problems.push(Problem {
            field: field.to_string(),
            reason: ProblemReason::ReferenceNotAllowed,
            message,
        });
        false
    }

    fn max_upload_bytes(&self, file: &FileServer) -> Result<u64, RenderError> {
        Ok(size(
            "spec.servers.file.maxUploadSize",
            file.max_upload_size.as_ref(),
        )?
        .unwrap_or(DEFAULT_MAX_UPLOAD))
    }

    /// The share's quota, which uploads and printouts (`output.fileShare`) count against: its
    /// `storage`. Without one, in a cluster the share is scratch space the kubelet evicts the
    /// pod past, so the quota is that space less room for one upload being staged; on a
    /// machine there is none.
    fn file_quota(&self, file: &FileServer) -> Result<Option<u64>, RenderError> {
        let quota = size("spec.servers.file.storage", file.storage.as_ref())?;
        Ok(match (quota, self.env) {
            (Some(quota), _) => Some(quota),
            (None, Environment::Cluster { .. }) => {
                let upload = self.max_upload_bytes(file)?;
                Some(scratch_bytes(upload).saturating_sub(upload))
            }
            (None, Environment::Local(_)) => None,
        })
    }

    /// This agent's own port (the standalone port offset applies).
    fn own_port(&self, port: i32) -> u16 {
        let offset = self.local().map_or(0, |l| l.port_offset);
        (port as u16).saturating_add(offset)
    }

    /// Where another HostRole's own port (index, printer, peer: those [`Self::own_port`] moves)
    /// really is: moved by that host's offset when it runs on this machine in the same `up`.
    fn others_own_port(&self, name: &str, port: i32) -> u16 {
        let offset = self
            .local()
            .and_then(|l| l.offsets.get(name))
            .copied()
            .unwrap_or(0);
        (port as u16).saturating_add(offset)
    }

    /// A path the manifest gives on the machine: standalone only.
    fn machine_path(
        &self,
        field: &'static str,
        path: &str,
        instead: &'static str,
    ) -> Result<PathBuf, RenderError> {
        match self.local() {
            Some(local) => Ok(local.manifest_dir.join(path)),
            None => Err(RenderError::Unsupported {
                field,
                why: "is for standalone agents only (a pod cannot see the machine's files)",
                instead,
            }),
        }
    }

    fn web(
        &self,
        roles: &mut Vec<RolePlan>,
        problems: &mut Vec<Problem>,
    ) -> Result<Option<WebRoleConfig>, RenderError> {
        let Some(web) = &self.hr.spec.servers.web else {
            return Ok(None);
        };
        let Some(tls) = self.tls("web", web.tls.as_ref(), problems)? else {
            return Ok(None);
        };
        let site = web.site.as_ref();
        let mut mounts = Vec::new();
        let root = if let Some(config_map) = site.and_then(|s| s.config_map.clone()) {
            if self.local().is_some() {
                return Err(RenderError::Unsupported {
                    field: "spec.servers.web.site.configMap",
                    why: "needs a cluster (it names an object in the cluster)",
                    instead: "for a standalone host use site.path or site.files",
                });
            }
            let source = if self.may_use(
                "spec.servers.web.site.configMap",
                ObjectKind::ConfigMap,
                &config_map,
                "the web role serves a placeholder page until then",
                problems,
            ) {
                Source::ConfigMap { name: config_map }
            } else {
                Source::InlineSite {
                    files: vec![unpublished_page(self.name)],
                }
            };
            mounts.push(self.mount("site", Location::Site, source));
            self.path(&Location::Site)
        } else if let Some(path) = site.and_then(|s| s.path.as_deref()) {
            self.machine_path(
                "spec.servers.web.site.path",
                path,
                "in a cluster use site.configMap or site.files",
            )?
        } else {
            let files = inline_site_files(self.hr).unwrap_or_default();
            mounts.push(self.mount("site", Location::Site, Source::InlineSite { files }));
            self.path(&Location::Site)
        };
        let port = web.port as u16;
        let tls = tls.map(|t| self.tls_mount(t, &mut mounts));
        let redirect_port = web
            .http_redirect_port
            .filter(|_| tls.is_some())
            .map(|p| p as u16);
        let mut ports = vec![("web", port)];
        ports.extend(redirect_port.map(|p| ("web-redirect", p)));
        roles.push(RolePlan {
            role: "web",
            ports,
            mounts,
        });
        Ok(Some(WebRoleConfig {
            port,
            root,
            max_connections: web
                .max_connections
                .map_or(DEFAULT_MAX_CONNECTIONS, |m| m as usize),
            tls,
            redirect_port,
        }))
    }

    /// A role's users file: from a Secret (mounted, or written from the manifest) or a file on
    /// the machine (standalone only).
    fn users(
        &self,
        role: &'static str,
        users: Option<&UsersRef>,
        mounts: &mut Vec<Mount>,
        problems: &mut Vec<Problem>,
    ) -> Result<Option<PathBuf>, RenderError> {
        let Some(users) = users else { return Ok(None) };
        if let Some(secret) = &users.secret {
            if !self.may_use(
                &format!("spec.servers.{role}.users.secret"),
                ObjectKind::Secret,
                secret,
                &format!("the {role} role has no accounts until then"),
                problems,
            ) {
                return Ok(None);
            }
            let location = Location::Users(role);
            let path = self.path(&location).join(USERS_KEY);
            mounts.push(self.mount(
                &format!("{role}-users"),
                location,
                Source::Secret {
                    name: secret.clone(),
                    items: vec![(USERS_KEY, USERS_KEY.to_string())],
                },
            ));
            return Ok(Some(path));
        }
        match &users.file {
            Some(file) => {
                let field = match role {
                    "file" => "spec.servers.file.users.file",
                    "chat" => "spec.servers.chat.users.file",
                    "print" => "spec.servers.print.users.file",
                    _ => "spec.servers.mail.users.file",
                };
                self.machine_path(field, file, "in a cluster use users.secret")
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    /// A role's certificate: `Some(None)` without TLS, `Some(Some((role, secret)))` with a
    /// usable Secret (named, or issued by cert-manager for `issuerRef`), `None` when the Secret
    /// may not be used or is not issued yet — the role is then not served at all (plain text
    /// instead would send passwords and pages in the clear).
    #[allow(clippy::type_complexity)]
    fn tls(
        &self,
        role: &'static str,
        tls: Option<&Tls>,
        problems: &mut Vec<Problem>,
    ) -> Result<Option<Option<(&'static str, String)>>, RenderError> {
        let Some(tls) = tls else {
            return Ok(Some(None));
        };
        let meanwhile = format!(
            "the {role} role is not served until then: without its certificate it would speak in the clear"
        );
        let field = tls_field(role);
        if let Some(secret) = &tls.secret {
            let usable = self.may_use(
                &format!("{field}.secret"),
                ObjectKind::Secret,
                secret,
                &meanwhile,
                problems,
            );
            return Ok(usable.then(|| Some((role, secret.clone()))));
        }
        if self.local().is_some() {
            return Err(RenderError::Unsupported {
                field: tls_issuer_ref_field(role),
                why: "needs a cluster with cert-manager",
                instead: "for a standalone host use tls.secret with a kubernetes.io/tls Secret in the manifest",
            });
        }
        let secret = tls.secret_name(self.name, role);
        if self
            .others
            .usable(ObjectKind::Secret, self.namespace(), &secret)
        {
            return Ok(Some(Some((role, secret))));
        }
        let certificate = certificate_name(self.name, role);
        problems.push(Problem {
            field: format!("{field}.issuerRef"),
            reason: ProblemReason::CertificatePending,
            message: format!(
                "{field}.issuerRef: waiting for cert-manager to issue Certificate {certificate} into Secret {secret} ({meanwhile}); see kubectl describe certificate {certificate}"
            ),
        });
        Ok(None)
    }

    /// Mounts a role's `kubernetes.io/tls` Secret; the files the agent reads.
    fn tls_mount(
        &self,
        (role, secret): (&'static str, String),
        mounts: &mut Vec<Mount>,
    ) -> TlsFiles {
        let location = Location::Tls(role);
        let dir = self.path(&location);
        mounts.push(self.mount(
            &format!("{role}-tls"),
            location,
            Source::Secret {
                name: secret,
                items: vec![
                    (TLS_CERT_KEY, TLS_CERT_KEY.to_string()),
                    (TLS_KEY_KEY, TLS_KEY_KEY.to_string()),
                ],
            },
        ));
        TlsFiles {
            cert: dir.join(TLS_CERT_KEY),
            key: dir.join(TLS_KEY_KEY),
        }
    }

    fn file(
        &self,
        roles: &mut Vec<RolePlan>,
        problems: &mut Vec<Problem>,
    ) -> Result<Option<FileRoleConfig>, RenderError> {
        let Some(file) = &self.hr.spec.servers.file else {
            return Ok(None);
        };
        let Some(tls) = self.tls("file", file.tls.as_ref(), problems)? else {
            return Ok(None);
        };
        let max_upload_bytes = self.max_upload_bytes(file)?;
        let mut mounts = vec![self.mount(
            FILE_VOLUME,
            Location::FileData,
            Source::Data {
                storage: file.storage.clone(),
                scratch: scratch(max_upload_bytes),
            },
        )];
        let users_file = self.users("file", file.users.as_ref(), &mut mounts, problems)?;
        let tls = tls.map(|t| self.tls_mount(t, &mut mounts));
        let config = FileRoleConfig {
            tls,
            port: file.port as u16,
            root: self.path(&Location::FileData),
            users_file,
            anonymous: anonymous(file.anonymous),
            quota_bytes: self.file_quota(file)?,
            max_upload_bytes,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        };
        roles.push(RolePlan {
            role: "file",
            ports: vec![("webdav", config.port)],
            mounts,
        });
        Ok(Some(config))
    }

    fn mail(
        &self,
        roles: &mut Vec<RolePlan>,
        problems: &mut Vec<Problem>,
    ) -> Result<Option<MailRoleConfig>, RenderError> {
        let Some(mail) = &self.hr.spec.servers.mail else {
            return Ok(None);
        };
        let max_message_bytes = size(
            "spec.servers.mail.maxMessageSize",
            mail.max_message_size.as_ref(),
        )?
        .unwrap_or(DEFAULT_MAX_MESSAGE);
        // Checked although only the claim uses it: a size the agent could not read is an error
        // in both worlds.
        let storage = size("spec.servers.mail.storage", mail.storage.as_ref())?;
        let quota_field = "spec.servers.mail.mailboxQuota";
        let mailbox_quota_bytes = match size(quota_field, mail.mailbox_quota.as_ref())? {
            Some(q) if q < max_message_bytes => {
                return Err(RenderError::Inconsistent {
                    field: quota_field,
                    why: format!(
                        "{q} bytes is less than the largest message ({max_message_bytes} bytes), so such a message could never be delivered"
                    ),
                    fix: "raise mailboxQuota or lower maxMessageSize",
                });
            }
            Some(q) if storage.is_some_and(|s| q > s) => {
                return Err(RenderError::Inconsistent {
                    field: quota_field,
                    why: format!("{q} bytes is more than the whole mail volume (storage)"),
                    fix: "lower mailboxQuota to at most storage, or raise storage",
                });
            }
            Some(q) => q,
            None => storage.map_or(DEFAULT_MAILBOX_QUOTA, |s| s.min(DEFAULT_MAILBOX_QUOTA)),
        };
        let Some(tls) = self.tls("mail", mail.tls.as_ref(), problems)? else {
            return Ok(None);
        };
        let mut mounts = vec![self.mount(
            MAIL_VOLUME,
            Location::MailData,
            Source::Data {
                storage: mail.storage.clone(),
                scratch: scratch(max_message_bytes),
            },
        )];
        let users_file = self.users("mail", mail.users.as_ref(), &mut mounts, problems)?;
        let tls = tls.map(|m| self.tls_mount(m, &mut mounts));
        let outbound = self.outbound(mail, &mut mounts, problems)?;
        // RFC 8314's implicit-TLS ports need the certificate.
        let implicit = |port: i32| tls.is_some().then_some(port as u16);
        // Passwords in the clear only when the manifest says so, or on a standalone host without
        // a certificate whose listeners are on loopback (nobody else can read them there). With
        // a certificate, clients log in over TLS.
        let allow_plaintext_auth = mail
            .allow_plaintext_auth
            .unwrap_or_else(|| tls.is_none() && self.local().is_some_and(|l| l.bind.is_loopback()));
        let config = MailRoleConfig {
            hostname: self.name.to_string(),
            smtp_port: mail.smtp_port as u16,
            submission_port: mail.submission_port as u16,
            imap_port: mail.imap_port as u16,
            pop3_port: mail.pop3_port as u16,
            domains: mail.domains.clone(),
            root: self.path(&Location::MailData),
            users_file,
            max_message_bytes,
            mailbox_quota_bytes: Some(mailbox_quota_bytes),
            imaps_port: implicit(mail.imaps_port),
            pop3s_port: implicit(mail.pop3s_port),
            submissions_port: implicit(mail.submissions_port),
            allow_plaintext_auth,
            tls,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            postmaster: mail.postmaster.clone(),
            outbound: Some(outbound),
        };
        let mut ports = vec![
            ("smtp", config.smtp_port),
            ("submission", config.submission_port),
            ("imap", config.imap_port),
            ("pop3", config.pop3_port),
        ];
        ports.extend(
            [
                ("imaps", config.imaps_port),
                ("pop3s", config.pop3s_port),
                ("submissions", config.submissions_port),
            ]
            .into_iter()
            .filter_map(|(name, port)| Some((name, port?))),
        );
        roles.push(RolePlan {
            role: "mail",
            ports,
            mounts,
        });
        Ok(Some(config))
    }

    /// Where the mail role sends mail for other domains: a route to every domain another
    /// HostRole of its own namespace serves (standalone, of the manifest), the relay, and the
    /// queue's timings. A domain two
    /// HostRoles claim goes to the first by namespace and name; the host's own domains stay
    /// local.
    fn outbound(
        &self,
        mail: &MailServer,
        mounts: &mut Vec<Mount>,
        problems: &mut Vec<Problem>,
    ) -> Result<OutboundConfig, RenderError> {
        let own_ns = self.namespace();
        let own_domains: BTreeSet<String> = mail.domains.iter().map(|d| mail_domain(d)).collect();
        let mut servers: Vec<(&str, &str, &HostRole)> = self
            .others
            .each()
            .filter_map(|(ns, hr)| Some((ns, hr.metadata.name.as_deref()?, hr)))
            .filter(|(ns, name, _)| !(*ns == own_ns && *name == self.name))
            .filter(|(_, _, hr)| hr.spec.servers.mail.is_some())
            // Only the own namespace: a domain is a claim, and a HostRole of another namespace
            // (even one that admits everyone) must not draw this host's mail for a domain it
            // says it serves. Their mail goes by MX or the relay, as anyone else's.
            .filter(|(ns, _, _)| *ns == own_ns)
            .collect();
        servers.sort_by_key(|(ns, name, _)| (*ns, *name));
        let mut routes: BTreeMap<String, MailRoute> = BTreeMap::new();
        for (ns, name, hr) in servers {
            let Some(theirs) = &hr.spec.servers.mail else {
                continue;
            };
            for domain in theirs.domains.iter().map(|d| mail_domain(d)) {
                if own_domains.contains(&domain) || routes.contains_key(&domain) {
                    continue;
                }
                routes.insert(
                    domain.clone(),
                    MailRoute {
                        domain,
                        host: self.host_of(ns, name),
                        port: theirs.smtp_port as u16,
                    },
                );
            }
        }
        let settings = mail.outbound.clone().unwrap_or_default();
        let seconds = |field: &'static str, text: &Option<String>, default: u64| match text {
            None => Ok(default),
            Some(value) => crate::duration::parse(value)
                .map(|d| d.as_secs().max(1))
                .ok_or_else(|| RenderError::Duration {
                    field: field.to_string(),
                    value: value.clone(),
                }),
        };
        let retry_seconds = seconds(
            "spec.servers.mail.outbound.retryInterval",
            &settings.retry_interval,
            DEFAULT_RETRY_SECONDS,
        )?;
        let max_retry_seconds = seconds(
            "spec.servers.mail.outbound.maxRetryInterval",
            &settings.max_retry_interval,
            DEFAULT_MAX_RETRY_SECONDS.max(retry_seconds),
        )?;
        if max_retry_seconds < retry_seconds {
            return Err(RenderError::Inconsistent {
                field: "spec.servers.mail.outbound.maxRetryInterval",
                why: format!(
                    "{max_retry_seconds}s is shorter than the first retry ({retry_seconds}s)"
                ),
                fix: "raise maxRetryInterval to at least retryInterval",
            });
        }
        let lifetime_seconds = seconds(
            "spec.servers.mail.outbound.queueLifetime",
            &settings.queue_lifetime,
            DEFAULT_QUEUE_LIFETIME_SECONDS,
        )?;
        let relay = match &settings.relay {
            Some(relay) => self.relay(relay, mounts, problems),
            None => None,
        };
        Ok(OutboundConfig {
            routes: routes.into_values().collect(),
            relay,
            retry_seconds,
            max_retry_seconds,
            lifetime_seconds,
        })
    }

    /// The relay as the agent reaches it, with its Secrets mounted. `None` (and a problem) when
    /// one of them may not be used: the host then sends only to the cluster's own domains and
    /// MX hosts rather than to the relay without its login.
    fn relay(
        &self,
        relay: &crate::hostrole::MailRelay,
        mounts: &mut Vec<Mount>,
        problems: &mut Vec<Problem>,
    ) -> Option<MailRelayConfig> {
        use crate::hostrole::RelayTls as Tls;
        let tls = match relay.tls.unwrap_or(Tls::StartTLS) {
            Tls::StartTLS => RelayTlsConfig::StartTls,
            Tls::TLS => RelayTlsConfig::Tls,
            Tls::None => RelayTlsConfig::None,
        };
        let port = relay.effective_port() as u16;
        let meanwhile = "mail for other domains waits in the queue until then";
        let mut ok = true;
        let mut mount =
            |field: &str, secret: &str, volume: &str, location: Location, keys: &[&'static str]| {
                let usable = self.may_use(field, ObjectKind::Secret, secret, meanwhile, problems);
                ok &= usable;
                usable.then(|| self.mount_secret(volume, location, secret, keys, mounts))
            };
        let credentials_dir = relay.credentials.as_ref().and_then(|c| {
            mount(
                "spec.servers.mail.outbound.relay.credentials.secret",
                &c.secret,
                "mail-relay-credentials",
                Location::RelayCredentials,
                &LOGIN_KEYS,
            )
        });
        let ca_file = relay.ca_secret.as_ref().and_then(|secret| {
            mount(
                "spec.servers.mail.outbound.relay.caSecret",
                secret,
                "mail-relay-ca",
                Location::RelayCa,
                &[CA_KEY],
            )
            .map(|dir| dir.join(CA_KEY))
        });
        ok.then(|| MailRelayConfig {
            host: relay.host.clone(),
            port,
            tls,
            credentials_dir,
            ca_file,
        })
    }

    /// Mounts the keys `keys` of the Secret `name` at `location` (volume `volume`); its
    /// directory.
    fn mount_secret(
        &self,
        volume: &str,
        location: Location,
        name: &str,
        keys: &[&'static str],
        mounts: &mut Vec<Mount>,
    ) -> PathBuf {
        let dir = self.path(&location);
        mounts.push(self.mount(
            volume,
            location,
            Source::Secret {
                name: name.to_string(),
                items: keys.iter().map(|k| (*k, k.to_string())).collect(),
            },
        ));
        dir
    }

    /// The namespace references are relative to ("" standalone: one manifest, one machine).
    fn namespace(&self) -> &str {
        match self.env {
            Environment::Cluster { namespace } => namespace,
            Environment::Local(_) => "",
        }
    }

    /// The networks whose peers name this HostRole as their index.
    fn networks_using_me(&self) -> BTreeSet<String> {
        let namespace = self.namespace();
        self.others
            .each()
            .filter(|(ns, _)| *ns == namespace)
            .filter_map(|(_, hr)| hr.spec.peer.as_ref())
            .filter(|p| p.index.as_deref() == Some(self.name))
            .map(|p| p.network.clone())
            .collect()
    }

    fn chat(
        &self,
        roles: &mut Vec<RolePlan>,
        problems: &mut Vec<Problem>,
    ) -> Result<Option<ChatRoleConfig>, RenderError> {
        let Some(chat) = self.hr.spec.servers.chat.as_ref() else {
            return Ok(None);
        };
        let Some(tls) = self.tls("chat", chat.tls.as_ref(), problems)? else {
            return Ok(None);
        };
        let mut mounts = Vec::new();
        let users_file = self.users("chat", chat.users.as_ref(), &mut mounts, problems)?;
        let tls = tls.map(|m| self.tls_mount(m, &mut mounts));
        // As for mail: passwords in the clear only when the manifest says so, or on a
        // standalone host without a certificate listening on loopback.
        let allow_plaintext_auth = chat
            .allow_plaintext_auth
            .unwrap_or_else(|| tls.is_none() && self.local().is_some_and(|l| l.bind.is_loopback()));
        let config = ChatRoleConfig {
            server_name: self.name.to_string(),
            network: chat
                .network
                .clone()
                .unwrap_or_else(|| self.name.to_string()),
            port: chat.port as u16,
            tls_port: tls.is_some().then_some(chat.tls_port as u16),
            tls,
            users_file,
            require_login: chat.require_login.unwrap_or(false),
            allow_plaintext_auth,
            max_connections: chat
                .max_users
                .map_or(DEFAULT_MAX_CONNECTIONS, |m| m as usize),
            max_channels: chat
                .max_channels
                .map_or(DEFAULT_MAX_CHANNELS, |m| m as usize),
            max_channels_per_client: chat
                .max_channels_per_user
                .map_or(DEFAULT_MAX_CHANNELS_PER_USER, |m| m as usize),
            nick_length: chat.nick_length.map_or(DEFAULT_NICK_LENGTH, |m| m as usize),
            motd: chat.motd.clone(),
        };
        let mut ports = vec![("irc", config.port)];
        ports.extend(config.tls_port.map(|p| ("ircs", p)));
        roles.push(RolePlan {
            role: "chat",
            ports,
            mounts,
        });
        Ok(Some(config))
    }

    fn radio(
        &self,
        roles: &mut Vec<RolePlan>,
        problems: &mut Vec<Problem>,
    ) -> Result<Option<RadioRoleConfig>, RenderError> {
        let Some(radio) = self.hr.spec.servers.radio.as_ref() else {
            return Ok(None);
        };
        let Some(tls) = self.tls("radio", radio.tls.as_ref(), problems)? else {
            return Ok(None);
        };
        let mut mounts = Vec::new();
        let tls = tls.map(|m| self.tls_mount(m, &mut mounts));
        let source_password_file = match &radio.source_password {
            Some(RadioPassword {
                secret: Some(secret),
                ..
            }) => self
                .may_use(
                    "spec.servers.radio.sourcePassword.secret",
                    ObjectKind::Secret,
                    secret,
                    "live mounts take no source until then",
                    problems,
                )
                .then(|| {
                    let location = Location::SourcePassword;
                    let path = self.path(&location).join(SOURCE_PASSWORD_KEY);
                    mounts.push(self.mount(
                        "radio-source",
                        location,
                        Source::Secret {
                            name: secret.clone(),
                            items: vec![(SOURCE_PASSWORD_KEY, SOURCE_PASSWORD_KEY.to_string())],
                        },
                    ));
                    path
                }),
            Some(RadioPassword {
                file: Some(file), ..
            }) => Some(self.machine_path(
                "spec.servers.radio.sourcePassword.file",
                file,
                "in a cluster use sourcePassword.secret",
            )?),
            _ => None,
        };
        let mut radio_mounts = Vec::new();
        for (i, m) in radio.mounts.iter().enumerate() {
            let playlist_dir = match &m.playlist {
                Some(Playlist {
                    config_map: Some(name),
                    ..
                }) => {
                    // Standalone, the ConfigMap comes from the manifest, as Secrets do.
                    self.may_use(
                        &format!("spec.servers.radio.mounts[{i}].playlist.configMap"),
                        ObjectKind::ConfigMap,
                        name,
                        "the mount plays nothing but live sources until then",
                        problems,
                    )
                    .then(|| {
                        let location = Location::Playlist(i);
                        let path = self.path(&location);
                        mounts.push(self.mount(
                            &format!("radio-playlist-{i}"),
                            location,
                            Source::ConfigMap { name: name.clone() },
                        ));
                        path
                    })
                }
                // A folder of the host's own share (the CRD requires servers.file for it).
                Some(Playlist {
                    file_share: Some(folder),
                    ..
                }) => self
                    .hr
                    .spec
                    .servers
                    .file
                    .is_some()
                    .then(|| self.path(&Location::FileData).join(folder)),
                Some(Playlist {
                    path: Some(path), ..
                }) => Some(self.machine_path(
                    "spec.servers.radio.mounts[].playlist.path",
                    path,
                    "in a cluster use playlist.configMap",
                )?),
                _ => None,
            };
            radio_mounts.push(RadioMountConfig {
                path: m.path.clone(),
                playlist_dir,
                live: m.live.unwrap_or(false),
                max_listeners: m.max_listeners.map(|n| n as usize),
                description: m.description.clone(),
            });
        }
        let config = RadioRoleConfig {
            station: radio
                .station
                .clone()
                .unwrap_or_else(|| self.name.to_string()),
            port: radio.port as u16,
            tls,
            mounts: radio_mounts,
            source_password_file,
            max_listeners: radio
                .max_listeners
                .map_or(DEFAULT_MAX_LISTENERS, |m| m as usize),
        };
        roles.push(RolePlan {
            role: "radio",
            ports: vec![("radio", config.port)],
            mounts,
        });
        Ok(Some(config))
    }

    fn print(
        &self,
        roles: &mut Vec<RolePlan>,
        problems: &mut Vec<Problem>,
    ) -> Result<Option<PrintRoleConfig>, RenderError> {
        let Some(print) = self.hr.spec.servers.print.as_ref() else {
            return Ok(None);
        };
        let Some(tls) = self.tls("print", print.tls.as_ref(), problems)? else {
            return Ok(None);
        };
        let max_job_bytes = size("spec.servers.print.maxJobSize", print.max_job_size.as_ref())?
            .unwrap_or(DEFAULT_MAX_JOB_BYTES);
        let max_jobs = print.max_jobs.map_or(DEFAULT_MAX_JOBS, |n| n as usize);
        // The volume holds at most every kept job's printout and the one being spooled.
        let most_bytes = max_job_bytes.saturating_mul(max_jobs as u64 + 1);
        let data = self.path(&Location::PrintData);
        let mut mounts = vec![self.mount(
            PRINT_VOLUME,
            Location::PrintData,
            Source::Data {
                storage: print.storage.clone(),
                scratch: scratch(most_bytes / 2),
            },
        )];
        let users_file = self.users("print", print.users.as_ref(), &mut mounts, problems)?;
        // Fail closed: a printer meant for its users does not open to everyone while their
        // Secret cannot be used (the problem says why).
        if print.users.is_some() && users_file.is_none() {
            return Ok(None);
        }
        let tls = tls.map(|m| self.tls_mount(m, &mut mounts));
        let output_dir = match &print.output {
            // A folder of the host's own share (the CRD requires servers.file for it).
            Some(PrintOutput {
                file_share: Some(folder),
                ..
            }) if self.hr.spec.servers.file.is_some() => {
                self.path(&Location::FileData).join(folder)
            }
            Some(PrintOutput {
                path: Some(path), ..
            }) => self.machine_path(
                "spec.servers.print.output.path",
                path,
                "in a cluster use output.fileShare, or no output (the print volume)",
            )?,
            _ => data.join("printouts"),
        };
        // Printouts into the share count against its quota, as uploads do.
        let output_quota = match (&print.output, &self.hr.spec.servers.file) {
            (
                Some(PrintOutput {
                    file_share: Some(_),
                    ..
                }),
                Some(file),
            ) => self.file_quota(file)?.map(|quota_bytes| OutputQuota {
                share_root: self.path(&Location::FileData),
                quota_bytes,
            }),
            _ => None,
        };
        let config = PrintRoleConfig {
            name: print.name.clone().unwrap_or_else(|| self.name.to_string()),
            location: print.location.clone(),
            info: print.info.clone(),
            port: self.own_port(print.port),
            tls,
            spool_dir: data.join("queue"),
            output_dir,
            users_file,
            max_job_bytes,
            max_jobs,
            output_quota,
        };
        roles.push(RolePlan {
            role: "print",
            ports: vec![("ipp", config.port)],
            mounts,
        });
        Ok(Some(config))
    }

    fn index(
        &self,
        roles: &mut Vec<RolePlan>,
        problems: &mut Vec<Problem>,
    ) -> Result<Option<IndexRoleConfig>, RenderError> {
        let Some(index) = self.hr.spec.servers.index.as_ref() else {
            return Ok(None);
        };
        let Some(tls) = self.tls("index", index.tls.as_ref(), problems)? else {
            return Ok(None);
        };
        let port = self.own_port(index.port);
        let mut mounts = vec![self.mount(
            "networks",
            Location::Networks,
            Source::NetworkSecrets {
                networks: self.networks_using_me(),
            },
        )];
        let tls = tls.map(|t| self.tls_mount(t, &mut mounts));
        roles.push(RolePlan {
            role: "index",
            ports: vec![("index", port)],
            mounts,
        });
        Ok(Some(IndexRoleConfig {
            port,
            ttl_seconds: index.ttl_seconds(),
            networks_dir: self.path(&Location::Networks),
            tls,
        }))
    }

    /// Mounts the `ca.crt` of Secret `secret` (when it has one) for `role`; the file the agent
    /// reads.
    fn ca_mount(&self, role: &'static str, secret: String, mounts: &mut Vec<Mount>) -> PathBuf {
        let location = Location::Ca(role);
        let file = self.path(&location).join(CA_KEY);
        mounts.push(self.mount(
            &format!("{role}-ca"),
            location,
            Source::OptionalKey {
                name: secret,
                key: CA_KEY,
            },
        ));
        file
    }

    /// How another HostRole's servers are reached from this one: the host name of its
    /// Service, or loopback on one machine.
    fn host_of(&self, namespace: &str, name: &str) -> String {
        match self.env {
            Environment::Cluster { .. } => format!("{name}.{namespace}.svc"),
            Environment::Local(_) => "127.0.0.1".to_string(),
        }
    }

    /// The HostRole a reference names, with its namespace, or the problem.
    fn lookup<'s>(
        &'s self,
        field: &str,
        reference: &'s str,
        not_found: ProblemReason,
    ) -> Result<(&'s str, &'s HostRole), Problem> {
        let (ns, name) = match self.env {
            Environment::Cluster { namespace } => split_ref(namespace, reference),
            // One manifest, one machine: a namespace in the reference is not one here.
            Environment::Local(_) => ("", reference.rsplit('/').next().unwrap_or(reference)),
        };
        let own = self.namespace();
        if ns != own {
            // Another namespace's HostRole, only with its consent; without, it is not there,
            // and the answer says nothing more of it whether it exists or not.
            let own_labels = self.others.namespace_labels(own);
            return self
                .others
                .get(ns, name)
                .filter(|server| access::allows_client(ns, server, own, own_labels))
                .map(|server| (ns, server))
                .ok_or_else(|| Problem {
                    field: field.to_string(),
                    reason: ProblemReason::Forbidden,
                    message: format!(
                        "{field}: HostRole {ns}/{name} does not exist or does not allow clients from namespace {own}; its owner can allow them in its spec.allowClientsFrom (namespaces: [{own}])"
                    ),
                });
        }
        match self.others.get(ns, name) {
            Some(hr) => Ok((ns, hr)),
            None => {
                let names = || {
                    self.others
                        .each()
                        .filter_map(|(_, h)| h.metadata.name.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let message = match (self.env, not_found) {
                    (Environment::Cluster { .. }, ProblemReason::IndexNotFound) => format!(
                        "{field}: no HostRole {ns}/{name}; create it with spec.servers.index, or remove spec.peer.index for a decentralized network"
                    ),
                    (Environment::Cluster { .. }, _) => format!(
                        "{field}: no HostRole {ns}/{name}; create it, or point the client at another server"
                    ),
                    (Environment::Local(_), ProblemReason::IndexNotFound) => format!(
                        "{field}: no HostRole named {name} in the manifest (it holds: {}); standalone, the index must stand in the same manifest with spec.servers.index",
                        names()
                    ),
                    (Environment::Local(_), _) => format!(
                        "{field}: no HostRole named {name} in the manifest (it holds: {}); standalone, a client's server must stand in the same manifest, or use url: instead (e.g. url: http://127.0.0.1:8080/)",
                        names()
                    ),
                };
                Err(Problem {
                    field: field.to_string(),
                    reason: not_found,
                    message,
                })
            }
        }
    }

    /// Peers of one network speak HTTPS to each other, or all HTTP: a member that differs from
    /// this one is a problem to report (the two cannot talk).
    fn same_transport_as_the_network(&self, peer: &crate::PeerSpec, problems: &mut Vec<Problem>) {
        let own = peer.tls.is_some();
        let differing: Vec<&str> = self
            .others
            .each()
            .filter(|(ns, hr)| {
                *ns == self.namespace() && hr.metadata.name.as_deref() != Some(self.name)
            })
            .filter_map(|(_, hr)| {
                let other = hr.spec.peer.as_ref()?;
                (other.network == peer.network && other.tls.is_some() != own)
                    .then_some(hr.metadata.name.as_deref())
                    .flatten()
            })
            .collect();
        if differing.is_empty() {
            return;
        }
        let (mine, theirs) = if own {
            ("HTTPS (spec.peer.tls)", "plain HTTP")
        } else {
            ("plain HTTP", "HTTPS (spec.peer.tls)")
        };
        problems.push(Problem {
            field: "spec.peer.tls".into(),
            reason: ProblemReason::PeerTlsMismatch,
            message: format!(
                "spec.peer.tls: this peer speaks {mine} but {} of network {} speak {theirs}, so they cannot reach each other; give every peer of the network tls, or none",
                differing.join(", "),
                peer.network
            ),
        });
    }

    fn peer(
        &self,
        roles: &mut Vec<RolePlan>,
        problems: &mut Vec<Problem>,
    ) -> Result<Option<PeerRoleConfig>, RenderError> {
        let Some(peer) = &self.hr.spec.peer else {
            return Ok(None);
        };
        let Some(tls) = self.tls("peer", peer.tls.as_ref(), problems)? else {
            return Ok(None);
        };
        self.same_transport_as_the_network(peer, problems);
        // Hybrid: the index, when it exists and serves.
        let index = match peer.index.as_deref() {
            None => None,
            Some(reference) => {
                let field = "spec.peer.index";
                match self.lookup(field, reference, ProblemReason::IndexNotFound) {
                    Err(problem) => {
                        problems.push(problem);
                        None
                    }
                    Ok((ns, hr)) => match hr.spec.servers.index.as_ref() {
                        None => {
                            problems.push(Problem {
                                field: field.into(),
                                reason: ProblemReason::IndexRoleMissing,
                                message: format!(
                                    "{field}: HostRole {} has no spec.servers.index; add it there, or name another index",
                                    qualified(ns, reference)
                                ),
                            });
                            None
                        }
                        Some(index) => {
                            if index.tls.is_some() && peer.tls.is_none() {
                                problems.push(Problem {
                                    field: "spec.peer.tls".into(),
                                    reason: ProblemReason::PeerTlsMismatch,
                                    message: format!(
                                        "spec.peer.tls: the index {} serves HTTPS, and peers trust it by their network's CA: give this peer tls with a certificate of the CA that signed the index's (its Secret's ca.crt)",
                                        qualified(ns, reference)
                                    ),
                                });
                            }
                            Some((self.host_of(ns, reference), index))
                        }
                    },
                }
            }
        };
        let index_url = index.as_ref().map(|(host, index)| {
            let name = peer
                .index
                .as_deref()
                .map_or("", |r| r.rsplit('/').next().unwrap_or(r));
            let port = self.others_own_port(name, index.port);
            format!("{}://{host}:{port}", scheme(&index.tls))
        });
        let port = self.own_port(peer.port);
        let mut seeds = peer.seeds.clone();
        let discovery_dns = match self.env {
            Environment::Cluster { namespace } => peer
                .index
                .is_none()
                .then(|| format!("{}.{namespace}.svc", network_object_name(&peer.network))),
            Environment::Local(local) => {
                if peer.index.is_none() {
                    // The other peers of the network in the manifest, on this machine.
                    for (_, other) in self.others.each() {
                        if let Some(p) = &other.spec.peer
                            && p.network == peer.network
                            && p.index.is_none()
                        {
                            let name = other.metadata.name.as_deref().unwrap_or_default();
                            seeds.push(format!("127.0.0.1:{}", self.others_own_port(name, p.port)));
                        }
                    }
                    seeds.extend(local.seeds.iter().cloned());
                    let own = std::net::SocketAddr::new(local.bind, port).to_string();
                    seeds.retain(|s| *s != own);
                    seeds.sort();
                    seeds.dedup();
                    if seeds.is_empty() {
                        // The first peer: nobody to ask yet; it is found by those that seed it.
                        seeds.push(own);
                    }
                }
                None
            }
        };
        let share = peer.share.as_ref().and_then(|s| s.storage.clone());
        let limits = peer.limits.as_ref();
        let network_location = Location::Network;
        let secret_file = self.path(&network_location).join(NETWORK_SECRET_KEY);
        let mut mounts = vec![
            self.mount(
                SHARE_VOLUME,
                Location::ShareData,
                Source::Data {
                    storage: share.clone(),
                    scratch: scratch(0),
                },
            ),
            self.mount(
                "network",
                network_location,
                Source::NetworkSecret {
                    network: peer.network.clone(),
                },
            ),
        ];
        let network_ca = tls
            .as_ref()
            .map(|(_, secret)| self.ca_mount("peer", secret.clone(), &mut mounts));
        let tls = tls.map(|t| self.tls_mount(t, &mut mounts));
        // The network's CA is also how its peers trust an HTTPS index.
        let index_ca = index
            .as_ref()
            .filter(|(_, index)| index.tls.is_some())
            .and(network_ca.clone());
        roles.push(RolePlan {
            role: "peer",
            ports: vec![("peer", port)],
            mounts,
        });
        Ok(Some(PeerRoleConfig {
            network: peer.network.clone(),
            port,
            ui_port: self.own_port(peer.ui.port),
            // In a pod the UI is for the pod's user only (`kubectl port-forward`).
            ui_bind: match self.env {
                Environment::Cluster { .. } => Some(Ipv4Addr::LOCALHOST.into()),
                Environment::Local(_) => None,
            },
            root: self.path(&Location::ShareData),
            quota_bytes: size("spec.peer.share.storage", share.as_ref())?,
            secret_file,
            index_url,
            discovery_dns,
            seeds,
            advertise: None,
            tls,
            network_ca,
            index_ca,
            heartbeat_seconds: index
                .map_or(IndexServer::default_heartbeat_seconds(), |(_, index)| {
                    index.heartbeat_seconds()
                }),
            fetch: peer.fetch.clone(),
            mirror: peer.mirror,
            upload_bytes_per_second: size(
                "spec.peer.limits.uploadBytesPerSecond",
                limits.and_then(|l| l.upload_bytes_per_second.as_ref()),
            )?,
            download_bytes_per_second: size(
                "spec.peer.limits.downloadBytesPerSecond",
                limits.and_then(|l| l.download_bytes_per_second.as_ref()),
            )?,
            upload_slots: limits
                .and_then(|l| l.upload_slots)
                .and_then(|n| u32::try_from(n).ok()),
            printer: None,
        }))
    }

    fn clients(
        &self,
        roles: &mut Vec<RolePlan>,
        problems: &mut Vec<Problem>,
    ) -> Result<Vec<ClientConfig>, RenderError> {
        let mut configs = Vec::new();
        let mut mounts = Vec::new();
        for (i, spec) in self.hr.spec.clients.iter().enumerate() {
            if let Some(config) = self.client(i, spec, &mut mounts, problems)? {
                configs.push(config);
            }
        }
        if !self.hr.spec.clients.is_empty() {
            roles.push(RolePlan {
                role: "clients",
                ports: Vec::new(),
                mounts,
            });
        }
        Ok(configs)
    }

    /// One client's configuration, or none with the problems of its target and credentials.
    /// The credentials are mounted even when the target is missing, so the pod does not change
    /// when it appears; credentials that may not be used are not mounted, and the client waits.
    fn client(
        &self,
        i: usize,
        spec: &ClientSpec,
        mounts: &mut Vec<Mount>,
        problems: &mut Vec<Problem>,
    ) -> Result<Option<ClientConfig>, RenderError> {
        let service = client_service(spec.service);
        let name = service.client_name(i);
        let millis = |field: &str, text: &Option<String>, default: u64| match text {
            None => Ok(default),
            Some(value) => crate::duration::parse(value)
                .map(|d| d.as_millis() as u64)
                .ok_or_else(|| RenderError::Duration {
                    field: format!("spec.clients[{i}].{field}"),
                    value: value.clone(),
                }),
        };
        let every_ms = millis("every", &spec.every, DEFAULT_CLIENT_EVERY_MS)?;
        let timeout_ms = millis("timeout", &spec.timeout, DEFAULT_CLIENT_TIMEOUT_MS)?;
        let listen_ms = millis("listen", &spec.listen, DEFAULT_LISTEN_MS)?;
        let mut credential_problems = Vec::new();
        let usable_credentials = spec.credentials.as_ref().filter(|secret| {
            self.may_use(
                &format!("spec.clients[{i}].credentials.secret"),
                ObjectKind::Secret,
                &secret.secret,
                "the client does not run until then",
                &mut credential_problems,
            )
        });
        let credentials_dir = usable_credentials.map(|secret| {
            self.mount_secret(
                &format!("client-{name}"),
                Location::ClientCredentials(name.clone()),
                &secret.secret,
                &LOGIN_KEYS,
                mounts,
            )
        });
        let target = match (&spec.server, &spec.url) {
            (Some(reference), _) => self
                .server_target(i, reference, service)
                .map(|t| (reference.clone(), t)),
            (None, Some(url)) => url_target(i, url, service).map(|t| (url.clone(), t)),
            (None, None) => Err(Problem {
                field: format!("spec.clients[{i}]"),
                reason: ProblemReason::InvalidTarget,
                message: format!("spec.clients[{i}]: set server or url"),
            }),
        };
        let target = match target {
            Ok(target) => Some(target),
            Err(problem) => {
                problems.push(problem);
                None
            }
        };
        let mail_to = match &spec.to {
            Some(to) => match self.mail_to(i, &name, to, mounts, &mut credential_problems) {
                Some(read_back) => Some(read_back),
                None if credential_problems.is_empty() => return Ok(None),
                None => None,
            },
            None => None,
        };
        if !credential_problems.is_empty() {
            problems.append(&mut credential_problems);
            return Ok(None);
        }
        Ok(target.map(|(server, target)| {
            let (target, path) = match (target, service) {
                // Radio: the server's root as the target and the mount as the path: the one
                // named, else the one the URL names (a server reference's is its first mount).
                (ClientTarget::Url(url), hostrole_config::ClientService::Radio) => {
                    let (root, mount) = radio_root_and_mount(&url);
                    (ClientTarget::Url(root), spec.path.clone().or(mount))
                }
                (target, _) => (target, spec.path.clone()),
            };
            ClientConfig {
                path,
                name,
                service,
                server,
                target,
                every_ms,
                timeout_ms,
                expect: spec.expect.as_ref().map(expectation),
                credentials_dir,
                mail_to,
                listen_ms: match service {
                    hostrole_config::ClientService::Radio => Some(listen_ms),
                    _ => None,
                },
            }
        }))
    }

    /// The receiving end of client `i`'s cross-host mail probe, its login mounted; `None` with
    /// a problem when the server or the Secret cannot be used.
    fn mail_to(
        &self,
        i: usize,
        name: &str,
        to: &crate::hostrole::MailProbeTo,
        mounts: &mut Vec<Mount>,
        problems: &mut Vec<Problem>,
    ) -> Option<MailReadBack> {
        let field = format!("spec.clients[{i}].to.server");
        let target = self
            .server_target(i, &to.server, hostrole_config::ClientService::Mail)
            .map_err(|mut problem| {
                // server_target names `server`; the reference here is `to.server`.
                problem.message = problem
                    .message
                    .replace(&format!("spec.clients[{i}].server"), &field);
                problem.field = field.clone();
                problem
            });
        let usable = self.may_use(
            &format!("spec.clients[{i}].to.credentials.secret"),
            ObjectKind::Secret,
            &to.credentials.secret,
            "the client does not run until then",
            problems,
        );
        let target = match target {
            Ok(target) => target,
            Err(problem) => {
                problems.push(problem);
                return None;
            }
        };
        let ClientTarget::Mail(target) = target else {
            return None;
        };
        if !usable {
            return None;
        }
        let dir = self.mount_secret(
            &format!("client-{name}-to"),
            Location::ClientCredentials(format!("{name}-to")),
            &to.credentials.secret,
            &LOGIN_KEYS,
            mounts,
        );
        Some(MailReadBack {
            server: to.server.clone(),
            target,
            credentials_dir: dir,
        })
    }

    /// Where a client of `service` reaches the HostRole `reference`.
    fn server_target(
        &self,
        i: usize,
        reference: &str,
        service: hostrole_config::ClientService,
    ) -> Result<ClientTarget, Problem> {
        use hostrole_config::ClientService as S;
        let field = format!("spec.clients[{i}].server");
        let (ns, server) = self.lookup(&field, reference, ProblemReason::ServerNotFound)?;
        let server_name = server.metadata.name.as_deref().unwrap_or(reference);
        let host = self.host_of(ns, server_name);
        let servers = &server.spec.servers;
        let target = match service {
            S::Web => servers
                .web
                .as_ref()
                .map(|w| ClientTarget::Url(format!("{}://{host}:{}/", scheme(&w.tls), w.port))),
            S::File => servers
                .file
                .as_ref()
                .map(|f| ClientTarget::Url(format!("{}://{host}:{}/", scheme(&f.tls), f.port))),
            S::Mail => servers.mail.as_ref().map(|m| {
                ClientTarget::Mail(MailTarget {
                    host: host.clone(),
                    smtp_port: m.smtp_port as u16,
                    submission_port: Some(m.submission_port as u16),
                    imap_port: Some(m.imap_port as u16),
                    pop3_port: Some(m.pop3_port as u16),
                    domain: m.domains.first().cloned(),
                })
            }),
            // The plain port is always served; the probe needs no certificate to trust.
            S::Chat => servers
                .chat
                .as_ref()
                .map(|c| ClientTarget::Url(format!("irc://{host}:{}/", c.port))),
            S::Radio => servers.radio.as_ref().map(|r| {
                let mount = r.mounts.first().map_or("/", |m| m.path.as_str());
                ClientTarget::Url(format!("{}://{host}:{}{mount}", scheme(&r.tls), r.port))
            }),
            // The printer URI as IPP clients write it (`lpadmin -v`).
            S::Print => servers.print.as_ref().map(|p| {
                let scheme = if p.tls.is_some() { "ipps" } else { "ipp" };
                let port = self.others_own_port(server_name, p.port);
                ClientTarget::Url(format!("{scheme}://{host}:{port}/ipp/print"))
            }),
        };
        target.ok_or_else(|| {
            let service = service.as_str();
            Problem {
                field: field.clone(),
                reason: ProblemReason::RoleMissing,
                message: format!(
                    "{field}: HostRole {} does not serve {service} (add spec.servers.{service} to it, or point the client at another server, or use url:)",
                    qualified(ns, server_name)
                ),
            }
        })
    }
}

/// The URL scheme of an HTTP role: `https` when it serves TLS.
/// Where a role's `tls` stands in the spec.
pub fn tls_field(role: &str) -> &'static str {
    let field = tls_issuer_ref_field(role);
    field.strip_suffix(".issuerRef").unwrap_or(field)
}

/// Where a role's `tls.issuerRef` stands in the spec (a static name, for errors).
fn tls_issuer_ref_field(role: &str) -> &'static str {
    match role {
        "web" => "spec.servers.web.tls.issuerRef",
        "file" => "spec.servers.file.tls.issuerRef",
        "mail" => "spec.servers.mail.tls.issuerRef",
        "index" => "spec.servers.index.tls.issuerRef",
        "chat" => "spec.servers.chat.tls.issuerRef",
        "radio" => "spec.servers.radio.tls.issuerRef",
        "print" => "spec.servers.print.tls.issuerRef",
        _ => "spec.peer.tls.issuerRef",
    }
}

fn scheme(tls: &Option<Tls>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

/// A mail domain as routes compare it: lower-case, without a final dot.
fn mail_domain(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

/// `ns/name`, or `name` where there are no namespaces.
fn qualified(ns: &str, name: &str) -> String {
    if ns.is_empty() {
        name.to_string()
    } else {
        format!("{ns}/{name}")
    }
}

/// A URL as written; for mail `smtp://host[:port]?imap=PORT[&pop3=PORT][&domain=D]`.
fn url_target(
    i: usize,
    url: &str,
    service: hostrole_config::ClientService,
) -> Result<ClientTarget, Problem> {
    use hostrole_config::ClientService as S;
    let field = format!("spec.clients[{i}].url");
    let invalid = |why: String| Problem {
        message: format!("{field}: {why}"),
        field: field.clone(),
        reason: ProblemReason::InvalidTarget,
    };
    match service {
        S::Mail => mail_target_from_url(url)
            .map(ClientTarget::Mail)
            .map_err(|e| invalid(e.to_string())),
        S::Web | S::File | S::Radio => {
            let parsed =
                url::Url::parse(url).map_err(|e| invalid(format!("{url:?} is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid(format!(
                    "{url:?} must be an http:// or https:// URL"
                )));
            }
            Ok(ClientTarget::Url(url.to_string()))
        }
        S::Chat => {
            let parsed =
                url::Url::parse(url).map_err(|e| invalid(format!("{url:?} is not a URL: {e}")))?;
            if parsed.scheme() != "irc" || parsed.host_str().is_none() {
                return Err(invalid(format!(
                    "{url:?} must be an irc:// URL such as irc://chat.example.lan:6667/"
                )));
            }
            Ok(ClientTarget::Url(url.to_string()))
        }
        S::Print => {
            let parsed =
                url::Url::parse(url).map_err(|e| invalid(format!("{url:?} is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "ipp" | "ipps" | "http" | "https")
                || parsed.host_str().is_none()
            {
                return Err(invalid(format!(
                    "{url:?} must be a printer URI such as ipp://printer.example.lan:631/ipp/print (ipps:// for TLS)"
                )));
            }
            Ok(ClientTarget::Url(url.to_string()))
        }
    }
}

/// How long a radio client listens when the manifest does not say.
pub const DEFAULT_LISTEN_MS: u64 = 5000;

/// A radio URL's root (`scheme://host:port/`) and the mount it names (its path), if any.
fn radio_root_and_mount(url: &str) -> (String, Option<String>) {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return (url.to_string(), None);
    };
    let mount =
        (parsed.path() != "/" && !parsed.path().is_empty()).then(|| parsed.path().to_string());
    parsed.set_path("/");
    parsed.set_query(None);
    parsed.set_fragment(None);
    (parsed.to_string(), mount)
}

/// Name of the file role's volume (and of its claim template).
pub const FILE_VOLUME: &str = "file-data";
/// Name of the mail role's volume (and of its claim template).
pub const MAIL_VOLUME: &str = "mail-data";
/// Name of the print role's volume (and of its claim template).
pub const PRINT_VOLUME: &str = "print-data";
/// Name of the peer role's share volume (and of its claim template).
pub const SHARE_VOLUME: &str = "share-data";

/// The least scratch space a role's data gets without `storage`: 1 GiB.
pub const MIN_SCRATCH_BYTES: u64 = 1 << 30;

/// Scratch space (an emptyDir's `sizeLimit`) for data without `storage`: room for two of the
/// role's largest writes (an upload or a message is staged beside what it replaces or joins),
/// and at least [`MIN_SCRATCH_BYTES`]. Past it the kubelet evicts the pod: the node's disk is
/// never filled.
pub fn scratch(largest_write: u64) -> Quantity {
    let bytes = scratch_bytes(largest_write);
    const GI: u64 = 1 << 30;
    const MI: u64 = 1 << 20;
    Quantity(if bytes.is_multiple_of(GI) {
        format!("{}Gi", bytes / GI)
    } else if bytes.is_multiple_of(MI) {
        format!("{}Mi", bytes / MI)
    } else {
        bytes.to_string()
    })
}

/// The bytes of [`scratch`].
pub fn scratch_bytes(largest_write: u64) -> u64 {
    largest_write.saturating_mul(2).max(MIN_SCRATCH_BYTES)
}

fn size(field: &'static str, quantity: Option<&Quantity>) -> Result<Option<u64>, RenderError> {
    quantity
        .map(|q| {
            parse_bytes(&q.0).ok_or_else(|| RenderError::Size {
                field,
                value: q.0.clone(),
            })
        })
        .transpose()
}

fn anonymous(access: Option<AnonymousAccess>) -> hostrole_config::AnonymousAccess {
    use hostrole_config::AnonymousAccess as A;
    match access {
        None | Some(AnonymousAccess::None) => A::None,
        Some(AnonymousAccess::ReadOnly) => A::ReadOnly,
        Some(AnonymousAccess::ReadWrite) => A::ReadWrite,
    }
}

/// The agent's name for a service of the API.
pub fn client_service(service: ClientService) -> hostrole_config::ClientService {
    use hostrole_config::ClientService as S;
    match service {
        ClientService::Web => S::Web,
        ClientService::File => S::File,
        ClientService::Mail => S::Mail,
        ClientService::Chat => S::Chat,
        ClientService::Radio => S::Radio,
        ClientService::Print => S::Print,
    }
}

fn expectation(e: &Expectation) -> hostrole_config::Expectation {
    hostrole_config::Expectation {
        // The schema holds it to 100..=599.
        status: e.status.and_then(|s| u16::try_from(s).ok()),
        contains: e.contains.clone(),
    }
}
