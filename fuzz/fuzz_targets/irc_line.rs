//! IRC lines: the parser never panics, and what it accepts holds no CR, LF or NUL (a relayed CR
//! would let a sender spoof another's line), only client tags, and one verb.
#![no_main]

use hostrole_proto::irc;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(msg) = irc::parse(line) {
        assert!(!msg.verb.is_empty() && !msg.verb.contains(' '));
        assert!(!line.contains(['\r', '\n', '\0']));
        for tag in msg.client_tags.split(';').filter(|t| !t.is_empty()) {
            assert!(tag.starts_with('+'), "only client tags are kept: {tag}");
        }
        // Only the last parameter may hold a space (the trailing one).
        if let Some((_, init)) = msg.params.split_last() {
            assert!(init.iter().all(|p| !p.contains(' ') && !p.is_empty()));
        }
    }
});
