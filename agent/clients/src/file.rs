//! The file client: a WebDAV round trip. PUT a probe file with a unique name, find it in a
//! `PROPFIND` (depth 1) of the share's root, GET it back and compare its hash, DELETE it. The
//! probe is deleted even when a step fails, so runs leave nothing behind.

use std::time::Duration;

use hostrole_config::ClientConfig;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::web::{http_client, request_error, target_url};
use super::{CLEANUP_TIME, Context, Credentials, ProbeError, Reason, Success, credentials};

/// Size of the probe file: big enough to cross a few TCP segments, small for the share.
const PROBE_BYTES: usize = 16 << 10;

const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<propfind xmlns="DAV:"><prop><resourcetype/><getcontentlength/></prop></propfind>
"#;

/// A probe name: hidden, names the host it comes from, unique per run. Host names hold only
/// DNS label characters, so the name needs no escaping in a URL or an href.
fn probe_name(host: &str) -> String {
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!(".hostrole-probe-{host}-{}", super::random_hex(8))
}

pub(crate) async fn run(
    config: &ClientConfig,
    context: &Context,
    deadline: Instant,
) -> Result<Success, ProbeError> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    let credentials = match &config.credentials_dir {
        Some(dir) => Some(credentials(dir).await?),
        None => None,
    };
    // The target is a collection: `http://h:8081/dav` is `http://h:8081/dav/`.
    let mut root = target_url(config, "")?;
    if !root.path().ends_with('/') {
        let path = format!("{}/", root.path());
        root.set_path(&path);
    }
    let name = probe_name(&context.host);
    let url = root.join(&name).map_err(|e| {
        ProbeError::new(
            Reason::Error,
            format!("cannot join the probe name to {root}: {e}"),
        )
    })?;
    let client = http_client()?;
    let dav = Dav {
        client: &client,
        credentials: credentials.as_ref(),
        timeout,
    };

    let mut content = vec![0u8; PROBE_BYTES];
    if getrandom::fill(&mut content).is_err() {
        content = name.repeat(PROBE_BYTES / name.len() + 1).into_bytes();
    }
    let steps = round_trip(&dav, &root, &url, &name, &content);
    let result = match tokio::time::timeout_at(deadline, steps).await {
        Ok(r) => r,
        Err(_) => Err(super::timed_out(timeout)),
    };
    // Clean up whatever happened, within its own bound. Nothing to clean when the PUT was
    // refused for the credentials or the server could not be reached.
    let nothing_written = matches!(
        &result,
        Err(e) if matches!(e.reason, Reason::ConnectFailed | Reason::AuthFailed)
    );
    if nothing_written {
        return result;
    }
    let deleted = tokio::time::timeout(CLEANUP_TIME, dav.delete(&url)).await;
    match (result, deleted) {
        (Ok(success), Ok(Ok(()))) => Ok(success),
        (Ok(_), Ok(Err(e))) => Err(e),
        (Ok(_), Err(_)) => Err(ProbeError::new(
            Reason::Timeout,
            "DELETE of the probe file did not finish in time",
        )),
        (Err(e), Ok(Err(cleanup))) => {
            tracing::warn!(client = %config.name, error = %cleanup, "the probe file could not be deleted");
            Err(e)
        }
        (Err(e), _) => Err(e),
    }
}

async fn round_trip(
    dav: &Dav<'_>,
    root: &reqwest::Url,
    url: &reqwest::Url,
    name: &str,
    content: &[u8],
) -> Result<Success, ProbeError> {
    let started = std::time::Instant::now();
    // PUT
    let put = dav
        .send(Method::PUT, url, "PUT", |r| r.body(content.to_vec()))
        .await?;
    expect(
        "PUT of the probe file",
        put.status(),
        &[StatusCode::CREATED, StatusCode::NO_CONTENT, StatusCode::OK],
    )?;
    let after_put = started.elapsed();

    // PROPFIND depth 1: the probe is listed in its folder.
    let propfind = Method::from_bytes(b"PROPFIND")
        .map_err(|e| ProbeError::new(Reason::Error, format!("PROPFIND method: {e}")))?;
    let listing = dav
        .send(propfind, root, "PROPFIND", |r| {
            r.header("Depth", "1")
                .header("Content-Type", "application/xml; charset=utf-8")
                .body(PROPFIND_BODY)
        })
        .await?;
    expect(
        "PROPFIND of the share",
        listing.status(),
        &[StatusCode::MULTI_STATUS],
    )?;
    let listing = listing
        .text()
        .await
        .map_err(|e| request_error("PROPFIND (body)", &e, dav.timeout))?;
    if !listing.contains(name) {
        return Err(ProbeError::new(
            Reason::UnexpectedContent,
            "PROPFIND of the share does not list the probe file just written",
        ));
    }

    // GET: the same bytes come back.
    let get = dav.send(Method::GET, url, "GET", |r| r).await?;
    expect("GET of the probe file", get.status(), &[StatusCode::OK])?;
    let body = get
        .bytes()
        .await
        .map_err(|e| request_error("GET (body)", &e, dav.timeout))?;
    if Sha256::digest(&body) != Sha256::digest(content) {
        return Err(ProbeError::new(
            Reason::HashMismatch,
            format!(
                "GET of the probe file returned other bytes than were PUT ({} bytes, {} expected)",
                body.len(),
                content.len()
            ),
        ));
    }
    Ok(
        Success::new("PUT, PROPFIND, GET and DELETE of a probe file")
            .timing("put", after_put)
            .timing("roundTrip", started.elapsed()),
    )
}

struct Dav<'a> {
    client: &'a reqwest::Client,
    credentials: Option<&'a Credentials>,
    timeout: Duration,
}

impl Dav<'_> {
    async fn send(
        &self,
        method: Method,
        url: &reqwest::Url,
        what: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProbeError> {
        let mut request = self
            .client
            .request(method, url.clone())
            .timeout(self.timeout.max(CLEANUP_TIME));
        if let Some(c) = self.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = build(request)
            .send()
            .await
            .map_err(|e| request_error(what, &e, self.timeout))?;
        match response.status() {
            StatusCode::UNAUTHORIZED => Err(ProbeError::new(
                Reason::AuthFailed,
                match self.credentials {
                    Some(c) => format!(
                        "{what}: the server refused the credentials of {}",
                        c.username
                    ),
                    None => {
                        format!("{what}: the server asks for credentials and the client has none")
                    }
                },
            )),
            StatusCode::FORBIDDEN => Err(ProbeError::new(
                Reason::AuthFailed,
                format!("{what}: forbidden (the user may not write to the share)"),
            )),
            _ => Ok(response),
        }
    }

    async fn delete(&self, url: &reqwest::Url) -> Result<(), ProbeError> {
        let response = self.send(Method::DELETE, url, "DELETE", |r| r).await?;
        expect(
            "DELETE of the probe file",
            response.status(),
            &[
                StatusCode::NO_CONTENT,
                StatusCode::OK,
                StatusCode::NOT_FOUND,
            ],
        )
    }
}

fn expect(what: &str, got: StatusCode, want: &[StatusCode]) -> Result<(), ProbeError> {
    if want.contains(&got) {
        return Ok(());
    }
    let want = want
        .iter()
        .map(|s| s.as_u16().to_string())
        .collect::<Vec<_>>()
        .join(" or ");
    Err(ProbeError::new(
        Reason::UnexpectedStatus,
        format!("{what} answered {got}, expected {want}"),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::http::{Method as HttpMethod, StatusCode as HttpStatus, Uri};
    use hostrole_config::ClientService;

    use super::*;

    /// How the fake share misbehaves.
    #[derive(Clone, Copy)]
    enum Fault {
        /// GET returns other bytes than were PUT.
        OtherBytes,
        /// PROPFIND does not list the probe.
        NotListed,
    }

    /// A WebDAV server that stores one file and logs every request (method, path).
    async fn fake_share(fault: Fault) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let stored = Arc::new(Mutex::new(Vec::<u8>::new()));
        let seen = log.clone();
        let app = axum::Router::new().fallback(move |method: HttpMethod, uri: Uri, body: Bytes| {
            let (seen, stored) = (seen.clone(), stored.clone());
            async move {
                let path = uri.path().to_string();
                if let Ok(mut log) = seen.lock() {
                    log.push((method.to_string(), path.clone()));
                }
                match (method.as_str(), fault) {
                    ("PUT", _) => {
                        if let Ok(mut s) = stored.lock() {
                            *s = body.to_vec();
                        }
                        (HttpStatus::CREATED, Vec::new())
                    }
                    ("PROPFIND", Fault::NotListed) => {
                        (HttpStatus::MULTI_STATUS, b"<multistatus/>".to_vec())
                    }
                    ("PROPFIND", Fault::OtherBytes) => {
                        let names = seen
                            .lock()
                            .map(|l| {
                                l.iter()
                                    .map(|(_, p)| p.clone())
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .unwrap_or_default();
                        (HttpStatus::MULTI_STATUS, names.into_bytes())
                    }
                    ("GET", _) => (HttpStatus::OK, b"not what was stored".to_vec()),
                    ("DELETE", _) => (HttpStatus::NO_CONTENT, Vec::new()),
                    _ => (HttpStatus::METHOD_NOT_ALLOWED, Vec::new()),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/share"), log)
    }

    fn config(url: &str) -> ClientConfig {
        ClientConfig {
            name: "file-0".into(),
            service: ClientService::File,
            server: "nas".into(),
            target: hostrole_config::ClientTarget::Url(url.into()),
            every_ms: 1000,
            timeout_ms: 5000,
            path: None,
            expect: None,
            credentials_dir: None,
            mail_to: None,
            listen_ms: None,
        }
    }

    async fn run_against(fault: Fault) -> (ProbeError, Vec<(String, String)>) {
        let (url, log) = fake_share(fault).await;
        let context = Context {
            host: "laptop-0".into(),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let error = run(&config(&url), &context, deadline)
            .await
            .expect_err("the fake share misbehaves");
        let log = log.lock().map(|l| l.clone()).unwrap_or_default();
        (error, log)
    }

    #[tokio::test]
    async fn other_bytes_back_are_a_hash_mismatch_and_the_probe_is_still_deleted() {
        let (error, log) = run_against(Fault::OtherBytes).await;
        assert_eq!(error.reason, Reason::HashMismatch, "{error}");
        let methods: Vec<&str> = log.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(methods, ["PUT", "PROPFIND", "GET", "DELETE"]);
        // The base URL is a collection; the probe goes inside it, hidden and named after the host.
        assert_eq!(log[1].1, "/share/");
        assert!(
            log[0].1.starts_with("/share/.hostrole-probe-laptop-0-"),
            "{log:?}"
        );
        assert_eq!(log[3].1, log[0].1, "the probe itself is deleted");
    }

    #[tokio::test]
    async fn a_probe_missing_from_the_listing_is_unexpected_content_and_is_deleted() {
        let (error, log) = run_against(Fault::NotListed).await;
        assert_eq!(error.reason, Reason::UnexpectedContent, "{error}");
        assert!(
            !error.message.contains("hostrole-probe"),
            "stable message: {error}"
        );
        let methods: Vec<&str> = log.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(methods, ["PUT", "PROPFIND", "DELETE"]);
    }
}
