//! The print client: prints a one-page probe on an IPP printer (RFC 8011) the way a
//! workstation does, waits for the job to finish, and checks the printout.
//!
//! The target is the printer's URI, `ipp://host:port/ipp/print` or `ipps://…` (IPP over HTTP,
//! or HTTPS; port 631 when absent), or the same as `http(s)://…` (a bare `…/` means
//! `/ipp/print`). A run:
//!
//! 1. builds a one-page PDF ([`probe_pdf`]) whose text holds the client's name and a random
//!    nonce, so that every probe, and its SHA-256, differs;
//! 2. sends **Print-Job** (`document-format: application/pdf`, `job-name:
//!    hostrole-probe-<client>`, `requesting-user-name`: the `credentialsDir` user or `hostrole`),
//!    with HTTP Basic authentication when the client has credentials;
//! 3. polls **Get-Job-Attributes** until the job is completed, canceled or aborted (a job still
//!    pending at the deadline is canceled, so that probes do not pile up behind a stuck one);
//! 4. fetches `GET /printouts/<job-id>` (the print role's output tray: the printed document's
//!    bytes) and compares its SHA-256 with the probe's.
//!
//! The `ipp` crate encodes the requests and parses the answers; the HTTP is the clients'
//! reqwest. Bounds against a hostile printer: an IPP answer is read up to [`MAX_IPP_RESPONSE`]
//! bytes, a printout up to [`PRINTOUT_FACTOR`] times the probe's size, the polls are spaced
//! (from [`FIRST_POLL`] to [`MAX_POLL`]), and everything ends at the run's deadline.
//!
//! Reports: `submit` (Print-Job answered), `printing` (from then to the job's end), `printout`
//! (the GET) and `total`; the detail is stable (the job id and timings go to the log and the
//! timings).

use std::io::Cursor;
use std::time::Duration;

use hostrole_config::{ClientConfig, ClientTarget};
use ipp::attribute::IppAttribute;
use ipp::model::{DelimiterTag, IppVersion, Operation};
use ipp::parser::{IppParseError, IppParser};
use ipp::request::IppRequestResponse;
use ipp::value::{IppKeyword, IppMimeMediaType, IppName, IppString, IppValue};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::web::{http_client, request_error};
use super::{CLEANUP_TIME, Credentials, ProbeError, Reason, Success, credentials, random_hex};

/// Longest IPP answer read (a Get-Job-Attributes answer is a few hundred bytes).
pub const MAX_IPP_RESPONSE: usize = 1 << 20;
/// Longest printout read: this many times the probe's size (a printer that converts the PDF
/// has not printed the probe as sent anyway).
pub const PRINTOUT_FACTOR: usize = 4;
/// First wait between two Get-Job-Attributes; doubled up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(50);
const MAX_POLL: Duration = Duration::from_millis(500);
/// Most of a printer's own words (`status-message`, `job-state-message`) shown.
const MAX_SAID: usize = 200;
/// The user named in requests when the client has no credentials.
pub const DEFAULT_USER: &str = "hostrole";
/// The IPP port an `ipp://` or `ipps://` URI without one means.
pub const IPP_PORT: u16 = 631;

/// Where the printer is: its URI in requests and the HTTP URLs the requests go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `ipp://host:port/path` or `ipps://…`: the `printer-uri` of requests.
    pub printer_uri: String,
    /// `http://host:port/path` or `https://…`: where the IPP requests are POSTed.
    pub ipp_url: reqwest::Url,
    /// `http(s)://host:port`: the printer's server (its `/printouts/`).
    pub base: String,
}

/// Reads the target: `ipp://`, `ipps://`, `http://` or `https://` URLs; the IPP schemes mean
/// port 631 when the URL names none, an empty path means `/ipp/print`.
pub(crate) fn endpoint(target: &str) -> Result<Endpoint, ProbeError> {
    let bad = |why: &str| {
        ProbeError::new(
            Reason::Error,
            format!(
                "the target {target:?} {why} (a print client needs the printer's URI, \
                 ipp://host:port/ipp/print or ipps://…)"
            ),
        )
    };
    let (scheme, rest) = target
        .split_once("://")
        .ok_or_else(|| bad("is not a URL"))?;
    let (http, ipp, ipp_scheme) = match scheme.to_ascii_lowercase().as_str() {
        "ipp" => ("http", "ipp", true),
        "ipps" => ("https", "ipps", true),
        "http" => ("http", "ipp", false),
        "https" => ("https", "ipps", false),
        _ => return Err(bad("has a scheme other than ipp, ipps, http or https")),
    };
    let mut url = reqwest::Url::parse(&format!("{http}://{rest}"))
        .map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "holds a login (give the client credentials instead: credentialsDir)",
        ));
    }
    // IPv6 addresses come in brackets.
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => return Err(bad("names no host")),
    };
    if ipp_scheme && url.port().is_none() {
        url.set_port(Some(IPP_PORT))
            .map_err(|()| bad("cannot take a port"))?;
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| bad("has no port"))?;
    if url.path().is_empty() || url.path() == "/" {
        url.set_path("/ipp/print");
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(Endpoint {
        printer_uri: format!("{ipp}://{host}:{port}{}", url.path()),
        base: format!("{http}://{host}:{port}"),
        ipp_url: url,
    })
}

/// A string for a PDF literal: printable ASCII, with `\`, `(` and `)` escaped.
fn pdf_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

/// A one-page PDF 1.4 (A4, Helvetica) reading "hostrole print probe", the client's name and
/// `nonce`: five objects, a classic cross-reference table whose offsets are exact, and a
/// trailer. Small (under 1 KiB for a short name) and valid for any PDF reader.
pub fn probe_pdf(client: &str, nonce: &str) -> Vec<u8> {
    let content = format!(
        "BT /F1 18 Tf 72 760 Td (hostrole print probe) Tj ET\n\
         BT /F1 11 Tf 72 730 Td (client: {}) Tj 0 -16 Td (nonce: {}) Tj ET\n",
        pdf_text(client),
        pdf_text(nonce)
    );
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] \
         /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>"
            .to_string(),
        format!(
            "<< /Length {} >>\nstream\n{content}endstream",
            content.len()
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_string(),
    ];
    // The second line's high bytes tell transfer programs that the file is binary.
    let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    // Each entry is exactly 20 bytes: 10 digits, space, 5 digits, space, n/f, space, newline.
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// The RFC 8011 (and PWG 5100) keyword of an IPP status code, e.g. `client-error-not-authorized`.
pub fn status_keyword(code: u16) -> Option<&'static str> {
    Some(match code {
        0x0000 => "successful-ok",
        0x0001 => "successful-ok-ignored-or-substituted-attributes",
        0x0002 => "successful-ok-conflicting-attributes",
        0x0003 => "successful-ok-ignored-subscriptions",
        0x0005 => "successful-ok-too-many-events",
        0x0007 => "successful-ok-events-complete",
        0x0400 => "client-error-bad-request",
        0x0401 => "client-error-forbidden",
        0x0402 => "client-error-not-authenticated",
        0x0403 => "client-error-not-authorized",
        0x0404 => "client-error-not-possible",
        0x0405 => "client-error-timeout",
        0x0406 => "client-error-not-found",
        0x0407 => "client-error-gone",
        0x0408 => "client-error-request-entity-too-large",
        0x0409 => "client-error-request-value-too-long",
        0x040A => "client-error-document-format-not-supported",
        0x040B => "client-error-attributes-or-values-not-supported",
        0x040C => "client-error-uri-scheme-not-supported",
        0x040D => "client-error-charset-not-supported",
        0x040E => "client-error-conflicting-attributes",
        0x040F => "client-error-compression-not-supported",
        0x0410 => "client-error-compression-error",
        0x0411 => "client-error-document-format-error",
        0x0412 => "client-error-document-access-error",
        0x0413 => "client-error-attributes-not-settable",
        0x0414 => "client-error-ignored-all-subscriptions",
        0x0415 => "client-error-too-many-subscriptions",
        0x0417 => "client-error-print-support-file-not-found",
        0x0418 => "client-error-document-password-error",
        0x0419 => "client-error-document-permission-error",
        0x041A => "client-error-document-security-error",
        0x041B => "client-error-document-unprintable-error",
        0x041C => "client-error-account-info-needed",
        0x041D => "client-error-account-closed",
        0x041E => "client-error-account-limit-reached",
        0x041F => "client-error-account-authorization-failed",
        0x0420 => "client-error-not-fetchable",
        0x0500 => "server-error-internal-error",
        0x0501 => "server-error-operation-not-supported",
        0x0502 => "server-error-service-unavailable",
        0x0503 => "server-error-version-not-supported",
        0x0504 => "server-error-device-error",
        0x0505 => "server-error-temporary-error",
        0x0506 => "server-error-not-accepting-jobs",
        0x0507 => "server-error-busy",
        0x0508 => "server-error-job-canceled",
        0x0509 => "server-error-multiple-document-jobs-not-supported",
        0x050A => "server-error-printer-is-deactivated",
        0x050B => "server-error-too-many-jobs",
        0x050C => "server-error-too-many-documents",
        _ => return None,
    })
}

/// A status for people: its keyword, else its class and number (`server-error 0x05ff`).
pub fn describe_status(code: u16) -> String {
    match status_keyword(code) {
        Some(k) => k.to_string(),
        None => {
            let class = match code >> 8 {
                0x00 => "successful",
                0x01 => "informational",
                0x02 => "redirection",
                0x04 => "client-error",
                0x05 => "server-error",
                _ => "unknown-status",
            };
            format!("{class} 0x{code:04x}")
        }
    }
}

/// Whether a status is one of the `successful-ok*` ones.
fn is_successful(code: u16) -> bool {
    code < 0x0100
}

/// RFC 8011 job states.
const JOB_PENDING: i32 = 3;
const JOB_PENDING_HELD: i32 = 4;
const JOB_PROCESSING: i32 = 5;
const JOB_PROCESSING_STOPPED: i32 = 6;
const JOB_CANCELED: i32 = 7;
const JOB_ABORTED: i32 = 8;
const JOB_COMPLETED: i32 = 9;

fn job_state_name(state: i32) -> String {
    match state {
        JOB_PENDING => "pending".into(),
        JOB_PENDING_HELD => "pending-held".into(),
        JOB_PROCESSING => "processing".into(),
        JOB_PROCESSING_STOPPED => "processing-stopped".into(),
        JOB_CANCELED => "canceled".into(),
        JOB_ABORTED => "aborted".into(),
        JOB_COMPLETED => "completed".into(),
        other => format!("unknown state {other}"),
    }
}

/// A printer's own words, made safe to show: one line, bounded.
fn said(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    match trimmed.char_indices().nth(MAX_SAID) {
        Some((end, _)) => format!("{}…", &trimmed[..end]),
        None => trimmed.to_string(),
    }
}

/// What went wrong in a run, before it is told as a [`ProbeError`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrintError {
    #[error("{0}")]
    Probe(#[from] ProbeError),
    #[error("cannot encode the {operation} request: {source}")]
    Encode {
        operation: &'static str,
        source: IppParseError,
    },
    #[error("the {operation} answer is not IPP ({why}): is the target an IPP printer?")]
    Malformed {
        operation: &'static str,
        why: String,
    },
    #[error("the {operation} answer is over {limit} bytes: not what a printer answers")]
    TooLarge {
        operation: &'static str,
        limit: usize,
    },
    #[error(
        "{operation} answered {status}{said}: {hint}",
        status = describe_status(*.status),
        said = .message.as_deref().map(|m| format!(" ({m:?})")).unwrap_or_default()
    )]
    Status {
        operation: &'static str,
        status: u16,
        message: Option<String>,
        hint: &'static str,
    },
    #[error("{0}")]
    Missing(String),
    #[error(
        "the printer {state} the job{said}{reasons}: {hint}",
        state = job_state_name(*.state),
        said = .message.as_deref().map(|m| format!(" ({m:?})")).unwrap_or_default(),
        reasons = if .reasons.is_empty() { String::new() } else { format!(", job-state-reasons {}", .reasons.join(", ")) },
        hint = if *.state == JOB_CANCELED { "someone or something canceled it (check the printer's queue)" } else { "check the printer (its log, its output folder, the document format it accepts)" }
    )]
    JobFailed {
        state: i32,
        message: Option<String>,
        reasons: Vec<String>,
    },
}

impl PrintError {
    pub(crate) fn reason(&self) -> Reason {
        match self {
            PrintError::Probe(e) => e.reason,
            PrintError::Encode { .. } => Reason::Error,
            PrintError::Malformed { .. } | PrintError::TooLarge { .. } | PrintError::Missing(_) => {
                Reason::UnexpectedContent
            }
            PrintError::Status { status, .. } => match status {
                0x0401..=0x0403 => Reason::AuthFailed,
                _ => Reason::Refused,
            },
            PrintError::JobFailed { .. } => Reason::JobFailed,
        }
    }
}

impl From<PrintError> for ProbeError {
    fn from(e: PrintError) -> Self {
        match e {
            PrintError::Probe(p) => p,
            other => ProbeError::new(other.reason(), other.to_string()),
        }
    }
}

/// What the client says to a status, for the user.
fn status_hint(status: u16, has_login: bool) -> &'static str {
    match status {
        0x0401 | 0x0403 if has_login => {
            "the printer refused the client's user (check the credentials and the printer's users)"
        }
        0x0401..=0x0403 => "the printer requires a login (give the client credentials)",
        0x040A => "the printer does not accept PDF (application/pdf)",
        0x0406 => "no printer at this URI (check the target's path, e.g. /ipp/print)",
        0x0506 | 0x050A => "the printer is not accepting jobs (it is stopped or deactivated)",
        0x0507 | 0x050B => {
            "the printer's queue is full (too many jobs kept: wait or raise its limit)"
        }
        0x0408 => "the probe is larger than the printer's job size limit",
        _ => "check the printer's log",
    }
}

/// A decoded IPP answer: its status, its operation group's `status-message` and the first job
/// group's attributes.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub request_id: i32,
    pub status_message: Option<String>,
    pub job: Vec<IppAttribute>,
}

impl Answer {
    fn get(&self, name: &str) -> Option<&IppValue> {
        self.job
            .iter()
            .find(|a| a.name().as_str() == name)
            .map(|a| a.value())
    }

    fn integer(&self, name: &str) -> Option<i32> {
        match self.get(name)? {
            IppValue::Integer(i) | IppValue::Enum(i) => Some(*i),
            _ => None,
        }
    }

    fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|v| said(&v.to_string()))
            .filter(|t| !t.is_empty())
    }

    fn keywords(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Some(IppValue::Array(values)) => values.iter().map(|v| said(&v.to_string())).collect(),
            Some(IppValue::NoValue) | None => Vec::new(),
            Some(v) => vec![said(&v.to_string())],
        }
        .into_iter()
        .filter(|k| !k.is_empty() && k != "none")
        .take(8)
        .collect()
    }
}

/// Parses an IPP answer. The `ipp` parser panics on some malformed values (a `textWithLanguage`
/// whose inner length runs past the value); that is caught and told as a malformed answer, so a
/// hostile printer cannot end the client's loop.
pub(crate) fn parse_answer(operation: &'static str, body: Vec<u8>) -> Result<Answer, PrintError> {
    let parsed = std::panic::catch_unwind(move || IppParser::new(Cursor::new(body)).parse_parts());
    let (header, attributes, _) = match parsed {
        Ok(Ok(parts)) => parts,
        Ok(Err(e)) => {
            return Err(PrintError::Malformed {
                operation,
                why: e.to_string(),
            });
        }
        Err(_) => {
            return Err(PrintError::Malformed {
                operation,
                why: "a malformed attribute value".into(),
            });
        }
    };
    let operation_group = attributes
        .groups_of(DelimiterTag::OperationAttributes)
        .next();
    let status_message = operation_group
        .and_then(|g| g.get("status-message"))
        .map(|a| said(&a.value().to_string()))
        .filter(|m| !m.is_empty());
    let job = attributes
        .groups_of(DelimiterTag::JobAttributes)
        .next()
        .map(|g| g.attributes().to_vec())
        .unwrap_or_default();
    Ok(Answer {
        status: header.operation_or_status as u16,
        request_id: header.request_id,
        status_message,
        job,
    })
}

/// The requests of one run: their common attributes and their ids.
struct Requests<'a> {
    printer_uri: &'a str,
    user: &'a str,
    next_id: i32,
}

fn encode_error(operation: &'static str) -> impl Fn(IppParseError) -> PrintError {
    move |source| PrintError::Encode { operation, source }
}

impl Requests<'_> {
    /// A request of `operation` with `attributes-charset`, `attributes-natural-language`,
    /// `printer-uri` and `requesting-user-name`, then `more`, in its operation group.
    fn build(
        &mut self,
        operation: Operation,
        name: &'static str,
        more: Vec<(&'static str, IppValue)>,
    ) -> Result<(i32, Vec<u8>), PrintError> {
        let e = encode_error(name);
        let mut request =
            IppRequestResponse::new(IppVersion::v1_1(), operation, None).map_err(&e)?;
        let id = self.next_id;
        self.next_id += 1;
        request.header_mut().request_id = id;
        let mut attributes = vec![
            (
                "printer-uri",
                IppValue::Uri(IppString::new(self.printer_uri).map_err(&e)?),
            ),
            (
                "requesting-user-name",
                IppValue::NameWithoutLanguage(IppName::new(self.user).map_err(&e)?),
            ),
        ];
        attributes.extend(more);
        for (attribute, value) in attributes {
            request.attributes_mut().add(
                DelimiterTag::OperationAttributes,
                IppAttribute::with_name(attribute, value).map_err(&e)?,
            );
        }
        Ok((id, request.to_bytes().to_vec()))
    }

    fn print_job(&mut self, job_name: &str, document: &[u8]) -> Result<(i32, Vec<u8>), PrintError> {
        let e = encode_error("Print-Job");
        let (id, mut bytes) = self.build(
            Operation::PrintJob,
            "Print-Job",
            vec![
                (
                    "job-name",
                    IppValue::NameWithoutLanguage(IppName::new(job_name).map_err(&e)?),
                ),
                (
                    "document-format",
                    IppValue::MimeMediaType(IppMimeMediaType::new("application/pdf").map_err(&e)?),
                ),
            ],
        )?;
        bytes.extend_from_slice(document);
        Ok((id, bytes))
    }

    fn job_request(
        &mut self,
        operation: Operation,
        name: &'static str,
        job_id: i32,
        more: Vec<(&'static str, IppValue)>,
    ) -> Result<(i32, Vec<u8>), PrintError> {
        let mut attributes = vec![("job-id", IppValue::Integer(job_id))];
        attributes.extend(more);
        self.build(operation, name, attributes)
    }

    fn get_job_attributes(&mut self, job_id: i32) -> Result<(i32, Vec<u8>), PrintError> {
        let e = encode_error("Get-Job-Attributes");
        let requested = [
            "job-id",
            "job-state",
            "job-state-reasons",
            "job-state-message",
        ]
        .into_iter()
        .map(|k| IppKeyword::new(k).map(IppValue::Keyword))
        .collect::<Result<Vec<_>, _>>()
        .map_err(&e)?;
        self.job_request(
            Operation::GetJobAttributes,
            "Get-Job-Attributes",
            job_id,
            vec![("requested-attributes", IppValue::Array(requested))],
        )
    }
}

/// One HTTP exchange's context: the client, the login, the deadline.
struct Http<'a> {
    client: reqwest::Client,
    login: Option<&'a Credentials>,
    deadline: Instant,
    timeout: Duration,
}

impl Http<'_> {
    fn timed_out(&self, what: &str) -> ProbeError {
        ProbeError::new(
            Reason::Timeout,
            format!(
                "{what}: no answer within the timeout of {:?} (check that the printer is up and \
                 not overloaded)",
                self.timeout
            ),
        )
    }

    fn with_login(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.login {
            Some(c) => request.basic_auth(&c.username, Some(&c.password)),
            None => request,
        }
    }

    /// Reads a body of at most `limit` bytes before the deadline; `None` when it is larger.
    async fn body(
        &self,
        what: &str,
        response: &mut reqwest::Response,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, ProbeError> {
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Ok(None);
        }
        let mut body = Vec::new();
        loop {
            let chunk = tokio::time::timeout_at(self.deadline, response.chunk())
                .await
                .map_err(|_| self.timed_out(what))?
                .map_err(|e| request_error(what, &e, self.timeout))?;
            let Some(chunk) = chunk else {
                return Ok(Some(body));
            };
            if body.len() + chunk.len() > limit {
                return Ok(None);
            }
            body.extend_from_slice(&chunk);
        }
    }

    /// POSTs an IPP request and decodes the answer; HTTP refusals are told as such.
    async fn ipp(
        &self,
        url: &reqwest::Url,
        operation: &'static str,
        (id, request): (i32, Vec<u8>),
    ) -> Result<Answer, PrintError> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(self.timed_out(operation).into());
        }
        let send = self
            .with_login(
                self.client
                    .post(url.clone())
                    .header(CONTENT_TYPE, "application/ipp")
                    .timeout(remaining)
                    .body(request),
            )
            .send();
        let mut response = tokio::time::timeout_at(self.deadline, send)
            .await
            .map_err(|_| self.timed_out(operation))?
            .map_err(|e| request_error(operation, &e, self.timeout))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return Err(
                ProbeError::new(Reason::AuthFailed, unauthorized(operation, self.login)).into(),
            );
        }
        if !status.is_success() {
            return Err(ProbeError::new(
                Reason::UnexpectedStatus,
                format!(
                    "{operation} answered HTTP {}, expected 200 (is {} an IPP printer?)",
                    describe_http(status),
                    url.path()
                ),
            )
            .into());
        }
        let body = self
            .body(operation, &mut response, MAX_IPP_RESPONSE)
            .await?
            .ok_or(PrintError::TooLarge {
                operation,
                limit: MAX_IPP_RESPONSE,
            })?;
        let answer = parse_answer(operation, body)?;
        if answer.request_id != id {
            return Err(PrintError::Malformed {
                operation,
                why: format!(
                    "its request-id is {}, the request's {id}",
                    answer.request_id
                ),
            });
        }
        if !is_successful(answer.status) {
            return Err(PrintError::Status {
                operation,
                status: answer.status,
                message: answer.status_message.clone(),
                hint: status_hint(answer.status, self.login.is_some()),
            });
        }
        Ok(answer)
    }
}

fn unauthorized(what: &str, login: Option<&Credentials>) -> String {
    match login {
        Some(c) => format!(
            "{what} answered HTTP 401 Unauthorized: the printer refused the login of {:?} \
             (check the client's credentials and the printer's users)",
            c.username
        ),
        None => format!(
            "{what} answered HTTP 401 Unauthorized: the printer requires a login (give the \
             client credentials)"
        ),
    }
}

fn describe_http(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(r) => format!("{} {r}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

fn size(n: usize) -> String {
    if n < 1024 {
        format!("{n} bytes")
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

pub(crate) async fn run(config: &ClientConfig, deadline: Instant) -> Result<Success, ProbeError> {
    run_inner(config, deadline).await.map_err(ProbeError::from)
}

async fn run_inner(config: &ClientConfig, deadline: Instant) -> Result<Success, PrintError> {
    let timeout = Duration::from_millis(config.timeout_ms);
    let ClientTarget::Url(target) = &config.target else {
        return Err(ProbeError::new(
            Reason::Error,
            "the target is not a URL (a print client needs ipp://host:port/ipp/print)",
        )
        .into());
    };
    let at = endpoint(target)?;
    let login = match &config.credentials_dir {
        Some(dir) => Some(credentials(dir).await?),
        None => None,
    };
    let user = login.as_ref().map_or(DEFAULT_USER, |c| c.username.as_str());
    let http = Http {
        client: http_client()?,
        login: login.as_ref(),
        deadline,
        timeout,
    };
    let probe = probe_pdf(&config.name, &random_hex(8));
    let digest = Sha256::digest(&probe);
    let mut requests = Requests {
        printer_uri: &at.printer_uri,
        user,
        next_id: 1,
    };
    let started = Instant::now();
    let job_name = format!("hostrole-probe-{}", config.name);
    let answer = http
        .ipp(
            &at.ipp_url,
            "Print-Job",
            requests.print_job(&job_name, &probe)?,
        )
        .await?;
    let submitted = started.elapsed();
    let job_id = answer
        .integer("job-id")
        .filter(|&id| id > 0)
        .ok_or_else(|| {
            PrintError::Missing(
                "Print-Job succeeded but its answer has no job-id: is the target an IPP printer?"
                    .into(),
            )
        })?;
    // Poll until the job ends; the Print-Job answer may already say it has.
    let mut state = answer.integer("job-state");
    let mut last = answer;
    let mut wait = FIRST_POLL;
    while !matches!(state, Some(JOB_CANCELED | JOB_ABORTED | JOB_COMPLETED)) {
        if Instant::now() + wait >= deadline {
            let shown = state.map_or_else(|| "of unknown state".to_string(), job_state_name);
            let reasons = last.keywords("job-state-reasons");
            let reasons = if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            };
            cancel(&http, &at, &mut requests, job_id).await;
            return Err(ProbeError::new(
                Reason::Timeout,
                format!(
                    "the job was still {shown}{reasons} at the timeout of {timeout:?} and was \
                     canceled: check that the printer is not stopped or held and that its queue \
                     moves"
                ),
            )
            .into());
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_POLL);
        last = http
            .ipp(
                &at.ipp_url,
                "Get-Job-Attributes",
                requests.get_job_attributes(job_id)?,
            )
            .await?;
        state = last.integer("job-state");
        if state.is_none() {
            return Err(PrintError::Missing(
                "Get-Job-Attributes answered without a job-state".into(),
            ));
        }
    }
    let printed = started.elapsed() - submitted;
    if let Some(s @ (JOB_CANCELED | JOB_ABORTED)) = state {
        return Err(PrintError::JobFailed {
            state: s,
            message: last.text("job-state-message"),
            reasons: last.keywords("job-state-reasons"),
        });
    }
    // The output tray.
    let what = "GET /printouts/<job-id>";
    let url = format!("{}/printouts/{job_id}", at.base);
    let fetch_started = Instant::now();
    let remaining = deadline.saturating_duration_since(Instant::now());
    let send = http
        .with_login(http.client.get(&url).timeout(remaining))
        .send();
    let mut response = tokio::time::timeout_at(deadline, send)
        .await
        .map_err(|_| http.timed_out(what))?
        .map_err(|e| request_error(what, &e, timeout))?;
    match response.status() {
        s if s.is_success() => {}
        StatusCode::NOT_FOUND => {
            return Err(ProbeError::new(
                Reason::PrintoutMissing,
                format!(
                    "the printer completed the job but offers no printout ({what} answered \
                     404 Not Found): it is not a hostrole print role, or it did not write the \
                     job to its output folder (check the folder and the printer's log)"
                ),
            )
            .into());
        }
        StatusCode::UNAUTHORIZED => {
            return Err(ProbeError::new(Reason::AuthFailed, unauthorized(what, http.login)).into());
        }
        s => {
            return Err(ProbeError::new(
                Reason::UnexpectedStatus,
                format!("{what} answered {}, expected 200", describe_http(s)),
            )
            .into());
        }
    }
    let limit = probe.len() * PRINTOUT_FACTOR;
    let Some(printout) = http.body(what, &mut response, limit).await? else {
        return Err(ProbeError::new(
            Reason::HashMismatch,
            format!(
                "the printout is over {} while the probe sent is {}: the printer changed the \
                 document (check its filters and output folder)",
                size(limit),
                size(probe.len())
            ),
        )
        .into());
    };
    let fetched = fetch_started.elapsed();
    if Sha256::digest(&printout) != digest {
        return Err(ProbeError::new(
            Reason::HashMismatch,
            format!(
                "the printout ({}) differs from the probe sent ({}): its SHA-256 does not match \
                 (check what writes to the printer's output folder)",
                size(printout.len()),
                size(probe.len())
            ),
        )
        .into());
    }
    let total = started.elapsed();
    tracing::debug!(
        client = %config.name,
        job_id,
        submit_ms = submitted.as_millis() as u64,
        printing_ms = printed.as_millis() as u64,
        printout_bytes = printout.len(),
        "print client run"
    );
    Ok(Success::new(format!(
        "Print-Job completed; the printout's SHA-256 matches the probe ({})",
        size(probe.len())
    ))
    .timing("submit", submitted)
    .timing("printing", printed)
    .timing("printout", fetched)
    .timing("total", total))
}

/// Cancels a job the run gave up on, within [`CLEANUP_TIME`]; failures are only logged (the
/// run has already failed).
async fn cancel(http: &Http<'_>, at: &Endpoint, requests: &mut Requests<'_>, job_id: i32) {
    let request = match requests.job_request(Operation::CancelJob, "Cancel-Job", job_id, Vec::new())
    {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "cannot encode Cancel-Job");
            return;
        }
    };
    let cleanup = Http {
        client: http.client.clone(),
        login: http.login,
        deadline: Instant::now() + CLEANUP_TIME,
        timeout: CLEANUP_TIME,
    };
    if let Err(e) = cleanup.ipp(&at.ipp_url, "Cancel-Job", request).await {
        tracing::debug!(job_id, error = %e, "Cancel-Job of a probe failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `N 0 obj` at each offset of the cross-reference table, and `startxref` at the table.
    fn check_pdf(pdf: &[u8]) {
        let text = String::from_utf8_lossy(pdf);
        assert!(text.starts_with("%PDF-1.4\n"));
        assert!(text.ends_with("%%EOF\n"));
        let startxref: usize = text
            .rsplit_once("startxref\n")
            .and_then(|(_, rest)| rest.lines().next())
            .and_then(|n| n.parse().ok())
            .expect("startxref");
        assert!(pdf[startxref..].starts_with(b"xref\n0 6\n"), "startxref");
        let table = &pdf[startxref + b"xref\n0 6\n".len()..];
        assert_eq!(&table[..20], b"0000000000 65535 f \n");
        for n in 1..=5 {
            let entry = &table[n * 20..(n + 1) * 20];
            assert!(entry.ends_with(b" 00000 n \n"), "entry {n}");
            let offset: usize = std::str::from_utf8(&entry[..10])
                .expect("digits")
                .parse()
                .expect("offset");
            assert!(
                pdf[offset..].starts_with(format!("{n} 0 obj\n").as_bytes()),
                "object {n} at {offset}"
            );
        }
        // The content stream's /Length is its length.
        let start = text.find("stream\n").expect("stream") + "stream\n".len();
        let end = text.find("endstream").expect("endstream");
        assert!(text.contains(&format!("<< /Length {} >>", end - start)));
    }

    #[test]
    fn the_probe_is_a_valid_one_page_pdf_that_differs_every_run() {
        let a = probe_pdf("print-0", "0123456789abcdef");
        check_pdf(&a);
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("(client: print-0)") && text.contains("(nonce: 0123456789abcdef)"));
        assert!(text.contains("/Count 1"));
        assert!(a.len() < 1024, "{}", a.len());
        let b = probe_pdf("print-0", "fedcba9876543210");
        check_pdf(&b);
        assert_eq!(a.len(), b.len(), "same size for the same name");
        assert_ne!(Sha256::digest(&a), Sha256::digest(&b));
        // Names that need escaping, or are not ASCII, keep the offsets right.
        let odd = probe_pdf("a(b)c\\d é", "00");
        check_pdf(&odd);
        assert!(String::from_utf8_lossy(&odd).contains("(client: a\\(b\\)c\\\\d ?)"));
    }

    /// Where poppler is installed, its reader agrees: one page, no repair needed.
    #[test]
    fn pdfinfo_reads_the_probe_when_installed() {
        let Ok(true) = std::process::Command::new("pdfinfo")
            .arg("-v")
            .output()
            .map(|o| o.status.success())
        else {
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("probe.pdf");
        std::fs::write(&path, probe_pdf("print-0", &random_hex(8))).expect("write");
        let out = std::process::Command::new("pdfinfo")
            .arg(&path)
            .output()
            .expect("pdfinfo");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(
            stdout.contains("Pages:") && stdout.contains(" 1\n"),
            "{stdout}"
        );
        assert!(stderr.trim().is_empty(), "pdfinfo complains: {stderr}");
    }

    #[test]
    fn ipp_uris_become_http_urls_with_port_631() {
        let e = endpoint("ipp://printer.ns.svc/ipp/print").expect("ipp");
        assert_eq!(e.printer_uri, "ipp://printer.ns.svc:631/ipp/print");
        assert_eq!(e.ipp_url.as_str(), "http://printer.ns.svc:631/ipp/print");
        assert_eq!(e.base, "http://printer.ns.svc:631");
        let e = endpoint("ipps://10.0.0.1:8631/ipp/print").expect("ipps");
        assert_eq!(e.printer_uri, "ipps://10.0.0.1:8631/ipp/print");
        assert_eq!(e.ipp_url.as_str(), "https://10.0.0.1:8631/ipp/print");
        let e = endpoint("IPPS://[::1]/ipp/print").expect("ipv6");
        assert_eq!(e.printer_uri, "ipps://[::1]:631/ipp/print");
        assert_eq!(e.ipp_url.as_str(), "https://[::1]:631/ipp/print");
        assert_eq!(e.base, "https://[::1]:631");
        // http(s) keep their own default ports; the printer-uri says them.
        let e = endpoint("http://127.0.0.1:8631/ipp/print").expect("http");
        assert_eq!(e.printer_uri, "ipp://127.0.0.1:8631/ipp/print");
        let e = endpoint("https://p.example/ipp/print").expect("https");
        assert_eq!(e.printer_uri, "ipps://p.example:443/ipp/print");
        // A bare host means the IPP Everywhere path.
        let e = endpoint("ipp://p:9100/").expect("bare");
        assert_eq!(e.printer_uri, "ipp://p:9100/ipp/print");
        let e = endpoint("ipp://p").expect("bare");
        assert_eq!(e.ipp_url.as_str(), "http://p:631/ipp/print");
        for bad in [
            "p:631/ipp/print",
            "irc://p/",
            "ipp://",
            "ipp://u:pw@p/ipp/print",
        ] {
            let e = endpoint(bad).expect_err(bad);
            assert_eq!(e.reason, Reason::Error, "{bad}");
            assert!(e.message.contains("ipp://host:port/ipp/print"), "{e}");
        }
    }

    #[test]
    fn statuses_are_named_by_their_keywords() {
        assert_eq!(describe_status(0x0000), "successful-ok");
        assert_eq!(describe_status(0x0403), "client-error-not-authorized");
        assert_eq!(
            describe_status(0x040A),
            "client-error-document-format-not-supported"
        );
        assert_eq!(describe_status(0x050B), "server-error-too-many-jobs");
        assert_eq!(describe_status(0x05ff), "server-error 0x05ff");
        assert_eq!(describe_status(0x7777), "unknown-status 0x7777");
        assert!(is_successful(0x0001) && !is_successful(0x0400));
        let refused = PrintError::Status {
            operation: "Print-Job",
            status: 0x0507,
            message: Some("Too many jobs".into()),
            hint: status_hint(0x0507, false),
        };
        assert_eq!(refused.reason(), Reason::Refused);
        assert_eq!(
            refused.to_string(),
            "Print-Job answered server-error-busy (\"Too many jobs\"): the printer's queue is \
             full (too many jobs kept: wait or raise its limit)"
        );
        let denied = PrintError::Status {
            operation: "Print-Job",
            status: 0x0403,
            message: None,
            hint: status_hint(0x0403, true),
        };
        assert_eq!(denied.reason(), Reason::AuthFailed);
        assert!(
            denied
                .to_string()
                .starts_with("Print-Job answered client-error-not-authorized:")
        );
    }

    #[test]
    fn aborted_jobs_say_what_the_printer_said() {
        let e = PrintError::JobFailed {
            state: JOB_ABORTED,
            message: Some("Printer on fire".into()),
            reasons: vec!["aborted-by-system".into()],
        };
        let p = ProbeError::from(e);
        assert_eq!(p.reason, Reason::JobFailed);
        assert!(
            p.message.starts_with(
                "the printer aborted the job (\"Printer on fire\"), job-state-reasons aborted-by-system:"
            ),
            "{p}"
        );
    }

    /// A request as the `ipp` crate encodes it reads back with the same attributes.
    #[test]
    fn requests_encode_the_operation_attributes_in_order() {
        let mut requests = Requests {
            printer_uri: "ipp://127.0.0.1:631/ipp/print",
            user: "alice",
            next_id: 7,
        };
        let (id, bytes) = requests
            .print_job("hostrole-probe-print-0", b"%PDF")
            .expect("encode");
        assert_eq!(id, 7);
        assert_eq!(&bytes[..4], &[0x01, 0x01, 0x00, 0x02], "IPP 1.1 Print-Job");
        assert!(
            bytes.ends_with(b"\x03%PDF"),
            "end of attributes, then the document"
        );
        let text = String::from_utf8_lossy(&bytes);
        let order = [
            "attributes-charset",
            "attributes-natural-language",
            "printer-uri",
            "requesting-user-name",
            "job-name",
            "document-format",
        ];
        let positions: Vec<usize> = order
            .iter()
            .map(|n| text.find(n).unwrap_or_else(|| panic!("{n} is sent")))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
        let (id, bytes) = requests.get_job_attributes(42).expect("encode");
        assert_eq!(id, 8);
        let parsed = IppParser::new(Cursor::new(bytes))
            .parse_parts()
            .expect("parses");
        let group = parsed
            .1
            .groups_of(DelimiterTag::OperationAttributes)
            .next()
            .expect("group");
        assert_eq!(
            group.get("job-id").map(|a| a.value().clone()),
            Some(IppValue::Integer(42))
        );
        assert_eq!(
            group
                .get("requested-attributes")
                .map(|a| a.value().to_string()),
            Some("[job-id, job-state, job-state-reasons, job-state-message]".into())
        );
    }

    /// Answers as a printer sends them: a job group; a malformed value is an error, not a panic.
    #[test]
    fn answers_are_parsed_and_malformed_ones_refused() {
        let mut answer = vec![0x01, 0x01, 0x00, 0x00, 0, 0, 0, 9, 0x01];
        let attr = |out: &mut Vec<u8>, tag: u8, name: &str, value: &[u8]| {
            out.push(tag);
            out.extend((name.len() as u16).to_be_bytes());
            out.extend(name.as_bytes());
            out.extend((value.len() as u16).to_be_bytes());
            out.extend(value);
        };
        attr(&mut answer, 0x47, "attributes-charset", b"utf-8");
        attr(&mut answer, 0x48, "attributes-natural-language", b"en");
        answer.push(0x02);
        attr(&mut answer, 0x21, "job-id", &12i32.to_be_bytes());
        attr(&mut answer, 0x23, "job-state", &JOB_ABORTED.to_be_bytes());
        attr(&mut answer, 0x44, "job-state-reasons", b"aborted-by-system");
        attr(&mut answer, 0x44, "", b"job-incoming");
        attr(&mut answer, 0x41, "job-state-message", b"Out of\npaper");
        let mut good = answer.clone();
        good.push(0x03);
        let a = parse_answer("Get-Job-Attributes", good).expect("parses");
        assert_eq!((a.status, a.request_id), (0, 9));
        assert_eq!(a.integer("job-id"), Some(12));
        assert_eq!(a.integer("job-state"), Some(JOB_ABORTED));
        assert_eq!(
            a.keywords("job-state-reasons"),
            vec!["aborted-by-system", "job-incoming"]
        );
        assert_eq!(a.text("job-state-message").as_deref(), Some("Out of paper"));

        // textWithLanguage whose inner length runs past the value (the ipp crate panics here).
        let mut bad = answer.clone();
        attr(
            &mut bad,
            0x35,
            "job-state-message",
            &[0, 2, b'e', b'n', 0xff, 0xff, b'x'],
        );
        bad.push(0x03);
        let e = parse_answer("Get-Job-Attributes", bad).expect_err("malformed");
        assert_eq!(e.reason(), Reason::UnexpectedContent);
        let e = parse_answer("Print-Job", b"<html>".to_vec()).expect_err("not IPP");
        assert!(
            e.to_string().contains("is the target an IPP printer?"),
            "{e}"
        );
    }

    #[test]
    fn a_printers_words_are_one_bounded_line() {
        assert_eq!(said("  a\r\nb  "), "a  b");
        let long = said(&"é".repeat(500));
        assert_eq!(long.chars().count(), MAX_SAID + 1);
    }

    #[tokio::test]
    async fn a_refused_connection_is_connect_failed() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = free.local_addr().expect("addr");
        drop(free);
        let config = ClientConfig {
            name: "print-0".into(),
            service: hostrole_config::ClientService::Print,
            server: "printer".into(),
            target: ClientTarget::Url(format!("ipp://{addr}/ipp/print")),
            every_ms: 1000,
            timeout_ms: 5000,
            path: None,
            expect: None,
            credentials_dir: None,
            mail_to: None,
            listen_ms: None,
        };
        let e = run(&config, Instant::now() + Duration::from_secs(5))
            .await
            .expect_err("nobody listens");
        assert_eq!(e.reason, Reason::ConnectFailed, "{e}");
        assert!(e.message.starts_with("Print-Job: cannot connect"), "{e}");
    }
}
