//! The agent's configuration: what the operator renders into the host's ConfigMap and what the
//! standalone agent derives from a manifest. One format, so a host runs the same way in a pod
//! and on a laptop.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::hostrole::{HostRoleSpec, SiteFile};

/// Key of the rendered configuration in the host ConfigMap, and its file name in the pod.
pub const CONFIG_KEY: &str = "agent.yaml";
/// Where the pod mounts the configuration.
pub const CONFIG_DIR: &str = "/etc/hostrole";
/// Where the pod mounts the web site.
pub const SITE_DIR: &str = "/srv/hostrole/site";
/// Connections the web role serves at once when the manifest does not say.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Where the pod mounts the file role's volume.
pub const FILE_DIR: &str = "/var/lib/hostrole/file";
/// Where the pod mounts the mail role's volume.
pub const MAIL_DIR: &str = "/var/lib/hostrole/mail";
/// Where the pod mounts a role's users Secret (`<dir>/<role>/users`).
pub const USERS_DIR: &str = "/etc/hostrole/users";
/// Key of the users file in a users Secret.
pub const USERS_KEY: &str = "users";
/// Largest upload when the manifest does not say: 1 GiB.
pub const DEFAULT_MAX_UPLOAD: u64 = 1 << 30;
/// Largest message when the manifest does not say: 25 MiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 25 << 20;

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
    pub anonymous: crate::hostrole::AnonymousAccess,
    /// Most bytes the share may hold; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    /// Largest single upload.
    pub max_upload_bytes: u64,
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
    /// Certificate and key for STARTTLS; no STARTTLS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Most connections per protocol at once.
    pub max_connections: usize,
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
}

/// The inline files of a web site, or the generated page when the manifest names no site.
/// `None` when the site comes from a ConfigMap or a path, or the host has no web role.
pub fn inline_site_files(name: &str, spec: &HostRoleSpec) -> Option<Vec<SiteFile>> {
    let web = spec.servers.web.as_ref()?;
    match &web.site {
        Some(site) => site.files.clone(),
        None => Some(vec![SiteFile {
            path: "index.html".into(),
            content: default_page(name),
        }]),
    }
}

fn default_page(name: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>{name}</title></head>\n\
         <body>\n<h1>{name}</h1>\n<p>This host is served by hostrole. Set <code>spec.servers.web.site</code> \
         to publish your own pages.</p>\n</body>\n</html>\n"
    )
}
