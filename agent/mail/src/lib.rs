//! The mail role: SMTP delivery into one Maildir per user, SMTP submission with AUTH, and
//! retrieval over POP3 and IMAP4rev1.
//!
//! Laid out like tokio-rs/mini-redis: [`listener`] accepts connections for every protocol
//! (bounded per listener and per client address, idle sessions evicted when full, stopped
//! gracefully), [`session`] drives every session's read loop (timeouts, error and login
//! limits, goodbyes), [`conn`] reads lines with length limits and timeouts, each protocol has
//! a pure parser (`hostrole-proto`, fuzzed in `fuzz/`) apart from its session type
//! (`*/mod.rs`, implementing [`session::LineProtocol`]), and
//! [`store`] is the Maildir: a message is streamed to `tmp/`, fsynced, and linked into `new/`
//! before the server says `250`. Mail that submission takes for other domains goes to
//! [`queue`] (`<root>/.queue`, on disk before the `250`), delivered by [`outbound`] and bounced
//! with [`dsn`] reports.

mod conn;
mod dsn;
mod folders;
mod listener;
mod outbound;
mod queue;
mod quickack;
mod quota;
mod sasl;
mod session;
mod store;
mod time;
mod tls;

pub mod imap;
pub mod pop3;
pub mod smtp;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hostrole_config::MailRoleConfig;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use hostrole_agent_core::Role;
use hostrole_agent_core::metrics::{AgentMetrics, Direction, Outcome, Reason};
use hostrole_agent_core::net::{self, BindError, ClientKey};
use hostrole_agent_core::users::{Check, Users, UsersError};

pub use listener::Protocol;
use store::Store;

/// The role's name in logs, metrics and readiness.
pub const ROLE: &str = "mail";

/// Why the mail role could not start.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("mail role: {0}")]
    Users(#[from] UsersError),
    #[error("mail role: the mail store {path} is not usable: {what}: {source}")]
    Storage {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("mail role: the user name {0:?} cannot name a mailbox (it starts with '.')")]
    BadUserName(String),
    #[error(
        "mail role: postmaster: {0:?} is not a user in the users file; name one of them, or leave postmaster out"
    )]
    Postmaster(String),
    #[error("mail role: the TLS file {path} is not usable: {what}")]
    Tls { path: PathBuf, what: String },
    #[error(
        "mail role: {0} is an implicit-TLS port and needs a certificate: give tls, or leave the port out"
    )]
    ImplicitTlsWithoutCertificate(&'static str),
}

/// How long a failed login waits before its answer.
const AUTH_FAILURE_DELAY: Duration = Duration::from_millis(300);

/// What every session of the role shares.
pub(crate) struct Shared {
    pub hostname: String,
    /// Local domains, lower-case.
    pub domains: Vec<String>,
    pub users: Arc<Users>,
    pub store: Store,
    pub max_message_bytes: u64,
    /// Per-mailbox quota.
    pub quota: quota::Quota,
    pub max_connections: usize,
    pub metrics: AgentMetrics,
    /// STARTTLS is offered when set.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Passwords may travel on connections without TLS.
    pub allow_plaintext_auth: bool,
    /// The mailbox `postmaster@` each local domain is delivered to.
    pub postmaster: Option<String>,
    /// The outbound queue, when the host sends mail to other domains.
    pub queue: Option<Arc<queue::Queue>>,
}

impl Shared {
    /// Checks a password for a client at `peer` (agent-core bounds the hashes at once and backs
    /// off after failures, per address and per account). A failure waits a little more, to
    /// slow down guessing.
    pub async fn verify(
        &self,
        peer: SocketAddr,
        name: &str,
        password: &str,
    ) -> Option<hostrole_agent_core::users::User> {
        let client = ClientKey::of(peer.ip());
        match self.users.check(Some(client), name, password).await {
            Check::Valid(user) => Some(user),
            Check::Invalid => {
                tokio::time::sleep(AUTH_FAILURE_DELAY).await;
                None
            }
            Check::Throttled => {
                self.metrics.error(ROLE, Reason::AuthThrottled);
                tokio::time::sleep(AUTH_FAILURE_DELAY).await;
                None
            }
        }
    }

    /// The mailbox of a local part, if one exists: exact name first, then lower-case;
    /// `postmaster` (any case) always has one when the host has users (RFC 5321 section 4.5.1).
    pub fn mailbox_of(&self, local: &str) -> Option<String> {
        if self.users.exists(local) {
            return Some(local.to_string());
        }
        let lower = local.to_ascii_lowercase();
        if self.users.exists(&lower) {
            return Some(lower);
        }
        if lower == "postmaster" {
            return self.postmaster.clone();
        }
        None
    }

    /// Whether a session may log in with a password: on TLS (implicit, or after STARTTLS), or
    /// anywhere when the configuration allows passwords in the clear.
    pub fn password_allowed(&self, conn_tls: bool) -> bool {
        conn_tls || self.allow_plaintext_auth
    }

    pub fn is_local_domain(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        self.domains.contains(&domain)
    }

    /// Counts one answered command.
    pub fn count(&self, protocol: Protocol, verb: &'static str, outcome: Outcome) {
        self.metrics.command(protocol.name(), verb, outcome);
    }

    /// Counts a failure.
    pub fn error(&self, protocol: Protocol, reason: Reason) {
        self.metrics.error(protocol.name(), reason);
    }

    /// Counts payload bytes.
    pub fn moved(&self, protocol: Protocol, direction: Direction, bytes: u64) {
        self.metrics.moved(protocol.name(), direction, bytes);
    }
}

/// The mail role with its four listeners bound and its store checked.
pub struct Mail {
    listeners: Vec<(listener::Listen, SocketAddr)>,
    shared: Arc<Shared>,
}

impl Mail {
    /// Loads the users, prepares the Maildirs (creating what is missing, removing what a crash
    /// left in `tmp/`, proving the store writable) and binds SMTP, submission, IMAP and POP3.
    pub async fn bind(
        config: &MailRoleConfig,
        ip: IpAddr,
        metrics: &AgentMetrics,
    ) -> Result<Mail, MailError> {
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        if tls.is_none() {
            let implicit = [
                ("imaps", config.imaps_port),
                ("pop3s", config.pop3s_port),
                ("submissions", config.submissions_port),
            ];
            if let Some((name, _)) = implicit.iter().find(|(_, port)| port.is_some()) {
                return Err(MailError::ImplicitTlsWithoutCertificate(name));
            }
        }
        let users = match &config.users_file {
            Some(path) => Users::load(path)?,
            None => Users::none(),
        };
        let root = config.root.clone();
        let names: Vec<String> = users.names().map(str::to_string).collect();
        let postmaster = match &config.postmaster {
            Some(name) if users.exists(name) => Some(name.clone()),
            Some(name) => return Err(MailError::Postmaster(name.clone())),
            None => names.iter().min().cloned(),
        };
        // Mailboxes are directories named after users: `.` and `..` must not be one.
        if let Some(bad) = names.iter().find(|n| n.starts_with('.')) {
            return Err(MailError::BadUserName(bad.clone()));
        }
        let hostname = config.hostname.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(root, &hostname, &names))
            .await
            .map_err(|e| MailError::Storage {
                path: config.root.clone(),
                what: "preparing the store",
                source: std::io::Error::other(e),
            })??;
        let queue = match &config.outbound {
            Some(outbound) => {
                let (root, outbound) = (config.root.clone(), outbound.clone());
                let queue =
                    tokio::task::spawn_blocking(move || queue::Queue::open(&root, outbound))
                        .await
                        .map_err(|e| MailError::Storage {
                            path: config.root.clone(),
                            what: "opening the outbound queue",
                            source: std::io::Error::other(e),
                        })??;
                Some(Arc::new(queue))
            }
            None => None,
        };
        let mut listeners = Vec::new();
        let plain = [
            (Protocol::Smtp, config.smtp_port),
            (Protocol::Submission, config.submission_port),
            (Protocol::Imap, config.imap_port),
            (Protocol::Pop3, config.pop3_port),
        ]
        .map(|(protocol, port)| (protocol, protocol.name(), Some(port), false));
        // RFC 8314: the same protocols with the handshake first, beside STARTTLS.
        let implicit = [
            (Protocol::Imap, "imaps", config.imaps_port, true),
            (Protocol::Pop3, "pop3s", config.pop3s_port, true),
            (
                Protocol::Submission,
                "submissions",
                config.submissions_port,
                true,
            ),
        ];
        for (protocol, name, port, implicit) in plain.into_iter().chain(implicit) {
            let Some(port) = port else { continue };
            let implicit_tls = match (implicit, &tls) {
                (false, _) => None,
                (true, Some(acceptor)) => Some(acceptor.clone()),
                (true, None) => return Err(MailError::ImplicitTlsWithoutCertificate(name)),
            };
            let addr = SocketAddr::new(ip, port);
            let listener = net::bind(name, addr).await?;
            let local = listener.local_addr().map_err(|source| BindError {
                role: name.to_string(),
                addr,
                source,
            })?;
            listeners.push((
                listener::Listen {
                    protocol,
                    name,
                    listener,
                    implicit_tls,
                },
                local,
            ));
        }
        Ok(Mail {
            listeners,
            shared: Arc::new(Shared {
                hostname: config.hostname.clone(),
                domains: config
                    .domains
                    .iter()
                    .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                    .collect(),
                users: Arc::new(users),
                store,
                max_message_bytes: config.max_message_bytes,
                quota: quota::Quota::new(config.root.clone(), config.mailbox_quota_bytes),
                max_connections: config.max_connections,
                metrics: metrics.clone(),
                tls,
                allow_plaintext_auth: config.allow_plaintext_auth,
                postmaster,
                queue,
            }),
        })
    }
}

impl Role for Mail {
    fn name(&self) -> &'static str {
        ROLE
    }

    fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        self.listeners
            .iter()
            .map(|(listen, addr)| (listen.name, *addr))
            .collect()
    }

    fn run(
        self: Box<Self>,
        stop: CancellationToken,
        grace: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut servers = JoinSet::new();
            if let Some(queue) = self.shared.queue.clone() {
                servers.spawn(outbound::run(
                    self.shared.clone(),
                    queue,
                    stop.clone(),
                    grace,
                ));
            }
            for (listen, _) in self.listeners {
                servers.spawn(listener::serve(
                    listen,
                    self.shared.clone(),
                    stop.clone(),
                    grace,
                ));
            }
            while servers.join_next().await.is_some() {}
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(root: PathBuf) -> MailRoleConfig {
        MailRoleConfig {
            hostname: "mail.test".into(),
            smtp_port: 0,
            submission_port: 0,
            imap_port: 0,
            pop3_port: 0,
            domains: vec!["test".into()],
            root,
            users_file: None,
            max_message_bytes: 1 << 20,
            mailbox_quota_bytes: None,
            tls: None,
            imaps_port: None,
            pop3s_port: None,
            submissions_port: None,
            allow_plaintext_auth: false,
            max_connections: 4,
            postmaster: None,
            outbound: None,
        }
    }

    #[tokio::test]
    async fn an_implicit_tls_port_without_a_certificate_is_refused_before_anything_is_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics = AgentMetrics::default();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let plain = Mail::bind(&config(dir.path().join("a")), ip, &metrics)
            .await
            .expect("binds");
        let names: Vec<&str> = plain.addresses().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["smtp", "submission", "imap", "pop3"]);
        let mut with_pop3s = config(dir.path().join("b"));
        with_pop3s.pop3s_port = Some(0);
        let Err(err) = Mail::bind(&with_pop3s, ip, &metrics).await else {
            panic!("POP3S without a certificate was bound");
        };
        assert!(
            matches!(err, MailError::ImplicitTlsWithoutCertificate("pop3s")),
            "{err}"
        );
        assert!(
            !dir.path().join("b").exists(),
            "refused before the store is prepared"
        );
    }
}
