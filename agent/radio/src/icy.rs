//! ICY metadata: a listener that asks for it (`Icy-MetaData: 1`) gets a metadata block after
//! every [`METAINT`] bytes of audio. A block is one length byte (the number of 16-byte blocks
//! that follow) and `StreamTitle='…';` padded with NULs; a lone zero byte when the title has not
//! changed since the last block.

use bytes::{BufMut, Bytes, BytesMut};

/// Audio bytes between two metadata blocks (`icy-metaint`), as Icecast sends.
pub const METAINT: usize = 16000;

/// Longest metadata block body: the length byte counts 16-byte blocks, at most 255.
const MAX_BODY: usize = 255 * 16;

/// A title as a metadata field may carry it: no control characters (a NUL ends the block for
/// many players), and no `';`, which ends the field: players would read what follows as more
/// fields (`StreamUrl='…'` from a file name on the share, or a source's title).
fn field_safe(title: &str) -> String {
    title
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>()
        .replace("';", "' ;")
}

/// One metadata block for `title`.
pub fn block(title: &str) -> Bytes {
    let title = &field_safe(title);
    let prefix = "StreamTitle='";
    let suffix = "';";
    let room = MAX_BODY - prefix.len() - suffix.len();
    let mut cut = title.len().min(room);
    while !title.is_char_boundary(cut) {
        cut -= 1;
    }
    let body_len = prefix.len() + cut + suffix.len();
    let blocks = body_len.div_ceil(16);
    let mut out = BytesMut::with_capacity(1 + blocks * 16);
    out.put_u8(blocks as u8);
    out.put_slice(prefix.as_bytes());
    out.put_slice(&title.as_bytes()[..cut]);
    out.put_slice(suffix.as_bytes());
    out.resize(1 + blocks * 16, 0);
    out.freeze()
}

/// Interleaves metadata blocks into one listener's audio.
#[derive(Debug)]
pub struct Interleaver {
    interval: usize,
    /// Audio bytes still to send before the next block.
    until_block: usize,
    /// The title last sent, if any.
    sent: Option<String>,
}

impl Interleaver {
    pub fn new(interval: usize) -> Self {
        Self {
            interval: interval.max(1),
            until_block: interval.max(1),
            sent: None,
        }
    }

    /// Appends `audio` to `out` with a metadata block wherever the interval falls; `title` is
    /// the title now.
    pub fn push(&mut self, mut audio: Bytes, title: &str, out: &mut Vec<Bytes>) {
        while !audio.is_empty() {
            let n = self.until_block.min(audio.len());
            out.push(audio.split_to(n));
            self.until_block -= n;
            if self.until_block == 0 {
                self.until_block = self.interval;
                if self.sent.as_deref() == Some(title) {
                    out.push(Bytes::from_static(&[0]));
                } else {
                    out.push(block(title));
                    self.sent = Some(title.to_string());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_cannot_end_its_field_or_the_block() {
        let b = block("Song';StreamUrl='http://evil.example/';\0x");
        let text = String::from_utf8_lossy(&b[1..]);
        let text = text.trim_end_matches('\0');
        assert_eq!(
            text,
            "StreamTitle='Song' ;StreamUrl='http://evil.example/' ;x';"
        );
        assert_eq!(text.matches("';").count(), 1, "one field: {text}");
    }

    #[test]
    fn a_block_is_the_title_padded_to_16_bytes() {
        let b = block("Sine 440");
        assert_eq!(b[0], 2);
        assert_eq!(b.len(), 33);
        assert_eq!(&b[1..24], b"StreamTitle='Sine 440';");
        assert!(b[24..].iter().all(|&x| x == 0));
        // Exactly 16 bytes of body: one block, no padding.
        let b = block("a");
        assert_eq!((b[0], b.len()), (1, 17));
    }

    #[test]
    fn a_long_title_is_cut_on_a_character_boundary() {
        let title = "é".repeat(5000);
        let b = block(&title);
        assert_eq!(b[0], 255);
        assert_eq!(b.len(), 1 + 255 * 16);
        let text = std::str::from_utf8(&b[1..])
            .expect("utf-8")
            .trim_end_matches('\0');
        assert!(text.starts_with("StreamTitle='é") && text.ends_with("';"));
    }

    #[test]
    fn blocks_come_every_interval_and_repeat_as_zero() {
        let mut icy = Interleaver::new(10);
        let mut out = Vec::new();
        icy.push(Bytes::from(vec![7u8; 25]), "a", &mut out);
        icy.push(Bytes::from(vec![7u8; 5]), "a", &mut out);
        icy.push(Bytes::from(vec![7u8; 10]), "b", &mut out);
        let all: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        // 10 audio, block "a", 10 audio, 0, 5 + 5 audio, 0, 10 audio, block "b"
        assert_eq!(&all[..10], &[7u8; 10]);
        let a = block("a");
        assert_eq!(&all[10..10 + a.len()], &a[..]);
        let rest = &all[10 + a.len()..];
        assert_eq!(&rest[..10], &[7u8; 10]);
        assert_eq!(rest[10], 0);
        assert_eq!(&rest[11..21], &[7u8; 10]);
        assert_eq!(rest[21], 0);
        assert_eq!(&rest[22..32], &[7u8; 10]);
        assert_eq!(&rest[32..], &block("b")[..]);
    }
}
