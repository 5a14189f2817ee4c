//! Pure parsers and wire types of the agent's protocols: SMTP, IMAP and POP3 command lines, and the
//! peer protocol's bodies and signed envelope. No I/O and no async: the servers in `hostrole-mail` and `hostrole-p2p`
//! and the fuzz targets in `fuzz/` depend on this crate alone.

pub mod envelope;
pub mod imap;
pub mod imap_match;
pub mod peer;
pub mod pop3;
pub mod smtp;
