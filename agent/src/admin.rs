//! The admin endpoint: `/healthz` (the process answers), `/readyz` (every role listens and the
//! agent is not stopping) and `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    pub role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub role: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub role: String,
    /// `in` (received from clients) or `out` (sent to clients).
    pub direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub role: String,
    pub method: String,
    pub code: u16,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// The agent's metrics, shared by every role.
#[derive(Clone)]
pub struct AgentMetrics {
    pub role_ready: Family<RoleLabels, Gauge>,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RoleLabels, Histogram, fn() -> Histogram>,
    pub connections: Family<RoleLabels, Gauge>,
    /// Payload bytes moved by a role (uploads, downloads, messages).
    pub bytes: Family<DirectionLabels, Counter>,
    /// Failures by role and a CamelCase reason (e.g. `QuotaExceeded`, `AuthFailed`).
    pub errors: Family<ErrorLabels, Counter>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self {
            role_ready: Family::default(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            connections: Family::default(),
            bytes: Family::default(),
            errors: Family::default(),
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
    }

    /// Counts `n` payload bytes of `role` in `direction` ("in" or "out").
    pub fn moved(&self, role: &str, direction: &str, n: u64) {
        self.bytes
            .get_or_create(&DirectionLabels {
                role: role.to_string(),
                direction: direction.to_string(),
            })
            .inc_by(n);
    }

    /// Counts one failure of `role` for `reason`.
    pub fn error(&self, role: &str, reason: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                role: role.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The open-connections gauge of one role.
    pub fn connections_of(&self, role: &str) -> Gauge {
        self.connections.get_or_create(&label(role)).clone()
    }
}

fn label(role: &str) -> RoleLabels {
    RoleLabels {
        role: role.to_string(),
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
    let method = method_label(request.method()).to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .request_seconds
        .get_or_create(&label(role))
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            role: role.to_string(),
            method,
            code: response.status().as_u16(),
        })
        .inc();
    response
}

/// Which roles listen, and whether the agent is stopping.
#[derive(Clone, Default)]
pub struct Readiness {
    roles: Arc<std::sync::RwLock<BTreeMap<String, bool>>>,
    stopping: Arc<AtomicBool>,
    metrics: Option<AgentMetrics>,
}

impl Readiness {
    pub fn new(metrics: AgentMetrics) -> Self {
        Self {
            metrics: Some(metrics),
            ..Self::default()
        }
    }

    /// Declares a role; it is not ready until [`Readiness::set`] says so.
    pub fn expect(&self, role: &str) {
        self.set(role, false);
    }

    pub fn set(&self, role: &str, ready: bool) {
        if let Ok(mut roles) = self.roles.write() {
            roles.insert(role.to_string(), ready);
        }
        if let Some(m) = &self.metrics {
            m.role_ready
                .get_or_create(&label(role))
                .set(i64::from(ready));
        }
    }

    /// From now on `/readyz` fails, so that load balancers stop sending new clients.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Ready when at least one role is declared, every role is ready, and the agent is not stopping.
    /// The error lists what is missing.
    pub fn check(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err("stopping".into());
        }
        let roles = self
            .roles
            .read()
            .map_err(|_| "readiness state poisoned".to_string())?;
        let waiting: Vec<&str> = roles
            .iter()
            .filter(|(_, ready)| !**ready)
            .map(|(r, _)| r.as_str())
            .collect();
        if roles.is_empty() {
            Err("no role started".into())
        } else if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("not listening yet: {}", waiting.join(", ")))
        }
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// The admin router.
pub fn router(registry: Arc<Registry>, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(AdminState {
            registry,
            readiness,
        })
}

async fn ready(State(state): State<AdminState>) -> Response {
    match state.readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response(),
    }
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
    fn ready_only_when_every_role_listens_and_not_stopping() {
        let r = Readiness::default();
        assert_eq!(r.check(), Err("no role started".into()));
        r.expect("web");
        r.expect("admin");
        assert_eq!(r.check(), Err("not listening yet: admin, web".into()));
        r.set("web", true);
        assert_eq!(r.check(), Err("not listening yet: admin".into()));
        r.set("admin", true);
        assert_eq!(r.check(), Ok(()));
        r.stopping();
        assert_eq!(r.check(), Err("stopping".into()));
    }
}
