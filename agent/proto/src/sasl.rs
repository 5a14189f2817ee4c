//! SASL PLAIN (RFC 4616) after base64 decoding, shared by the mail role (SMTP AUTH, IMAP
//! AUTHENTICATE) and the chat role (IRCv3 `AUTHENTICATE`).

/// `[authzid] NUL authcid NUL password` → (authcid, password). An authorization identity other
/// than the authentication identity is refused: nobody may act for another user.
pub fn plain(raw: &[u8]) -> Option<(String, String)> {
    let mut parts = raw.split(|b| *b == 0);
    let authzid = parts.next()?;
    let authcid = std::str::from_utf8(parts.next()?).ok()?;
    let password = std::str::from_utf8(parts.next()?).ok()?;
    if parts.next().is_some() || authcid.is_empty() {
        return None;
    }
    if !authzid.is_empty() && authzid != authcid.as_bytes() {
        return None;
    }
    Some((authcid.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn plain_takes_the_authentication_identity_and_refuses_acting_for_another() {
        assert_eq!(
            plain(b"\0alice\0s3cret"),
            Some(("alice".into(), "s3cret".into()))
        );
        assert_eq!(
            plain(b"alice\0alice\0pw"),
            Some(("alice".into(), "pw".into()))
        );
        assert_eq!(plain(b"bob\0alice\0pw"), None);
        assert_eq!(plain(b"\0\0pw"), None);
        assert_eq!(plain(b"\0alice\0pw\0more"), None);
        assert_eq!(plain(b"\0alice"), None);
    }
}
