//! Error responses a person can read: a small HTML page for every 4xx and 5xx the role answers
//! without one (`ServeDir` and the path guard answer with empty or plain-text bodies), and the
//! site's own `/404.html` for 404 when the site has one (served with status 404, from the file
//! cache, so through the same symlink check as any file).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use super::cache::SiteCache;

/// Where a site's own not-found page lives.
pub const SITE_404: &str = "404.html";

/// What the middleware needs: the site's cache and canonical root.
#[derive(Clone)]
pub struct ErrorPages {
    pub cache: SiteCache,
    pub root: Arc<PathBuf>,
}

/// Replaces the body of an error response that is not already HTML.
pub async fn error_pages(
    State(pages): State<ErrorPages>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    // 416 keeps its empty body: range clients read only its Content-Range.
    if !(status.is_client_error() || status.is_server_error())
        || status == StatusCode::RANGE_NOT_SATISFIABLE
        || is_html(response.headers())
    {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let page = match status {
        StatusCode::NOT_FOUND => pages.cache.small_file(pages.root.join(SITE_404)).await,
        _ => None,
    }
    .unwrap_or_else(|| Bytes::from(builtin(status)));
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(page))
}

fn is_html(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

/// The built-in page of `status` (its text is fixed: nothing of the request is echoed).
pub fn builtin(status: StatusCode) -> String {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let hint = match status {
        StatusCode::NOT_FOUND => "There is no page at this address.",
        StatusCode::METHOD_NOT_ALLOWED => "This site only serves pages (GET and HEAD).",
        StatusCode::BAD_REQUEST => "The request could not be understood.",
        s if s.is_server_error() => "The server could not answer this request.",
        _ => "The request could not be answered.",
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\n<body style=\"font-family:\
         sans-serif;margin:4em auto;max-width:36em\"><h1>{title}</h1>\n<p>{hint}</p>\n\
         <p><a href=\"/\">Home</a></p></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_pages_name_the_status() {
        let page = builtin(StatusCode::NOT_FOUND);
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains("<title>404 Not Found</title>"));
        assert!(builtin(StatusCode::METHOD_NOT_ALLOWED).contains("405 Method Not Allowed"));
        assert!(page.len() < 1024, "small");
    }
}
