//! SMTP command lines: the parser never panics, and what it accepts is well-formed.
#![no_main]

// The parsers live in hostrole-proto, which depends on serde alone: nothing of the servers is
// built with sanitizers.
use hostrole_proto::smtp as parse;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    match parse::parse(line) {
        Ok(parse::Command::Mail { from: Some(a), .. }) | Ok(parse::Command::Rcpt { to: a, .. }) => {
            assert!(!a.local.is_empty() && !a.domain.is_empty());
            assert!(a.local.len() <= 64 && a.domain.len() <= 255);
        }
        Ok(parse::Command::Helo(name)) | Ok(parse::Command::Ehlo(name)) => {
            assert!(!name.is_empty() && !name.contains(' '));
        }
        _ => {}
    }
});
