//! The plain-HTTP port of an HTTPS site: every request is answered `308 Permanent Redirect` to
//! the same host and path on the HTTPS port (nginx's `return 308 https://$host$request_uri`),
//! so links and bookmarks to `http://` keep working and nothing is served in the clear.

use axum::Router;
use axum::extract::Request;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

use hostrole_agent_core::metrics::{AgentMetrics, track};

/// Redirects every request to `https://<host>:<https_port><path>`.
pub fn router(https_port: u16, metrics: AgentMetrics) -> Router {
    Router::new()
        .fallback(move |request: Request| async move { redirect(&request, https_port) })
        .layer(from_fn_with_state((super::REDIRECT, metrics), track))
}

fn redirect(request: &Request, https_port: u16) -> Response {
    let Some(host) = host_of(request) else {
        return (StatusCode::BAD_REQUEST, "a request needs a Host\n").into_response();
    };
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let authority = if https_port == 443 {
        host
    } else if host.contains(':') {
        format!("[{host}]:{https_port}")
    } else {
        format!("{host}:{https_port}")
    };
    let location = format!("https://{authority}{path}");
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, location)],
        "moved to HTTPS\n",
    )
        .into_response()
}

/// The host name (without port) the client asked for: the Host header, or the HTTP/2
/// authority. Only host name and address characters: anything else is not echoed back.
fn host_of(request: &Request) -> Option<String> {
    let raw = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))?;
    let host = match raw.strip_prefix('[') {
        // [v6]:port or [v6]
        Some(rest) => rest.split(']').next()?,
        None => raw.rsplit_once(':').map_or(raw, |(h, _)| h),
    };
    let fine = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    fine.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(host: &str, uri: &str, port: u16) -> (StatusCode, Option<String>) {
        let request = http::Request::builder()
            .uri(uri)
            .header(header::HOST, host)
            .body(axum::body::Body::empty())
            .expect("request");
        let response = redirect(&request, port);
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().expect("ascii").to_string());
        (response.status(), location)
    }

    #[test]
    fn every_request_goes_to_the_same_path_on_https() {
        assert_eq!(
            location("example.lan:8079", "/a/b?c=d", 8443),
            (
                StatusCode::PERMANENT_REDIRECT,
                Some("https://example.lan:8443/a/b?c=d".into())
            )
        );
        assert_eq!(
            location("Example.LAN", "/", 443).1.as_deref(),
            Some("https://example.lan/")
        );
        assert_eq!(
            location("[fd00::1]:80", "/x", 8443).1.as_deref(),
            Some("https://[fd00::1]:8443/x")
        );
        // A host that is not a host name is not echoed into a Location.
        assert_eq!(location("evil\"<>", "/", 8443).0, StatusCode::BAD_REQUEST);
        assert_eq!(location("a@b", "/", 8443).0, StatusCode::BAD_REQUEST);
    }
}
