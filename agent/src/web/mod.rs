//! The web role: a static site over HTTP/1.1 and HTTP/2.
//!
//! tower-http's `ServeDir` does the file serving (content types, index.html, ETag and
//! Last-Modified with conditional requests, Range, HEAD); this module adds what a public server
//! needs around it: no path may leave the site (dot segments, hidden files, symlinks that point
//! outside), compression where the client asks (never on partial content), request metrics, and
//! the shared bounded listener.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use hostrole_api::agent::WebRoleConfig;
use http::{HeaderMap, StatusCode, Version};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate};
use tower_http::services::ServeDir;

use crate::admin::{AgentMetrics, track};
use crate::guard;
use crate::net::{self, BindError, ServeOptions};
use crate::supervisor::Role;

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

/// A web role whose listener is bound and ready to serve.
pub struct Web {
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    metrics: AgentMetrics,
}

impl Web {
    /// Checks the site root and binds the port.
    pub async fn bind(
        config: &WebRoleConfig,
        ip: IpAddr,
        metrics: &AgentMetrics,
    ) -> Result<Self, WebError> {
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
        Ok(Self {
            listener,
            router: router(root, metrics.clone()),
            max_connections: config.max_connections,
            metrics: metrics.clone(),
        })
    }
}

impl Role for Web {
    fn name(&self) -> &'static str {
        ROLE
    }

    fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        self.listener
            .local_addr()
            .map(|a| vec![(ROLE, a)])
            .unwrap_or_default()
    }

    fn run(
        self: Box<Self>,
        stop: CancellationToken,
        grace: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let options = ServeOptions {
            role: ROLE,
            max_connections: self.max_connections,
            grace,
            open_connections: self.metrics.connections_of(ROLE),
        };
        Box::pin(net::serve(self.listener, self.router, options, stop))
    }
}

/// Range responses are never compressed: a byte range of the compressed stream would not be the
/// range the client asked for.
fn not_partial(status: StatusCode, _: Version, headers: &HeaderMap, _: &http::Extensions) -> bool {
    status != StatusCode::PARTIAL_CONTENT && !headers.contains_key(http::header::CONTENT_RANGE)
}

fn router(root: PathBuf, metrics: AgentMetrics) -> Router {
    let files = ServeDir::new(&root).append_index_html_on_directories(true);
    Router::new()
        .fallback_service(files)
        .layer(from_fn_with_state(
            guard::Site::new(
                root,
                guard::Policy {
                    hide_dotfiles: true,
                    reserved: None,
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
