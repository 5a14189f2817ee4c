//! `hostrole-agent up MANIFEST`: serve a HostRole's roles on this machine, without a cluster.
//! The manifest is judged by the same schema and CEL rules as in a cluster.

mod clients;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use hostrole_api::AnonymousAccess;
use hostrole_api::agent::USERS_KEY;
use hostrole_api::agent::{
    AgentConfig, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_MESSAGE, DEFAULT_MAX_UPLOAD, FileRoleConfig,
    MailRoleConfig, TlsFiles, WebRoleConfig, inline_site_files,
};
use hostrole_api::manifest::{self, ManifestError};
use hostrole_api::quantity::parse_bytes;
use hostrole_api::{HostRole, SiteFile, UsersRef};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Deserialize;

mod p2p;

/// Why a manifest cannot be served standalone.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path} holds no HostRole")]
    NoHostRole { path: PathBuf },
    #[error("{path} holds several HostRoles ({names}): choose one with --name")]
    Ambiguous { path: PathBuf, names: String },
    #[error("{path} holds no HostRole named {name} (it holds: {names})")]
    NotFound {
        path: PathBuf,
        name: String,
        names: String,
    },
    #[error(
        "{field} needs a cluster (it names an object in the cluster); for a standalone host use {instead}"
    )]
    NeedsCluster {
        field: &'static str,
        instead: &'static str,
    },
    #[error(
        "the Secret {secret} is not in {manifest} (standalone, a users Secret must stand in the same file with a `users` key), or use users.file"
    )]
    SecretNotInManifest { secret: String, manifest: PathBuf },
    #[error(
        "spec.clients[{index}].server: no HostRole named {server} in {manifest} (it holds: {names}); standalone, a client's server must stand in the same manifest, or use url: instead (e.g. url: http://127.0.0.1:8080/)"
    )]
    ClientServerNotInManifest {
        index: usize,
        server: String,
        manifest: PathBuf,
        names: String,
    },
    #[error(
        "spec.clients[{index}].server: the HostRole {server} serves no {service} role (spec.servers.{service}): point the client at a HostRole that does, or use url:"
    )]
    ClientServerRole {
        index: usize,
        server: String,
        service: &'static str,
    },
    #[error("spec.clients[{index}].url: {url:?} {why}")]
    ClientUrl {
        index: usize,
        url: String,
        why: String,
    },
    #[error(
        "spec.clients[{index}].{field}: {value:?} is not a duration (write it like 500ms, 30s, 5m or 1h30m)"
    )]
    ClientDuration {
        index: usize,
        field: &'static str,
        value: String,
    },
    #[error(
        "spec.clients[{index}].credentials: the Secret {secret} is not in {manifest} with keys username and password (standalone, a kubernetes.io/basic-auth Secret must stand in the same file)"
    )]
    ClientSecret {
        index: usize,
        secret: String,
        manifest: PathBuf,
    },
    #[error("{field}: {value:?} is not a size (write it like 1Gi, 500Mi or 1048576)")]
    Size { field: &'static str, value: String },
    #[error("{field}: {path} is not a directory: {source}")]
    SitePath {
        field: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the inline site files to {path}: {source}")]
    WriteSite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How to run a manifest standalone.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub manifest: PathBuf,
    /// Which HostRole, when the manifest holds several.
    pub name: Option<String>,
    pub bind: IpAddr,
    pub admin_port: u16,
    /// Where inline files are written; a per-user state directory when absent.
    pub data_dir: Option<PathBuf>,
    /// Added to this agent's own index, peer and peer UI ports (not to the index or seeds it
    /// uses), to run several peers on one machine.
    pub port_offset: u16,
    /// Decentralized peers: more `host:port` addresses of peers to start from.
    pub seeds: Vec<String>,
}

/// Reads the manifest and prepares everything its roles need on this machine.
pub fn prepare(options: &UpOptions) -> Result<AgentConfig, StandaloneError> {
    // Read and judged once; the roles resolve their references and Secrets against it.
    let m = Manifest::read(&options.manifest)?;
    let hostrole = choose(m.hostroles.clone(), options)?;
    let name = hostrole
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| "host".into());
    let base = options
        .manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let data_dir = options
        .data_dir
        .clone()
        .unwrap_or_else(|| default_data_dir(&name));

    let web = match &hostrole.spec.servers.web {
        None => None,
        Some(web) => {
            let site = web.site.as_ref();
            let root = if site.is_some_and(|s| s.config_map.is_some()) {
                return Err(StandaloneError::NeedsCluster {
                    field: "spec.servers.web.site.configMap",
                    instead: "site.path or site.files",
                });
            } else if let Some(path) = site.and_then(|s| s.path.as_deref()) {
                site_path(&base.join(path))?
            } else {
                let files = inline_site_files(&name, &hostrole.spec).unwrap_or_default();
                write_site(&data_dir, &files)?
            };
            Some(WebRoleConfig {
                port: web.port as u16,
                root,
                max_connections: web
                    .max_connections
                    .map_or(DEFAULT_MAX_CONNECTIONS, |m| m as usize),
            })
        }
    };
    Ok(AgentConfig {
        host_role: name,
        namespace: None,
        bind: options.bind,
        admin_port: options.admin_port,
        shutdown_grace_seconds: 10,
        web,
        file: file_role(&hostrole, &m, &base, &data_dir)?,
        mail: mail_role(&hostrole, &m, &base, &data_dir)?,
        index: p2p::index_role(&hostrole, &m, options, &data_dir)?,
        peer: p2p::peer_role(&hostrole, &m, options, &data_dir)?,
        clients: clients::clients(&hostrole, &m, &data_dir)?,
        http: None,
    })
}

/// The Secrets of a manifest: name → key → bytes.
type Secrets = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// A manifest file, read once: its HostRoles (validated) and its Secrets.
struct Manifest {
    path: PathBuf,
    hostroles: Vec<HostRole>,
    secrets: Secrets,
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
            hostroles: manifest::parse_all(&text, &path.display().to_string())?,
            secrets: secrets_in(&text),
        })
    }

    /// The keys of Secret `name`, or the error that says the manifest lacks it.
    fn secret(&self, name: &str) -> Result<&BTreeMap<String, Vec<u8>>, StandaloneError> {
        self.secrets
            .get(name)
            .ok_or_else(|| self.missing_secret(name))
    }

    fn missing_secret(&self, name: &str) -> StandaloneError {
        StandaloneError::SecretNotInManifest {
            secret: name.to_string(),
            manifest: self.path.clone(),
        }
    }
}

/// The file role on this machine: the share lives in `<data-dir>/file`.
fn file_role(
    hostrole: &HostRole,
    m: &Manifest,
    base: &Path,
    data_dir: &Path,
) -> Result<Option<FileRoleConfig>, StandaloneError> {
    let Some(file) = &hostrole.spec.servers.file else {
        return Ok(None);
    };
    let users_file = users_file(file.users.as_ref(), m, base, data_dir, "file")?;
    Ok(Some(FileRoleConfig {
        port: file.port as u16,
        root: data_dir.join("file"),
        users_file,
        anonymous: file.anonymous.unwrap_or(AnonymousAccess::None),
        quota_bytes: size("spec.servers.file.storage", file.storage.as_ref())?,
        max_upload_bytes: size(
            "spec.servers.file.maxUploadSize",
            file.max_upload_size.as_ref(),
        )?
        .unwrap_or(DEFAULT_MAX_UPLOAD),
        max_connections: DEFAULT_MAX_CONNECTIONS,
    }))
}

/// The mail role on this machine: Maildirs live in `<data-dir>/mail`.
fn mail_role(
    hostrole: &HostRole,
    m: &Manifest,
    base: &Path,
    data_dir: &Path,
) -> Result<Option<MailRoleConfig>, StandaloneError> {
    let Some(mail) = &hostrole.spec.servers.mail else {
        return Ok(None);
    };
    let users_file = users_file(mail.users.as_ref(), m, base, data_dir, "mail")?;
    let tls = match &mail.tls {
        Some(secret) => Some(secret_tls(m, &secret.secret, data_dir)?),
        None => None,
    };
    Ok(Some(MailRoleConfig {
        hostname: hostrole
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| "localhost".into()),
        smtp_port: mail.smtp_port as u16,
        submission_port: mail.submission_port as u16,
        imap_port: mail.imap_port as u16,
        pop3_port: mail.pop3_port as u16,
        domains: mail.domains.clone(),
        root: data_dir.join("mail"),
        users_file,
        max_message_bytes: size(
            "spec.servers.mail.maxMessageSize",
            mail.max_message_size.as_ref(),
        )?
        .unwrap_or(DEFAULT_MAX_MESSAGE),
        tls,
        max_connections: DEFAULT_MAX_CONNECTIONS,
    }))
}

/// A `kubernetes.io/tls` Secret standalone: read from the same manifest (`tls.crt`, `tls.key`)
/// and written owner-only to `<data-dir>/tls/`.
fn secret_tls(m: &Manifest, secret: &str, data_dir: &Path) -> Result<TlsFiles, StandaloneError> {
    let keys = m.secret(secret)?;
    let (Some(cert), Some(key)) = (keys.get("tls.crt"), keys.get("tls.key")) else {
        return Err(m.missing_secret(secret));
    };
    let dir = data_dir.join("tls");
    Ok(TlsFiles {
        cert: write_private(&dir, "tls.crt", cert)?,
        key: write_private(&dir, "tls.key", key)?,
    })
}

/// Writes `bytes` to `<dir>/<name>` readable by the owner only, atomically.
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, StandaloneError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let write_err = |source| StandaloneError::WriteSite {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(write_err)?;
    let staging = dir.join(format!(".{name}.tmp"));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&staging)
        .map_err(write_err)?;
    out.write_all(bytes).map_err(write_err)?;
    out.sync_all().map_err(write_err)?;
    std::fs::rename(&staging, &path).map_err(write_err)?;
    Ok(path)
}

/// Where a role's accounts come from on this machine: a users file beside the manifest, or a
/// Secret in the manifest (see [`secret_users`]).
fn users_file(
    users: Option<&UsersRef>,
    m: &Manifest,
    base: &Path,
    data_dir: &Path,
    role: &str,
) -> Result<Option<PathBuf>, StandaloneError> {
    let Some(users) = users else { return Ok(None) };
    match (&users.secret, &users.file) {
        (Some(secret), _) => secret_users(m, secret, data_dir, role).map(Some),
        (None, Some(file)) => Ok(Some(base.join(file))),
        (None, None) => Ok(None),
    }
}

/// A users Secret standalone: the Secret must stand in the same manifest; its `users` key is
/// written (owner-only) to `<data-dir>/users/<role>` and that file is used.
fn secret_users(
    m: &Manifest,
    secret: &str,
    data_dir: &Path,
    role: &str,
) -> Result<PathBuf, StandaloneError> {
    let users = m
        .secret(secret)?
        .get(USERS_KEY)
        .ok_or_else(|| m.missing_secret(secret))?;
    write_private(&data_dir.join("users"), role, users)
}

/// The Secrets of a multi-document manifest: name → key → bytes (`data` is base64,
/// `stringData` is text and wins, as on the API server).
fn secrets_in(text: &str) -> Secrets {
    use base64::Engine;
    let mut secrets = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let Ok(value) = serde_yaml::Value::deserialize(doc) else {
            continue;
        };
        if value.get("kind").and_then(|k| k.as_str()) != Some("Secret") {
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
        if let Some(data) = value.get("data").and_then(|d| d.as_mapping()) {
            for (k, v) in data {
                if let (Some(k), Some(v)) = (k.as_str(), v.as_str())
                    && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(v.trim())
                {
                    keys.insert(k.to_string(), bytes);
                }
            }
        }
        if let Some(data) = value.get("stringData").and_then(|d| d.as_mapping()) {
            for (k, v) in data {
                if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                    keys.insert(k.to_string(), v.as_bytes().to_vec());
                }
            }
        }
        secrets.insert(name.to_string(), keys);
    }
    secrets
}

fn size(field: &'static str, quantity: Option<&Quantity>) -> Result<Option<u64>, StandaloneError> {
    quantity
        .map(|q| {
            parse_bytes(&q.0).ok_or_else(|| StandaloneError::Size {
                field,
                value: q.0.clone(),
            })
        })
        .transpose()
}

fn choose(mut hostroles: Vec<HostRole>, options: &UpOptions) -> Result<HostRole, StandaloneError> {
    let path = options.manifest.clone();
    let names = || {
        hostroles
            .iter()
            .filter_map(|h| h.metadata.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (&options.name, hostroles.len()) {
        (_, 0) => Err(StandaloneError::NoHostRole { path }),
        (None, 1) => Ok(hostroles.remove(0)),
        (None, _) => Err(StandaloneError::Ambiguous {
            path,
            names: names(),
        }),
        (Some(name), _) => match hostroles
            .iter()
            .position(|h| h.metadata.name.as_ref() == Some(name))
        {
            Some(i) => Ok(hostroles.remove(i)),
            None => Err(StandaloneError::NotFound {
                path,
                name: name.clone(),
                names: names(),
            }),
        },
    }
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
        move |source| StandaloneError::WriteSite { path, source }
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
        move |source| StandaloneError::WriteSite { path, source }
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
}
