//! `hostrole-agent up MANIFEST`: serve a HostRole's roles on this machine, without a cluster.
//!
//! A thin adapter around the one translator (`hostrole_api::render`) with the local
//! environment: the manifest is judged by the same schema and CEL rules as in a cluster, rendered
//! as the operator renders it, and what a pod would mount is written into the data directory
//! instead: Secrets of the same manifest (owner-only), inline site files, the network secret
//! (from the manifest's `peers-<network>` Secret, else generated once and kept), directories for
//! the roles' data. A reference the manifest cannot honour (a client's server or a peer's index
//! that is not in it, a Secret that is not in it labelled `hostrole.dev/use: "true"`, as a
//! cluster requires) is an error here rather than a condition.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use hostrole_api::manifest::{self, ManifestError};
use hostrole_api::render::{
    self, Environment, Local, LocalDirectory, Mount, NETWORK_SECRET_KEY, RenderError, Source,
    network_object_name,
};
use hostrole_api::{HostRole, SiteFile};
use hostrole_config::AgentConfig;
use serde::Deserialize;

/// Why a manifest cannot be served standalone.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{path} holds no HostRole")]
    NoHostRole { path: PathBuf },
    #[error(
        "port {port} is taken twice: by {first} and by {second}; one machine cannot serve both: change one of the ports in the manifest, or serve one of the hosts elsewhere (`up --name`, on another machine or --bind address)"
    )]
    PortTaken {
        port: u16,
        first: String,
        second: String,
    },
    #[error(
        "{hosts} hosts from --admin-port {admin_port} and --port-offset {port_offset} run past port 65535: choose lower ones, or fewer hosts with --name"
    )]
    TooManyHosts {
        hosts: usize,
        admin_port: u16,
        port_offset: u16,
    },
    #[error(
        "{path} holds two HostRoles named {name} (metadata.name): the hosts one `up` runs keep their files in a directory of their name, so each needs a name of its own: rename one of them"
    )]
    SameName { path: PathBuf, name: String },
    #[error(
        "a HostRole in {path} has no metadata.name: give it one (with several hosts in one `up`, each keeps its files in a directory of its name)"
    )]
    Nameless { path: PathBuf },
    #[error("{path} holds no HostRole named {name} (it holds: {names})")]
    NotFound {
        path: PathBuf,
        name: String,
        names: String,
    },
    /// References the manifest cannot honour, one per line.
    #[error("{}", .0.join("\n"))]
    References(Vec<String>),
    #[error(
        "the Secret {secret} is not in {manifest} with the keys {keys} (standalone, a Secret the HostRole names must stand in the same file)"
    )]
    SecretNotInManifest {
        secret: String,
        keys: String,
        manifest: PathBuf,
    },
    #[error(
        "the ConfigMap {config_map} is not in {manifest} (standalone, a ConfigMap the HostRole names must stand in the same file)"
    )]
    ConfigMapNotInManifest {
        config_map: String,
        manifest: PathBuf,
    },
    #[error(
        "the ConfigMap {config_map} in {manifest} has the key {key:?}, which is not a file name: keys are letters, digits, '-', '_' and '.' (as the API server allows)"
    )]
    ConfigMapKey {
        config_map: String,
        key: String,
        manifest: PathBuf,
    },
    #[error("{field}: {path} is not a directory: {source}")]
    SitePath {
        field: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How to run a manifest standalone.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub manifest: PathBuf,
    /// Which HostRoles; all of the manifest's when empty.
    pub names: Vec<String>,
    pub bind: IpAddr,
    /// The first host's admin port; the next hosts take the ports after it.
    pub admin_port: u16,
    /// Where the agent keeps its files; a per-user state directory when absent. With several
    /// hosts, each has a directory of its name under it.
    pub data_dir: Option<PathBuf>,
    /// Added to this agent's own index, peer, peer UI and printer ports (not to the index or
    /// seeds it uses), to run several peers on one machine. With several hosts, only to the
    /// peers, each after the first [`PEER_OFFSET_STEP`] more than the one before.
    pub port_offset: u16,
    /// Decentralized peers: more `host:port` addresses of peers to start from.
    pub seeds: Vec<String>,
    /// With several hosts, the loopback port of the view of them (0: none).
    pub view_port: u16,
}

/// With several hosts in one process, how far apart the peers' own ports are (the manifests'
/// comments use the same step for peers run one per process).
pub const PEER_OFFSET_STEP: u16 = 10;

/// One host `up` serves: its HostRole (for the view) and what its agent runs.
#[derive(Debug, Clone)]
pub struct Host {
    pub hostrole: HostRole,
    pub config: AgentConfig,
}

/// Where a host runs on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placement {
    admin_port: u16,
    port_offset: u16,
    data_dir: PathBuf,
}

/// Reads the manifest, renders the chosen HostRoles for this machine and writes what their
/// roles need into their data directories. Nothing is written when any of them cannot run, or
/// when two of them would listen on one port.
pub fn prepare(options: &UpOptions) -> Result<Vec<Host>, StandaloneError> {
    // Read and judged once; references and Secrets are resolved against it.
    let m = Manifest::read(&options.manifest)?;
    let chosen = choose(&m.directory.hostroles, options)?;
    let placements = place(&chosen, options)?;
    let several = chosen.len() > 1;
    // Several hosts: where each of them listens. One host: none, as a second process of the
    // same HostRole (`--port-offset`) seeds from the first at the manifest's port.
    let offsets: BTreeMap<String, u16> = if several {
        chosen
            .iter()
            .zip(&placements)
            .map(|(hr, p)| (name_of(hr).to_string(), p.port_offset))
            .collect()
    } else {
        BTreeMap::new()
    };
    let mut plans = Vec::new();
    for (hostrole, place) in chosen.iter().zip(placements) {
        let name = name_of(hostrole);
        let local = Local {
            data_dir: place.data_dir,
            manifest_dir: options
                .manifest
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            bind: options.bind,
            admin_port: place.admin_port,
            port_offset: place.port_offset,
            seeds: options.seeds.clone(),
            offsets: offsets.clone(),
        };
        let plan = render::render(hostrole, Environment::Local(&local), &m.directory)?;
        if !plan.problems.is_empty() {
            return Err(StandaloneError::References(
                plan.problems
                    .into_iter()
                    .map(|p| {
                        if several {
                            format!("{name}: {}", p.message)
                        } else {
                            p.message
                        }
                    })
                    .collect(),
            ));
        }
        if let Some(web) = &plan.config.web
            && !plan.mounts().any(|m| m.volume == "site")
        {
            site_path(&web.root)?;
        }
        plans.push(((*hostrole).clone(), plan));
    }
    let configs: Vec<(&str, &AgentConfig)> = plans
        .iter()
        .map(|(hr, plan)| (name_of(hr), &plan.config))
        .collect();
    let view = (several && options.view_port != 0).then_some(options.view_port);
    one_listener_per_port(&configs, view)?;
    let mut hosts = Vec::new();
    for (hostrole, plan) in plans {
        for mount in plan.mounts() {
            materialize(mount, &m)?;
        }
        hosts.push(Host {
            hostrole,
            config: plan.config,
        });
    }
    Ok(hosts)
}

/// How a person reaches a listener: a URL for HTTP roles, `scheme://host:port` otherwise.
pub fn url(label: &str, addr: &std::net::SocketAddr) -> String {
    match label {
        "web" | "web-redirect" | "file" | "index" | "peer" | "peer-ui" => format!("http://{addr}/"),
        "web+tls" | "file+tls" | "index+tls" | "peer+tls" => format!("https://{addr}/"),
        // The status page lists the mounts and their URLs.
        "radio" => format!("http://{addr}/status-json.xsl"),
        "radio+tls" => format!("https://{addr}/status-json.xsl"),
        // The printer URI to add it with (`lpadmin -v`, a system's "add printer" dialog).
        "ipp" | "ipps" => format!("{label}://{addr}/ipp/print"),
        other => format!("{other}://{addr}"),
    }
}

fn name_of(hr: &HostRole) -> &str {
    hr.metadata.name.as_deref().unwrap_or("host")
}

/// Admin ports, port offsets and data directories: one host as asked; several hosts each on
/// the next admin port, in a directory of its name, peers [`PEER_OFFSET_STEP`] apart.
fn place(chosen: &[&HostRole], options: &UpOptions) -> Result<Vec<Placement>, StandaloneError> {
    if let [hostrole] = chosen {
        return Ok(vec![Placement {
            admin_port: options.admin_port,
            port_offset: options.port_offset,
            data_dir: options
                .data_dir
                .clone()
                .unwrap_or_else(|| default_data_dir(name_of(hostrole))),
        }]);
    }
    let mut peers = 0u16;
    chosen
        .iter()
        .enumerate()
        .map(|(i, hostrole)| {
            let name = name_of(hostrole);
            let too_many = || StandaloneError::TooManyHosts {
                hosts: chosen.len(),
                admin_port: options.admin_port,
                port_offset: options.port_offset,
            };
            let admin_port = u16::try_from(i)
                .ok()
                .and_then(|i| options.admin_port.checked_add(i))
                .ok_or_else(too_many)?;
            // Only peers move: an index or a printer of a host that is no peer stays where the
            // manifest puts it, as the peers and clients that use it expect.
            let mut port_offset = 0;
            if hostrole.spec.peer.is_some() {
                port_offset = peers
                    .checked_mul(PEER_OFFSET_STEP)
                    .and_then(|o| o.checked_add(options.port_offset))
                    .ok_or_else(too_many)?;
                peers += 1;
            }
            Ok(Placement {
                admin_port,
                port_offset,
                data_dir: options
                    .data_dir
                    .as_ref()
                    .map(|d| d.join(name))
                    .unwrap_or_else(|| default_data_dir(name)),
            })
        })
        .collect()
}

/// Every port an agent of `config` listens on, with the field of the manifest that sets it.
pub fn listeners(config: &AgentConfig) -> Vec<(u16, &'static str)> {
    let mut ports = vec![(config.admin_port, "--admin-port")];
    if let Some(c) = &config.web {
        ports.push((c.port, "spec.servers.web.port"));
        ports.extend(
            c.redirect_port
                .map(|p| (p, "spec.servers.web.tls.redirectPort")),
        );
    }
    if let Some(c) = &config.file {
        ports.push((c.port, "spec.servers.file.port"));
    }
    if let Some(c) = &config.mail {
        ports.push((c.smtp_port, "spec.servers.mail.smtpPort"));
        ports.push((c.submission_port, "spec.servers.mail.submissionPort"));
        ports.push((c.imap_port, "spec.servers.mail.imapPort"));
        ports.push((c.pop3_port, "spec.servers.mail.pop3Port"));
        ports.extend(c.imaps_port.map(|p| (p, "spec.servers.mail.tls.imapsPort")));
        ports.extend(c.pop3s_port.map(|p| (p, "spec.servers.mail.tls.pop3sPort")));
        ports.extend(
            c.submissions_port
                .map(|p| (p, "spec.servers.mail.tls.submissionsPort")),
        );
    }
    if let Some(c) = &config.chat {
        ports.push((c.port, "spec.servers.chat.port"));
        ports.extend(c.tls_port.map(|p| (p, "spec.servers.chat.tls.port")));
    }
    if let Some(c) = &config.radio {
        ports.push((c.port, "spec.servers.radio.port"));
    }
    if let Some(c) = &config.print {
        ports.push((c.port, "spec.servers.print.port"));
    }
    if let Some(c) = &config.index {
        ports.push((c.port, "spec.servers.index.port"));
    }
    if let Some(c) = &config.peer {
        ports.push((c.port, "spec.peer.port"));
        ports.push((c.ui_port, "spec.peer.ui.port"));
    }
    ports
}

/// Hosts run by one process share the machine's ports, with the view (`view`, when it is
/// served): two listeners on one port are refused before anything starts, naming both.
fn one_listener_per_port(
    hosts: &[(&str, &AgentConfig)],
    view: Option<u16>,
) -> Result<(), StandaloneError> {
    let mut taken: BTreeMap<u16, (&str, &'static str)> = BTreeMap::new();
    if let Some(port) = view {
        taken.insert(port, ("the view", "--view-port"));
    }
    for (name, config) in hosts {
        for (port, field) in listeners(config) {
            if let Some((first, first_field)) = taken.get(&port) {
                return Err(StandaloneError::PortTaken {
                    port,
                    first: format!("{first} ({first_field})"),
                    second: format!("{name} ({field})"),
                });
            }
            taken.insert(port, (name, field));
        }
    }
    Ok(())
}

/// Puts what a pod would mount at `mount.path`.
fn materialize(mount: &Mount, m: &Manifest) -> Result<(), StandaloneError> {
    let dir = &mount.path;
    match &mount.source {
        Source::Data { .. } => create_dir(dir),
        Source::InlineSite { files } => {
            let parent = dir.parent().unwrap_or(dir);
            write_site(parent, files).map(|_| ())
        }
        Source::Secret { name, items } => {
            let keys = m.secret(name).ok_or_else(|| m.missing(name, items))?;
            for (key, file) in items {
                let bytes = keys.get(*key).ok_or_else(|| m.missing(name, items))?;
                write_private(dir, file, bytes)?;
            }
            owner_only(dir)
        }
        Source::OptionalKey { name, key } => {
            create_dir(dir)?;
            match m.secret(name).and_then(|keys| keys.get(*key)) {
                Some(bytes) => {
                    write_private(dir, key, bytes)?;
                }
                // A key the Secret no longer has is not left behind from an earlier run.
                None => match std::fs::remove_file(dir.join(key)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(StandaloneError::Write {
                            path: dir.join(key),
                            source: e,
                        });
                    }
                    _ => {}
                },
            }
            owner_only(dir)
        }
        Source::NetworkSecret { network } => {
            network_secret(m, dir, NETWORK_SECRET_KEY, network)?;
            owner_only(dir)
        }
        Source::NetworkSecrets { networks } => {
            create_dir(dir)?;
            for network in networks {
                network_secret(m, dir, network, network)?;
            }
            owner_only(dir)
        }
        // render refuses a site ConfigMap standalone; a radio playlist's comes from the
        // manifest, as Secrets do.
        Source::ConfigMap { name } => {
            let keys =
                m.config_maps
                    .get(name)
                    .ok_or_else(|| StandaloneError::ConfigMapNotInManifest {
                        config_map: name.clone(),
                        manifest: m.path.clone(),
                    })?;
            create_dir(dir)?;
            for (key, bytes) in keys {
                if !config_map_key(key) {
                    return Err(StandaloneError::ConfigMapKey {
                        config_map: name.clone(),
                        key: key.clone(),
                        manifest: m.path.clone(),
                    });
                }
                let path = dir.join(key);
                hostrole_agent_core::fsutil::write_atomic(&path, bytes, 0o644)
                    .map_err(|source| StandaloneError::Write { path, source })?;
            }
            Ok(())
        }
    }
}

/// The Secrets of a manifest: name → key → bytes.
type Secrets = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// A manifest file, read once: its HostRoles (validated) and its Secrets.
struct Manifest {
    path: PathBuf,
    /// Its HostRoles, and its Secrets labelled for use.
    directory: LocalDirectory,
    secrets: Secrets,
    /// Its ConfigMaps: name → key → bytes.
    config_maps: Secrets,
}

impl Manifest {
    fn read(path: &Path) -> Result<Manifest, StandaloneError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            StandaloneError::Manifest(manifest::ManifestError::Read {
                path: path.to_path_buf(),
                source,
            })
        })?;
        Ok(Manifest {
            path: path.to_path_buf(),
            directory: LocalDirectory {
                hostroles: manifest::parse_all(&text, &path.display().to_string())?,
                labelled: manifest::labelled_for_use(&text),
            },
            secrets: secrets_in(&text),
            config_maps: config_maps_in(&text),
        })
    }

    fn secret(&self, name: &str) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.secrets.get(name)
    }

    fn missing(&self, name: &str, items: &[(&str, String)]) -> StandaloneError {
        StandaloneError::SecretNotInManifest {
            secret: name.to_string(),
            keys: items.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", "),
            manifest: self.path.clone(),
        }
    }
}

/// `<dir>/<file>` of a network's secret: from the manifest's `peers-<network>` Secret, else the
/// secret generated earlier, else a new random one.
fn network_secret(
    m: &Manifest,
    dir: &Path,
    file: &str,
    network: &str,
) -> Result<PathBuf, StandaloneError> {
    let path = dir.join(file);
    if let Some(secret) = m
        .secret(&network_object_name(network))
        .and_then(|keys| keys.get(NETWORK_SECRET_KEY))
    {
        return write_private(dir, file, secret);
    }
    if path.exists() {
        return Ok(path);
    }
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| StandaloneError::Write {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    tracing::warn!(
        network,
        file = %path.display(),
        "no Secret {} in the manifest: generated a network secret; peers on other machines need the same one (add the Secret)",
        network_object_name(network)
    );
    write_private(dir, file, hex::encode(random).as_bytes())
}

fn create_dir(dir: &Path) -> Result<(), StandaloneError> {
    std::fs::create_dir_all(dir).map_err(|source| StandaloneError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Makes a directory of secrets readable by its owner only.
fn owner_only(dir: &Path) -> Result<(), StandaloneError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|source| {
        StandaloneError::Write {
            path: dir.to_path_buf(),
            source,
        }
    })
}

/// Writes `bytes` to `<dir>/<name>` readable by the owner only, atomically.
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, StandaloneError> {
    let path = dir.join(name);
    hostrole_agent_core::fsutil::write_atomic(&path, bytes, 0o600).map_err(|source| {
        StandaloneError::Write {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}

/// The Secrets of a multi-document manifest: name → key → bytes (`data` is base64,
/// `stringData` is text and wins, as on the API server).
fn secrets_in(text: &str) -> Secrets {
    objects_in(text, "Secret", "data", "stringData")
}

/// The ConfigMaps of a multi-document manifest: name → key → bytes (`binaryData` is base64,
/// `data` text).
fn config_maps_in(text: &str) -> Secrets {
    objects_in(text, "ConfigMap", "binaryData", "data")
}

/// The objects of `kind` in a multi-document manifest: name → key → bytes, from a field of
/// base64 values and one of text values (which wins).
fn objects_in(text: &str, kind: &str, base64_field: &str, text_field: &str) -> Secrets {
    use base64::Engine;
    let mut objects = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let Ok(value) = serde_yaml::Value::deserialize(doc) else {
            continue;
        };
        if value.get("kind").and_then(|k| k.as_str()) != Some(kind) {
            continue;
        }
        let Some(name) = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
        else {
            continue;
        };
        let mut keys = BTreeMap::new();
        let fields = |field: &str| {
            value
                .get(field)
                .and_then(|d| d.as_mapping())
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?)))
        };
        for (k, v) in fields(base64_field) {
            // Long values may be folded over lines.
            let joined: String = v.split_whitespace().collect();
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(joined) {
                keys.insert(k, bytes);
            }
        }
        for (k, v) in fields(text_field) {
            keys.insert(k, v.as_bytes().to_vec());
        }
        objects.insert(name.to_string(), keys);
    }
    objects
}

/// A ConfigMap key the API server accepts, which is also a safe file name (no `/`, not `.`
/// or `..`).
fn config_map_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The HostRoles to serve: the named ones, in the manifest's order, or all of them.
fn choose<'a>(
    hostroles: &'a [HostRole],
    options: &UpOptions,
) -> Result<Vec<&'a HostRole>, StandaloneError> {
    let path = options.manifest.clone();
    if hostroles.is_empty() {
        return Err(StandaloneError::NoHostRole { path });
    }
    for name in &options.names {
        if !hostroles
            .iter()
            .any(|h| h.metadata.name.as_ref() == Some(name))
        {
            return Err(StandaloneError::NotFound {
                path,
                name: name.clone(),
                names: hostroles
                    .iter()
                    .filter_map(|h| h.metadata.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let chosen: Vec<&HostRole> = hostroles
        .iter()
        .filter(|h| {
            options.names.is_empty()
                || h.metadata
                    .name
                    .as_ref()
                    .is_some_and(|n| options.names.contains(n))
        })
        .collect();
    if chosen.len() > 1 {
        // One directory, one set of files, one place in the view per name.
        let mut seen = std::collections::BTreeSet::new();
        for hostrole in &chosen {
            let Some(name) = hostrole.metadata.name.as_deref() else {
                return Err(StandaloneError::Nameless { path });
            };
            if !seen.insert(name) {
                return Err(StandaloneError::SameName {
                    path,
                    name: name.to_string(),
                });
            }
        }
    }
    Ok(chosen)
}

fn site_path(path: &Path) -> Result<PathBuf, StandaloneError> {
    let err = |source| StandaloneError::SitePath {
        field: "spec.servers.web.site.path",
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(err)?;
    if meta.is_dir() {
        Ok(path.to_path_buf())
    } else {
        Err(err(std::io::Error::other("it is a file")))
    }
}

/// `$XDG_STATE_HOME/hostrole/<name>`, else `~/.local/state/hostrole/<name>`, else a temporary
/// directory.
fn default_data_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("hostrole").join(name)
}

/// Writes the site into `<dir>/site`: every file goes to a staging directory and is fsynced,
/// then the staging directory replaces the old site, so a crash never leaves half a site behind.
pub fn write_site(dir: &Path, files: &[SiteFile]) -> Result<PathBuf, StandaloneError> {
    let target = dir.join("site");
    let staging = dir.join(format!(".site-staging-{}", std::process::id()));
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StandaloneError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(err(&staging))?;
    }
    if let Err(e) = fill(&staging, files) {
        // Leave nothing half-written behind.
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    std::fs::create_dir_all(&staging).map_err(err(&staging))?;
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(err(&target))?;
    }
    std::fs::rename(&staging, &target).map_err(err(&target))?;
    Ok(target)
}

/// Writes and fsyncs every file under `staging`.
fn fill(staging: &Path, files: &[SiteFile]) -> Result<(), StandaloneError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StandaloneError::Write { path, source }
    };
    for file in files {
        let relative = Path::new(&file.path);
        // The CEL rule already refuses such paths; this keeps the writer safe on its own.
        if !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(err(relative)(std::io::Error::other(
                "not a plain relative path",
            )));
        }
        let path = staging.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err(parent))?;
        }
        let mut out = std::fs::File::create(&path).map_err(err(&path))?;
        out.write_all(file.content.as_bytes()).map_err(err(&path))?;
        out.sync_all().map_err(err(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one host `options` names.
    fn prepare_one(options: &UpOptions) -> Result<AgentConfig, StandaloneError> {
        let mut hosts = prepare(options)?;
        assert_eq!(hosts.len(), 1, "one host");
        Ok(hosts.remove(0).config)
    }

    #[test]
    fn a_listener_with_tls_is_printed_as_an_https_url() {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 7001));
        for label in ["web+tls", "file+tls", "index+tls", "peer+tls"] {
            assert_eq!(url(label, &addr), "https://127.0.0.1:7001/", "{label}");
        }
        for label in ["web", "index", "peer", "peer-ui"] {
            assert_eq!(url(label, &addr), "http://127.0.0.1:7001/", "{label}");
        }
        assert_eq!(
            url("radio+tls", &addr),
            "https://127.0.0.1:7001/status-json.xsl"
        );
        assert_eq!(url("imaps", &addr), "imaps://127.0.0.1:7001");
        assert_eq!(url("ipps", &addr), "ipps://127.0.0.1:7001/ipp/print");
    }

    fn file(path: &str, content: &str) -> SiteFile {
        SiteFile {
            path: path.into(),
            content: content.into(),
        }
    }

    #[test]
    fn inline_files_replace_the_previous_site() {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = write_site(
            dir.path(),
            &[file("index.html", "one"), file("css/a.css", "a")],
        )
        .expect("write");
        assert_eq!(
            std::fs::read_to_string(site.join("css/a.css")).expect("read"),
            "a"
        );
        let site = write_site(dir.path(), &[file("index.html", "two")]).expect("rewrite");
        assert_eq!(
            std::fs::read_to_string(site.join("index.html")).expect("read"),
            "two"
        );
        assert!(!site.join("css").exists(), "files of the old site are gone");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            leftovers,
            vec![std::ffi::OsString::from("site")],
            "no staging directory left"
        );
    }

    #[test]
    fn paths_that_leave_the_site_are_refused_and_nothing_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_site(dir.path(), &[file("index.html", "kept")]).expect("write");
        for bad in ["../x", "/etc/x", "a/../../x"] {
            assert!(write_site(dir.path(), &[file(bad, "x")]).is_err(), "{bad}");
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join("site/index.html")).expect("read"),
            "kept"
        );
    }

    const HYBRID: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: peers-family}\nstringData: {secret: \"s3cret \\n\"}\n---\n\
        apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: tracker}\nspec:\n  servers:\n    index: {port: 7100, ttl: 1m}\n---\n\
        apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: family}\nspec:\n  replicas: 3\n  peer: {network: family, index: tracker, port: 7101, share: {storage: 1Mi}, ui: {port: 8190}}\n";

    fn options(dir: &Path, text: &str, name: &str) -> UpOptions {
        let manifest = dir.join("m.yaml");
        std::fs::write(&manifest, text).expect("manifest");
        UpOptions {
            manifest,
            names: vec![name.into()],
            bind: "127.0.0.1".parse().expect("ip"),
            admin_port: 9901,
            data_dir: Some(dir.join(name)),
            port_offset: 0,
            seeds: Vec::new(),
            view_port: 8088,
        }
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).expect("meta").permissions().mode()
    }

    /// A hybrid network with two peer HostRoles, and a decentralized one with two.
    const SEVERAL: &str = "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: tracker}\nspec:\n  servers:\n    index: {port: 7100}\n---\n\
        apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: family}\nspec:\n  peer: {network: family, index: tracker, port: 7101, ui: {port: 8190}}\n---\n\
        apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: study}\nspec:\n  peer: {network: family, index: tracker, port: 7101, ui: {port: 8190}}\n---\n\
        apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: ann}\nspec:\n  peer: {network: friends, port: 7301, ui: {port: 8390}}\n---\n\
        apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: bob}\nspec:\n  peer: {network: friends, port: 7301, ui: {port: 8390}}\n";

    #[test]
    fn several_hosts_take_the_next_admin_ports_their_own_directories_and_peers_move_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut up = options(dir.path(), SEVERAL, "tracker");
        up.names.clear();
        up.data_dir = Some(dir.path().join("data"));
        let hosts = prepare(&up).expect("several");
        let names: Vec<&str> = hosts.iter().map(|h| name_of(&h.hostrole)).collect();
        assert_eq!(names, ["tracker", "family", "study", "ann", "bob"]);
        let admin: Vec<u16> = hosts.iter().map(|h| h.config.admin_port).collect();
        assert_eq!(admin, [9901, 9902, 9903, 9904, 9905]);
        // The index stays where the peers look for it; each peer 10 ports after the one before.
        assert_eq!(hosts[0].config.index.as_ref().expect("index").port, 7100);
        let peers: Vec<(u16, u16)> = hosts[1..]
            .iter()
            .map(|h| {
                let p = h.config.peer.as_ref().expect("peer");
                (p.port, p.ui_port)
            })
            .collect();
        assert_eq!(
            peers,
            [(7101, 8190), (7111, 8200), (7321, 8410), (7331, 8420)]
        );
        let study = hosts[2].config.peer.as_ref().expect("peer");
        assert_eq!(study.index_url.as_deref(), Some("http://127.0.0.1:7100"));
        assert_eq!(study.root, dir.path().join("data/study/share"));
        // A decentralized peer seeds from where its fellow peer really listens.
        let ann = hosts[3].config.peer.as_ref().expect("peer");
        let bob = hosts[4].config.peer.as_ref().expect("peer");
        assert_eq!(ann.seeds, ["127.0.0.1:7331"]);
        assert_eq!(bob.seeds, ["127.0.0.1:7321"]);
        // --name still picks some.
        up.names = vec!["bob".into(), "tracker".into()];
        let some = prepare(&up).expect("two");
        let names: Vec<&str> = some.iter().map(|h| name_of(&h.hostrole)).collect();
        assert_eq!(names, ["tracker", "bob"], "in the manifest's order");
    }

    #[test]
    fn several_hosts_need_names_of_their_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let two = "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: office, namespace: a}\nspec:\n  servers:\n    web: {port: 8080}\n---\n\
            apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: office, namespace: b}\nspec:\n  servers:\n    web: {port: 8081}\n";
        let mut up = options(dir.path(), two, "office");
        up.data_dir = Some(dir.path().join("data"));
        let err = prepare(&up).expect_err("one directory for two").to_string();
        assert!(
            err.contains("two HostRoles named office") && err.contains("metadata.name"),
            "{err}"
        );
        up.names.clear();
        assert!(prepare(&up).is_err());
        assert!(!dir.path().join("data").exists(), "nothing written");
    }

    #[test]
    fn every_port_of_every_host_and_the_views_is_checked_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Two mail hosts apart on every port but POP3, which both leave at its default.
        let mail = "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: one}\nspec:\n  servers:\n    mail: {domains: [one.test], smtpPort: 2525, submissionPort: 2587, imapPort: 1143}\n---\n\
            apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: two}\nspec:\n  servers:\n    mail: {domains: [two.test], smtpPort: 3525, submissionPort: 3587, imapPort: 2143}\n";
        let mut up = options(dir.path(), mail, "one");
        up.names.clear();
        up.data_dir = Some(dir.path().join("data"));
        let err = prepare(&up).expect_err("pop3 twice").to_string();
        assert!(err.contains("spec.servers.mail.pop3Port"), "{err}");
        // A web server on the view's port.
        let web = "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: one}\nspec:\n  servers:\n    web: {port: 8088}\n---\n\
            apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: two}\nspec:\n  servers:\n    web: {port: 8089}\n";
        let mut up = options(dir.path(), web, "one");
        up.names.clear();
        up.data_dir = Some(dir.path().join("data"));
        let err = prepare(&up).expect_err("the view's port").to_string();
        assert!(
            err.contains("--view-port") && err.contains("spec.servers.web.port"),
            "{err}"
        );
        up.view_port = 0;
        prepare(&up).expect("no view, no clash");
    }

    #[test]
    fn clients_and_peers_reach_a_moved_peers_printer_and_index_where_they_are() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: family}\nspec:\n  peer: {network: family, index: study, port: 7101, ui: {port: 8190}}\n  servers:\n    print: {port: 8631}\n---\n\
            apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: study}\nspec:\n  peer: {network: family, index: study, port: 7101, ui: {port: 8190}}\n  servers:\n    index: {port: 7100}\n    print: {port: 8631}\n---\n\
            apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: laptop}\nspec:\n  clients:\n  - {service: print, server: study}\n";
        let mut up = options(dir.path(), text, "family");
        up.names.clear();
        up.data_dir = Some(dir.path().join("data"));
        let hosts = prepare(&up).expect("three hosts");
        // study is the second peer: its own ports are 10 up, and the others find them there.
        let study = &hosts[1].config;
        assert_eq!(study.print.as_ref().expect("printer").port, 8641);
        assert_eq!(study.index.as_ref().expect("index").port, 7110);
        let family = hosts[0].config.peer.as_ref().expect("peer");
        assert_eq!(family.index_url.as_deref(), Some("http://127.0.0.1:7110"));
        let probe = format!("{:?}", hosts[2].config.clients[0].target);
        assert!(probe.contains("127.0.0.1:8641/ipp/print"), "{probe}");
    }

    #[test]
    fn hosts_past_the_last_port_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut up = options(dir.path(), SEVERAL, "tracker");
        up.names.clear();
        up.admin_port = 65_533;
        let err = prepare(&up).expect_err("past 65535").to_string();
        assert!(err.contains("run past port 65535"), "{err}");
    }

    #[test]
    fn a_hybrid_manifest_gives_the_index_and_its_peers_the_manifest_secret() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = prepare_one(&options(dir.path(), HYBRID, "tracker"))
            .expect("tracker")
            .index
            .expect("index role");
        assert_eq!((index.port, index.ttl_seconds), (7100, 60));
        let secret = index.networks_dir.join("family");
        assert_eq!(std::fs::read(&secret).expect("secret"), b"s3cret \n");
        assert_eq!(mode(&secret) & 0o077, 0, "owner-only");

        let mut up = options(dir.path(), HYBRID, "family");
        up.port_offset = 10;
        let peer = prepare_one(&up).expect("family").peer.expect("peer role");
        assert_eq!(peer.index_url.as_deref(), Some("http://127.0.0.1:7100"));
        assert_eq!((peer.port, peer.ui_port), (7111, 8200));
        assert_eq!(peer.root, dir.path().join("family/share"));
        assert!(peer.root.is_dir(), "the share exists");
        assert_eq!(peer.quota_bytes, Some(1 << 20));
        assert_eq!(
            hostrole_p2p::auth::read_secret(&peer.secret_file).expect("secret"),
            b"s3cret"
        );
    }

    #[test]
    fn an_index_outside_the_manifest_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = HYBRID.replace("index: tracker", "index: elsewhere");
        let err = prepare_one(&options(dir.path(), &text, "family")).expect_err("refused");
        let err = err.to_string();
        assert!(err.contains("spec.peer.index"), "{err}");
        assert!(
            err.contains("elsewhere") && err.contains("tracker, family"),
            "{err}"
        );
    }

    #[test]
    fn without_a_secret_one_is_generated_once_and_decentralized_peers_seed_each_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: friends}\nspec:\n  peer: {network: friends, port: 7201}\n";
        let mut up = options(dir.path(), text, "friends");
        up.port_offset = 10;
        up.seeds = vec!["192.0.2.1:7201".into()];
        let first = prepare_one(&up).expect("first").peer.expect("peer");
        let secret = std::fs::read(&first.secret_file).expect("generated");
        assert_eq!(secret.len(), 64);
        let again = prepare_one(&up).expect("again").peer.expect("peer");
        assert_eq!(std::fs::read(&again.secret_file).expect("kept"), secret);
        assert_eq!(again.seeds, ["127.0.0.1:7201", "192.0.2.1:7201"]);
        assert!(again.index_url.is_none());
    }

    #[test]
    fn secrets_of_the_manifest_are_written_owner_only_where_a_pod_would_mount_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: accounts, labels: {hostrole.dev/use: \"true\"}}\nstringData: {users: \"alice:x\\n\"}\n---\n\
            apiVersion: v1\nkind: Secret\nmetadata: {name: cert, labels: {hostrole.dev/use: \"true\"}}\nstringData: {tls.crt: C, tls.key: K}\n---\n\
            apiVersion: v1\nkind: Secret\nmetadata: {name: login, labels: {hostrole.dev/use: \"true\"}}\nstringData: {username: alice, password: pw}\n---\n\
            apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: office}\nspec:\n  servers:\n    mail: {domains: [office.lan], users: {secret: accounts}, tls: {secret: cert}}\n  clients:\n    - {service: mail, server: office, credentials: {secret: login}}\n";
        let config = prepare_one(&options(dir.path(), text, "office")).expect("office");
        let mail = config.mail.expect("mail");
        let users = mail.users_file.expect("users file");
        assert_eq!(users, dir.path().join("office/users/mail/users"));
        assert_eq!(std::fs::read(&users).expect("users"), b"alice:x\n");
        let tls = mail.tls.expect("tls");
        assert_eq!(std::fs::read(&tls.key).expect("key"), b"K");
        assert_eq!(mode(&tls.key) & 0o077, 0);
        let client = &config.clients[0];
        let creds = client.credentials_dir.as_ref().expect("credentials");
        assert_eq!(std::fs::read(creds.join("password")).expect("pw"), b"pw");
        assert_eq!(mode(creds) & 0o077, 0, "directory owner-only");
        assert!(matches!(
            &client.target,
            hostrole_config::ClientTarget::Mail(t) if t.host == "127.0.0.1" && t.smtp_port == 2525
        ));
    }

    // Issue 19: `up` serves a peer over HTTPS from a Secret of the manifest; its ca.crt (the
    // network's CA) is written when the Secret has one and removed when it no longer does.
    #[test]
    fn a_peer_with_tls_gets_its_certificate_and_the_network_ca_from_the_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = |cert: &str| {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: cert, labels: {{hostrole.dev/use: \"true\"}}}}\nstringData: {{{cert}}}\n---\n\
                 apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: laptop}}\nspec:\n  peer: {{network: family, seeds: [\"192.0.2.1:7001\"], tls: {{secret: cert}}}}\n"
            )
        };
        let with_ca = manifest("tls.crt: C, tls.key: K, ca.crt: CA");
        let peer = prepare_one(&options(dir.path(), &with_ca, "laptop"))
            .expect("laptop")
            .peer
            .expect("peer");
        let tls = peer.tls.expect("tls");
        assert_eq!(std::fs::read(&tls.cert).expect("cert"), b"C");
        let ca = peer.network_ca.expect("the network's CA");
        assert_eq!(std::fs::read(&ca).expect("ca"), b"CA");
        assert_eq!(mode(&ca) & 0o077, 0);
        assert!(peer.index_ca.is_none(), "no index");

        let without = manifest("tls.crt: C, tls.key: K");
        let peer = prepare_one(&options(dir.path(), &without, "laptop"))
            .expect("laptop")
            .peer
            .expect("peer");
        let ca = peer.network_ca.expect("the path is still given");
        assert!(!ca.exists(), "a ca.crt of an earlier run is not kept");
    }

    #[test]
    fn a_secret_of_the_manifest_without_the_use_label_is_refused_as_in_a_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: login}\nstringData: {username: alice, password: pw}\n---\n\
            apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: laptop}\nspec:\n  clients:\n    - {service: web, url: \"http://127.0.0.1:1/\", credentials: {secret: login}}\n";
        let err = prepare_one(&options(dir.path(), text, "laptop"))
            .expect_err("not labelled for use")
            .to_string();
        assert!(
            err.contains("spec.clients[0].credentials.secret")
                && err.contains("login")
                && err.contains("hostrole.dev/use: \"true\""),
            "{err}"
        );
        assert!(
            !dir.path().join("laptop/clients").exists(),
            "nothing of the Secret was written"
        );
    }

    #[test]
    fn a_secret_missing_from_the_manifest_names_it_and_its_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "apiVersion: v1\nkind: Secret\nmetadata: {name: login, labels: {hostrole.dev/use: \"true\"}}\nstringData: {username: alice}\n---\n\
            apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: laptop}\nspec:\n  clients:\n    - {service: web, url: \"http://127.0.0.1:1/\", credentials: {secret: login}}\n";
        let err = prepare_one(&options(dir.path(), text, "laptop"))
            .expect_err("no password key")
            .to_string();
        assert!(
            err.contains("login") && err.contains("username, password"),
            "{err}"
        );
    }

    const RADIO: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: jingles, labels: {hostrole.dev/use: \"true\"}}\nbinaryData: {a.mp3: AAEC}\ndata: {notes.txt: hello}\n---\n\
        apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: station}\nspec:\n  servers:\n    radio:\n      mounts: [{path: /jingles, playlist: {configMap: jingles}}]\n";

    #[test]
    fn a_playlist_configmap_of_the_manifest_is_written_where_a_pod_would_mount_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let radio = prepare_one(&options(dir.path(), RADIO, "station"))
            .expect("station")
            .radio
            .expect("radio role");
        let playlist = radio.mounts[0].playlist_dir.clone().expect("a playlist");
        assert_eq!(
            std::fs::read(playlist.join("a.mp3")).expect("read"),
            [0, 1, 2]
        );
        assert_eq!(
            std::fs::read_to_string(playlist.join("notes.txt")).expect("read"),
            "hello"
        );
        // Not in the manifest: refused with the fix.
        let missing = RADIO.replace("name: jingles,", "name: other,");
        let err = prepare_one(&options(dir.path(), &missing, "station")).expect_err("refused");
        assert!(err.to_string().contains("jingles"), "{err}");
        // A key that is not a file name cannot write outside the playlist's directory.
        let escaping = RADIO.replace("a.mp3: AAEC", "../escaped.mp3: AAEC");
        let err = prepare_one(&options(dir.path(), &escaping, "station")).expect_err("refused");
        assert!(err.to_string().contains("not a file name"), "{err}");
        assert!(
            !playlist
                .parent()
                .expect("parent")
                .join("escaped.mp3")
                .exists()
        );
    }
}
