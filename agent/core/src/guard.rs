//! Keeps every request inside a role's directory: dot segments, backslashes, NUL bytes, names the
//! role reserves, hidden files (where the role hides them) and symlinks that resolve outside the
//! root are refused before the role's handler sees the request. Shared by the web and file roles.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use percent_encoding::percent_decode_str;

/// What a role refuses besides `.`/`..` segments, backslashes and NUL bytes.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Refuse every segment that starts with '.' (a public web site); a file share keeps them
    /// (clients store `.DS_Store`, `._x` and dotfiles there).
    pub hide_dotfiles: bool,
    /// A top-level name the role keeps for itself (e.g. the file role's upload staging area).
    pub reserved: Option<&'static str>,
    /// Who refuses symlinks that leave the root.
    pub symlinks: Symlinks,
}

/// Where the symlink check happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symlinks {
    /// Here, before the handler (one `canonicalize` per request).
    Guard,
    /// In the handler, which resolves every path it opens anyway (the web role's file cache).
    Handler,
}

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

/// Why a request path was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not a path a client may ask for (answered 400).
    Malformed,
    /// A path that exists only outside the public site (answered 404, revealing nothing).
    Hidden,
}

/// Decodes a request path and checks each segment. Returns the path relative to the root.
pub fn relative_path(raw: &str, policy: Policy) -> Result<PathBuf, Refusal> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Refusal::Malformed)?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return Err(Refusal::Malformed);
    }
    let mut relative = PathBuf::new();
    for (i, segment) in decoded.split('/').filter(|s| !s.is_empty()).enumerate() {
        let dots = segment == "." || segment == "..";
        // With hide_dotfiles: hidden files such as .git, or a ConfigMap volume's ..data.
        let hidden = policy.hide_dotfiles && segment.starts_with('.');
        let reserved = i == 0 && policy.reserved == Some(segment);
        if dots || hidden || reserved {
            return Err(Refusal::Hidden);
        }
        relative.push(segment);
    }
    Ok(relative)
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

    const WEB: Policy = Policy {
        hide_dotfiles: true,
        reserved: None,
        symlinks: Symlinks::Handler,
    };
    const SHARE: Policy = Policy {
        hide_dotfiles: false,
        reserved: Some(".uploads"),
        symlinks: Symlinks::Guard,
    };

    fn relative_path(raw: &str) -> Result<PathBuf, Refusal> {
        super::relative_path(raw, WEB)
    }

    #[test]
    fn a_share_keeps_dotfiles_but_not_dot_segments_or_its_reserved_name() {
        assert_eq!(
            super::relative_path("/.DS_Store", SHARE),
            Ok(PathBuf::from(".DS_Store"))
        );
        assert_eq!(
            super::relative_path("/a/._x", SHARE),
            Ok(PathBuf::from("a/._x"))
        );
        assert_eq!(super::relative_path("/../x", SHARE), Err(Refusal::Hidden));
        assert_eq!(
            super::relative_path("/%2e%2e/x", SHARE),
            Err(Refusal::Hidden)
        );
        assert_eq!(
            super::relative_path("/.uploads/tmp", SHARE),
            Err(Refusal::Hidden)
        );
        assert_eq!(
            super::relative_path("/a/.uploads", SHARE),
            Ok(PathBuf::from("a/.uploads"))
        );
    }

    #[test]
    fn plain_paths_pass() {
        assert_eq!(relative_path("/"), Ok(PathBuf::new()));
        assert_eq!(
            relative_path("/css/site.css"),
            Ok(PathBuf::from("css/site.css"))
        );
        assert_eq!(relative_path("/a%20b.html"), Ok(PathBuf::from("a b.html")));
        assert_eq!(
            relative_path("//double//slash"),
            Ok(PathBuf::from("double/slash"))
        );
    }

    #[test]
    fn traversal_and_hidden_paths_are_refused() {
        for raw in [
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc%2Fpasswd",
            "/..%2f..%2fetc/passwd",
            "/.git/config",
            "/..data/index.html",
            "/./index.html",
        ] {
            assert_eq!(relative_path(raw), Err(Refusal::Hidden), "{raw}");
        }
    }

    #[test]
    fn malformed_paths_are_refused() {
        for raw in ["/a%00b", "/..\\..\\windows", "/%5c..%5cwin", "/%ff%fe"] {
            assert_eq!(relative_path(raw), Err(Refusal::Malformed), "{raw}");
        }
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
