//! Bounces: delivery status notifications (RFC 3464) for recipients the queue gave up on.
//!
//! A `multipart/report; report-type=delivery-status` message (RFC 6522) with three parts: a
//! human-readable explanation, the `message/delivery-status` fields (one per-message block with
//! `Reporting-MTA` and `Arrival-Date`, one block per failed recipient with `Final-Recipient`,
//! `Action: failed`, `Status` and `Diagnostic-Code`), and the original message's header
//! (`text/rfc822-headers`). It is sent with the null reverse-path `<>`, so it is never bounced
//! itself. The MIME structure is mail-builder's; only the field lines are ours.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

/// A recipient the queue gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub recipient: String,
    /// RFC 3463 status, `5.x.x`.
    pub status: String,
    /// The remote's reply (`smtp; 550 5.1.1 ...`) or our reason.
    pub diagnostic: String,
}

/// Everything a bounce says.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// This host's name (`Reporting-MTA: dns; <hostname>`).
    pub hostname: &'a str,
    /// The original sender, to whom the bounce goes.
    pub to: &'a str,
    /// When the message was queued (seconds since the epoch).
    pub arrival: u64,
    /// The queue id of the original message.
    pub queue_id: &'a str,
    pub failures: &'a [Failure],
    /// The original message's header block.
    pub original_headers: &'a [u8],
}

/// A field value on one line of printable ASCII (the remote's text could hold anything):
/// line breaks and other controls become spaces, runs of spaces one, anything else `?`.
fn field(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let c = if c.is_ascii_graphic() {
            c
        } else if c.is_whitespace() || c.is_control() {
            ' '
        } else {
            '?'
        };
        if !(c == ' ' && (out.is_empty() || out.ends_with(' '))) {
            out.push(c);
        }
    }
    out.trim_end().to_string()
}

/// The header block of a message: its lines up to the first empty line.
pub fn header_block(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
        .unwrap_or(message.len());
    &message[..end]
}

/// The `message/delivery-status` body.
pub fn status_fields(report: &Report<'_>) -> String {
    let mut text = format!(
        "Reporting-MTA: dns; {}\r\nX-Hostrole-Queue-ID: {}\r\nArrival-Date: {}\r\n",
        field(report.hostname),
        field(report.queue_id),
        crate::time::rfc5322(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(report.arrival)
        ),
    );
    for failure in report.failures {
        text.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\nDiagnostic-Code: {}\r\n",
            field(&failure.recipient),
            field(&failure.status),
            diagnostic_code(&failure.diagnostic),
        ));
    }
    text
}

/// `smtp; <reply>` when the diagnostic is an SMTP reply, else `x-hostrole; <reason>`.
fn diagnostic_code(diagnostic: &str) -> String {
    let d = field(diagnostic);
    let smtp = d.len() >= 3 && d.as_bytes()[..3].iter().all(u8::is_ascii_digit);
    if smtp {
        format!("smtp; {d}")
    } else {
        format!("x-hostrole; {d}")
    }
}

/// The whole bounce, ready to store or send; `message_id` without angle brackets.
pub fn build(report: &Report<'_>, message_id: String) -> Vec<u8> {
    let mut human = format!(
        "This is the mail system at host {}.\r\n\r\nYour message could not be delivered to one or more recipients.\r\nIt is attached below (its header only).\r\n\r\n",
        field(report.hostname)
    );
    for failure in report.failures {
        human.push_str(&format!(
            "<{}>: {}\r\n",
            field(&failure.recipient),
            field(&failure.diagnostic)
        ));
    }
    let parts = vec![
        MimePart::new(ContentType::new("text/plain"), human),
        // Bytes, not text: no charset parameter, which message/delivery-status does not have.
        MimePart::new(
            ContentType::new("message/delivery-status"),
            status_fields(report).into_bytes(),
        )
        .transfer_encoding("7bit"),
        MimePart::new(
            ContentType::new("text/rfc822-headers"),
            report.original_headers.to_vec(),
        ),
    ];
    let body = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        parts,
    );
    let from = format!("MAILER-DAEMON@{}", field(report.hostname));
    MessageBuilder::new()
        .from(("Mail Delivery System".to_string(), from))
        .to(report.to.to_string())
        .subject("Undelivered Mail Returned to Sender")
        .message_id(message_id)
        .date(crate::queue::now())
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(body)
        .write_to_vec()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounce_is_a_delivery_status_report() {
        let failures = [Failure {
            recipient: "nobody@b.example".into(),
            status: "5.1.1".into(),
            diagnostic: "550 5.1.1 <nobody@b.example>: no such user here\r\n\u{1b}".into(),
        }];
        let original = b"Received: x\r\nSubject: hello\r\n\r\nthe body stays out\r\n";
        let report = Report {
            hostname: "mail.a.example",
            to: "alice@a.example",
            arrival: 0,
            queue_id: "1.2.P3Q4",
            failures: &failures,
            original_headers: header_block(original),
        };
        let fields = status_fields(&report);
        assert!(fields.contains("Reporting-MTA: dns; mail.a.example\r\n"));
        assert!(fields.contains("\r\n\r\nFinal-Recipient: rfc822; nobody@b.example\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <nobody@b.example>: no such user here\r\n"));
        let text = String::from_utf8(build(&report, "b1@mail.a.example".into())).expect("ascii");
        assert!(
            text.contains("Message-ID: <b1@mail.a.example>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: message/delivery-status\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: multipart/report; report-type=\"delivery-status\"")
                || text.contains("Content-Type: multipart/report; report-type=delivery-status"),
            "{text}"
        );
        assert!(text.contains("Content-Type: message/delivery-status"));
        assert!(text.contains("Content-Type: text/rfc822-headers"));
        assert!(text.contains("Subject: hello"));
        assert!(!text.contains("the body stays out"));
        assert!(text.contains("To: <alice@a.example>") || text.contains("To: alice@a.example"));
        assert_eq!(header_block(b"A: b\n\nbody"), b"A: b\n");
        assert_eq!(
            diagnostic_code("lifetime over"),
            "x-hostrole; lifetime over"
        );
    }
}
