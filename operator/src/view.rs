//! The live topology view: a web page (no external assets) that draws [`crate::topology`] and
//! follows it as the cluster changes. One watch of HostRoles feeds a store; viewers get the
//! graph over server-sent events whenever it changes (coalesced), so a hundred open pages cost
//! the API server nothing more than one.
//!
//! Read-only: only `GET`. It listens on loopback (reached with `kubectl port-forward`, or run
//! on a laptop with `hostrole-operator view` and the user's own kubeconfig) and answers only
//! requests that name loopback in `Host` (DNS rebinding). Whoever reaches it sees every HostRole
//! of the namespaces it watches, with their status: run in the operator, that is what the
//! operator may read; run with `hostrole-operator view`, what the user may.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use hostrole_agent_core::net::loopback::{loopback_host, loopback_origin};
use hostrole_api::HostRole;
use k8s_openapi::api::core::v1::Event as KubeEvent;
use kube::api::ListParams;
use kube::runtime::reflector::Store;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::cache::Cache;
use crate::topology::{self, Filter};

/// Pages following the graph at once; more get `503`.
pub const MAX_VIEWERS: usize = 64;
/// Changes closer together than this reach viewers as one update.
pub const COALESCE: Duration = Duration::from_millis(300);
/// Events shown for a host's HostRole.
const MAX_EVENTS: usize = 20;

const INDEX: &str = include_str!("view/index.html");
const SCRIPT: &str = include_str!("view/view.js");
const STYLE: &str = include_str!("view/view.css");

/// Why the view cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("cannot reach the Kubernetes API (kubeconfig or in-cluster config): {0}")]
    Client(#[source] kube::Error),
    #[error("cannot serve the view on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the pages read: the store, a counter bumped on every change, and who may read events.
#[derive(Clone)]
pub struct Shared {
    store: Store<HostRole>,
    changes: watch::Receiver<u64>,
    viewers: Arc<Semaphore>,
    /// For a host's events; none in tests without an API server.
    client: Option<Client>,
}

impl Shared {
    /// A view over `store`, told of changes by `changes`.
    pub fn new(
        store: Store<HostRole>,
        changes: watch::Receiver<u64>,
        client: Option<Client>,
    ) -> Self {
        Shared {
            store,
            changes,
            viewers: Arc::new(Semaphore::new(MAX_VIEWERS)),
            client,
        }
    }

    fn hostroles(&self) -> Vec<HostRole> {
        self.store.state().iter().map(|hr| (**hr).clone()).collect()
    }
}

/// Watches the HostRoles of `namespace` (all when absent) with `client` and serves the view on
/// `addr` until the process stops.
pub async fn serve(
    client: Client,
    namespace: Option<String>,
    addr: SocketAddr,
) -> Result<(), ViewError> {
    let api: Api<HostRole> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (cache, events) = Cache::fill(watcher(api, watcher::Config::default()).default_backoff());
    let (tx, changes) = watch::channel(0u64);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(_) => {
                    tx.send_modify(|n| *n += 1);
                }
                Err(e) => tracing::warn!(error = %e, "the view's HostRole watch failed; retrying"),
            }
        }
    });
    // Listen first, so that a taken port is said at once; serve once the first list is in.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ViewError::Listen { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %local, "listing HostRoles for the topology view");
    let store = cache.ready().await.clone();
    tracing::info!(addr = %local, "serving the topology view");
    println!("hostrole view: http://{local}/");
    let app = router(Shared::new(store, changes, Some(client)));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the view stopped");
    }
    Ok(())
}

/// The view's routes over `shared`.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { page(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/view.js",
            get(|| async { page(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/view.css",
            get(|| async { page(STYLE, "text/css; charset=utf-8") }),
        )
        .route("/api/topology", get(topology_now))
        .route("/api/updates", get(updates))
        .route("/api/host", get(host))
        .layer(from_fn(loopback_only))
        .with_state(shared)
}

fn page(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn loopback_only(request: Request, next: Next) -> Response {
    if let Err(refusal) = check_request(&request) {
        return refusal.into_response();
    }
    next.run(request).await
}

fn header_text(request: &Request, name: header::HeaderName) -> Option<String> {
    request
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_string())
}

/// A page of this view, asked for by its own name, reading.
fn check_request(request: &Request) -> Result<(), (StatusCode, &'static str)> {
    let host = header_text(request, header::HOST)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    if !host.as_deref().is_some_and(loopback_host) {
        return Err((
            StatusCode::FORBIDDEN,
            "open the view at http://127.0.0.1:<port>/ (other names are refused against DNS rebinding)\n",
        ));
    }
    if let Some(origin) = header_text(request, header::ORIGIN)
        && !loopback_origin(&origin)
    {
        return Err((StatusCode::FORBIDDEN, "not a page of this view\n"));
    }
    if request.method() != axum::http::Method::GET && request.method() != axum::http::Method::HEAD {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "the view is read-only\n"));
    }
    Ok(())
}

/// `?ns=a,b&role=web,print&hostrole=ns/name`: what a page shows.
#[derive(Deserialize, Default, Debug)]
pub struct Params {
    #[serde(default)]
    ns: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    hostrole: String,
}

impl Params {
    fn filter(&self) -> Filter {
        let list = |s: &str| {
            s.split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect()
        };
        Filter {
            namespaces: list(&self.ns),
            roles: list(&self.role),
            groups: list(&self.hostrole),
        }
    }
}

fn json(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn topology_now(State(shared): State<Shared>, Query(params): Query<Params>) -> Response {
    json(topology::to_json(&topology::build(
        &shared.hostroles(),
        &params.filter(),
    )))
}

/// Server-sent events: the graph at once, then again after each change that alters it (at most
/// one per [`COALESCE`]); a comment every 15 s keeps proxies from closing the stream.
async fn updates(State(shared): State<Shared>, Query(params): Query<Params>) -> Response {
    let Ok(permit) = shared.viewers.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            format!("{MAX_VIEWERS} pages already follow this view\n"),
        )
            .into_response();
    };
    Sse::new(stream(shared, params.filter(), permit))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn stream(
    shared: Shared,
    filter: Filter,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct Follow {
        shared: Shared,
        filter: Filter,
        last: String,
        first: bool,
        _permit: OwnedSemaphorePermit,
    }
    let state = Follow {
        shared,
        filter,
        last: String::new(),
        first: true,
        _permit: permit,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if !s.first {
                if s.shared.changes.changed().await.is_err() {
                    return None;
                }
                tokio::time::sleep(COALESCE).await;
                s.shared.changes.borrow_and_update();
            }
            s.first = false;
            let body = topology::to_json(&topology::build(&s.shared.hostroles(), &s.filter));
            if body != s.last {
                s.last = body.clone();
                return Some((Ok(Event::default().event("topology").data(body)), s));
            }
        }
    })
}

#[derive(Deserialize)]
struct HostQuery {
    /// `namespace/host`.
    id: String,
}

/// One host: its HostRole's status (conditions, the host's roles and clients, where the roles
/// are reached) and the HostRole's latest events, read when asked (a click, not a poll).
async fn host(State(shared): State<Shared>, Query(q): Query<HostQuery>) -> Response {
    let Some((ns, name)) = q.id.split_once('/') else {
        return (StatusCode::BAD_REQUEST, "id is namespace/host\n").into_response();
    };
    let found = shared.store.state().into_iter().find(|hr| {
        hr.namespace().as_deref() == Some(ns)
            && hr
                .status
                .as_ref()
                .is_some_and(|s| s.hosts.iter().any(|h| h.name == name))
    });
    let Some(hr) = found else {
        return (StatusCode::NOT_FOUND, format!("no host {} here\n", q.id)).into_response();
    };
    let status = hr.status.clone().unwrap_or_default();
    let this = status.hosts.iter().find(|h| h.name == name).cloned();
    let (events, events_error) = match &shared.client {
        Some(client) => match events_of(client, ns, &hr.name_any()).await {
            Ok(list) => (list, None),
            Err(e) => (Vec::new(), Some(e)),
        },
        None => (Vec::new(), Some("no API server to ask".to_string())),
    };
    let body = serde_json::json!({
        "id": q.id,
        "hostRole": format!("{ns}/{}", hr.name_any()),
        "host": this,
        "conditions": status.conditions,
        "endpoints": status.endpoints,
        "events": events,
        "eventsError": events_error,
    });
    json(body.to_string())
}

/// The HostRole's latest events (type, reason, message, time), newest first.
async fn events_of(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Vec<BTreeMap<&'static str, String>>, String> {
    let api: Api<KubeEvent> = Api::namespaced(client.clone(), ns);
    let selector = format!("involvedObject.kind=HostRole,involvedObject.name={name}");
    let list = api
        .list(&ListParams::default().fields(&selector))
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 403 => {
                "events are not readable with this identity (RBAC)".to_string()
            }
            other => format!("cannot list events: {other}"),
        })?;
    let mut events: Vec<(String, BTreeMap<&'static str, String>)> = list
        .items
        .into_iter()
        .map(|e| {
            let when = e
                .last_timestamp
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.map(|t| t.0.to_string()))
                .unwrap_or_default();
            let mut row = BTreeMap::new();
            row.insert("type", e.type_.unwrap_or_default());
            row.insert("reason", e.reason.unwrap_or_default());
            row.insert("message", e.message.unwrap_or_default());
            row.insert("time", when.clone());
            (when, row)
        })
        .collect();
    events.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(events
        .into_iter()
        .take(MAX_EVENTS)
        .map(|(_, r)| r)
        .collect())
}
