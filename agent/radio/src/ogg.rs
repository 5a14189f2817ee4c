//! Ogg pages (RFC 3533) of Vorbis and Opus files, kept byte for byte: the playlist relays the
//! file's own pages, so it needs their boundaries and granule positions, which the packet-level
//! Ogg readers (symphonia's, the `ogg` crate) do not expose. The framing is a fixed 27-byte
//! header and a lacing table; the page's duration is the granule position's advance divided
//! by the codec's rate (Opus: 48 kHz always; Vorbis: from its identification header).

use std::time::Duration;

use bytes::Bytes;

/// One page: its bytes, and the granule position (`None`: no packet ends on it).
#[derive(Debug, Clone)]
pub struct Page {
    pub bytes: Bytes,
    pub granule: Option<u64>,
    /// The first packet's first bytes (to recognise the codec's headers).
    pub bos: bool,
}

/// Splits `data` into pages; stops at the first byte that does not start a page.
pub fn pages(data: &Bytes) -> Vec<Page> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(header) = data.get(at..at + 27) {
        if &header[..4] != b"OggS" || header[4] != 0 {
            break;
        }
        let segments = header[26] as usize;
        let Some(table) = data.get(at + 27..at + 27 + segments) else {
            break;
        };
        let body: usize = table.iter().map(|&b| b as usize).sum();
        let end = at + 27 + segments + body;
        if end > data.len() {
            break;
        }
        let mut g = [0u8; 8];
        g.copy_from_slice(&header[6..14]);
        let granule = u64::from_le_bytes(g);
        out.push(Page {
            bytes: data.slice(at..end),
            granule: (granule != u64::MAX).then_some(granule),
            bos: header[5] & 0x02 != 0,
        });
        at = end;
    }
    out
}

/// The first packet's bytes of a page (enough to read a codec's identification header).
pub fn first_packet(page: &Page) -> &[u8] {
    let b = &page.bytes;
    let segments = b.get(26).copied().unwrap_or(0) as usize;
    b.get(27 + segments..).unwrap_or(&[])
}

/// The granule rate of the stream whose first page is `bos`: Opus 48000, Vorbis its sample rate.
pub fn granule_rate(bos: &Page) -> Option<u32> {
    let p = first_packet(bos);
    if p.starts_with(b"OpusHead") {
        return Some(48_000);
    }
    if p.len() >= 16 && p.starts_with(b"\x01vorbis") {
        let rate = u32::from_le_bytes([p[12], p[13], p[14], p[15]]);
        return (rate > 0).then_some(rate);
    }
    None
}

/// The pages with their durations: a page lasts from the previous granule position to its own.
pub fn timed(data: &Bytes) -> Option<(Vec<(Bytes, Duration)>, &'static str)> {
    let pages = pages(data);
    let rate = granule_rate(pages.first()?)?;
    let mut last = 0u64;
    let mut out = Vec::with_capacity(pages.len());
    for page in pages {
        let d = match page.granule {
            Some(g) if g > last && !page.bos => {
                let d = Duration::from_secs_f64((g - last) as f64 / f64::from(rate));
                last = g;
                d
            }
            Some(g) => {
                last = last.max(g);
                Duration::ZERO
            }
            None => Duration::ZERO,
        };
        out.push((page.bytes, d));
    }
    Some((out, "application/ogg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(flags: u8, granule: u64, packet: &[u8]) -> Vec<u8> {
        let mut p = b"OggS".to_vec();
        p.push(0);
        p.push(flags);
        p.extend_from_slice(&granule.to_le_bytes());
        p.extend_from_slice(&[0; 12]); // serial, sequence, CRC (not checked)
        let mut lacing = vec![255u8; packet.len() / 255];
        lacing.push((packet.len() % 255) as u8);
        p.push(lacing.len() as u8);
        p.extend_from_slice(&lacing);
        p.extend_from_slice(packet);
        p
    }

    #[test]
    fn pages_are_split_and_timed_by_granule_positions() {
        let mut data = page(2, 0, b"OpusHead\x01\x02\x38\x01\x80\xbb\0\0\0\0\0");
        data.extend(page(0, 0, b"OpusTags"));
        data.extend(page(0, 48_000, &[1u8; 300]));
        data.extend(page(0, u64::MAX, &[2u8; 10]));
        data.extend(page(4, 72_000, &[3u8; 10]));
        data.extend_from_slice(b"trailing garbage");
        let data = Bytes::from(data);
        let (pages, kind) = timed(&data).expect("an Opus stream");
        assert_eq!(kind, "application/ogg");
        let durations: Vec<u128> = pages.iter().map(|(_, d)| d.as_millis()).collect();
        assert_eq!(durations, [0, 0, 1000, 0, 500]);
        assert_eq!(pages[2].0.len(), 27 + 2 + 300);
        assert!(pages[0].0.starts_with(b"OggS"));
    }

    #[test]
    fn vorbis_rate_comes_from_its_identification_header() {
        let mut id = b"\x01vorbis\0\0\0\0\x02".to_vec();
        id.extend_from_slice(&44_100u32.to_le_bytes());
        id.extend_from_slice(&[0; 14]);
        let data = Bytes::from(page(2, 0, &id));
        assert_eq!(granule_rate(&pages(&data)[0]), Some(44_100));
        assert!(timed(&Bytes::from_static(b"not ogg at all, nothing here")).is_none());
    }
}
