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
//! before the server says `250`.

mod conn;
mod folders;
mod listener;
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
    /// The mailbox `postmaster@` each local domain is delivered to.
    pub postmaster: Option<String>,
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
        let mut listeners = Vec::new();
        for (protocol, port) in [
            (Protocol::Smtp, config.smtp_port),
            (Protocol::Submission, config.submission_port),
            (Protocol::Imap, config.imap_port),
            (Protocol::Pop3, config.pop3_port),
        ] {
            let addr = SocketAddr::new(ip, port);
            let listener = net::bind(protocol.name(), addr).await?;
            let local = listener.local_addr().map_err(|source| BindError {
                role: protocol.name().to_string(),
                addr,
                source,
            })?;
            listeners.push((
                listener::Listen {
                    protocol,
                    listener,
                    implicit_tls: None,
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
                postmaster,
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
            .map(|(listen, addr)| (listen.protocol.name(), *addr))
            .collect()
    }

    fn run(
        self: Box<Self>,
        stop: CancellationToken,
        grace: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut servers = JoinSet::new();
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
