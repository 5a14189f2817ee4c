//! The radio client: listens to a mount of an internet radio (Icecast and compatible servers)
//! the way a player does, and judges the stream.
//!
//! `GET <target><path>` with `Icy-MetaData: 1` (the mount is the client's `path`, required),
//! then `listenMs` (5 s by default) of listening. A server first sends a burst of recent audio
//! (Icecast and the radio role: ~64 KiB) as fast as the connection allows, then the stream in
//! real time; the bytes received after the burst are judged against the stream's bitrate
//! (`icy-br`, else the first MPEG audio frame headers): under [`MIN_RATE`] of it fails as
//! [`Reason::TooSlow`]. Gaps of more than [`STALL`] without audio are stalls (counted, the
//! longest kept). ICY metadata blocks (a length byte ×16 after every `icy-metaint` audio bytes)
//! are taken out of the audio and their `StreamTitle` kept.
//!
//! Bounds: the audio is counted, never kept (but for the first [`SNIFF_BYTES`] when the bitrate
//! must come from the frames); a metadata block is at most 255 × 16 bytes; a refusal's text is
//! read up to [`MAX_REFUSAL`] bytes.
//!
//! Reports: `firstAudio` (request to first audio byte), `burst` (first audio byte to the end of
//! the burst), `listen` (the time listened after the answer), `longestStall` (when any) and
//! `total`; the detail names the mount, its type and bitrate, and the title.

use std::time::Duration;

use hostrole_config::{ClientConfig, ClientTarget};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use tokio::time::Instant;

use super::web::{http_client, request_error, target_url};
use super::{ProbeError, Reason, Success, credentials, timed_out};

/// How long a client listens when its `listenMs` is absent.
pub const DEFAULT_LISTEN: Duration = Duration::from_millis(5000);
/// A gap in the audio longer than this is a stall.
pub const STALL: Duration = Duration::from_secs(1);
/// The burst is over at the first wait of at least this long between two pieces of audio (a
/// burst arrives back to back; a real-time stream comes a frame, ~26 ms, at a time), or after
/// half the listening at the latest.
const BURST_GAP: Duration = Duration::from_millis(10);
/// Shortest listening after the burst whose rate is judged.
const MIN_JUDGED: Duration = Duration::from_secs(1);
/// Least share of the bitrate a stream must deliver after its burst.
pub const MIN_RATE: f64 = 0.9;
/// Longest metadata block: its length byte counts 16-byte blocks.
const MAX_META: usize = 255 * 16;
/// Audio kept to find the bitrate in MPEG frame headers when `icy-br` is absent.
const SNIFF_BYTES: usize = 4096;
/// Most of a refusal's body shown (a plain-text reason such as "Too many clients").
const MAX_REFUSAL: usize = 200;

/// Splits a stream with ICY metadata into its audio and its metadata blocks, across chunks.
#[derive(Debug)]
pub(crate) struct IcyReader {
    /// Audio bytes between blocks (`icy-metaint`); `None` when the server sends no metadata.
    interval: Option<usize>,
    state: IcyState,
    /// The block being read (at most [`MAX_META`] bytes).
    block: Vec<u8>,
    /// The last `StreamTitle` seen.
    title: Option<String>,
    /// Blocks read, and those that were not ICY metadata (the reader lost the block
    /// boundaries: the server does not keep its `icy-metaint`).
    blocks: u32,
    bad_blocks: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IcyState {
    /// Audio bytes left before the next block.
    Audio(usize),
    /// The next byte is a block's length.
    Length,
    /// Block bytes left to read.
    Block(usize),
}

impl IcyReader {
    pub(crate) fn new(interval: Option<usize>) -> Self {
        let interval = interval.filter(|&n| n > 0);
        Self {
            interval,
            state: IcyState::Audio(interval.unwrap_or(0)),
            block: Vec::new(),
            title: None,
            blocks: 0,
            bad_blocks: 0,
        }
    }

    /// Passes the audio of `chunk` to `audio` and parses its metadata; returns the audio bytes.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], mut audio: impl FnMut(&[u8])) -> usize {
        let Some(interval) = self.interval else {
            audio(chunk);
            return chunk.len();
        };
        let mut n = 0;
        while let Some(&first) = chunk.first() {
            match self.state {
                IcyState::Audio(left) => {
                    let k = left.min(chunk.len());
                    audio(&chunk[..k]);
                    n += k;
                    chunk = &chunk[k..];
                    self.state = if k == left {
                        IcyState::Length
                    } else {
                        IcyState::Audio(left - k)
                    };
                }
                IcyState::Length => {
                    chunk = &chunk[1..];
                    let len = usize::from(first) * 16;
                    self.block.clear();
                    // A zero length: the title has not changed.
                    self.state = if len == 0 {
                        IcyState::Audio(interval)
                    } else {
                        IcyState::Block(len)
                    };
                }
                IcyState::Block(left) => {
                    let k = left.min(chunk.len());
                    if self.block.len() + k <= MAX_META {
                        self.block.extend_from_slice(&chunk[..k]);
                    }
                    chunk = &chunk[k..];
                    if k == left {
                        self.blocks += 1;
                        if !is_icy_block(&self.block) {
                            self.bad_blocks += 1;
                        } else if let Some(title) = stream_title(&self.block) {
                            self.title = Some(title);
                        }
                        self.block.clear();
                        self.state = IcyState::Audio(interval);
                    } else {
                        self.state = IcyState::Block(left - k);
                    }
                }
            }
        }
        n
    }

    pub(crate) fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }
}

/// Whether a block is ICY metadata: `key='value';` pairs, then NUL padding only.
pub(crate) fn is_icy_block(block: &[u8]) -> bool {
    let end = block.iter().position(|&b| b == 0).unwrap_or(block.len());
    let (text, padding) = block.split_at(end);
    text.ends_with(b"';") && text.windows(2).any(|w| w == b"='") && padding.iter().all(|&b| b == 0)
}

/// The `StreamTitle` of a metadata block (`StreamTitle='…';StreamUrl='…';`, NUL-padded). Titles
/// are not escaped: the title ends at the first `';`. Old sources send Latin-1; bytes that are
/// not UTF-8 are replaced.
pub(crate) fn stream_title(block: &[u8]) -> Option<String> {
    const KEY: &str = "StreamTitle='";
    let text = String::from_utf8_lossy(block);
    let start = text.find(KEY)? + KEY.len();
    let rest = &text[start..];
    let title = match rest.find("';") {
        Some(end) => &rest[..end],
        None => rest.trim_end_matches('\0').trim_end_matches('\''),
    };
    Some(title.to_string())
}

/// The bitrate (kbit/s) of MPEG audio from its frame headers: the first header that a second
/// one follows where its frame ends (a lone sync word in the data proves nothing).
pub(crate) fn mpeg_bitrate(data: &[u8]) -> Option<u32> {
    (0..data.len()).find_map(|i| {
        let frame = MpegHeader::parse(data.get(i..)?)?;
        let next = MpegHeader::parse(data.get(i + frame.length..)?)?;
        (next.version == frame.version && next.layer == frame.layer && next.rate == frame.rate)
            .then_some(frame.kbps)
    })
}

/// What the probe needs of an MPEG audio frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MpegHeader {
    /// 1 (MPEG-1), 2 (MPEG-2) or 25 (MPEG-2.5).
    version: u8,
    layer: u8,
    rate: u32,
    kbps: u32,
    /// Bytes from this header to the next.
    length: usize,
}

impl MpegHeader {
    fn parse(b: &[u8]) -> Option<Self> {
        let [b0, b1, b2, ..] = *b else { return None };
        if b0 != 0xFF || b1 & 0xE0 != 0xE0 {
            return None;
        }
        let version = match (b1 >> 3) & 3 {
            0 => 25,
            2 => 2,
            3 => 1,
            _ => return None,
        };
        let layer = match (b1 >> 1) & 3 {
            1 => 3,
            2 => 2,
            3 => 1,
            _ => return None,
        };
        let index = usize::from(b2 >> 4);
        // 0 is "free format" (no bitrate in the header), 15 is invalid.
        if index == 0 || index == 15 {
            return None;
        }
        const V1_L1: [u32; 14] = [
            32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
        ];
        const V1_L2: [u32; 14] = [
            32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
        ];
        const V1_L3: [u32; 14] = [
            32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ];
        const V2_L1: [u32; 14] = [
            32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
        ];
        const V2_L23: [u32; 14] = [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
        let table = match (version, layer) {
            (1, 1) => &V1_L1,
            (1, 2) => &V1_L2,
            (1, _) => &V1_L3,
            (_, 1) => &V2_L1,
            _ => &V2_L23,
        };
        let kbps = table[index - 1];
        let rate = match ((b2 >> 2) & 3, version) {
            (3, _) => return None,
            (i, 1) => [44100, 48000, 32000][usize::from(i)],
            (i, 2) => [22050, 24000, 16000][usize::from(i)],
            (i, _) => [11025, 12000, 8000][usize::from(i)],
        };
        let padding = usize::from((b2 >> 1) & 1);
        let bits = kbps as usize * 1000;
        let rate_n = rate as usize;
        let length = match (layer, version) {
            (1, _) => (12 * bits / rate_n + padding) * 4,
            (3, 2 | 25) => 72 * bits / rate_n + padding,
            _ => 144 * bits / rate_n + padding,
        };
        Some(Self {
            version,
            layer,
            rate,
            kbps,
            length,
        })
    }
}

/// What arrived when, while listening: times are since the request started.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Listening {
    pub first: Option<Duration>,
    pub last: Option<Duration>,
    /// The arrival that ended the burst (the audio after it is judged).
    pub burst_end: Option<Duration>,
    pub audio_bytes: u64,
    pub after_burst: u64,
    pub stalls: u32,
    pub longest_stall: Duration,
}

impl Listening {
    /// `n` audio bytes arrived at `at`; the burst lasts at most `burst_cap` after the first.
    pub(crate) fn audio(&mut self, at: Duration, n: u64, burst_cap: Duration) {
        if n == 0 {
            return;
        }
        match (self.first, self.last) {
            (Some(first), Some(last)) => {
                let gap = at.saturating_sub(last);
                self.gap(gap);
                if self.burst_end.is_none()
                    && (gap >= BURST_GAP || at.saturating_sub(first) >= burst_cap)
                {
                    self.burst_end = Some(last);
                }
                if self.burst_end.is_some() {
                    self.after_burst += n;
                }
            }
            _ => self.first = Some(at),
        }
        self.audio_bytes += n;
        self.last = Some(at);
    }

    /// Listening ended at `end`: silence since the last audio is a stall too, and a stream that
    /// never left its burst has it end with its last audio.
    pub(crate) fn finish(&mut self, end: Duration) {
        if let Some(last) = self.last {
            self.gap(end.saturating_sub(last));
            if self.burst_end.is_none() {
                self.burst_end = Some(last);
            }
        }
    }

    fn gap(&mut self, gap: Duration) {
        if gap > STALL {
            self.stalls += 1;
            self.longest_stall = self.longest_stall.max(gap);
        }
    }

    /// Audio bytes per second after the burst and the time they were measured over, when that
    /// is long enough to judge.
    pub(crate) fn rate(&self, end: Duration) -> Option<(f64, Duration)> {
        let window = end.checked_sub(self.burst_end?)?;
        (window >= MIN_JUDGED).then(|| (self.after_burst as f64 / window.as_secs_f64(), window))
    }
}

/// Whether `bytes_per_second` after the burst, over `window`, is enough for a stream of `kbps`;
/// the failure says how far off it was, and names the stalls.
pub(crate) fn judge(
    bytes_per_second: f64,
    window: Duration,
    kbps: u32,
    stalls: u32,
    longest_stall: Duration,
) -> Result<(), String> {
    let wanted = f64::from(kbps) * 1000.0 / 8.0;
    if wanted <= 0.0 || bytes_per_second >= wanted * MIN_RATE {
        return Ok(());
    }
    let got_kbps = bytes_per_second * 8.0 / 1000.0;
    let share = 100.0 * bytes_per_second / wanted;
    let what = if stalls > 0 {
        format!(
            "stalled ({stalls} {} without audio, the longest {:.1} s)",
            if stalls == 1 { "gap" } else { "gaps" },
            longest_stall.as_secs_f64()
        )
    } else {
        "too slow".to_string()
    };
    Err(format!(
        "{what}: received {got_kbps:.0} kbit/s, {share:.0}% of the stream's {kbps} kbit/s \
         (at least {:.0}% needed), over {:.1} s after the burst",
        MIN_RATE * 100.0,
        window.as_secs_f64()
    ))
}

/// Checks what the client's configuration says before connecting: the mount and the time.
fn mount_and_listen(config: &ClientConfig) -> Result<(&str, Duration), ProbeError> {
    if !matches!(&config.target, ClientTarget::Url(u) if u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(ProbeError::new(
            Reason::Error,
            "the target is not an http(s):// URL (a radio client needs http(s)://host:port/)",
        ));
    }
    let mount = config
        .path
        .as_deref()
        .filter(|p| p.len() > 1 && p.starts_with('/'))
        .ok_or_else(|| {
            ProbeError::new(
                Reason::Error,
                "a radio client needs `path`: the mount to listen to, e.g. /live",
            )
        })?;
    let listen = config
        .listen_ms
        .map_or(DEFAULT_LISTEN, Duration::from_millis);
    let timeout = Duration::from_millis(config.timeout_ms);
    if listen.is_zero() || listen >= timeout {
        return Err(ProbeError::new(
            Reason::Error,
            format!(
                "`listenMs` ({} ms) must be above 0 and shorter than `timeoutMs` ({} ms)",
                listen.as_millis(),
                timeout.as_millis()
            ),
        ));
    }
    Ok((mount, listen))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The bitrate of `icy-br`: `128`, or the first of `128,128` as some servers send.
fn icy_bitrate(headers: &HeaderMap) -> Option<u32> {
    header(headers, "icy-br")?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
        .filter(|&k| k > 0)
}

fn is_audio(content_type: &str) -> bool {
    let t = content_type.to_ascii_lowercase();
    t.starts_with("audio/") || t.starts_with("application/ogg") || t.starts_with("video/ogg")
}

/// Why a mount refused a listener, by status.
async fn refusal(mount: &str, mut response: reqwest::Response, has_login: bool) -> ProbeError {
    let status = response.status();
    // A plain-text reason (the radio role's and some servers'); Icecast's HTML pages are not shown.
    let plain = header(response.headers(), CONTENT_TYPE.as_str())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/plain"));
    let mut said = String::new();
    if plain
        && let Ok(Ok(Some(chunk))) =
            tokio::time::timeout(Duration::from_millis(500), response.chunk()).await
    {
        let text = String::from_utf8_lossy(&chunk[..chunk.len().min(MAX_REFUSAL)]);
        let text = text.trim();
        if !text.is_empty() {
            said = format!(" ({text:?})");
        }
    }
    let answered = format!("GET {mount} answered {}{said}", describe(status));
    match status {
        StatusCode::NOT_FOUND => ProbeError::new(
            Reason::UnexpectedStatus,
            format!(
                "{answered}: the mount {mount} is off the air (no source, no playlist) or does not exist"
            ),
        ),
        StatusCode::FORBIDDEN => ProbeError::new(
            Reason::UnexpectedStatus,
            format!(
                "{answered}: the mount {mount} is full (its listener limit or the server's is reached)"
            ),
        ),
        StatusCode::UNAUTHORIZED if has_login => ProbeError::new(
            Reason::AuthFailed,
            format!("{answered}: the mount {mount} refused the client's login"),
        ),
        StatusCode::UNAUTHORIZED => ProbeError::new(
            Reason::AuthFailed,
            format!("{answered}: the mount {mount} requires a login (give the client credentials)"),
        ),
        _ => ProbeError::new(
            Reason::UnexpectedStatus,
            format!("{answered}, expected 200"),
        ),
    }
}

fn describe(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(r) => format!("{} {r}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

pub(crate) async fn run(config: &ClientConfig, deadline: Instant) -> Result<Success, ProbeError> {
    let timeout = Duration::from_millis(config.timeout_ms);
    let (mount, listen) = mount_and_listen(config)?;
    let url = target_url(config, mount)?;
    let login = match &config.credentials_dir {
        Some(dir) => Some(credentials(dir).await?),
        None => None,
    };
    let client = http_client()?;
    let started = Instant::now();
    let mut request = client.get(url).header("Icy-MetaData", "1");
    if let Some(c) = &login {
        request = request.basic_auth(&c.username, Some(&c.password));
    }
    // The stream never ends by itself: the deadline bounds the answer, the listening its body.
    let mut response = tokio::time::timeout_at(deadline, request.send())
        .await
        .map_err(|_| timed_out(timeout))?
        .map_err(|e| request_error(&format!("GET {mount}"), &e, timeout))?;
    let status = response.status();
    if !status.is_success() {
        return Err(refusal(mount, response, login.is_some()).await);
    }
    let headers = response.headers();
    let content_type = header(headers, CONTENT_TYPE.as_str())
        .unwrap_or_default()
        .to_string();
    if !is_audio(&content_type) {
        let shown = if content_type.is_empty() {
            "no content type"
        } else {
            content_type.as_str()
        };
        return Err(ProbeError::new(
            Reason::UnexpectedContent,
            format!(
                "GET {mount} answered {} with {shown}, not an audio stream",
                describe(status)
            ),
        ));
    }
    let announced = icy_bitrate(headers);
    let metaint = match header(headers, "icy-metaint") {
        None => None,
        Some(v) => Some(v.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
            ProbeError::new(
                Reason::UnexpectedContent,
                format!("GET {mount}: the server's icy-metaint {v:?} is not a positive number"),
            )
        })?),
    };
    let answered = Instant::now();
    // Listening ends at the deadline at the latest (then the window judged is shorter).
    let listen_end = (answered + listen).min(deadline);
    let burst_cap = listen / 2;
    let mut icy = IcyReader::new(metaint);
    let mut sniffed: Vec<u8> = Vec::new();
    let sniff = announced.is_none();
    let mut heard = Listening::default();
    loop {
        let chunk = match tokio::time::timeout_at(listen_end, response.chunk()).await {
            Err(_) => break,
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => {
                return Err(ProbeError::new(
                    Reason::ConnectFailed,
                    format!(
                        "the server ended the stream of {mount} after {:.1} s (listening for {:.1} s)",
                        answered.elapsed().as_secs_f64(),
                        listen.as_secs_f64()
                    ),
                ));
            }
            Ok(Err(e)) => {
                return Err(request_error(
                    &format!("GET {mount} (the stream)"),
                    &e,
                    timeout,
                ));
            }
        };
        let at = started.elapsed();
        let n = icy.feed(&chunk, |audio| {
            if sniff && sniffed.len() < SNIFF_BYTES {
                let room = SNIFF_BYTES - sniffed.len();
                sniffed.extend_from_slice(&audio[..audio.len().min(room)]);
            }
        });
        heard.audio(at, n as u64, burst_cap);
        if icy.bad_blocks > 0 {
            return Err(ProbeError::new(
                Reason::UnexpectedContent,
                format!(
                    "GET {mount}: a metadata block after {} audio bytes is not ICY metadata \
                     (`StreamTitle='…';`): the stream does not keep its icy-metaint of {}",
                    heard.audio_bytes,
                    metaint.unwrap_or_default()
                ),
            ));
        }
    }
    let end = started.elapsed();
    heard.finish(end);
    let listened = answered.elapsed();
    let Some(first) = heard.first else {
        return Err(ProbeError::new(
            Reason::TooSlow,
            format!(
                "stalled: no audio from {mount} within {:.1} s of the answer",
                listened.as_secs_f64()
            ),
        ));
    };
    let bitrate = match announced {
        Some(k) => Some((k, "icy-br")),
        None => mpeg_bitrate(&sniffed).map(|k| (k, "MPEG frame header")),
    };
    let rate = heard.rate(end);
    tracing::debug!(
        client = %config.name,
        mount,
        first_audio_ms = first.as_millis() as u64,
        audio_bytes = heard.audio_bytes,
        bytes_per_second_after_burst = rate.map(|(r, _)| r as u64),
        kbps = bitrate.map(|(k, _)| k),
        stalls = heard.stalls,
        longest_stall_ms = heard.longest_stall.as_millis() as u64,
        title = icy.title(),
        "radio client run"
    );
    let mut detail = format!("GET {mount}: {content_type}");
    match (bitrate, rate) {
        (Some((kbps, source)), Some((bytes_per_second, window))) => {
            judge(
                bytes_per_second,
                window,
                kbps,
                heard.stalls,
                heard.longest_stall,
            )
            .map_err(|why| ProbeError::new(Reason::TooSlow, format!("{mount} {why}")))?;
            detail.push_str(&format!(" at {kbps} kbit/s ({source}), in real time"));
        }
        (Some((kbps, source)), None) => detail.push_str(&format!(
            " at {kbps} kbit/s ({source}), rate not judged (under {} s after the burst)",
            MIN_JUDGED.as_secs()
        )),
        (None, Some((_, window))) if heard.after_burst == 0 => {
            return Err(ProbeError::new(
                Reason::TooSlow,
                format!(
                    "{mount} stalled: no audio for {:.1} s after the burst",
                    window.as_secs_f64()
                ),
            ));
        }
        (None, _) => detail.push_str(", bitrate unknown (no icy-br, not MPEG audio)"),
    }
    match (metaint, icy.title()) {
        (None, _) => detail.push_str(", no ICY metadata"),
        (Some(_), Some(title)) if !title.is_empty() => {
            detail.push_str(&format!(", title {title:?}"));
        }
        (Some(_), _) => detail.push_str(", no title"),
    }
    if heard.stalls > 0 {
        detail.push_str(&format!(
            ", stalled {} times (the longest {:.1} s)",
            heard.stalls,
            heard.longest_stall.as_secs_f64()
        ));
    }
    let mut success = Success::new(detail)
        .timing("firstAudio", first)
        .timing(
            "burst",
            heard
                .burst_end
                .map_or(Duration::ZERO, |b| b.saturating_sub(first)),
        )
        .timing("listen", listened)
        .timing("total", started.elapsed());
    if heard.stalls > 0 {
        success = success.timing("longestStall", heard.longest_stall);
    }
    // The connection is dropped here: the server sees the listener leave.
    drop(response);
    Ok(success)
}

#[cfg(test)]
mod tests {
    use hostrole_config::ClientService;

    use super::*;

    /// A metadata block as servers send it: length byte, text, NUL padding.
    fn block(text: &str) -> Vec<u8> {
        let blocks = text.len().div_ceil(16);
        let mut b = vec![blocks as u8];
        b.extend_from_slice(text.as_bytes());
        b.resize(1 + blocks * 16, 0);
        b
    }

    /// Audio of `interval`-byte runs (bytes 1, 2, 3 …) with the blocks between them.
    fn stream(interval: usize, blocks: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
        let (mut all, mut audio) = (Vec::new(), Vec::new());
        for (i, b) in blocks.iter().enumerate() {
            let run = vec![(i + 1) as u8; interval];
            all.extend_from_slice(&run);
            audio.extend_from_slice(&run);
            all.extend_from_slice(b);
        }
        (all, audio)
    }

    #[test]
    fn icy_blocks_are_parsed_across_every_chunk_boundary() {
        let blocks = vec![
            block("StreamTitle='Sine 440';"),
            vec![0],
            block("StreamTitle='It's here';StreamUrl='http://x/';"),
            vec![0],
        ];
        let (all, want_audio) = stream(37, &blocks);
        for size in 1..=all.len() {
            let mut icy = IcyReader::new(Some(37));
            let mut audio = Vec::new();
            let mut counted = 0;
            let mut titles = Vec::new();
            for chunk in all.chunks(size) {
                counted += icy.feed(chunk, |a| audio.extend_from_slice(a));
                titles.push(icy.title().map(str::to_string));
            }
            assert_eq!(audio, want_audio, "chunks of {size}");
            assert_eq!(counted, want_audio.len(), "chunks of {size}");
            assert_eq!(icy.title(), Some("It's here"), "chunks of {size}");
            // The first title is seen while it is the latest (chunks too short to hold both).
            if size <= 37 {
                assert!(
                    titles.contains(&Some("Sine 440".into())),
                    "chunks of {size}"
                );
            }
        }
    }

    #[test]
    fn the_largest_block_is_read_whole_and_a_stream_without_metadata_is_all_audio() {
        let title = "x".repeat(MAX_META - 15);
        let text = format!("StreamTitle='{title}';");
        assert!(text.len() <= MAX_META);
        let b = block(&text);
        assert_eq!(b[0], 255);
        let (all, audio) = stream(5, &[b]);
        let mut icy = IcyReader::new(Some(5));
        assert_eq!(icy.feed(&all, |_| {}), audio.len());
        assert_eq!(icy.title(), Some(title.as_str()));
        assert!(icy.block.capacity() <= MAX_META + 64);
        let mut plain = IcyReader::new(None);
        assert_eq!(plain.feed(&all, |_| {}), all.len());
        assert_eq!(plain.title(), None);
    }

    #[test]
    fn a_block_that_is_not_metadata_is_counted_as_lost_boundaries() {
        assert!(is_icy_block(&block("StreamTitle='a';")[1..]));
        assert!(is_icy_block(b"StreamTitle='';StreamUrl='';"));
        assert!(!is_icy_block(b"\xff\xfb\x90\x64audio"));
        assert!(!is_icy_block(b"StreamTitle='a';\0\0x"));
        // A server that sends 20 audio bytes where it announced 16: a block of audio.
        let mut all = vec![7u8; 20];
        all.extend(block("StreamTitle='a';"));
        all.extend([9u8; 200]);
        let mut icy = IcyReader::new(Some(16));
        icy.feed(&all, |_| {});
        assert_eq!((icy.blocks, icy.bad_blocks), (1, 1));
        let (good, _) = stream(16, &[block("StreamTitle='a';"), vec![0]]);
        let mut icy = IcyReader::new(Some(16));
        icy.feed(&good, |_| {});
        assert_eq!((icy.blocks, icy.bad_blocks), (1, 0));
    }

    #[test]
    fn stream_titles_are_read_from_the_block_text() {
        assert_eq!(
            stream_title(b"StreamTitle='a b';\0\0\0").as_deref(),
            Some("a b")
        );
        assert_eq!(stream_title(b"StreamTitle='';").as_deref(), Some(""));
        assert_eq!(
            stream_title(b"StreamUrl='u';StreamTitle='t';").as_deref(),
            Some("t")
        );
        assert_eq!(
            stream_title(b"StreamTitle='cut\0\0").as_deref(),
            Some("cut")
        );
        assert_eq!(stream_title(b"StreamUrl='u';"), None);
    }

    /// An MPEG-1 layer III frame at 128 kbit/s, 44.1 kHz: 417 bytes.
    fn frame() -> Vec<u8> {
        let mut f = vec![0xFF, 0xFB, 0x90, 0x64];
        f.resize(417, 0x55);
        f
    }

    #[test]
    fn the_bitrate_comes_from_two_consecutive_frame_headers() {
        let mut data = vec![0xFF, 0xFB, 0x13]; // a cut, misleading start
        data.extend(frame());
        data.extend(frame());
        assert_eq!(mpeg_bitrate(&data), Some(128));
        assert_eq!(mpeg_bitrate(&frame()), None, "one header proves nothing");
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        assert_eq!(mpeg_bitrate(&garbage), None);
        assert_eq!(mpeg_bitrate(&[]), None);
    }

    const MS: Duration = Duration::from_millis(1);

    /// A 64 KiB burst at once, then 128 kbit/s (16000 B/s) in 26 ms frames for `seconds`.
    fn steady(seconds: u64, share: f64) -> (Listening, Duration) {
        let mut l = Listening::default();
        let cap = Duration::from_secs(seconds) / 2;
        let start = 20 * MS;
        for i in 0..64u64 {
            l.audio(start + Duration::from_micros(i * 10), 1024, cap);
        }
        let frame = (16000.0 * 0.026 * share) as u64;
        let mut at = start + 26 * MS;
        let end = start + Duration::from_secs(seconds);
        while at < end {
            l.audio(at, frame, cap);
            at += 26 * MS;
        }
        l.finish(end);
        (l, end)
    }

    #[test]
    fn the_rate_after_the_burst_is_judged_against_the_bitrate() {
        let (l, end) = steady(5, 1.0);
        assert_eq!(l.burst_end, Some(20 * MS + Duration::from_micros(630)));
        assert_eq!(l.stalls, 0);
        let (rate, window) = l.rate(end).expect("long enough");
        assert!((15500.0..16500.0).contains(&rate), "{rate}");
        assert!(judge(rate, window, 128, 0, Duration::ZERO).is_ok());

        let (l, end) = steady(5, 0.8);
        let (rate, window) = l.rate(end).expect("long enough");
        let why = judge(rate, window, 128, 0, Duration::ZERO).expect_err("80%");
        assert!(
            why.starts_with("too slow: received 102 kbit/s, 80%"),
            "{why}"
        );
        assert!(why.contains("128 kbit/s"), "{why}");
        // The edge: 90% passes, 89% does not.
        assert!(judge(14400.0, window, 128, 0, Duration::ZERO).is_ok());
        assert!(judge(14240.0, window, 128, 0, Duration::ZERO).is_err());
    }

    #[test]
    fn gaps_over_a_second_are_stalls_and_silence_at_the_end_counts() {
        let cap = Duration::from_millis(2500);
        let mut l = Listening::default();
        l.audio(100 * MS, 65536, cap);
        l.audio(200 * MS, 4000, cap);
        l.audio(1800 * MS, 4000, cap); // 1.6 s without audio
        l.audio(2000 * MS, 4000, cap);
        l.finish(5000 * MS); // 3 s of silence to the end
        assert_eq!(l.stalls, 2);
        assert_eq!(l.longest_stall, 3000 * MS);
        assert_eq!(l.burst_end, Some(100 * MS));
        let (rate, window) = l.rate(5000 * MS).expect("long enough");
        let why = judge(rate, window, 128, l.stalls, l.longest_stall).expect_err("slow");
        assert!(
            why.starts_with("stalled (2 gaps without audio, the longest 3.0 s)"),
            "{why}"
        );

        // Everything at once, then nothing: all of it was the burst, and the rate is 0.
        let mut l = Listening::default();
        l.audio(100 * MS, 65536, cap);
        l.audio(100 * MS, 1000, cap);
        l.finish(5000 * MS);
        assert_eq!(l.burst_end, Some(100 * MS));
        assert_eq!(l.rate(5000 * MS).map(|(r, _)| r), Some(0.0));
        // Too short a window after the burst is not judged.
        assert_eq!(l.rate(600 * MS), None);
    }

    fn config(path: Option<&str>, listen_ms: Option<u64>) -> ClientConfig {
        ClientConfig {
            name: "radio-0".into(),
            service: ClientService::Radio,
            server: "radio".into(),
            target: ClientTarget::Url("http://127.0.0.1:1/".into()),
            every_ms: 1000,
            timeout_ms: 8000,
            path: path.map(str::to_string),
            expect: None,
            credentials_dir: None,
            mail_to: None,
            listen_ms,
        }
    }

    #[test]
    fn a_radio_client_needs_a_mount_and_time_to_listen() {
        let e = mount_and_listen(&config(None, None)).expect_err("no path");
        assert_eq!(e.reason, Reason::Error);
        assert!(e.message.contains("`path`"), "{e}");
        assert!(mount_and_listen(&config(Some("/"), None)).is_err());
        assert_eq!(
            mount_and_listen(&config(Some("/live"), None)).ok(),
            Some(("/live", DEFAULT_LISTEN))
        );
        let e = mount_and_listen(&config(Some("/live"), Some(9000))).expect_err("too long");
        assert!(
            e.message.contains("listenMs") && e.message.contains("timeoutMs"),
            "{e}"
        );
        let mut irc = config(Some("/live"), None);
        irc.target = ClientTarget::Url("irc://127.0.0.1:1/".into());
        assert!(mount_and_listen(&irc).is_err());
    }

    #[tokio::test]
    async fn a_refused_connection_is_connect_failed() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = free.local_addr().expect("addr");
        drop(free);
        let mut c = config(Some("/live"), Some(500));
        c.target = ClientTarget::Url(format!("http://{addr}/"));
        let e = run(&c, Instant::now() + Duration::from_secs(8))
            .await
            .expect_err("nobody listens");
        assert_eq!(e.reason, Reason::ConnectFailed, "{e}");
        assert!(e.message.contains("GET /live"), "{e}");
    }
}
