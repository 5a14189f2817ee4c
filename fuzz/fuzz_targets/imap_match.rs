//! The matching IMAP does on client input: LIST patterns against mailbox names, and SEARCH's
//! substring test. Input: `pattern NUL name NUL haystack NUL needle` (missing parts empty).
//! Neither may panic; on small inputs both agree with the obvious (exponential, quadratic)
//! definitions, and any input finishes in pattern × name steps (libFuzzer's `-timeout` catches
//! a return of the backtracking matcher).
#![no_main]

use hostrole_proto::imap_match::{contains_ignore_case, list_matches};

use libfuzzer_sys::fuzz_target;

fn reference(p: &[u8], n: &[u8], d: u8) -> bool {
    match p.split_first() {
        None => n.is_empty(),
        Some((b'*', rest)) => (0..=n.len()).any(|i| reference(rest, &n[i..], d)),
        Some((b'%', rest)) => (0..=n.len())
            .take_while(|i| *i == 0 || n[i - 1] != d)
            .any(|i| reference(rest, &n[i..], d)),
        Some((c, rest)) => n.first() == Some(c) && reference(rest, &n[1..], d),
    }
}

fuzz_target!(|input: &[u8]| {
    let mut parts = input.splitn(4, |b| *b == 0);
    let pattern = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let haystack = parts.next().unwrap_or_default();
    let needle = parts.next().unwrap_or_default();

    let got = list_matches(&pattern, &name, b'/');
    let is_inbox = name.len() >= 5 && name.as_bytes()[..5].eq_ignore_ascii_case(b"INBOX");
    let wildcards = pattern.bytes().filter(|b| matches!(b, b'*' | b'%')).count();
    if !is_inbox && wildcards <= 6 && name.len() <= 24 {
        assert_eq!(got, reference(pattern.as_bytes(), name.as_bytes(), b'/'));
    }

    let found = contains_ignore_case(haystack, needle);
    if haystack.len() <= 512 {
        let n = needle.to_ascii_lowercase();
        let expected = n.is_empty()
            || haystack
                .windows(n.len())
                .any(|w| w.to_ascii_lowercase() == n);
        assert_eq!(found, expected);
    }
});
