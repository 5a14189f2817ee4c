//! Who may talk in a network, and as whom: every request and every answer between peers (and
//! with the index) is signed twice.
//!
//! - **Membership**: HMAC-SHA256 with the network's shared secret (`mac`): only members can
//!   make a request the index or a peer accepts, and only members can make an answer a peer
//!   accepts.
//! - **Identity**: Ed25519 with the peer's own key (`sig`). A peer id is
//!   `<name>.<hex of the public key>` ([`hostrole_proto::envelope::peer_id`]), so the id is
//!   proof of nothing by itself, but a signature that verifies under the key the id names is:
//!   no member can register, deregister, or answer as another peer's id. The key is made by the
//!   peer on its first start and kept in its share's state folder ([`Identity::load_or_create`]).
//!
//! Both signatures cover the method, path and query, peer id, timestamp, a random nonce and
//! the BLAKE3 of the body (request) or the status, the request's nonce and the BLAKE3 of the
//! body (answer). The receiver accepts a timestamp within ±[`WINDOW_SECONDS`] and each nonce
//! once ([`ReplayGuard`]); an answer is accepted only for the request whose nonce it names.
//! The header is checked before the body is read, and the body is then held to the digest the
//! header signed. Parsing lives in `hostrole_proto::envelope` (fuzzed); the checks here are pure
//! functions; the axum middleware [`require`] only moves bytes.

use hostrole_agent_core::metrics::Reason;
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use hostrole_proto::envelope::{
    self, REPLY_HEADER, ReplyAuth, RequestAuth, key_of_peer_id, reply_message, request_message,
};
use http::{HeaderValue, StatusCode};
use sha2::Sha256;
use tokio::sync::Semaphore;

use crate::wire::ErrorBody;

pub use hostrole_proto::envelope::SCHEME;

/// Accepted clock difference between sender and receiver.
pub const WINDOW_SECONDS: u64 = 300;
/// Header by which a peer tells the one it calls where it can be reached (gossip).
pub const ADDRESS_HEADER: &str = "x-hostrole-peer-address";
/// Nonces remembered at once by one listener (about 100 bytes each).
pub const REPLAY_CACHE: usize = 100_000;
/// The file in a peer's state folder that holds its Ed25519 key (32 bytes, hex, mode 0600).
pub const KEY_FILE: &str = "identity.key";

type HmacSha256 = Hmac<Sha256>;

/// Why a request or an answer is not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing Authorization header (scheme {SCHEME})")]
    Missing,
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    #[error("timestamp {ts} is more than {WINDOW_SECONDS}s away from this server's clock ({now})")]
    Stale { ts: u64, now: u64 },
    #[error("bad signature: the peer does not hold this network's secret")]
    BadSignature,
    #[error(
        "bad signature: {0} is not signed by the key its id names (one peer cannot act as another)"
    )]
    WrongPeer(String),
    #[error("this request was seen before (replayed nonce), or is older than the replay cache")]
    Replayed,
    #[error("the body does not match the digest the signature covers")]
    BodyMismatch,
    #[error("unknown network {0:?}: no secret for it")]
    UnknownNetwork(String),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("too many uploads at once; try again shortly")]
    Busy,
    #[error("the answer is not signed: {0}")]
    Unsigned(&'static str),
    #[error("the answer comes from {got}, not from {want}")]
    OtherPeer { got: String, want: String },
    #[error("no randomness for a nonce")]
    NoRandomness,
}

impl AuthError {
    /// CamelCase reason for metrics.
    pub fn reason(&self) -> Reason {
        match self {
            AuthError::Missing => Reason::AuthMissing,
            AuthError::Malformed(_) => Reason::AuthMalformed,
            AuthError::Stale { .. } => Reason::AuthStale,
            AuthError::BadSignature
            | AuthError::WrongPeer(_)
            | AuthError::BodyMismatch
            | AuthError::Unsigned(_)
            | AuthError::OtherPeer { .. }
            | AuthError::NoRandomness => Reason::AuthBadSignature,
            AuthError::Replayed => Reason::AuthReplayed,
            AuthError::UnknownNetwork(_) => Reason::UnknownNetwork,
            AuthError::TooLarge(_) => Reason::BodyTooLarge,
            AuthError::Busy => Reason::Busy,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            AuthError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AuthError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// A peer's own key and the id it makes.
pub struct Identity {
    key: SigningKey,
    id: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("id", &self.id).finish()
    }
}

impl Identity {
    /// A peer named `name` with the key `secret`.
    pub fn from_secret(name: &str, secret: [u8; 32]) -> Identity {
        let key = SigningKey::from_bytes(&secret);
        let id = envelope::peer_id(name, &key.verifying_key().to_bytes());
        Identity { key, id }
    }

    /// A new random identity (tests, and the first start of a peer).
    pub fn generate(name: &str) -> std::io::Result<Identity> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(std::io::Error::other)?;
        Ok(Identity::from_secret(name, secret))
    }

    /// The key kept in `dir/identity.key`, made (mode 0600, written to a temporary file and
    /// renamed) on the first start.
    pub fn load_or_create(dir: &Path, name: &str) -> std::io::Result<Identity> {
        let path = dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let secret: [u8; 32] = envelope::unhex(text.trim(), "key").map_err(|_| {
                    std::io::Error::other(format!(
                        "{} is not 64 hex digits: remove it to make a new identity",
                        path.display()
                    ))
                })?;
                Ok(Identity::from_secret(name, secret))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Identity::generate(name)?;
                let text = format!("{}\n", envelope::hex(&identity.key.to_bytes()));
                hostrole_agent_core::fsutil::write_atomic(&path, text.as_bytes(), 0o600)?;
                Ok(identity)
            }
            Err(e) => Err(e),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Signs `message` with this peer's key.
    pub fn sign(&self, message: &str) -> [u8; 64] {
        self.key.sign(message.as_bytes()).to_bytes()
    }
}

/// BLAKE3 of a body, as the envelope carries it.
pub fn digest(body: &[u8]) -> [u8; 32] {
    *blake3::hash(body).as_bytes()
}

/// A fresh random nonce.
pub fn nonce() -> Result<[u8; 16], AuthError> {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).map_err(|_| AuthError::NoRandomness)?;
    Ok(n)
}

fn mac(secret: &[u8], message: &str) -> Result<HmacSha256, AuthError> {
    // HMAC takes keys of any length; the error exists for other MACs.
    let mut mac = HmacSha256::new_from_slice(secret)
        .map_err(|_| AuthError::Malformed("the secret cannot key HMAC-SHA256"))?;
    mac.update(message.as_bytes());
    Ok(mac)
}

/// The membership MAC of `message`: what a holder of the network's secret can make.
pub fn membership_mac(secret: &[u8], message: &str) -> Result<[u8; 32], AuthError> {
    Ok(mac(secret, message)?.finalize().into_bytes().into())
}

fn check_signature(peer: &str, message: &str, sig: &[u8; 64]) -> Result<(), AuthError> {
    let wrong = || AuthError::WrongPeer(peer.to_string());
    let key = key_of_peer_id(peer).ok_or_else(wrong)?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| wrong())?;
    key.verify_strict(message.as_bytes(), &Signature::from_bytes(sig))
        .map_err(|_| wrong())
}

/// The `Authorization` header of a request, with the given nonce.
#[allow(clippy::too_many_arguments)]
pub fn sign_request_with(
    secret: &[u8],
    identity: &Identity,
    method: &str,
    path_and_query: &str,
    ts: u64,
    nonce: [u8; 16],
    body: [u8; 32],
) -> Result<String, AuthError> {
    let message = request_message(method, path_and_query, &identity.id, ts, &nonce, &body);
    let mac: [u8; 32] = mac(secret, &message)?.finalize().into_bytes().into();
    Ok(RequestAuth {
        peer: identity.id.clone(),
        ts,
        nonce,
        body,
        mac,
        sig: identity.sign(&message),
    }
    .header())
}

/// The `Authorization` header of a request with `body`, a fresh nonce and the current time.
pub fn sign_request(
    secret: &[u8],
    identity: &Identity,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Result<String, AuthError> {
    sign_request_with(
        secret,
        identity,
        method,
        path_and_query,
        now(),
        nonce()?,
        digest(body),
    )
}

/// What a verified request header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub peer: String,
    pub ts: u64,
    pub nonce: [u8; 16],
    /// The body's digest the sender signed: the body must match it ([`check_body`]).
    pub body: [u8; 32],
}

/// Checks a request's header (window, membership, identity) before any body is read.
pub fn verify_request(
    secret: &[u8],
    header: Option<&str>,
    method: &str,
    path_and_query: &str,
    now: u64,
) -> Result<Verified, AuthError> {
    let auth = RequestAuth::parse(header.ok_or(AuthError::Missing)?)
        .map_err(|e| AuthError::Malformed(e.0))?;
    if auth.ts.abs_diff(now) > WINDOW_SECONDS {
        return Err(AuthError::Stale { ts: auth.ts, now });
    }
    let message = request_message(
        method,
        path_and_query,
        &auth.peer,
        auth.ts,
        &auth.nonce,
        &auth.body,
    );
    // verify_slice compares in constant time.
    mac(secret, &message)?
        .verify_slice(&auth.mac)
        .map_err(|_| AuthError::BadSignature)?;
    check_signature(&auth.peer, &message, &auth.sig)?;
    Ok(Verified {
        peer: auth.peer,
        ts: auth.ts,
        nonce: auth.nonce,
        body: auth.body,
    })
}

/// The body a verified header announced.
pub fn check_body(verified: &Verified, body: &[u8]) -> Result<(), AuthError> {
    if digest(body) == verified.body {
        Ok(())
    } else {
        Err(AuthError::BodyMismatch)
    }
}

/// The `X-Hostrole-Reply` header of an answer: `identity` signs as a peer; the index (`None`)
/// proves membership only.
pub fn sign_reply(
    secret: &[u8],
    identity: Option<&Identity>,
    status: u16,
    nonce: [u8; 16],
    body: [u8; 32],
) -> Result<String, AuthError> {
    let peer = identity.map(|i| i.id.clone());
    let message = reply_message(status, peer.as_deref(), &nonce, &body);
    let mac: [u8; 32] = mac(secret, &message)?.finalize().into_bytes().into();
    Ok(ReplyAuth {
        peer,
        nonce,
        body,
        mac,
        sig: identity.map(|i| i.sign(&message)),
    }
    .header())
}

/// Whom an answer must come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect<'a> {
    /// The index: a member of the network (no peer identity).
    Index,
    /// Some peer, whichever it proves to be (a seed or an address from DNS).
    AnyPeer,
    /// This peer id and no other.
    Peer(&'a str),
}

/// A verified answer: who signed it and the body digest it signed (the caller compares it with
/// the body it read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub peer: Option<String>,
    pub body: [u8; 32],
}

/// Checks an answer's header: it answers the request with `nonce`, a member made it, and a
/// peer's answer is signed by the key of the peer `expect` names.
pub fn verify_reply(
    secret: &[u8],
    header: Option<&str>,
    status: u16,
    nonce: &[u8; 16],
    expect: Expect<'_>,
) -> Result<Reply, AuthError> {
    let reply = ReplyAuth::parse(header.ok_or(AuthError::Unsigned("no X-Hostrole-Reply header"))?)
        .map_err(|e| AuthError::Malformed(e.0))?;
    if reply.nonce != *nonce {
        return Err(AuthError::Replayed);
    }
    let message = reply_message(status, reply.peer.as_deref(), &reply.nonce, &reply.body);
    mac(secret, &message)?
        .verify_slice(&reply.mac)
        .map_err(|_| AuthError::BadSignature)?;
    match (&reply.peer, &reply.sig, expect) {
        (_, _, Expect::Index) => {}
        (Some(peer), Some(sig), Expect::AnyPeer) => check_signature(peer, &message, sig)?,
        (Some(peer), Some(sig), Expect::Peer(want)) => {
            if peer != want {
                return Err(AuthError::OtherPeer {
                    got: peer.clone(),
                    want: want.to_string(),
                });
            }
            check_signature(peer, &message, sig)?
        }
        _ => {
            return Err(AuthError::Unsigned(
                "a peer's answer carries no peer signature",
            ));
        }
    }
    Ok(Reply {
        peer: reply.peer,
        body: reply.body,
    })
}

/// The nonces seen within the window, bounded: each request is accepted once. When the cache
/// is full the oldest entry leaves and requests as old as it are refused from then on (the
/// floor), so a replay is never accepted; under a flood the accepted window only shrinks.
#[derive(Debug)]
pub struct ReplayGuard {
    cap: usize,
    seen: HashSet<[u8; 16]>,
    order: BTreeSet<(u64, [u8; 16])>,
    floor: Option<u64>,
}

impl ReplayGuard {
    pub fn new(cap: usize) -> ReplayGuard {
        ReplayGuard {
            cap: cap.max(1),
            seen: HashSet::new(),
            order: BTreeSet::new(),
            floor: None,
        }
    }

    /// Accepts `nonce` (signed at `ts`) once.
    pub fn check(&mut self, ts: u64, nonce: [u8; 16], now: u64) -> Result<(), AuthError> {
        // Entries older than the window are refused as stale anyway.
        while let Some(&(t, n)) = self.order.first() {
            if t.saturating_add(WINDOW_SECONDS) >= now {
                break;
            }
            self.order.pop_first();
            self.seen.remove(&n);
        }
        if self.floor.is_some_and(|f| ts <= f) || self.seen.contains(&nonce) {
            return Err(AuthError::Replayed);
        }
        if self.seen.len() >= self.cap
            && let Some((t, n)) = self.order.pop_first()
        {
            self.seen.remove(&n);
            self.floor = Some(self.floor.map_or(t, |f| f.max(t)));
            if ts <= t {
                return Err(AuthError::Replayed);
            }
        }
        self.seen.insert(nonce);
        self.order.insert((ts, nonce));
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads a secret file: its content without trailing whitespace; an empty secret is refused.
pub fn read_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)?;
    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
        bytes.pop();
    }
    if bytes.is_empty() {
        return Err(std::io::Error::other("the secret file is empty"));
    }
    Ok(bytes)
}

/// Finds the secret a request must be signed with, from its path.
pub type SecretLookup = Arc<dyn Fn(&str) -> Result<Vec<u8>, AuthError> + Send + Sync>;

/// Who signed a request, put in the request's extensions by [`require`].
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub peer: String,
    /// The caller's `x-hostrole-peer-address`, when it sent one.
    pub address: Option<String>,
}

/// A handler that knows its answer body's BLAKE3 (a chunk: its hash is in the catalog) puts it
/// in the response's extensions, and [`require`] signs it without hashing the bytes again.
#[derive(Clone, Copy, Debug)]
pub struct BodyDigest(pub [u8; 32]);

/// What [`require`] needs.
#[derive(Clone)]
pub struct Gate {
    pub secrets: SecretLookup,
    pub max_body: usize,
    pub on_refused: Arc<dyn Fn(&AuthError) + Send + Sync>,
    /// Signs answers as this peer; `None` for the index (membership only).
    pub identity: Option<Arc<Identity>>,
    pub replay: Arc<Mutex<ReplayGuard>>,
    /// Bodies read at once (each up to `max_body`).
    pub bodies: Arc<Semaphore>,
}

/// A JSON error answer.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}

/// Axum middleware: refuses (401, JSON error) every request not signed by a member as the peer
/// it names, or seen before; checks the header before reading the body; signs the answer.
pub async fn require(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let refuse = |e: AuthError| {
        (gate.on_refused)(&e);
        error_response(e.status(), e.to_string())
    };
    let secret = match (gate.secrets)(parts.uri.path()) {
        Ok(s) => s,
        Err(e) => return refuse(e),
    };
    let header = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let now = now();
    let verified =
        match verify_request(&secret, header, parts.method.as_str(), &path_and_query, now) {
            Ok(v) => v,
            Err(e) => return refuse(e),
        };
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > gate.max_body as u64) {
        return refuse(AuthError::TooLarge(gate.max_body));
    }
    let replayed = gate
        .replay
        .lock()
        .map_err(|_| AuthError::Replayed)
        .and_then(|mut g| g.check(verified.ts, verified.nonce, now));
    if let Err(e) = replayed {
        return refuse(e);
    }
    let empty = declared == Some(0)
        || (declared.is_none()
            && !parts.headers.contains_key(http::header::TRANSFER_ENCODING)
            && matches!(
                parts.method,
                http::Method::GET | http::Method::HEAD | http::Method::DELETE
            ));
    let bytes = if empty {
        axum::body::Bytes::new()
    } else {
        let Ok(_permit) = gate.bodies.clone().try_acquire_owned() else {
            return refuse(AuthError::Busy);
        };
        match axum::body::to_bytes(body, gate.max_body).await {
            Ok(b) => b,
            Err(_) => return refuse(AuthError::TooLarge(gate.max_body)),
        }
    };
    if let Err(e) = check_body(&verified, &bytes) {
        return refuse(e);
    }
    let address = parts
        .headers
        .get(ADDRESS_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    parts.extensions.insert(Authenticated {
        peer: verified.peer.clone(),
        address,
    });
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    sign_response(&gate, &secret, verified.nonce, response).await
}

async fn sign_response(
    gate: &Gate,
    secret: &[u8],
    nonce: [u8; 16],
    response: Response,
) -> Response {
    let (mut parts, body) = response.into_parts();
    // A handler that names its body's digest (a chunk: the catalog's hash) has its body passed
    // through as it streams; any other body is read whole to be digested.
    let (body, body_digest) = match parts.extensions.get::<BodyDigest>() {
        Some(d) => (body, d.0),
        None => {
            let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the answer");
            };
            let d = digest(&bytes);
            (Body::from(bytes), d)
        }
    };
    match sign_reply(
        secret,
        gate.identity.as_deref(),
        parts.status.as_u16(),
        nonce,
        body_digest,
    )
    .map(|h| HeaderValue::from_str(&h))
    {
        Ok(Ok(value)) => {
            parts.headers.insert(REPLY_HEADER, value);
        }
        _ => {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "cannot sign the answer");
        }
    }
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cret";

    fn alice() -> Identity {
        Identity::from_secret("alice", [1; 32])
    }

    fn signed(id: &Identity, method: &str, path: &str, ts: u64, body: &[u8]) -> String {
        sign_request_with(SECRET, id, method, path, ts, [9; 16], digest(body)).expect("sign")
    }

    #[test]
    fn a_signed_request_verifies_and_names_its_peer() {
        let a = alice();
        let h = signed(&a, "PUT", "/v1/x?y=1", 1000, b"{}");
        assert!(!h.contains("s3cret"), "the secret never travels");
        let v = verify_request(SECRET, Some(&h), "PUT", "/v1/x?y=1", 1100).expect("verifies");
        assert_eq!(v.peer, a.id());
        assert!(a.id().starts_with("alice."));
        assert_eq!(check_body(&v, b"{}"), Ok(()));
        assert_eq!(check_body(&v, b"{ }"), Err(AuthError::BodyMismatch));
    }

    #[test]
    fn anything_changed_breaks_the_signature() {
        let a = alice();
        let h = signed(&a, "PUT", "/v1/x", 1000, b"{}");
        assert_eq!(
            verify_request(b"other", Some(&h), "PUT", "/v1/x", 1000),
            Err(AuthError::BadSignature)
        );
        for (method, path) in [("GET", "/v1/x"), ("PUT", "/v1/y")] {
            assert_eq!(
                verify_request(SECRET, Some(&h), method, path, 1000),
                Err(AuthError::BadSignature)
            );
        }
    }

    #[test]
    fn a_member_cannot_sign_as_another_peer() {
        // Mallory holds the network secret but not Bob's key: she makes a request that names
        // Bob's id, with a correct membership MAC and her own signature.
        let bob = Identity::from_secret("bob", [2; 32]);
        let mallory = Identity::from_secret("bob", [3; 32]);
        let message = request_message("DELETE", "/p", bob.id(), 1000, &[0; 16], &digest(b""));
        let forged = RequestAuth {
            peer: bob.id().to_string(),
            ts: 1000,
            nonce: [0; 16],
            body: digest(b""),
            mac: mac(SECRET, &message)
                .expect("mac")
                .finalize()
                .into_bytes()
                .into(),
            sig: mallory.sign(&message),
        }
        .header();
        assert_eq!(
            verify_request(SECRET, Some(&forged), "DELETE", "/p", 1000),
            Err(AuthError::WrongPeer(bob.id().to_string()))
        );
        assert_ne!(
            bob.id(),
            mallory.id(),
            "same name, different keys, different ids"
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let h = signed(&alice(), "GET", "/", 1000, b"");
        assert!(matches!(
            verify_request(SECRET, Some(&h), "GET", "/", 1000 + WINDOW_SECONDS + 1),
            Err(AuthError::Stale { .. })
        ));
        assert!(matches!(
            verify_request(SECRET, Some(&h), "GET", "/", 1000 - WINDOW_SECONDS - 1),
            Err(AuthError::Stale { .. })
        ));
        assert!(verify_request(SECRET, Some(&h), "GET", "/", 1000 + WINDOW_SECONDS).is_ok());
        assert_eq!(
            verify_request(SECRET, None, "GET", "/", 0),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn replies_belong_to_one_request_and_one_peer() {
        let a = alice();
        let h = sign_reply(SECRET, Some(&a), 200, [5; 16], digest(b"x")).expect("sign");
        let ok = verify_reply(SECRET, Some(&h), 200, &[5; 16], Expect::Peer(a.id())).expect("ok");
        assert_eq!(ok.peer.as_deref(), Some(a.id()));
        assert_eq!(ok.body, digest(b"x"));
        assert!(verify_reply(SECRET, Some(&h), 200, &[5; 16], Expect::AnyPeer).is_ok());
        assert_eq!(
            verify_reply(SECRET, Some(&h), 200, &[6; 16], Expect::AnyPeer),
            Err(AuthError::Replayed),
            "an answer to another request"
        );
        assert_eq!(
            verify_reply(SECRET, Some(&h), 404, &[5; 16], Expect::AnyPeer),
            Err(AuthError::BadSignature)
        );
        assert!(matches!(
            verify_reply(SECRET, Some(&h), 200, &[5; 16], Expect::Peer("bob.00")),
            Err(AuthError::OtherPeer { .. })
        ));
        let index = sign_reply(SECRET, None, 200, [5; 16], digest(b"x")).expect("sign");
        assert!(verify_reply(SECRET, Some(&index), 200, &[5; 16], Expect::Index).is_ok());
        assert!(matches!(
            verify_reply(SECRET, Some(&index), 200, &[5; 16], Expect::AnyPeer),
            Err(AuthError::Unsigned(_))
        ));
        assert_eq!(
            verify_reply(b"other", Some(&index), 200, &[5; 16], Expect::Index),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn each_nonce_is_accepted_once_and_the_cache_stays_bounded() {
        let mut g = ReplayGuard::new(3);
        assert_eq!(g.check(100, [1; 16], 100), Ok(()));
        assert_eq!(g.check(100, [1; 16], 101), Err(AuthError::Replayed));
        g.check(101, [2; 16], 101).expect("2");
        g.check(102, [3; 16], 102).expect("3");
        // Full: the oldest leaves, and its time becomes the floor.
        g.check(103, [4; 16], 103).expect("4");
        assert_eq!(g.len(), 3);
        assert_eq!(
            g.check(100, [1; 16], 103),
            Err(AuthError::Replayed),
            "the evicted nonce is still refused"
        );
        assert_eq!(g.check(100, [9; 16], 103), Err(AuthError::Replayed));
        g.check(104, [5; 16], 104).expect("new requests pass");
        // Past the window, entries leave on their own.
        g.check(
            104 + WINDOW_SECONDS + 10,
            [6; 16],
            104 + WINDOW_SECONDS + 10,
        )
        .expect("later");
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn an_identity_is_kept_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Identity::load_or_create(dir.path(), "family-0").expect("create");
        let b = Identity::load_or_create(dir.path(), "family-0").expect("load");
        assert_eq!(a.id(), b.id());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(dir.path().join(KEY_FILE), "nonsense").expect("write");
        let e = Identity::load_or_create(dir.path(), "x").expect_err("refused");
        assert!(e.to_string().contains("remove it"), "{e}");
    }

    #[test]
    fn secrets_lose_trailing_whitespace_and_may_not_be_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("net");
        std::fs::write(&path, "abc \n").expect("write");
        assert_eq!(read_secret(&path).expect("read"), b"abc");
        std::fs::write(&path, "\n").expect("write");
        assert!(read_secret(&path).is_err());
    }
}
