//! The web client: `GET <target><path>`, checks the status and (optionally) the body.

use std::time::Duration;

use hostrole_config::{ClientConfig, ClientTarget};
use reqwest::StatusCode;
use tokio::time::Instant;

use super::{ProbeError, Reason, Success, chain, timed_out};

/// Most of the body read to look for `expect.contains`.
const MAX_BODY: usize = 4 << 20;

/// The HTTP client every web and file run uses: no connection reuse (each run measures a fresh
/// connection, as a visitor's first request would), no proxy from the environment. Built once:
/// loading the system's root certificates takes tens of milliseconds. Each request carries the
/// run's own timeout.
pub(crate) fn http_client() -> Result<reqwest::Client, ProbeError> {
    static CLIENT: std::sync::OnceLock<Result<reqwest::Client, String>> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .no_proxy()
                .user_agent(concat!("hostrole-agent/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| chain(&e))
        })
        .clone()
        .map_err(|e| ProbeError::new(Reason::Error, format!("cannot build an HTTP client: {e}")))
}

/// Classifies a failed request.
pub(crate) fn request_error(what: &str, e: &reqwest::Error, timeout: Duration) -> ProbeError {
    if e.is_timeout() {
        timed_out(timeout)
    } else if e.is_connect() || super::is_connect_error(e) {
        ProbeError::new(
            Reason::ConnectFailed,
            format!("{what}: cannot connect: {}", chain(e)),
        )
    } else {
        ProbeError::new(Reason::Error, format!("{what}: {}", chain(e)))
    }
}

/// The URL of the target joined with the client's path.
pub(crate) fn target_url(config: &ClientConfig, path: &str) -> Result<reqwest::Url, ProbeError> {
    let ClientTarget::Url(base) = &config.target else {
        return Err(ProbeError::new(
            Reason::Error,
            "the target is not a URL (a web or file client needs one)",
        ));
    };
    let base = reqwest::Url::parse(base).map_err(|e| {
        ProbeError::new(
            Reason::Error,
            format!("the target {base:?} is not a URL: {e}"),
        )
    })?;
    base.join(path.trim_start_matches('/')).map_err(|e| {
        ProbeError::new(
            Reason::Error,
            format!("cannot join {path:?} to {base}: {e}"),
        )
    })
}

pub(crate) async fn run(config: &ClientConfig, deadline: Instant) -> Result<Success, ProbeError> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    let path = config.path.as_deref().unwrap_or("/");
    // The target is a base URL: `http://h:8080/` with path `/status` → `http://h:8080/status`.
    let url = if path == "/" {
        target_url(config, "")?
    } else {
        target_url(config, path)?
    };
    let client = http_client()?;
    let started = Instant::now();
    let mut response = client
        .get(url.clone())
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| request_error(&format!("GET {path}"), &e, timeout))?;
    let first_byte = started.elapsed();
    let status = response.status();
    let expect = config.expect.clone().unwrap_or_default();
    let status_ok = match expect.status {
        Some(want) => status.as_u16() == want,
        None => status.is_success(),
    };
    if !status_ok {
        let want = expect
            .status
            .map_or_else(|| "a 2xx status".to_string(), |s| s.to_string());
        return Err(ProbeError::new(
            Reason::UnexpectedStatus,
            format!("GET {path} answered {}, expected {want}", describe(status)),
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| request_error(&format!("GET {path} (body)"), &e, timeout))?
    {
        if body.len() < MAX_BODY {
            let room = MAX_BODY - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }
    let total = started.elapsed();
    if let Some(want) = &expect.contains
        && !String::from_utf8_lossy(&body).contains(want.as_str())
    {
        return Err(ProbeError::new(
            Reason::UnexpectedContent,
            format!(
                "GET {path} answered {} without {want:?} in the body",
                describe(status)
            ),
        ));
    }
    tracing::debug!(
        client = %config.name,
        first_byte_ms = first_byte.as_millis() as u64,
        total_ms = total.as_millis() as u64,
        bytes = body.len(),
        "web client run"
    );
    Ok(
        Success::new(format!("GET {path} answered {}", describe(status)))
            .timing("firstByte", first_byte)
            .timing("total", total),
    )
}

fn describe(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(r) => format!("{} {r}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use hostrole_config::ClientService;

    use super::*;

    #[tokio::test]
    async fn a_server_that_accepts_but_never_answers_is_a_timeout() {
        // The kernel accepts connections into the backlog; nobody ever answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("addr");
        let config = ClientConfig {
            name: "web-0".into(),
            service: ClientService::Web,
            server: "slow".into(),
            target: ClientTarget::Url(format!("http://{addr}/")),
            every_ms: 1000,
            timeout_ms: 300,
            path: None,
            expect: None,
            credentials_dir: None,
            mail_to: None,
            listen_ms: None,
        };
        let started = Instant::now();
        let error = run(&config, started + Duration::from_millis(300))
            .await
            .expect_err("no answer");
        assert_eq!(error.reason, Reason::Timeout, "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(silent);
    }
}
