//! IRC lines (RFC 1459/2812 with IRCv3 message tags) as the chat role reads them: the verb and
//! its parameters, and the client-only tags (`+name[=value]`) exactly as sent, so the server can
//! relay them without unescaping and escaping again. The length limits are checked on the raw
//! line: 512 bytes of message (CR LF included) and 4096 bytes of client tags.
//!
//! irc-proto (which the chat client and the chat role's tests use) parses into typed commands
//! and unescaped tags; the server needs neither, and a line it refuses must be refused by its
//! raw length. Fuzzed in `fuzz/fuzz_targets/irc_line.rs`.

/// Longest line body (without tags), CR LF included (RFC 1459).
pub const MAX_BODY: usize = 512;
/// Longest client tags part (IRCv3 message-tags), `@` and the trailing space included.
pub const MAX_CLIENT_TAGS: usize = 4096;
/// Longest line a client may send (tags and body), CR LF excluded.
pub const MAX_LINE: usize = 8191;
/// A parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Client-only tags (`+name[=value]`), as sent (escaped), joined with `;`.
    pub client_tags: String,
    pub verb: String,
    pub params: Vec<String>,
}

/// Why a line was refused before its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    TagsTooLong,
    BodyTooLong,
    /// A CR or NUL inside the line. Relayed, a bare CR would end the line early for clients
    /// that split on it, and what follows would read as a line from the server (a spoofed
    /// sender).
    ForbiddenByte,
}

/// Parses one line (without CR LF): `[@tags ][:prefix ]VERB params [:trailing]`.
pub fn parse(line: &str) -> Result<Msg, ParseError> {
    if line.contains(['\r', '\0', '\n']) {
        return Err(ParseError::ForbiddenByte);
    }
    let mut rest = line.trim_start_matches(' ');
    let mut client_tags = String::new();
    if let Some(tagged) = rest.strip_prefix('@') {
        let (tags, body) = tagged.split_once(' ').unwrap_or((tagged, ""));
        if tags.len() + 2 > MAX_CLIENT_TAGS {
            return Err(ParseError::TagsTooLong);
        }
        for tag in tags
            .split(';')
            .filter(|t| t.starts_with('+') && t.len() > 1)
        {
            if !client_tags.is_empty() {
                client_tags.push(';');
            }
            client_tags.push_str(tag);
        }
        rest = body.trim_start_matches(' ');
    }
    if rest.len() + 2 > MAX_BODY {
        return Err(ParseError::BodyTooLong);
    }
    if rest.starts_with(':') {
        rest = rest
            .split_once(' ')
            .map_or("", |(_, r)| r)
            .trim_start_matches(' ');
    }
    let (verb, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if verb.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing.to_string());
            break;
        }
        let (p, r) = rest.split_once(' ').unwrap_or((rest, ""));
        params.push(p.to_string());
        rest = r;
    }
    Ok(Msg {
        client_tags,
        verb: verb.to_ascii_uppercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_carriage_return_or_nul_inside_a_line_is_refused() {
        for line in [
            "PRIVMSG #a :hi\r:evil!e@x PRIVMSG #a :spoofed",
            "PRIVMSG #a :nul\0here",
            "NICK a\nQUIT",
        ] {
            assert_eq!(parse(line), Err(ParseError::ForbiddenByte), "{line:?}");
        }
        assert!(parse("PRIVMSG #a :fine").is_ok());
    }
}
