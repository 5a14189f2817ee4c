//! The session driver every line protocol shares: greet, then read a command (a line, or an
//! IMAP command with its literals), hand it to the protocol, flush replies when the client has
//! sent nothing more (pipelining), and end the session the same way for every protocol when the
//! client is silent too long, sends too many bad commands or failed logins, the listener needs
//! the slot of an idle session, or the agent stops. Each protocol only says what it answers
//! ([`LineProtocol`]).
//!
//! A session that has not logged in (and SMTP on port 25, which never does) is held to shorter
//! limits ([`Limits`]): a client that connects and says nothing, or idles before login, gives
//! its slot back quickly.

use std::time::Duration;

use hostrole_agent_core::metrics::Reason;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::conn::{Conn, ReadError};
use super::listener::Protocol;

/// Failed logins in one session before it is closed (each failure also backs off, see
/// `hostrole_agent_core::users`).
pub const MAX_AUTH_FAILURES: usize = 3;
/// Before login: the longest silence between commands (IMAP, POP3, submission)…
pub const PRE_AUTH_IDLE: Duration = Duration::from_secs(30);
/// …and the longest a session may stay unauthenticated at all.
pub const LOGIN_GRACE: Duration = Duration::from_secs(120);

/// How long and how much the next read may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_line: usize,
    pub timeout: Duration,
}

/// Why the driver ends a session (the protocol says goodbye in its words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The agent stops.
    Stopping,
    /// No command within the read limit (or no login within [`LOGIN_GRACE`]).
    Timeout,
    /// Idle while the listener was full: closed for a new client.
    Evicted,
    TooManyCommands,
    TooManyErrors,
    TooManyAuthFailures,
    /// The command (with its literals) is longer than the protocol allows, and the protocol
    /// cannot skip it (IMAP).
    TooLong,
}

impl Ending {
    /// The failure it counts as in metrics (a stop is none).
    fn reason(self) -> Option<Reason> {
        Some(match self {
            Ending::Stopping => return None,
            Ending::Timeout => Reason::Timeout,
            Ending::Evicted => Reason::Evicted,
            Ending::TooManyCommands => Reason::TooManyCommands,
            Ending::TooManyErrors => Reason::TooManyErrors,
            Ending::TooManyAuthFailures => Reason::TooManyAuthFailures,
            Ending::TooLong => Reason::CommandTooLong,
        })
    }
}

/// What a command did to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// The command was bad (syntax, unknown, out of sequence): counts toward the error limit.
    Bad,
    /// A login failed: counts toward [`MAX_AUTH_FAILURES`].
    AuthFailed,
    /// The session ends (QUIT, LOGOUT, a failed TLS handshake).
    Close,
}

/// One line protocol's session: its state and its answers.
pub(crate) trait LineProtocol: Send {
    /// Bad commands before the session is closed.
    const MAX_ERRORS: usize;
    /// Commands in one session before it is closed.
    const MAX_COMMANDS: usize;

    fn conn(&mut self) -> &mut Conn;
    fn shared(&self) -> &Shared;
    fn protocol(&self) -> Protocol;
    /// Whether the session logged in; [`LOGIN_GRACE`] applies until it does (not to SMTP on
    /// port 25, where nobody logs in: its [`Limits`] are short instead).
    fn authenticated(&self) -> bool;
    /// The limits of the next command read, by the session's state.
    fn limits(&self) -> Limits;

    /// The greeting.
    async fn greet(&mut self) -> std::io::Result<()>;
    /// Reads the next command into `buf` (default: one line).
    async fn read(&mut self, buf: &mut Vec<u8>) -> Result<(), ReadError> {
        let limits = self.limits();
        self.conn()
            .read_line(buf, limits.max_line, limits.timeout)
            .await
    }
    /// Answers one command (the line with its terminator, or IMAP's whole command).
    async fn command(&mut self, input: &[u8], stop: &CancellationToken) -> std::io::Result<Next>;
    /// Answers a line longer than [`Limits::max_line`]; `None`: the session must end.
    async fn too_long(&mut self) -> std::io::Result<Option<Next>>;
    /// Says goodbye (nothing is sent after it).
    async fn goodbye(&mut self, why: Ending) -> std::io::Result<()>;
}

/// Runs a session to its end.
pub(crate) async fn drive<P: LineProtocol>(
    mut p: P,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    p.greet().await?;
    let login_deadline = tokio::time::Instant::now() + LOGIN_GRACE;
    let uses_login = p.protocol() != Protocol::Smtp;
    let mut input = Vec::new();
    let (mut commands, mut errors, mut auth_failures) = (0usize, 0usize, 0usize);
    let ending = loop {
        if !p.conn().has_buffered_input() {
            p.conn().flush().await?;
        }
        let login_pending = uses_login && !p.authenticated();
        if login_pending && tokio::time::Instant::now() >= login_deadline {
            break Ending::Timeout;
        }
        let read = tokio::select! {
            biased;
            _ = stop.cancelled() => break Ending::Stopping,
            _ = tokio::time::sleep_until(login_deadline), if login_pending => break Ending::Timeout,
            r = p.read(&mut input) => r,
        };
        let next = match read {
            Ok(()) => {
                commands += 1;
                if commands > P::MAX_COMMANDS {
                    break Ending::TooManyCommands;
                }
                p.command(&input, stop).await?
            }
            Err(ReadError::Closed) => return Ok(()),
            Err(ReadError::Timeout) => break Ending::Timeout,
            Err(ReadError::Evicted) => break Ending::Evicted,
            Err(ReadError::TooLong(_)) => match p.too_long().await? {
                Some(next) => next,
                None => break Ending::TooLong,
            },
            Err(ReadError::Io(e)) => return Err(e),
        };
        match next {
            Next::Continue => {}
            Next::Close => return p.conn().flush().await,
            Next::Bad => {
                errors += 1;
                if errors >= P::MAX_ERRORS {
                    break Ending::TooManyErrors;
                }
            }
            Next::AuthFailed => {
                auth_failures += 1;
                if auth_failures >= MAX_AUTH_FAILURES {
                    break Ending::TooManyAuthFailures;
                }
            }
        }
    };
    if let Some(reason) = ending.reason() {
        p.shared().error(p.protocol(), reason);
    }
    tracing::debug!(role = p.protocol().name(), ?ending, "closing a session");
    p.goodbye(ending).await?;
    p.conn().flush().await
}
