//! SMTP (RFC 5321) for the role's domains, and message submission (RFC 6409) with AUTH PLAIN
//! and LOGIN (RFC 4954).
//!
//! Not an open relay: on the SMTP port only local, existing mailboxes are accepted; foreign
//! domains get `554 5.7.1`, whatever the configuration. The submission port requires AUTH
//! before MAIL; it delivers to local mailboxes directly, and hands recipients in other domains
//! to the outbound queue ([`crate::queue`], delivered by [`crate::outbound`]) when the role has
//! `outbound` set; without it they get `550 5.7.1`. What a user queues counts against the
//! user's own mailbox quota (queued bytes plus the mailbox must fit it), and the queue holds at
//! most [`crate::queue::MAX_MESSAGES`] messages. A message is queued (fsynced, renamed, its
//! envelope written) before the `250`.

pub use hostrole_proto::smtp as parse;

use hostrole_agent_core::metrics::{Outcome, Reason};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use self::parse::{Address, Command, ParseError};
use super::conn::{Conn, ReadError, trim_eol};
use super::quota::Room;
use super::session::{Ending, Limits, LineProtocol, Next, PRE_AUTH_IDLE};
use super::{Protocol, Shared, sasl, time};
use hostrole_agent_core::users::User;

/// Waiting for a command during a transaction or after AUTH (RFC 5321 section 4.5.3.2.7 says
/// at least 5 minutes).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// Waiting for a command on port 25 outside a transaction: a sender that says nothing for a
/// minute gives its slot back (Postfix shortens its 300 s the same way under load).
const SMTP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Waiting for the next line of a message (section 4.5.3.2.5: 3 minutes per data block).
const DATA_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest command line; longer than RFC 5321's 512 for AUTH with a long initial response.
const MAX_COMMAND_LINE: usize = 4096;
/// Longest line inside a message (RFC 5322 allows 998 + CRLF; be lenient, but bounded).
const MAX_DATA_LINE: usize = 64 * 1024;
const MAX_RECIPIENTS: usize = 100;

#[derive(Default)]
struct Transaction {
    from: Option<Option<Address>>,
    /// The size MAIL's SIZE parameter announced.
    size: Option<u64>,
    /// Local mailboxes accepted so far.
    mailboxes: Vec<String>,
    /// Recipients in other domains accepted for the outbound queue (`local@domain`).
    remote: Vec<String>,
}

/// An SMTP or submission session: greeted (`helo`), authenticated (`user`), in a transaction
/// (`tx`).
pub(crate) struct Session {
    conn: Conn,
    shared: Arc<Shared>,
    protocol: Protocol,
    helo: Option<String>,
    esmtp: bool,
    user: Option<User>,
    tx: Transaction,
}

impl Session {
    pub fn new(conn: Conn, shared: Arc<Shared>) -> Session {
        Session {
            protocol: conn.protocol(),
            conn,
            shared,
            helo: None,
            esmtp: false,
            user: None,
            tx: Transaction::default(),
        }
    }
}

impl LineProtocol for Session {
    /// Bad commands before the server hangs up.
    const MAX_ERRORS: usize = 10;
    const MAX_COMMANDS: usize = 1000;

    fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn protocol(&self) -> Protocol {
        self.protocol
    }

    fn authenticated(&self) -> bool {
        self.user.is_some()
    }

    fn limits(&self) -> Limits {
        let timeout = match self.protocol {
            Protocol::Submission if self.user.is_none() => PRE_AUTH_IDLE,
            Protocol::Smtp if self.tx.from.is_none() => SMTP_IDLE_TIMEOUT,
            _ => COMMAND_TIMEOUT,
        };
        Limits {
            max_line: MAX_COMMAND_LINE,
            timeout,
        }
    }

    async fn greet(&mut self) -> std::io::Result<()> {
        let banner = format!("220 {} ESMTP hostrole\r\n", self.shared.hostname);
        self.conn.send(banner.as_bytes()).await
    }

    async fn command(&mut self, line: &[u8], _stop: &CancellationToken) -> std::io::Result<Next> {
        match parse::parse(trim_eol(line)) {
            Ok(command) => self.execute(command).await,
            Err(e) => {
                match e {
                    ParseError::Unknown => {
                        self.reply("UNKNOWN", 500, "5.5.1 command unrecognized")
                            .await?
                    }
                    ParseError::Syntax(why) => {
                        self.reply("SYNTAX", 501, &format!("5.5.4 {why}")).await?
                    }
                    ParseError::BadAddress(why) => self.reply("SYNTAX", 501, why).await?,
                }
                Ok(Next::Bad)
            }
        }
    }

    async fn too_long(&mut self) -> std::io::Result<Option<Next>> {
        self.reply("LONG", 500, "5.5.2 line too long").await?;
        Ok(Some(Next::Bad))
    }

    async fn goodbye(&mut self, why: Ending) -> std::io::Result<()> {
        let text = match why {
            Ending::Stopping => format!("421 4.3.2 {} shutting down\r\n", self.shared.hostname),
            Ending::Timeout => "421 4.4.2 idle too long, closing\r\n".into(),
            Ending::Evicted => "421 4.7.0 too many connections, closing an idle one\r\n".into(),
            Ending::TooManyCommands => "421 4.7.0 too many commands, closing\r\n".into(),
            Ending::TooManyErrors | Ending::TooLong => {
                "421 4.7.0 too many errors, closing\r\n".into()
            }
            Ending::TooManyAuthFailures => "421 4.7.0 too many failed logins, closing\r\n".into(),
        };
        self.conn.send(text.as_bytes()).await
    }
}

impl Session {
    async fn reply(&mut self, verb: &'static str, code: u16, text: &str) -> std::io::Result<()> {
        self.shared.count(self.protocol, verb, outcome(code));
        self.conn
            .write(format!("{code} {text}\r\n").as_bytes())
            .await
    }

    async fn execute(&mut self, command: Command) -> std::io::Result<Next> {
        let verb = command.verb();
        match command {
            Command::Helo(name) | Command::Ehlo(name) => {
                self.esmtp = verb == "EHLO";
                self.helo = Some(name.clone());
                self.tx = Transaction::default();
                if self.esmtp {
                    let mut lines = vec![
                        format!("{} greets {name}", self.shared.hostname),
                        format!("SIZE {}", self.shared.max_message_bytes),
                        "8BITMIME".to_string(),
                        "PIPELINING".to_string(),
                        "ENHANCEDSTATUSCODES".to_string(),
                    ];
                    if self.shared.tls.is_some() && !self.conn.tls {
                        lines.push("STARTTLS".to_string());
                    }
                    if self.protocol == Protocol::Submission && self.auth_allowed() {
                        lines.push("AUTH PLAIN LOGIN".to_string());
                    }
                    let last = lines.len() - 1;
                    let mut text = String::new();
                    for (i, l) in lines.iter().enumerate() {
                        text.push_str(&format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }));
                    }
                    self.shared.count(self.protocol, verb, Outcome::Ok);
                    self.conn.write(text.as_bytes()).await?;
                } else {
                    let text = format!("{} greets {name}", self.shared.hostname);
                    self.reply(verb, 250, &text).await?;
                }
            }
            Command::Mail { from, params } => self.mail(from, params).await?,
            Command::Rcpt { to, .. } => self.rcpt(to).await?,
            Command::Data => return self.data().await,
            Command::Rset => {
                self.tx = Transaction::default();
                self.reply(verb, 250, "2.0.0 Ok").await?;
            }
            Command::Noop => self.reply(verb, 250, "2.0.0 Ok").await?,
            Command::Quit => {
                self.reply(verb, 221, "2.0.0 Bye").await?;
                return Ok(Next::Close);
            }
            Command::Vrfy => {
                self.reply(verb, 252, "2.5.0 Cannot VRFY user; try RCPT")
                    .await?
            }
            Command::Help => self.reply(verb, 214, "2.0.0 See RFC 5321").await?,
            Command::StartTls => return self.start_tls().await,
            Command::Auth { mechanism, initial } => return self.auth(&mechanism, initial).await,
        }
        Ok(Next::Continue)
    }

    /// Passwords travel only over TLS (implicit, or after STARTTLS), unless the configuration
    /// allows them in the clear.
    fn auth_allowed(&self) -> bool {
        self.shared.password_allowed(self.conn.tls)
    }

    async fn start_tls(&mut self) -> std::io::Result<Next> {
        let acceptor = match (&self.shared.tls, self.conn.tls) {
            (Some(a), false) => a.clone(),
            (Some(_), true) => {
                self.reply("STARTTLS", 503, "5.5.1 TLS already active")
                    .await?;
                return Ok(Next::Continue);
            }
            (None, _) => {
                self.reply("STARTTLS", 454, "4.7.0 TLS not available")
                    .await?;
                return Ok(Next::Continue);
            }
        };
        self.reply("STARTTLS", 220, "2.0.0 ready to start TLS")
            .await?;
        if let Err(e) = self.conn.start_tls(&acceptor).await {
            tracing::debug!(error = %e, "TLS handshake failed");
            self.shared.error(self.protocol, Reason::TlsFailed);
            return Ok(Next::Close);
        }
        // RFC 3207 section 4.2: forget everything learnt before TLS.
        self.helo = None;
        self.esmtp = false;
        self.user = None;
        self.tx = Transaction::default();
        Ok(Next::Continue)
    }

    async fn mail(
        &mut self,
        from: Option<Address>,
        params: Vec<(String, Option<String>)>,
    ) -> std::io::Result<()> {
        if self.helo.is_none() {
            return self
                .reply("MAIL", 503, "5.5.1 send HELO or EHLO first")
                .await;
        }
        if self.protocol == Protocol::Submission && self.user.is_none() {
            self.shared.error(self.protocol, Reason::AuthRequired);
            return self
                .reply("MAIL", 530, "5.7.0 authentication required")
                .await;
        }
        if self.tx.from.is_some() {
            return self.reply("MAIL", 503, "5.5.1 nested MAIL command").await;
        }
        if let Some(user) = &self.user
            && self.protocol == Protocol::Submission
            && let Some(refusal) = self.not_owned(user, from.as_ref())
        {
            self.shared.error(self.protocol, Reason::SenderNotOwned);
            return self.reply("MAIL", 553, &refusal).await;
        }
        for (key, value) in &params {
            match (key.as_str(), value.as_deref()) {
                ("SIZE", Some(v)) => match v.parse::<u64>() {
                    Ok(size) if size > self.shared.max_message_bytes => {
                        self.shared.error(self.protocol, Reason::MessageTooBig);
                        return self
                            .reply(
                                "MAIL",
                                552,
                                "5.3.4 message size exceeds fixed maximum message size",
                            )
                            .await;
                    }
                    Ok(size) => self.tx.size = Some(size),
                    Err(_) => return self.reply("MAIL", 501, "5.5.4 malformed SIZE").await,
                },
                ("BODY", Some(v))
                    if v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME") => {}
                ("AUTH", Some(_)) => {} // RFC 4954 section 5: accepted and not passed on.
                _ => {
                    let text = format!("5.5.4 unsupported parameter {key}");
                    return self.reply("MAIL", 555, &text).await;
                }
            }
        }
        self.tx.from = Some(from);
        self.reply("MAIL", 250, "2.1.0 Ok").await
    }

    /// Why `user` may not send as `from` on submission, if they may not: the envelope sender
    /// must be one of their own addresses, `<local>@<a served domain>` where the local part
    /// resolves to their mailbox as delivery resolves it (exact, then lower-case, and
    /// `postmaster` for the postmaster user). The null sender is for bounces, which only the
    /// server sends.
    fn not_owned(&self, user: &User, from: Option<&Address>) -> Option<String> {
        let Some(from) = from else {
            return Some(format!(
                "5.7.1 <>: the null sender is not allowed on submission (user {})",
                user.name
            ));
        };
        let owned = self.shared.is_local_domain(&from.domain)
            && self.shared.mailbox_of(&from.local).as_deref() == Some(user.name.as_str());
        (!owned).then(|| {
            format!(
                "5.7.1 <{}@{}>: sender address not owned by {}",
                from.local, from.domain, user.name
            )
        })
    }

    async fn rcpt(&mut self, to: Address) -> std::io::Result<()> {
        if self.tx.from.is_none() {
            return self.reply("RCPT", 503, "5.5.1 need MAIL before RCPT").await;
        }
        if self.tx.mailboxes.len() + self.tx.remote.len() >= MAX_RECIPIENTS {
            return self.reply("RCPT", 452, "4.5.3 too many recipients").await;
        }
        let whole = format!("<{}@{}>", to.local, to.domain);
        if !self.shared.is_local_domain(&to.domain) {
            // Only an authenticated user (submission) reaches the queue: port 25 never relays.
            if let (Some(user), Some(queue)) = (&self.user, &self.shared.queue) {
                let room = if queue.len() >= super::queue::MAX_MESSAGES {
                    Room::Full
                } else {
                    let queued = queue.queued_bytes(&user.name);
                    let size = self.tx.size.unwrap_or(0);
                    self.shared
                        .quota
                        .room(&user.name, queued.saturating_add(size))
                        .await
                };
                return match room {
                    Room::Fits => {
                        let address = format!("{}@{}", to.local, to.domain);
                        if !self.tx.remote.contains(&address) {
                            self.tx.remote.push(address);
                        }
                        self.reply("RCPT", 250, "2.1.5 Ok, queued for delivery")
                            .await
                    }
                    Room::Full => {
                        self.shared.error(self.protocol, Reason::QuotaExceeded);
                        let text = format!(
                            "4.3.1 {whole}: your mailbox and queued mail fill your quota (or the queue is full)"
                        );
                        self.reply("RCPT", 452, &text).await
                    }
                    Room::TooBig => {
                        self.shared.error(self.protocol, Reason::QuotaExceeded);
                        let text = format!("5.2.2 {whole}: the message does not fit your quota");
                        self.reply("RCPT", 552, &text).await
                    }
                };
            }
            if self.user.is_some() {
                self.shared
                    .error(self.protocol, Reason::OutboundUnavailable);
                let text = format!("5.7.1 {whole}: this host does not send mail to other domains");
                return self.reply("RCPT", 550, &text).await;
            }
            self.shared.error(self.protocol, Reason::RelayDenied);
            let text = format!("5.7.1 {whole}: relay access denied");
            return self.reply("RCPT", 554, &text).await;
        }
        match self.shared.mailbox_of(&to.local) {
            Some(mailbox) => {
                match self
                    .shared
                    .quota
                    .room(&mailbox, self.tx.size.unwrap_or(0))
                    .await
                {
                    Room::Fits => {}
                    Room::Full => {
                        self.shared.error(self.protocol, Reason::QuotaExceeded);
                        let text = format!("4.2.2 {whole}: mailbox full");
                        return self.reply("RCPT", 452, &text).await;
                    }
                    Room::TooBig => {
                        self.shared.error(self.protocol, Reason::QuotaExceeded);
                        let text =
                            format!("5.2.2 {whole}: the message does not fit the mailbox quota");
                        return self.reply("RCPT", 552, &text).await;
                    }
                }
                if !self.tx.mailboxes.contains(&mailbox) {
                    self.tx.mailboxes.push(mailbox);
                }
                self.reply("RCPT", 250, "2.1.5 Ok").await
            }
            None => {
                self.shared.error(self.protocol, Reason::UnknownUser);
                let text = format!("5.1.1 {whole}: no such user here");
                self.reply("RCPT", 550, &text).await
            }
        }
    }

    async fn data(&mut self) -> std::io::Result<Next> {
        if self.tx.from.is_none() {
            self.reply("DATA", 503, "5.5.1 need MAIL before DATA")
                .await?;
            return Ok(Next::Continue);
        }
        if self.tx.mailboxes.is_empty() && self.tx.remote.is_empty() {
            self.reply("DATA", 554, "5.5.1 no valid recipients").await?;
            return Ok(Next::Continue);
        }
        // Local mailboxes get a Maildir draft, other domains a queue draft; both are written.
        let local = match self.tx.mailboxes.first() {
            Some(first) => self.shared.store.draft(first).await.map(Some),
            None => Ok(None),
        };
        let queued = match (&self.shared.queue, self.tx.remote.is_empty()) {
            (Some(queue), false) => queue.draft().await.map(Some).map_err(std::io::Error::other),
            _ => Ok(None),
        };
        let (mut draft, mut queued) = match (local, queued) {
            (Ok(d), Ok(q)) => (d, q),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot start a delivery");
                self.shared.error(self.protocol, Reason::StorageFailed);
                self.reply("DATA", 451, "4.3.0 cannot store the message now")
                    .await?;
                return Ok(Next::Continue);
            }
        };
        self.reply("DATA", 354, "End data with <CR><LF>.<CR><LF>")
            .await?;
        self.conn.flush().await?;

        let from = match &self.tx.from {
            Some(Some(a)) => format!("{}@{}", a.local, a.domain),
            _ => String::new(),
        };
        let with = match (self.esmtp, self.user.is_some()) {
            (true, true) => "ESMTPA",
            (true, false) => "ESMTP",
            _ => "SMTP",
        };
        let trace = format!(
            "Return-Path: <{from}>\r\nReceived: from {} ([{}])\r\n\tby {} (hostrole) with {with};\r\n\t{}\r\n",
            self.helo.as_deref().unwrap_or("unknown"),
            self.conn.peer.ip(),
            self.shared.hostname,
            time::rfc5322(SystemTime::now()),
        );
        let mut failed = write_both(&mut draft, &mut queued, trace.as_bytes()).await;
        let max = self.shared.max_message_bytes;
        let (mut size, mut oversize, mut too_long) = (0u64, false, false);
        let mut line = Vec::new();
        let mut last_crlf = true;
        loop {
            match self
                .conn
                .read_line(&mut line, MAX_DATA_LINE, DATA_TIMEOUT)
                .await
            {
                Ok(()) => {}
                Err(ReadError::TooLong(_)) => {
                    too_long = true;
                    continue;
                }
                Err(ReadError::Timeout | ReadError::Evicted) => {
                    // The draft is dropped: its tmp/ file goes with it.
                    self.shared.error(self.protocol, Reason::Timeout);
                    self.conn
                        .send(b"421 4.4.2 timeout while receiving the message\r\n")
                        .await?;
                    return Ok(Next::Close);
                }
                Err(ReadError::Closed) => {
                    self.shared.error(self.protocol, Reason::DataAborted);
                    return Ok(Next::Close);
                }
                Err(ReadError::Io(e)) => return Err(e),
            }
            // Only CRLF . CRLF ends the data: accepting a bare LF there would let a message
            // smuggle a second one past a relay that reads it differently (SMTP smuggling).
            let after_crlf = std::mem::replace(&mut last_crlf, line.ends_with(b"\r\n"));
            if after_crlf && line == b".\r\n" {
                break;
            }
            let content = line.strip_prefix(b".").unwrap_or(&line);
            size += content.len() as u64;
            if size > max {
                oversize = true;
            }
            if !oversize && !too_long && failed.is_none() {
                failed = write_both(&mut draft, &mut queued, content).await;
            }
        }
        let mailboxes = std::mem::take(&mut self.tx.mailboxes);
        let remote = std::mem::take(&mut self.tx.remote);
        let sender = match &self.tx.from {
            Some(Some(a)) => format!("{}@{}", a.local, a.domain),
            _ => String::new(),
        };
        self.tx = Transaction::default();
        let total = trace.len() as u64 + size;
        if oversize {
            self.shared.error(self.protocol, Reason::MessageTooBig);
            self.reply(
                "DATA",
                552,
                "5.3.4 message size exceeds fixed maximum message size",
            )
            .await?;
        } else if too_long {
            self.shared.error(self.protocol, Reason::LineTooLong);
            let text = format!("5.6.0 a line of the message is longer than {MAX_DATA_LINE} bytes");
            self.reply("DATA", 554, &text).await?;
        } else if let Some(e) = failed {
            tracing::error!(error = %e, "cannot write a message");
            self.shared.error(self.protocol, Reason::StorageFailed);
            self.reply("DATA", 451, "4.3.0 cannot store the message now")
                .await?;
        } else if let Some(full) = self.over_quota(&mailboxes, total).await {
            // The draft is dropped: its tmp/ file goes with it.
            self.shared.error(self.protocol, Reason::QuotaExceeded);
            let text = format!("5.2.2 mailbox of {full} full: the message does not fit its quota");
            self.reply("DATA", 552, &text).await?;
        } else if queued.is_some() && !self.queue_fits(total).await {
            self.shared.error(self.protocol, Reason::QuotaExceeded);
            self.reply(
                "DATA",
                552,
                "5.2.2 your mailbox and queued mail would exceed your quota",
            )
            .await?;
        } else {
            // Local mailboxes first, then the queue; a failure of the second after the first
            // succeeded answers 451, and the client's retry duplicates the local copy (rare: a
            // disk failing between two writes).
            let mut ids = Vec::new();
            let mut result = Ok(());
            if let Some(draft) = draft {
                match self.shared.store.commit(draft, &mailboxes).await {
                    Ok(id) => {
                        self.shared.quota.charge(&mailboxes, total);
                        tracing::info!(role = self.protocol.name(), id, recipients = ?mailboxes, bytes = size, "delivered");
                        ids.push(id);
                    }
                    Err(e) => result = Err(e),
                }
            }
            if let (Ok(()), Some(q), Some(queue)) = (&result, queued, &self.shared.queue) {
                let owner = self.user.as_ref().map(|u| u.name.clone());
                match queue.commit(q, sender, owner, remote.clone()).await {
                    Ok(id) => {
                        tracing::info!(role = self.protocol.name(), id, recipients = ?remote, bytes = size, "queued for delivery");
                        ids.push(id);
                    }
                    Err(e) => result = Err(std::io::Error::other(e)),
                }
            }
            match result {
                Ok(()) => {
                    let text = format!("2.0.0 Ok: queued as {}", ids.join(" "));
                    self.reply("DATA", 250, &text).await?;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot deliver a message");
                    self.shared.error(self.protocol, Reason::StorageFailed);
                    self.reply("DATA", 451, "4.3.0 cannot store the message now")
                        .await?;
                }
            }
        }
        Ok(Next::Continue)
    }

    /// Whether `bytes` more queued by the authenticated user fit the user's quota, with what
    /// the user has queued already.
    async fn queue_fits(&self, bytes: u64) -> bool {
        let (Some(user), Some(queue)) = (&self.user, &self.shared.queue) else {
            return true;
        };
        let queued = queue.queued_bytes(&user.name).saturating_add(bytes);
        self.shared.quota.room(&user.name, queued).await == Room::Fits
    }

    /// The first of `mailboxes` that `bytes` would take over its quota.
    async fn over_quota(&self, mailboxes: &[String], bytes: u64) -> Option<String> {
        for mailbox in mailboxes {
            if self.shared.quota.room(mailbox, bytes).await != Room::Fits {
                return Some(mailbox.clone());
            }
        }
        None
    }

    async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> std::io::Result<Next> {
        if self.protocol != Protocol::Submission {
            return self
                .reply("AUTH", 502, "5.5.1 AUTH is offered on the submission port")
                .await
                .map(|()| Next::Continue);
        }
        if !self.auth_allowed() {
            // RFC 4954 section 6.
            self.shared.error(self.protocol, Reason::TlsRequired);
            let how = if self.shared.tls.is_some() {
                "use STARTTLS first"
            } else {
                "this host has no certificate"
            };
            let text = format!(
                "5.7.11 Encryption required for requested authentication mechanism ({how})"
            );
            return self
                .reply("AUTH", 538, &text)
                .await
                .map(|()| Next::Continue);
        }
        if self.user.is_some() {
            return self
                .reply("AUTH", 503, "5.5.1 already authenticated")
                .await
                .map(|()| Next::Continue);
        }
        if self.tx.from.is_some() {
            return self
                .reply(
                    "AUTH",
                    503,
                    "5.5.1 AUTH not allowed during a mail transaction",
                )
                .await
                .map(|()| Next::Continue);
        }
        let credentials = match mechanism {
            "PLAIN" => {
                let response = match initial {
                    Some(r) if r != "=" => Some(r.into_bytes()),
                    Some(_) => Some(Vec::new()),
                    None => self.challenge("").await?,
                };
                match response {
                    None => {
                        return self
                            .reply("AUTH", 501, "5.0.0 authentication cancelled")
                            .await
                            .map(|()| Next::Continue);
                    }
                    Some(r) => sasl::plain(&r),
                }
            }
            "LOGIN" => {
                let name = match initial {
                    Some(r) => Some(r.into_bytes()),
                    None => self.challenge("VXNlcm5hbWU6").await?,
                };
                let Some(name) = name else {
                    return self
                        .reply("AUTH", 501, "5.0.0 authentication cancelled")
                        .await
                        .map(|()| Next::Continue);
                };
                let Some(password) = self.challenge("UGFzc3dvcmQ6").await? else {
                    return self
                        .reply("AUTH", 501, "5.0.0 authentication cancelled")
                        .await
                        .map(|()| Next::Continue);
                };
                sasl::text(&name).zip(sasl::text(&password))
            }
            _ => {
                return self
                    .reply("AUTH", 504, "5.5.4 unrecognized authentication type")
                    .await
                    .map(|()| Next::Continue);
            }
        };
        let user = match credentials {
            Some((name, password)) => self.shared.verify(self.conn.peer, &name, &password).await,
            None => None,
        };
        match user {
            Some(user) => {
                tracing::info!(
                    role = self.protocol.name(),
                    user = user.name,
                    "authenticated"
                );
                self.user = Some(user);
                self.reply("AUTH", 235, "2.7.0 authentication successful")
                    .await?;
                Ok(Next::Continue)
            }
            None => {
                self.shared.error(self.protocol, Reason::AuthFailed);
                self.reply("AUTH", 535, "5.7.8 authentication credentials invalid")
                    .await?;
                Ok(Next::AuthFailed)
            }
        }
    }

    /// Sends a `334` challenge and reads the answer; `None` when the client cancels with `*`.
    async fn challenge(&mut self, prompt: &str) -> std::io::Result<Option<Vec<u8>>> {
        self.conn
            .send(format!("334 {prompt}\r\n").as_bytes())
            .await?;
        let mut line = Vec::new();
        let timeout = self.limits().timeout;
        match self
            .conn
            .read_line(&mut line, MAX_COMMAND_LINE, timeout)
            .await
        {
            Ok(()) => {
                let answer = trim_eol(&line);
                Ok((answer != b"*").then(|| answer.to_vec()))
            }
            Err(ReadError::Io(e)) => Err(e),
            Err(ReadError::TooLong(_)) => Ok(None),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Writes message bytes to the Maildir draft and the queue draft, whichever exist.
async fn write_both(
    draft: &mut Option<super::store::Draft>,
    queued: &mut Option<super::queue::QueueDraft>,
    bytes: &[u8],
) -> Option<std::io::Error> {
    if let Some(d) = draft
        && let Err(e) = d.write(bytes).await
    {
        return Some(e);
    }
    if let Some(q) = queued
        && let Err(e) = q.write(bytes).await
    {
        return Some(std::io::Error::other(e));
    }
    None
}

/// What an SMTP reply code says about the command: 500–504 mean it could not be read.
fn outcome(code: u16) -> Outcome {
    match code {
        200..=399 => Outcome::Ok,
        500..=504 => Outcome::Malformed,
        _ => Outcome::Rejected,
    }
}
