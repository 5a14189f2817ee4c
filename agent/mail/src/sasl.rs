//! SASL PLAIN (RFC 4616) and LOGIN decoding, shared by SMTP AUTH and IMAP AUTHENTICATE.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Decodes base64 text (surrounding spaces ignored).
pub fn decode(b64: &[u8]) -> Option<Vec<u8>> {
    STANDARD.decode(b64.trim_ascii()).ok()
}

#[cfg(test)]
pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// `[authzid] NUL authcid NUL password` → (authcid, password). An authorization identity other
/// than the authentication identity is refused: nobody may act for another user.
pub fn plain(b64: &[u8]) -> Option<(String, String)> {
    let raw = decode(b64)?;
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

/// One LOGIN step: a base64 UTF-8 string.
pub fn text(b64: &[u8]) -> Option<String> {
    String::from_utf8(decode(b64)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_login() {
        assert_eq!(
            plain(encode(b"\0alice\0s3cret").as_bytes()),
            Some(("alice".into(), "s3cret".into()))
        );
        assert_eq!(
            plain(encode(b"alice\0alice\0pw").as_bytes()),
            Some(("alice".into(), "pw".into()))
        );
        assert_eq!(plain(encode(b"bob\0alice\0pw").as_bytes()), None);
        assert_eq!(plain(b"!!!"), None);
        assert_eq!(text(b"YWxpY2U="), Some("alice".into()));
    }
}
