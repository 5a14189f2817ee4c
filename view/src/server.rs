//! The live topology view: a web page (no external assets) that draws [`crate::topology`] and
//! follows it as the hosts change. The page's data comes from a [`Source`]: one per process,
//! however many pages are open; pages get the graph over server-sent events whenever it changes
//! (coalesced), so a hundred open pages cost the source nothing more than one.
//!
//! Read-only: only `GET`. It answers only requests that name loopback in `Host` (DNS
//! rebinding) and pages of its own origin. It has no login: whoever reaches it sees every
//! HostRole the source holds, with its status.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use hostrole_agent_core::metrics::AgentMetrics;
use hostrole_agent_core::net::{
    self,
    loopback::{loopback_host, loopback_origin},
};
use hostrole_api::HostRole;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::topology::{self, Filter};

/// Pages following the graph at once; more get `503`.
pub const MAX_VIEWERS: usize = 64;
/// `/api/topology` and `/api/host` answers being made at once (a graph to build, an events
/// list to ask the API server for); more get `503`.
pub const MAX_READS: usize = 8;
/// Connections the view serves at once: every follower, every read, and a few for the page's
/// files. When all are open the one idle longest is closed for a new one (the agent's bounded
/// listener, `hostrole_agent_core::net`), with its header and idle timeouts.
pub const MAX_CONNECTIONS: usize = MAX_VIEWERS + MAX_READS + 8;
/// Changes closer together than this reach viewers as one update.
pub const COALESCE: Duration = Duration::from_millis(300);

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/view.js");
const STYLE: &str = include_str!("assets/view.css");

/// One event of a HostRole, as the host panel lists it.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
    pub time: String,
}

/// Where the view's HostRoles come from.
pub trait Source: Clone + Send + Sync + 'static {
    /// Every HostRole now, with its status.
    fn hostroles(&self) -> Vec<Arc<HostRole>>;

    /// The latest events of the HostRole `name` in `namespace`, newest first; or why there are
    /// none to show.
    fn events(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Vec<EventRow>, String>> + Send;
}

/// What the pages read: the source, a counter bumped on every change, and the viewer slots.
#[derive(Clone)]
pub struct Shared<S> {
    source: S,
    changes: watch::Receiver<u64>,
    viewers: Arc<Semaphore>,
    reads: Arc<Semaphore>,
}

impl<S: Source> Shared<S> {
    /// A view over `source`, told of changes by `changes`.
    pub fn new(source: S, changes: watch::Receiver<u64>) -> Self {
        Shared {
            source,
            changes,
            viewers: Arc::new(Semaphore::new(MAX_VIEWERS)),
            reads: Arc::new(Semaphore::new(MAX_READS)),
        }
    }

    /// A place to make one read's answer, if one is free.
    fn read_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.reads.clone().try_acquire_owned().ok()
    }

    fn topology(&self, filter: &Filter) -> String {
        let hostroles = self.source.hostroles();
        topology::to_json(&topology::build(
            hostroles.iter().map(|hr| hr.as_ref()),
            filter,
        ))
    }
}

/// Serves `router` (the view's) on `listener` until `stop`, on the agents' bounded listener:
/// at most [`MAX_CONNECTIONS`], all of them open to loopback (every page comes from there).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: tokio_util::sync::CancellationToken,
) {
    let options = net::ServeOptions {
        role: "view",
        max_connections: MAX_CONNECTIONS,
        grace: Duration::from_secs(1),
        open_connections: AgentMetrics::default().connections_of("view"),
        tls: None,
        unframed: None,
    };
    let limits = net::HttpLimits {
        max_connections_per_ip: Some(MAX_CONNECTIONS),
        ..net::HttpLimits::default()
    };
    net::serve_with(listener, router, options, limits, stop).await;
}

/// The view's routes over `shared`.
pub fn router<S: Source>(shared: Shared<S>) -> Router {
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
        .route("/api/topology", get(topology_now::<S>))
        .route("/api/updates", get(updates::<S>))
        .route("/api/host", get(host::<S>))
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

/// Every place to make an answer is taken: come back in a second.
fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        format!("{MAX_READS} answers are being made already; ask again\n"),
    )
        .into_response()
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

async fn topology_now<S: Source>(
    State(shared): State<Shared<S>>,
    Query(params): Query<Params>,
) -> Response {
    let Some(_permit) = shared.read_permit() else {
        return busy();
    };
    json(shared.topology(&params.filter()))
}

/// Server-sent events: the graph at once, then again after each change that alters it (at most
/// one per [`COALESCE`]); a comment every 15 s keeps proxies from closing the stream.
async fn updates<S: Source>(
    State(shared): State<Shared<S>>,
    Query(params): Query<Params>,
) -> Response {
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

fn stream<S: Source>(
    shared: Shared<S>,
    filter: Filter,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct Follow<S> {
        shared: Shared<S>,
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
            let body = s.shared.topology(&s.filter);
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
async fn host<S: Source>(State(shared): State<Shared<S>>, Query(q): Query<HostQuery>) -> Response {
    let Some((ns, name)) = q.id.split_once('/') else {
        return (StatusCode::BAD_REQUEST, "id is namespace/host\n").into_response();
    };
    let Some(_permit) = shared.read_permit() else {
        return busy();
    };
    let found = shared.source.hostroles().into_iter().find(|hr| {
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
    let (events, events_error) = match shared.source.events(ns, &hr.name_any()).await {
        Ok(list) => (list, None),
        Err(e) => (Vec::new(), Some(e)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tokio::sync::Semaphore as Gate;
    use tower::ServiceExt;

    /// One HostRole with one host; a host's events wait at `gate`.
    #[derive(Clone)]
    struct Slow {
        hostroles: Vec<Arc<HostRole>>,
        gate: Arc<Gate>,
    }

    impl Source for Slow {
        fn hostroles(&self) -> Vec<Arc<HostRole>> {
            self.hostroles.clone()
        }

        async fn events(&self, _: &str, _: &str) -> Result<Vec<EventRow>, String> {
            let _open = self.gate.acquire().await.map_err(|e| e.to_string())?;
            Ok(Vec::new())
        }
    }

    fn request(path: &str) -> Request {
        axum::http::Request::builder()
            .uri(path)
            .header(header::HOST, "127.0.0.1:8088")
            .body(Body::empty())
            .expect("request")
    }

    /// Whether the server closed `c` (end of stream or reset), rather than leaving it open.
    fn is_closed(mut c: &std::net::TcpStream) -> bool {
        use std::io::Read;
        c.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        match c.read(&mut [0u8; 1]) {
            Ok(n) => n == 0,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }

    /// Connections that never send a request (or sit idle) cannot hold the view: past
    /// [`MAX_CONNECTIONS`] the idle ones are closed for new ones, which are answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_past_the_bound_make_room_for_new_ones() {
        let source = Slow {
            hostroles: Vec::new(),
            gate: Arc::new(Gate::new(1)),
        };
        let (_tx, changes) = watch::channel(0);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(serve(
            listener,
            router(Shared::new(source, changes)),
            stop.clone(),
        ));
        let (closed, answer) = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let idle: Vec<std::net::TcpStream> = (0..MAX_CONNECTIONS + 10)
                .map(|_| {
                    let s = std::net::TcpStream::connect(addr).expect("connect");
                    std::thread::sleep(Duration::from_millis(5));
                    s
                })
                .collect();
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            s.write_all(
                b"GET /api/topology HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )
            .expect("write");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            let closed = idle.iter().filter(|c| is_closed(c)).count();
            (closed, answer)
        })
        .await
        .expect("join");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(closed >= 10, "{closed} idle connections closed");
        stop.cancel();
    }

    #[tokio::test]
    async fn answers_made_at_once_are_bounded_and_their_places_come_back() {
        let hr: HostRole = serde_json::from_value(serde_json::json!({
            "apiVersion": "hostrole.dev/v1alpha1",
            "kind": "HostRole",
            "metadata": {"name": "office", "namespace": "lan"},
            "spec": {"servers": {"web": {}}},
            "status": {"hosts": [{"name": "office-0", "ready": true}]}
        }))
        .expect("hostrole");
        let gate = Arc::new(Gate::new(0));
        let source = Slow {
            hostroles: vec![Arc::new(hr)],
            gate: gate.clone(),
        };
        let (_tx, changes) = watch::channel(0);
        let app = router(Shared::new(source, changes));
        // MAX_READS host panels whose events are slow to come hold every place…
        let waiting: Vec<_> = (0..MAX_READS)
            .map(|_| tokio::spawn(app.clone().oneshot(request("/api/host?id=lan/office-0"))))
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        // …so one more read is turned away, at once.
        let busy = app
            .clone()
            .oneshot(request("/api/topology"))
            .await
            .expect("answer");
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        gate.add_permits(MAX_READS);
        for w in waiting {
            assert_eq!(
                w.await.expect("join").expect("answer").status(),
                StatusCode::OK
            );
        }
        let again = app.oneshot(request("/api/topology")).await.expect("answer");
        assert_eq!(again.status(), StatusCode::OK);
    }
}
