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
use super::conn::{Conn, ReadError, trim_eol};
use super::store::Message;
use super::{Protocol, Shared};

/// RFC 1939 section 3: an inactivity timer of at least 10 minutes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
const MAX_LINE: usize = 1024;
const MAX_ERRORS: usize = 10;
const MAX_COMMANDS: usize = 10_000;

struct Mailbox {
    user: String,
    read_only: bool,
    messages: Vec<Message>,
    deleted: Vec<bool>,
    _lock: tokio::sync::OwnedMutexGuard<()>,
}

pub(crate) async fn session(
    mut conn: Conn,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let protocol = Protocol::Pop3;
    conn.send(format!("+OK {} POP3 ready\r\n", shared.hostname).as_bytes())
        .await?;
    let mut line = Vec::new();
    let mut pending_user: Option<String> = None;
    let mut mailbox: Option<Mailbox> = None;
    let (mut errors, mut commands) = (0, 0);
    loop {
        if !conn.has_buffered_input() {
            conn.flush().await?;
        }
        let read = tokio::select! {
            biased;
            _ = stop.cancelled() => {
                // Nothing is deleted: the session did not reach QUIT.
                return conn.send(b"-ERR server shutting down\r\n").await;
            }
            r = conn.read_line(&mut line, MAX_LINE, IDLE_TIMEOUT) => r,
        };
        match read {
            Ok(()) => {}
            Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Timeout) => {
                shared.error(protocol, Reason::Timeout);
                return conn.send(b"-ERR idle too long, closing\r\n").await;
            }
            Err(ReadError::TooLong(_)) => {
                errors += 1;
                err(&mut conn, &shared, "LONG", "line too long").await?;
                if errors >= MAX_ERRORS {
                    return conn.flush().await;
                }
                continue;
            }
            Err(ReadError::Io(e)) => return Err(e),
        }
        commands += 1;
        if commands > MAX_COMMANDS {
            return conn.send(b"-ERR too many commands\r\n").await;
        }
        let command = match parse::parse(trim_eol(&line)) {
            Ok(c) => c,
            Err(e) => {
                errors += 1;
                err(&mut conn, &shared, "UNKNOWN", e.0).await?;
                if errors >= MAX_ERRORS {
                    return conn.flush().await;
                }
                continue;
            }
        };
        let verb = command.verb();
        if let Command::Capa = command {
            let mut text = String::from("+OK capability list follows\r\n");
            if shared.tls.is_some() && !conn.tls {
                text.push_str("STLS\r\n");
            } else {
                text.push_str("USER\r\n");
            }
            text.push_str(
                "UIDL\r\nTOP\r\nPIPELINING\r\nRESP-CODES\r\nIMPLEMENTATION hostrole\r\n.\r\n",
            );
            ok(&mut conn, &shared, verb, &text).await?;
            continue;
        }
        if let Command::Stls = command {
            match (&shared.tls, conn.tls, mailbox.is_some()) {
                (Some(acceptor), false, false) => {
                    let acceptor = acceptor.clone();
                    ok(&mut conn, &shared, verb, "+OK begin TLS negotiation\r\n").await?;
                    if let Err(e) = conn.start_tls(&acceptor).await {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        shared.error(protocol, Reason::TlsFailed);
                        return Ok(());
                    }
                    pending_user = None;
                }
                (None, _, _) => err(&mut conn, &shared, verb, "TLS is not available").await?,
                _ => err(&mut conn, &shared, verb, "STLS only once, before login").await?,
            }
            continue;
        }
        if let Command::Quit = command {
            if let Some(mb) = mailbox.take() {
                let mut failed = false;
                for (m, deleted) in mb.messages.iter().zip(&mb.deleted) {
                    if *deleted && let Err(e) = shared.store.remove(m) {
                        tracing::error!(error = %e, user = mb.user, "cannot delete a message");
                        failed = true;
                    }
                }
                if failed {
                    shared.error(protocol, Reason::StorageFailed);
                    return err(
                        &mut conn,
                        &shared,
                        verb,
                        "some deleted messages not removed",
                    )
                    .await
                    .and(conn.flush().await);
                }
            }
            ok(
                &mut conn,
                &shared,
                verb,
                &format!("+OK {} POP3 signing off\r\n", shared.hostname),
            )
            .await?;
            return conn.flush().await;
        }
        let Some(mb) = mailbox.as_mut() else {
            // Authorization state.
            match command {
                Command::User(_) | Command::Pass(_) if shared.tls.is_some() && !conn.tls => {
                    err(
                        &mut conn,
                        &shared,
                        verb,
                        "[AUTH] use STLS first: passwords only over TLS",
                    )
                    .await?;
                }
                Command::User(name) => {
                    pending_user = Some(name);
                    ok(&mut conn, &shared, verb, "+OK send PASS\r\n").await?;
                }
                Command::Pass(password) => {
                    let Some(name) = pending_user.take() else {
                        err(&mut conn, &shared, verb, "send USER first").await?;
                        continue;
                    };
                    let Some(user) = shared.verify(&name, &password).await else {
                        shared.error(protocol, Reason::AuthFailed);
                        err(
                            &mut conn,
                            &shared,
                            verb,
                            "[AUTH] invalid user name or password",
                        )
                        .await?;
                        errors += 1;
                        if errors >= MAX_ERRORS {
                            return conn.flush().await;
                        }
                        continue;
                    };
                    let Some(lock) = shared.store.pop_lock(&user.name) else {
                        err(
                            &mut conn,
                            &shared,
                            verb,
                            "[IN-USE] the maildrop is already open",
                        )
                        .await?;
                        continue;
                    };
                    let store_user = user.name.clone();
                    let shared2 = shared.clone();
                    let scanned =
                        tokio::task::spawn_blocking(move || shared2.store.scan(&store_user, false))
                            .await;
                    match scanned {
                        Ok(Ok((messages, _))) => {
                            let n = messages.len();
                            let size: u64 = messages.iter().map(|m| m.size).sum();
                            mailbox = Some(Mailbox {
                                user: user.name,
                                read_only: user.read_only,
                                deleted: vec![false; n],
                                messages,
                                _lock: lock,
                            });
                            ok(
                                &mut conn,
                                &shared,
                                verb,
                                &format!("+OK maildrop has {n} messages ({size} octets)\r\n"),
                            )
                            .await?;
                        }
                        _ => {
                            shared.error(protocol, Reason::StorageFailed);
                            err(
                                &mut conn,
                                &shared,
                                verb,
                                "[SYS/TEMP] cannot open the maildrop",
                            )
                            .await?;
                        }
                    }
                }
                _ => err(&mut conn, &shared, verb, "log in first (USER, PASS)").await?,
            }
            continue;
        };
        // Transaction state.
        let live = |mb: &Mailbox, n: u32| -> Option<usize> {
            let i = (n as usize).checked_sub(1)?;
            (i < mb.messages.len() && !mb.deleted[i]).then_some(i)
        };
        match command {
            Command::Stat => {
                let (n, size) = mb
                    .messages
                    .iter()
                    .zip(&mb.deleted)
                    .filter(|(_, d)| !**d)
                    .fold((0, 0), |(n, s), (m, _)| (n + 1, s + m.size));
                ok(&mut conn, &shared, verb, &format!("+OK {n} {size}\r\n")).await?;
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
                ok(&mut conn, &shared, verb, &text).await?;
            }
            Command::List(Some(n)) | Command::Uidl(Some(n)) => match live(mb, n) {
                Some(i) => {
                    let m = &mb.messages[i];
                    let value = if verb == "LIST" {
                        m.size.to_string()
                    } else {
                        m.base.clone()
                    };
                    ok(&mut conn, &shared, verb, &format!("+OK {n} {value}\r\n")).await?;
                }
                None => err(&mut conn, &shared, verb, "no such message").await?,
            },
            Command::Retr(n) | Command::Top(n, _) => {
                let Some(i) = live(mb, n) else {
                    err(&mut conn, &shared, verb, "no such message").await?;
                    continue;
                };
                let lines = if let Command::Top(_, l) = command {
                    Some(l)
                } else {
                    None
                };
                let mut bytes = Vec::new();
                let read = async {
                    let mut f = tokio::fs::File::open(&mb.messages[i].path).await?;
                    f.read_to_end(&mut bytes).await
                };
                if let Err(e) = read.await {
                    tracing::warn!(error = %e, "cannot read a message");
                    err(&mut conn, &shared, verb, "[SYS/TEMP] the message is gone").await?;
                    continue;
                }
                let body = dot_stuff(&bytes, lines);
                shared.count(protocol, verb, Outcome::Ok);
                conn.write(format!("+OK {} octets\r\n", mb.messages[i].size).as_bytes())
                    .await?;
                conn.write(&body).await?;
                conn.write(b".\r\n").await?;
            }
            Command::Dele(n) => match live(mb, n) {
                Some(_) if mb.read_only => {
                    err(&mut conn, &shared, verb, "read-only account").await?
                }
                Some(i) => {
                    mb.deleted[i] = true;
                    ok(
                        &mut conn,
                        &shared,
                        verb,
                        &format!("+OK message {n} deleted\r\n"),
                    )
                    .await?;
                }
                None => err(&mut conn, &shared, verb, "no such message").await?,
            },
            Command::Rset => {
                mb.deleted.iter_mut().for_each(|d| *d = false);
                ok(&mut conn, &shared, verb, "+OK\r\n").await?;
            }
            Command::Noop => ok(&mut conn, &shared, verb, "+OK\r\n").await?,
            Command::User(_) | Command::Pass(_) => {
                err(&mut conn, &shared, verb, "already logged in").await?
            }
            Command::Capa | Command::Quit | Command::Stls => unreachable!("answered above"),
        }
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
