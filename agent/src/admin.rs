//! The admin endpoint: `/healthz` (the process answers), `/readyz` (every role listens and the
//! agent is not stopping) and `/metrics` (Prometheus text format).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hostrole_agent_core::metrics::{AgentMetrics, label};
use prometheus_client::registry::Registry;

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

    /// Each declared role and whether it listens.
    pub fn roles(&self) -> BTreeMap<String, bool> {
        self.roles.read().map(|r| r.clone()).unwrap_or_default()
    }

    /// Whether the agent is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
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
