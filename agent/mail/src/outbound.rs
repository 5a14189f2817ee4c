//! The delivery worker of the outbound queue ([`crate::queue`]).
//!
//! A task of the mail role, stopped with the role's cancellation token (deliveries in flight
//! get the grace period, then are dropped: a dropped one is retried after the restart). It
//! takes each message's due recipients, grouped by domain, and delivers them, at most
//! [`MAX_DELIVERIES`] transactions at once:
//!
//! - where: the transport map's route for the domain (exact, case-insensitive), else the relay,
//!   else the domain's MX hosts by preference (hickory-resolver; no MX record: the domain itself,
//!   RFC 5321 section 5.1; a null MX, RFC 7505, or a domain that does not exist: a permanent
//!   failure);
//! - how: lettre's SMTP connection (EHLO, MAIL, one RCPT per recipient, each answered on its
//!   own, DATA). Towards routes and MX hosts STARTTLS is used when offered, without verifying
//!   the certificate (opportunistic, as MTAs do by default; RFC 7435), and a failed handshake
//!   falls back to plaintext on a new connection; towards a relay TLS is
//!   required and verified (`RelayTls::StartTls` or `Tls`, roots from `caFile` or the system's),
//!   and AUTH is sent only over it, never over `RelayTls::None`;
//! - then: a 2xx to the message marks its accepted recipients delivered, a 5xx (to MAIL, RCPT or
//!   the message) fails those it answered, anything else (4xx, refused or broken connection, DNS
//!   failure, timeout) schedules a retry ([`crate::queue::backoff`]) until the lifetime runs out;
//!   failed recipients get a bounce ([`crate::dsn`]) to the sender: into the sender's INBOX when
//!   the sender is a local user, else queued with the null sender `<>`.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hostrole_agent_core::metrics::OutboundResult;
use hostrole_config::{MailRelay, OutboundConfig, RelayTls};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::dsn;
use super::queue::{Attempt, Envelope, Queue, State, now};

/// Transactions in flight at once.
pub const MAX_DELIVERIES: usize = 4;
/// Connecting to one server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting, the greeting, EHLO, STARTTLS and AUTH (RFC 5321 section 4.5.3.2.1: 5 minutes
/// for the greeting).
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);
/// One whole transaction (RFC 5321 section 4.5.3.2 allows 10 minutes for the final reply).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest sleep between looks at the queue.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// Message bytes held in memory for sending, at most (KiB; a larger message still goes, alone).
const MEMORY_KIB: u32 = 32 * 1024;
/// Message bytes handed to the connection at once.
const CHUNK: usize = 64 * 1024;
/// How much of a message a bounce reads to find its header.
const HEADER_READ: u64 = 256 * 1024;

/// Where a domain's mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A transport-map route: this server, opportunistic TLS.
    Route { host: String, port: u16 },
    /// The smarthost.
    Relay,
    /// The domain's MX hosts, port 25.
    Mx,
}

/// The route for `domain` (exact, case-insensitive), else the relay, else MX.
pub fn choose(config: &OutboundConfig, domain: &str) -> Target {
    let domain = domain.trim_end_matches('.');
    if let Some(route) = config
        .routes
        .iter()
        .find(|r| r.domain.trim_end_matches('.').eq_ignore_ascii_case(domain))
    {
        return Target::Route {
            host: route.host.clone(),
            port: route.port,
        };
    }
    if config.relay.is_some() {
        return Target::Relay;
    }
    Target::Mx
}

/// The hosts to try for a domain from its MX records `(preference, exchange)`, best first.
/// No record: the domain itself (implicit MX). A null MX (`0 .`, RFC 7505): the domain takes no
/// mail, a permanent failure.
pub fn mx_hosts(domain: &str, mut records: Vec<(u16, String)>) -> Result<Vec<String>, Attempt> {
    if records.is_empty() {
        return Ok(vec![domain.to_string()]);
    }
    if records
        .iter()
        .any(|(_, exchange)| exchange.trim_end_matches('.').is_empty())
    {
        return Err(Attempt::Permanent {
            status: "5.1.10".into(),
            diagnostic: format!("{domain} does not accept mail (null MX, RFC 7505)"),
        });
    }
    records.sort_by_key(|(preference, _)| *preference);
    let mut hosts: Vec<String> = Vec::new();
    for (_, exchange) in records {
        let host = exchange.trim_end_matches('.').to_ascii_lowercase();
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    Ok(hosts)
}

/// The enhanced status code (RFC 3463) at the start of a reply's text, if any.
fn enhanced_status(text: &str) -> Option<&str> {
    let word = text.split_whitespace().next()?;
    let mut parts = word.split('.');
    let ok = matches!(parts.next(), Some("2" | "4" | "5"))
        && parts.next().is_some_and(|p| {
            !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())
        })
        && parts.next().is_some_and(|p| {
            !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit())
        })
        && parts.next().is_none();
    ok.then_some(word)
}

/// What a reply to a recipient (or to the whole transaction) means for it: 2xx delivered, 5xx
/// permanent (its enhanced status, else `5.0.0`), anything else temporary.
pub fn classify(code: u16, text: &str) -> Attempt {
    let diagnostic = format!("{code} {}", text.trim());
    match code {
        200..=299 => Attempt::Delivered,
        500..=599 => Attempt::Permanent {
            status: enhanced_status(text)
                .filter(|s| s.starts_with('5'))
                .unwrap_or("5.0.0")
                .to_string(),
            diagnostic,
        },
        _ => Attempt::Temporary(diagnostic),
    }
}

/// What a lettre error means: a reply is classified; a broken connection, TLS or protocol
/// failure is temporary.
fn from_error(what: &str, e: &lettre::transport::smtp::Error) -> Attempt {
    if let Some(code) = e.status()
        && let Ok(code) = code.to_string().parse::<u16>()
    {
        let text = std::error::Error::source(e)
            .map(|s| s.to_string())
            .unwrap_or_default();
        return classify(code, &text);
    }
    Attempt::Temporary(format!("{what}: {e}"))
}

/// Why a connection could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {server}: {source}")]
    Smtp {
        server: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("{server} does not offer STARTTLS, which the relay setting requires")]
    NoStartTls { server: String },
    #[error("the relay's CA file {path}: {why}")]
    CaFile { path: String, why: String },
    #[error("the relay's credentials: {0}")]
    Credentials(String),
    #[error("connecting to {server} timed out")]
    Timeout { server: String },
}

/// A server to try: its name (for TLS and logs), port, and address when DNS gave one (routes
/// and the relay are looked up by the system when connecting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub addr: Option<IpAddr>,
}

impl Server {
    fn named(host: String, port: u16) -> Server {
        Server {
            host,
            port,
            addr: None,
        }
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            Some(ip) => write!(f, "{} ({}:{})", self.host, ip, self.port),
            None => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Opens an SMTP connection (TLS from the first byte when `tls` is given) and says EHLO.
async fn dial(
    server: &Server,
    hello: &ClientId,
    tls: Option<TlsParameters>,
) -> Result<AsyncSmtpConnection, lettre::transport::smtp::Error> {
    match server.addr {
        Some(ip) => {
            AsyncSmtpConnection::connect_tokio1(
                (ip, server.port),
                Some(CONNECT_TIMEOUT),
                hello,
                tls,
                None,
            )
            .await
        }
        None => {
            AsyncSmtpConnection::connect_tokio1(
                (server.host.as_str(), server.port),
                Some(CONNECT_TIMEOUT),
                hello,
                tls,
                None,
            )
            .await
        }
    }
}

/// Test builds only (the `test-knobs` feature, never in release builds or images): a DNS
/// server (`ip:port`) to ask instead of the system's, and the port MX hosts listen on instead
/// of 25, so that a test can serve MX records and a receiving agent on loopback.
#[cfg(feature = "test-knobs")]
pub const ENV_TEST_DNS: &str = "HOSTROLE_MAIL_TEST_DNS";
#[cfg(feature = "test-knobs")]
pub const ENV_TEST_MX_PORT: &str = "HOSTROLE_MAIL_TEST_MX_PORT";

#[cfg(feature = "test-knobs")]
fn test_dns() -> Option<std::net::SocketAddr> {
    std::env::var(ENV_TEST_DNS).ok()?.parse().ok()
}

#[cfg(not(feature = "test-knobs"))]
fn test_dns() -> Option<std::net::SocketAddr> {
    None
}

/// Port 25 (RFC 5321 section 5.1).
#[cfg(feature = "test-knobs")]
fn mx_port() -> u16 {
    std::env::var(ENV_TEST_MX_PORT)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

#[cfg(not(feature = "test-knobs"))]
fn mx_port() -> u16 {
    25
}

/// A finished transaction: message id, domain, and a result per recipient.
type Done = (String, String, Vec<(String, Attempt)>);

/// The delivery worker.
struct Worker {
    shared: Arc<Shared>,
    queue: Arc<Queue>,
    resolver: tokio::sync::OnceCell<Option<TokioResolver>>,
    /// KiB of messages read into memory for sending ([`MEMORY_KIB`]).
    memory: tokio::sync::Semaphore,
}

/// Runs the worker until `stop`; deliveries in flight then get `grace`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    queue: Arc<Queue>,
    stop: CancellationToken,
    grace: Duration,
) {
    let worker = Arc::new(Worker {
        shared,
        queue,
        resolver: tokio::sync::OnceCell::new(),
        memory: tokio::sync::Semaphore::new(MEMORY_KIB as usize),
    });
    // Failures recorded before a restart whose bounce was not yet sent, and finished messages.
    for envelope in worker.queue.snapshot() {
        if envelope.recipients.iter().all(|r| !r.pending()) {
            worker.settle(envelope).await;
        }
    }
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut in_flight: HashSet<(String, String)> = HashSet::new();
    // Which transaction each task is, so that a task that panicked frees its slot too.
    let mut tasks_of: HashMap<tokio::task::Id, (String, String)> = HashMap::new();
    loop {
        let now = now();
        let free = MAX_DELIVERIES.saturating_sub(tasks.len());
        let (jobs, wake) = worker.queue.due(now, free, &in_flight);
        for job in jobs {
            let key = (job.id.clone(), job.domain.clone());
            in_flight.insert(key.clone());
            let w = worker.clone();
            let task = tasks.spawn(async move {
                let results = w
                    .deliver(&job.id, &job.sender, &job.domain, &job.recipients)
                    .await;
                (job.id, job.domain, results)
            });
            tasks_of.insert(task.id(), key);
        }
        worker
            .shared
            .metrics
            .queue_length(worker.queue.len() as i64);
        let sleep = wake
            .map(|at| Duration::from_secs(at.saturating_sub(now)))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = worker.queue.wake.notified() => {}
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let task = match &done {
                    Ok((task, _)) => *task,
                    Err(e) => e.id(),
                };
                let key = tasks_of.remove(&task);
                if let Some(key) = &key {
                    in_flight.remove(key);
                }
                match (done, key) {
                    (Ok((_, (id, _, results))), _) => worker.finish(&id, results).await,
                    (Err(e), Some((id, domain))) => {
                        // A bug, not the remote: retried later like a temporary failure.
                        tracing::error!(id, domain, error = %e, "an outbound delivery task failed");
                        let results = worker.queue.get(&id).map(|envelope| {
                            envelope
                                .recipients
                                .iter()
                                .filter(|r| r.pending() && Envelope::domain_of(&r.address) == domain)
                                .map(|r| (r.address.clone(), Attempt::Temporary("internal error".into())))
                                .collect()
                        });
                        worker.finish(&id, results.unwrap_or_default()).await;
                    }
                    (Err(e), None) => tracing::error!(error = %e, "an outbound delivery task failed"),
                }
            }
            _ = tokio::time::sleep(sleep) => {}
        }
    }
    // Let deliveries in flight finish and be recorded; past the grace they are dropped, and
    // retried after the restart.
    let drain = async {
        while let Some(done) = tasks.join_next().await {
            if let Ok((id, _, results)) = done {
                worker.finish(&id, results).await;
            }
        }
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!("outbound deliveries still running at shutdown: retried after the restart");
    }
}

impl Worker {
    /// One transaction for `recipients` of `domain`: a result for each.
    async fn deliver(
        &self,
        id: &str,
        sender: &str,
        domain: &str,
        recipients: &[String],
    ) -> Vec<(String, Attempt)> {
        let everyone = |attempt: Attempt| for_all(recipients, attempt);
        let path = self.queue.message_path(id);
        let size = tokio::fs::metadata(&path)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let kib = u32::try_from(size.div_ceil(1024))
            .unwrap_or(MEMORY_KIB)
            .clamp(1, MEMORY_KIB);
        let Ok(_memory) = self.memory.acquire_many(kib).await else {
            return everyone(Attempt::Temporary("shutting down".into()));
        };
        let message = match tokio::fs::read(&path).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(id, error = %e, "a queued message cannot be read");
                return everyone(Attempt::Temporary(format!(
                    "reading the queued message: {e}"
                )));
            }
        };
        let config = &self.queue.config;
        let servers: Vec<Server> = match choose(config, domain) {
            Target::Route { host, port } => vec![Server::named(host, port)],
            Target::Relay => match &config.relay {
                Some(relay) => vec![Server::named(relay.host.clone(), relay.port)],
                None => Vec::new(),
            },
            Target::Mx => match self.mx(domain).await {
                Ok(servers) => servers,
                Err(attempt) => return everyone(attempt),
            },
        };
        let relay = match choose(config, domain) {
            Target::Relay => config.relay.as_ref(),
            _ => None,
        };
        let mut last = Attempt::Temporary(format!("no server for {domain}"));
        for target in servers {
            let server = target.to_string();
            let connected = tokio::time::timeout(SETUP_TIMEOUT, self.connect(&target, relay))
                .await
                .unwrap_or_else(|_| {
                    Err(ConnectError::Timeout {
                        server: server.clone(),
                    })
                });
            let mut conn = match connected {
                Ok(c) => c,
                Err(e) => {
                    tracing::info!(id, server, error = %e, "outbound: cannot use this server");
                    last = Attempt::Temporary(e.to_string());
                    continue;
                }
            };
            let results = tokio::time::timeout(
                TRANSACTION_TIMEOUT,
                transact(&mut conn, sender, recipients, &message),
            )
            .await
            .unwrap_or_else(|_| {
                everyone(Attempt::Temporary(format!(
                    "{server}: the transaction timed out"
                )))
            });
            let _ = tokio::time::timeout(Duration::from_secs(10), conn.quit()).await;
            for (rcpt, attempt) in &results {
                tracing::info!(id, server, recipient = rcpt, result = ?attempt, "outbound attempt");
            }
            return results;
        }
        everyone(last)
    }

    /// The resolver, made at first use: the system's configuration (in test builds,
    /// [`ENV_TEST_DNS`] names a server instead).
    async fn resolver(&self) -> Option<&TokioResolver> {
        self.resolver
            .get_or_init(|| async {
                let built = match test_dns() {
                    Some(server) => {
                        let group = NameServerConfigGroup::from_ips_clear(
                            &[server.ip()],
                            server.port(),
                            true,
                        );
                        Ok(TokioResolver::builder_with_config(
                            ResolverConfig::from_parts(None, Vec::new(), group),
                            TokioConnectionProvider::default(),
                        ))
                    }
                    None => TokioResolver::builder_tokio(),
                };
                match built {
                    Ok(builder) => Some(builder.build()),
                    Err(e) => {
                        tracing::error!(error = %e, "no DNS resolver configuration: MX lookups fail");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }

    /// The servers for `domain` by MX preference, each MX host's addresses in turn (looked up
    /// with the same resolver).
    async fn mx(&self, domain: &str) -> Result<Vec<Server>, Attempt> {
        let Some(resolver) = self.resolver().await else {
            return Err(Attempt::Temporary("no DNS resolver configured".into()));
        };
        let hosts = match resolver.mx_lookup(format!("{domain}.")).await {
            Ok(lookup) => mx_hosts(
                domain,
                lookup
                    .iter()
                    .map(|mx| (mx.preference(), mx.exchange().to_ascii()))
                    .collect(),
            ),
            Err(e) if e.is_nx_domain() => Err(Attempt::Permanent {
                status: "5.1.2".into(),
                diagnostic: format!("the domain {domain} does not exist"),
            }),
            Err(e) if e.is_no_records_found() => mx_hosts(domain, Vec::new()),
            Err(e) => Err(Attempt::Temporary(format!("MX lookup for {domain}: {e}"))),
        }?;
        let port = mx_port();
        let mut servers = Vec::new();
        let mut why = None;
        for host in hosts {
            match resolver.lookup_ip(format!("{host}.")).await {
                Ok(ips) => servers.extend(ips.iter().map(|ip| Server {
                    host: host.clone(),
                    port,
                    addr: Some(ip),
                })),
                Err(e) => {
                    tracing::info!(domain, host, error = %e, "an MX host has no address");
                    why = Some(format!("no address for the MX host {host}: {e}"));
                }
            }
        }
        if servers.is_empty() {
            return Err(Attempt::Temporary(why.unwrap_or_else(|| {
                format!("no MX host of {domain} has an address")
            })));
        }
        Ok(servers)
    }

    /// Connects, upgrades to TLS as the target wants, and logs in to a relay.
    async fn connect(
        &self,
        target: &Server,
        relay: Option<&MailRelay>,
    ) -> Result<AsyncSmtpConnection, ConnectError> {
        let (host, server) = (target.host.as_str(), target.to_string());
        let hello = ClientId::Domain(self.shared.hostname.clone());
        let smtp = |source| ConnectError::Smtp {
            server: server.clone(),
            source,
        };
        let Some(relay) = relay else {
            let mut conn = dial(target, &hello, None).await.map_err(smtp)?;
            if conn.can_starttls() {
                // Opportunistic: any certificate will do (RFC 7435); a passive listener learns
                // nothing, an active attacker could still strip or intercept it.
                let tls = TlsParameters::builder(host.to_string())
                    .dangerous_accept_invalid_certs(true)
                    .dangerous_accept_invalid_hostnames(true)
                    .build_rustls()
                    .map_err(smtp)?;
                if let Err(e) = conn.starttls(tls, &hello).await {
                    // As Postfix does at `may`: a failed handshake falls back to plaintext, on
                    // a new connection.
                    tracing::info!(server, error = %e, "STARTTLS failed: sending without TLS");
                    conn.abort().await;
                    conn = dial(target, &hello, None).await.map_err(smtp)?;
                }
            }
            return Ok(conn);
        };
        let mut conn = match relay.tls {
            RelayTls::Tls => dial(target, &hello, Some(relay_tls(host, relay).await?))
                .await
                .map_err(smtp)?,
            RelayTls::StartTls | RelayTls::None => {
                let mut conn = dial(target, &hello, None).await.map_err(smtp)?;
                if relay.tls == RelayTls::StartTls {
                    if !conn.can_starttls() {
                        conn.abort().await;
                        return Err(ConnectError::NoStartTls { server });
                    }
                    conn.starttls(relay_tls(host, relay).await?, &hello)
                        .await
                        .map_err(smtp)?;
                }
                conn
            }
        };
        if let Some(dir) = &relay.credentials_dir {
            if relay.tls == RelayTls::None || !conn.is_encrypted() {
                tracing::warn!(
                    server,
                    "relay credentials are not sent without TLS: sending without AUTH"
                );
            } else {
                let read = |name: &str| {
                    let path = dir.join(name);
                    std::fs::read_to_string(&path)
                        .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                        .map_err(|e| ConnectError::Credentials(format!("{}: {e}", path.display())))
                };
                let credentials = Credentials::new(read("username")?, read("password")?);
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                    .await
                    .map_err(smtp)?;
            }
        }
        Ok(conn)
    }

    /// Records the results of a transaction, then bounces and removes what is finished.
    async fn finish(&self, id: &str, results: Vec<(String, Attempt)>) {
        let Some(mut envelope) = self.queue.get(id) else {
            return;
        };
        let now = now();
        for (address, attempt) in results {
            let result = match &attempt {
                Attempt::Delivered => OutboundResult::Delivered,
                Attempt::Temporary(_) => OutboundResult::Deferred,
                Attempt::Permanent { .. } => OutboundResult::Failed,
            };
            self.shared.metrics.outbound(result);
            if let Some(r) = envelope
                .recipients
                .iter_mut()
                .find(|r| r.address == address && r.pending())
            {
                r.apply(attempt, now, envelope.queued_at, &self.queue.config);
            }
        }
        if let Err(e) = self.queue.save(&envelope).await {
            // Kept in memory so it is not retried at once; a restart retries from the disk.
            tracing::error!(id, error = %e, "cannot record a delivery attempt");
            self.queue.remember(envelope.clone());
        }
        self.settle(envelope).await;
    }

    /// Bounces failed recipients not yet bounced (once, recorded), and removes the message when
    /// nothing is left to do.
    async fn settle(&self, mut envelope: Envelope) {
        let failures: Vec<dsn::Failure> = envelope
            .recipients
            .iter()
            .filter_map(|r| match &r.state {
                State::Failed {
                    status,
                    diagnostic,
                    bounced: false,
                } => Some(dsn::Failure {
                    recipient: r.address.clone(),
                    status: status.clone(),
                    diagnostic: diagnostic.clone(),
                }),
                _ => None,
            })
            .collect();
        if !failures.is_empty() {
            if envelope.sender.is_empty() {
                tracing::warn!(
                    id = envelope.id,
                    "a bounce could not be delivered: dropped (never bounced)"
                );
            } else {
                match self.bounce(&envelope, &failures).await {
                    Ok(()) => {
                        for r in &mut envelope.recipients {
                            if let State::Failed { bounced, .. } = &mut r.state {
                                *bounced = true;
                            }
                        }
                        self.shared.metrics.outbound(OutboundResult::Bounced);
                        if let Err(e) = self.queue.save(&envelope).await {
                            tracing::error!(id = envelope.id, error = %e, "cannot record a bounce");
                            self.queue.remember(envelope.clone());
                        }
                    }
                    Err(e) => {
                        tracing::error!(id = envelope.id, error = %e, "cannot bounce: tried again at the next failure or restart");
                        return;
                    }
                }
            }
        }
        if envelope.done()
            && let Err(e) = self.queue.remove(&envelope.id).await
        {
            tracing::error!(id = envelope.id, error = %e, "cannot remove a finished message");
        }
    }

    /// Sends the bounce: into the sender's INBOX when the sender is a local user, else queued
    /// with the null sender.
    async fn bounce(&self, envelope: &Envelope, failures: &[dsn::Failure]) -> Result<(), String> {
        use tokio::io::AsyncReadExt;
        let mut head = Vec::new();
        let path = self.queue.message_path(&envelope.id);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        file.take(HEADER_READ)
            .read_to_end(&mut head)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let report = dsn::Report {
            hostname: &self.shared.hostname,
            to: &envelope.sender,
            arrival: envelope.queued_at,
            queue_id: &envelope.id,
            failures,
            original_headers: dsn::header_block(&head),
        };
        let message_id = format!("bounce.{}@{}", envelope.id, self.shared.hostname);
        let text = dsn::build(&report, message_id);
        let (local, domain) = envelope
            .sender
            .rsplit_once('@')
            .unwrap_or((envelope.sender.as_str(), ""));
        let mailbox = if self.shared.is_local_domain(domain) {
            self.shared.mailbox_of(local)
        } else {
            None
        };
        match mailbox {
            Some(mailbox) => {
                let trace = format!(
                    "Return-Path: <>\r\nReceived: by {} (hostrole) for <{}>;\r\n\t{}\r\n",
                    self.shared.hostname,
                    envelope.sender,
                    crate::time::rfc5322(std::time::SystemTime::now())
                );
                let mut draft = self
                    .shared
                    .store
                    .draft(&mailbox)
                    .await
                    .map_err(|e| e.to_string())?;
                draft
                    .write(trace.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                draft.write(&text).await.map_err(|e| e.to_string())?;
                let stored = self
                    .shared
                    .store
                    .commit(draft, std::slice::from_ref(&mailbox))
                    .await
                    .map_err(|e| e.to_string())?;
                self.shared.quota.charge(
                    std::slice::from_ref(&mailbox),
                    (trace.len() + text.len()) as u64,
                );
                tracing::info!(id = envelope.id, mailbox, stored, "bounce delivered");
            }
            None if envelope.sender.contains('@') => {
                let queued = self
                    .queue
                    .enqueue(&text, String::new(), None, vec![envelope.sender.clone()])
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::info!(id = envelope.id, queued, "bounce queued");
            }
            None => {
                tracing::warn!(
                    id = envelope.id,
                    sender = envelope.sender,
                    "no address to bounce to"
                );
            }
        }
        Ok(())
    }
}

/// TLS parameters for the relay: verified, against `caFile` alone when given, else the system's
/// roots.
async fn relay_tls(host: &str, relay: &MailRelay) -> Result<TlsParameters, ConnectError> {
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some(path) = &relay.ca_file {
        let pem = tokio::fs::read(path)
            .await
            .map_err(|e| ConnectError::CaFile {
                path: path.display().to_string(),
                why: e.to_string(),
            })?;
        let cert = Certificate::from_pem(&pem).map_err(|e| ConnectError::CaFile {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        builder = builder
            .certificate_store(CertificateStore::None)
            .add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|source| ConnectError::Smtp {
        server: format!("{host}:{}", relay.port),
        source,
    })
}

/// The same result for every recipient of a transaction.
fn for_all(recipients: &[String], attempt: Attempt) -> Vec<(String, Attempt)> {
    recipients
        .iter()
        .map(|r| (r.clone(), attempt.clone()))
        .collect()
}

/// MAIL, RCPT for each recipient, DATA: a result for each recipient.
async fn transact(
    conn: &mut AsyncSmtpConnection,
    sender: &str,
    recipients: &[String],
    message: &[u8],
) -> Vec<(String, Attempt)> {
    let everyone = |attempt: Attempt| for_all(recipients, attempt);
    let from = if sender.is_empty() {
        None
    } else {
        match lettre::Address::from_str(sender) {
            Ok(a) => Some(a),
            Err(e) => {
                return everyone(Attempt::Permanent {
                    status: "5.1.7".into(),
                    diagnostic: format!("the sender {sender} cannot be sent: {e}"),
                });
            }
        }
    };
    let mut params = Vec::new();
    if !message.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    if let Err(e) = conn.command(Mail::new(from, params)).await {
        return everyone(from_error("MAIL", &e));
    }
    let mut results = Vec::new();
    let mut accepted = Vec::new();
    for rcpt in recipients {
        let address = match lettre::Address::from_str(rcpt) {
            Ok(a) => a,
            Err(e) => {
                results.push((
                    rcpt.clone(),
                    Attempt::Permanent {
                        status: "5.1.3".into(),
                        diagnostic: format!("the address cannot be sent: {e}"),
                    },
                ));
                continue;
            }
        };
        match conn.command(Rcpt::new(address, Vec::new())).await {
            Ok(_) => accepted.push(rcpt.clone()),
            Err(e) => results.push((rcpt.clone(), from_error("RCPT", &e))),
        }
    }
    if accepted.is_empty() {
        return results;
    }
    let outcome = match conn.command(Data).await {
        Err(e) => from_error("DATA", &e),
        // lettre ends the data with CRLF . CRLF itself: the message's own last CRLF goes.
        Ok(_) => match conn
            .message_iter(
                message
                    .strip_suffix(b"\r\n")
                    .unwrap_or(message)
                    .chunks(CHUNK),
            )
            .await
        {
            Ok(_) => Attempt::Delivered,
            // After the data was sent, an error is RFC 5321 section 6.1's uncertain case: the
            // message may have been accepted; it is retried (the documented duplicate).
            Err(e) => from_error("end of data", &e),
        },
    };
    results.extend(accepted.into_iter().map(|r| (r, outcome.clone())));
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostrole_config::MailRoute;

    fn config() -> OutboundConfig {
        OutboundConfig {
            routes: vec![MailRoute {
                domain: "b.example".into(),
                host: "mail-b".into(),
                port: 2525,
            }],
            relay: None,
            retry_seconds: 1,
            max_retry_seconds: 8,
            lifetime_seconds: 60,
        }
    }

    #[test]
    fn routes_first_then_relay_then_mx() {
        let mut c = config();
        assert_eq!(
            choose(&c, "B.Example."),
            Target::Route {
                host: "mail-b".into(),
                port: 2525
            }
        );
        assert_eq!(choose(&c, "sub.b.example"), Target::Mx, "exact match only");
        c.relay = Some(MailRelay {
            host: "smarthost".into(),
            port: 587,
            tls: RelayTls::StartTls,
            credentials_dir: None,
            ca_file: None,
        });
        assert_eq!(choose(&c, "c.example"), Target::Relay);
        assert!(matches!(choose(&c, "b.example"), Target::Route { .. }));
    }

    #[test]
    fn mx_by_preference_implicit_and_null() {
        assert_eq!(
            mx_hosts(
                "b.example",
                vec![
                    (20, "MX2.b.example.".into()),
                    (10, "mx1.b.example.".into()),
                    (20, "mx2.b.example.".into())
                ]
            ),
            Ok(vec![
                "mx1.b.example".to_string(),
                "mx2.b.example".to_string()
            ])
        );
        assert_eq!(
            mx_hosts("b.example", Vec::new()),
            Ok(vec!["b.example".to_string()]),
            "no MX: the domain's own address"
        );
        match mx_hosts("b.example", vec![(0, ".".into())]) {
            Err(Attempt::Permanent { status, .. }) => assert_eq!(status, "5.1.10"),
            other => panic!("a null MX is a permanent failure: {other:?}"),
        }
    }

    #[test]
    fn replies_are_classified() {
        assert_eq!(classify(250, "2.0.0 Ok"), Attempt::Delivered);
        assert_eq!(
            classify(550, "5.1.1 <x@b>: no such user here"),
            Attempt::Permanent {
                status: "5.1.1".into(),
                diagnostic: "550 5.1.1 <x@b>: no such user here".into()
            }
        );
        assert_eq!(
            classify(554, "no"),
            Attempt::Permanent {
                status: "5.0.0".into(),
                diagnostic: "554 no".into()
            }
        );
        assert_eq!(
            classify(452, "4.2.2 mailbox full"),
            Attempt::Temporary("452 4.2.2 mailbox full".into())
        );
        assert!(
            matches!(classify(550, "4.1.1 odd"), Attempt::Permanent { status, .. } if status == "5.0.0")
        );
        assert_eq!(enhanced_status("5.7.1 relay denied"), Some("5.7.1"));
        assert_eq!(enhanced_status("5.7 relay denied"), None);
    }
}
