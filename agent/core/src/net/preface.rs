//! The first bytes of a connection on a port that speaks HTTP/1.1 and HTTP/2 with prior
//! knowledge (h2c): either the HTTP/2 connection preface, or an HTTP/1 request line. Anything
//! else, such as an HTTP/2 client's invalid preface, is an error that closes the connection
//! without an answer (RFC 9113 3.4; h2spec 3.5.2) instead of an HTTP/1.1 `400`.

/// The client connection preface of HTTP/2.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the bytes seen so far are.
#[derive(Debug, PartialEq, Eq)]
pub enum Start {
    Http1,
    Http2,
    NeedMore,
    Invalid,
}

/// Judges the first bytes of a connection. Only a request line whose version is not HTTP/1.x
/// (including the preface's `PRI * HTTP/2.0` followed by anything but the rest of the preface)
/// is invalid here; other malformed requests get hyper's `400` as before.
pub fn judge(seen: &[u8]) -> Start {
    let n = seen.len().min(H2_PREFACE.len());
    if seen[..n] == H2_PREFACE[..n] {
        return if n == H2_PREFACE.len() {
            Start::Http2
        } else {
            Start::NeedMore
        };
    }
    let line_end = seen.iter().position(|&b| b == b'\n');
    let line = line_end.map_or(seen, |i| &seen[..=i]);
    let mut no_headers = [httparse::EMPTY_HEADER; 0];
    let mut request = httparse::Request::new(&mut no_headers);
    match request.parse(line) {
        Err(httparse::Error::Version) => Start::Invalid,
        // The request line is complete and good (the fields follow), or bad in a way hyper
        // answers with 400, or too long, which hyper answers with 414/431.
        Err(_) | Ok(httparse::Status::Complete(_)) => Start::Http1,
        Ok(httparse::Status::Partial) if line_end.is_some() => Start::Http1,
        Ok(httparse::Status::Partial) if seen.len() > super::limits::MAX_HEADER_BYTES => {
            Start::Http1
        }
        Ok(httparse::Status::Partial) => Start::NeedMore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_the_preface_pass_byte_by_byte_and_garbage_versions_do_not() {
        let feed = |all: &[u8]| {
            (1..=all.len())
                .map(|i| judge(&all[..i]))
                .find(|s| *s != Start::NeedMore)
                .unwrap_or(Start::NeedMore)
        };
        assert_eq!(feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Start::Http1);
        assert_eq!(feed(b"GET / HTTP/1.0\r\n\r\n"), Start::Http1);
        assert_eq!(feed(b"\r\nGET / HTTP/1.1\r\n\r\n"), Start::Http1);
        assert_eq!(feed(H2_PREFACE), Start::Http2);
        assert_eq!(feed(b"INVALID CONNECTION PREFACE\r\n\r\n"), Start::Invalid);
        assert_eq!(feed(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"), Start::Invalid);
        assert_eq!(feed(b"GET / HTTP/3.0\r\n"), Start::Invalid);
        // Malformed in other ways: hyper answers those (400).
        assert_eq!(feed(b"G@T / HTTP/1.1\r\n"), Start::Http1);
        assert_eq!(judge(b"GET /very/long"), Start::NeedMore);
    }
}
