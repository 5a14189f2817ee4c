//! A mail client's explicit target as the manifest writes it, read the same way by the operator
//! and the standalone agent.

use hostrole_config::MailTarget;

/// How a mail client URL is written.
pub const MAIL_URL_FORM: &str = "write it smtp://HOST[:PORT]?imap=PORT[&domain=DOMAIN]";

/// Why a mail client URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} {why} ({form})", form = MAIL_URL_FORM)]
pub struct MailUrlError {
    pub url: String,
    pub why: String,
}

/// `smtp://host[:port][?imap=PORT][&pop3=PORT][&domain=D]`: SMTP (25 by default) delivers the
/// probe, IMAP reads it back, so `imap` is required.
pub fn mail_target_from_url(url: &str) -> Result<MailTarget, MailUrlError> {
    let bad = |why: String| MailUrlError {
        url: url.to_string(),
        why,
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("is not a URL: {e}")))?;
    if parsed.scheme() != "smtp" {
        return Err(bad("must use the smtp scheme for a mail client".into()));
    }
    if !matches!(parsed.path(), "" | "/") || !parsed.username().is_empty() {
        return Err(bad(
            "holds a path or a user, which a mail client does not use".into(),
        ));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| bad("names no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let mut target = MailTarget {
        host,
        smtp_port: parsed.port().unwrap_or(25),
        submission_port: None,
        imap_port: None,
        pop3_port: None,
        domain: None,
    };
    for (key, value) in parsed.query_pairs() {
        let port = || {
            value
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(format!("has {key}={value}, which is not a port")))
        };
        match key.as_ref() {
            "imap" => target.imap_port = Some(port()?),
            "pop3" => target.pop3_port = Some(port()?),
            "domain" if !value.is_empty() => target.domain = Some(value.to_string()),
            other => {
                return Err(bad(format!(
                    "has the unknown parameter {other:?} (known: imap, pop3, domain)"
                )));
            }
        }
    }
    if target.imap_port.is_none() {
        return Err(bad(
            "needs ?imap=PORT: the mail client reads its probe back over IMAP".into(),
        ));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_urls_name_smtp_and_imap() {
        let t = mail_target_from_url("smtp://mail.lan:2525?imap=1143&domain=office.lan").unwrap();
        assert_eq!(
            t,
            MailTarget {
                host: "mail.lan".into(),
                smtp_port: 2525,
                submission_port: None,
                imap_port: Some(1143),
                pop3_port: None,
                domain: Some("office.lan".into()),
            }
        );
        let t = mail_target_from_url("smtp://mail.lan/?imap=143").unwrap();
        assert_eq!(t.smtp_port, 25);
        let t = mail_target_from_url("smtp://[fd00::1]:25?imap=143&pop3=110").unwrap();
        assert_eq!((t.host.as_str(), t.pop3_port), ("fd00::1", Some(110)));
        for (bad, why) in [
            ("http://mail.lan?imap=143", "smtp scheme"),
            ("smtp://mail.lan", "needs ?imap=PORT"),
            ("smtp://mail.lan:2525/inbox?imap=1", "path"),
            ("smtp://mail.lan?imap=x", "not a port"),
            ("smtp://mail.lan?imap=1&tls=1", "unknown parameter"),
        ] {
            let e = mail_target_from_url(bad).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
    }
}
