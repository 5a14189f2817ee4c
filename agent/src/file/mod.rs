//! The file role: a WebDAV share (RFC 4918, classes 1 and 2) over the host's volume.
//!
//! dav-server speaks WebDAV; this module adds what a share needs around it: accounts with HTTP
//! Basic (hashed passwords, read-only users, anonymous access only when asked for), atomic
//! uploads with a quota and a size limit (`fs`), paths that cannot leave the share (the shared
//! `guard`), metrics, and the bounded listener.

mod auth;
mod checks;
mod fs;
mod locks;
mod props;

use hostrole_agent_core::metrics::{Direction, Reason};
use hostrole_agent_core::tls::{self, TlsError};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use dav_server::{DavConfig, DavHandler};
use hostrole_config::FileRoleConfig;
use http::StatusCode;

use hostrole_agent_core::guard;
use hostrole_agent_core::metrics::{AgentMetrics, track};
use hostrole_agent_core::net::{self, BindError, HttpRole};
use hostrole_agent_core::users::{User, Users, UsersError};

/// The role's name in logs, metrics and readiness.
pub const ROLE: &str = "file";

/// Why the file role cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the file role's directory {path} is not a writable directory: {source}")]
    Storage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("file role: {0}")]
    Tls(#[from] TlsError),
}

/// Binds the role; the result is served by the supervisor.
pub struct FileShare;

impl FileShare {
    /// Checks the storage (write, fsync, remove a probe), loads the accounts, binds the port.
    pub async fn bind(
        config: &FileRoleConfig,
        ip: IpAddr,
        metrics: &AgentMetrics,
    ) -> Result<HttpRole, FileError> {
        let storage_err = |source| FileError::Storage {
            path: config.root.clone(),
            source,
        };
        tokio::fs::create_dir_all(&config.root)
            .await
            .map_err(storage_err)?;
        let root = tokio::fs::canonicalize(&config.root)
            .await
            .map_err(storage_err)?;
        probe_writable(&root).await.map_err(storage_err)?;
        let users = match &config.users_file {
            Some(path) => Users::load(path)?,
            None => Users::none(),
        };
        let limits = fs::Limits {
            quota_bytes: config.quota_bytes,
            max_upload_bytes: config.max_upload_bytes,
        };
        let share = fs::ShareFs::new(root.clone(), limits, metrics.clone()).map_err(storage_err)?;
        let listener = net::bind(ROLE, SocketAddr::new(ip, config.port)).await?;
        let access = auth::Access::new(users, config.anonymous, metrics.clone());
        let tls = config
            .tls
            .as_ref()
            .map(|files| tls::acceptor(files, tls::ALPN_HTTP))
            .transpose()?;
        Ok(HttpRole::new(
            ROLE,
            listener,
            router(
                root,
                share,
                access,
                config.max_upload_bytes,
                metrics.clone(),
            ),
            config.max_connections,
            metrics.connections_of(ROLE),
        )
        .with_tls(tls))
    }
}

async fn probe_writable(root: &std::path::Path) -> std::io::Result<()> {
    let probe = root.join(".hostrole-probe");
    let mut file = tokio::fs::File::create(&probe).await?;
    tokio::io::AsyncWriteExt::write_all(&mut file, b"ok").await?;
    file.sync_all().await?;
    tokio::fs::remove_file(&probe).await
}

/// The share's path policy: dotfiles are the users' own, the staging area is nobody's.
const POLICY: guard::Policy = guard::Policy {
    hide_dotfiles: false,
    reserved: Some(fs::STAGING),
    symlinks: guard::Symlinks::Guard,
};

fn router(
    root: PathBuf,
    share: fs::ShareFs,
    access: auth::Access,
    max_upload: u64,
    metrics: AgentMetrics,
) -> Router {
    let locks = locks::ShareLs::new();
    let dav = DavHandler::builder()
        .filesystem(Box::new(share))
        // GET of a collection: an HTML listing (names escaped, sizes, dates, links).
        .autoindex(true)
        .build_handler();
    let share_root = Arc::new(root.clone());
    let out_metrics = metrics.clone();
    Router::new()
        .fallback(move |request: Request| {
            let dav = dav.clone();
            let metrics = out_metrics.clone();
            let locks = locks.clone();
            let share_root = share_root.clone();
            async move {
                let too_big = request
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .is_some_and(|n| n > max_upload);
                if too_big {
                    metrics.error(ROLE, Reason::UploadTooLarge);
                    return (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "upload larger than the share accepts\n",
                    )
                        .into_response();
                }
                let user = request.extensions().get::<User>().map(|u| u.name.clone());
                if let Err(refused) = lock_rules(&locks, user.as_deref(), &request) {
                    metrics.error(ROLE, refused.reason());
                    return refused.into_response();
                }
                // Locks are taken and checked as this user (dav-server's principal).
                let mut config = DavConfig::new().locksystem(locks.for_user(user.as_deref()));
                if let Some(user) = user {
                    config = config.principal(user);
                }
                let is_get = request.method() == http::Method::GET;
                let copy = copy_request(&request);
                let collection_copy = collection_copy(&share_root, copy).await;
                let response = dav.handle_with(config, request).await;
                if let Some((from, to, depth_zero)) = collection_copy
                    && matches!(
                        response.status(),
                        StatusCode::CREATED | StatusCode::NO_CONTENT
                    )
                {
                    let root = share_root.clone();
                    let copied = tokio::task::spawn_blocking(move || {
                        props::copy_collections(&root, &from, &to, depth_zero)
                    })
                    .await;
                    if !matches!(copied, Ok(Ok(()))) {
                        tracing::warn!("a collection was copied without its dead properties");
                    }
                }
                if is_get && response.status().is_success() {
                    let len = response
                        .headers()
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                    metrics.moved(ROLE, Direction::Out, len.unwrap_or(0));
                }
                response.map(Body::new)
            }
        })
        .layer(from_fn_with_state(
            checks::Checks {
                root: Arc::new(root.clone()),
                policy: POLICY,
                metrics: metrics.clone(),
            },
            checks::check,
        ))
        .layer(from_fn_with_state(
            guard::Site::new(root, POLICY),
            guard::guard,
        ))
        .layer(from_fn_with_state(access, auth::require))
        .layer(from_fn_with_state((ROLE, metrics), track))
}

/// A new LOCK (one with a body) needs room under the user's cap; an UNLOCK must name the user's
/// own lock.
fn lock_rules(
    locks: &locks::ShareLs,
    user: Option<&str>,
    request: &Request,
) -> Result<(), locks::LockRefusal> {
    match request.method().as_str() {
        "LOCK" => {
            let headers = request.headers();
            let has_body = headers.contains_key(http::header::TRANSFER_ENCODING)
                || headers
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .is_some_and(|n| n > 0);
            if has_body && locks.may_lock(user).is_err() {
                return Err(locks::LockRefusal::TooMany);
            }
            Ok(())
        }
        "UNLOCK" => {
            let token = request
                .headers()
                .get("lock-token")
                .and_then(|v| v.to_str().ok())
                .map(|t| t.trim().trim_matches(|c| c == '<' || c == '>'));
            match token {
                Some(token) if locks.may_unlock(user, token).is_err() => {
                    Err(locks::LockRefusal::NotYours)
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// A COPY (source, destination relative to the root, Depth: 0) whose source may be a collection:
/// its collections' own dead properties are copied after dav-server has copied the tree (it
/// creates collections itself and copies only files through the filesystem).
fn copy_request(request: &Request) -> Option<(PathBuf, PathBuf, bool)> {
    if request.method().as_str() != "COPY" {
        return None;
    }
    let from = guard::relative_path(request.uri().path(), POLICY).ok()?;
    // The checks rewrote the Destination to the checked absolute path.
    let to = request.headers().get("destination")?.to_str().ok()?;
    let to = guard::relative_path(to, POLICY).ok()?;
    let depth_zero = request
        .headers()
        .get("depth")
        .is_some_and(|d| d.as_bytes() == b"0");
    Some((from, to, depth_zero))
}

/// The COPY of [`copy_request`], when its source is a collection.
async fn collection_copy(
    root: &Path,
    copy: Option<(PathBuf, PathBuf, bool)>,
) -> Option<(PathBuf, PathBuf, bool)> {
    let copy = copy?;
    tokio::fs::metadata(root.join(&copy.0))
        .await
        .ok()?
        .is_dir()
        .then_some(copy)
}
