//! Pieces of a stored message as IMAP returns them: header and text, chosen header fields,
//! the ENVELOPE structure, flags. Pure functions over the message bytes.

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
    let value = text.split_once(':').map(|(_, v)| v).unwrap_or("");
    Some(
        value
            .split(['\r', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    )
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

/// Splits an address list at commas outside quotes, comments and angle brackets.
fn split_addresses(list: &str) -> Vec<&str> {
    let (mut out, mut start, mut depth, mut quoted, mut angle) =
        (Vec::new(), 0, 0i32, false, false);
    let bytes = list.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'(' if !quoted => depth += 1,
            b')' if !quoted => depth -= 1,
            b'<' if !quoted => angle = true,
            b'>' if !quoted => angle = false,
            b',' if !quoted && depth <= 0 && !angle => {
                out.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&list[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// `(name NIL mailbox host)` for each address, or NIL.
fn address_list(value: Option<&str>) -> Vec<u8> {
    let Some(value) = value else {
        return b"NIL".to_vec();
    };
    let addresses = split_addresses(value);
    if addresses.is_empty() {
        return b"NIL".to_vec();
    }
    let mut out = b"(".to_vec();
    for a in addresses {
        let (name, spec) = match (a.find('<'), a.rfind('>')) {
            (Some(l), Some(r)) if l < r => {
                let name = a[..l].trim().trim_matches('"').trim();
                ((!name.is_empty()).then_some(name), &a[l + 1..r])
            }
            _ => (None, a),
        };
        let (mailbox, host) = match spec.rsplit_once('@') {
            Some((m, h)) => (Some(m), Some(h)),
            None => (Some(spec), None),
        };
        out.push(b'(');
        out.extend(nstring(name));
        out.extend_from_slice(b" NIL ");
        out.extend(nstring(mailbox));
        out.push(b' ');
        out.extend(nstring(host));
        out.push(b')');
    }
    out.push(b')');
    out
}

/// The ENVELOPE of a message (RFC 3501 section 7.4.2). Encoded words stay as sent.
pub fn envelope(header: &[u8]) -> Vec<u8> {
    let get = |n: &str| header_value(header, n);
    let from = get("FROM");
    let sender = get("SENDER").or_else(|| from.clone());
    let reply_to = get("REPLY-TO").or_else(|| from.clone());
    let mut out = b"(".to_vec();
    out.extend(nstring(get("DATE").as_deref()));
    out.push(b' ');
    out.extend(nstring(get("SUBJECT").as_deref()));
    for list in [
        &from,
        &sender,
        &reply_to,
        &get("TO"),
        &get("CC"),
        &get("BCC"),
    ] {
        out.push(b' ');
        out.extend(address_list(list.as_deref()));
    }
    out.push(b' ');
    out.extend(nstring(get("IN-REPLY-TO").as_deref()));
    out.push(b' ');
    out.extend(nstring(get("MESSAGE-ID").as_deref()));
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

/// Case-insensitive substring search.
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes().to_ascii_lowercase();
    if needle.is_empty() {
        return true;
    }
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(&needle))
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
}
