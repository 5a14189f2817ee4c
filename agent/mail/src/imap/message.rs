//! Pieces of a stored message as IMAP returns them: header and text, chosen header fields,
//! the ENVELOPE structure, flags. Pure functions over the message bytes.

use mail_parser::{Addr, Address, MessageParser};

/// The header (with the blank line that ends it) and the text of a message.
pub fn split(message: &[u8]) -> (&[u8], &[u8]) {
    let mut pos = 0;
    for line in message.split_inclusive(|b| *b == b'\n') {
        pos += line.len();
        if line == b"\r\n" || line == b"\n" {
            return message.split_at(pos);
        }
    }
    (message, &[])
}

/// Header fields, each with its continuation lines, as (name, raw bytes).
fn fields(header: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for line in header.split_inclusive(|b| *b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if matches!(line.first(), Some(b' ') | Some(b'\t')) {
            if let Some(last) = out.last_mut() {
                last.1.extend_from_slice(line);
            }
            continue;
        }
        let name = line
            .iter()
            .position(|b| *b == b':')
            .map(|i| &line[..i])
            .unwrap_or(b"");
        out.push((
            String::from_utf8_lossy(name).trim().to_ascii_uppercase(),
            line.to_vec(),
        ));
    }
    out
}

/// `BODY[HEADER.FIELDS (..)]` and `.NOT`: the chosen fields and a blank line.
pub fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, raw) in fields(header) {
        if names.contains(&name) != not {
            out.extend_from_slice(&raw);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The unfolded value of the first field called `name` (upper-case).
pub fn header_value(header: &[u8], name: &str) -> Option<String> {
    let (_, raw) = fields(header).into_iter().find(|(n, _)| n == name)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    Some(unfold(text.split_once(':').map(|(_, v)| v).unwrap_or("")))
}

/// A field value on one line: continuation lines joined by a space, ends trimmed.
fn unfold(value: &str) -> String {
    value
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// An IMAP string: quoted when it can be, a literal otherwise.
pub fn string(s: &[u8]) -> Vec<u8> {
    if s.len() < 1000 && s.iter().all(|b| *b >= 0x20 && *b < 0x7f) {
        let mut out = vec![b'"'];
        for b in s {
            if *b == b'"' || *b == b'\\' {
                out.push(b'\\');
            }
            out.push(*b);
        }
        out.push(b'"');
        out
    } else {
        literal(s)
    }
}

pub fn literal(s: &[u8]) -> Vec<u8> {
    let mut out = format!("{{{}}}\r\n", s.len()).into_bytes();
    out.extend_from_slice(s);
    out
}

fn nstring(s: Option<&str>) -> Vec<u8> {
    match s {
        Some(s) => string(s.as_bytes()),
        None => b"NIL".to_vec(),
    }
}

/// An ENVELOPE name: as a quoted string when it is printable ASCII, else as an RFC 2047 encoded
/// word (mail-parser hands names over decoded; ENVELOPE strings are 7-bit, and clients decode
/// encoded words there as they do in headers).
fn name_string(name: &str) -> Vec<u8> {
    if name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        string(name.as_bytes())
    } else {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(name);
        string(format!("=?utf-8?b?{encoded}?=").as_bytes())
    }
}

/// `(name NIL mailbox host)`.
fn address(addr: &Addr<'_>) -> Vec<u8> {
    let spec = addr.address.as_deref();
    let (mailbox, host) = match spec.and_then(|s| s.rsplit_once('@')) {
        Some((m, h)) => (Some(m), Some(h)),
        None => (spec, None),
    };
    let mut out = b"(".to_vec();
    match addr.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => out.extend(name_string(name)),
        None => out.extend_from_slice(b"NIL"),
    }
    out.extend_from_slice(b" NIL ");
    out.extend(nstring(mailbox));
    out.push(b' ');
    out.extend(nstring(host));
    out.push(b')');
    out
}

/// An address list as ENVELOPE has it: each address, a named group between its start marker
/// `(NIL NIL name NIL)` and end marker `(NIL NIL NIL NIL)` (RFC 3501 section 7.4.2); NIL when
/// empty.
fn address_list(value: Option<&Address<'_>>) -> Vec<u8> {
    let mut items = Vec::new();
    match value {
        Some(Address::List(list)) => items.extend(list.iter().map(address)),
        Some(Address::Group(groups)) => {
            for group in groups {
                match group.name.as_deref() {
                    Some(name) => {
                        let mut start = b"(NIL NIL ".to_vec();
                        start.extend(name_string(name));
                        start.extend_from_slice(b" NIL)");
                        items.push(start);
                        items.extend(group.addresses.iter().map(address));
                        items.push(b"(NIL NIL NIL NIL)".to_vec());
                    }
                    // Addresses outside any group, in a list that also has groups.
                    None => items.extend(group.addresses.iter().map(address)),
                }
            }
        }
        None => {}
    }
    if items.is_empty() {
        return b"NIL".to_vec();
    }
    let mut out = b"(".to_vec();
    for item in items {
        out.extend(item);
    }
    out.push(b')');
    out
}

/// The ENVELOPE of a message (RFC 3501 section 7.4.2), from one mail-parser pass over the
/// header: addresses parsed; date, subject and message ids as sent (unfolded), encoded words
/// included.
pub fn envelope(header: &[u8]) -> Vec<u8> {
    let parsed = MessageParser::default().parse_headers(header);
    let m = parsed.as_ref();
    let raw = |name: &str| m.and_then(|m| m.header_raw(name)).map(unfold);
    let from = address_list(m.and_then(|m| m.from()));
    let sender = match m.and_then(|m| m.sender()) {
        Some(a) => address_list(Some(a)),
        None => from.clone(),
    };
    let reply_to = match m.and_then(|m| m.reply_to()) {
        Some(a) => address_list(Some(a)),
        None => from.clone(),
    };
    let mut out = b"(".to_vec();
    out.extend(nstring(raw("Date").as_deref()));
    out.push(b' ');
    out.extend(nstring(raw("Subject").as_deref()));
    for part in [
        from,
        sender,
        reply_to,
        address_list(m.and_then(|m| m.to())),
        address_list(m.and_then(|m| m.cc())),
        address_list(m.and_then(|m| m.bcc())),
    ] {
        out.push(b' ');
        out.extend(part);
    }
    out.push(b' ');
    out.extend(nstring(raw("In-Reply-To").as_deref()));
    out.push(b' ');
    out.extend(nstring(raw("Message-ID").as_deref()));
    out.push(b')');
    out
}

/// Maildir flag letters as an IMAP flag list.
pub fn flags(letters: &str) -> String {
    let names: Vec<&str> = letters
        .chars()
        .filter_map(|c| match c {
            'D' => Some("\\Draft"),
            'F' => Some("\\Flagged"),
            'R' => Some("\\Answered"),
            'S' => Some("\\Seen"),
            'T' => Some("\\Deleted"),
            _ => None,
        })
        .collect();
    format!("({})", names.join(" "))
}

/// An IMAP system flag as a Maildir letter; keywords have none.
pub fn letter(flag: &str) -> Option<char> {
    match flag.to_ascii_lowercase().as_str() {
        "\\seen" => Some('S'),
        "\\deleted" => Some('T'),
        "\\answered" => Some('R'),
        "\\flagged" => Some('F'),
        "\\draft" => Some('D'),
        _ => None,
    }
}

/// Case-insensitive substring search (memmem over lowercased chunks: linear, no copy of the
/// message).
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    hostrole_proto::imap_match::contains_ignore_case(haystack, needle.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: \"Alice A\" <alice@home.example>\r\nTo: bob@home.example, carol@x.example\r\nSubject: hi\r\n there\r\n\r\nbody\r\n";

    #[test]
    fn parts() {
        let (h, b) = split(MSG);
        assert_eq!(b, b"body\r\n");
        assert!(h.ends_with(b"there\r\n\r\n"));
        assert_eq!(header_value(h, "SUBJECT").as_deref(), Some("hi there"));
        assert_eq!(
            header_fields(h, &["SUBJECT".into()], false),
            b"Subject: hi\r\n there\r\n\r\n"
        );
        assert_eq!(
            String::from_utf8(envelope(h)).expect("ascii"),
            "(NIL \"hi there\" ((\"Alice A\" NIL \"alice\" \"home.example\")) ((\"Alice A\" NIL \"alice\" \"home.example\")) ((\"Alice A\" NIL \"alice\" \"home.example\")) ((NIL NIL \"bob\" \"home.example\")(NIL NIL \"carol\" \"x.example\")) NIL NIL NIL NIL)"
        );
        assert_eq!(flags("ST"), "(\\Seen \\Deleted)");
        assert!(contains(MSG, "ALICE"));
    }

    #[test]
    fn envelope_addresses_the_way_rfc_5322_writes_them() {
        let h = b"From: \"Doe, Jane\" <jane@example.org> (work)\r\n\
                  To: undisclosed-recipients:;\r\n\
                  Cc: team: ann@x.example, bo@y.example;, solo@z.example\r\n\
                  Reply-To: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\n\
                  Message-ID: <1@example.org>\r\n\r\n";
        let env = String::from_utf8(envelope(h)).expect("7-bit");
        assert!(
            env.contains("((\"Doe, Jane (work)\" NIL \"jane\" \"example.org\"))"),
            "a comma inside a quoted name; mail-parser keeps the comment in the name: {env}"
        );
        assert!(
            env.contains("((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))"),
            "an empty group: {env}"
        );
        assert!(
            env.contains(
                "((NIL NIL \"team\" NIL)(NIL NIL \"ann\" \"x.example\")(NIL NIL \"bo\" \"y.example\")(NIL NIL NIL NIL)(NIL NIL \"solo\" \"z.example\"))"
            ),
            "a group then an address: {env}"
        );
        assert!(
            env.contains("((\"=?utf-8?b?SsO2cmc=?=\" NIL \"jorg\" \"example.org\"))"),
            "a non-ASCII name goes back out as an encoded word: {env}"
        );
        assert!(env.ends_with(" NIL NIL \"<1@example.org>\")"), "{env}");
        // No header at all: every field NIL.
        assert_eq!(
            String::from_utf8(envelope(b"\r\n")).expect("ascii"),
            "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
        );
    }
}
