//! Reading what a manifest writes about time and client targets, shared by the operator and
//! the standalone agent.

use std::time::Duration;

use crate::agent::MailTarget;

/// A Go-style duration as the CRD accepts it (`500ms`, `30s`, `5m`, `1h30m`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else {
            return None;
        };
        total = total.checked_add(unit.checked_mul(u32::try_from(value).ok()?)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

/// Why a mail client URL cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{url:?} is not a mail server address: write smtp://HOST:PORT, optionally with ?imap=PORT (or ?pop3=PORT) and &domain=DOMAIN ({why})"
)]
pub struct MailUrlError {
    pub url: String,
    pub why: &'static str,
}

/// A mail client's explicit target: `smtp://host[:port][/][?imap=PORT|pop3=PORT][&domain=D]`.
/// SMTP defaults to 25 and IMAP to 143 when neither IMAP nor POP3 is named.
pub fn mail_target_from_url(url: &str) -> Result<MailTarget, MailUrlError> {
    let err = |why| MailUrlError {
        url: url.to_string(),
        why,
    };
    let rest = url
        .strip_prefix("smtp://")
        .ok_or_else(|| err("the scheme must be smtp"))?;
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, q),
        None => (rest, ""),
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.contains('/') || authority.contains('@') {
        return Err(err("no path or user belongs in it"));
    }
    let (host, smtp_port) =
        split_host_port(authority, 25).ok_or_else(|| err("bad host or port"))?;
    let mut target = MailTarget {
        host,
        smtp_port,
        imap_port: None,
        pop3_port: None,
        domain: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| err("a query item has no '='"))?;
        match key {
            "imap" => target.imap_port = Some(value.parse().map_err(|_| err("bad imap port"))?),
            "pop3" => target.pop3_port = Some(value.parse().map_err(|_| err("bad pop3 port"))?),
            "domain" if !value.is_empty() => target.domain = Some(value.to_string()),
            _ => return Err(err("only imap, pop3 and domain are understood")),
        }
    }
    if target.imap_port.is_none() && target.pop3_port.is_none() {
        target.imap_port = Some(143);
    }
    Ok(target)
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, default_port),
    };
    (!host.is_empty() && port != 0).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2m5s"), Some(Duration::from_secs(125)));
        for bad in ["", "30", "s", "30 s", "1d", "-1s", "1.5s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn mail_urls_name_smtp_and_a_reader() {
        let t = mail_target_from_url("smtp://mail.lan:2525?imap=1143&domain=office.lan").unwrap();
        assert_eq!(
            t,
            MailTarget {
                host: "mail.lan".into(),
                smtp_port: 2525,
                imap_port: Some(1143),
                pop3_port: None,
                domain: Some("office.lan".into()),
            }
        );
        let t = mail_target_from_url("smtp://mail.lan/").unwrap();
        assert_eq!((t.smtp_port, t.imap_port), (25, Some(143)));
        let t = mail_target_from_url("smtp://[fd00::1]:25?pop3=110").unwrap();
        assert_eq!(
            (t.host.as_str(), t.pop3_port, t.imap_port),
            ("fd00::1", Some(110), None)
        );
        for bad in [
            "http://mail.lan",
            "smtp://mail.lan:x",
            "smtp://mail.lan/inbox",
            "smtp://mail.lan?imap",
            "smtp://mail.lan?tls=1",
            "smtp://:25",
        ] {
            let e = mail_target_from_url(bad).expect_err(bad);
            assert!(e.to_string().contains("smtp://HOST:PORT"), "{e}");
        }
    }
}
