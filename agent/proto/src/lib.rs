//! Pure parsers and wire types of the agent's protocols: SMTP, IMAP and POP3 command lines, IRC
//! lines, the peer protocol's bodies and signed envelope, and the request paths and WebDAV
//! `Destination` headers of the web and file roles. No I/O and no async: the servers in
//! `hostrole-mail`, `hostrole-chat`, `hostrole-p2p` and `hostrole-agent-core` and the fuzz
//! targets in `fuzz/` depend on this crate alone.

pub mod dav_path;
pub mod envelope;
pub mod imap;
pub mod imap_match;
pub mod irc;
pub mod peer;
pub mod pop3;
pub mod sasl;
pub mod smtp;
