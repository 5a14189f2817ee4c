//! The print role's IPP message decoder (`hostrole_print::wire`): never panics, never reads
//! past what it was given or past `MAX_HEAD`, and a message it decodes encodes to bytes that
//! decode to the same message.
#![no_main]

use hostrole_print::wire::{MAX_HEAD, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((message, used)) = decode(data) {
        assert!(used <= data.len() && used <= MAX_HEAD);
        let again = encode(&message);
        let (back, n) = decode(&again).expect("our own encoding decodes");
        assert_eq!(back, message);
        assert_eq!(n, again.len());
    }
});
