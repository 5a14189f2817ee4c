//! The mail client: logs in over IMAP, sends a probe message over SMTP to its own mailbox,
//! polls the mailbox (NOOP, SEARCH SUBJECT) until the probe arrives, measures the delivery time
//! and deletes the probe (STORE `\Deleted`, EXPUNGE), together with probes of earlier runs that
//! arrived too late.
//!
//! A cross-host probe (`mail_to`, the manifest's `clients[].to`) sends instead through the
//! server's submission port, logged in as the client's user (AUTH PLAIN or LOGIN), to the
//! mailbox of another host, and reads and deletes it there: its delivery time is the sender's
//! queue, its route and the other host's SMTP together.
//!
//! Logging in before sending means wrong credentials are reported as `AuthFailed` without
//! leaving an unreadable probe behind. Reading back is IMAP only: no maintained POP3 client
//! crate exists, so a target with a POP3 port and no IMAP port is reported as an error.
//! SMTP goes to the server's SMTP port in plain text (mail for a local mailbox needs no AUTH;
//! the mail role's `no open relay` rules accept it); IMAP and submission likewise, so a server
//! reached this way must allow plaintext logins (TLS towards the roles with a private CA is not
//! in the client yet).

use std::time::Duration;

use async_imap::Session;
use futures_util::TryStreamExt;
use hostrole_config::{ClientConfig, ClientTarget};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{CLEANUP_TIME, Context, Credentials, ProbeError, Reason, Success, chain, credentials};

/// How often the mailbox is looked at while waiting for the probe.
const POLL: Duration = Duration::from_millis(200);

/// Subject tokens: `hostrole-probe-<host>-<client>-<random>`; the part before the random
/// suffix finds this client's stale probes.
fn token_prefix(host: &str, client: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("hostrole-probe-{}-{}-", clean(host), clean(client))
}

/// The probe's mailbox: the username when it is an address, else `<username>@<domain>`.
pub fn mailbox_address(username: &str, domain: Option<&str>) -> Result<String, ProbeError> {
    if username.contains('@') {
        return Ok(username.to_string());
    }
    match domain {
        Some(d) => Ok(format!("{username}@{d}")),
        None => Err(ProbeError::new(
            Reason::Error,
            format!("the username {username:?} is not an address and the target names no domain"),
        )),
    }
}

pub(crate) async fn run(
    config: &ClientConfig,
    context: &Context,
    deadline: Instant,
) -> Result<Success, ProbeError> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    let ClientTarget::Mail(target) = &config.target else {
        return Err(ProbeError::new(
            Reason::Error,
            "the target is not a mail server (a mail client needs smtpPort and imapPort)",
        ));
    };
    let Some(dir) = &config.credentials_dir else {
        return Err(ProbeError::new(
            Reason::Error,
            "a mail client needs credentials to read its mailbox: set credentials.secret",
        ));
    };
    let credentials = credentials(dir).await?;
    // Where the probe is read back: the same server, or the other host of a cross-host probe.
    let (reader, reader_credentials, send) = match &config.mail_to {
        None => {
            let address = mailbox_address(&credentials.username, target.domain.as_deref())?;
            let send = Send {
                via: Via::Smtp {
                    host: target.host.clone(),
                    port: target.smtp_port,
                },
                from: address.clone(),
                to: address,
            };
            (target, credentials, send)
        }
        Some(to) => {
            let receiver = super::credentials(&to.credentials_dir).await?;
            let Some(port) = target.submission_port else {
                return Err(ProbeError::new(
                    Reason::Error,
                    "the sending mail server has no submission port",
                ));
            };
            let send = Send {
                via: Via::Submission {
                    host: target.host.clone(),
                    port,
                    login: lettre::transport::smtp::authentication::Credentials::new(
                        credentials.username.clone(),
                        credentials.password.clone(),
                    ),
                },
                from: mailbox_address(&credentials.username, target.domain.as_deref())?,
                to: mailbox_address(&receiver.username, to.target.domain.as_deref())?,
            };
            (&to.target, receiver, send)
        }
    };
    let Some(imap_port) = reader.imap_port else {
        return Err(ProbeError::new(
            Reason::Error,
            "the mail server has no IMAP port; reading back over POP3 is not supported",
        ));
    };
    let prefix = token_prefix(&context.host, &config.name);
    let token = format!("{prefix}{}", super::random_hex(8));

    let mut session = match tokio::time::timeout_at(
        deadline,
        login(&reader.host, imap_port, &reader_credentials),
    )
    .await
    {
        Ok(r) => r?,
        Err(_) => return Err(super::timed_out(timeout)),
    };
    let result = match tokio::time::timeout_at(
        deadline,
        deliver_and_find(&mut session, &send, &token),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(ProbeError::new(
            Reason::NotDelivered,
            format!(
                "the probe did not arrive in {} within the timeout of {timeout:?}",
                send.to
            ),
        )),
    };
    // Delete this run's probe and any earlier one that came after its run gave up.
    let cleaned = tokio::time::timeout(CLEANUP_TIME, delete_probes(&mut session, &prefix)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), session.logout()).await;
    match (result, cleaned) {
        (Ok(success), Ok(Ok(0))) => Err(ProbeError::new(
            Reason::Error,
            format!(
                "the probe was found but could not be deleted ({})",
                success.detail
            ),
        )),
        (Ok(success), Ok(Ok(_))) => Ok(success),
        (Ok(_), Ok(Err(e))) => Err(e),
        (Ok(_), Err(_)) => Err(ProbeError::new(
            Reason::Timeout,
            "deleting the probe over IMAP did not finish in time",
        )),
        (Err(e), _) => Err(e),
    }
}

async fn login(
    host: &str,
    port: u16,
    credentials: &Credentials,
) -> Result<Session<TcpStream>, ProbeError> {
    let stream = TcpStream::connect((host, port)).await.map_err(|e| {
        ProbeError::new(
            Reason::ConnectFailed,
            format!("IMAP: cannot connect to {host}:{port}: {e}"),
        )
    })?;
    let mut client = async_imap::Client::new(stream);
    match client.read_response().await {
        Ok(Some(_greeting)) => {}
        Ok(None) => {
            return Err(ProbeError::new(
                Reason::ConnectFailed,
                format!("IMAP: {host}:{port} closed the connection before its greeting"),
            ));
        }
        Err(e) => {
            return Err(ProbeError::new(
                Reason::ConnectFailed,
                format!("IMAP: no greeting from {host}:{port}: {e}"),
            ));
        }
    }
    match client
        .login(&credentials.username, &credentials.password)
        .await
    {
        Ok(session) => Ok(session),
        Err((async_imap::error::Error::No(text), _)) => {
            // The probe speaks IMAP without TLS: a server that takes passwords only over TLS
            // refuses it whatever the password.
            let hint = if text.contains("PRIVACYREQUIRED") {
                " (this client logs in without TLS: the server needs allowPlaintextAuth: true)"
            } else {
                ""
            };
            Err(ProbeError::new(
                Reason::AuthFailed,
                format!(
                    "IMAP LOGIN as {} refused: {}{hint}",
                    credentials.username,
                    text.trim()
                ),
            ))
        }
        Err((e, _)) => Err(imap_error("LOGIN", &e)),
    }
}

fn imap_error(what: &str, e: &async_imap::error::Error) -> ProbeError {
    let reason = if super::is_connect_error(e) {
        Reason::ConnectFailed
    } else {
        Reason::Error
    };
    ProbeError::new(reason, format!("IMAP {what}: {}", chain(e)))
}

/// How the probe leaves: to the server's SMTP port (a local mailbox needs no login), or
/// through its submission port as a user (mail for another host).
enum Via {
    Smtp {
        host: String,
        port: u16,
    },
    Submission {
        host: String,
        port: u16,
        login: lettre::transport::smtp::authentication::Credentials,
    },
}

/// One probe message's way.
struct Send {
    via: Via,
    from: String,
    to: String,
}

impl Send {
    fn server(&self) -> String {
        match &self.via {
            Via::Smtp { host, port } => format!("SMTP to {host}:{port}"),
            Via::Submission { host, port, .. } => format!("submission to {host}:{port}"),
        }
    }
}

async fn deliver_and_find(
    session: &mut Session<TcpStream>,
    send: &Send,
    token: &str,
) -> Result<Success, ProbeError> {
    session
        .select("INBOX")
        .await
        .map_err(|e| imap_error("SELECT INBOX", &e))?;
    let sent_at = std::time::Instant::now();
    send_probe(send, token).await?;
    let sent = sent_at.elapsed();
    let query = format!("SUBJECT \"{token}\"");
    loop {
        session.noop().await.map_err(|e| imap_error("NOOP", &e))?;
        let found = session
            .search(&query)
            .await
            .map_err(|e| imap_error("SEARCH", &e))?;
        if !found.is_empty() {
            let delivery = sent_at.elapsed();
            let detail = match &send.via {
                Via::Smtp { .. } => {
                    format!("a probe sent over SMTP to {} arrived over IMAP", send.to)
                }
                Via::Submission { .. } => format!(
                    "a probe {} sent through submission to {} arrived over IMAP",
                    send.from, send.to
                ),
            };
            return Ok(Success::new(detail)
                .timing("smtp", sent)
                .timing("delivery", delivery));
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn send_probe(send: &Send, token: &str) -> Result<(), ProbeError> {
    let parse = |address: &str| -> Result<Mailbox, ProbeError> {
        address.parse().map_err(|e| {
            ProbeError::new(
                Reason::Error,
                format!("{address:?} is not a mail address: {e}"),
            )
        })
    };
    let domain = send.from.rsplit('@').next().unwrap_or("localhost");
    let message = Message::builder()
        .from(parse(&send.from)?)
        .to(parse(&send.to)?)
        .subject(format!("hostrole probe {token}"))
        .message_id(Some(format!("<{token}@{domain}>")))
        .header(ContentType::TEXT_PLAIN)
        .body(format!(
            "A probe of the hostrole mail client ({token}). It deletes this message once it has arrived.\r\n"
        ))
        .map_err(|e| ProbeError::new(Reason::Error, format!("cannot build the probe: {e}")))?;
    let (host, port) = match &send.via {
        Via::Smtp { host, port } | Via::Submission { host, port, .. } => (host, *port),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
        .port(port)
        .hello_name(ClientId::Domain("hostrole-agent".into()))
        .timeout(Some(Duration::from_secs(30)));
    if let Via::Submission { login, .. } = &send.via {
        builder = builder.credentials(login.clone()).authentication(vec![
            lettre::transport::smtp::authentication::Mechanism::Plain,
            lettre::transport::smtp::authentication::Mechanism::Login,
        ]);
    }
    let transport = builder.build();
    transport.send(message).await.map(|_| ()).map_err(|e| {
        let what = send.server();
        if super::is_connect_error(&e) {
            ProbeError::new(
                Reason::ConnectFailed,
                format!("{what}: cannot connect: {}", chain(&e)),
            )
        } else if e.is_timeout() {
            ProbeError::new(Reason::Timeout, format!("{what}: timed out"))
        } else if e.status().is_some_and(|code| code.to_string() == "535") {
            ProbeError::new(
                Reason::AuthFailed,
                format!("{what}: the login was refused: {}", chain(&e)),
            )
        } else if e.is_permanent() || e.is_transient() {
            ProbeError::new(
                Reason::NotDelivered,
                format!("{what}: the server refused the probe: {}", chain(&e)),
            )
        } else {
            ProbeError::new(Reason::Error, format!("{what}: {}", chain(&e)))
        }
    })
}

/// Deletes every probe of this client (`SUBJECT <prefix>`); returns how many.
async fn delete_probes(
    session: &mut Session<TcpStream>,
    prefix: &str,
) -> Result<usize, ProbeError> {
    session.noop().await.map_err(|e| imap_error("NOOP", &e))?;
    let found = session
        .search(format!("SUBJECT \"{prefix}\""))
        .await
        .map_err(|e| imap_error("SEARCH", &e))?;
    if found.is_empty() {
        return Ok(0);
    }
    let mut seqs: Vec<u32> = found.into_iter().collect();
    seqs.sort_unstable();
    let set = seqs
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    {
        let updates = session
            .store(&set, "+FLAGS.SILENT (\\Deleted)")
            .await
            .map_err(|e| imap_error("STORE", &e))?;
        let _: Vec<_> = updates
            .try_collect()
            .await
            .map_err(|e| imap_error("STORE", &e))?;
    }
    {
        let expunged = session
            .expunge()
            .await
            .map_err(|e| imap_error("EXPUNGE", &e))?;
        let _: Vec<_> = expunged
            .try_collect()
            .await
            .map_err(|e| imap_error("EXPUNGE", &e))?;
    }
    Ok(seqs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_goes_to_the_users_own_mailbox() {
        assert_eq!(
            mailbox_address("bob", Some("office.lan")).expect("address"),
            "bob@office.lan"
        );
        assert_eq!(
            mailbox_address("bob@home.lan", Some("office.lan")).expect("address"),
            "bob@home.lan"
        );
        assert_eq!(
            mailbox_address("bob", None).map_err(|e| e.reason),
            Err(Reason::Error)
        );
    }

    #[test]
    fn tokens_of_one_client_share_a_prefix() {
        assert_eq!(
            token_prefix("laptop-0", "mail-1"),
            "hostrole-probe-laptop-0-mail-1-"
        );
        assert_eq!(token_prefix("a.b", "m"), "hostrole-probe-a-b-m-");
    }
}
