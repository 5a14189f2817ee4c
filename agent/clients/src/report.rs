//! Reports client results to the operator as conditions of the host's own pod.
//!
//! One condition per client: `type` = `clients.hostrole.dev/<client name>`, `status` `True`
//! (last run ok), `False` (failed) or `Unknown` (not run yet), `reason` as in `/clients`,
//! `message` = `latencyMs=<n>; lastSuccess=<RFC 3339 or ->; <detail>`
//! ([`ClientConditionMessage`]), `lastProbeTime` = the run's start, `lastTransitionTime` kept
//! until the status changes.
//!
//! **When it writes** ([`plan`]): when any client's status, reason or detail changed since the
//! last write, else at most every [`REFRESH`] (5 minutes) to refresh latencies. A write sends
//! every client's condition with server-side apply (field manager `hostrole-agent`, forced) on
//! the pod's `status` subresource; conditions of other writers (the kubelet's) are untouched,
//! and a condition this agent stops sending (a removed client) is removed by the API server.
//! A failed write is logged and retried with backoff (1 s doubling to 5 min); it never stops
//! the agent.

use hostrole_agent_core::backoff::{Backoff, Jitter};
use std::collections::BTreeMap;
use std::time::Duration;

use hostrole_config::{
    CLIENT_CONDITION_PREFIX, ClientConditionMessage, ENV_POD_NAME, ENV_POD_NAMESPACE,
};
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use tokio_util::sync::CancellationToken;

use super::{ClientResult, Reason, Results, seconds};

/// Longest time between two writes while nothing changes.
pub const REFRESH: Duration = Duration::from_secs(300);
/// Field manager of the agent's server-side applies.
pub const FIELD_MANAGER: &str = "hostrole-agent";
/// How often the reporter looks at the results when no client reports a change.
const TICK: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The condition a result asks for (without times).
fn wanted(result: &ClientResult) -> (&'static str, String, ClientConditionMessage) {
    let status = match result.reason {
        Reason::Pending => "Unknown",
        _ if result.ok => "True",
        _ => "False",
    };
    let message = ClientConditionMessage {
        latency_ms: result.latency_ms,
        last_success: result.last_success.map(|t| seconds(t).to_string()),
        detail: result.message.clone(),
    };
    (status, result.reason.to_string(), message)
}

/// Whether `previous` says the same as the wanted condition, latency and times aside.
fn same(
    previous: &PodCondition,
    status: &str,
    reason: &str,
    message: &ClientConditionMessage,
) -> bool {
    let old = previous
        .message
        .as_deref()
        .and_then(ClientConditionMessage::parse)
        .unwrap_or_default();
    previous.status == status
        && previous.reason.as_deref() == Some(reason)
        && old.detail == message.detail
        && old.last_success.is_some() == message.last_success.is_some()
}

/// The conditions to write now, or `None` when the last write still says it all.
///
/// `written` holds what the last successful write sent (by client name), `last_write` when.
/// A write is due when a client is new, or its status, reason or detail changed (or it
/// succeeded for the first time), or [`REFRESH`] has passed since the last write. A due write
/// carries every client's condition; `lastTransitionTime` is kept from `written` when the
/// status did not change.
pub fn plan(
    results: &[ClientResult],
    written: &BTreeMap<String, PodCondition>,
    last_write: Option<Timestamp>,
    now: Timestamp,
) -> Option<Vec<PodCondition>> {
    let refresh_due = match last_write {
        None => true,
        Some(t) => now.duration_since(t).unsigned_abs() >= REFRESH,
    };
    let mut changed = written.len() != results.len();
    let mut conditions = Vec::with_capacity(results.len());
    for result in results {
        let (status, reason, message) = wanted(result);
        let previous = written.get(&result.name);
        match previous {
            Some(p) if same(p, status, &reason, &message) => {}
            _ => changed = true,
        }
        let transition = match previous {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(Time(seconds(now))),
        };
        conditions.push(PodCondition {
            type_: format!("{CLIENT_CONDITION_PREFIX}{}", result.name),
            status: status.to_string(),
            reason: Some(reason),
            message: Some(message.format()),
            last_probe_time: result.last_run.map(|t| Time(seconds(t))),
            last_transition_time: transition,
            ..PodCondition::default()
        });
    }
    (changed || refresh_due).then_some(conditions)
}

/// Writes the pod's client conditions when the agent runs in a pod with API access.
pub struct Reporter {
    pod: String,
    namespace: String,
}

impl Reporter {
    /// A reporter when `POD_NAME` and `POD_NAMESPACE` are set; `None` standalone.
    pub fn from_env() -> Option<Self> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Some(Self {
            pod: get(ENV_POD_NAME)?,
            namespace: get(ENV_POD_NAMESPACE)?,
        })
    }

    /// Writes conditions as results change until `stop`. Without an in-cluster configuration
    /// it logs why and does nothing.
    pub async fn run(self, results: Results, stop: CancellationToken) {
        let config = match kube::Config::incluster() {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, "no in-cluster API access: client results are not reported as pod conditions");
                return;
            }
        };
        let client = match kube::Client::try_from(config) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build an API client: client results are not reported as pod conditions");
                return;
            }
        };
        let pods: kube::Api<Pod> = kube::Api::namespaced(client, &self.namespace);
        let mut written: BTreeMap<String, PodCondition> = BTreeMap::new();
        let mut last_write: Option<Timestamp> = None;
        // 1 s doubling to the cap.
        let retry = Backoff {
            first: Duration::from_secs(1),
            cap: MAX_BACKOFF,
            jitter: Jitter::None,
        };
        let mut failures = 0u32;
        loop {
            let snapshot = results.snapshot();
            let now = Timestamp::now();
            let mut wait = TICK;
            if let Some(conditions) = plan(&snapshot, &written, last_write, now) {
                match self.apply(&pods, &conditions).await {
                    Ok(()) => {
                        written = snapshot
                            .iter()
                            .map(|r| r.name.clone())
                            .zip(conditions)
                            .collect();
                        last_write = Some(now);
                        failures = 0;
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        wait = retry.delay(failures);
                        tracing::warn!(pod = %self.pod, error = %e, retry_in = ?wait, "cannot write the client conditions of the pod");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = results.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn apply(
        &self,
        pods: &kube::Api<Pod>,
        conditions: &[PodCondition],
    ) -> Result<(), kube::Error> {
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": self.pod, "namespace": self.namespace},
            "status": {"conditions": conditions},
        });
        pods.patch_status(
            &self.pod,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map(|_| ())
    }
}

/// The server-side apply body: the pod's identity and the client conditions, nothing else.
pub fn patch_body(pod: &str, namespace: &str, conditions: &[PodCondition]) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod, "namespace": namespace},
        "status": {"conditions": conditions},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostrole_config::ClientService;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("time")
    }

    fn result(name: &str, reason: Reason, latency: u64, run: i64) -> ClientResult {
        let ok = reason == Reason::Ok;
        ClientResult {
            name: name.into(),
            service: ClientService::Web,
            server: "office".into(),
            ok,
            reason,
            message: if ok {
                "GET / answered 200 OK".into()
            } else {
                "GET /: cannot connect".into()
            },
            latency_ms: (reason != Reason::Pending).then_some(latency),
            timings_ms: BTreeMap::new(),
            last_success: ok.then(|| at(run)),
            last_run: (reason != Reason::Pending).then(|| at(run)),
        }
    }

    /// The write goes to the pod's status subresource as a forced server-side apply of the
    /// agent's field manager, carrying only the client conditions.
    #[tokio::test]
    async fn conditions_are_applied_server_side_to_the_pods_status() {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, Method, Uri};
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let seen = seen_tx.clone();
            async move {
                let _ = seen.send((method, uri, headers, body));
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"laptop-0","namespace":"lan"}}"#,
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });

        let config = kube::Config::new(format!("http://{addr}").parse().expect("uri"));
        let client = kube::Client::try_from(config).expect("client");
        let pods: kube::Api<Pod> = kube::Api::namespaced(client, "lan");
        let reporter = Reporter {
            pod: "laptop-0".into(),
            namespace: "lan".into(),
        };
        let results = vec![result("web-0", Reason::Ok, 3, 0)];
        let conditions = plan(&results, &BTreeMap::new(), None, at(0)).expect("write");
        reporter.apply(&pods, &conditions).await.expect("applied");

        let (method, uri, headers, body) = seen_rx.recv().await.expect("a request");
        assert_eq!(method, Method::PATCH);
        assert_eq!(uri.path(), "/api/v1/namespaces/lan/pods/laptop-0/status");
        let query = uri.query().unwrap_or_default();
        assert!(query.contains("fieldManager=hostrole-agent"), "{query}");
        assert!(query.contains("force=true"), "{query}");
        assert_eq!(
            headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/apply-patch+yaml")
        );
        let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            body,
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "laptop-0", "namespace": "lan"},
                "status": {"conditions": [{
                    "type": "clients.hostrole.dev/web-0",
                    "status": "True",
                    "reason": "Ok",
                    "message": "latencyMs=3; lastSuccess=2027-01-15T08:00:00Z; GET / answered 200 OK",
                    "lastProbeTime": "2027-01-15T08:00:00Z",
                    "lastTransitionTime": "2027-01-15T08:00:00Z",
                }]},
            })
        );
    }

    fn remember(
        results: &[ClientResult],
        conditions: Vec<PodCondition>,
    ) -> BTreeMap<String, PodCondition> {
        results
            .iter()
            .map(|r| r.name.clone())
            .zip(conditions)
            .collect()
    }

    #[test]
    fn the_first_write_says_unknown_for_clients_not_run_yet() {
        let results = vec![result("web-0", Reason::Pending, 0, 0)];
        let conditions = plan(&results, &BTreeMap::new(), None, at(0)).expect("first write");
        let c = &conditions[0];
        assert_eq!(c.type_, "clients.hostrole.dev/web-0");
        assert_eq!(c.status, "Unknown");
        assert_eq!(c.reason.as_deref(), Some("Pending"));
        assert_eq!(
            c.message.as_deref(),
            Some("latencyMs=-; lastSuccess=-; GET /: cannot connect")
        );
        assert_eq!(c.last_probe_time, None);
        assert_eq!(c.last_transition_time, Some(Time(at(0))));
    }

    #[test]
    fn unchanged_results_are_written_again_only_after_five_minutes() {
        let first = vec![
            result("web-0", Reason::Ok, 3, 0),
            result("file-1", Reason::Ok, 9, 0),
        ];
        let conditions = plan(&first, &BTreeMap::new(), None, at(0)).expect("first write");
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0].status, "True");
        assert_eq!(
            conditions[0].message.as_deref(),
            Some("latencyMs=3; lastSuccess=2027-01-15T08:00:00Z; GET / answered 200 OK")
        );
        let written = remember(&first, conditions);
        // Latency and times change every run: no write for that alone.
        let later = vec![
            result("web-0", Reason::Ok, 5, 30),
            result("file-1", Reason::Ok, 11, 30),
        ];
        assert_eq!(plan(&later, &written, Some(at(0)), at(30)), None);
        assert_eq!(plan(&later, &written, Some(at(0)), at(299)), None);
        let refreshed = plan(&later, &written, Some(at(0)), at(300)).expect("refresh");
        assert_eq!(
            refreshed[0]
                .message
                .as_deref()
                .map(|m| m.starts_with("latencyMs=5;")),
            Some(true)
        );
        assert_eq!(refreshed[0].last_probe_time, Some(Time(at(30))));
        assert_eq!(
            refreshed[0].last_transition_time,
            Some(Time(at(0))),
            "no transition"
        );
    }

    #[test]
    fn a_change_of_status_reason_or_detail_is_written_at_once() {
        let first = vec![
            result("web-0", Reason::Ok, 3, 0),
            result("file-1", Reason::Ok, 9, 0),
        ];
        let written = remember(
            &first,
            plan(&first, &BTreeMap::new(), None, at(0)).expect("write"),
        );

        let failed = vec![
            result("web-0", Reason::ConnectFailed, 1, 10),
            result("file-1", Reason::Ok, 9, 10),
        ];
        let conditions = plan(&failed, &written, Some(at(0)), at(10)).expect("status changed");
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[0].reason.as_deref(), Some("ConnectFailed"));
        assert_eq!(conditions[0].last_transition_time, Some(Time(at(10))));
        assert_eq!(
            conditions[0].message.as_deref(),
            Some("latencyMs=1; lastSuccess=-; GET /: cannot connect"),
            "this run did not succeed (lastSuccess is the client's, kept by the loop)"
        );
        // The other client's condition goes along unchanged in its transition time.
        assert_eq!(conditions[1].last_transition_time, Some(Time(at(0))));
        let written = remember(&failed, conditions);

        // Same failure, other reason: written; same failure again: not.
        let timeout = vec![
            result("web-0", Reason::Timeout, 10_000, 20),
            result("file-1", Reason::Ok, 9, 20),
        ];
        let conditions = plan(&timeout, &written, Some(at(10)), at(20)).expect("reason changed");
        assert_eq!(
            conditions[0].last_transition_time,
            Some(Time(at(10))),
            "still False"
        );
        let written = remember(&timeout, conditions);
        assert_eq!(plan(&timeout, &written, Some(at(20)), at(25)), None);

        // Detail changed.
        let mut other = timeout.clone();
        other[0].message = "GET / answered 500".into();
        assert!(plan(&other, &written, Some(at(20)), at(26)).is_some());

        // A client more or less.
        assert!(plan(&timeout[..1], &written, Some(at(20)), at(26)).is_some());
    }
}
