//! The clients of a standalone host. A client named `<service>-<position in spec.clients>`
//! uses either a HostRole of the same manifest, reached on loopback at its ports, or a URL as
//! written (mail: `smtp://host[:port][?imap=PORT&pop3=PORT&domain=D]`). Credentials come from a
//! `kubernetes.io/basic-auth` Secret of the same manifest (`username`, `password`), written
//! owner-only to `<data-dir>/clients/<name>/`.

use std::path::Path;
use std::time::Duration;

use hostrole_api::agent::{ClientConfig, ClientTarget, MailTarget};
use hostrole_api::{ClientService, HostRole};

use super::{Manifest, StandaloneError, write_private};

/// Client run defaults when the manifest does not say.
const DEFAULT_EVERY: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The clients of `hostrole`, resolved against the other HostRoles and Secrets of `manifest`.
pub(super) fn clients(
    hostrole: &HostRole,
    m: &Manifest,
    data_dir: &Path,
) -> Result<Vec<ClientConfig>, StandaloneError> {
    let mut configs = Vec::new();
    for (index, spec) in hostrole.spec.clients.iter().enumerate() {
        let name = spec.service.client_name(index);
        let (server, target) = match (&spec.server, &spec.url) {
            (Some(server), _) => (
                server.clone(),
                loopback_target(index, server, spec.service, m)?,
            ),
            (None, Some(url)) => (url.clone(), url_target(index, url, spec.service)?),
            (None, None) => {
                return Err(StandaloneError::ClientUrl {
                    index,
                    url: String::new(),
                    why: "is missing: set server or url".into(),
                });
            }
        };
        let duration = |field: &'static str, value: &Option<String>, default: Duration| match value
        {
            None => Ok(default),
            Some(v) => {
                hostrole_api::duration::parse(v).ok_or_else(|| StandaloneError::ClientDuration {
                    index,
                    field,
                    value: v.clone(),
                })
            }
        };
        let every = duration("every", &spec.every, DEFAULT_EVERY)?;
        let timeout = duration("timeout", &spec.timeout, DEFAULT_TIMEOUT)?;
        let credentials_dir = match &spec.credentials {
            None => None,
            Some(secret) => {
                let missing = || StandaloneError::ClientSecret {
                    index,
                    secret: secret.secret.clone(),
                    manifest: m.path.clone(),
                };
                let keys = m.secrets.get(&secret.secret).ok_or_else(missing)?;
                let (Some(username), Some(password)) = (keys.get("username"), keys.get("password"))
                else {
                    return Err(missing());
                };
                let dir = data_dir.join("clients").join(&name);
                write_private(&dir, "username", username)?;
                write_private(&dir, "password", password)?;
                owner_only(&dir)?;
                Some(dir)
            }
        };
        configs.push(ClientConfig {
            name,
            service: spec.service,
            server,
            target,
            every_ms: every.as_millis() as u64,
            timeout_ms: timeout.as_millis() as u64,
            path: spec.path.clone(),
            expect: spec.expect.clone(),
            credentials_dir,
        });
    }
    Ok(configs)
}

/// Makes a directory of secrets readable by its owner only.
fn owner_only(dir: &Path) -> Result<(), StandaloneError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|source| {
        StandaloneError::WriteSite {
            path: dir.to_path_buf(),
            source,
        }
    })
}

/// A HostRole of the same manifest, reached on loopback at its ports.
fn loopback_target(
    index: usize,
    server: &str,
    service: ClientService,
    m: &Manifest,
) -> Result<ClientTarget, StandaloneError> {
    let name = server.rsplit('/').next().unwrap_or(server);
    let Some(host) = m
        .hostroles
        .iter()
        .find(|h| h.metadata.name.as_deref() == Some(name))
    else {
        return Err(StandaloneError::ClientServerNotInManifest {
            index,
            server: server.to_string(),
            manifest: m.path.clone(),
            names: m
                .hostroles
                .iter()
                .filter_map(|h| h.metadata.name.clone())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let servers = &host.spec.servers;
    let no_role = || StandaloneError::ClientServerRole {
        index,
        server: server.to_string(),
        service: service.as_str(),
    };
    match service {
        ClientService::Web => {
            let web = servers.web.as_ref().ok_or_else(no_role)?;
            Ok(ClientTarget::Url(format!("http://127.0.0.1:{}/", web.port)))
        }
        ClientService::File => {
            let file = servers.file.as_ref().ok_or_else(no_role)?;
            Ok(ClientTarget::Url(format!(
                "http://127.0.0.1:{}/",
                file.port
            )))
        }
        ClientService::Mail => {
            let mail = servers.mail.as_ref().ok_or_else(no_role)?;
            Ok(ClientTarget::Mail(MailTarget {
                host: "127.0.0.1".into(),
                smtp_port: mail.smtp_port as u16,
                imap_port: Some(mail.imap_port as u16),
                pop3_port: Some(mail.pop3_port as u16),
                domain: mail.domains.first().cloned(),
            }))
        }
    }
}

/// A URL as written; for mail `smtp://host[:port]` (25 by default) with the query parameters
/// `imap=PORT` (required: the probe is read back over IMAP), `pop3=PORT` and `domain=D`.
fn url_target(
    index: usize,
    url: &str,
    service: ClientService,
) -> Result<ClientTarget, StandaloneError> {
    let bad = |why: &str| StandaloneError::ClientUrl {
        index,
        url: url.to_string(),
        why: why.to_string(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    match service {
        ClientService::Web | ClientService::File => {
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(bad("must be an http:// or https:// URL"));
            }
            Ok(ClientTarget::Url(url.to_string()))
        }
        ClientService::Mail => hostrole_api::target::mail_target_from_url(url)
            .map(ClientTarget::Mail)
            .map_err(|e| {
                bad(&format!(
                    "{} ({})",
                    e.why,
                    hostrole_api::target::MAIL_URL_FORM
                ))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_urls_are_used_as_written_and_mail_urls_name_their_ports() {
        assert_eq!(
            url_target(0, "http://example.lan/", ClientService::Web).expect("web"),
            ClientTarget::Url("http://example.lan/".into())
        );
        assert_eq!(
            url_target(
                1,
                "smtp://mail.example.lan:2525?imap=1143&domain=example.lan",
                ClientService::Mail
            )
            .expect("mail"),
            ClientTarget::Mail(MailTarget {
                host: "mail.example.lan".into(),
                smtp_port: 2525,
                imap_port: Some(1143),
                pop3_port: None,
                domain: Some("example.lan".into()),
            })
        );
        let default_port =
            url_target(2, "smtp://10.0.0.5?imap=143", ClientService::Mail).expect("mail");
        assert!(matches!(
            default_port,
            ClientTarget::Mail(MailTarget { smtp_port: 25, .. })
        ));
        for (url, service, needle) in [
            ("smtp://m.lan:25", ClientService::Mail, "imap=PORT"),
            ("smtp://m.lan:25?imap=x", ClientService::Mail, "not a port"),
            (
                "smtp://m.lan:25?imap=1&user=x",
                ClientService::Mail,
                "unknown parameter",
            ),
            ("http://m.lan/", ClientService::Mail, "smtp://"),
            ("ftp://m.lan/", ClientService::File, "http://"),
        ] {
            let err = url_target(3, url, service).expect_err(url).to_string();
            assert!(err.starts_with("spec.clients[3].url"), "{err}");
            assert!(err.contains(needle), "{url}: {err}");
        }
    }
}
