//! The agent's metrics, shared by every role (the admin endpoint serves them on `/metrics`).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A role's name as a label: borrowed for the static names of the per-request path, so that
/// counting a request allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: Cow<'static, str>,
}

/// Why a role counted a failure. A closed set: a label value never comes from a client, so no
/// client can add series.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Reason {
    // Accounts and access.
    AuthFailed,
    AuthRequired,
    ReadOnlyUser,
    UnknownUser,
    /// Submission: an envelope sender that is not the user's own address.
    SenderNotOwned,
    // Limits.
    QuotaExceeded,
    UploadTooLarge,
    MessageTooBig,
    LineTooLong,
    CommandTooLong,
    TooManyCommands,
    TooManyErrors,
    TooManyLocks,
    Timeout,
    // TLS.
    TlsFailed,
    TlsRequired,
    // Mail routing.
    RelayDenied,
    OutboundUnavailable,
    DataAborted,
    // Storage.
    StorageFailed,
    // WebDAV requests refused before they reach the share.
    BadDestination,
    Forbidden,
    ReservedPath,
    ForeignDestination,
    InfiniteDepth,
    LockNotYours,
    // Peers and the index.
    AuthMissing,
    AuthMalformed,
    AuthStale,
    AuthBadSignature,
    AuthReplayed,
    Busy,
    BadAddress,
    UnknownNetwork,
    BodyTooLarge,
    DownloadFailed,
    ChunkRejected,
    /// A chunk request answered "busy": every upload slot was taken.
    UploadSlotsFull,
    IndexUnreachable,
    // Line-protocol sessions (mail).
    /// An idle session closed to make room when the listener was full.
    Evicted,
    /// A connection refused: its address held its share of sessions, all busy.
    TooManyConnections,
    /// A session closed after repeated failed logins.
    TooManyAuthFailures,
    /// A login answered "try later" without checking the password: the address or the account
    /// failed too often recently.
    AuthThrottled,
    /// A connection closed because it read too slowly: its queue of unsent output grew past
    /// the limit (chat: "SendQ exceeded").
    SendQueueFull,
}

/// Which way payload bytes went: `in` (received from clients) or `out` (sent to them).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl EncodeLabelValue for Direction {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            Direction::In => "in",
            Direction::Out => "out",
        })
    }
}

/// How a line-protocol command was answered: SMTP 2xx/3xx, IMAP OK and POP3 +OK are `Ok`; a
/// refusal (SMTP 4xx/5xx for a well-formed command, IMAP NO, POP3 -ERR) is `Rejected`; a
/// command that could not be read (SMTP 500–504, IMAP BAD) is `Malformed`. The label values
/// are the variant names.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Ok,
    Rejected,
    Malformed,
}

/// What an outbound delivery attempt did for one recipient (the mail role's queue), or a bounce
/// sent for a message.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum OutboundResult {
    Delivered,
    /// A temporary failure: retried later.
    Deferred,
    /// A permanent failure (or the lifetime ran out).
    Failed,
    /// A bounce (DSN) delivered to or queued for the sender.
    Bounced,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutboundLabels {
    pub result: OutboundResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub role: String,
    pub reason: Reason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub role: String,
    pub direction: Direction,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub role: String,
    /// The command's verb as the parser names it (a fixed set; `UNKNOWN` when unreadable).
    pub command: &'static str,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub role: Cow<'static, str>,
    pub method: &'static str,
    pub code: u16,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// The agent's metrics, shared by every role. One `Arc` around the families: the per-request
/// middleware holds a clone, and cloning nine families per request was nine atomic increments
/// and decrements.
#[derive(Clone, Default)]
pub struct AgentMetrics(Arc<Families>);

impl std::ops::Deref for AgentMetrics {
    type Target = Families;
    fn deref(&self) -> &Families {
        &self.0
    }
}

/// The metric families of [`AgentMetrics`].
pub struct Families {
    pub role_ready: Family<RoleLabels, Gauge>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RoleLabels, Histogram, fn() -> Histogram>,
    pub connections: Family<RoleLabels, Gauge>,
    /// Payload bytes moved by a role (uploads, downloads, messages).
    pub bytes: Family<DirectionLabels, Counter>,
    /// Failures by role and reason.
    pub errors: Family<ErrorLabels, Counter>,
    /// Commands of the line protocols (SMTP, IMAP, POP3), by role, command and outcome.
    pub commands: Family<CommandLabels, Counter>,
    /// Outbound mail: recipients delivered, deferred, failed; bounces sent.
    pub mail_outbound: Family<OutboundLabels, Counter>,
    /// Messages in the outbound mail queue.
    pub mail_queue: Gauge,
}

impl Default for Families {
    fn default() -> Self {
        Self {
            role_ready: Family::default(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            connections: Family::default(),
            bytes: Family::default(),
            errors: Family::default(),
            commands: Family::default(),
            mail_outbound: Family::default(),
            mail_queue: Gauge::default(),
        }
    }
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentMetrics")
    }
}

impl AgentMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("hostrole_agent");
        r.register(
            "role_ready",
            "1 while the role listens",
            self.role_ready.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests answered, by role, method and status",
            self.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (headers), by role",
            self.request_seconds.clone(),
        );
        r.register(
            "open_connections",
            "Connections open now, by role",
            self.connections.clone(),
        );
        r.register(
            "bytes",
            "Payload bytes moved, by role and direction",
            self.bytes.clone(),
        );
        r.register(
            "errors",
            "Failures, by role and reason",
            self.errors.clone(),
        );
        r.register(
            "commands",
            "Line-protocol commands answered (SMTP, IMAP, POP3), by role, command and outcome",
            self.commands.clone(),
        );
        r.register(
            "mail_outbound",
            "Outbound mail: recipients delivered, deferred and failed, and bounces sent",
            self.mail_outbound.clone(),
        );
        r.register(
            "mail_queue_messages",
            "Messages waiting in the outbound mail queue",
            self.mail_queue.clone(),
        );
    }

    /// Counts one outbound result.
    pub fn outbound(&self, result: OutboundResult) {
        self.mail_outbound
            .get_or_create(&OutboundLabels { result })
            .inc();
    }

    /// Sets the outbound queue's length.
    pub fn queue_length(&self, messages: i64) {
        self.mail_queue.set(messages);
    }

    /// Counts `n` payload bytes of `role` in `direction`.
    pub fn moved(&self, role: &str, direction: Direction, n: u64) {
        self.bytes
            .get_or_create(&DirectionLabels {
                role: role.to_string(),
                direction,
            })
            .inc_by(n);
    }

    /// Counts one failure of `role` for `reason`.
    pub fn error(&self, role: &str, reason: Reason) {
        self.errors
            .get_or_create(&ErrorLabels {
                role: role.to_string(),
                reason,
            })
            .inc();
    }

    /// Counts one answered command of a line protocol.
    pub fn command(&self, role: &str, command: &'static str, outcome: Outcome) {
        self.commands
            .get_or_create(&CommandLabels {
                role: role.to_string(),
                command,
                outcome,
            })
            .inc();
    }

    /// The open-connections gauge of one role.
    pub fn connections_of(&self, role: &str) -> Gauge {
        self.connections.get_or_create(&label(role)).clone()
    }
}

pub fn label(role: &str) -> RoleLabels {
    RoleLabels {
        role: Cow::Owned(role.to_string()),
    }
}

/// The `method` label of a request: a method of HTTP or WebDAV, else `OTHER`, so that clients
/// cannot add series (a method is any token a client sends).
pub fn method_label(method: &http::Method) -> &'static str {
    const KNOWN: [&str; 16] = [
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "OPTIONS",
        "PATCH",
        "TRACE",
        "CONNECT",
        "PROPFIND",
        "PROPPATCH",
        "MKCOL",
        "COPY",
        "MOVE",
        "LOCK",
        "UNLOCK",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("OTHER")
}

/// A middleware that counts and times every request of `role`.
pub async fn track(
    State((role, metrics)): State<(&'static str, AgentMetrics)>,
    request: Request,
    next: Next,
) -> Response {
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .request_seconds
        .get_or_create(&RoleLabels {
            role: Cow::Borrowed(role),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            role: Cow::Borrowed(role),
            method,
            code: response.status().as_u16(),
        })
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_http_and_webdav_are_one_label() {
        let label = |m: &str| method_label(&http::Method::from_bytes(m.as_bytes()).expect("token"));
        assert_eq!(label("GET"), "GET");
        assert_eq!(label("PROPFIND"), "PROPFIND");
        assert_eq!(label("get"), "OTHER");
        assert_eq!(label("ATTACK1"), "OTHER");
    }

    #[test]
    fn label_values_are_the_documented_ones() {
        let metrics = AgentMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.moved("smtp", Direction::In, 3);
        metrics.error("smtp", Reason::RelayDenied);
        metrics.command("imap", "FETCH", Outcome::Rejected);
        metrics.outbound(OutboundResult::Deferred);
        metrics.queue_length(2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for line in [
            "hostrole_agent_bytes_total{role=\"smtp\",direction=\"in\"} 3",
            "hostrole_agent_errors_total{role=\"smtp\",reason=\"RelayDenied\"} 1",
            "hostrole_agent_commands_total{role=\"imap\",command=\"FETCH\",outcome=\"Rejected\"} 1",
            "hostrole_agent_mail_outbound_total{result=\"Deferred\"} 1",
            "hostrole_agent_mail_queue_messages 2",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
