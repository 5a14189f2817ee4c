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

/// SASL PLAIN from its base64 form: (authcid, password); see [`hostrole_proto::sasl::plain`].
pub fn plain(b64: &[u8]) -> Option<(String, String)> {
    hostrole_proto::sasl::plain(&decode(b64)?)
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
