//! What `ServeDir` (tower-http 0.7) does not do with ranges, around it:
//!
//! - **If-Range** (RFC 9110 13.1.5) is ignored by `ServeDir`: a client resuming a download with
//!   the ETag of an older version would get a 206 of the new bytes to splice onto its old ones.
//!   Here a range request with If-Range is served, and when the validator does not match the
//!   representation's (taken from that response: the ETag strongly, the date exactly against
//!   Last-Modified) the request is served again without Range: 200 with the whole file.
//! - **Several ranges** get a 416 from `ServeDir`. Here they are replaced by the one range that
//!   covers them all (RFC 9110 14.2 lets a server coalesce ranges), so the client gets a single-
//!   part 206 that holds every byte it asked for.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_range_header::{EndPosition, StartPosition};
use tower::{Service, ServiceExt};

/// `inner` with If-Range honoured and multi-range requests coalesced.
#[derive(Clone)]
pub struct Ranges<S> {
    inner: S,
}

impl<S> Ranges<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> Service<Request<Body>> for Ranges<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each call uses a clone of `inner`, readied by `oneshot`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let ranged =
                request.method() == Method::GET && request.headers().contains_key(header::RANGE);
            if !ranged {
                return inner.oneshot(request).await;
            }
            if let Some(single) = request
                .headers()
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(cover)
            {
                request.headers_mut().insert(header::RANGE, single);
            }
            let Some(if_range) = request.headers().get(header::IF_RANGE).cloned() else {
                return inner.oneshot(request).await;
            };
            let whole = without_range(&request);
            let response = inner.clone().oneshot(request).await?;
            let partial = matches!(
                response.status(),
                StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE
            );
            if partial && !if_range_holds(&if_range, response.headers()) {
                drop(response);
                return inner.oneshot(whole).await;
            }
            Ok(response)
        })
    }
}

/// The same GET without Range and If-Range.
fn without_range(request: &Request<Body>) -> Request<Body> {
    let mut whole = Request::new(Body::empty());
    *whole.method_mut() = request.method().clone();
    *whole.uri_mut() = request.uri().clone();
    *whole.version_mut() = request.version();
    *whole.headers_mut() = request.headers().clone();
    whole.headers_mut().remove(header::RANGE);
    whole.headers_mut().remove(header::IF_RANGE);
    whole
}

/// Whether If-Range's validator matches the representation described by `headers`: an entity
/// tag by strong comparison (a weak tag never matches), a date only when it is exactly the
/// Last-Modified date.
pub fn if_range_holds(validator: &HeaderValue, headers: &HeaderMap) -> bool {
    let v = validator.as_bytes();
    if v.starts_with(b"\"") || v.starts_with(b"W/") {
        return !v.starts_with(b"W/")
            && headers
                .get(header::ETAG)
                .is_some_and(|etag| etag.as_bytes() == v && !v.starts_with(b"W/"));
    }
    let date = |value: &HeaderValue| {
        value
            .to_str()
            .ok()
            .and_then(|s| httpdate::parse_http_date(s).ok())
    };
    match (
        date(validator),
        headers.get(header::LAST_MODIFIED).and_then(date),
    ) {
        (Some(asked), Some(current)) => asked == current,
        _ => false,
    }
}

/// For a Range header with several ranges, the single range that covers them all; `None` for
/// one range or a header that does not parse (left to `ServeDir`).
pub fn cover(range: &str) -> Option<HeaderValue> {
    let parsed = http_range_header::parse_range_header(range).ok()?;
    if parsed.ranges.len() < 2 {
        return None;
    }
    let mut first: Option<u64> = None;
    let mut last: Option<u64> = None;
    let mut to_the_end = false;
    let mut longest_suffix = 0u64;
    for r in &parsed.ranges {
        match r.start {
            StartPosition::Index(s) => first = Some(first.map_or(s, |f| f.min(s))),
            StartPosition::FromLast(n) => longest_suffix = longest_suffix.max(n),
        }
        match (r.start, r.end) {
            (StartPosition::Index(_), EndPosition::Index(e)) => {
                last = Some(last.map_or(e, |l| l.max(e)))
            }
            _ => to_the_end = true,
        }
    }
    let value = match (first, to_the_end, last) {
        (None, _, _) => format!("bytes=-{longest_suffix}"),
        (Some(f), true, _) | (Some(f), false, None) => format!("bytes={f}-"),
        (Some(f), false, Some(l)) => format!("bytes={f}-{l}"),
    };
    HeaderValue::from_str(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_ranges_become_the_one_that_covers_them() {
        let c = |r: &str| cover(r).map(|v| v.to_str().expect("ascii").to_string());
        assert_eq!(c("bytes=0-99"), None, "one range is left alone");
        assert_eq!(c("bytes=0-99,200-299"), Some("bytes=0-299".into()));
        assert_eq!(c("bytes=500-599, 0-9"), Some("bytes=0-599".into()));
        assert_eq!(c("bytes=10-20,100-"), Some("bytes=10-".into()));
        assert_eq!(c("bytes=10-20,-5"), Some("bytes=10-".into()));
        assert_eq!(c("bytes=-5,-50"), Some("bytes=-50".into()));
        assert_eq!(c("bytes=x"), None);
    }

    #[test]
    fn if_range_matches_strong_etags_and_exact_dates_only() {
        let mut h = HeaderMap::new();
        h.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
        h.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        let holds = |v: &'static str| if_range_holds(&HeaderValue::from_static(v), &h);
        assert!(holds("\"abc\""));
        assert!(!holds("\"abd\""));
        assert!(!holds("W/\"abc\""));
        assert!(holds("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert!(!holds("Wed, 21 Oct 2015 07:28:01 GMT"));
        assert!(!holds("garbage"));
    }
}
