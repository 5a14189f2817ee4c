//! POP3 (RFC 1939) with CAPA (RFC 2449), UIDL and TOP, over a user's Maildir (`new/` and
//! `cur/`). Deletions are applied at QUIT only; a session that ends otherwise deletes nothing.
//! A maildrop is locked by one POP3 session at a time.

pub use hostrole_proto::pop3 as parse;

use hostrole_agent_core::metrics::{Outcome, Reason};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use self::parse::Command;
use super::conn::{Conn, trim_eol};
use super::session::{Ending, Limits, LineProtocol, Next, PRE_AUTH_IDLE};
use super::store::Message;
use super::{Protocol, Shared};

/// RFC 1939 section 3: an inactivity timer of at least 10 minutes (after login; before it,
/// [`PRE_AUTH_IDLE`]).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
const MAX_LINE: usize = 1024;

/// The maildrop of a logged-in session, locked against other POP3 sessions.
struct Mailbox {
    user: String,
    read_only: bool,
    messages: Vec<Message>,
    deleted: Vec<bool>,
    _lock: tokio::sync::OwnedMutexGuard<()>,
}

impl Mailbox {
    /// The index of message `n` (1-based) unless it is deleted or does not exist.
    fn live(&self, n: u32) -> Option<usize> {
        let i = (n as usize).checked_sub(1)?;
        (i < self.messages.len() && !self.deleted[i]).then_some(i)
    }
}

/// RFC 1939's states: AUTHORIZATION (with the name of a USER awaiting PASS), then TRANSACTION
/// on a locked maildrop. UPDATE is QUIT's work.
enum State {
    Authorization { user: Option<String> },
    Transaction(Mailbox),
}

pub(crate) struct Session {
    conn: Conn,
    shared: Arc<Shared>,
    state: State,
}

impl Session {
    pub fn new(conn: Conn, shared: Arc<Shared>) -> Session {
        Session {
            conn,
            shared,
            state: State::Authorization { user: None },
        }
    }
}

impl LineProtocol for Session {
    const MAX_ERRORS: usize = 10;
    const MAX_COMMANDS: usize = 10_000;

    fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn protocol(&self) -> Protocol {
        Protocol::Pop3
    }

    fn authenticated(&self) -> bool {
        matches!(self.state, State::Transaction(_))
    }

    fn limits(&self) -> Limits {
        Limits {
            max_line: MAX_LINE,
            timeout: if self.authenticated() {
                IDLE_TIMEOUT
            } else {
                PRE_AUTH_IDLE
            },
        }
    }

    async fn greet(&mut self) -> Io<()> {
        let text = format!("+OK {} POP3 ready\r\n", self.shared.hostname);
        self.conn.send(text.as_bytes()).await
    }

    async fn command(&mut self, line: &[u8], _stop: &CancellationToken) -> Io<Next> {
        let command = match parse::parse(trim_eol(line)) {
            Ok(c) => c,
            Err(e) => {
                self.err("UNKNOWN", e.0).await?;
                return Ok(Next::Bad);
            }
        };
        let verb = command.verb();
        match command {
            Command::Capa => self.capa(verb).await.map(|()| Next::Continue),
            Command::Stls => self.stls(verb).await,
            Command::Quit => self.quit(verb).await,
            command => match &mut self.state {
                State::Authorization { .. } => self.authorization(verb, command).await,
                State::Transaction(_) => self.transaction(verb, command).await,
            },
        }
    }

    async fn too_long(&mut self) -> Io<Option<Next>> {
        self.err("LONG", "line too long").await?;
        Ok(Some(Next::Bad))
    }

    async fn goodbye(&mut self, why: Ending) -> Io<()> {
        // Nothing is deleted: the session did not reach QUIT.
        let text: &[u8] = match why {
            Ending::Stopping => b"-ERR server shutting down\r\n",
            Ending::Timeout => b"-ERR idle too long, closing\r\n",
            Ending::Evicted => b"-ERR [SYS/TEMP] too many connections, closing an idle one\r\n",
            Ending::TooManyCommands => b"-ERR too many commands\r\n",
            Ending::TooManyErrors | Ending::TooLong => b"-ERR too many errors\r\n",
            Ending::TooManyAuthFailures => b"-ERR [AUTH] too many failed logins\r\n",
        };
        self.conn.send(text).await
    }
}

type Io<T> = std::io::Result<T>;

impl Session {
    async fn ok(&mut self, verb: &'static str, text: &str) -> Io<()> {
        ok(&mut self.conn, &self.shared, verb, text).await
    }

    async fn err(&mut self, verb: &'static str, text: &str) -> Io<()> {
        err(&mut self.conn, &self.shared, verb, text).await
    }

    async fn capa(&mut self, verb: &'static str) -> Io<()> {
        let mut text = String::from("+OK capability list follows\r\n");
        if self.shared.tls.is_some() && !self.conn.tls {
            text.push_str("STLS\r\n");
        }
        if self.shared.password_allowed(self.conn.tls) {
            text.push_str("USER\r\n");
        }
        text.push_str(
            "UIDL\r\nTOP\r\nPIPELINING\r\nRESP-CODES\r\nIMPLEMENTATION hostrole\r\n.\r\n",
        );
        self.ok(verb, &text).await
    }

    async fn stls(&mut self, verb: &'static str) -> Io<Next> {
        let logged_in = self.authenticated();
        match (&self.shared.tls, self.conn.tls, logged_in) {
            (Some(acceptor), false, false) => {
                let acceptor = acceptor.clone();
                self.ok(verb, "+OK begin TLS negotiation\r\n").await?;
                if let Err(e) = self.conn.start_tls(&acceptor).await {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    self.shared.error(Protocol::Pop3, Reason::TlsFailed);
                    return Ok(Next::Close);
                }
                self.state = State::Authorization { user: None };
            }
            (None, _, _) => self.err(verb, "TLS is not available").await?,
            _ => self.err(verb, "STLS only once, before login").await?,
        }
        Ok(Next::Continue)
    }

    /// UPDATE: the deletions are applied, then the session ends.
    async fn quit(&mut self, verb: &'static str) -> Io<Next> {
        let state = std::mem::replace(&mut self.state, State::Authorization { user: None });
        if let State::Transaction(mb) = state {
            let mut failed = false;
            for (m, deleted) in mb.messages.iter().zip(&mb.deleted) {
                if *deleted && let Err(e) = self.shared.store.remove(m) {
                    tracing::error!(error = %e, user = mb.user, "cannot delete a message");
                    failed = true;
                }
            }
            if failed {
                self.shared.error(Protocol::Pop3, Reason::StorageFailed);
                self.err(verb, "some deleted messages not removed").await?;
                return Ok(Next::Close);
            }
        }
        let text = format!("+OK {} POP3 signing off\r\n", self.shared.hostname);
        self.ok(verb, &text).await?;
        Ok(Next::Close)
    }

    async fn authorization(&mut self, verb: &'static str, command: Command) -> Io<Next> {
        let State::Authorization { user: pending } = &mut self.state else {
            return Ok(Next::Continue);
        };
        match command {
            Command::User(_) | Command::Pass(_) if !self.shared.password_allowed(self.conn.tls) => {
                // RFC 3206 [AUTH]: the login is refused for a reason other than the password.
                let text = if self.shared.tls.is_some() {
                    "[AUTH] use STLS first: passwords only over TLS"
                } else {
                    "[AUTH] passwords only over TLS, and this host has no certificate"
                };
                err(&mut self.conn, &self.shared, verb, text).await?;
            }
            Command::User(name) => {
                *pending = Some(name);
                ok(&mut self.conn, &self.shared, verb, "+OK send PASS\r\n").await?;
            }
            Command::Pass(password) => {
                let Some(name) = pending.take() else {
                    err(&mut self.conn, &self.shared, verb, "send USER first").await?;
                    return Ok(Next::Continue);
                };
                return self.login(verb, &name, &password).await;
            }
            _ => {
                err(
                    &mut self.conn,
                    &self.shared,
                    verb,
                    "log in first (USER, PASS)",
                )
                .await?
            }
        }
        Ok(Next::Continue)
    }

    async fn login(&mut self, verb: &'static str, name: &str, password: &str) -> Io<Next> {
        let Some(user) = self.shared.verify(self.conn.peer, name, password).await else {
            self.shared.error(Protocol::Pop3, Reason::AuthFailed);
            self.err(verb, "[AUTH] invalid user name or password")
                .await?;
            return Ok(Next::AuthFailed);
        };
        let Some(lock) = self.shared.store.pop_lock(&user.name) else {
            self.err(verb, "[IN-USE] the maildrop is already open")
                .await?;
            return Ok(Next::Continue);
        };
        let store_user = user.name.clone();
        let shared = self.shared.clone();
        let scanned =
            tokio::task::spawn_blocking(move || shared.store.scan(&store_user, false)).await;
        match scanned {
            Ok(Ok((messages, _))) => {
                let n = messages.len();
                let size: u64 = messages.iter().map(|m| m.size).sum();
                self.state = State::Transaction(Mailbox {
                    user: user.name,
                    read_only: user.read_only,
                    deleted: vec![false; n],
                    messages,
                    _lock: lock,
                });
                let text = format!("+OK maildrop has {n} messages ({size} octets)\r\n");
                self.ok(verb, &text).await?;
            }
            _ => {
                self.shared.error(Protocol::Pop3, Reason::StorageFailed);
                self.err(verb, "[SYS/TEMP] cannot open the maildrop")
                    .await?;
            }
        }
        Ok(Next::Continue)
    }

    async fn transaction(&mut self, verb: &'static str, command: Command) -> Io<Next> {
        let State::Transaction(mb) = &mut self.state else {
            return Ok(Next::Continue);
        };
        match command {
            Command::Stat => {
                let (n, size) = mb
                    .messages
                    .iter()
                    .zip(&mb.deleted)
                    .filter(|(_, d)| !**d)
                    .fold((0, 0), |(n, s), (m, _)| (n + 1, s + m.size));
                ok(
                    &mut self.conn,
                    &self.shared,
                    verb,
                    &format!("+OK {n} {size}\r\n"),
                )
                .await?;
            }
            Command::List(None) | Command::Uidl(None) => {
                let mut text = String::from("+OK\r\n");
                for (i, m) in mb.messages.iter().enumerate() {
                    if !mb.deleted[i] {
                        let value = if verb == "LIST" {
                            m.size.to_string()
                        } else {
                            m.base.clone()
                        };
                        text.push_str(&format!("{} {value}\r\n", i + 1));
                    }
                }
                text.push_str(".\r\n");
                ok(&mut self.conn, &self.shared, verb, &text).await?;
            }
            Command::List(Some(n)) | Command::Uidl(Some(n)) => match mb.live(n) {
                Some(i) => {
                    let m = &mb.messages[i];
                    let value = if verb == "LIST" {
                        m.size.to_string()
                    } else {
                        m.base.clone()
                    };
                    ok(
                        &mut self.conn,
                        &self.shared,
                        verb,
                        &format!("+OK {n} {value}\r\n"),
                    )
                    .await?;
                }
                None => err(&mut self.conn, &self.shared, verb, "no such message").await?,
            },
            Command::Retr(n) | Command::Top(n, _) => {
                let Some(i) = mb.live(n) else {
                    err(&mut self.conn, &self.shared, verb, "no such message").await?;
                    return Ok(Next::Continue);
                };
                let lines = if let Command::Top(_, l) = command {
                    Some(l)
                } else {
                    None
                };
                let (path, size) = (mb.messages[i].path.clone(), mb.messages[i].size);
                let mut bytes = Vec::new();
                let read = async {
                    let mut f = tokio::fs::File::open(&path).await?;
                    f.read_to_end(&mut bytes).await
                };
                if let Err(e) = read.await {
                    tracing::warn!(error = %e, "cannot read a message");
                    err(
                        &mut self.conn,
                        &self.shared,
                        verb,
                        "[SYS/TEMP] the message is gone",
                    )
                    .await?;
                    return Ok(Next::Continue);
                }
                let body = dot_stuff(&bytes, lines);
                drop(bytes);
                self.shared.count(Protocol::Pop3, verb, Outcome::Ok);
                self.conn
                    .write(format!("+OK {size} octets\r\n").as_bytes())
                    .await?;
                self.conn.write(&body).await?;
                self.conn.write(b".\r\n").await?;
            }
            Command::Dele(n) => match mb.live(n) {
                Some(_) if mb.read_only => {
                    err(&mut self.conn, &self.shared, verb, "read-only account").await?
                }
                Some(i) => {
                    mb.deleted[i] = true;
                    ok(
                        &mut self.conn,
                        &self.shared,
                        verb,
                        &format!("+OK message {n} deleted\r\n"),
                    )
                    .await?;
                }
                None => err(&mut self.conn, &self.shared, verb, "no such message").await?,
            },
            Command::Rset => {
                mb.deleted.iter_mut().for_each(|d| *d = false);
                ok(&mut self.conn, &self.shared, verb, "+OK\r\n").await?;
            }
            Command::Noop => ok(&mut self.conn, &self.shared, verb, "+OK\r\n").await?,
            Command::User(_) | Command::Pass(_) => {
                err(&mut self.conn, &self.shared, verb, "already logged in").await?
            }
            Command::Capa | Command::Quit | Command::Stls => {
                unreachable!("answered before the state's commands")
            }
        }
        Ok(Next::Continue)
    }
}

async fn ok(
    conn: &mut Conn,
    shared: &Shared,
    verb: &'static str,
    text: &str,
) -> std::io::Result<()> {
    shared.count(Protocol::Pop3, verb, Outcome::Ok);
    conn.write(text.as_bytes()).await
}

async fn err(
    conn: &mut Conn,
    shared: &Shared,
    verb: &'static str,
    text: &str,
) -> std::io::Result<()> {
    shared.count(Protocol::Pop3, verb, Outcome::Rejected);
    conn.write(format!("-ERR {text}\r\n").as_bytes()).await
}

/// A message as POP3 sends it: CRLF line ends, lines starting with `.` doubled, ending with CRLF;
/// with `top`, the header, the blank line and that many body lines.
pub fn dot_stuff(message: &[u8], top: Option<u32>) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut in_body = false;
    let mut body_lines = 0u32;
    for line in message.split_inclusive(|b| *b == b'\n') {
        if in_body && let Some(limit) = top {
            if body_lines >= limit {
                break;
            }
            body_lines += 1;
        }
        let content = trim_eol(line);
        if content.is_empty() {
            in_body = true;
        }
        if content.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_and_top() {
        let m = b"Subject: x\r\n\r\n.hidden\nline2\r\nline3";
        assert_eq!(
            dot_stuff(m, None),
            b"Subject: x\r\n\r\n..hidden\r\nline2\r\nline3\r\n"
        );
        assert_eq!(dot_stuff(m, Some(1)), b"Subject: x\r\n\r\n..hidden\r\n");
        assert_eq!(dot_stuff(m, Some(0)), b"Subject: x\r\n\r\n");
    }
}
