//! Request bodies that run until the connection closes, for roles that opt in.
//!
//! Icecast's source protocol (ffmpeg's `icecast://`, libshout, the legacy `SOURCE` method)
//! sends a request head and then the audio with neither `Content-Length` nor
//! `Transfer-Encoding`: the body is everything until the client closes. HTTP/1.1 (RFC 9112
//! 6.3) reads such a request as having no body, and so does hyper; the audio would then be
//! parsed as the next request. For a role that names such methods, [`Unframed`] reads the
//! connection's first request head before hyper does, and when it is one of those requests with
//! no framing, adds a `Content-Length` so large that the body lasts until the connection closes
//! (hyper then reports the early end as the body's error, which such a role takes for the end).
//! Everything else passes through unchanged, byte for byte; hyper's limits and timeouts still
//! apply, since it is hyper's reads that drive this one.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::limits::MAX_HEADER_BYTES;

/// Decides, from a request's method, whether an unframed body is the whole rest of the
/// connection.
pub type UnframedMethods = fn(method: &str) -> bool;

/// The length given to an unframed body: more than any connection carries.
const UNTIL_CLOSE: u64 = i64::MAX as u64;

/// The request head at the start of `bytes` (up to and with its blank line), when complete.
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// `head` with a `Content-Length` added when it is a request `unframed` names that has neither
/// `Content-Length` nor `Transfer-Encoding`; `None` when it stays as it is (including heads that
/// do not parse: hyper answers those).
pub fn frame(head: &[u8], unframed: UnframedMethods) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(len) = request.parse(head).ok()? else {
        return None;
    };
    if !unframed(request.method?) {
        return None;
    }
    let framed = request.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-length")
            || h.name.eq_ignore_ascii_case("transfer-encoding")
    });
    if framed || len < 2 {
        return None;
    }
    // Before the blank line that ends the head.
    let mut out = Vec::with_capacity(len + 40);
    out.extend_from_slice(&head[..len - 2]);
    out.extend_from_slice(format!("Content-Length: {UNTIL_CLOSE}\r\n\r\n").as_bytes());
    Some(out)
}

enum State {
    /// Reading the first request head.
    Head(Vec<u8>),
    /// Handing hyper what was read (perhaps rewritten), from this offset.
    Replay(Vec<u8>, usize),
    Through,
}

/// A connection whose first request head may be given a length (see the module).
pub struct Unframed<S> {
    inner: S,
    unframed: UnframedMethods,
    state: State,
}

impl<S> Unframed<S> {
    /// Wraps `inner`; `None` passes everything through.
    pub fn new(inner: S, unframed: Option<UnframedMethods>) -> Self {
        match unframed {
            Some(unframed) => Self {
                inner,
                unframed,
                state: State::Head(Vec::new()),
            },
            None => Self {
                inner,
                unframed: |_| false,
                state: State::Through,
            },
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Unframed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Through => return Pin::new(&mut this.inner).poll_read(cx, buf),
                State::Replay(bytes, at) => {
                    let n = buf.remaining().min(bytes.len() - *at);
                    buf.put_slice(&bytes[*at..*at + n]);
                    *at += n;
                    if *at == bytes.len() {
                        this.state = State::Through;
                    }
                    return Poll::Ready(Ok(()));
                }
                State::Head(seen) => {
                    let mut chunk = [0u8; 4096];
                    let mut read = ReadBuf::new(&mut chunk);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => {}
                    }
                    let fresh = read.filled();
                    let ended = fresh.is_empty();
                    let from = seen.len().saturating_sub(3);
                    seen.extend_from_slice(fresh);
                    let end = head_end(&seen[from..]).map(|e| e + from);
                    if end.is_none() && !ended && seen.len() <= MAX_HEADER_BYTES {
                        continue;
                    }
                    let seen = std::mem::take(seen);
                    if seen.is_empty() {
                        this.state = State::Through;
                        return Poll::Ready(Ok(()));
                    }
                    let bytes = match end
                        .and_then(|e| frame(&seen[..e], this.unframed).map(|head| (head, e)))
                    {
                        Some((mut head, e)) => {
                            head.extend_from_slice(&seen[e..]);
                            head
                        }
                        None => seen,
                    };
                    this.state = State::Replay(bytes, 0);
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Unframed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn source(method: &str) -> bool {
        method == "SOURCE" || method == "PUT"
    }

    #[test]
    fn an_unframed_source_request_gets_a_length_that_lasts_until_the_close() {
        let head =
            b"SOURCE /live HTTP/1.0\r\nAuthorization: Basic x\r\nContent-Type: audio/mpeg\r\n\r\n";
        let framed = frame(head, source).expect("framed");
        let text = String::from_utf8(framed).expect("text");
        assert_eq!(
            text,
            "SOURCE /live HTTP/1.0\r\nAuthorization: Basic x\r\nContent-Type: audio/mpeg\r\n\
             Content-Length: 9223372036854775807\r\n\r\n"
        );
    }

    #[test]
    fn framed_requests_other_methods_and_bad_heads_are_left_alone() {
        let chunked = b"PUT /live HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(frame(chunked, source), None);
        let sized = b"PUT /live HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\n\r\n";
        assert_eq!(frame(sized, source), None);
        let get = b"GET /live HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(frame(get, source), None);
        assert_eq!(
            frame(b"PUT /x HTTP/1.1\r\nBad Header\r\n\r\n", source),
            None
        );
        assert_eq!(frame(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", source), None);
    }

    async fn through(sent: &[u8], unframed: Option<UnframedMethods>) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64);
        let sent = sent.to_vec();
        let writer = tokio::spawn(async move {
            // In small pieces, as a slow client sends them.
            for piece in sent.chunks(7) {
                client.write_all(piece).await.expect("write");
            }
        });
        let mut wrapped = Unframed::new(server, unframed);
        let mut got = Vec::new();
        wrapped.read_to_end(&mut got).await.expect("read");
        writer.await.expect("writer");
        got
    }

    #[tokio::test]
    async fn the_audio_after_the_head_follows_it_unchanged() {
        let mut sent = b"SOURCE /live HTTP/1.0\r\nContent-Type: audio/mpeg\r\n\r\n".to_vec();
        sent.extend((0..5000u32).map(|i| (i % 251) as u8));
        let got = through(&sent, Some(source)).await;
        let head = b"SOURCE /live HTTP/1.0\r\nContent-Type: audio/mpeg\r\nContent-Length: 9223372036854775807\r\n\r\n";
        assert_eq!(&got[..head.len()], head);
        assert_eq!(&got[head.len()..], &sent[sent.len() - 5000..]);
    }

    #[tokio::test]
    async fn other_connections_pass_byte_for_byte() {
        let sent = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(through(&sent, Some(source)).await, sent);
        // A head that never ends (more than hyper would take) is handed on for hyper to refuse.
        let endless = vec![b'a'; MAX_HEADER_BYTES + 100];
        assert_eq!(through(&endless, Some(source)).await, endless);
        let put = b"PUT /live HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(through(&put, None).await, put);
        assert_eq!(through(b"", Some(source)).await, b"");
    }
}
