//! The peer protocol's signed envelope: the `Authorization` header of a request and the
//! `X-Hostrole-Reply` header of an answer, parsed and written without any cryptography (that is
//! in `hostrole-p2p`'s `auth`), and the peer id that carries its owner's public key.
//!
//! ```text
//! Authorization: HostRole-Ed25519 peer=<id>, ts=<unix s>, nonce=<32 hex>, body=<64 hex>, mac=<64 hex>, sig=<128 hex>
//! X-Hostrole-Reply: peer=<id>, nonce=<32 hex>, body=<64 hex>, mac=<64 hex>, sig=<128 hex>
//! ```
//!
//! A peer id is `<name>.<64 hex digits of its Ed25519 public key>`: whoever signs as an id must
//! hold the key the id names, so no member of a network can act as another.

use std::fmt;

/// The request scheme's name in the `Authorization` header.
pub const SCHEME: &str = "HostRole-Ed25519";
/// The header that authenticates an answer.
pub const REPLY_HEADER: &str = "x-hostrole-reply";
/// Longest name part of a peer id (a DNS label: a pod name fits).
pub const MAX_NAME: usize = 63;

/// Why a header is not a well-formed envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Malformed {}

/// A request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAuth {
    pub peer: String,
    pub ts: u64,
    pub nonce: [u8; 16],
    /// BLAKE3 of the request body (of nothing for a GET).
    pub body: [u8; 32],
    /// HMAC-SHA256 with the network's secret: the sender is a member.
    pub mac: [u8; 32],
    /// Ed25519 by the key the peer id names: the sender is that peer.
    pub sig: [u8; 64],
}

/// An answer's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyAuth {
    /// The answering peer; absent when the index answers (it has no peer identity).
    pub peer: Option<String>,
    /// The request's nonce: an answer belongs to one request and cannot be replayed to another.
    pub nonce: [u8; 16],
    /// BLAKE3 of the answer's body.
    pub body: [u8; 32],
    pub mac: [u8; 32],
    /// Present with `peer`.
    pub sig: Option<[u8; 64]>,
}

/// What a request's signatures cover.
pub fn request_message(
    method: &str,
    path_and_query: &str,
    peer: &str,
    ts: u64,
    nonce: &[u8; 16],
    body: &[u8; 32],
) -> String {
    format!(
        "hostrole-request\n{method}\n{path_and_query}\n{peer}\n{ts}\n{}\n{}",
        hex(nonce),
        hex(body)
    )
}

/// What an answer's signatures cover.
pub fn reply_message(status: u16, peer: Option<&str>, nonce: &[u8; 16], body: &[u8; 32]) -> String {
    format!(
        "hostrole-reply\n{status}\n{}\n{}\n{}",
        peer.unwrap_or("-"),
        hex(nonce),
        hex(body)
    )
}

impl RequestAuth {
    /// Parses `HostRole-Ed25519 peer=…, ts=…, nonce=…, body=…, mac=…, sig=…` (any order, each once).
    pub fn parse(value: &str) -> Result<RequestAuth, Malformed> {
        let rest = value
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(Malformed("expected the HostRole-Ed25519 scheme"))?;
        let f = Fields::parse(rest, &["peer", "ts", "nonce", "body", "mac", "sig"])?;
        let peer = f.get(0).ok_or(Malformed("no peer"))?;
        if key_of_peer_id(peer).is_none() {
            return Err(Malformed(
                "peer is not <name>.<64 hex digits of its Ed25519 key>",
            ));
        }
        let ts = f
            .get(1)
            .ok_or(Malformed("no ts"))?
            .parse::<u64>()
            .map_err(|_| Malformed("ts is not a number"))?;
        Ok(RequestAuth {
            peer: peer.to_string(),
            ts,
            nonce: unhex(f.get(2).ok_or(Malformed("no nonce"))?, "nonce")?,
            body: unhex(f.get(3).ok_or(Malformed("no body"))?, "body")?,
            mac: unhex(f.get(4).ok_or(Malformed("no mac"))?, "mac")?,
            sig: unhex(f.get(5).ok_or(Malformed("no sig"))?, "sig")?,
        })
    }

    pub fn header(&self) -> String {
        format!(
            "{SCHEME} peer={}, ts={}, nonce={}, body={}, mac={}, sig={}",
            self.peer,
            self.ts,
            hex(&self.nonce),
            hex(&self.body),
            hex(&self.mac),
            hex(&self.sig)
        )
    }
}

impl ReplyAuth {
    pub fn parse(value: &str) -> Result<ReplyAuth, Malformed> {
        let f = Fields::parse(value, &["peer", "nonce", "body", "mac", "sig"])?;
        let peer = f.get(0).map(str::to_string);
        if peer.as_deref().is_some_and(|p| key_of_peer_id(p).is_none()) {
            return Err(Malformed(
                "peer is not <name>.<64 hex digits of its Ed25519 key>",
            ));
        }
        let sig = f.get(4).map(|s| unhex(s, "sig")).transpose()?;
        if peer.is_some() != sig.is_some() {
            return Err(Malformed("peer and sig come together"));
        }
        Ok(ReplyAuth {
            peer,
            nonce: unhex(f.get(1).ok_or(Malformed("no nonce"))?, "nonce")?,
            body: unhex(f.get(2).ok_or(Malformed("no body"))?, "body")?,
            mac: unhex(f.get(3).ok_or(Malformed("no mac"))?, "mac")?,
            sig,
        })
    }

    pub fn header(&self) -> String {
        let mut out = String::new();
        if let Some(p) = &self.peer {
            out.push_str(&format!("peer={p}, "));
        }
        out.push_str(&format!(
            "nonce={}, body={}, mac={}",
            hex(&self.nonce),
            hex(&self.body),
            hex(&self.mac)
        ));
        if let Some(s) = &self.sig {
            out.push_str(&format!(", sig={}", hex(s)));
        }
        out
    }
}

/// `key=value` pairs separated by `, `, each key known and given at most once.
struct Fields<'a> {
    values: Vec<Option<&'a str>>,
}

impl<'a> Fields<'a> {
    fn parse(text: &'a str, keys: &[&str]) -> Result<Fields<'a>, Malformed> {
        if text.len() > 1024 {
            return Err(Malformed("longer than 1024 bytes"));
        }
        let mut values = vec![None; keys.len()];
        for part in text.split(',') {
            let (key, value) = part
                .trim()
                .split_once('=')
                .ok_or(Malformed("expected key=value pairs"))?;
            let at = keys
                .iter()
                .position(|k| *k == key)
                .ok_or(Malformed("unknown key"))?;
            if values[at].replace(value).is_some() {
                return Err(Malformed("a key is given twice"));
            }
        }
        Ok(Fields { values })
    }

    fn get(&self, at: usize) -> Option<&'a str> {
        self.values.get(at).copied().flatten()
    }
}

/// The id of the peer named `name` with public key `key`: `<name>.<hex key>`. `name` is cut to
/// [`MAX_NAME`] characters of `[A-Za-z0-9_-]` (others dropped; empty becomes `peer`).
pub fn peer_id(name: &str, key: &[u8; 32]) -> String {
    let mut clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(MAX_NAME)
        .collect();
    if clean.is_empty() {
        clean.push_str("peer");
    }
    format!("{clean}.{}", hex(key))
}

/// The public key a peer id names, when it is `<name>.<64 hex>` with a valid name.
pub fn key_of_peer_id(id: &str) -> Option<[u8; 32]> {
    let (name, key) = id.rsplit_once('.')?;
    let name_ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if !name_ok || key.len() != 64 || key.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    unhex(key, "key").ok()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// Exactly `N` bytes of hex.
pub fn unhex<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], Malformed> {
    let bad = Malformed(match what {
        "nonce" => "nonce is not 32 hex digits",
        "body" => "body is not 64 hex digits",
        "mac" => "mac is not 64 hex digits",
        "sig" => "sig is not 128 hex digits",
        _ => "not hex of the expected length",
    });
    let bytes = text.as_bytes();
    if bytes.len() != N * 2 {
        return Err(bad);
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0]).ok_or(bad)? << 4) | digit(pair[1]).ok_or(bad)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RequestAuth {
        RequestAuth {
            peer: peer_id("family-0", &[7; 32]),
            ts: 1000,
            nonce: [1; 16],
            body: [2; 32],
            mac: [3; 32],
            sig: [4; 64],
        }
    }

    #[test]
    fn headers_round_trip() {
        let a = sample();
        assert_eq!(RequestAuth::parse(&a.header()), Ok(a));
        let r = ReplyAuth {
            peer: Some(peer_id("x", &[9; 32])),
            nonce: [1; 16],
            body: [2; 32],
            mac: [3; 32],
            sig: Some([4; 64]),
        };
        assert_eq!(ReplyAuth::parse(&r.header()), Ok(r.clone()));
        let index = ReplyAuth {
            peer: None,
            sig: None,
            ..r
        };
        assert_eq!(ReplyAuth::parse(&index.header()), Ok(index));
    }

    #[test]
    fn a_peer_id_names_its_key() {
        let id = peer_id("family-0", &[0xab; 32]);
        assert_eq!(id, format!("family-0.{}", "ab".repeat(32)));
        assert_eq!(key_of_peer_id(&id), Some([0xab; 32]));
        assert_eq!(
            peer_id("a/b c", &[0; 32]),
            format!("abc.{}", "00".repeat(32))
        );
        assert!(crate::peer::valid_peer_id(&peer_id(
            &"n".repeat(200),
            &[0; 32]
        )));
        for bad in [
            "family-0".to_string(),
            format!("family-0.{}", "ab".repeat(31)),
            format!(".{}", "ab".repeat(32)),
            format!("a/b.{}", "ab".repeat(32)),
            format!("a.{}", "AB".repeat(32)),
        ] {
            assert_eq!(key_of_peer_id(&bad), None, "{bad}");
        }
    }

    #[test]
    fn malformed_headers_are_named() {
        let good = sample().header();
        for bad in [
            "Basic abc".to_string(),
            good.replace("ts=1000", "ts=x"),
            good.replace("nonce=01", "nonce=zz"),
            good.replace(", sig=", ", sag="),
            format!("{good}, ts=1"),
            good.replace("family-0.", "family-0"),
            format!("{good}{}", "0".repeat(2000)),
        ] {
            assert!(RequestAuth::parse(&bad).is_err(), "{bad}");
        }
        assert!(ReplyAuth::parse("nonce=00").is_err());
    }
}
