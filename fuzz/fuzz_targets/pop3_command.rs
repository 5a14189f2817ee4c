//! POP3 command lines: the parser never panics; message numbers are numbers.
#![no_main]

use hostrole_proto::pop3 as parse;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if let Ok(command) = parse::parse(line) {
        let _ = command.verb();
        if let parse::Command::User(name) = command {
            assert!(!name.is_empty() && !name.contains(' '));
        }
    }
});
