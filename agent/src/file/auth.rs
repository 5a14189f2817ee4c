//! Who may do what on the share: HTTP Basic against the users file, read-only users, and
//! anonymous access only as the manifest allows.

use hostrole_agent_core::metrics::Reason;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hostrole_config::AnonymousAccess;
use http::{HeaderValue, Method, StatusCode, header};
use sha2::{Digest, Sha256};

use hostrole_agent_core::metrics::AgentMetrics;
use hostrole_agent_core::net::ClientKey;
use hostrole_agent_core::users::{Check, User, Users};

/// A verified password is remembered this long, so that clients that authenticate every
/// request (rclone, davfs2) do not pay for a password hash each time.
const REMEMBER: Duration = Duration::from_secs(60);

/// (name, SHA-256 of the password) → (when it was verified, read-only).
type Verified = HashMap<(String, [u8; 32]), (Instant, bool)>;

#[derive(Clone)]
pub struct Access {
    users: Arc<Users>,
    anonymous: AnonymousAccess,
    metrics: AgentMetrics,
    /// Recently verified passwords, by hash; never the password itself.
    verified: Arc<Mutex<Verified>>,
}

impl Access {
    pub fn new(users: Users, anonymous: AnonymousAccess, metrics: AgentMetrics) -> Self {
        Self {
            users: Arc::new(users),
            anonymous,
            metrics,
            verified: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    async fn verify(&self, client: Option<ClientKey>, name: &str, password: &str) -> Option<User> {
        let key = (name.to_string(), Sha256::digest(password.as_bytes()).into());
        let remembered = {
            let cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            cache
                .get(&key)
                .filter(|(at, _)| at.elapsed() < REMEMBER)
                .map(|(_, ro)| *ro)
        };
        if let Some(read_only) = remembered {
            return Some(User {
                name: name.to_string(),
                read_only,
            });
        }
        // Bounded, backed off after failures and hashed off the async threads by agent-core.
        let user = match self.users.check(client, name, password).await {
            Check::Valid(user) => user,
            Check::Invalid => return None,
            Check::Throttled => {
                self.metrics.error(super::ROLE, Reason::AuthThrottled);
                return None;
            }
        };
        let mut cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        cache.retain(|_, (at, _)| at.elapsed() < REMEMBER);
        cache.insert(key, (Instant::now(), user.read_only));
        Some(user)
    }
}

/// Methods that change the share.
pub fn writes(method: &Method) -> bool {
    !matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS" | "PROPFIND")
}

/// Decodes `Authorization: Basic …` into (name, password).
pub fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    // The scheme name is case-insensitive (RFC 9110 section 11.1).
    let (scheme, encoded) = value.to_str().ok()?.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

fn challenge() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"hostrole\", charset=\"UTF-8\"",
        )],
        "log in to use this share\n",
    )
        .into_response()
}

/// The middleware.
pub async fn require(State(access): State<Access>, request: Request, next: Next) -> Response {
    let write = writes(request.method());
    match request.headers().get(header::AUTHORIZATION) {
        Some(value) => {
            let Some((name, password)) = basic_credentials(value) else {
                return (StatusCode::BAD_REQUEST, "malformed Authorization header\n")
                    .into_response();
            };
            let client = request.extensions().get::<ClientKey>().copied();
            match access.verify(client, &name, &password).await {
                Some(user) if write && user.read_only => {
                    access.metrics.error(super::ROLE, Reason::ReadOnlyUser);
                    (StatusCode::FORBIDDEN, "this account may only read\n").into_response()
                }
                Some(user) => {
                    // The lock system and dead properties act for this user.
                    let mut request = request;
                    request.extensions_mut().insert(user);
                    next.run(request).await
                }
                None => {
                    access.metrics.error(super::ROLE, Reason::AuthFailed);
                    challenge()
                }
            }
        }
        None => {
            let allowed = match access.anonymous {
                AnonymousAccess::ReadWrite => true,
                AnonymousAccess::ReadOnly => !write,
                AnonymousAccess::None => false,
            };
            if allowed {
                next.run(request).await
            } else {
                challenge()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_methods_are_told_apart() {
        for m in ["GET", "HEAD", "OPTIONS", "PROPFIND"] {
            assert!(
                !writes(&Method::from_bytes(m.as_bytes()).expect("method")),
                "{m}"
            );
        }
        for m in [
            "PUT",
            "DELETE",
            "MKCOL",
            "COPY",
            "MOVE",
            "PROPPATCH",
            "LOCK",
            "UNLOCK",
            "POST",
        ] {
            assert!(
                writes(&Method::from_bytes(m.as_bytes()).expect("method")),
                "{m}"
            );
        }
    }

    #[test]
    fn basic_credentials_decode() {
        let v = HeaderValue::from_static("Basic YWxpY2U6czNjcjp0");
        assert_eq!(
            basic_credentials(&v),
            Some(("alice".into(), "s3cr:t".into()))
        );
        for scheme in ["basic", "BASIC", "bAsIc"] {
            let v = HeaderValue::from_str(&format!("{scheme} YWxpY2U6czNjcjp0")).expect("value");
            assert_eq!(
                basic_credentials(&v),
                Some(("alice".into(), "s3cr:t".into())),
                "{scheme}"
            );
        }
        assert_eq!(
            basic_credentials(&HeaderValue::from_static("Bearer x")),
            None
        );
        assert_eq!(
            basic_credentials(&HeaderValue::from_static("Basic !!!")),
            None
        );
    }
}
