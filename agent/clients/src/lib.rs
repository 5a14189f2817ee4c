//! The client role: client software that uses a server the way a person's machine would, on a
//! schedule, and reports what it saw.
//!
//! One loop per [`ClientConfig`]: a jittered first run, then one run every `every_ms` (each
//! bounded by `timeout_ms`); after a failure the next try comes sooner, with jittered
//! exponential backoff capped at `every_ms`, so a recovered server is seen quickly. A semaphore
//! bounds the runs in flight. Clients talk to servers over the network only, like any client:
//! [`web`] (HTTP GET), [`file`] (a WebDAV round trip), [`mail`] (SMTP in, IMAP back), [`chat`]
//! (IRC), [`radio`] (listening to an Icecast mount), [`print`] (a one-page job on an IPP
//! printer, its printout checked).
//!
//! Results go to Prometheus metrics, to `GET /clients` on the admin port, and (in a pod) to
//! the pod's conditions through [`report`].

pub mod chat;
pub mod file;
pub mod mail;
pub mod print;
pub mod radio;
pub mod report;
pub mod web;

use hostrole_agent_core::backoff::{Backoff, Jitter, jittered};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use hostrole_config::ClientConfig;
use hostrole_config::ClientService;
use k8s_openapi::jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use hostrole_agent_core::Role;

/// The role's name in logs, metrics and readiness.
pub const ROLE: &str = "client";

/// Runs in flight at once, across every client of the host.
const MAX_CONCURRENT_RUNS: usize = 8;
/// First retry after a failure (or `every`, when shorter); doubled per failure up to `every`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Time a run gets beyond its timeout to clean up what it left on the server (a probe file).
pub(crate) const CLEANUP_TIME: Duration = Duration::from_secs(5);

/// Why a run failed; the names appear in `/clients`, metrics labels and pod conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Reason {
    /// The client has not run yet.
    Pending,
    /// The run succeeded (used for the pod condition's reason).
    Ok,
    ConnectFailed,
    Timeout,
    AuthFailed,
    UnexpectedStatus,
    UnexpectedContent,
    HashMismatch,
    NotDelivered,
    /// Radio: the stream came, but slower than its bitrate (stalls, or too few bytes).
    TooSlow,
    /// Print: the printer answered the request with an unsuccessful IPP status (busy, queue
    /// full, not accepting jobs, format not supported, …).
    Refused,
    /// Print: the printer took the job, then aborted it or it was canceled.
    JobFailed,
    /// Print: the job completed but the printer offers no printout of it.
    PrintoutMissing,
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Pending => "Pending",
            Reason::Ok => "Ok",
            Reason::ConnectFailed => "ConnectFailed",
            Reason::Timeout => "Timeout",
            Reason::AuthFailed => "AuthFailed",
            Reason::UnexpectedStatus => "UnexpectedStatus",
            Reason::UnexpectedContent => "UnexpectedContent",
            Reason::HashMismatch => "HashMismatch",
            Reason::NotDelivered => "NotDelivered",
            Reason::TooSlow => "TooSlow",
            Reason::Refused => "Refused",
            Reason::JobFailed => "JobFailed",
            Reason::PrintoutMissing => "PrintoutMissing",
            Reason::Error => "Error",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed run: a reason for machines and a message for people. Messages name what failed
/// but nothing that changes from run to run (probe names, timings), so that an unchanged
/// failure does not rewrite the pod's conditions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ProbeError {
    pub reason: Reason,
    pub message: String,
}

impl ProbeError {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// What a successful run reports: a stable detail (no numbers that change every run) and the
/// timings of its phases (`firstByte`, `total`, `delivery`, …) in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    pub detail: String,
    pub timings_ms: BTreeMap<&'static str, u64>,
}

impl Success {
    pub fn new(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            timings_ms: BTreeMap::new(),
        }
    }

    pub fn timing(mut self, phase: &'static str, d: Duration) -> Self {
        self.timings_ms.insert(phase, d.as_millis() as u64);
        self
    }
}

/// An error and its sources on one line (`error sending request: connection refused`).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

/// Whether an error chain holds a refused or unreachable connection.
pub(crate) fn is_connect_error(error: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::*;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | AddrNotAvailable
                    | HostUnreachable
                    | NetworkUnreachable
            )
        {
            return true;
        }
        current = e.source();
    }
    false
}

/// `username` and `password` of a client, read from its credentials directory.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// Reads `<dir>/username` and `<dir>/password` (trailing newlines trimmed). Read at every run,
/// so a rotated Secret is used without a restart.
pub(crate) async fn credentials(dir: &Path) -> Result<Credentials, ProbeError> {
    let read = |name: &'static str| {
        let path = dir.join(name);
        async move {
            tokio::fs::read_to_string(&path)
                .await
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| {
                    ProbeError::new(
                        Reason::Error,
                        format!("cannot read the credentials file {}: {e}", path.display()),
                    )
                })
        }
    };
    Ok(Credentials {
        username: read("username").await?,
        password: read("password").await?,
    })
}

/// `n` random bytes as lower-case hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if getrandom::fill(&mut bytes).is_err() {
        // Unique enough for a probe name: the clock's nanoseconds.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        return format!("{nanos:x}");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a client runs: the name its probes carry (the pod's name, or the HostRole's).
#[derive(Debug, Clone)]
pub struct Context {
    pub host: String,
}

/// Runs one probe of `config`, bounded by its timeout (plus clean-up time for the file probe).
async fn probe(config: &ClientConfig, context: &Context) -> Result<Success, ProbeError> {
    let timeout = Duration::from_millis(config.timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    let run = async {
        match config.service {
            ClientService::Web => web::run(config, deadline).await,
            ClientService::File => file::run(config, context, deadline).await,
            ClientService::Mail => mail::run(config, context, deadline).await,
            ClientService::Chat => chat::run(config, context, deadline).await,
            ClientService::Radio => radio::run(config, deadline).await,
            ClientService::Print => print::run(config, deadline).await,
        }
    };
    // Each probe honours `deadline` itself and bounds its clean-up; this is a safety net.
    match tokio::time::timeout(timeout + CLEANUP_TIME * 2, run).await {
        Ok(result) => result,
        Err(_) => Err(timed_out(timeout)),
    }
}

pub(crate) fn timed_out(timeout: Duration) -> ProbeError {
    ProbeError::new(
        Reason::Timeout,
        format!("no answer within the timeout of {timeout:?}"),
    )
}

/// The latest result of one client, as `GET /clients` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientResult {
    pub name: String,
    pub service: ClientService,
    pub server: String,
    pub ok: bool,
    pub reason: Reason,
    pub message: String,
    /// Duration of the last run; absent before the first.
    pub latency_ms: Option<u64>,
    /// Phases of the last successful run (web: `firstByte`, `total`; mail: `delivery`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub timings_ms: BTreeMap<&'static str, u64>,
    /// When the client last succeeded (RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    pub last_success: Option<Timestamp>,
    /// When the last run started (RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    pub last_run: Option<Timestamp>,
}

fn rfc3339<S: serde::Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&seconds(*t).to_string()),
        None => s.serialize_none(),
    }
}

/// A timestamp cut to whole seconds (what conditions and people need).
pub fn seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

impl ClientResult {
    fn pending(config: &ClientConfig) -> Self {
        Self {
            name: config.name.clone(),
            service: config.service,
            server: config.server.clone(),
            ok: false,
            reason: Reason::Pending,
            message: "not run yet".into(),
            latency_ms: None,
            timings_ms: BTreeMap::new(),
            last_success: None,
            last_run: None,
        }
    }
}

/// The latest result of every client, shared by the loops, the admin endpoint and the reporter.
#[derive(Clone, Default)]
pub struct Results {
    inner: Arc<RwLock<BTreeMap<String, ClientResult>>>,
    changed: Arc<Notify>,
}

impl Results {
    pub fn snapshot(&self) -> Vec<ClientResult> {
        self.inner
            .read()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    fn put(&self, result: ClientResult) {
        if let Ok(mut r) = self.inner.write() {
            r.insert(result.name.clone(), result);
        }
        self.changed.notify_one();
    }

    /// Resolves after the next update.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    pub client: String,
    pub service: String,
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub client: String,
    pub service: String,
    pub server: String,
    /// `ok` or the failure's reason.
    pub result: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Metrics in the style of blackbox_exporter's probes.
#[derive(Clone)]
pub struct ClientMetrics {
    pub up: Family<ClientLabels, Gauge>,
    pub duration: Family<ClientLabels, Histogram, fn() -> Histogram>,
    pub last_success: Family<ClientLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub runs: Family<RunLabels, Counter>,
}

impl Default for ClientMetrics {
    fn default() -> Self {
        Self {
            up: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            last_success: Family::default(),
            runs: Family::default(),
        }
    }
}

impl ClientMetrics {
    /// Registers `hostrole_client_up`, `hostrole_client_duration_seconds`,
    /// `hostrole_client_last_success_timestamp_seconds` and `hostrole_client_runs_total`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("hostrole_client");
        r.register(
            "up",
            "1 when the client's last run succeeded, else 0",
            self.up.clone(),
        );
        r.register(
            "duration_seconds",
            "Duration of the client's runs",
            self.duration.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "When the client last succeeded (Unix time)",
            self.last_success.clone(),
        );
        r.register(
            "runs",
            "Client runs, by result (ok or the failure's reason)",
            self.runs.clone(),
        );
    }

    fn record(&self, config: &ClientConfig, result: &ClientResult, elapsed: Duration) {
        let labels = labels(config);
        self.up.get_or_create(&labels).set(i64::from(result.ok));
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(t) = result.last_success {
            self.last_success
                .get_or_create(&labels)
                .set(t.as_millisecond() as f64 / 1000.0);
        }
        let outcome = if result.ok {
            "ok".to_string()
        } else {
            result.reason.to_string()
        };
        self.runs
            .get_or_create(&RunLabels {
                client: labels.client,
                service: labels.service,
                server: labels.server,
                result: outcome,
            })
            .inc();
    }
}

fn service_name(service: ClientService) -> &'static str {
    match service {
        ClientService::Web => "web",
        ClientService::File => "file",
        ClientService::Mail => "mail",
        ClientService::Chat => "chat",
        ClientService::Radio => "radio",
        ClientService::Print => "print",
    }
}

fn labels(config: &ClientConfig) -> ClientLabels {
    ClientLabels {
        client: config.name.clone(),
        service: service_name(config.service).to_string(),
        server: config.server.clone(),
    }
}

/// The host's clients, ready to run under the supervisor.
pub struct Clients {
    configs: Vec<ClientConfig>,
    context: Context,
    results: Results,
    metrics: ClientMetrics,
    reporter: Option<report::Reporter>,
}

impl Clients {
    /// Prepares the loops; every client shows as `Pending` until its first run. `host_role`
    /// names the probes when `POD_NAME` is not set.
    pub fn new(configs: Vec<ClientConfig>, host_role: &str, registry: &mut Registry) -> Self {
        let metrics = ClientMetrics::default();
        metrics.register(registry);
        let results = Results::default();
        for config in &configs {
            results.put(ClientResult::pending(config));
            metrics.up.get_or_create(&labels(config)).set(0);
        }
        let host = std::env::var(hostrole_config::ENV_POD_NAME)
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| host_role.to_string());
        Self {
            reporter: report::Reporter::from_env(),
            configs,
            context: Context { host },
            results,
            metrics,
        }
    }

    /// The latest results, live (what `/clients` shows).
    pub fn results(&self) -> Results {
        self.results.clone()
    }

    /// `GET /clients`: the latest result of every client, as JSON.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/clients", get(list))
            .with_state(self.results.clone())
    }
}

async fn list(State(results): State<Results>) -> Json<Vec<ClientResult>> {
    Json(results.snapshot())
}

impl Role for Clients {
    fn name(&self) -> &'static str {
        ROLE
    }

    fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        Vec::new()
    }

    fn run(
        self: Box<Self>,
        stop: CancellationToken,
        grace: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let this = *self;
            let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_RUNS));
            let mut tasks = tokio::task::JoinSet::new();
            for config in this.configs {
                tasks.spawn(client_loop(
                    config,
                    this.context.clone(),
                    this.results.clone(),
                    this.metrics.clone(),
                    permits.clone(),
                    stop.clone(),
                    grace,
                ));
            }
            if let Some(reporter) = this.reporter {
                tasks.spawn(reporter.run(this.results.clone(), stop.clone()));
            }
            stop.cancelled().await;
            while tasks.join_next().await.is_some() {}
        })
    }
}

/// When the next run starts after `failures` failures in a row: 1 s, 2 s, 4 s, … capped at
/// `every`, each between half and all of that (full jitter would retry too eagerly).
pub fn backoff(every: Duration) -> Backoff {
    Backoff {
        first: FIRST_BACKOFF,
        cap: every,
        jitter: Jitter::Down(0.5),
    }
}

async fn client_loop(
    config: ClientConfig,
    context: Context,
    results: Results,
    metrics: ClientMetrics,
    permits: Arc<Semaphore>,
    stop: CancellationToken,
    grace: Duration,
) {
    let every = Duration::from_millis(config.every_ms.max(1));
    // Spread the first runs so that a host's clients (and a fleet's) do not fire at once.
    let mut wait = every
        .min(Duration::from_secs(20))
        .mul_f64(0.1 * fastrand::f64());
    let mut failures: u32 = 0;
    let mut last_success: Option<Timestamp> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = permits.clone().acquire_owned() => p,
        };
        let started_at = Timestamp::now();
        let started = Instant::now();
        // A run in flight at shutdown gets the grace period to finish (and clean up).
        let outcome = tokio::select! {
            r = probe(&config, &context) => r,
            _ = async { stop.cancelled().await; tokio::time::sleep(grace).await } => return,
        };
        drop(permit);
        let elapsed = started.elapsed();
        let (ok, reason, message, timings_ms) = match outcome {
            Ok(s) => {
                last_success = Some(started_at);
                failures = 0;
                // `every`, give or take 10%.
                wait = jittered(every, 0.1);
                (true, Reason::Ok, s.detail, s.timings_ms)
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                wait = backoff(every).delay(failures);
                (false, e.reason, e.message, BTreeMap::new())
            }
        };
        if ok {
            tracing::debug!(client = %config.name, ms = elapsed.as_millis() as u64, "client run ok");
        } else {
            tracing::warn!(client = %config.name, server = %config.server, %reason, %message, "client run failed");
        }
        let result = ClientResult {
            name: config.name.clone(),
            service: config.service,
            server: config.server.clone(),
            ok,
            reason,
            message,
            latency_ms: Some(elapsed.as_millis() as u64),
            timings_ms,
            last_success,
            last_run: Some(started_at),
        };
        metrics.record(&config, &result, elapsed);
        results.put(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_from_a_second_to_every_and_is_jittered() {
        let every = Duration::from_secs(30);
        let b = backoff(every);
        assert_eq!(b.delay_with(1, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay_with(5, 1.0), Duration::from_secs(16));
        assert_eq!(b.delay_with(60, 1.0), every);
        assert_eq!(b.delay_with(6, 0.0), every / 2);
        // A client that runs more often than the first backoff retries at its own pace.
        let fast = Duration::from_millis(300);
        assert_eq!(backoff(fast).delay_with(3, 1.0), fast);
    }

    #[test]
    fn error_chains_read_as_one_line() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(is_connect_error(&io));
        assert_eq!(chain(&io), "refused");
        let other = std::io::Error::other("boom");
        assert!(!is_connect_error(&other));
    }
}
