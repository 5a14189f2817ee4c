//! The web role: a static site over HTTP/1.1 and HTTP/2.
//!
//! tower-http's `ServeDir` does the file serving (content types, index.html, ETag and
//! Last-Modified with conditional requests, Range, HEAD) over the role's file cache ([`cache`]:
//! small files from memory, revalidated each second); this module adds what a public server
//! needs around it: no path may leave the site (dot segments and hidden files in the guard,
//! symlinks that point outside in the cache, which resolves every path it serves), compression
//! where the client asks (never on partial content), request metrics, and the shared bounded
//! listener.

mod cache;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use axum::Router;
use axum::middleware::from_fn_with_state;
use hostrole_config::WebRoleConfig;
use http::{HeaderMap, StatusCode, Version};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::services::ServeDir;

use hostrole_agent_core::guard;
use hostrole_agent_core::metrics::{AgentMetrics, track};
use hostrole_agent_core::net::{self, BindError, HttpRole};

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
}

/// Binds the role; the result is served by the supervisor.
pub struct Web;

impl Web {
    /// Checks the site root and binds the port.
    pub async fn bind(
        config: &WebRoleConfig,
        ip: IpAddr,
        metrics: &AgentMetrics,
    ) -> Result<HttpRole, WebError> {
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
        let listener = net::bind(ROLE, SocketAddr::new(ip, config.port)).await?;
        Ok(HttpRole::new(
            ROLE,
            listener,
            router(root, metrics.clone()),
            config.max_connections,
            metrics.connections_of(ROLE),
        ))
    }
}

/// Range responses are never compressed: a byte range of the compressed stream would not be the
/// range the client asked for.
fn not_partial(status: StatusCode, _: Version, headers: &HeaderMap, _: &http::Extensions) -> bool {
    status != StatusCode::PARTIAL_CONTENT && !headers.contains_key(http::header::CONTENT_RANGE)
}

fn router(root: PathBuf, metrics: AgentMetrics) -> Router {
    let files = ServeDir::with_backend(&root, cache::SiteCache::new(root.clone()))
        .append_index_html_on_directories(true);
    Router::new()
        .fallback_service(files)
        .layer(from_fn_with_state(
            guard::Site::new(
                root,
                guard::Policy {
                    hide_dotfiles: true,
                    reserved: None,
                    symlinks: guard::Symlinks::Handler,
                },
            ),
            guard::guard,
        ))
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .br(true)
                .compress_when(DefaultPredicate::new().and(not_partial)),
        )
        .layer(from_fn_with_state((ROLE, metrics), track))
}
