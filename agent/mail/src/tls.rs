//! STARTTLS (SMTP, RFC 3207), STARTTLS (IMAP), STLS (POP3, RFC 2595) and the implicit-TLS ports
//! (IMAPS, POP3S, submissions; RFC 8314) share one rustls server configuration: agent-core's,
//! which reads the PEM files again when they change, so a rotated certificate reaches every new
//! handshake on every mail port without a restart and without closing a listener.

use hostrole_config::TlsFiles;
use tokio_rustls::TlsAcceptor;

use super::MailError;

pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, MailError> {
    // No ALPN: mail protocols do not negotiate one.
    hostrole_agent_core::tls::acceptor(files, &[]).map_err(|e| MailError::Tls {
        path: e.path,
        what: e.what,
    })
}
