//! Keeps every request inside the site: dot segments, hidden files, backslashes, NUL bytes and
//! symlinks that resolve outside the site root are refused before `ServeDir` sees the request.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use percent_encoding::percent_decode_str;

/// The site root, canonical (symlinks resolved).
#[derive(Clone)]
pub struct Site {
    root: Arc<PathBuf>,
}

impl Site {
    pub fn new(canonical_root: PathBuf) -> Self {
        Self {
            root: Arc::new(canonical_root),
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

/// Decodes a request path and checks each segment. Returns the path relative to the site root.
pub fn relative_path(raw: &str) -> Result<PathBuf, Refusal> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Refusal::Malformed)?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return Err(Refusal::Malformed);
    }
    let mut relative = PathBuf::new();
    for segment in decoded.split('/').filter(|s| !s.is_empty()) {
        // '.', '..', and hidden files such as .git or a ConfigMap volume's ..data.
        if segment.starts_with('.') {
            return Err(Refusal::Hidden);
        }
        relative.push(segment);
    }
    Ok(relative)
}

/// True when `candidate` exists and resolves (through symlinks) outside `root`.
async fn escapes(root: &Path, candidate: &Path) -> bool {
    match tokio::fs::canonicalize(candidate).await {
        Ok(real) => !real.starts_with(root),
        // Missing files are ServeDir's to answer (404).
        Err(_) => false,
    }
}

/// The middleware.
pub async fn guard(State(site): State<Site>, request: Request, next: Next) -> Response {
    let relative = match relative_path(request.uri().path()) {
        Ok(r) => r,
        Err(Refusal::Malformed) => return (StatusCode::BAD_REQUEST, "bad path\n").into_response(),
        Err(Refusal::Hidden) => return (StatusCode::NOT_FOUND, "not found\n").into_response(),
    };
    if escapes(&site.root, &site.root.join(&relative)).await {
        tracing::warn!(path = %request.uri().path(), "refused a path that leaves the site through a symlink");
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
