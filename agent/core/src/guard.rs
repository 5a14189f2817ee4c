//! Keeps every request inside a role's directory: dot segments, backslashes, NUL bytes, names the
//! role reserves, hidden files (where the role hides them) and symlinks that resolve outside the
//! root are refused before the role's handler sees the request. Shared by the web and file roles.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

// The pure part (decoding and checking each segment) lives in hostrole-proto, where it is fuzzed.
pub use hostrole_proto::dav_path::{Policy, Refusal, Symlinks, relative_path};

/// The root directory, canonical (symlinks resolved), and the policy.
#[derive(Clone)]
pub struct Site {
    root: Arc<PathBuf>,
    policy: Policy,
}

impl Site {
    pub fn new(canonical_root: PathBuf, policy: Policy) -> Self {
        Self {
            root: Arc::new(canonical_root),
            policy,
        }
    }
}

/// True when `candidate` resolves (through symlinks) outside `root`. A path that does not exist
/// yet (an upload, a new directory) is judged by its nearest existing ancestor, so that a
/// symlinked directory cannot be used to write outside the root either.
pub async fn escapes(root: &Path, candidate: &Path) -> bool {
    let mut probe = candidate.to_path_buf();
    loop {
        match tokio::fs::canonicalize(&probe).await {
            Ok(real) => return !real.starts_with(root),
            Err(_) => {
                if !probe.pop() || !probe.starts_with(root) {
                    // Nothing of it exists inside the root: the handler answers 404/409.
                    return false;
                }
            }
        }
    }
}

/// The middleware.
pub async fn guard(State(site): State<Site>, request: Request, next: Next) -> Response {
    let relative = match relative_path(request.uri().path(), site.policy) {
        Ok(r) => r,
        Err(Refusal::Malformed) => return (StatusCode::BAD_REQUEST, "bad path\n").into_response(),
        Err(Refusal::Hidden) => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
    };
    if site.policy.symlinks == Symlinks::Guard
        && escapes(&site.root, &site.root.join(&relative)).await
    {
        tracing::warn!(path = %request.uri().path(), "refused a path that leaves the root through a symlink");
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    // The segment checks are tested where they live (hostrole_proto::dav_path); this only pins
    // that the guard's names are those.
    #[test]
    fn the_guard_refuses_what_the_proto_refuses() {
        let web = Policy {
            hide_dotfiles: true,
            reserved: None,
            symlinks: Symlinks::Handler,
        };
        assert_eq!(relative_path("/a%20b", web), Ok(PathBuf::from("a b")));
        assert_eq!(relative_path("/%2e%2e/x", web), Err(Refusal::Hidden));
        assert_eq!(relative_path("/a%00b", web), Err(Refusal::Malformed));
    }

    #[tokio::test]
    async fn symlinks_out_of_the_site_are_detected() {
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("secret"), "s").expect("write");
        let site = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(site.path()).expect("canonical");
        std::fs::write(root.join("inside.html"), "i").expect("write");
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("leak"))
            .expect("symlink");
        std::os::unix::fs::symlink(root.join("inside.html"), root.join("alias.html"))
            .expect("symlink");
        assert!(escapes(&root, &root.join("leak")).await);
        assert!(!escapes(&root, &root.join("alias.html")).await);
        assert!(!escapes(&root, &root.join("missing.html")).await);
        assert!(!escapes(&root, &root.join("new/dir/file")).await);
        std::os::unix::fs::symlink(outside.path(), root.join("outdir")).expect("symlink");
        assert!(
            escapes(&root, &root.join("outdir/planted.txt")).await,
            "a new file under a symlink that leaves"
        );
        assert!(escapes(&root, &root.join("outdir/a/b/c")).await);
    }
}
