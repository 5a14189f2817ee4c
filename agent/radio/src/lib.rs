//! The radio role: internet radio as Icecast 2.4 serves it.
//!
//! Each mount broadcasts audio paced in real time ([`mount`]): a playlist of MP3 files played
//! at their own rate ([`playlist`], [`pacing`]), replaced while a live source client feeds the
//! mount ([`source`]: `PUT` or `SOURCE` with the source password, the audio chunked or, as
//! Icecast's sources send it, unframed until the source closes). Listeners `GET` the mount and
//! get the recent ~64 KiB at once, then the stream, with ICY metadata when they ask ([`icy`]).
//! `/status-json.xsl` is Icecast's status page ([`status`]); `/admin/metadata?mode=updinfo`
//! sets a live mount's title. The role runs on the agent's shared HTTP listener
//! (`hostrole_agent_core::net`): connection limits, timeouts, TLS.
//!
//! Bounds: listeners per mount and overall (403, as Icecast answers when full); one shared ring
//! of [`mount::RING`] chunks per mount, a listener that falls behind it is disconnected; a
//! source is authenticated, reads at most [`source::MAX_BYTES_PER_SECOND`] and is dropped after
//! [`source::IDLE`] without data; the status page is built from counters.

mod icy;
mod mount;
mod ogg;
mod pacing;
mod playlist;
mod source;
mod status;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hostrole_agent_core::Role;
use hostrole_agent_core::metrics::{AgentMetrics, Direction, Reason, track};
use hostrole_agent_core::net::{self, BindError, HttpRole};
use hostrole_agent_core::tls::{self, TlsError};
use hostrole_config::RadioRoleConfig;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use mount::{ListenerSlot, Mount};

/// The role's name in logs, metrics and readiness.
pub const ROLE: &str = "radio";

/// Connections beyond `max_listeners` for sources, status pages and HEAD requests.
const SPARE_CONNECTIONS: usize = 32;

/// Why the radio role could not start.
#[derive(Debug, thiserror::Error)]
pub enum RadioError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("radio role: {0}")]
    Tls(#[from] TlsError),
    #[error("radio role: cannot read the source password file {path}: {source}")]
    Password {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("radio role: the mount path {0:?} must start with '/' and be unique")]
    MountPath(String),
}

/// What every request handler shares.
#[derive(Debug)]
struct Shared {
    station: String,
    mounts: Vec<Arc<Mount>>,
    password: Option<String>,
    max_listeners: usize,
    listeners: AtomicUsize,
    started: SystemTime,
    local: SocketAddr,
    tls: bool,
    metrics: AgentMetrics,
    stop: CancellationToken,
    /// Failed source logins, per client address.
    throttle: hostrole_agent_core::users::throttle::Throttle,
}

impl Shared {
    fn mount(&self, path: &str) -> Option<&Arc<Mount>> {
        self.mounts.iter().find(|m| m.path == path)
    }
}

/// The radio role with its listener bound.
pub struct Radio {
    http: HttpRole,
    shared: Arc<Shared>,
    playlists: Vec<(Arc<Mount>, PathBuf)>,
}

impl Radio {
    /// Checks the configuration, reads the source password and binds the role's listener.
    pub async fn bind(
        config: &RadioRoleConfig,
        ip: IpAddr,
        metrics: &AgentMetrics,
    ) -> Result<Radio, RadioError> {
        let password = match &config.source_password_file {
            None => None,
            Some(path) => Some(
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|source| RadioError::Password {
                        path: path.clone(),
                        source,
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
        };
        let mut mounts: Vec<Arc<Mount>> = Vec::new();
        let mut playlists = Vec::new();
        for m in &config.mounts {
            if !m.path.starts_with('/')
                || m.path == "/status-json.xsl"
                || m.path.starts_with("/admin/")
                || mounts.iter().any(|x| x.path == m.path)
            {
                return Err(RadioError::MountPath(m.path.clone()));
            }
            let mount = Arc::new(Mount::new(
                m.path.clone(),
                m.description.clone(),
                m.max_listeners.unwrap_or(config.max_listeners),
                m.live,
                m.playlist_dir.is_some(),
            ));
            if let Some(dir) = &m.playlist_dir {
                playlists.push((mount.clone(), dir.clone()));
            }
            mounts.push(mount);
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
            station: config.station.clone(),
            mounts,
            password,
            max_listeners: config.max_listeners,
            listeners: AtomicUsize::new(0),
            started: SystemTime::now(),
            local,
            tls: tls.is_some(),
            metrics: metrics.clone(),
            stop: CancellationToken::new(),
            throttle: Default::default(),
        });
        let http = HttpRole::new(
            ROLE,
            listener,
            router(shared.clone()),
            config.max_listeners.saturating_add(SPARE_CONNECTIONS),
            metrics.connections_of(ROLE),
        )
        .with_tls(tls)
        .with_unframed_bodies(source::unframed);
        Ok(Radio {
            http,
            shared,
            playlists,
        })
    }
}

impl Role for Radio {
    fn name(&self) -> &'static str {
        ROLE
    }

    fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        let label = if self.http.is_tls() {
            "radio+tls"
        } else {
            "radio"
        };
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
        let Radio {
            http,
            shared,
            playlists,
        } = *self;
        Box::pin(async move {
            let tasks = tokio_util::task::TaskTracker::new();
            for (mount, dir) in playlists {
                tasks.spawn(playlist::play(
                    mount,
                    dir,
                    shared.metrics.clone(),
                    shared.stop.clone(),
                ));
            }
            tasks.close();
            // Streams never finish on their own: end them (and the playlists, and sources) as
            // soon as the stop comes, so the listener's grace is for other requests.
            let streams = shared.stop.clone();
            let watcher = stop.clone();
            let ender = tokio::spawn(async move {
                watcher.cancelled().await;
                streams.cancel();
            });
            Box::new(http).run(stop, grace).await;
            let _ = tokio::time::timeout(grace, tasks.wait()).await;
            ender.abort();
        })
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let metrics = shared.metrics.clone();
    Router::new()
        .fallback(handle)
        .with_state(shared)
        .layer(from_fn_with_state((ROLE, metrics), track))
}

/// One dispatcher: mounts are configured paths, and sources use a method (`SOURCE`) no router
/// knows.
async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    match (method.as_str(), path.as_str()) {
        ("GET" | "HEAD", "/status-json.xsl") => status_page(&shared, request.headers()),
        ("GET", "/admin/metadata") => source::metadata(&shared, request).await,
        ("GET" | "HEAD", p) => match shared.mount(p) {
            Some(m) => listen(&shared, m.clone(), &request),
            None => plain(
                StatusCode::NOT_FOUND,
                "The file you requested could not be found",
            ),
        },
        ("PUT" | "SOURCE", p) => match shared.mount(p) {
            Some(m) => source::accept(&shared, m.clone(), request).await,
            None => plain(StatusCode::NOT_FOUND, "Mountpoint not found"),
        },
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, PUT, SOURCE"),
            );
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

fn status_page(shared: &Shared, headers: &HeaderMap) -> Response {
    let host = host_of(shared, headers);
    let scheme = if shared.tls { "https" } else { "http" };
    let sources: Vec<status::SourceStatus> = shared
        .mounts
        .iter()
        .filter_map(|m| {
            let now = m.on_air()?;
            Some(status::SourceStatus {
                listenurl: format!("{scheme}://{host}{}", m.path),
                server_name: now.source_name.unwrap_or_else(|| shared.station.clone()),
                server_description: now
                    .source_description
                    .or_else(|| m.description.clone())
                    .unwrap_or_default(),
                server_type: now.content_type,
                listeners: m.listeners(),
                listener_peak: m.listener_peak(),
                stream_start: now.stream_start,
                title: now.title,
                bitrate: now.bitrate,
            })
        })
        .collect();
    let hostname = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    let page = status::page(hostname, shared.started, &sources);
    (
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        page.to_string(),
    )
        .into_response()
}

/// The host a client reached (its `Host` when that is a valid authority), for listen URLs.
fn host_of(shared: &Shared, headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .map(|a| a.to_string())
        .unwrap_or_else(|| shared.local.to_string())
}

/// A listener slot counted against the role's `max_listeners`.
struct GlobalSlot(Arc<Shared>);

impl GlobalSlot {
    fn take(shared: &Arc<Shared>) -> Option<Self> {
        shared
            .listeners
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < shared.max_listeners).then_some(n + 1)
            })
            .ok()
            .map(|_| GlobalSlot(shared.clone()))
    }
}

impl Drop for GlobalSlot {
    fn drop(&mut self) {
        self.0.listeners.fetch_sub(1, Ordering::AcqRel);
    }
}

fn listen(shared: &Arc<Shared>, mount: Arc<Mount>, request: &Request) -> Response {
    let Some(now) = mount.on_air() else {
        return plain(
            StatusCode::NOT_FOUND,
            "The file you requested could not be found",
        );
    };
    let wants_icy = request
        .headers()
        .get("icy-metadata")
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"1");
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put("content-type", &now.content_type);
    put(
        "icy-name",
        now.source_name.as_deref().unwrap_or(&shared.station),
    );
    if let Some(d) = now
        .source_description
        .as_deref()
        .or(mount.description.as_deref())
    {
        put("icy-description", d);
    }
    if let Some(br) = now.bitrate {
        put("icy-br", &br.to_string());
    }
    put("icy-pub", "0");
    put("cache-control", "no-cache, no-store");
    put("pragma", "no-cache");
    if wants_icy {
        put("icy-metaint", &icy::METAINT.to_string());
    }
    if request.method() == Method::HEAD {
        let body = Body::from_stream(futures_util::stream::empty::<Result<Bytes, Infallible>>());
        return (StatusCode::OK, headers, body).into_response();
    }
    let Some(global) = GlobalSlot::take(shared) else {
        shared.metrics.error(ROLE, Reason::Busy);
        return plain(StatusCode::FORBIDDEN, "Icecast connection limit reached");
    };
    let Some(slot) = mount.try_listen() else {
        shared.metrics.error(ROLE, Reason::Busy);
        return plain(StatusCode::FORBIDDEN, "Too many clients on this mountpoint");
    };
    let Some(sub) = mount.subscribe() else {
        return plain(
            StatusCode::NOT_FOUND,
            "The file you requested could not be found",
        );
    };
    let listening = Listening {
        burst: sub.burst.into(),
        rx: sub.rx,
        icy: wants_icy.then(|| icy::Interleaver::new(icy::METAINT)),
        mount,
        pending: VecDeque::new(),
        metrics: shared.metrics.clone(),
        stop: shared.stop.clone(),
        _slots: (slot, global),
    };
    let body = Body::from_stream(futures_util::stream::unfold(
        listening,
        |mut l| async move {
            let next = l.next().await?;
            l.metrics.moved(ROLE, Direction::Out, next.len() as u64);
            Some((Ok::<_, Infallible>(next), l))
        },
    ));
    let mut response = (StatusCode::OK, headers, body).into_response();
    // As Icecast answers every listener: HTTP/1.0, the audio itself until the close, not
    // chunks (players and receivers that read a raw stream expect that). HTTP/2 keeps its own
    // framing.
    if request.version() <= http::Version::HTTP_11 {
        *response.version_mut() = http::Version::HTTP_10;
    }
    response
}

/// One listener's stream.
struct Listening {
    burst: VecDeque<Bytes>,
    rx: tokio::sync::broadcast::Receiver<Bytes>,
    icy: Option<icy::Interleaver>,
    mount: Arc<Mount>,
    pending: VecDeque<Bytes>,
    metrics: AgentMetrics,
    stop: CancellationToken,
    _slots: (ListenerSlot, GlobalSlot),
}

impl Listening {
    /// The next bytes to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(b);
            }
            let chunk = match self.burst.pop_front() {
                Some(c) => c,
                None => tokio::select! {
                    _ = self.stop.cancelled() => return None,
                    r = self.rx.recv() => match r {
                        Ok(c) if c.is_empty() => return None, // the mount went off the air
                        Ok(c) => c,
                        Err(RecvError::Lagged(_)) => {
                            tracing::debug!(role = ROLE, mount = %self.mount.path, "dropping a listener that fell behind");
                            self.metrics.error(ROLE, Reason::SendQueueFull);
                            return None;
                        }
                        Err(RecvError::Closed) => return None,
                    },
                },
            };
            match &mut self.icy {
                None => return Some(chunk),
                Some(icy) => {
                    let mut out = Vec::new();
                    let title = self.mount.title();
                    icy.push(chunk, &title, &mut out);
                    self.pending.extend(out);
                }
            }
        }
    }
}
