//! The user's interface: one page (HTML, JS and CSS compiled in, no external assets) and the
//! JSON API it uses. It has no login: whoever reaches the port acts as this peer's user, so it
//! listens on loopback, in a pod (reached with `kubectl port-forward`) and on a machine even
//! with `up --bind 0.0.0.0`. A web page elsewhere cannot drive it through the user's browser:
//! every request must name a loopback host in `Host` (and in `Origin` when there is one), so a
//! DNS name rebound to 127.0.0.1 gets nothing; POSTs must also carry `X-Requested-With` (a
//! header another site's form cannot send without CORS approval, which this server never gives).

use hostrole_agent_core::metrics::{Direction, Reason};
use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use http::{StatusCode, header};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::catalog::{free_name, safe_name};
use super::download::{self, StartError, Started};
use super::limits::Limits;
use super::{Shared, UI, discovery};
use crate::auth::error_response;
use crate::valid_hash;
use hostrole_agent_core::metrics::track;

/// Staging folder of uploads inside the state folder.
pub const STAGING: &str = "staging";
/// Largest upload through the UI.
pub const MAX_UPLOAD: u64 = 1 << 30;

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

pub fn router(shared: Arc<Shared>) -> Router {
    let metrics = shared.agent.clone();
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route(
            "/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
            }),
        )
        .route(
            "/style.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }),
        )
        .route("/api/status", get(status))
        .route("/api/files", get(files))
        .route("/api/peers", get(peers))
        .route("/api/search", get(search))
        .route("/api/downloads", get(downloads).post(start_download))
        .route("/api/upload", post(upload))
        .route("/api/limits", get(limits).post(set_limits))
        .layer(from_fn(same_origin_posts))
        .layer(from_fn(loopback_only))
        .with_state(shared)
        .layer(from_fn_with_state((UI, metrics), track))
}

pub use hostrole_agent_core::net::loopback::{loopback_host, loopback_origin};

fn header_text(request: &Request, name: header::HeaderName) -> Option<String> {
    request
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_string())
}

async fn loopback_only(request: Request, next: Next) -> Response {
    // HTTP/2 carries the host in the URI's authority.
    let host = header_text(&request, header::HOST)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    let origin = header_text(&request, header::ORIGIN);
    if !host.as_deref().is_some_and(loopback_host) {
        return error_response(
            StatusCode::FORBIDDEN,
            format!(
                "Host {:?} is not this machine's loopback: open the UI at http://127.0.0.1:<port>/ (requests for other names are refused against DNS rebinding)",
                host.unwrap_or_default()
            ),
        );
    }
    if let Some(origin) = origin
        && !loopback_origin(&origin)
    {
        return error_response(
            StatusCode::FORBIDDEN,
            format!("Origin {origin:?} is not a page of this UI"),
        );
    }
    next.run(request).await
}

async fn same_origin_posts(request: Request, next: Next) -> Response {
    if request.method() == http::Method::POST && !request.headers().contains_key("x-requested-with")
    {
        return error_response(
            StatusCode::FORBIDDEN,
            "POST needs the X-Requested-With header (the page sends it)",
        );
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_and_origins_pass() {
        for good in [
            "127.0.0.1:8090",
            "localhost:8090",
            "LOCALHOST",
            "[::1]:8090",
            "127.1.2.3",
        ] {
            assert!(loopback_host(good), "{good}");
        }
        for bad in [
            "evil.example:8090",
            "127.0.0.1.evil.example:8090",
            "localhost.evil.example",
            "10.0.0.1:8090",
            "[::2]:8090",
            "127.0.0.1:80x",
            "",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
        assert!(loopback_origin("http://127.0.0.1:8090"));
        assert!(!loopback_origin("http://evil.example:8090"));
        assert!(!loopback_origin("null"));
        assert!(!loopback_origin("http://127.0.0.1:8090/x"));
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    peer_id: String,
    network: String,
    mode: &'static str,
    address: String,
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<Status> {
    Json(Status {
        peer_id: shared.id.clone(),
        network: shared.settings.network.clone(),
        mode: shared.settings.discovery.as_str(),
        address: shared.settings.address.clone(),
    })
}

/// The limits in force, what the configuration said, and the upload slots in use.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LimitsView {
    #[serde(flatten)]
    current: Limits,
    configured: Limits,
    uploads_in_progress: u32,
}

async fn limits(State(shared): State<Arc<Shared>>) -> Json<LimitsView> {
    Json(LimitsView {
        current: shared.limits.current(),
        configured: shared.limits.configured,
        uploads_in_progress: shared.limits.slots.in_use(),
    })
}

/// Puts new limits in force at once (for transfers already waiting too); a rate left out or
/// null is unlimited, slots left out are the default. They last until the host restarts; the
/// HostRole's `peer.limits` is what a restart comes back to.
async fn set_limits(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let limits = match serde_json::from_slice::<Limits>(&body) {
        Ok(l) => l,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!(
                    "send {{\"uploadBytesPerSecond\": n|null, \"downloadBytesPerSecond\": n|null, \"uploadSlots\": n|null}}: {e}"
                ),
            );
        }
    };
    match shared.limits.set(limits) {
        Ok(()) => {
            tracing::info!(?limits, "limits changed from the UI");
            self::limits(State(shared)).await.into_response()
        }
        Err(e) => error_response(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileView {
    name: String,
    size: u64,
    hash: String,
    complete: bool,
}

async fn files(State(shared): State<Arc<Shared>>) -> Json<Vec<FileView>> {
    let mut list: Vec<FileView> = shared
        .catalog
        .files()
        .into_iter()
        .map(|f| FileView {
            name: f.resource.name,
            size: f.resource.size,
            hash: f.resource.hash,
            complete: true,
        })
        .collect();
    for r in download::records(&shared)
        .into_iter()
        .filter(|r| r.state == download::State::Running)
    {
        list.push(FileView {
            name: r.name,
            size: r.size,
            hash: r.hash,
            complete: false,
        });
    }
    Json(list)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PeerView {
    id: String,
    address: String,
    last_seen: u64,
    file_count: usize,
    /// The printers it offers, with where to reach them.
    printers: Vec<PrinterView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PrinterView {
    name: String,
    /// `ipp://host:port/ipp/print` on the peer's own host (`lpadmin -v`, or a print client's
    /// server).
    url: String,
}

async fn peers(State(shared): State<Arc<Shared>>) -> Json<Vec<PeerView>> {
    Json(
        discovery::known_peers(&shared)
            .into_iter()
            .map(|p| PeerView {
                file_count: p.resources.len(),
                printers: p
                    .services
                    .iter()
                    .filter(|s| s.kind == crate::wire::ServiceKind::Print)
                    .filter_map(|s| {
                        Some(PrinterView {
                            name: s.name.clone(),
                            url: s.url(&p.address)?,
                        })
                    })
                    .collect(),
                id: p.id,
                address: p.address,
                last_seen: p.last_seen,
            })
            .collect(),
    )
}

async fn search(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Vec<discovery::Hit>> {
    let q = q.get("q").cloned().unwrap_or_default();
    Json(discovery::search(&shared, &q).await)
}

async fn downloads(State(shared): State<Arc<Shared>>) -> Json<Vec<download::Record>> {
    Json(download::records(&shared))
}

#[derive(Deserialize)]
struct DownloadRequest {
    hash: String,
}

async fn start_download(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<DownloadRequest>(&body) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "send {\"hash\": \"<content hash>\"}",
        );
    };
    let hash = request.hash.to_lowercase();
    if !valid_hash(&hash) {
        return error_response(
            StatusCode::BAD_REQUEST,
            "not a content hash (64 hex digits)",
        );
    }
    let resource = match shared.catalog.by_hash(&hash) {
        Some(local) => Some(local.resource),
        None => discovery::sources(&shared, &hash).await.map(|f| f.resource),
    };
    let Some(resource) = resource else {
        return error_response(
            StatusCode::NOT_FOUND,
            StartError::NotFound(hash).to_string(),
        );
    };
    match download::start(&shared, resource) {
        Ok(Started::AlreadyLocal) => (
            StatusCode::OK,
            Json(serde_json::json!({"hash": hash, "state": "complete", "note": "already in the share"})),
        )
            .into_response(),
        Ok(_) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"hash": hash, "state": "running"})),
        )
            .into_response(),
        Err(e @ StartError::QuotaExceeded { .. }) => {
            error_response(StatusCode::INSUFFICIENT_STORAGE, e.to_string())
        }
        Err(e) => error_response(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

async fn upload(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let name = q.get("name").cloned().unwrap_or_default();
    let Some(rel) = safe_name(&name).filter(|p| p.components().count() == 1) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("{name:?} is not a plain file name (no folders, not hidden)"),
        );
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let cap = match shared.settings.quota {
        Some(quota) => quota.saturating_sub(shared.used_bytes()).min(MAX_UPLOAD),
        None => MAX_UPLOAD,
    };
    let refuse_size = |got: u64| {
        if shared.settings.quota.is_some() && got <= MAX_UPLOAD {
            shared.agent.error(super::ROLE, Reason::QuotaExceeded);
            error_response(
                StatusCode::INSUFFICIENT_STORAGE,
                format!("quota exceeded: the share has room for {cap} more bytes"),
            )
        } else {
            error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("uploads are limited to {MAX_UPLOAD} bytes"),
            )
        }
    };
    if let Some(n) = declared
        && n > cap
    {
        return refuse_size(n);
    }
    let mut random = [0u8; 8];
    if getrandom::fill(&mut random).is_err() {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "no randomness");
    }
    let staging = shared
        .state_dir()
        .join(STAGING)
        .join(format!("{}.upload", hex::encode(random)));
    let result = async {
        let mut out = tokio::fs::File::create(&staging).await?;
        let mut stream = request.into_body().into_data_stream();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(std::io::Error::other)?;
            total += chunk.len() as u64;
            if total > cap {
                return Ok(Err(total));
            }
            out.write_all(&chunk).await?;
        }
        out.sync_all().await?;
        Ok::<_, std::io::Error>(Ok(total))
    }
    .await;
    let total = match result {
        Ok(Ok(n)) => n,
        Ok(Err(n)) => {
            let _ = tokio::fs::remove_file(&staging).await;
            return refuse_size(n);
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&staging).await;
            return error_response(StatusCode::BAD_REQUEST, format!("upload interrupted: {e}"));
        }
    };
    // Never replace a file silently: a taken name becomes `name (2)`.
    let target = free_name(&shared.settings.root, &rel);
    if let Err(e) = tokio::fs::rename(&staging, &target).await {
        let _ = tokio::fs::remove_file(&staging).await;
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot move the upload into the share: {e}"),
        );
    }
    shared.agent.moved(UI, Direction::In, total);
    if let Err(e) = shared.catalog.rescan().await {
        tracing::warn!(error = %e, "cannot rescan the share after an upload");
    }
    shared.changed.notify_one();
    let saved = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (
        StatusCode::CREATED,
        Json(serde_json::json!({"name": saved, "size": total})),
    )
        .into_response()
}
