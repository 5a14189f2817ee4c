//! Request authentication among the members of a network, without sending the secret.
//!
//! Every request carries
//! `Authorization: HostRole-HMAC peer=<id>, ts=<unix seconds>, sig=<hex>` where `sig` is
//! HMAC-SHA256(secret, `METHOD\npath?query\nts\npeer\nhex(SHA-256(body))`). The receiver recomputes it
//! with its copy of the secret and accepts a timestamp within ±[`WINDOW_SECONDS`] of its clock.
//! Parsing and checking are pure functions; the axum middleware around them only moves bytes.

use hostrole_agent_core::metrics::Reason;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use http::StatusCode;
use sha2::{Digest, Sha256};

use crate::valid_peer_id;
use crate::wire::ErrorBody;

/// The authentication scheme's name in the `Authorization` header.
pub const SCHEME: &str = "HostRole-HMAC";
/// Accepted clock difference between sender and receiver.
pub const WINDOW_SECONDS: u64 = 300;
/// Header by which a peer tells the one it calls where it can be reached (gossip).
pub const ADDRESS_HEADER: &str = "x-hostrole-peer-address";

type HmacSha256 = Hmac<Sha256>;

/// Why a request is not accepted as coming from a member of the network.
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
    #[error("unknown network {0:?}: no secret for it")]
    UnknownNetwork(String),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
}

impl AuthError {
    /// CamelCase reason for metrics.
    pub fn reason(&self) -> Reason {
        match self {
            AuthError::Missing => Reason::AuthMissing,
            AuthError::Malformed(_) => Reason::AuthMalformed,
            AuthError::Stale { .. } => Reason::AuthStale,
            AuthError::BadSignature => Reason::AuthBadSignature,
            AuthError::UnknownNetwork(_) => Reason::UnknownNetwork,
            AuthError::TooLarge(_) => Reason::BodyTooLarge,
        }
    }
}

/// The parsed `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Credentials {
    pub peer: String,
    pub ts: u64,
    pub sig: Vec<u8>,
}

/// Parses `HostRole-HMAC peer=ID, ts=N, sig=HEX`.
pub fn parse_header(value: &str) -> Result<Credentials, AuthError> {
    let rest = value
        .strip_prefix(SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(AuthError::Malformed("expected the HostRole-HMAC scheme"))?;
    let (mut peer, mut ts, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or(AuthError::Malformed("expected key=value pairs"))?;
        match key {
            "peer" => peer = Some(value.to_string()),
            "ts" => {
                ts = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| AuthError::Malformed("ts is not a number"))?,
                )
            }
            "sig" => {
                sig = Some(hex::decode(value).map_err(|_| AuthError::Malformed("sig is not hex"))?)
            }
            _ => return Err(AuthError::Malformed("unknown key")),
        }
    }
    let peer = peer.ok_or(AuthError::Malformed("no peer"))?;
    if !valid_peer_id(&peer) {
        return Err(AuthError::Malformed(
            "peer id has characters outside [A-Za-z0-9._-]",
        ));
    }
    Ok(Credentials {
        peer,
        ts: ts.ok_or(AuthError::Malformed("no ts"))?,
        sig: sig.ok_or(AuthError::Malformed("no sig"))?,
    })
}

fn mac(
    secret: &[u8],
    peer: &str,
    method: &str,
    path_and_query: &str,
    ts: u64,
    body: &[u8],
) -> Result<HmacSha256, AuthError> {
    // HMAC takes keys of any length; the error exists for other MACs.
    let mut mac = HmacSha256::new_from_slice(secret)
        .map_err(|_| AuthError::Malformed("the secret cannot key HMAC-SHA256"))?;
    let body_hash = hex::encode(Sha256::digest(body));
    mac.update(format!("{method}\n{path_and_query}\n{ts}\n{peer}\n{body_hash}").as_bytes());
    Ok(mac)
}

/// The `Authorization` header value for a request.
pub fn sign(
    secret: &[u8],
    peer: &str,
    method: &str,
    path_and_query: &str,
    ts: u64,
    body: &[u8],
) -> Result<String, AuthError> {
    let sig = mac(secret, peer, method, path_and_query, ts, body)?
        .finalize()
        .into_bytes();
    Ok(format!(
        "{SCHEME} peer={peer}, ts={ts}, sig={}",
        hex::encode(sig)
    ))
}

/// Checks a request; returns the peer id it was signed by.
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now: u64,
) -> Result<String, AuthError> {
    let creds = parse_header(header.ok_or(AuthError::Missing)?)?;
    if creds.ts.abs_diff(now) > WINDOW_SECONDS {
        return Err(AuthError::Stale { ts: creds.ts, now });
    }
    // verify_slice compares in constant time.
    mac(secret, &creds.peer, method, path_and_query, creds.ts, body)?
        .verify_slice(&creds.sig)
        .map_err(|_| AuthError::BadSignature)?;
    Ok(creds.peer)
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

/// What [`require`] needs: where secrets come from, the body limit, and where to count refusals.
#[derive(Clone)]
pub struct Gate {
    pub secrets: SecretLookup,
    pub max_body: usize,
    pub on_refused: Arc<dyn Fn(&AuthError) + Send + Sync>,
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

/// Axum middleware: refuses (401, JSON error) every request not signed with the secret.
pub async fn require(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let refuse = |e: AuthError| {
        (gate.on_refused)(&e);
        let status = match e {
            AuthError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNAUTHORIZED,
        };
        error_response(status, e.to_string())
    };
    let secret = match (gate.secrets)(parts.uri.path()) {
        Ok(s) => s,
        Err(e) => return refuse(e),
    };
    let bytes = match axum::body::to_bytes(body, gate.max_body).await {
        Ok(b) => b,
        Err(_) => return refuse(AuthError::TooLarge(gate.max_body)),
    };
    let header = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match verify(
        &secret,
        header,
        parts.method.as_str(),
        &path_and_query,
        &bytes,
        now(),
    ) {
        Ok(peer) => {
            let address = parts
                .headers
                .get(ADDRESS_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            parts.extensions.insert(Authenticated { peer, address });
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => refuse(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cret";

    #[test]
    fn a_signed_request_verifies_and_names_its_peer() {
        let h = sign(SECRET, "peer-1", "PUT", "/v1/x?y=1", 1000, b"{}").expect("sign");
        assert!(!h.contains("s3cret"), "the secret never travels");
        assert_eq!(
            verify(SECRET, Some(&h), "PUT", "/v1/x?y=1", b"{}", 1100),
            Ok("peer-1".to_string())
        );
    }

    #[test]
    fn anything_changed_breaks_the_signature() {
        let h = sign(SECRET, "p", "PUT", "/v1/x", 1000, b"{}").expect("sign");
        for (secret, method, path, body) in [
            (&b"other"[..], "PUT", "/v1/x", &b"{}"[..]),
            (SECRET, "GET", "/v1/x", b"{}"),
            (SECRET, "PUT", "/v1/y", b"{}"),
            (SECRET, "PUT", "/v1/x", b"{ }"),
        ] {
            assert_eq!(
                verify(secret, Some(&h), method, path, body, 1000),
                Err(AuthError::BadSignature)
            );
        }
        let forged = h.replace("peer=p", "peer=q");
        assert_eq!(
            verify(SECRET, Some(&forged), "PUT", "/v1/x", b"{}", 1000),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let h = sign(SECRET, "p", "GET", "/", 1000, b"").expect("sign");
        assert!(matches!(
            verify(SECRET, Some(&h), "GET", "/", b"", 1000 + WINDOW_SECONDS + 1),
            Err(AuthError::Stale { .. })
        ));
        assert!(matches!(
            verify(SECRET, Some(&h), "GET", "/", b"", 1000 - WINDOW_SECONDS - 1),
            Err(AuthError::Stale { .. })
        ));
        assert!(verify(SECRET, Some(&h), "GET", "/", b"", 1000 + WINDOW_SECONDS).is_ok());
    }

    #[test]
    fn malformed_headers_are_named() {
        assert_eq!(
            verify(SECRET, None, "GET", "/", b"", 0),
            Err(AuthError::Missing)
        );
        for bad in [
            "Basic abc",
            "HostRole-HMAC peer=p, ts=x, sig=00",
            "HostRole-HMAC peer=p, ts=1, sig=zz",
            "HostRole-HMAC peer=p, ts=1",
            "HostRole-HMAC peer=a/b, ts=1, sig=00",
            "HostRole-HMAC peer=p, ts=1, sig=00, extra=1",
        ] {
            assert!(
                matches!(parse_header(bad), Err(AuthError::Malformed(_))),
                "{bad}"
            );
        }
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
