//! The web role: a static site over HTTP/1.1 and HTTP/2.
//!
//! tower-http's `ServeDir` does the file serving (content types, index.html, ETag and
//! Last-Modified with conditional requests, Range, HEAD) over the role's file cache ([`cache`]:
//! small files from memory, revalidated each second, and sent as the cached buffer itself:
//! [`zero_copy`]); this module adds what a public server
//! needs around it: no path may leave the site (dot segments and hidden files in the guard,
//! symlinks that point outside in the cache, which resolves every path it serves), compression
//! where the client asks and it pays (text-like types, never on partial content, bounded work),
//! If-Range and multi-range requests ([`ranges`]), HTML error pages and the site's `404.html`
//! ([`errors`]), HEAD answered with exactly GET's headers, request metrics, and the shared
//! bounded listener.

mod cache;
mod errors;
mod ranges;
mod redirect;
mod zero_copy;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response;
use hostrole_config::WebRoleConfig;
use http::{Method, StatusCode};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::Predicate;
use tower_http::services::ServeDir;

use hostrole_agent_core::Role;
use hostrole_agent_core::guard;
use hostrole_agent_core::metrics::{AgentMetrics, track};
use hostrole_agent_core::net::{self, BindError, HttpRole};
use hostrole_agent_core::tls::{self, TlsError};
use tokio_util::sync::CancellationToken;

/// The role's name in logs, metrics and readiness.
pub const ROLE: &str = "web";

/// Why the web role cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("the web role's site root {path} is not a readable directory: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("web role: {0}")]
    Tls(#[from] TlsError),
}

/// The web role, bound: the site, and with HTTPS perhaps a plain port that redirects to it.
pub struct Web {
    site: HttpRole,
    redirect: Option<HttpRole>,
}

impl Web {
    /// Checks the site root and the certificate, and binds the ports.
    pub async fn bind(
        config: &WebRoleConfig,
        ip: IpAddr,
        metrics: &AgentMetrics,
    ) -> Result<Web, WebError> {
        let root = tokio::fs::canonicalize(&config.root)
            .await
            .and_then(|p| {
                if p.is_dir() {
                    Ok(p)
                } else {
                    Err(std::io::Error::other("not a directory"))
                }
            })
            .map_err(|source| WebError::Root {
                path: config.root.clone(),
                source,
            })?;
        let tls = config
            .tls
            .as_ref()
            .map(|files| tls::acceptor(files, tls::ALPN_HTTP))
            .transpose()?;
        let listener = net::bind(ROLE, SocketAddr::new(ip, config.port)).await?;
        let redirect = match config.redirect_port.filter(|_| tls.is_some()) {
            None => None,
            Some(port) => {
                let listener = net::bind(REDIRECT, SocketAddr::new(ip, port)).await?;
                Some(HttpRole::new(
                    REDIRECT,
                    listener,
                    redirect::router(config.port, metrics.clone()),
                    config.max_connections,
                    metrics.connections_of(REDIRECT),
                ))
            }
        };
        let site = HttpRole::new(
            ROLE,
            listener,
            router(root, metrics.clone()),
            config.max_connections,
            metrics.connections_of(ROLE),
        )
        .with_tls(tls);
        Ok(Web { site, redirect })
    }
}

/// The redirect listener's name in logs and metrics.
const REDIRECT: &str = "web-redirect";

impl Role for Web {
    fn name(&self) -> &'static str {
        ROLE
    }

    fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut all = self.site.addresses();
        all.extend(self.redirect.iter().flat_map(|r| r.addresses()));
        all
    }

    fn run(
        self: Box<Self>,
        stop: CancellationToken,
        grace: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let site = Box::new(self.site).run(stop.clone(), grace);
        match self.redirect {
            None => site,
            Some(redirect) => {
                let redirect = Box::new(redirect).run(stop, grace);
                Box::pin(async move {
                    tokio::join!(site, redirect);
                })
            }
        }
    }
}

/// Largest body compressed on the fly: compressing is work per request (brotli at quality 4 is
/// ~75 ms for 2 MB), and larger files are served as they are.
const MAX_COMPRESSED_BYTES: u64 = 2 << 20;
/// Smaller bodies gain nothing from compression.
const MIN_COMPRESSED_BYTES: u64 = 256;

/// Compress only what shrinks, and within bounded work: text-like types (HTML, CSS, JavaScript,
/// JSON, XML, SVG, plain text, WebAssembly, uncompressed fonts) of 256 B to 2 MiB. Images, audio,
/// video, archives and fonts in WOFF are compressed already; `application/octet-stream` is
/// unknown and often random. Never partial content: a byte range of the compressed stream
/// would not be the range the client asked for.
#[derive(Clone, Copy)]
struct Worthwhile;

impl Predicate for Worthwhile {
    fn should_compress<B>(&self, response: &http::Response<B>) -> bool
    where
        B: http_body::Body,
    {
        let headers = response.headers();
        if response.status() == StatusCode::PARTIAL_CONTENT
            || headers.contains_key(http::header::CONTENT_RANGE)
        {
            return false;
        }
        let size = response.body().size_hint().exact().or_else(|| {
            headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        });
        let size_ok =
            size.is_none_or(|n| (MIN_COMPRESSED_BYTES..=MAX_COMPRESSED_BYTES).contains(&n));
        size_ok
            && headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(compressible)
    }
}

/// Whether a content type is worth compressing.
fn compressible(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/wasm"
                | "application/manifest+json"
                | "image/svg+xml"
                | "image/x-icon"
                | "image/vnd.microsoft.icon"
                | "image/bmp"
                | "font/ttf"
                | "font/otf"
                | "application/x-font-ttf"
        )
}

/// HEAD is served as GET, and only the body is left out (by axum): the headers are then exactly
/// GET's, Content-Encoding and Content-Length included (`ServeDir` answers HEAD itself with the
/// file's length, which the compression around it does not change).
async fn head_as_get(mut request: Request, next: Next) -> Response {
    if request.method() == Method::HEAD {
        *request.method_mut() = Method::GET;
    }
    next.run(request).await
}

/// Request body bytes read (and dropped) before answering: a static site wants no body, but
/// reading a small one first lets HTTP/2 report a malformed request (a second HEADERS frame, a
/// wrong content-length) as the stream error it is rather than racing it with the answer; a
/// larger body is not waited for.
const DRAINED_BODY_BYTES: usize = 64 << 10;
/// …and at most this long.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

async fn drain_small_body(request: Request, next: Next) -> Response {
    use http_body::Body as _;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let _ = tokio::time::timeout(DRAIN_TIME, axum::body::to_bytes(body, DRAINED_BODY_BYTES)).await;
    next.run(Request::from_parts(parts, axum::body::Body::empty()))
        .await
}

fn router(root: PathBuf, metrics: AgentMetrics) -> Router {
    let cache = cache::SiteCache::new(root.clone());
    let files = ServeDir::with_backend(&root, cache.clone()).append_index_html_on_directories(true);
    Router::new()
        .fallback_service(Shared::new(ranges::Ranges::new(zero_copy::ZeroCopy::new(
            files,
        ))))
        .layer(from_fn_with_state(
            guard::Site::new(
                root.clone(),
                guard::Policy {
                    hide_dotfiles: true,
                    reserved: None,
                    symlinks: guard::Symlinks::Handler,
                },
            ),
            guard::guard,
        ))
        .layer(from_fn_with_state(
            errors::ErrorPages {
                cache,
                root: std::sync::Arc::new(root),
            },
            errors::error_pages,
        ))
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .br(true)
                .compress_when(Worthwhile),
        )
        .layer(from_fn(head_as_get))
        .layer(from_fn(drain_small_body))
        .layer(from_fn_with_state((ROLE, metrics), track))
}

/// The file service behind one `Arc`. Every `from_fn` middleware clones the whole service below
/// it for each request, so with the role's layers a request cloned `ServeDir` (and its root
/// path, an allocation) once per layer; now those clones are atomic increments and the service
/// is cloned once, for the request that uses it. The services inside (`Ranges`, `ZeroCopy`,
/// `ServeDir`) are always ready, which is why `poll_ready` does not ask them.
struct Shared<S>(std::sync::Arc<S>);

impl<S> Shared<S> {
    fn new(service: S) -> Self {
        Shared(std::sync::Arc::new(service))
    }
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared(self.0.clone())
    }
}

impl<S, R> tower::Service<R> for Shared<S>
where
    S: tower::Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        (*self.0).clone().call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_text_like_types_are_compressed() {
        for t in [
            "text/html",
            "text/css; charset=utf-8",
            "application/json",
            "image/svg+xml",
            "application/ld+json",
        ] {
            assert!(compressible(t), "{t}");
        }
        for t in [
            "image/png",
            "application/octet-stream",
            "application/zip",
            "application/gzip",
            "video/mp4",
            "font/woff2",
        ] {
            assert!(!compressible(t), "{t}");
        }
    }
}
