//! Files the cache holds in memory are sent as the cached [`Bytes`] themselves.
//!
//! `ServeDir` reads every file through `AsyncRead` into fresh 64 KiB buffers: for a file already
//! in memory that is an allocation and a copy of every byte, per request, before the kernel copies
//! them again into the socket (the web benchmark's profile at 1 MiB, bench/results.md). Here
//! `ServeDir` still decides everything about the answer (status, content type, validators and
//! conditional requests, the range); only its body is replaced, when the file it opened was a
//! cached one ([`super::cache`] notes it in a task-local slot), by the cached bytes or the slice
//! the `Content-Range` names. Nothing is copied; hyper writes the shared buffer to the socket.
//!
//! The replacement is made only when the headers `ServeDir` wrote describe exactly those bytes
//! (`Content-Length`, and for 206 a `Content-Range` within them); otherwise its own body is kept.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use tower::{Service, ServiceExt};

tokio::task_local! {
    /// The bytes of the cached file that the request being served opened, if it opened one.
    static OPENED: RefCell<Option<Bytes>>;
}

/// Called by the cache when it opens a file from memory: notes its bytes for [`ZeroCopy`]. Does
/// nothing outside a [`ZeroCopy`] request.
pub fn opened(bytes: &Bytes) {
    let _ = OPENED.try_with(|slot| *slot.borrow_mut() = Some(bytes.clone()));
}

/// `inner` (`ServeDir` over the cache) with in-memory files sent without a copy.
#[derive(Clone)]
pub struct ZeroCopy<S> {
    inner: S,
}

impl<S> ZeroCopy<S> {
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> Service<Request<Body>> for ZeroCopy<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Each call uses a clone of `inner`, readied by `oneshot`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(OPENED.scope(RefCell::new(None), async move {
            let response = inner.oneshot(request).await?;
            let opened = OPENED.with(|slot| slot.borrow_mut().take());
            Ok(match opened {
                Some(bytes) => with_bytes(response, bytes),
                None => response.map(Body::new),
            })
        }))
    }
}

/// The response with its body replaced by the part of `bytes` its headers describe, if they
/// describe a part of them; else unchanged.
fn with_bytes<B>(response: Response<B>, bytes: Bytes) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (parts, body) = response.into_parts();
    match part(parts.status, &parts.headers, bytes.len() as u64) {
        Some((start, end)) => {
            let body = Body::from(bytes.slice(start as usize..end as usize));
            Response::from_parts(parts, body)
        }
        None => Response::from_parts(parts, Body::new(body)),
    }
}

/// The byte span `[start, end)` of a file of `len` bytes that a response with `status` and
/// `headers` carries, when it carries a whole span of it.
fn part(status: StatusCode, headers: &HeaderMap, len: u64) -> Option<(u64, u64)> {
    let length: u64 = headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    if headers.contains_key(header::CONTENT_ENCODING) {
        return None;
    }
    match status {
        StatusCode::OK => (length == len).then_some((0, len)),
        StatusCode::PARTIAL_CONTENT => {
            let range = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
            let (span, total) = range.strip_prefix("bytes ")?.split_once('/')?;
            let (first, last) = span.split_once('-')?;
            let (first, last, total): (u64, u64, u64) =
                (first.parse().ok()?, last.parse().ok()?, total.parse().ok()?);
            (total == len && first <= last && last < len && length == last - first + 1)
                .then_some((first, last + 1))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), value.parse().expect("value"));
        }
        map
    }

    /// The body of `ServeDir` over the cache, as one buffer (it is one frame when not copied).
    async fn served(
        root: &std::path::Path,
        cache: &super::super::cache::SiteCache,
        range: Option<&str>,
    ) -> (StatusCode, Vec<Bytes>) {
        let files = tower_http::services::ServeDir::with_backend(root, cache.clone());
        let mut request = Request::get("/page.html");
        if let Some(range) = range {
            request = request.header(header::RANGE, range);
        }
        let request = request.body(Body::empty()).expect("request");
        let response = ZeroCopy::new(files)
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status();
        let mut body = response.into_body();
        let mut frames = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| http_body::Body::poll_frame(Pin::new(&mut body), cx)).await
        {
            if let Ok(data) = frame.expect("frame").into_data() {
                frames.push(data);
            }
        }
        (status, frames)
    }

    #[tokio::test]
    async fn a_cached_file_is_sent_as_the_cached_buffer_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(root.join("page.html"), &content).expect("write");
        let cache = super::super::cache::SiteCache::new(root.clone());
        let cached = cache
            .small_file(root.join("page.html"))
            .await
            .expect("in memory");

        let (status, frames) = served(&root, &cache, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(frames.len(), 1, "one frame, not 64 KiB reads");
        assert_eq!(frames[0], content);
        assert_eq!(
            frames[0].as_ptr(),
            cached.as_ptr(),
            "the cached bytes, not a copy"
        );

        let (status, frames) = served(&root, &cache, Some("bytes=100000-100009")).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(frames.concat(), content[100_000..100_010]);
        assert_eq!(frames[0].as_ptr(), cached[100_000..].as_ptr());
    }

    #[test]
    fn a_whole_file_and_a_range_within_it_are_spans_of_the_cached_bytes() {
        let whole = headers(&[(header::CONTENT_LENGTH, "10")]);
        assert_eq!(part(StatusCode::OK, &whole, 10), Some((0, 10)));
        let range = headers(&[
            (header::CONTENT_LENGTH, "3"),
            (header::CONTENT_RANGE, "bytes 2-4/10"),
        ]);
        assert_eq!(part(StatusCode::PARTIAL_CONTENT, &range, 10), Some((2, 5)));
    }

    #[test]
    fn anything_else_keeps_its_own_body() {
        // Another length (the file changed between the check and the answer).
        let other = headers(&[(header::CONTENT_LENGTH, "9")]);
        assert_eq!(part(StatusCode::OK, &other, 10), None);
        // Not a body of the file.
        for status in [
            StatusCode::NOT_MODIFIED,
            StatusCode::RANGE_NOT_SATISFIABLE,
            StatusCode::NOT_FOUND,
        ] {
            let h = headers(&[(header::CONTENT_LENGTH, "10")]);
            assert_eq!(part(status, &h, 10), None, "{status}");
        }
        // Encoded bodies are not the file's bytes.
        let encoded = headers(&[
            (header::CONTENT_LENGTH, "10"),
            (header::CONTENT_ENCODING, "gzip"),
        ]);
        assert_eq!(part(StatusCode::OK, &encoded, 10), None);
        // Ranges that do not lie within the file, or disagree with the length.
        for (range, length) in [
            ("bytes 2-4/11", "3"),
            ("bytes 4-2/10", "3"),
            ("bytes 8-10/10", "3"),
            ("bytes 2-4/10", "4"),
            ("bytes */10", "0"),
            ("bytes x-4/10", "3"),
        ] {
            let h = headers(&[
                (header::CONTENT_LENGTH, length),
                (header::CONTENT_RANGE, range),
            ]);
            assert_eq!(part(StatusCode::PARTIAL_CONTENT, &h, 10), None, "{range}");
        }
    }
}
