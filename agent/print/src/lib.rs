//! The print role: a shared printer speaking IPP (RFC 8011 over HTTP, the operations IPP
//! Everywhere, PWG 5100.14, requires), whose printouts are files.
//!
//! Endpoints, on the agent's shared HTTP listener (`hostrole_agent_core::net`: connection
//! limits, timeouts, TLS):
//!
//! - `POST /ipp/print` (and `POST /`), `Content-Type: application/ipp`: IPP requests
//!   ([`ops`]). Print-Job, Validate-Job, Create-Job, Send-Document, Cancel-Job, Cancel-My-Jobs,
//!   Close-Job, Get-Jobs, Get-Job-Attributes, Get-Printer-Attributes, Identify-Printer. The
//!   message is decoded by [`wire`] (at most [`wire::MAX_HEAD`] bytes of attributes); the
//!   document that follows is streamed to the spool folder, never held in memory, and refused
//!   past `max_job_bytes` (`client-error-request-entity-too-large`, nothing left on disk).
//! - `GET /printouts/<job-id>`: the output tray. The printed document's bytes, with its content
//!   type (`application/pdf`, `image/pwg-raster`, `image/jpeg`), once the job is completed; 404
//!   before, and for a job the list no longer holds. With a users file, only the job's owner
//!   gets it (HTTP Basic). This is how another host (the print client role) checks a printout.
//! - `GET /`: a one-line status page (`printer-more-info` points at it); `GET /icon.png`: the
//!   printer's icon (`printer-icons`).
//!
//! Documents: `application/pdf`, `image/pwg-raster`, `image/jpeg`, and
//! `application/octet-stream`, which the printer tells apart by their first bytes; a document
//! whose bytes are not the format it declares aborts its job with a `job-state-message` saying
//! so (`client-error-document-format-error`). "Printing" writes the document, unchanged, into
//! `output_dir` as `<job-id>-<job name>.<pdf|pwg|jpg>` ([`document`]): into a hidden temporary
//! file first, flushed to disk, then renamed, so a crash never leaves a partial printout. Job
//! names are made safe as file names (the folder may be a share users browse).
//!
//! The queue ([`jobs`]) lives in `spool_dir`: the job list (`jobs.json`, rewritten atomically)
//! and the documents being received. A restart keeps finished jobs listed and aborts the ones
//! it interrupted (their spooled documents are removed). `max_jobs` bounds the list: the oldest
//! finished jobs are forgotten first; with every kept job unfinished a new one is refused
//! (`server-error-too-many-jobs`).
//!
//! Users: with `users_file`, every operation but Get-Printer-Attributes needs HTTP Basic
//! authentication (agent-core's accounts, with their login throttle); a job belongs to the user
//! who sent it: only they cancel it, see its details, or fetch its printout. Without users,
//! `requesting-user-name` is recorded as given (control characters dropped, bounded) and anyone
//! who reaches the port may print and cancel.

pub mod attrs;
pub mod document;
mod icon;
pub mod jobs;
mod ops;
mod reads;
pub mod wire;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hostrole_agent_core::Role;
use hostrole_agent_core::metrics::{AgentMetrics, Reason, track};
use hostrole_agent_core::net::{self, BindError, ClientKey, HttpRole};
use hostrole_agent_core::tls::{self, TlsError};
use hostrole_agent_core::users::{Check, Users, UsersError};
use hostrole_config::{OutputQuota, PrintRoleConfig};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use jobs::{Queue, QueueError, State as JobState};

/// The role's name in logs, metrics and readiness.
pub const ROLE: &str = "print";

/// Connections served at once: printing clients are few, and a job is one request.
const MAX_CONNECTIONS: usize = 64;

/// Longest user name kept from `requesting-user-name`.
const MAX_USER_CHARS: usize = 64;
/// Longest job name kept.
const MAX_JOB_NAME_CHARS: usize = 255;

/// Why the print role could not start.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("print role: {0}")]
    Tls(#[from] TlsError),
    #[error("print role: {0}")]
    Users(#[from] UsersError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("print role: the output folder {path}: {source}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("print role: the printer name {0:?} must be 1 to 127 printable characters")]
    Name(String),
}

/// How a job ended, as the `outcome` label of `hostrole_print_jobs`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Completed,
    Canceled,
    /// Ended by the printer: a document too large, of the wrong format, cut short, or a restart.
    Aborted,
    /// Not created: the queue held `max_jobs` unfinished jobs.
    Refused,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: Outcome,
}

/// The print role's own metrics.
#[derive(Clone, Default, Debug)]
pub struct PrintMetrics {
    jobs: Family<OutcomeLabels, Counter>,
    printed_bytes: Counter,
}

impl PrintMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("hostrole_print");
        r.register("jobs", "Jobs ended, by outcome", self.jobs.clone());
        r.register(
            "printed_bytes",
            "Bytes of printouts written to the output folder",
            self.printed_bytes.clone(),
        );
    }

    fn job(&self, outcome: Outcome) {
        self.jobs.get_or_create(&OutcomeLabels { outcome }).inc();
    }
}

/// What every request handler shares.
struct Shared {
    name: String,
    location: String,
    info: String,
    output_dir: PathBuf,
    /// The share the output folder is in, and its quota.
    output_quota: Option<OutputQuota>,
    /// One printout is written at a time (as a printer prints one job at a time), so that the
    /// quota is judged with every earlier printout counted.
    printing: tokio::sync::Mutex<()>,
    /// Requests whose attributes are being read (see [`reads`]).
    reads: reads::Reads,
    max_job_bytes: u64,
    queue: tokio::sync::Mutex<Queue>,
    uuid: String,
    users: Option<Arc<Users>>,
    started: u64,
    local: SocketAddr,
    tls: bool,
    metrics: AgentMetrics,
    print_metrics: PrintMetrics,
}

/// The print role with its listener bound and its queue opened.
pub struct Print {
    http: HttpRole,
}

impl Print {
    /// Checks the configuration, opens the queue (aborting jobs a stop interrupted), makes the
    /// output folder, reads the users file and binds the role's listener.
    pub async fn bind(
        config: &PrintRoleConfig,
        ip: IpAddr,
        metrics: &AgentMetrics,
        print_metrics: &PrintMetrics,
    ) -> Result<Print, PrintError> {
        let name_ok = !config.name.is_empty()
            && config.name.chars().count() <= 127
            && !config.name.chars().any(char::is_control);
        if !name_ok {
            return Err(PrintError::Name(config.name.clone()));
        }
        let users = config
            .users_file
            .as_deref()
            .map(Users::load)
            .transpose()?
            .map(Arc::new);
        let spool = config.spool_dir.clone();
        let max_jobs = config.max_jobs;
        let output = config.output_dir.clone();
        let opened = tokio::task::spawn_blocking(move || {
            let opened = Queue::open(&spool, &output, max_jobs)?;
            // The output folder may be a folder of a WebDAV share, which its users can remove
            // or replace by a file: that fails the jobs printed meanwhile (each says why, and
            // the folder is made again for the next), never the host's start.
            if let Err(e) =
                std::fs::create_dir_all(&output).and_then(|()| document::sweep_temps(&output))
            {
                tracing::error!(
                    role = ROLE,
                    folder = %output.display(),
                    error = %e,
                    "the output folder cannot be used: jobs fail until it can"
                );
            }
            Ok::<_, PrintError>(opened)
        })
        .await
        .map_err(|e| PrintError::Output {
            path: config.output_dir.clone(),
            source: std::io::Error::other(e),
        })??;
        let (queue, aborted) = opened;
        for id in &aborted {
            tracing::warn!(
                role = ROLE,
                job = id,
                "a restart interrupted the job: aborted"
            );
            print_metrics.job(Outcome::Aborted);
        }
        let tls = config
            .tls
            .as_ref()
            .map(|files| tls::acceptor(files, tls::ALPN_HTTP))
            .transpose()?;
        let listener = net::bind(ROLE, SocketAddr::new(ip, config.port)).await?;
        let local = listener
            .local_addr()
            .unwrap_or(SocketAddr::new(ip, config.port));
        let shared = Arc::new(Shared {
            name: config.name.clone(),
            location: config.location.clone().unwrap_or_default(),
            info: config.info.clone().unwrap_or_default(),
            output_dir: config.output_dir.clone(),
            output_quota: config.output_quota.clone(),
            printing: tokio::sync::Mutex::new(()),
            reads: reads::Reads::default(),
            max_job_bytes: config.max_job_bytes,
            uuid: queue.uuid().to_string(),
            queue: tokio::sync::Mutex::new(queue),
            users,
            started: jobs::now(),
            local,
            tls: tls.is_some(),
            metrics: metrics.clone(),
            print_metrics: print_metrics.clone(),
        });
        let http = HttpRole::new(
            ROLE,
            listener,
            router(shared),
            MAX_CONNECTIONS,
            metrics.connections_of(ROLE),
        )
        .with_tls(tls);
        Ok(Print { http })
    }
}

impl Role for Print {
    fn name(&self) -> &'static str {
        ROLE
    }

    fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        let label = if self.http.is_tls() { "ipps" } else { "ipp" };
        self.http
            .addresses()
            .into_iter()
            .map(|(_, a)| (label, a))
            .collect()
    }

    fn run(
        self: Box<Self>,
        stop: CancellationToken,
        grace: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::new(self.http).run(stop, grace)
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let metrics = shared.metrics.clone();
    Router::new()
        .fallback(handle)
        .with_state(shared)
        .layer(from_fn_with_state((ROLE, metrics), track))
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    match (request.method().as_str(), path.as_str()) {
        // Job URIs (`/ipp/print/<id>`) are posted to as well.
        ("POST", p) if p == "/" || p == "/ipp/print" || p.starts_with("/ipp/print/") => {
            ops::ipp(&shared, request).await
        }
        ("GET", "/") => {
            let queued = shared.queue.lock().await.queued();
            let text = format!(
                "{} (hostrole print role): {queued} job(s) queued; IPP at /ipp/print\n",
                shared.name
            );
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
        }
        ("GET", "/icon.png") => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "max-age=86400"),
            ],
            icon::png(),
        )
            .into_response(),
        ("GET", p) if p.starts_with("/printouts/") => {
            let client = request.extensions().get::<ClientKey>().copied();
            let headers = request.headers().clone();
            printout(&shared, &p["/printouts/".len()..], &headers, client).await
        }
        ("GET" | "POST", _) => plain(StatusCode::NOT_FOUND, "not found"),
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            r
        }
    }
}

fn plain(code: StatusCode, text: &'static str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The scheme and authority a client reached the printer at: `(ipp|ipps, host:port)`.
fn authority(shared: &Shared, headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .map(|a| match a.port() {
            Some(_) => a.to_string(),
            None => format!("{}:{}", a.host(), shared.local.port()),
        })
        .unwrap_or_else(|| shared.local.to_string())
}

/// 401 with the Basic challenge.
fn unauthorized(shared: &Shared, headers: &HeaderMap) -> Response {
    shared.metrics.error(
        ROLE,
        if headers.contains_key(header::AUTHORIZATION) {
            Reason::AuthFailed
        } else {
            Reason::AuthRequired
        },
    );
    let mut r = plain(StatusCode::UNAUTHORIZED, "authentication required");
    let challenge = format!("Basic realm=\"{}\"", shared.name.replace(['"', '\\'], "_"));
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge)
            .unwrap_or(HeaderValue::from_static("Basic realm=\"print\"")),
    );
    r
}

/// The authenticated user of a request: `Ok(None)` without a users file, `Err(401)` when the
/// credentials are missing, wrong, or throttled.
async fn authenticate(
    shared: &Shared,
    headers: &HeaderMap,
    client: Option<ClientKey>,
) -> Result<Option<String>, Response> {
    let Some(users) = &shared.users else {
        return Ok(None);
    };
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some((name, password)) = credentials.as_deref().and_then(|c| c.split_once(':')) else {
        return Err(unauthorized(shared, headers));
    };
    match users.check(client, name, password).await {
        Check::Valid(user) => Ok(Some(user.name)),
        Check::Invalid => Err(unauthorized(shared, headers)),
        Check::Throttled => {
            shared.metrics.error(ROLE, Reason::AuthThrottled);
            Err(unauthorized(shared, headers))
        }
    }
}

/// `GET /printouts/<job-id>`: the printed document of a completed job.
async fn printout(
    shared: &Arc<Shared>,
    id: &str,
    headers: &HeaderMap,
    client: Option<ClientKey>,
) -> Response {
    let user = match authenticate(shared, headers, client).await {
        Ok(user) => user,
        Err(refused) => return refused,
    };
    let Ok(id) = id.parse::<i32>() else {
        return plain(StatusCode::NOT_FOUND, "no such printout");
    };
    let (file, format) = {
        let queue = shared.queue.lock().await;
        let Some(job) = queue.get(id) else {
            return plain(StatusCode::NOT_FOUND, "no such job");
        };
        if user.as_ref().is_some_and(|u| *u != job.user) {
            shared.metrics.error(ROLE, Reason::Forbidden);
            return plain(StatusCode::FORBIDDEN, "the job is another user's");
        }
        match (job.state, &job.printout, job.format) {
            (JobState::Completed, Some(name), Some(format)) => {
                (shared.output_dir.join(name), format)
            }
            _ => return plain(StatusCode::NOT_FOUND, "the job has no printout (yet)"),
        }
    };
    let Ok(file) = tokio::fs::File::open(&file).await else {
        return plain(StatusCode::NOT_FOUND, "the printout was removed");
    };
    let length = file.metadata().await.map(|m| m.len()).ok();
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.mime()),
    );
    if let Some(n) = length {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    response
}
