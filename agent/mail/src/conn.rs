//! One client connection: buffered lines with a length limit and a time limit, and buffered
//! replies. Byte counts go to the role's metrics. The connection's slot in the listener's
//! registry knows whether a command is in flight: a session waiting for its next command is
//! idle (the listener may close it to make room, and the next read then says
//! [`ReadError::Evicted`]).

use hostrole_agent_core::metrics::Direction;
use hostrole_agent_core::net::{Busy, Slot};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
    ReadHalf, WriteHalf,
};
use tokio_rustls::TlsAcceptor;

use super::{Protocol, Shared};

/// Why no line was read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the client closed the connection")]
    Closed,
    #[error("the line is longer than {0} bytes")]
    TooLong(usize),
    #[error("the client was silent too long")]
    Timeout,
    #[error("the listener closed this idle session to make room for another")]
    Evicted,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A plain TCP stream, or one after STARTTLS.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}
pub(crate) type BoxStream = Box<dyn Stream>;

const READ_BUFFER: usize = 16 * 1024;
const WRITE_BUFFER: usize = 64 * 1024;

fn halves(
    stream: BoxStream,
) -> (
    BufReader<ReadHalf<BoxStream>>,
    BufWriter<WriteHalf<BoxStream>>,
) {
    let (r, w) = tokio::io::split(stream);
    (
        BufReader::with_capacity(READ_BUFFER, r),
        BufWriter::with_capacity(WRITE_BUFFER, w),
    )
}

pub(crate) struct Conn {
    reader: BufReader<ReadHalf<BoxStream>>,
    writer: BufWriter<WriteHalf<BoxStream>>,
    /// Whether STARTTLS happened.
    pub tls: bool,
    protocol: Protocol,
    shared: Arc<Shared>,
    pub peer: std::net::SocketAddr,
    slot: Arc<Slot>,
    /// Held while a command is in flight: the session is not idle.
    busy: Option<Busy>,
}

impl Conn {
    /// A connection on `stream`; `tls` when the listener shook hands first (implicit TLS).
    pub fn new(
        stream: BoxStream,
        peer: std::net::SocketAddr,
        protocol: Protocol,
        slot: Arc<Slot>,
        shared: Arc<Shared>,
        tls: bool,
    ) -> Conn {
        let (reader, writer) = halves(stream);
        Conn {
            reader,
            writer,
            tls,
            protocol,
            shared,
            peer,
            slot,
            busy: None,
        }
    }

    /// Upgrades the connection to TLS (STARTTLS, STLS), after the "go ahead" reply was sent.
    /// Plain-text input the client sent after the command is discarded (RFC 3207 section 4.2:
    /// otherwise it could be injected into the protected session).
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> std::io::Result<()> {
        self.writer.flush().await?;
        let placeholder = || {
            halves(Box::new(tokio::io::join(
                tokio::io::empty(),
                tokio::io::sink(),
            )))
        };
        let (empty_r, empty_w) = placeholder();
        let reader = std::mem::replace(&mut self.reader, empty_r);
        let writer = std::mem::replace(&mut self.writer, empty_w);
        let stream = reader.into_inner().unsplit(writer.into_inner());
        let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
        let (reader, writer) = halves(Box::new(tls));
        self.reader = reader;
        self.writer = writer;
        self.tls = true;
        Ok(())
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Reads one line, terminator included, into `buf`. A line longer than `max` is consumed
    /// up to its end and reported as [`ReadError::TooLong`], so the session can answer and go on.
    pub async fn read_line(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
        limit: Duration,
    ) -> Result<(), ReadError> {
        buf.clear();
        match tokio::time::timeout(limit, self.continue_line(buf, max)).await {
            Ok(r) => r,
            Err(_) => Err(ReadError::Timeout),
        }
    }

    /// Reads the rest of a line into `buf`, after what an earlier, cancelled call left there.
    /// Cancel-safe: bytes taken from the socket are in `buf` whenever this future is dropped.
    pub async fn continue_line(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<(), ReadError> {
        // Waiting for a command: idle until a whole line is in.
        self.busy = None;
        let mut too_long = false;
        loop {
            let slot = self.slot.clone();
            let available = tokio::select! {
                biased;
                _ = slot.closed() => return Err(ReadError::Evicted),
                r = self.reader.fill_buf() => r?,
            };
            if available.is_empty() {
                return Err(ReadError::Closed);
            }
            let (take, done) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if !too_long && buf.len() + take <= max {
                buf.extend_from_slice(&available[..take]);
            } else {
                too_long = true;
                buf.clear();
            }
            self.reader.consume(take);
            self.shared.moved(self.protocol, Direction::In, take as u64);
            if done {
                self.busy = Some(self.slot.busy());
                return if too_long {
                    Err(ReadError::TooLong(max))
                } else {
                    Ok(())
                };
            }
        }
    }

    /// Reads exactly `n` bytes (an IMAP literal).
    pub async fn read_exact(
        &mut self,
        n: usize,
        out: &mut Vec<u8>,
        limit: Duration,
    ) -> Result<(), ReadError> {
        let start = out.len();
        out.resize(start + n, 0);
        match tokio::time::timeout(limit, self.reader.read_exact(&mut out[start..])).await {
            Ok(Ok(_)) => {
                self.shared.moved(self.protocol, Direction::In, n as u64);
                Ok(())
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ReadError::Closed),
            Ok(Err(e)) => Err(ReadError::Io(e)),
            Err(_) => Err(ReadError::Timeout),
        }
    }

    /// Queues bytes; [`Conn::flush`] sends them.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.shared
            .moved(self.protocol, Direction::Out, bytes.len() as u64);
        self.writer.write_all(bytes).await
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush().await
    }

    /// Writes and flushes.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write(bytes).await?;
        self.flush().await
    }

    /// Whether the client already sent more (pipelining): replies can wait for the next flush.
    pub fn has_buffered_input(&self) -> bool {
        !self.reader.buffer().is_empty()
    }
}

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A line without its CRLF (or bare LF).
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
