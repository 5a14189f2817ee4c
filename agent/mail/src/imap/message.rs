//! Pieces of a stored message as IMAP returns them: header and text, chosen header fields,
//! the ENVELOPE structure, flags. Pure functions over the message bytes.

use std::borrow::Cow;

use mail_parser::{Addr, Address, Message, MessageParser, MimeHeaders, PartType};

use super::parse::{Section, SectionText};

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

/// Maildir flag letters as an IMAP flag list; `a`..`z` are the folder's `keywords`.
pub fn flags(letters: &str, keywords: &[String]) -> String {
    let names: Vec<&str> = letters
        .chars()
        .filter_map(|c| match c {
            'D' => Some("\\Draft"),
            'F' => Some("\\Flagged"),
            'R' => Some("\\Answered"),
            'S' => Some("\\Seen"),
            'T' => Some("\\Deleted"),
            'a'..='z' => keywords
                .get(c as usize - 'a' as usize)
                .map(String::as_str)
                .filter(|k| !k.is_empty()),
            _ => None,
        })
        .collect();
    format!("({})", names.join(" "))
}

/// Whether a flag name can be a keyword (an atom, not a system flag).
pub fn is_keyword(flag: &str) -> bool {
    !flag.is_empty()
        && !flag.starts_with('\\')
        && flag
            .bytes()
            .all(|b| b > 0x20 && b < 0x7f && !b"(){%*\"\\]".contains(&b))
}

/// The bytes of a `BODY[section]` (RFC 3501 section 6.4.5), found with mail-parser; `None`
/// when the message has no such part. Top-level sections borrow from `content` (FETCH writes
/// them from the one copy it read).
pub fn section<'a>(content: &'a [u8], section: &Section) -> Option<Cow<'a, [u8]>> {
    if section.path.is_empty() {
        let (header, text) = split(content);
        return Some(match &section.text {
            SectionText::Full => Cow::Borrowed(content),
            SectionText::Header => Cow::Borrowed(header),
            SectionText::Text => Cow::Borrowed(text),
            SectionText::HeaderFields { not, fields } => {
                Cow::Owned(header_fields(header, fields, *not))
            }
            SectionText::Mime => return None,
        });
    }
    let parsed = MessageParser::default().parse(content)?;
    let (msg, id) = resolve(&parsed, &section.path)?;
    let part = msg.parts.get(id)?;
    let slice = |a: u32, b: u32| span(msg, a, b).map(|b| Cow::Owned(b.to_vec()));
    match &section.text {
        SectionText::Full => slice(part.offset_body, part.offset_end),
        SectionText::Mime => slice(part.offset_header, part.offset_body),
        text => {
            // HEADER, TEXT and HEADER.FIELDS of a part name its message/rfc822 content.
            let PartType::Message(nested) = &part.body else {
                return None;
            };
            let root = nested.parts.first()?;
            let whole = span(nested, root.offset_header, root.offset_end)?;
            let (header, body) = split(whole);
            Some(Cow::Owned(match text {
                SectionText::Header => header.to_vec(),
                SectionText::Text => body.to_vec(),
                SectionText::HeaderFields { not, fields } => header_fields(header, fields, *not),
                _ => return None,
            }))
        }
    }
}

/// Bytes `a..b` of a message by mail-parser's offsets. A nested message/rfc822 keeps only its
/// own bytes but (unless it was transfer-encoded) offsets into the outermost message; either
/// way its root header starts at its first byte.
fn span<'a>(msg: &'a Message<'_>, a: u32, b: u32) -> Option<&'a [u8]> {
    let base = msg.parts.first().map_or(0, |p| p.offset_header);
    let a = a.checked_sub(base)? as usize;
    let b = b.checked_sub(base)? as usize;
    msg.raw_message().get(a..b)
}

/// The part a section path names: (the message holding it, its index there).
fn resolve<'a>(root: &'a Message<'a>, path: &[u32]) -> Option<(&'a Message<'a>, usize)> {
    let (mut msg, mut id) = (root, 0usize);
    for (depth, n) in path.iter().enumerate() {
        let n = usize::try_from(*n).ok()?.checked_sub(1)?;
        // The children of a message/rfc822 part are those of the message it holds.
        let entered = if depth == 0 {
            true
        } else if let PartType::Message(nested) = &msg.parts.get(id)?.body {
            msg = nested;
            id = 0;
            true
        } else {
            false
        };
        match &msg.parts.get(id)?.body {
            PartType::Multipart(children) => id = *children.get(n)? as usize,
            // A message whose body is one part: that part is number 1.
            _ if entered && n == 0 => {}
            _ => return None,
        }
    }
    Some((msg, id))
}

/// A header field's value as sent (unfolded), from the raw bytes.
fn raw_header(msg: &Message<'_>, id: usize, name: &str) -> Option<String> {
    let part = msg.parts.get(id)?;
    let h = part
        .headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
    let raw = span(msg, h.offset_start, h.offset_end)?;
    Some(unfold(&String::from_utf8_lossy(raw)))
}

/// A parameter list `("NAME" "value" ...)` or NIL.
fn params(attributes: Option<&[mail_parser::Attribute<'_>]>) -> Vec<u8> {
    let Some(attributes) = attributes.filter(|a| !a.is_empty()) else {
        return b"NIL".to_vec();
    };
    let mut out = b"(".to_vec();
    for (i, a) in attributes.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend(string(a.name.to_ascii_uppercase().as_bytes()));
        out.push(b' ');
        out.extend(name_string(&a.value));
    }
    out.push(b')');
    out
}

/// Text lines of a body as Dovecot counts them: its line feeds (a part's last line ends at the
/// boundary's CRLF, which belongs to the boundary).
fn lines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

/// `BODYSTRUCTURE` (`extended`) or `BODY` of a message (RFC 3501 section 7.4.2), from
/// mail-parser's parts: multiparts nest, message/rfc822 parts carry their ENVELOPE and
/// structure, sizes and line counts are of the encoded body as stored.
pub fn bodystructure(content: &[u8], extended: bool) -> Vec<u8> {
    match MessageParser::default().parse(content) {
        Some(msg) if !msg.parts.is_empty() => structure(&msg, 0, extended, 0),
        // Not even a header: one empty text part.
        _ => format!(
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" {} {})",
            content.len(),
            lines(content)
        )
        .into_bytes(),
    }
}

fn structure(msg: &Message<'_>, id: usize, extended: bool, depth: usize) -> Vec<u8> {
    let Some(part) = msg.parts.get(id) else {
        return b"NIL".to_vec();
    };
    let ctype = part.content_type();
    let upper = |s: &str| string(s.to_ascii_uppercase().as_bytes());
    let mut out = b"(".to_vec();
    let disposition_etc = |out: &mut Vec<u8>| {
        out.push(b' ');
        match part.content_disposition() {
            Some(d) => {
                out.push(b'(');
                out.extend(upper(d.ctype()));
                out.push(b' ');
                out.extend(params(d.attributes()));
                out.push(b')');
            }
            None => out.extend_from_slice(b"NIL"),
        }
        out.push(b' ');
        out.extend(nstring(raw_header(msg, id, "Content-Language").as_deref()));
        out.push(b' ');
        out.extend(nstring(raw_header(msg, id, "Content-Location").as_deref()));
    };
    if let PartType::Multipart(children) = &part.body {
        if depth < 64 {
            for child in children {
                out.extend(structure(msg, *child as usize, extended, depth + 1));
            }
        }
        if children.is_empty() {
            // RFC 3501 needs one part at least: an empty text one.
            out.extend_from_slice(b"(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)");
        }
        out.push(b' ');
        out.extend(upper(ctype.and_then(|c| c.subtype()).unwrap_or("MIXED")));
        if extended {
            out.push(b' ');
            out.extend(params(ctype.and_then(|c| c.attributes())));
            disposition_etc(&mut out);
        }
        out.push(b')');
        return out;
    }
    let (mut main, mut sub) = match ctype {
        Some(c) => (
            c.ctype().to_string(),
            c.subtype()
                .unwrap_or(if c.ctype().eq_ignore_ascii_case("text") {
                    "plain"
                } else {
                    "octet-stream"
                })
                .to_string(),
        ),
        None if matches!(part.body, PartType::Message(_)) => ("message".into(), "rfc822".into()),
        None => ("text".into(), "plain".into()),
    };
    if main.eq_ignore_ascii_case("message")
        && sub.eq_ignore_ascii_case("rfc822")
        && !matches!(part.body, PartType::Message(_))
    {
        // Unparseable as a message: shown as opaque data rather than a broken structure.
        (main, sub) = ("application".into(), "octet-stream".into());
    }
    out.extend(upper(&main));
    out.push(b' ');
    out.extend(upper(&sub));
    out.push(b' ');
    let attributes = ctype.and_then(|c| c.attributes());
    if main.eq_ignore_ascii_case("text")
        && !attributes.is_some_and(|a| a.iter().any(|a| a.name.eq_ignore_ascii_case("charset")))
    {
        let mut p = b"(\"CHARSET\" \"US-ASCII\"".to_vec();
        if let Some(rest) = attributes.filter(|a| !a.is_empty()) {
            let inner = params(Some(rest));
            p.push(b' ');
            p.extend_from_slice(&inner[1..inner.len() - 1]);
        }
        p.push(b')');
        out.extend(p);
    } else {
        out.extend(params(attributes));
    }
    out.push(b' ');
    out.extend(nstring(raw_header(msg, id, "Content-ID").as_deref()));
    out.push(b' ');
    out.extend(nstring(
        raw_header(msg, id, "Content-Description").as_deref(),
    ));
    out.push(b' ');
    let encoding =
        raw_header(msg, id, "Content-Transfer-Encoding").unwrap_or_else(|| "7BIT".into());
    out.extend(upper(&encoding));
    let body = span(msg, part.offset_body, part.offset_end).unwrap_or_default();
    out.extend(format!(" {}", body.len()).into_bytes());
    let is_message = main.eq_ignore_ascii_case("message") && sub.eq_ignore_ascii_case("rfc822");
    match &part.body {
        PartType::Message(nested) if is_message && depth < 64 => {
            let header = nested
                .parts
                .first()
                .and_then(|r| span(nested, r.offset_header, r.offset_body))
                .unwrap_or_default();
            out.push(b' ');
            out.extend(envelope(header));
            out.push(b' ');
            out.extend(structure(nested, 0, extended, depth + 1));
            out.extend(format!(" {}", lines(body)).into_bytes());
        }
        _ if main.eq_ignore_ascii_case("text") => {
            out.extend(format!(" {}", lines(body)).into_bytes());
        }
        _ => {}
    }
    if extended {
        out.extend_from_slice(b" NIL");
        disposition_etc(&mut out);
    }
    out.push(b')');
    out
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
        assert_eq!(flags("ST", &[]), "(\\Seen \\Deleted)");
        assert_eq!(
            flags("Sab", &["$Forwarded".into(), "Work".into()]),
            "(\\Seen $Forwarded Work)"
        );
        assert!(contains(MSG, "ALICE"));
    }

    const MULTI: &[u8] = b"From: a@x.example\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"B1\"\r\n\r\npreamble\r\n--B1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nhello\r\nworld\r\n--B1\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"\r\n\r\nJVBERi0=\r\n--B1\r\n\
Content-Type: message/rfc822\r\n\r\nFrom: b@y.example\r\nSubject: inner\r\n\
Content-Type: multipart/alternative; boundary=B2\r\n\r\n--B2\r\nContent-Type: text/plain\r\n\r\n\
plain\r\n--B2\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--B2--\r\n\r\n--B1--\r\n";

    #[test]
    fn parts_and_structure_of_a_nested_multipart() {
        use crate::imap::parse::{Section, SectionText};
        let sec = |path: &[u32], text: SectionText| {
            let s = Section {
                path: path.to_vec(),
                text,
            };
            section(MULTI, &s).map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        assert_eq!(
            sec(&[1], SectionText::Full).as_deref(),
            Some("hello\r\nworld")
        );
        assert_eq!(
            sec(&[1], SectionText::Mime).as_deref(),
            Some("Content-Type: text/plain; charset=utf-8\r\n\r\n")
        );
        assert_eq!(sec(&[2], SectionText::Full).as_deref(), Some("JVBERi0="));
        assert_eq!(
            sec(&[3], SectionText::Header).as_deref(),
            Some(
                "From: b@y.example\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=B2\r\n\r\n"
            )
        );
        assert_eq!(sec(&[3, 1], SectionText::Full).as_deref(), Some("plain"));
        assert_eq!(
            sec(&[3, 2], SectionText::Full).as_deref(),
            Some("<p>html</p>")
        );
        assert_eq!(sec(&[4], SectionText::Full), None);
        assert_eq!(sec(&[1, 1], SectionText::Full), None);
        let single = b"Subject: x\r\n\r\nbody\r\n";
        let s1 = Section {
            path: vec![1],
            text: SectionText::Full,
        };
        assert_eq!(section(single, &s1).as_deref(), Some(&b"body\r\n"[..]));
        let bs = String::from_utf8(bodystructure(MULTI, true)).expect("ascii");
        let inner = "(NIL \"inner\" ((NIL NIL \"b\" \"y.example\")) ((NIL NIL \"b\" \"y.example\")) \
((NIL NIL \"b\" \"y.example\")) NIL NIL NIL NIL NIL) \
((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 5 0 NIL NIL NIL NIL)\
(\"TEXT\" \"HTML\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 11 0 NIL NIL NIL NIL) \
\"ALTERNATIVE\" (\"BOUNDARY\" \"B2\") NIL NIL NIL) 13";
        assert_eq!(
            bs,
            format!(
                "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" 12 1 NIL NIL NIL NIL)\
(\"APPLICATION\" \"PDF\" (\"NAME\" \"a.pdf\") NIL NIL \"BASE64\" 8 NIL (\"ATTACHMENT\" (\"FILENAME\" \"a.pdf\")) NIL NIL)\
(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 182 {inner} NIL NIL NIL NIL) \
\"MIXED\" (\"BOUNDARY\" \"B1\") NIL NIL NIL)"
            )
        );
        let basic = String::from_utf8(bodystructure(single, false)).expect("ascii");
        assert_eq!(
            basic,
            "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 6 1)"
        );
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
