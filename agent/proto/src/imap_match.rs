//! The matching IMAP commands do on client input, in time linear in what they look at:
//!
//! - [`list_matches`]: a LIST/LSUB pattern (`*` any run, `%` any run without the hierarchy
//!   delimiter) against a mailbox name, by simulating the pattern as a set of positions (at most
//!   `pattern × name` steps, no recursion, no backtracking: a pattern of thousands of wildcards
//!   used to take exponential time and one stack frame per byte). Patterns are capped at
//!   [`MAX_LIST_PATTERN`] bytes by the parser.
//! - [`contains_ignore_case`]: SEARCH's case-insensitive substring test, with `memchr::memmem`
//!   over ASCII-lowercased chunks of the haystack (no copy of a 25 MiB message, no O(n·m)
//!   window compare).

use memchr::memmem;

/// Longest reference + pattern a LIST or LSUB may give.
pub const MAX_LIST_PATTERN: usize = 1024;

/// Whether `name` matches the LIST `pattern` (reference already prepended), `delimiter` being
/// the hierarchy separator that `%` does not cross. `INBOX` is case-insensitive (RFC 3501
/// section 5.1): a name that is `INBOX` or starts with `INBOX<delimiter>` compares its first
/// five bytes ignoring case; everything else is compared exactly.
pub fn list_matches(pattern: &str, name: &str, delimiter: u8) -> bool {
    let p = pattern.as_bytes();
    let n = name.as_bytes();
    let inbox_prefix = n.len() >= 5
        && n[..5].eq_ignore_ascii_case(b"INBOX")
        && (n.len() == 5 || n[5] == delimiter);
    let same = |pc: u8, i: usize, nc: u8| {
        if inbox_prefix && i < 5 {
            pc.eq_ignore_ascii_case(&nc)
        } else {
            pc == nc
        }
    };
    // states[j]: the first j bytes of the pattern match the name read so far.
    let mut states = vec![false; p.len() + 1];
    let mut next = vec![false; p.len() + 1];
    states[0] = true;
    close_over_wildcards(p, &mut states);
    for (i, &nc) in n.iter().enumerate() {
        next.iter_mut().for_each(|s| *s = false);
        let mut any = false;
        for j in 0..p.len() {
            if !states[j] {
                continue;
            }
            match p[j] {
                b'*' => {
                    next[j] = true;
                    any = true;
                }
                b'%' => {
                    if nc != delimiter {
                        next[j] = true;
                        any = true;
                    }
                }
                c => {
                    if same(c, i, nc) {
                        next[j + 1] = true;
                        any = true;
                    }
                }
            }
        }
        if !any {
            return false;
        }
        close_over_wildcards(p, &mut next);
        std::mem::swap(&mut states, &mut next);
    }
    states[p.len()]
}

/// A wildcard may match nothing: a state before one is also a state after it.
fn close_over_wildcards(p: &[u8], states: &mut [bool]) {
    for j in 0..p.len() {
        if states[j] && matches!(p[j], b'*' | b'%') {
            states[j + 1] = true;
        }
    }
}

/// Bytes lowercased and searched at once; a match that spans two chunks is found through an
/// overlap of `needle - 1` bytes.
const CHUNK: usize = 64 * 1024;

/// Whether `haystack` contains `needle`, ASCII case ignored (an empty needle always matches).
pub fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    if needle.len() > haystack.len() {
        return false;
    }
    let needle = needle.to_ascii_lowercase();
    let finder = memmem::Finder::new(&needle);
    let overlap = needle.len() - 1;
    let mut lower = Vec::with_capacity(CHUNK.min(haystack.len()) + overlap);
    let mut start = 0;
    while start < haystack.len() {
        let end = (start + CHUNK + overlap).min(haystack.len());
        lower.clear();
        lower.extend(haystack[start..end].iter().map(u8::to_ascii_lowercase));
        if finder.find(&lower).is_some() {
            return true;
        }
        if end == haystack.len() {
            break;
        }
        start += CHUNK;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious recursive matcher, as a reference on small inputs.
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

    #[test]
    fn list_patterns() {
        assert!(list_matches("*", "INBOX", b'/'));
        assert!(list_matches("INBOX*", "INBOX", b'/'));
        assert!(list_matches("inbox", "INBOX", b'/'));
        assert!(list_matches("IN%", "INBOX", b'/'));
        assert!(list_matches("inbox/%", "INBOX/Sent", b'/'));
        assert!(
            !list_matches("sent", "Sent", b'/'),
            "only INBOX ignores case"
        );
        assert!(!list_matches("Sent", "INBOX", b'/'));
        assert!(list_matches("%", "Sent", b'/'));
        assert!(
            !list_matches("%", "Archive/2024", b'/'),
            "% stops at the delimiter"
        );
        assert!(list_matches("*", "Archive/2024", b'/'));
        assert!(list_matches("A*4", "Archive/2024", b'/'));
        assert!(!list_matches("", "INBOX", b'/'));
        // Against the reference on every short pattern over a small alphabet.
        let alphabet = [b'a', b'b', b'/', b'*', b'%'];
        let names: [&[u8]; 6] = [b"", b"a", b"ab", b"a/b", b"ba/ab", b"aab/b"];
        let mut pattern = Vec::new();
        for len in 0..=4u32 {
            for code in 0..alphabet.len().pow(len) {
                pattern.clear();
                let mut c = code;
                for _ in 0..len {
                    pattern.push(alphabet[c % alphabet.len()]);
                    c /= alphabet.len();
                }
                let p = std::str::from_utf8(&pattern).expect("ascii");
                for n in names {
                    let name = std::str::from_utf8(n).expect("ascii");
                    assert_eq!(
                        list_matches(p, name, b'/'),
                        reference(&pattern, n, b'/'),
                        "{p:?} against {name:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_worst_pattern_is_quick_and_shallow() {
        // Exponential for the recursive matcher, and one stack frame per byte.
        let pattern = "*%".repeat(MAX_LIST_PATTERN / 2) + "x";
        let name = "INBOX/".repeat(40);
        assert!(!list_matches(&pattern, &name, b'/'));
        let deep = "*".repeat(1 << 20);
        assert!(list_matches(&deep, "INBOX", b'/'));
    }

    #[test]
    fn substring_ignoring_case_across_chunks() {
        assert!(contains_ignore_case(b"Hello World", b"WORLD"));
        assert!(contains_ignore_case(b"abc", b""));
        assert!(!contains_ignore_case(b"ab", b"abc"));
        let mut big = vec![b'a'; 3 * CHUNK];
        let at = CHUNK - 2; // across the first chunk boundary
        big[at..at + 5].copy_from_slice(b"NeEdL");
        assert!(contains_ignore_case(&big, b"needl"));
        assert!(!contains_ignore_case(&big, b"needle"));
        let end = big.len() - 3;
        big[end..].copy_from_slice(b"xYz");
        assert!(contains_ignore_case(&big, b"XYZ"));
    }
}
