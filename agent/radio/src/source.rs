//! Live sources (Icecast 2.4's source protocol): `PUT /mount` (or the legacy `SOURCE`) with
//! `Authorization: Basic source:<password>`, a supported `Content-Type` and `Ice-*` headers,
//! then the audio itself on the connection, with no length and no chunking.
//!
//! The audio is read as the request's body: framed as HTTP/1.1 frames bodies
//! (`Transfer-Encoding: chunked`, ffmpeg's `http://` output with `-method PUT`), or, as
//! Icecast's own protocol sends it (ffmpeg's `icecast://`, libshout, the legacy `SOURCE`
//! method), with neither length nor chunks until the source closes: the role's listener reads
//! such a body to the close (`hostrole_agent_core::net::UnframedMethods`). As Icecast answers:
//! `100 Continue` to a source that sends `Expect: 100-continue`, else `200 OK` at once (libshout
//! waits for it before sending audio).
//!
//! Bounds: one source per mount (403 "Mountpoint in use"), [`MAX_BYTES_PER_SECOND`] read (more
//! waits: TCP pushes back), dropped after [`IDLE`] without data or when the role stops. What
//! a source sends is relayed, never parsed: garbage is passed on, it cannot stall the mount.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use hostrole_agent_core::metrics::{AgentMetrics, Direction, Reason};
use hostrole_agent_core::net::ClientKey;
use hostrole_agent_core::users::throttle::Admission;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::mount::{Mount, NowPlaying};
use crate::{ROLE, Shared, plain};

/// Most bytes a source may send per second (2 Mbit/s: far above any audio stream).
pub const MAX_BYTES_PER_SECOND: usize = 256 << 10;
/// A source that sends nothing for this long is dropped (Icecast's `source-timeout`).
pub const IDLE: Duration = Duration::from_secs(10);
/// Bytes read (and published) at a time.
const READ_CHUNK: usize = 4096;

/// Content types a source may send.
const TYPES: [&str; 6] = [
    "audio/mpeg",
    "audio/ogg",
    "application/ogg",
    "audio/aac",
    "audio/aacp",
    "audio/opus",
];

/// The source methods, whose unframed body is the rest of the connection.
pub fn unframed(method: &str) -> bool {
    method == "PUT" || method == "SOURCE"
}

/// Whether `headers` carry `source:<password>` (or any user, as Icecast's `source` default).
pub fn authorized(headers: &HeaderMap, password: Option<&str>) -> bool {
    let Some(password) = password else {
        return false;
    };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, given) = (&decoded[..colon], &decoded[colon + 1..]);
    user == b"source" && constant_time_eq(given, password.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(metrics: &AgentMetrics, headers: &HeaderMap) -> Response {
    metrics.error(
        ROLE,
        if headers.contains_key(header::AUTHORIZATION) {
            Reason::AuthFailed
        } else {
            Reason::AuthRequired
        },
    );
    let mut r = plain(StatusCode::UNAUTHORIZED, "Authentication Required");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Icecast2 Server\""),
    );
    r
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect())
}

/// Checks a request's source credentials, throttled per client address (agent-core's login
/// throttle: a few free failures, then doubling delays, then refusal without a check), so the
/// source password cannot be guessed at the network's speed.
async fn check(
    shared: &Shared,
    headers: &HeaderMap,
    client: Option<ClientKey>,
) -> Result<(), Response> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Err(unauthorized(&shared.metrics, headers));
    }
    match shared
        .throttle
        .admit(client, "source", Instant::now().into_std())
    {
        Admission::Refuse => {
            shared.metrics.error(ROLE, Reason::AuthThrottled);
            return Err(plain(StatusCode::UNAUTHORIZED, "Authentication Required"));
        }
        Admission::After(wait) => {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }
    let ok = authorized(headers, shared.password.as_deref());
    shared
        .throttle
        .record(client, "source", ok, Instant::now().into_std());
    if ok {
        Ok(())
    } else {
        Err(unauthorized(&shared.metrics, headers))
    }
}

/// A source asks for a mount.
pub async fn accept(shared: &Arc<Shared>, mount: Arc<Mount>, request: Request) -> Response {
    let client = request.extensions().get::<ClientKey>().copied();
    if let Err(refused) = check(shared, request.headers(), client).await {
        return refused;
    }
    let headers = request.headers();
    if !mount.live_allowed {
        shared.metrics.error(ROLE, Reason::Forbidden);
        return plain(StatusCode::FORBIDDEN, "Mountpoint not allowed for sources");
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let Some(&content_type) = TYPES.iter().find(|t| **t == content_type) else {
        shared.metrics.error(ROLE, Reason::Forbidden);
        return plain(StatusCode::FORBIDDEN, "Content-type not supported");
    };
    let Some(slot) = mount.try_take_live() else {
        shared.metrics.error(ROLE, Reason::Busy);
        return plain(StatusCode::FORBIDDEN, "Mountpoint in use");
    };
    let bitrate = header_text(headers, "ice-bitrate")
        .and_then(|b| b.trim().parse().ok())
        .or_else(|| {
            header_text(headers, "ice-audio-info").and_then(|info| {
                info.split(';').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    (k.trim().eq_ignore_ascii_case("bitrate") || k.trim() == "ice-bitrate")
                        .then(|| v.trim().parse().ok())?
                })
            })
        });
    let now = NowPlaying {
        content_type: content_type.to_string(),
        title: String::new(),
        bitrate,
        source_name: header_text(headers, "ice-name"),
        source_description: header_text(headers, "ice-description"),
        stream_start: Some(SystemTime::now()),
        headers: Vec::new(),
    };
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let metrics = shared.metrics.clone();
    let stop = shared.stop.clone();
    mount.start(now);
    tracing::info!(role = ROLE, mount = %mount.path, "live source connected");
    let body = request.into_body().into_data_stream();
    let relaying = async move {
        relay(body, &mount, &metrics, &stop).await;
        tracing::info!(role = ROLE, mount = %mount.path, "live source left");
        drop(slot);
    };
    if expects_continue {
        // Reading the body sends `100 Continue`, the only answer Icecast gives such a source.
        relaying.await;
        return plain(StatusCode::OK, "");
    }
    // libshout waits for Icecast's `200 OK` before it sends audio: answer now, and read the
    // source while the answer's (empty) body is open, so the connection counts as busy.
    let answer = futures_util::stream::once(async move {
        relaying.await;
        Ok::<_, std::convert::Infallible>(Bytes::new())
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        axum::body::Body::from_stream(answer),
    )
        .into_response()
}

/// Reads the source until it ends, idles or the role stops, publishing what it sends.
async fn relay<S>(mut body: S, mount: &Arc<Mount>, metrics: &AgentMetrics, stop: &CancellationToken)
where
    S: futures_util::Stream<Item = Result<Bytes, axum::Error>> + Unpin,
{
    use futures_util::StreamExt as _;
    let mut window = Window::new(Instant::now());
    loop {
        if let Some(until) = window.wait_until(Instant::now()) {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(until) => {}
            }
        }
        let read = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(IDLE, body.next()) => r,
        };
        match read {
            Ok(None) => return,
            Ok(Some(Ok(mut data))) => {
                window.add(data.len());
                metrics.moved(ROLE, Direction::In, data.len() as u64);
                while !data.is_empty() {
                    let piece = data.split_to(data.len().min(READ_CHUNK));
                    mount.publish(piece);
                }
            }
            Ok(Some(Err(e))) => {
                tracing::debug!(role = ROLE, error = %e, "source read failed");
                return;
            }
            Err(_) => {
                metrics.error(ROLE, Reason::Timeout);
                tracing::info!(role = ROLE, mount = %mount.path, "dropping a silent source");
                return;
            }
        }
    }
}

/// The input rate bound: bytes per one-second window.
#[derive(Debug)]
struct Window {
    start: Instant,
    bytes: usize,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            start: now,
            bytes: 0,
        }
    }

    fn add(&mut self, n: usize) {
        self.bytes += n;
    }

    /// When reading may go on: `None` now, else the end of a full window.
    fn wait_until(&mut self, now: Instant) -> Option<Instant> {
        let end = self.start + Duration::from_secs(1);
        if now >= end {
            self.start = now;
            self.bytes = 0;
            return None;
        }
        (self.bytes >= MAX_BYTES_PER_SECOND).then_some(end)
    }
}

/// `/admin/metadata?mount=/m&mode=updinfo&song=…`, authenticated like the source: sets the
/// title of a mount a source feeds.
pub async fn metadata(shared: &Arc<Shared>, request: Request) -> Response {
    let client = request.extensions().get::<ClientKey>().copied();
    if let Err(refused) = check(shared, request.headers(), client).await {
        return refused;
    }
    let query = request.uri().query().unwrap_or("");
    let params: Vec<(String, String)> = serde_urlencoded_pairs(query);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("mode") != Some("updinfo") {
        return xml(StatusCode::BAD_REQUEST, "No such action", 0);
    }
    let Some(mount) = get("mount").and_then(|m| shared.mount(m)) else {
        return xml(StatusCode::BAD_REQUEST, "Source does not exist", 0);
    };
    if !mount.is_live() {
        return xml(StatusCode::BAD_REQUEST, "Source does not exist", 0);
    }
    let song: String = get("song").unwrap_or("").chars().take(1024).collect();
    mount.set_title(song);
    xml(StatusCode::OK, "Metadata update successful", 1)
}

fn xml(code: StatusCode, message: &'static str, ret: u8) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/xml")],
        format!(
            "<?xml version=\"1.0\"?>\n<iceresponse><message>{message}</message><return>{ret}</return></iceresponse>\n"
        ),
    )
        .into_response()
}

/// `a=b&c=d` with percent-decoding and `+` as space.
fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}").parse().unwrap_or_default(),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&v).expect("header"),
        );
        h
    }

    #[test]
    fn only_source_with_the_password_is_authorized() {
        assert!(authorized(&basic("source:hunter2"), Some("hunter2")));
        assert!(!authorized(&basic("source:hunter3"), Some("hunter2")));
        assert!(!authorized(&basic("admin:hunter2"), Some("hunter2")));
        assert!(!authorized(&basic("source:hunter2"), None));
        assert!(!authorized(&HeaderMap::new(), Some("hunter2")));
        assert!(authorized(&basic("source:a:b"), Some("a:b")));
    }

    #[test]
    fn the_input_window_caps_bytes_per_second() {
        let t0 = Instant::now();
        let mut w = Window::new(t0);
        assert_eq!(w.wait_until(t0), None);
        w.add(MAX_BYTES_PER_SECOND);
        assert_eq!(w.wait_until(t0), Some(t0 + Duration::from_secs(1)));
        assert_eq!(w.wait_until(t0 + Duration::from_secs(1)), None);
        assert_eq!(w.bytes, 0);
    }

    #[test]
    fn query_pairs_are_decoded() {
        let p = serde_urlencoded_pairs("mount=%2Flive&mode=updinfo&song=A+B%27s");
        assert_eq!(p[0], ("mount".into(), "/live".into()));
        assert_eq!(p[2], ("song".into(), "A B's".into()));
    }
}
