//! The peer protocol shared by the index and peer roles: what travels on the wire ([`wire`]) and
//! how every request proves it comes from a member of the network ([`auth`]). Neither role
//! reaches into the other; both speak this.

pub mod auth;
pub mod wire;

/// A network name is a DNS label: it names a secret file, so it must never be a path.
pub fn valid_network(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A peer id: 1–128 characters of `[A-Za-z0-9._-]`.
pub fn valid_peer_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `host:port` with a port number.
pub fn valid_address(address: &str) -> bool {
    address.len() <= 255
        && address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// A content hash as the protocol writes it: 64 lower-case hex digits (BLAKE3).
pub fn valid_hash(hash: &str) -> bool {
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_be_paths_are_refused() {
        assert!(valid_network("family"));
        for bad in ["", "../x", "a/b", "-a", "A", ".hidden"] {
            assert!(!valid_network(bad), "{bad}");
        }
        assert!(valid_peer_id("family-0.x_y"));
        assert!(!valid_peer_id("a b") && !valid_peer_id("a/b"));
        assert!(valid_hash(&"ab".repeat(32)));
        assert!(!valid_hash(&"AB".repeat(32)) && !valid_hash("abc"));
    }
}
