//! A FETCH response written piece by piece: small items are formatted, message bytes are
//! written straight from the one copy of the message read for the command, so `FETCH 1
//! (BODY[] BODY[] …)` holds one copy of a message, not one per item plus the joined line.

use std::borrow::Cow;

use crate::conn::Conn;

/// One item of a FETCH response.
pub(super) enum Piece<'a> {
    /// Formatted text (`FLAGS (\Seen)`, `UID 4`, an ENVELOPE).
    Text(Vec<u8>),
    /// `<label> {n}\r\n` followed by the bytes.
    Literal { label: String, bytes: Cow<'a, [u8]> },
}

impl From<Vec<u8>> for Piece<'_> {
    fn from(text: Vec<u8>) -> Self {
        Piece::Text(text)
    }
}

/// `label` with `bytes` as a literal.
pub(super) fn literal<'a>(label: &str, bytes: impl Into<Cow<'a, [u8]>>) -> Piece<'a> {
    Piece::Literal {
        label: label.to_string(),
        bytes: bytes.into(),
    }
}

/// Writes `* <seq> FETCH (<pieces>)`.
pub(super) async fn write_fetch(
    conn: &mut Conn,
    seq: usize,
    pieces: &[Piece<'_>],
) -> std::io::Result<()> {
    conn.write(format!("* {seq} FETCH (").as_bytes()).await?;
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            conn.write(b" ").await?;
        }
        match piece {
            Piece::Text(text) => conn.write(text).await?,
            Piece::Literal { label, bytes } => {
                conn.write(format!("{label} {{{}}}\r\n", bytes.len()).as_bytes())
                    .await?;
                conn.write(bytes).await?;
            }
        }
    }
    conn.write(b")\r\n").await
}
