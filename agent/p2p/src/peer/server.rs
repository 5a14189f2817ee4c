//! The peer protocol other members of the network call: what this peer holds, its chunks, and
//! the peers it knows (for gossip). Every request must be signed by a member as the peer it
//! names, once; every answer is signed by this peer ([`crate::auth::require`]).

use hostrole_agent_core::metrics::{Direction, Reason};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use http::StatusCode;

use super::{ROLE, Shared, catalog, discovery, swarm};
use crate::auth::{self, Authenticated, BodyDigest, Gate, ReplayGuard, error_response};
use crate::valid_hash;
use crate::wire::{Catalog, HaveMap, PeerEntry};
use hostrole_agent_core::metrics::track;

/// Largest request body: peers only send GETs.
const MAX_BODY: usize = 64 << 10;
/// A chunk's body is sent in pieces of this size, each its own buffer.
const PIECE: usize = 64 << 10;

/// A chunk's body: its pieces, holding the upload slot until the last one has been taken by the
/// connection. A piece is freed once sent, so what slow readers can make this peer hold is about
/// one chunk per slot (plus what each connection buffers), not one per connection.
struct Slotted {
    pieces: std::vec::IntoIter<bytes::Bytes>,
    _slot: super::limits::Slot,
}

impl futures_util::Stream for Slotted {
    type Item = Result<bytes::Bytes, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.pieces.next().map(Ok))
    }
}

/// `Retry-After` of a peer whose upload slots are all taken.
pub const RETRY_AFTER_SECONDS: &str = "1";

pub fn router(shared: Arc<Shared>) -> Router {
    let secret = shared.secret.clone();
    let refused = shared.agent.clone();
    let gate = Gate {
        secrets: Arc::new(move |_| Ok(secret.as_ref().clone())),
        max_body: MAX_BODY,
        on_refused: Arc::new(move |e| refused.error(ROLE, e.reason())),
        identity: Some(shared.identity.clone()),
        replay: Arc::new(Mutex::new(ReplayGuard::new(auth::REPLAY_CACHE))),
        bodies: Arc::new(tokio::sync::Semaphore::new(4)),
    };
    let metrics = shared.agent.clone();
    Router::new()
        .route("/v1/resources", get(resources))
        .route("/v1/peers", get(peers))
        .route("/v1/chunks/{hash}/{index}", get(chunk))
        .route("/v1/have/{hash}", get(have))
        .layer(from_fn_with_state(gate, auth::require))
        .with_state(shared)
        .layer(from_fn_with_state((ROLE, metrics), track))
}

/// `?unless={version}` of `GET /v1/resources`: the catalog version the caller holds.
#[derive(serde::Deserialize)]
struct Unless {
    unless: Option<String>,
}

async fn resources(
    State(shared): State<Arc<Shared>>,
    Extension(who): Extension<Authenticated>,
    Query(q): Query<Unless>,
) -> Response {
    discovery::heard_from(&shared, &who.peer, who.address.as_deref());
    // The caller holds this version: nothing to send, and nothing to copy (the answer is
    // signed, and bound to the request's nonce like any other, so it cannot be replayed to hide
    // a later change).
    let services = &shared.settings.services;
    let current = shared.catalog.version();
    if !current.is_empty()
        && q.unless.as_deref() == Some(catalog::with_services(&current, services).as_str())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let (resources, version) = shared.catalog.versioned();
    Json(Catalog {
        id: shared.id.clone(),
        address: shared.settings.address.clone(),
        resources,
        version: catalog::with_services(&version, services),
        services: services.clone(),
    })
    .into_response()
}

async fn peers(
    State(shared): State<Arc<Shared>>,
    Extension(who): Extension<Authenticated>,
) -> Json<Vec<PeerEntry>> {
    discovery::heard_from(&shared, &who.peer, who.address.as_deref());
    // Gossip carries who is where and which catalog version; catalogs are pulled from each
    // peer itself.
    Json(discovery::gossip_list(&shared))
}

async fn have(State(shared): State<Arc<Shared>>, Path(hash): Path<String>) -> Response {
    match swarm::have_map(&shared, &hash) {
        Some(have) => Json(HaveMap { have }).into_response(),
        None => error_response(StatusCode::NOT_FOUND, format!("no chunk of {hash} here")),
    }
}

async fn chunk(
    State(shared): State<Arc<Shared>>,
    Path((hash, index)): Path<(String, u64)>,
) -> Response {
    if !valid_hash(&hash) {
        return error_response(StatusCode::BAD_REQUEST, "not a content hash");
    }
    let (path, offset, len, want) = match shared.catalog.by_hash(&hash) {
        Some(file) if index < file.resource.chunks.len() as u64 => (
            file.path.clone(),
            index * file.resource.chunk_size,
            file.resource.chunk_len(index),
            file.resource.chunks[index as usize].clone(),
        ),
        // Verified chunks of a download in progress are served too.
        _ => match swarm::partial_chunk(&shared, &hash, index) {
            Some(found) => found,
            None => {
                return error_response(
                    StatusCode::NOT_FOUND,
                    format!("no chunk {index} of {hash} here"),
                );
            }
        },
    };
    // An upload slot for the whole of the serving, or "busy": the asking peer fetches the
    // chunk elsewhere or later rather than waiting in a queue here.
    let Some(slot) = shared.limits.slots.try_take() else {
        shared.agent.error(ROLE, Reason::UploadSlotsFull);
        let mut busy = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "every upload slot of this peer is taken; ask another peer or try again",
        );
        busy.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
        return busy;
    };
    shared.limits.upload.take(len).await;
    if !shared.settings.chunk_delay.is_zero() {
        tokio::time::sleep(shared.settings.chunk_delay).await;
    }
    // The answer is signed over the chunk's hash from the catalog, not over a hash of the bytes
    // read now: the receiver hashes the bytes anyway (it must match the catalog), so a file that
    // rotted on disk shows as a bad chunk from this peer, and serving costs no hashing.
    let signed = hostrole_proto::envelope::unhex::<32>(&want, "body").ok();
    match tokio::task::spawn_blocking(move || catalog::read_pieces(&path, offset, len, PIECE)).await
    {
        Ok(Ok(pieces)) => {
            shared.metrics.bytes_served.inc_by(len);
            shared.agent.moved(ROLE, Direction::Out, len);
            let body = Slotted {
                pieces: pieces.into_iter(),
                _slot: slot,
            };
            let mut response = (
                [
                    (
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/octet-stream"),
                    ),
                    (http::header::CONTENT_LENGTH, http::HeaderValue::from(len)),
                ],
                axum::body::Body::from_stream(body),
            )
                .into_response();
            if let Some(d) = signed {
                response.extensions_mut().insert(BodyDigest(d));
            }
            response
        }
        _ => {
            // The file changed or went away since the last scan: look again.
            shared.changed.notify_one();
            error_response(StatusCode::GONE, "the file changed; rescanning")
        }
    }
}
