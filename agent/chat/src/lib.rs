//! The chat role: an IRC server (RFC 1459/2812 as modern clients use it, with the IRCv3
//! capabilities `server-time`, `echo-message`, `multi-prefix`, `message-tags` and `sasl`).
//!
//! A functional core and a thin shell: [`core`] is the whole server state and every rule, pure
//! (lines and events in, effects out, no I/O, no clock of its own); `server` is the shell that
//! binds the plain and implicit-TLS ports, reads lines with flood control, writes through
//! bounded send queues, keeps the timeouts and checks passwords off the event loop.
//!
//! Choices:
//! - Nicks and channel names compare under `CASEMAPPING=ascii`.
//! - With `require_login`, a client registers only once logged in (SASL PLAIN, or
//!   `PASS account:password`; a `PASS` without `:` pairs the password with the nick), and its
//!   nick must start with its account name, case-insensitively (`alice`, `Alice_`, `alice2`);
//!   another nick is answered with 432 and the client may pick again until the registration
//!   timeout. Without `require_login` a login is optional and any nick is fine.
//! - Passwords (SASL, `PASS`) are accepted on the TLS port, or on the plain port only with
//!   `allow_plaintext_auth`; elsewhere `sasl` is not offered and `PASS` gets 464.
//! - Limits against hostile clients ([`Tuning`] has the defaults): lines of 512 bytes plus
//!   4094 bytes of tags (longer: 417, skipped); `NICKLEN`, `CHANNELLEN=50`, `CHANLIMIT`, the
//!   server's channel count (405); a token bucket per connection (20 lines, then 2 a second;
//!   beyond it nothing more is read from the connection, and after 10 s of that it is closed
//!   with "Excess Flood"); 1 MiB of unsent output per connection ("SendQ exceeded"); 30 s to
//!   register; a `PING` after 120 s of silence and 60 s to answer it; `max_connections` over
//!   both ports, each address holding its share (agent-core's registry: when full, the
//!   longest-idle *unregistered* connection makes room; registered ones are never evicted);
//!   failed logins throttled per address and account by agent-core's users module.
pub mod core;
mod server;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hostrole_agent_core::Role;
use hostrole_agent_core::metrics::AgentMetrics;
use hostrole_agent_core::net::{self, BindError};
use hostrole_agent_core::users::{Users, UsersError};
use hostrole_config::ChatRoleConfig;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use server::Tuning;

/// The role's name in logs, metrics and readiness.
pub const ROLE: &str = "chat";

/// Why the chat role could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("chat role: {0}")]
    Users(#[from] UsersError),
    #[error("chat role: the TLS file {path} is not usable: {what}")]
    Tls { path: PathBuf, what: String },
    #[error("chat role: tlsPort needs a certificate: give tls, or leave tlsPort out")]
    TlsPortWithoutCertificate,
}

/// The chat role with its listeners bound.
pub struct Chat {
    listeners: Vec<(server::Listen, SocketAddr)>,
    hub: Arc<server::Hub>,
    max_connections: usize,
}

impl Chat {
    /// Loads the users file and binds the plain port and, with a certificate, the TLS port.
    pub async fn bind(
        config: &ChatRoleConfig,
        ip: IpAddr,
        metrics: &AgentMetrics,
    ) -> Result<Chat, ChatError> {
        Self::bind_tuned(config, ip, metrics, Tuning::default()).await
    }

    /// [`Chat::bind`] with other timeouts and per-connection limits.
    pub async fn bind_tuned(
        config: &ChatRoleConfig,
        ip: IpAddr,
        metrics: &AgentMetrics,
        tuning: Tuning,
    ) -> Result<Chat, ChatError> {
        let tls = match (&config.tls, config.tls_port) {
            (Some(files), _) => {
                Some(hostrole_agent_core::tls::acceptor(files, &[]).map_err(|e| {
                    ChatError::Tls {
                        path: e.path,
                        what: e.what,
                    }
                })?)
            }
            (None, Some(_)) => return Err(ChatError::TlsPortWithoutCertificate),
            (None, None) => None,
        };
        let users = match &config.users_file {
            Some(path) => Users::load(path)?,
            None => Users::none(),
        };
        if config.require_login && users.is_empty() {
            // Fail closed, and keep serving: in a cluster this is a users Secret the HostRole
            // may not use yet (its status says why); every registration is refused until then.
            tracing::warn!(
                role = ROLE,
                "requireLogin without accounts: every connection is refused until the users file has some"
            );
        }
        let settings = core::Settings {
            server_name: config.server_name.clone(),
            network: config.network.clone(),
            nick_length: config.nick_length.max(1),
            max_channels: config.max_channels,
            max_channels_per_client: config.max_channels_per_client,
            motd: config
                .motd
                .as_ref()
                .map(|m| m.lines().map(str::to_string).collect()),
            require_login: config.require_login,
            allow_plaintext_auth: config.allow_plaintext_auth,
            has_accounts: !users.is_empty(),
        };
        let mut listeners = Vec::new();
        let ports = [
            ("irc", Some(config.port), None),
            ("ircs", config.tls_port, tls),
        ];
        for (name, port, tls) in ports {
            let Some(port) = port else { continue };
            let addr = SocketAddr::new(ip, port);
            let listener = net::bind(ROLE, addr).await?;
            let local = listener.local_addr().map_err(|source| BindError {
                role: ROLE.to_string(),
                addr,
                source,
            })?;
            listeners.push((
                server::Listen {
                    name,
                    listener,
                    tls,
                },
                local,
            ));
        }
        let hub = server::Hub::new(
            core::Server::new(settings, SystemTime::now()),
            Arc::new(users),
            metrics.clone(),
            tuning,
            config.server_name.clone(),
            config.max_connections,
        );
        Ok(Chat {
            listeners,
            hub: Arc::new(hub),
            max_connections: config.max_connections,
        })
    }
}

impl Role for Chat {
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
            let admit = Arc::new(server::Admit::new(self.max_connections));
            let mut servers = JoinSet::new();
            for (listen, _) in self.listeners {
                servers.spawn(server::serve(
                    listen,
                    self.hub.clone(),
                    admit.clone(),
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

    fn config() -> ChatRoleConfig {
        ChatRoleConfig {
            server_name: "irc.test".into(),
            network: "TestNet".into(),
            port: 0,
            tls_port: None,
            tls: None,
            users_file: None,
            require_login: false,
            allow_plaintext_auth: false,
            max_connections: 4,
            max_channels: 4,
            max_channels_per_client: 4,
            nick_length: 16,
            motd: None,
        }
    }

    #[tokio::test]
    async fn bad_configurations_are_refused_before_binding() {
        let (ip, metrics) = (IpAddr::from([127, 0, 0, 1]), AgentMetrics::default());
        let plain = Chat::bind(&config(), ip, &metrics).await.expect("binds");
        let names: Vec<&str> = plain.addresses().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["irc"]);
        assert_eq!(plain.name(), ROLE);

        let mut tls_port = config();
        tls_port.tls_port = Some(0);
        let err = Chat::bind(&tls_port, ip, &metrics).await.err();
        assert!(matches!(err, Some(ChatError::TlsPortWithoutCertificate)));

        let mut users = config();
        users.users_file = Some("/nonexistent/users".into());
        let err = Chat::bind(&users, ip, &metrics).await.err();
        assert!(matches!(err, Some(ChatError::Users(_))));
    }
}
