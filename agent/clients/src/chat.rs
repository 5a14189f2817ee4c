//! The chat client: two IRC connections join one channel; a message the first sends must reach
//! the second. Its delivery time is the probe's latency.
//!
//! With credentials both connections log in with SASL PLAIN when the server offers it, else
//! with `PASS account:password`; their nicks start with the account name (`<account>-a1b2`), as
//! a server that requires a login expects. Messages are parsed with irc-proto; lines are bounded
//! (8 KiB with tags), and the server's PINGs are answered while the probe waits.

use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use hostrole_config::{ClientConfig, ClientTarget};
use irc_proto::{CapSubCommand, Command, Message, Response};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

use super::{
    Context, Credentials, ProbeError, Reason, Success, credentials, random_hex, timed_out,
};

/// The channel probes meet in.
pub const PROBE_CHANNEL: &str = "#hostrole-probe";
/// Longest line read: 8191 bytes of tags and message (IRCv3) and the line end.
const MAX_LINE: usize = 8193;

/// Where an `irc://host:port/` target points.
fn target(config: &ClientConfig) -> Result<(String, u16), ProbeError> {
    let ClientTarget::Url(url) = &config.target else {
        return Err(ProbeError::new(
            Reason::Error,
            "the target is not a URL (a chat client needs irc://host:port/)",
        ));
    };
    let invalid = |why: &str| ProbeError::new(Reason::Error, format!("the target {url:?} {why}"));
    let rest = url
        .strip_prefix("irc://")
        .ok_or_else(|| invalid("is not an irc:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            let port = port.parse().map_err(|_| invalid("has no valid port"))?;
            (host, port)
        }
        _ => (authority, 6667),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(invalid("names no host"));
    }
    Ok((host.to_string(), port))
}

pub(crate) async fn run(
    config: &ClientConfig,
    _context: &Context,
    deadline: Instant,
) -> Result<Success, ProbeError> {
    let timeout = Duration::from_millis(config.timeout_ms);
    let (host, port) = target(config)?;
    let login = match &config.credentials_dir {
        Some(dir) => Some(credentials(dir).await?),
        None => None,
    };
    let tag = random_hex(2);
    let base = login.as_ref().map_or("probe", |c| c.username.as_str());
    let start = Instant::now();
    let mut sender = within(
        deadline,
        timeout,
        Irc::connect(&host, port, &format!("{base}-{tag}s"), login.as_ref()),
    )
    .await?;
    let mut receiver = within(
        deadline,
        timeout,
        Irc::connect(&host, port, &format!("{base}-{tag}r"), login.as_ref()),
    )
    .await?;
    let registered = start.elapsed();
    within(deadline, timeout, sender.join(PROBE_CHANNEL)).await?;
    within(deadline, timeout, receiver.join(PROBE_CHANNEL)).await?;
    let token = random_hex(8);
    let text = format!("hostrole probe {token}");
    let sent = Instant::now();
    sender
        .send(Command::PRIVMSG(PROBE_CHANNEL.into(), text.clone()))
        .await?;
    let from = sender.nick.clone();
    within(deadline, timeout, receiver.wait_for(|m| {
        matches!(&m.command, Command::PRIVMSG(target, body)
            if target.eq_ignore_ascii_case(PROBE_CHANNEL) && *body == text)
            && m.source_nickname() == Some(from.as_str())
    }))
    .await
    .map_err(|e| {
        if e.reason == Reason::Timeout {
            ProbeError::new(
                Reason::NotDelivered,
                format!("the message sent to {PROBE_CHANNEL} never reached the second connection within {timeout:?}"),
            )
        } else {
            e
        }
    })?;
    let delivery = sent.elapsed();
    // Goodbyes are best effort: the probe has its answer.
    let _ = sender.send(Command::QUIT(Some("probe done".into()))).await;
    let _ = receiver
        .send(Command::QUIT(Some("probe done".into())))
        .await;
    Ok(Success::new(format!(
        "a message to {PROBE_CHANNEL} reached a second connection"
    ))
    .timing("register", registered)
    .timing("delivery", delivery)
    .timing("total", start.elapsed()))
}

/// `step`, failing as a timeout at `deadline`.
async fn within<T>(
    deadline: Instant,
    timeout: Duration,
    step: impl std::future::Future<Output = Result<T, ProbeError>>,
) -> Result<T, ProbeError> {
    tokio::time::timeout_at(deadline, step)
        .await
        .unwrap_or_else(|_| Err(timed_out(timeout)))
}

/// Whether a numeric reply says a command failed: 400–599 (but 422, no message of the day)
/// and SASL's 902 and 904–906. (irc-proto calls every reply from 400 up an error, 900 "logged
/// in" too.)
fn is_failure(code: Response) -> bool {
    let n = code as u16;
    ((400..600).contains(&n) && code != Response::ERR_NOMOTD) || matches!(n, 902 | 904..=906)
}

/// One registered IRC connection.
struct Irc {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    nick: String,
}

impl Irc {
    /// Connects and registers as `nick` (logging in with `login`), until `RPL_WELCOME`.
    async fn connect(
        host: &str,
        port: u16,
        nick: &str,
        login: Option<&Credentials>,
    ) -> Result<Self, ProbeError> {
        let stream = TcpStream::connect((host, port)).await.map_err(|e| {
            ProbeError::new(
                Reason::ConnectFailed,
                format!("cannot connect to {host}:{port}: {e}"),
            )
        })?;
        let (read, writer) = stream.into_split();
        let mut irc = Irc {
            reader: BufReader::new(read),
            writer,
            nick: nick.to_string(),
        };
        irc.send(Command::CAP(
            None,
            CapSubCommand::LS,
            Some("302".into()),
            None,
        ))
        .await?;
        irc.send(Command::NICK(nick.into())).await?;
        irc.send(Command::USER(
            nick.into(),
            "0".into(),
            "hostrole chat probe".into(),
        ))
        .await?;
        let caps = irc.capabilities().await?;
        let sasl = caps.iter().any(|c| c == "sasl" || c.starts_with("sasl="));
        if let Some(login) = login {
            if sasl {
                irc.sasl_plain(login).await?;
            } else {
                irc.send(Command::PASS(format!(
                    "{}:{}",
                    login.username, login.password
                )))
                .await?;
            }
        }
        irc.send(Command::CAP(None, CapSubCommand::END, None, None))
            .await?;
        irc.wait_for(|m| matches!(&m.command, Command::Response(Response::RPL_WELCOME, _)))
            .await?;
        Ok(irc)
    }

    /// The capabilities of `CAP LS` (every line of a multi-line answer).
    async fn capabilities(&mut self) -> Result<Vec<String>, ProbeError> {
        let mut caps = Vec::new();
        loop {
            let m = self
                .wait_for(|m| matches!(&m.command, Command::CAP(_, CapSubCommand::LS, _, _)))
                .await?;
            let Command::CAP(_, _, more, list) = &m.command else {
                continue;
            };
            // `CAP * LS * :caps` announces more lines; the last has no `*`.
            let (continued, list) = match (more, list) {
                (Some(star), Some(list)) if star == "*" => (true, list.as_str()),
                (Some(list), None) | (_, Some(list)) => (false, list.as_str()),
                _ => (false, ""),
            };
            caps.extend(list.split_whitespace().map(str::to_string));
            if !continued {
                return Ok(caps);
            }
        }
    }

    async fn sasl_plain(&mut self, login: &Credentials) -> Result<(), ProbeError> {
        self.send(Command::CAP(
            None,
            CapSubCommand::REQ,
            None,
            Some("sasl".into()),
        ))
        .await?;
        let answer = self
            .wait_for(|m| {
                matches!(
                    &m.command,
                    Command::CAP(_, CapSubCommand::ACK | CapSubCommand::NAK, _, _)
                )
            })
            .await?;
        if matches!(&answer.command, Command::CAP(_, CapSubCommand::NAK, _, _)) {
            return Err(ProbeError::new(
                Reason::AuthFailed,
                "the server offered SASL but refused to enable it",
            ));
        }
        self.send(Command::AUTHENTICATE("PLAIN".into())).await?;
        self.wait_for(|m| m.command == Command::AUTHENTICATE("+".into()))
            .await?;
        let blob = format!("\0{}\0{}", login.username, login.password);
        let encoded = base64::engine::general_purpose::STANDARD.encode(blob);
        // AUTHENTICATE carries at most 400 bytes a line; a 400-byte last line is followed by `+`.
        for chunk in encoded.as_bytes().chunks(400) {
            self.send(Command::AUTHENTICATE(
                String::from_utf8_lossy(chunk).into_owned(),
            ))
            .await?;
        }
        if encoded.len() % 400 == 0 {
            self.send(Command::AUTHENTICATE("+".into())).await?;
        }
        let answer = self
            .wait_for(|m| {
                matches!(
                    &m.command,
                    Command::Response(Response::RPL_SASLSUCCESS | Response::ERR_SASLFAIL, _)
                )
            })
            .await?;
        match answer.command {
            Command::Response(Response::RPL_SASLSUCCESS, _) => Ok(()),
            _ => Err(ProbeError::new(
                Reason::AuthFailed,
                format!("SASL PLAIN login as {} failed", login.username),
            )),
        }
    }

    async fn join(&mut self, channel: &str) -> Result<(), ProbeError> {
        self.send(Command::JOIN(channel.into(), None, None)).await?;
        let nick = self.nick.clone();
        self.wait_for(|m| {
            matches!(&m.command, Command::JOIN(c, _, _) if c.eq_ignore_ascii_case(channel))
                && m.source_nickname()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&nick))
        })
        .await
        .map(|_| ())
    }

    async fn send(&mut self, command: Command) -> Result<(), ProbeError> {
        let line = Message::from(command).to_string();
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|e| ProbeError::new(Reason::ConnectFailed, format!("cannot send: {e}")))
    }

    /// Reads until a message `wanted` accepts, answering PINGs. A numeric error reply, `ERROR`
    /// or the end of the connection fails with the server's words.
    async fn wait_for(&mut self, wanted: impl Fn(&Message) -> bool) -> Result<Message, ProbeError> {
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut self.reader)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut line)
                .await
                .map_err(|e| ProbeError::new(Reason::ConnectFailed, format!("cannot read: {e}")))?;
            if n == 0 {
                return Err(ProbeError::new(
                    Reason::ConnectFailed,
                    "the server closed the connection",
                ));
            }
            if line.last() != Some(&b'\n') {
                return Err(ProbeError::new(
                    Reason::Error,
                    format!("the server sent a line longer than {MAX_LINE} bytes"),
                ));
            }
            let text = String::from_utf8_lossy(&line);
            // A line irc-proto cannot parse is skipped, as clients do.
            let Ok(message) = Message::from_str(&text) else {
                continue;
            };
            if wanted(&message) {
                return Ok(message);
            }
            match &message.command {
                Command::PING(server, _) => {
                    self.send(Command::PONG(server.clone(), None)).await?;
                }
                Command::ERROR(why) => {
                    return Err(ProbeError::new(
                        Reason::ConnectFailed,
                        format!("the server closed the link: {why}"),
                    ));
                }
                Command::Response(code, args) if is_failure(*code) => {
                    let reason = match code {
                        Response::ERR_PASSWDMISMATCH | Response::ERR_SASLFAIL => Reason::AuthFailed,
                        _ => Reason::Error,
                    };
                    return Err(ProbeError::new(
                        reason,
                        format!(
                            "the server answered {:03}: {}",
                            *code as u16,
                            args.join(" ")
                        ),
                    ));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostrole_config::ClientService;

    fn config(url: &str) -> ClientConfig {
        ClientConfig {
            name: "chat-0".into(),
            service: ClientService::Chat,
            server: url.into(),
            target: ClientTarget::Url(url.into()),
            every_ms: 1000,
            timeout_ms: 1000,
            path: None,
            expect: None,
            credentials_dir: None,
            mail_to: None,
            listen_ms: None,
        }
    }

    #[test]
    fn only_failure_numerics_fail_a_probe() {
        assert!(!is_failure(Response::RPL_LOGGEDIN));
        assert!(!is_failure(Response::RPL_SASLSUCCESS));
        assert!(!is_failure(Response::ERR_NOMOTD));
        assert!(is_failure(Response::ERR_SASLFAIL));
        assert!(is_failure(Response::ERR_PASSWDMISMATCH));
        assert!(is_failure(Response::ERR_NICKNAMEINUSE));
    }

    #[test]
    fn targets_are_irc_urls_with_the_default_port() {
        assert_eq!(
            target(&config("irc://chat.lan:6697/")).ok(),
            Some(("chat.lan".into(), 6697))
        );
        assert_eq!(
            target(&config("irc://chat.lan")).ok(),
            Some(("chat.lan".into(), 6667))
        );
        assert_eq!(
            target(&config("irc://[::1]:7000/")).ok(),
            Some(("::1".into(), 7000))
        );
        assert!(target(&config("http://chat.lan/")).is_err());
        assert!(target(&config("irc://:6667/")).is_err());
    }
}
