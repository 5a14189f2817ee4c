//! IPP requests: reading the message off the HTTP body, the RFC 8011 request checks, each
//! operation, and streaming a job's document into the spool and out to the output folder.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use hostrole_agent_core::metrics::{Direction, Reason};
use hostrole_agent_core::net::ClientKey;
use http::{StatusCode, header};
use tokio::io::AsyncWriteExt;

use crate::attrs::{self, op, status};
use crate::document::{self, Format, MAGIC_LEN};
use crate::jobs::{self, Full, Job, State as JobState};
use crate::wire::{self, Attribute, Group, Message, Value, WireError, group, tag};
use crate::{MAX_JOB_NAME_CHARS, MAX_USER_CHARS, Outcome, ROLE, Shared};

/// How long a job made by Create-Job waits for its document before it is aborted (CUPS waits
/// `MultipleOperationTimeout`, 900 s by default; a client sends the document right after).
const INCOMING_TIMEOUT_SECS: u64 = 300;

/// How long a request's attribute section may take to arrive.
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

type BodyStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, axum::Error>> + Send>>;

/// An IPP answer before encoding.
struct Reply {
    status: u16,
    message: Option<String>,
    unsupported: Vec<Attribute>,
    groups: Vec<Group>,
}

impl Reply {
    fn ok() -> Reply {
        Reply {
            status: status::OK,
            message: None,
            unsupported: Vec::new(),
            groups: Vec::new(),
        }
    }
    fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply {
            status,
            message: Some(message.into()),
            unsupported: Vec::new(),
            groups: Vec::new(),
        }
    }
}

fn respond(version: (u8, u8), request_id: i32, reply: Reply) -> Response {
    let mut operation = Group::new(group::OPERATION);
    operation.push(
        "attributes-charset",
        Value::Bytes(tag::CHARSET, b"utf-8".to_vec()),
    );
    operation.push(
        "attributes-natural-language",
        Value::Bytes(tag::LANGUAGE, b"en".to_vec()),
    );
    if let Some(m) = &reply.message {
        operation.push("status-message", Value::text(m));
    }
    let mut groups = vec![operation];
    if !reply.unsupported.is_empty() {
        groups.push(Group {
            tag: group::UNSUPPORTED,
            attributes: reply.unsupported,
        });
    }
    groups.extend(reply.groups);
    let bytes = wire::encode(&Message {
        version,
        code: reply.status,
        request_id,
        groups,
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/ipp")],
        bytes,
    )
        .into_response()
}

/// Reads the message of an IPP request: the decoded message and the document bytes read past
/// it, or the answer to send when it cannot be read.
async fn read_message(body: &mut BodyStream) -> Result<(Message, Vec<u8>), Reply> {
    let mut buf: Vec<u8> = Vec::new();
    // Decode again only once the buffer doubled (or the body ended): a client sending one byte
    // at a time costs O(n), not O(n²).
    let mut next_try = 512usize;
    let mut ended = false;
    loop {
        if ended || buf.len() >= next_try || buf.len() >= wire::MAX_HEAD {
            match wire::decode(&buf) {
                Ok((message, used)) => return Ok((message, buf.split_off(used))),
                Err(WireError::Truncated) if !ended && buf.len() < wire::MAX_HEAD => {
                    next_try = buf.len().saturating_mul(2).max(512);
                }
                Err(WireError::Truncated) => {
                    return Err(Reply::error(
                        status::BAD_REQUEST,
                        "the IPP message is truncated",
                    ));
                }
                Err(WireError::TooLarge) => {
                    return Err(Reply::error(
                        status::TOO_LARGE,
                        format!(
                            "the attributes of a request may take at most {} bytes",
                            wire::MAX_HEAD
                        ),
                    ));
                }
                Err(e) => return Err(Reply::error(status::BAD_REQUEST, e.to_string())),
            }
        }
        match body.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            Some(Err(_)) => {
                return Err(Reply::error(
                    status::BAD_REQUEST,
                    "the request body could not be read",
                ));
            }
            None => ended = true,
        }
    }
}

/// `POST /ipp/print`.
pub async fn ipp(shared: &Arc<Shared>, request: Request) -> Response {
    let is_ipp = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/ipp"))
        });
    if !is_ipp {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an IPP request is sent as application/ipp\n",
        )
            .into_response();
    }
    let client = request.extensions().get::<ClientKey>().copied();
    let (parts, body) = request.into_parts();
    let mut body: BodyStream = Box::pin(body.into_data_stream());
    // Attributes are buffered before any login is checked: a bounded number at once, each
    // within a time.
    let place = match shared.reads.enter(client).await {
        Ok(place) => place,
        Err(busy) => {
            shared.metrics.error(ROLE, Reason::Busy);
            let why = match busy {
                crate::reads::Busy::Client => "this address sends too many requests at once",
                crate::reads::Busy::All => "the printer is reading too many requests",
            };
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                format!("{why}; try again in a moment\n"),
            )
                .into_response();
        }
    };
    let read = tokio::time::timeout(HEAD_TIMEOUT, read_message(&mut body)).await;
    drop(place);
    let read = read.unwrap_or_else(|_| {
        Err(Reply::error(
            status::BAD_REQUEST,
            format!(
                "the request's attributes did not arrive within {} s",
                HEAD_TIMEOUT.as_secs()
            ),
        ))
    });
    let (message, rest) = match read {
        Ok(m) => m,
        Err(reply) => {
            if reply.status == status::TOO_LARGE {
                shared.metrics.error(ROLE, Reason::BodyTooLarge);
            }
            return respond((1, 1), 0, reply);
        }
    };
    let version = if (1..=2).contains(&message.version.0) {
        message.version
    } else {
        (1, 1)
    };
    let id = message.request_id;
    if let Err(reply) = check_request(&message) {
        return respond(version, id, reply);
    }
    let authority = crate::authority(shared, &parts.headers);
    let scheme = if shared.tls { "ipps" } else { "ipp" };
    let ctx = Context {
        shared: shared.clone(),
        printer_uri: format!("{scheme}://{authority}/ipp/print"),
        more_info: format!(
            "{}://{authority}/",
            if shared.tls { "https" } else { "http" }
        ),
        user: None,
        client,
    };
    let mut ctx = ctx;
    if message.code != op::GET_PRINTER_ATTRIBUTES {
        match crate::authenticate(shared, &parts.headers, client).await {
            Ok(user) => ctx.user = user,
            Err(refused) => return refused,
        }
    }
    let reply = ctx.operation(&message, rest, body).await;
    respond(version, id, reply)
}

/// RFC 8011 section 4.1: version, request id, the operation attributes' group and order, no
/// attribute twice in a group, a charset the printer speaks.
fn check_request(m: &Message) -> Result<(), Reply> {
    if !(1..=2).contains(&m.version.0) {
        return Err(Reply::error(
            status::VERSION_NOT_SUPPORTED,
            "IPP 1.x and 2.x are supported",
        ));
    }
    if m.request_id <= 0 {
        return Err(Reply::error(
            status::BAD_REQUEST,
            "the request-id must be positive",
        ));
    }
    let Some(operation) = m.groups.first().filter(|g| g.tag == group::OPERATION) else {
        return Err(Reply::error(
            status::BAD_REQUEST,
            "the operation attributes come first",
        ));
    };
    let mut seen_tags = BTreeSet::new();
    for g in &m.groups {
        if !seen_tags.insert(g.tag) && g.tag == group::OPERATION {
            return Err(Reply::error(
                status::BAD_REQUEST,
                "the operation attributes appear twice",
            ));
        }
        let mut names = BTreeSet::new();
        for a in &g.attributes {
            if !names.insert(a.name.as_str()) {
                return Err(Reply::error(
                    status::BAD_REQUEST,
                    format!("the attribute {} appears twice", a.name),
                ));
            }
        }
    }
    let first = operation.attributes.first();
    let second = operation.attributes.get(1);
    let single = |a: Option<&Attribute>, name: &str, t: u8| {
        a.filter(|a| a.name == name && a.values.len() == 1 && a.values[0].tag() == t)
            .and_then(|a| a.values[0].as_str())
            .map(str::to_ascii_lowercase)
    };
    let Some(charset) = single(first, "attributes-charset", tag::CHARSET) else {
        return Err(Reply::error(
            status::BAD_REQUEST,
            "attributes-charset must be the first operation attribute",
        ));
    };
    if single(second, "attributes-natural-language", tag::LANGUAGE).is_none() {
        return Err(Reply::error(
            status::BAD_REQUEST,
            "attributes-natural-language must be the second operation attribute",
        ));
    }
    if charset != "utf-8" && charset != "us-ascii" {
        let mut reply = Reply::error(status::CHARSET_NOT_SUPPORTED, "the charset is utf-8");
        reply.unsupported.push(Attribute::new(
            "attributes-charset",
            Value::Bytes(tag::CHARSET, charset.into_bytes()),
        ));
        return Err(reply);
    }
    Ok(())
}

/// One request's view of the printer.
struct Context {
    shared: Arc<Shared>,
    printer_uri: String,
    more_info: String,
    /// The authenticated user, with a users file.
    user: Option<String>,
    /// The client's address (its /64 for IPv6).
    client: Option<ClientKey>,
}

fn op_attr<'a>(m: &'a Message, name: &str) -> Option<&'a Attribute> {
    m.groups.first().and_then(|g| g.get(name))
}

fn op_str<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    op_attr(m, name)
        .and_then(Attribute::first)
        .and_then(Value::as_str)
}

fn op_lossy(m: &Message, name: &str) -> Option<String> {
    match op_attr(m, name).and_then(Attribute::first)? {
        Value::Bytes(_, b) | Value::WithLanguage(_, _, b) => {
            Some(String::from_utf8_lossy(b).into_owned())
        }
        _ => None,
    }
}

fn job_group(m: &Message) -> Option<&Group> {
    m.groups.iter().find(|g| g.tag == group::JOB)
}

fn requested(m: &Message) -> Option<BTreeSet<String>> {
    op_attr(m, "requested-attributes").map(|a| {
        a.values
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    })
}

/// What the request-independent checks of a job creation found.
struct NewJob {
    name: String,
    declared: String,
    format: Option<Format>,
    unsupported: Vec<Attribute>,
}

impl Context {
    async fn operation(&self, m: &Message, rest: Vec<u8>, body: BodyStream) -> Reply {
        let target_ok = op_attr(m, "printer-uri").is_some()
            || (op_attr(m, "job-uri").is_some()
                && matches!(
                    m.code,
                    op::SEND_DOCUMENT | op::CANCEL_JOB | op::GET_JOB_ATTRIBUTES | op::CLOSE_JOB
                ));
        if !target_ok {
            return Reply::error(status::BAD_REQUEST, "printer-uri is missing");
        }
        match m.code {
            op::GET_PRINTER_ATTRIBUTES => self.get_printer_attributes(m).await,
            op::PRINT_JOB => self.print_job(m, rest, body).await,
            op::VALIDATE_JOB => match self.new_job(m) {
                Ok(job) if job.unsupported.is_empty() => Reply::ok(),
                Ok(job) => {
                    let mut reply = Reply::ok();
                    reply.status = status::OK_IGNORED;
                    reply.unsupported = job.unsupported;
                    reply
                }
                Err(reply) => reply,
            },
            op::CREATE_JOB => self.create_job(m).await,
            op::SEND_DOCUMENT => self.send_document(m, rest, body).await,
            op::CANCEL_JOB => self.cancel_job(m).await,
            op::CANCEL_MY_JOBS => self.cancel_my_jobs(m).await,
            op::CLOSE_JOB => self.close_job(m).await,
            op::GET_JOB_ATTRIBUTES => self.get_job_attributes(m).await,
            op::GET_JOBS => self.get_jobs(m).await,
            op::IDENTIFY_PRINTER => {
                tracing::info!(role = ROLE, printer = %self.shared.name, "Identify-Printer: here I am");
                Reply::ok()
            }
            _ => Reply::error(
                status::OPERATION_NOT_SUPPORTED,
                "the printer does not support this operation",
            ),
        }
    }

    /// The user a request acts for.
    fn user(&self, m: &Message) -> String {
        if let Some(u) = &self.user {
            return u.clone();
        }
        op_lossy(m, "requesting-user-name")
            .map(|u| document::clean_text(&u, MAX_USER_CHARS))
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "anonymous".to_string())
    }

    /// Whether the request's user may act on (or see the details of) `job`.
    fn owns(&self, job: &Job) -> bool {
        self.user.as_ref().is_none_or(|u| *u == job.user)
    }

    /// The checks of Print-Job, Validate-Job and Create-Job.
    fn new_job(&self, m: &Message) -> Result<NewJob, Reply> {
        let declared = op_str(m, "document-format")
            .unwrap_or(document::AUTO)
            .to_ascii_lowercase();
        let Ok(format) = Format::of_mime(&declared) else {
            let mut reply = Reply::error(
                status::FORMAT_NOT_SUPPORTED,
                format!("the printer takes {}", document::SUPPORTED.join(", ")),
            );
            reply
                .unsupported
                .push(Attribute::new("document-format", Value::mime(&declared)));
            return Err(reply);
        };
        if let Some(c) = op_str(m, "compression")
            && c != "none"
        {
            let mut reply = Reply::error(
                status::COMPRESSION_NOT_SUPPORTED,
                "documents are sent uncompressed",
            );
            reply
                .unsupported
                .push(Attribute::new("compression", Value::keyword(c)));
            return Err(reply);
        }
        let unsupported = attrs::unsupported_template(job_group(m));
        let fidelity = matches!(
            op_attr(m, "ipp-attribute-fidelity").and_then(Attribute::first),
            Some(Value::Bool(true))
        );
        if fidelity && !unsupported.is_empty() {
            let mut reply = Reply::error(
                status::ATTRIBUTES_NOT_SUPPORTED,
                "some job attributes are not supported",
            );
            reply.unsupported = unsupported;
            return Err(reply);
        }
        let name = op_lossy(m, "job-name")
            .or_else(|| op_lossy(m, "document-name"))
            .map(|n| document::clean_text(&n, MAX_JOB_NAME_CHARS))
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "Untitled".to_string());
        Ok(NewJob {
            name,
            declared,
            format,
            unsupported,
        })
    }

    /// A job's status attributes, as job creation answers them.
    fn created(&self, job: &Job) -> Group {
        let names: BTreeSet<String> = [
            "job-id",
            "job-uri",
            "job-state",
            "job-state-reasons",
            "job-state-message",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        attrs::job(job, &self.printer_uri, jobs::now(), Some(&names), true)
    }

    /// Who sends the request, for the cap on unfinished jobs per sender: the user with a
    /// users file, else the client's address (a `requesting-user-name` is anyone's to claim).
    fn origin(&self) -> Option<String> {
        match (&self.user, &self.client) {
            (Some(user), _) => Some(format!("user {user}")),
            (None, Some(client)) => Some(format!("address {client:?}")),
            (None, None) => None,
        }
    }

    /// Adds a job; the answer to send when the queue is full (or this sender holds its share
    /// of it) or cannot be saved.
    async fn add_job(&self, m: &Message, new: &NewJob, state: JobState) -> Result<i32, Reply> {
        let mut queue = self.shared.queue.lock().await;
        let expired = queue.expire_incoming(jobs::now().saturating_sub(INCOMING_TIMEOUT_SECS));
        for id in &expired {
            tracing::info!(
                role = ROLE,
                job = id,
                "job aborted: no document after Create-Job"
            );
            self.shared.print_metrics.job(Outcome::Aborted);
        }
        let origin = self.origin();
        if let Some(origin) = &origin {
            let (held, limit) = (queue.unfinished_from(origin), queue.per_origin());
            if held >= limit {
                self.shared.print_metrics.job(Outcome::Refused);
                self.shared.metrics.error(ROLE, Reason::Busy);
                return Err(Reply::error(
                    status::TOO_MANY_JOBS,
                    format!(
                        "you have {held} unfinished jobs, the most one sender may have at once (a quarter of maxJobs); send more once they finish"
                    ),
                ));
            }
        }
        let id = match queue.create(
            new.name.clone(),
            self.user(m),
            new.declared.clone(),
            state,
            origin,
        ) {
            Ok(id) => id,
            Err(Full) => {
                self.shared.print_metrics.job(Outcome::Refused);
                self.shared.metrics.error(ROLE, Reason::Busy);
                return Err(Reply::error(
                    status::TOO_MANY_JOBS,
                    "the queue is full of unfinished jobs",
                ));
            }
        };
        if let Err(e) = save(&queue).await {
            tracing::error!(role = ROLE, error = %e, "cannot save the job list");
            queue.finish(id, JobState::Aborted, "aborted-by-system", e.to_string());
            return Err(Reply::error(
                status::INTERNAL_ERROR,
                "the job list cannot be saved",
            ));
        }
        Ok(id)
    }

    async fn print_job(&self, m: &Message, rest: Vec<u8>, body: BodyStream) -> Reply {
        let new = match self.new_job(m) {
            Ok(n) => n,
            Err(reply) => return reply,
        };
        let id = match self.add_job(m, &new, JobState::Processing).await {
            Ok(id) => id,
            Err(reply) => return reply,
        };
        let outcome = receive(&self.shared, id, new.format, rest, body).await;
        self.after_receive(id, outcome, new.unsupported).await
    }

    async fn create_job(&self, m: &Message) -> Reply {
        let new = match self.new_job(m) {
            Ok(n) => n,
            Err(reply) => return reply,
        };
        let id = match self.add_job(m, &new, JobState::Pending).await {
            Ok(id) => id,
            Err(reply) => return reply,
        };
        let queue = self.shared.queue.lock().await;
        let mut reply = Reply::ok();
        if !new.unsupported.is_empty() {
            reply.status = status::OK_IGNORED;
            reply.unsupported = new.unsupported;
        }
        if let Some(job) = queue.get(id) {
            reply.groups.push(self.created(job));
        }
        reply
    }

    /// The job a job operation names (`job-id`, or `job-uri`), when it is listed.
    fn job_id(&self, m: &Message) -> Result<i32, Reply> {
        let id = match op_attr(m, "job-id").and_then(Attribute::first) {
            Some(Value::Int(tag::INTEGER, id)) => Some(*id),
            Some(_) => None,
            None => op_str(m, "job-uri")
                .and_then(|u| u.rsplit('/').next())
                .and_then(|id| id.parse().ok()),
        };
        id.ok_or_else(|| Reply::error(status::BAD_REQUEST, "job-id is missing"))
    }

    /// The job of a job operation, checked for existence and ownership.
    async fn owned_job(&self, m: &Message) -> Result<Job, Reply> {
        let id = self.job_id(m)?;
        let queue = self.shared.queue.lock().await;
        let job = queue
            .get(id)
            .ok_or_else(|| Reply::error(status::NOT_FOUND, format!("no job {id}")))?;
        if !self.owns(job) {
            self.shared.metrics.error(ROLE, Reason::Forbidden);
            return Err(Reply::error(
                status::NOT_AUTHORIZED,
                "the job is another user's",
            ));
        }
        Ok(job.clone())
    }

    async fn send_document(&self, m: &Message, rest: Vec<u8>, mut body: BodyStream) -> Reply {
        let job = match self.owned_job(m).await {
            Ok(j) => j,
            Err(r) => return r,
        };
        let last = match op_attr(m, "last-document").and_then(Attribute::first) {
            Some(Value::Bool(b)) => *b,
            _ => {
                return Reply::error(status::BAD_REQUEST, "last-document is missing");
            }
        };
        let declared = op_str(m, "document-format")
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| job.declared_format.clone());
        let Ok(format) = Format::of_mime(&declared) else {
            let mut reply = Reply::error(status::FORMAT_NOT_SUPPORTED, "unsupported format");
            reply
                .unsupported
                .push(Attribute::new("document-format", Value::mime(&declared)));
            return reply;
        };
        if let Some(c) = op_str(m, "compression")
            && c != "none"
        {
            return Reply::error(
                status::COMPRESSION_NOT_SUPPORTED,
                "documents are sent uncompressed",
            );
        }
        // Whether any document data came (a last Send-Document may carry none).
        let mut rest = rest;
        while rest.is_empty() {
            match body.next().await {
                Some(Ok(chunk)) => rest.extend_from_slice(&chunk),
                Some(Err(_)) => return Reply::error(status::BAD_REQUEST, "the body was cut"),
                None => break,
            }
        }
        {
            let mut queue = self.shared.queue.lock().await;
            let Some(current) = queue.get_mut(job.id) else {
                return Reply::error(status::NOT_FOUND, "the job is gone");
            };
            if current.state != JobState::Pending {
                return if rest.is_empty() && current.state.finished() {
                    Reply::error(status::NOT_POSSIBLE, "the job is finished")
                } else {
                    Reply::error(
                        status::MULTIPLE_DOCUMENTS_NOT_SUPPORTED,
                        "a job holds one document",
                    )
                };
            }
            if rest.is_empty() {
                if !last {
                    return Reply::ok();
                }
                queue.finish(
                    job.id,
                    JobState::Aborted,
                    "aborted-by-system",
                    "the job was closed without a document".to_string(),
                );
                self.shared.print_metrics.job(Outcome::Aborted);
                let _ = save(&queue).await;
                let mut reply = Reply::ok();
                if let Some(j) = queue.get(job.id) {
                    reply.groups.push(self.created(j));
                }
                return reply;
            }
            current.state = JobState::Processing;
            current.reason = "job-printing".to_string();
            current.processing = Some(jobs::now());
            current.declared_format = declared;
            let _ = save(&queue).await;
        }
        let outcome = receive(&self.shared, job.id, format, rest, body).await;
        self.after_receive(job.id, outcome, Vec::new()).await
    }

    /// The answer to a request that carried a job's document.
    async fn after_receive(
        &self,
        id: i32,
        outcome: Received,
        unsupported: Vec<Attribute>,
    ) -> Reply {
        let queue = self.shared.queue.lock().await;
        let mut reply = match outcome {
            Received::Printed | Received::Canceled => Reply::ok(),
            Received::TooLarge => Reply::error(
                status::TOO_LARGE,
                format!(
                    "a document may take at most {} bytes",
                    self.shared.max_job_bytes
                ),
            ),
            Received::Refused(message) => Reply::error(status::FORMAT_ERROR, message),
            Received::Failed(message) => Reply::error(status::INTERNAL_ERROR, message),
            // Someone may make room: a client may try again later.
            Received::NoRoom(message) => Reply::error(status::TEMPORARY_ERROR, message),
            Received::Cut => Reply::error(status::BAD_REQUEST, "the document was cut short"),
        };
        if reply.status == status::OK && !unsupported.is_empty() {
            reply.status = status::OK_IGNORED;
            reply.unsupported = unsupported;
        }
        if let Some(job) = queue.get(id) {
            reply.groups.push(self.created(job));
        }
        reply
    }

    async fn cancel_job(&self, m: &Message) -> Reply {
        let job = match self.owned_job(m).await {
            Ok(j) => j,
            Err(r) => return r,
        };
        let mut queue = self.shared.queue.lock().await;
        match queue.get(job.id).map(|j| j.state) {
            Some(state) if state.finished() => {
                Reply::error(status::NOT_POSSIBLE, "the job is already finished")
            }
            Some(_) => {
                let who = self.user(m);
                queue.finish(
                    job.id,
                    JobState::Canceled,
                    "job-canceled-by-user",
                    format!("canceled by {who}"),
                );
                self.shared.print_metrics.job(Outcome::Canceled);
                let spool = queue.spool_path(job.id);
                let _ = save(&queue).await;
                drop(queue);
                // A document still arriving is removed by its receiver when it sees the state.
                let _ = tokio::fs::remove_file(spool).await;
                Reply::ok()
            }
            None => Reply::error(status::NOT_FOUND, "no such job"),
        }
    }

    async fn cancel_my_jobs(&self, m: &Message) -> Reply {
        let who = self.user(m);
        let only: Option<BTreeSet<i32>> =
            op_attr(m, "job-ids").map(|a| a.values.iter().filter_map(Value::as_int).collect());
        let mut queue = self.shared.queue.lock().await;
        let ids: Vec<i32> = queue
            .jobs()
            .iter()
            .filter(|j| !j.state.finished() && j.user == who)
            .filter(|j| only.as_ref().is_none_or(|o| o.contains(&j.id)))
            .map(|j| j.id)
            .collect();
        for id in &ids {
            queue.finish(
                *id,
                JobState::Canceled,
                "job-canceled-by-user",
                format!("canceled by {who}"),
            );
            self.shared.print_metrics.job(Outcome::Canceled);
            let _ = tokio::fs::remove_file(queue.spool_path(*id)).await;
        }
        let _ = save(&queue).await;
        Reply::ok()
    }

    async fn close_job(&self, m: &Message) -> Reply {
        let job = match self.owned_job(m).await {
            Ok(j) => j,
            Err(r) => return r,
        };
        if job.state == JobState::Pending {
            let mut queue = self.shared.queue.lock().await;
            queue.finish(
                job.id,
                JobState::Aborted,
                "aborted-by-system",
                "the job was closed without a document".to_string(),
            );
            self.shared.print_metrics.job(Outcome::Aborted);
            let _ = save(&queue).await;
        }
        Reply::ok()
    }

    async fn get_job_attributes(&self, m: &Message) -> Reply {
        let Ok(id) = self.job_id(m) else {
            return Reply::error(status::BAD_REQUEST, "job-id is missing");
        };
        let queue = self.shared.queue.lock().await;
        let Some(job) = queue.get(id) else {
            return Reply::error(status::NOT_FOUND, format!("no job {id}"));
        };
        let mut reply = Reply::ok();
        reply.groups.push(attrs::job(
            job,
            &self.printer_uri,
            jobs::now(),
            requested(m).as_ref(),
            self.owns(job),
        ));
        reply
    }

    async fn get_jobs(&self, m: &Message) -> Reply {
        let which = op_str(m, "which-jobs").unwrap_or("not-completed");
        let ids: Option<BTreeSet<i32>> =
            op_attr(m, "job-ids").map(|a| a.values.iter().filter_map(Value::as_int).collect());
        let finished = match which {
            _ if ids.is_some() => None,
            "completed" => Some(true),
            "not-completed" => Some(false),
            "all" => None,
            other => {
                let mut reply = Reply::error(
                    status::ATTRIBUTES_NOT_SUPPORTED,
                    "which-jobs is completed or not-completed",
                );
                reply
                    .unsupported
                    .push(Attribute::new("which-jobs", Value::keyword(other)));
                return reply;
            }
        };
        let limit = match op_attr(m, "limit").and_then(Attribute::first) {
            Some(Value::Int(_, n)) if *n > 0 => *n as usize,
            Some(_) => {
                let mut reply = Reply::error(status::ATTRIBUTES_NOT_SUPPORTED, "limit is positive");
                reply
                    .unsupported
                    .push(Attribute::new("limit", Value::OutOfBand(tag::UNSUPPORTED)));
                return reply;
            }
            None => usize::MAX,
        };
        let mine = matches!(
            op_attr(m, "my-jobs").and_then(Attribute::first),
            Some(Value::Bool(true))
        );
        let who = self.user(m);
        let requested = requested(m).unwrap_or_else(|| {
            ["job-id", "job-uri"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        let queue = self.shared.queue.lock().await;
        let now = jobs::now();
        let mut reply = Reply::ok();
        // Newest first, as CUPS lists them.
        for job in queue
            .jobs()
            .iter()
            .rev()
            .filter(|j| finished.is_none_or(|f| j.state.finished() == f))
            .filter(|j| ids.as_ref().is_none_or(|i| i.contains(&j.id)))
            .filter(|j| !mine || j.user == who)
            .take(limit)
        {
            reply.groups.push(attrs::job(
                job,
                &self.printer_uri,
                now,
                Some(&requested),
                self.owns(job),
            ));
        }
        reply
    }

    async fn get_printer_attributes(&self, m: &Message) -> Reply {
        if let Some(f) = op_str(m, "document-format")
            && Format::of_mime(f).is_err()
        {
            let mut reply = Reply::error(status::FORMAT_NOT_SUPPORTED, "unsupported format");
            reply
                .unsupported
                .push(Attribute::new("document-format", Value::mime(f)));
            return reply;
        }
        let queued = self.shared.queue.lock().await.queued();
        let state = attrs::PrinterState {
            name: &self.shared.name,
            location: &self.shared.location,
            info: &self.shared.info,
            uuid: &self.shared.uuid,
            uri: self.printer_uri.clone(),
            more_info: self.more_info.clone(),
            tls: self.shared.tls,
            users: self.shared.users.is_some(),
            queued,
            accepting: true,
            now: jobs::now(),
            started: self.shared.started,
            max_job_bytes: self.shared.max_job_bytes,
        };
        let mut reply = Reply::ok();
        reply.groups.push(Group {
            tag: group::PRINTER,
            attributes: attrs::select_printer(attrs::printer(&state), requested(m).as_ref()),
        });
        reply
    }
}

/// Writes the job list (the caller holds the queue's lock, so saves happen in order).
async fn save(queue: &jobs::Queue) -> Result<(), jobs::QueueError> {
    let dir = queue.dir().to_path_buf();
    let bytes = queue.snapshot();
    tokio::task::spawn_blocking(move || jobs::save(&dir, &bytes))
        .await
        .unwrap_or_else(|e| {
            Err(jobs::QueueError::Io {
                path: PathBuf::from(jobs::LIST),
                source: std::io::Error::other(e),
            })
        })
}

/// How receiving and printing a document went.
enum Received {
    Printed,
    /// The job was canceled while its document arrived.
    Canceled,
    TooLarge,
    /// Not the declared format, or no format the printer takes: the message says which.
    Refused(String),
    /// The body ended with an error.
    Cut,
    /// The spool or the output folder failed.
    Failed(String),
    /// The printout would take the share it goes to past its quota.
    NoRoom(String),
}

/// Aborts a job whose document did not make it, unless it is already finished; removes its
/// spooled document. Also runs (from [`Incoming`]'s drop) when the connection goes away
/// mid-document and the request's future is dropped.
async fn abort(shared: &Shared, id: i32, reason: &str, message: String) {
    let mut queue = shared.queue.lock().await;
    let spool = queue.spool_path(id);
    let _ = tokio::fs::remove_file(&spool).await;
    if queue.get(id).is_some_and(|j| !j.state.finished()) {
        tracing::info!(role = ROLE, job = id, %message, "job aborted");
        queue.finish(id, JobState::Aborted, reason, message);
        shared.print_metrics.job(Outcome::Aborted);
        if let Err(e) = save(&queue).await {
            tracing::error!(role = ROLE, error = %e, "cannot save the job list");
        }
    }
}

/// A document being received: if the request is dropped before [`Incoming::done`], the job is
/// aborted and the partial spool file removed.
struct Incoming {
    shared: Arc<Shared>,
    id: i32,
    armed: bool,
}

impl Incoming {
    fn done(mut self) {
        self.armed = false;
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (shared, id) = (self.shared.clone(), self.id);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                abort(
                    &shared,
                    id,
                    "aborted-by-system",
                    "the connection closed before the document arrived".to_string(),
                )
                .await;
            });
        }
    }
}

/// Receives job `id`'s document (`first` and then the rest of `body`) into the spool, checking
/// its size and format as it arrives, then prints it.
async fn receive(
    shared: &Arc<Shared>,
    id: i32,
    declared: Option<Format>,
    first: Vec<u8>,
    mut body: BodyStream,
) -> Received {
    let guard = Incoming {
        shared: shared.clone(),
        id,
        armed: true,
    };
    let spooled = spool(shared, id, declared, first, &mut body).await;
    // The document arrived whole: from here the job is printed to its end in a task of its
    // own, so a client that goes away now (a reset HTTP/2 stream drops this future) leaves
    // neither a temporary file nor a printout its job does not know.
    guard.done();
    match spooled {
        Ok(spooled) => {
            let shared = shared.clone();
            tokio::spawn(async move {
                let outcome = print(shared.clone(), id, spooled).await;
                settle(&shared, id, &outcome).await;
                outcome
            })
            .await
            .unwrap_or_else(|e| Received::Failed(format!("printing stopped: {e}")))
        }
        Err(outcome) => {
            settle(shared, id, &outcome).await;
            outcome
        }
    }
}

/// Aborts job `id` when its document did not make it to a printout, saying why.
async fn settle(shared: &Shared, id: i32, outcome: &Received) {
    match outcome {
        Received::Printed | Received::Canceled => {}
        Received::TooLarge => {
            shared.metrics.error(ROLE, Reason::UploadTooLarge);
            abort(
                shared,
                id,
                "aborted-by-system",
                format!("the document is larger than {} bytes", shared.max_job_bytes),
            )
            .await;
        }
        Received::Refused(message) => {
            abort(shared, id, "document-format-error", message.clone()).await;
        }
        Received::Cut => {
            abort(
                shared,
                id,
                "aborted-by-system",
                "the document was cut short".to_string(),
            )
            .await;
        }
        Received::Failed(message) => {
            shared.metrics.error(ROLE, Reason::StorageFailed);
            abort(shared, id, "aborted-by-system", message.clone()).await;
        }
        Received::NoRoom(message) => {
            shared.metrics.error(ROLE, Reason::QuotaExceeded);
            abort(shared, id, "aborted-by-system", message.clone()).await;
        }
    }
}

fn describe(head: &[u8]) -> String {
    match Format::sniff(head) {
        Some(f) => format!("a {} document", f.mime()),
        None if head.is_empty() => "empty".to_string(),
        None => "in no format the printer takes (PDF, PWG raster, JPEG)".to_string(),
    }
}

/// A document received whole into the spool.
struct Spooled {
    path: PathBuf,
    bytes: u64,
    format: Format,
}

/// Receives job `id`'s document into the spool, checking its size and format as it arrives.
async fn spool(
    shared: &Arc<Shared>,
    id: i32,
    declared: Option<Format>,
    first: Vec<u8>,
    body: &mut BodyStream,
) -> Result<Spooled, Received> {
    let spool = shared.queue.lock().await.spool_path(id);
    let mut file = match tokio::fs::File::create(&spool).await {
        Ok(f) => f,
        Err(e) => return Err(Received::Failed(format!("the spool folder: {e}"))),
    };
    let mut head: Vec<u8> = Vec::with_capacity(MAGIC_LEN);
    let mut format: Option<Format> = None;
    let mut total: u64 = 0;
    let mut pending = Some(Bytes::from(first));
    loop {
        let chunk = match pending.take() {
            Some(c) => c,
            None => match body.next().await {
                Some(Ok(c)) => c,
                Some(Err(_)) => return Err(Received::Cut),
                None => break,
            },
        };
        if chunk.is_empty() {
            continue;
        }
        total += chunk.len() as u64;
        shared
            .metrics
            .moved(ROLE, Direction::In, chunk.len() as u64);
        if total > shared.max_job_bytes {
            return Err(Received::TooLarge);
        }
        if format.is_none() && head.len() < MAGIC_LEN {
            let need = MAGIC_LEN - head.len();
            head.extend_from_slice(&chunk[..need.min(chunk.len())]);
            if head.len() >= MAGIC_LEN {
                match check_format(declared, &head) {
                    Ok(f) => format = Some(f),
                    Err(message) => return Err(Received::Refused(message)),
                }
            }
        }
        if let Err(e) = file.write_all(&chunk).await {
            return Err(Received::Failed(format!("the spool folder: {e}")));
        }
    }
    let format = match format {
        Some(f) => f,
        None => match check_format(declared, &head) {
            Ok(f) => f,
            Err(message) => return Err(Received::Refused(message)),
        },
    };
    if let Err(e) = async {
        file.flush().await?;
        file.sync_all().await
    }
    .await
    {
        return Err(Received::Failed(format!("the spool folder: {e}")));
    }
    drop(file);
    Ok(Spooled {
        path: spool,
        bytes: total,
        format,
    })
}

/// Prints job `id`'s spooled document: writes it whole into the output folder (within the
/// share's quota, one printout at a time) and completes the job, unless it was canceled
/// meanwhile.
async fn print(shared: Arc<Shared>, id: i32, spooled: Spooled) -> Received {
    let Spooled {
        path: spool,
        bytes: total,
        format,
    } = spooled;
    // Printing: the job may have been canceled while the document arrived.
    let printout = {
        let mut queue = shared.queue.lock().await;
        let Some(job) = queue.get_mut(id) else {
            let _ = tokio::fs::remove_file(&spool).await;
            return Received::Canceled;
        };
        if job.state.finished() {
            let _ = tokio::fs::remove_file(&spool).await;
            return Received::Canceled;
        }
        job.bytes = total;
        job.format = Some(format);
        document::printout_name(id, &job.name, format)
    };
    let _printing = shared.printing.lock().await;
    if let Some(quota) = &shared.output_quota {
        let root = quota.share_root.clone();
        let used = tokio::task::spawn_blocking(move || {
            hostrole_agent_core::fsutil::tree_bytes(&root, None)
        })
        .await
        .unwrap_or(u64::MAX);
        if used.saturating_add(total) > quota.quota_bytes {
            let _ = tokio::fs::remove_file(&spool).await;
            return Received::NoRoom(format!(
                "the share the printouts go to is full: {used} of its {} bytes are used and the printout takes {total}; delete files from it, then print again",
                quota.quota_bytes
            ));
        }
    }
    let source = match tokio::fs::File::open(&spool).await {
        Ok(f) => f,
        Err(e) => return Received::Failed(format!("the spool folder: {e}")),
    };
    let written = match tokio::fs::create_dir_all(&shared.output_dir).await {
        Ok(()) => document::write_printout(source, &shared.output_dir, &printout).await,
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&spool).await;
    match written {
        Ok((n, printout)) => {
            shared.print_metrics.printed_bytes.inc_by(n);
            if let Some(quota) = &shared.output_quota {
                // The file role's count of the share, until its next walk, includes it.
                hostrole_agent_core::fsutil::tree_usage(&quota.share_root).grew(n, 0);
            }
            let mut queue = shared.queue.lock().await;
            match queue.get_mut(id) {
                Some(job) if !job.state.finished() => job.printout = Some(printout.clone()),
                _ => {
                    // Canceled (or forgotten) while it was written: no job shows it.
                    let _ = tokio::fs::remove_file(shared.output_dir.join(&printout)).await;
                    return Received::Canceled;
                }
            }
            queue.finish(
                id,
                JobState::Completed,
                "job-completed-successfully",
                format!("printed to {printout}"),
            );
            shared.print_metrics.job(Outcome::Completed);
            if let Err(e) = save(&queue).await {
                tracing::error!(role = ROLE, error = %e, "cannot save the job list");
            }
            tracing::info!(role = ROLE, job = id, %printout, bytes = n, "printed");
            Received::Printed
        }
        Err(e) => Received::Failed(format!("the output folder: {e}")),
    }
}

/// The format of a document from its first bytes: the declared one when they match it, the
/// detected one for `application/octet-stream`; else why not.
fn check_format(declared: Option<Format>, head: &[u8]) -> Result<Format, String> {
    match (declared, Format::sniff(head)) {
        (Some(d), Some(s)) if d == s => Ok(d),
        (None, Some(s)) => Ok(s),
        (Some(d), _) => Err(format!(
            "the document was declared {} but is {}",
            d.mime(),
            describe(head)
        )),
        (None, None) => Err(format!("the document is {}", describe(head))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(groups: Vec<Group>) -> Message {
        Message {
            version: (2, 0),
            code: op::GET_PRINTER_ATTRIBUTES,
            request_id: 1,
            groups,
        }
    }

    fn op_group(attrs: &[(&str, Value)]) -> Group {
        Group {
            tag: group::OPERATION,
            attributes: attrs
                .iter()
                .map(|(n, v)| Attribute::new(n, v.clone()))
                .collect(),
        }
    }

    #[test]
    fn rfc_8011_request_checks() {
        let cs = (
            "attributes-charset",
            Value::Bytes(tag::CHARSET, b"utf-8".to_vec()),
        );
        let nl = (
            "attributes-natural-language",
            Value::Bytes(tag::LANGUAGE, b"en".to_vec()),
        );
        let uri = ("printer-uri", Value::uri("ipp://x/ipp/print"));
        let ok = request(vec![op_group(&[cs.clone(), nl.clone(), uri.clone()])]);
        assert!(check_request(&ok).is_ok());
        let code = |m: &Message| check_request(m).err().map(|r| r.status);
        let mut m = ok.clone();
        m.version = (3, 0);
        assert_eq!(code(&m), Some(status::VERSION_NOT_SUPPORTED));
        let mut m = ok.clone();
        m.request_id = 0;
        assert_eq!(code(&m), Some(status::BAD_REQUEST));
        let swapped = request(vec![op_group(&[nl.clone(), cs.clone(), uri.clone()])]);
        assert_eq!(code(&swapped), Some(status::BAD_REQUEST));
        let twice = request(vec![op_group(&[
            cs.clone(),
            nl.clone(),
            uri.clone(),
            uri.clone(),
        ])]);
        assert_eq!(code(&twice), Some(status::BAD_REQUEST));
        assert_eq!(code(&request(vec![])), Some(status::BAD_REQUEST));
        let latin = request(vec![op_group(&[
            (
                "attributes-charset",
                Value::Bytes(tag::CHARSET, b"iso-8859-1".to_vec()),
            ),
            nl.clone(),
        ])]);
        assert_eq!(code(&latin), Some(status::CHARSET_NOT_SUPPORTED));
        let two_ops = request(vec![
            op_group(&[cs.clone(), nl.clone()]),
            op_group(&[cs, nl]),
        ]);
        assert_eq!(code(&two_ops), Some(status::BAD_REQUEST));
    }

    #[test]
    fn declared_formats_must_match_the_bytes() {
        assert_eq!(
            check_format(Some(Format::Pdf), b"%PDF-1.4"),
            Ok(Format::Pdf)
        );
        assert_eq!(check_format(None, b"RaS2PwgR"), Ok(Format::PwgRaster));
        let refused = check_format(Some(Format::Pdf), &[0xFF, 0xD8, 0xFF, 0xE0]);
        assert!(refused.is_err_and(|m| m.contains("image/jpeg")));
        assert!(check_format(None, b"hello world").is_err());
        assert!(check_format(Some(Format::Jpeg), b"").is_err());
    }
}
