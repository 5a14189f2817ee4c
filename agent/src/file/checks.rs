//! What the share refuses before dav-server sees a request: writes that would remove or replace the
//! share's root, a COPY/MOVE `Destination` that the request path itself could not name (another
//! host, the staging area, a symlink out of the share, a collection that holds the source), the
//! role's own bookkeeping names at any depth, and `PROPFIND` of unbounded depth.
//!
//! The request path has already passed the shared `guard`; the Destination passes the same checks
//! here and is then handed to dav-server rewritten as the plain path that was checked, so that the
//! path dav-server acts on is the one that was judged.

use hostrole_agent_core::metrics::Reason;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};

use hostrole_agent_core::guard::{self, Policy};
use hostrole_agent_core::metrics::AgentMetrics;
use hostrole_proto::dav_path::{self, DestinationRefusal};

// The Destination's parsing and checks (no filesystem) live in hostrole-proto, where they are fuzzed.
pub use hostrole_proto::dav_path::Destination;

/// The file role's bookkeeping names: never a path a client may name, at any depth.
pub const RESERVED_ANYWHERE: &[&str] = &[super::props::PROPS];

/// Why a request is refused, and the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// 400: not something a client may send.
    BadRequest(&'static str),
    /// 403: understood, and never allowed.
    Forbidden(&'static str),
    /// 404: a name the share keeps for itself.
    NotFound,
    /// 502: a Destination on another server (RFC 4918 sections 9.8.5 and 9.9.4).
    BadGateway(&'static str),
    /// 403 with the `propfind-finite-depth` precondition (RFC 4918 section 9.1): a PROPFIND of
    /// unbounded depth would walk the whole share in one response.
    FiniteDepth,
}

impl Refused {
    /// The metric reason (a fixed string).
    fn reason(self) -> Reason {
        match self {
            Refused::BadRequest(_) => Reason::BadDestination,
            Refused::Forbidden(_) => Reason::Forbidden,
            Refused::NotFound => Reason::ReservedPath,
            Refused::BadGateway(_) => Reason::ForeignDestination,
            Refused::FiniteDepth => Reason::InfiniteDepth,
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::BadRequest(why) => (StatusCode::BAD_REQUEST, format!("{why}\n")),
            Refused::Forbidden(why) => (StatusCode::FORBIDDEN, format!("{why}\n")),
            Refused::NotFound => (StatusCode::NOT_FOUND, "not found\n".to_string()),
            Refused::BadGateway(why) => (StatusCode::BAD_GATEWAY, format!("{why}\n")),
            Refused::FiniteDepth => {
                return (
                    StatusCode::FORBIDDEN,
                    [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
                    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:error xmlns:D=\"DAV:\"><D:propfind-finite-depth/></D:error>\n",
                )
                    .into_response();
            }
        }
        .into_response()
    }
}

impl From<DestinationRefusal> for Refused {
    fn from(refusal: DestinationRefusal) -> Self {
        match refusal {
            DestinationRefusal::BadRequest(why) => Refused::BadRequest(why),
            DestinationRefusal::Forbidden(why) => Refused::Forbidden(why),
            DestinationRefusal::BadGateway(why) => Refused::BadGateway(why),
        }
    }
}

/// Checks a path relative to the root for the names the role keeps at every depth.
fn reserved_anywhere(relative: &Path) -> bool {
    dav_path::reserved_anywhere(relative, RESERVED_ANYWHERE)
}

/// Parses and checks a Destination header (RFC 4918 section 10.3: an absolute URI or an absolute
/// path). `authority` is the request's own (`Host`, or the HTTP/2 `:authority`).
pub fn destination(
    raw: &str,
    authority: Option<&str>,
    policy: Policy,
) -> Result<Destination, Refused> {
    Ok(dav_path::destination(
        raw,
        authority,
        policy,
        RESERVED_ANYWHERE,
    )?)
}

/// True when `ancestor` is `path` or a collection holding it (both relative to the root).
fn contains(ancestor: &Path, path: &Path) -> bool {
    path.starts_with(ancestor)
}

/// Why a COPY/MOVE from `source` to `dest` would lose data, if it would.
pub fn copy_move(method: &Method, source: &Path, dest: &Path) -> Result<(), Refused> {
    if is_root(dest) {
        return Err(Refused::Forbidden(
            "the share's root cannot be overwritten (Destination is the root)",
        ));
    }
    if method.as_str() == "MOVE" && is_root(source) {
        return Err(Refused::Forbidden("the share's root cannot be moved"));
    }
    if contains(dest, source) {
        // Overwrite would delete the Destination first, and the source with it (Apache: 403).
        return Err(Refused::Forbidden(
            "the Destination is the source or a collection holding it",
        ));
    }
    if contains(source, dest) {
        return Err(Refused::Forbidden(
            "the Destination is inside the source collection",
        ));
    }
    Ok(())
}

fn is_root(relative: &Path) -> bool {
    relative
        .components()
        .all(|c| matches!(c, Component::CurDir))
}

/// The checks' state: the canonical share root and the guard's policy.
#[derive(Clone)]
pub struct Checks {
    pub root: Arc<PathBuf>,
    pub policy: Policy,
    pub metrics: AgentMetrics,
}

/// The middleware (after the shared `guard`, which has checked the request path).
pub async fn check(State(checks): State<Checks>, mut request: Request, next: Next) -> Response {
    match refuse(&checks, &mut request).await {
        Ok(()) => next.run(request).await,
        Err(refused) => {
            checks.metrics.error(super::ROLE, refused.reason());
            refused.into_response()
        }
    }
}

async fn refuse(checks: &Checks, request: &mut Request) -> Result<(), Refused> {
    // The guard has let the path through, so it decodes.
    let source =
        guard::relative_path(request.uri().path(), checks.policy).map_err(|_| Refused::NotFound)?;
    if reserved_anywhere(&source) {
        return Err(Refused::NotFound);
    }
    let method = request.method().clone();
    match method.as_str() {
        "DELETE" if is_root(&source) => {
            Err(Refused::Forbidden("the share's root cannot be deleted"))
        }
        "PROPFIND" if depth_infinity(request) => Err(Refused::FiniteDepth),
        "COPY" | "MOVE" => {
            let raw = request
                .headers()
                .get("destination")
                .ok_or(Refused::BadRequest(
                    "COPY and MOVE need a Destination header",
                ))?
                .to_str()
                .map_err(|_| Refused::BadRequest("the Destination is not ASCII"))?;
            let authority = request
                .uri()
                .authority()
                .map(|a| a.as_str().to_string())
                .or_else(|| {
                    request
                        .headers()
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_string)
                });
            let dest = destination(raw, authority.as_deref(), checks.policy)?;
            copy_move(&method, &source, &dest.relative)?;
            if guard::escapes(&checks.root, &checks.root.join(&dest.relative)).await {
                tracing::warn!(
                    destination = raw,
                    "refused a Destination that leaves the share through a symlink"
                );
                return Err(Refused::Forbidden(
                    "the Destination names a path the share refuses",
                ));
            }
            let value = HeaderValue::from_str(&dest.header_value())
                .map_err(|_| Refused::BadRequest("the Destination path is malformed"))?;
            request.headers_mut().insert("destination", value);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn depth_infinity(request: &Request) -> bool {
    request
        .headers()
        .get("depth")
        .and_then(|d| d.to_str().ok())
        .is_some_and(|d| d.trim().eq_ignore_ascii_case("infinity"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostrole_agent_core::guard::Symlinks;

    const SHARE: Policy = Policy {
        hide_dotfiles: false,
        reserved: Some(".hostrole-uploads"),
        symlinks: Symlinks::Guard,
    };
    const HOST: Option<&str> = Some("127.0.0.1:8080");

    fn dest(raw: &str) -> Result<Destination, Refused> {
        destination(raw, HOST, SHARE)
    }

    fn rel(raw: &str) -> PathBuf {
        dest(raw).expect("accepted").relative
    }

    /// The parsing is `hostrole_proto::dav_path`'s and tested there; here: the wrapper keeps
    /// each refusal's status and refuses the role's own bookkeeping names.
    #[test]
    fn the_wrapper_keeps_each_refusal_and_the_roles_own_names() {
        assert_eq!(rel("http://127.0.0.1:8080/a%20b"), PathBuf::from("a b"));
        assert_eq!(dest("/").expect("root").header_value(), "/");
        assert!(matches!(
            dest("http://evil.example.com/x"),
            Err(Refused::BadGateway(_))
        ));
        assert!(matches!(dest("/a#frag"), Err(Refused::BadRequest(_))));
        for raw in [
            "/../etc/passwd",
            "/.hostrole-uploads/x",
            "/a/.hostrole-props/b",
        ] {
            assert!(matches!(dest(raw), Err(Refused::Forbidden(_))), "{raw}");
        }
    }

    #[test]
    fn nothing_overwrites_the_root_or_a_collection_holding_the_source() {
        let copy = Method::from_bytes(b"COPY").expect("method");
        let mv = Method::from_bytes(b"MOVE").expect("method");
        let p = Path::new;
        for m in [&copy, &mv] {
            assert!(copy_move(m, p("a.txt"), p("")).is_err(), "onto the root");
            assert!(
                copy_move(m, p("a/b/c.txt"), p("a")).is_err(),
                "onto a parent"
            );
            assert!(copy_move(m, p("a"), p("a/b")).is_err(), "into itself");
            assert!(copy_move(m, p("a.txt"), p("a.txt")).is_err(), "onto itself");
            assert!(copy_move(m, p("a/b.txt"), p("c/b.txt")).is_ok());
            assert!(
                copy_move(m, p("ab"), p("a")).is_ok(),
                "a sibling with a prefix"
            );
        }
        assert!(copy_move(&mv, p(""), p("x")).is_err(), "the root itself");
        assert!(copy_move(&copy, p(""), p("x")).is_err(), "into itself");
    }
}
