//! IPP messages on the wire (RFC 8010): a bounded, pure decoder and an encoder.
//!
//! The decoder keeps what a server's request checks need and a client library reshapes: the
//! order of groups and attributes, duplicate attributes, additional values, the exact value tag,
//! and string bytes as sent (not necessarily UTF-8). It never panics and never allocates more
//! than the bytes it was given: the caller hands it at most [`MAX_HEAD`] bytes, every length is
//! checked against what is left, and collections nest at most [`MAX_DEPTH`] deep.
//! [`decode`] returns how many bytes the message took, so what follows is the document.

/// Most bytes of a message's version, operation, request id and attribute groups.
pub const MAX_HEAD: usize = 64 * 1024;
/// Deepest collection nesting accepted (media-col holds media-size: 2).
pub const MAX_DEPTH: usize = 8;

/// Delimiter tags.
pub mod group {
    pub const OPERATION: u8 = 0x01;
    pub const JOB: u8 = 0x02;
    pub const END: u8 = 0x03;
    pub const PRINTER: u8 = 0x04;
    pub const UNSUPPORTED: u8 = 0x05;
}

/// Value tags.
pub mod tag {
    pub const UNSUPPORTED: u8 = 0x10;
    pub const UNKNOWN: u8 = 0x12;
    pub const NO_VALUE: u8 = 0x13;
    pub const INTEGER: u8 = 0x21;
    pub const BOOLEAN: u8 = 0x22;
    pub const ENUM: u8 = 0x23;
    pub const OCTET_STRING: u8 = 0x30;
    pub const DATE_TIME: u8 = 0x31;
    pub const RESOLUTION: u8 = 0x32;
    pub const RANGE: u8 = 0x33;
    pub const BEG_COLLECTION: u8 = 0x34;
    pub const TEXT_WITH_LANGUAGE: u8 = 0x35;
    pub const NAME_WITH_LANGUAGE: u8 = 0x36;
    pub const END_COLLECTION: u8 = 0x37;
    pub const TEXT: u8 = 0x41;
    pub const NAME: u8 = 0x42;
    pub const KEYWORD: u8 = 0x44;
    pub const URI: u8 = 0x45;
    pub const URI_SCHEME: u8 = 0x46;
    pub const CHARSET: u8 = 0x47;
    pub const LANGUAGE: u8 = 0x48;
    pub const MIME_TYPE: u8 = 0x49;
    pub const MEMBER_NAME: u8 = 0x4A;
    pub const EXTENSION: u8 = 0x7F;
}

/// One value with its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `integer` or `enum` (the tag tells).
    Int(u8, i32),
    Bool(bool),
    /// Out-of-band: unsupported, unknown, no-value, …
    OutOfBand(u8),
    DateTime([u8; 11]),
    /// Cross-feed, feed, units (3 = dpi, 4 = dpcm).
    Resolution(i32, i32, i8),
    Range(i32, i32),
    /// textWithLanguage / nameWithLanguage: (tag, language, text).
    WithLanguage(u8, Vec<u8>, Vec<u8>),
    /// Every string-like tag (text, name, keyword, uri, charset, mimeMediaType, octetString…)
    /// and any other tag this decoder does not interpret: the bytes as sent.
    Bytes(u8, Vec<u8>),
    /// The member attributes of a collection, in order.
    Collection(Vec<Attribute>),
}

impl Value {
    pub fn tag(&self) -> u8 {
        match self {
            Value::Int(t, _) | Value::OutOfBand(t) | Value::WithLanguage(t, ..) => *t,
            Value::Bytes(t, _) => *t,
            Value::Bool(_) => tag::BOOLEAN,
            Value::DateTime(_) => tag::DATE_TIME,
            Value::Resolution(..) => tag::RESOLUTION,
            Value::Range(..) => tag::RANGE,
            Value::Collection(_) => tag::BEG_COLLECTION,
        }
    }

    pub fn keyword(s: &str) -> Value {
        Value::Bytes(tag::KEYWORD, s.as_bytes().to_vec())
    }
    pub fn text(s: &str) -> Value {
        Value::Bytes(tag::TEXT, s.as_bytes().to_vec())
    }
    pub fn name(s: &str) -> Value {
        Value::Bytes(tag::NAME, s.as_bytes().to_vec())
    }
    pub fn uri(s: &str) -> Value {
        Value::Bytes(tag::URI, s.as_bytes().to_vec())
    }
    pub fn mime(s: &str) -> Value {
        Value::Bytes(tag::MIME_TYPE, s.as_bytes().to_vec())
    }
    pub fn integer(i: i32) -> Value {
        Value::Int(tag::INTEGER, i)
    }
    pub fn enumeration(i: i32) -> Value {
        Value::Int(tag::ENUM, i)
    }

    /// The value as a string when it is one of the string tags and valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Bytes(_, b) | Value::WithLanguage(_, _, b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i32> {
        match self {
            Value::Int(_, i) => Some(*i),
            _ => None,
        }
    }
}

/// An attribute (or a collection member): its name and one or more values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub values: Vec<Value>,
}

impl Attribute {
    pub fn new(name: &str, value: Value) -> Attribute {
        Attribute {
            name: name.to_string(),
            values: vec![value],
        }
    }
    pub fn many(name: &str, values: Vec<Value>) -> Attribute {
        Attribute {
            name: name.to_string(),
            values,
        }
    }
    /// The first value.
    pub fn first(&self) -> Option<&Value> {
        self.values.first()
    }
}

/// One attribute group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub tag: u8,
    pub attributes: Vec<Attribute>,
}

impl Group {
    pub fn new(tag: u8) -> Group {
        Group {
            tag,
            attributes: Vec::new(),
        }
    }
    pub fn get(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }
    pub fn push(&mut self, name: &str, value: Value) {
        self.attributes.push(Attribute::new(name, value));
    }
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// (major, minor)
    pub version: (u8, u8),
    /// The operation of a request, the status of a response.
    pub code: u16,
    pub request_id: i32,
    pub groups: Vec<Group>,
}

/// Why bytes are not an IPP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes end inside the message: more may come.
    #[error("the message is truncated")]
    Truncated,
    #[error("the attribute section is larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("collections nest deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        if end > MAX_HEAD {
            return Err(WireError::TooLarge);
        }
        let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    /// One attribute record after its tag: (name, value bytes).
    fn record(&mut self) -> Result<(&'a [u8], &'a [u8]), WireError> {
        let n = self.u16()? as usize;
        let name = self.take(n)?;
        let v = self.u16()? as usize;
        let value = self.take(v)?;
        Ok((name, value))
    }
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    i32::from_be_bytes(a)
}

/// A value from its tag and bytes (not a collection).
fn value(t: u8, b: &[u8]) -> Result<Value, WireError> {
    let fixed = |n: usize| {
        if b.len() == n {
            Ok(())
        } else {
            Err(WireError::Malformed(
                "a value has the wrong length for its tag",
            ))
        }
    };
    Ok(match t {
        0x10..=0x1F => Value::OutOfBand(t),
        tag::INTEGER | tag::ENUM => {
            fixed(4)?;
            Value::Int(t, i32_at(b, 0))
        }
        tag::BOOLEAN => {
            fixed(1)?;
            match b[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(WireError::Malformed("a boolean is neither 0 nor 1")),
            }
        }
        tag::DATE_TIME => {
            fixed(11)?;
            let mut d = [0u8; 11];
            d.copy_from_slice(b);
            Value::DateTime(d)
        }
        tag::RESOLUTION => {
            fixed(9)?;
            Value::Resolution(i32_at(b, 0), i32_at(b, 4), b[8] as i8)
        }
        tag::RANGE => {
            fixed(8)?;
            Value::Range(i32_at(b, 0), i32_at(b, 4))
        }
        tag::TEXT_WITH_LANGUAGE | tag::NAME_WITH_LANGUAGE => {
            let mut r = Reader { buf: b, pos: 0 };
            let lang = r.u16().and_then(|n| r.take(n as usize));
            let text = r.u16().and_then(|n| r.take(n as usize));
            match (lang, text) {
                (Ok(l), Ok(s)) if r.pos == b.len() => {
                    Value::WithLanguage(t, l.to_vec(), s.to_vec())
                }
                _ => return Err(WireError::Malformed("a value with language is malformed")),
            }
        }
        tag::BEG_COLLECTION | tag::END_COLLECTION | tag::MEMBER_NAME => {
            return Err(WireError::Malformed("a collection tag out of place"));
        }
        0x00..=0x0F => {
            return Err(WireError::Malformed(
                "a delimiter where a value was expected",
            ));
        }
        _ => Value::Bytes(t, b.to_vec()),
    })
}

/// The members of a collection, after its begCollection record, up to its endCollection.
fn collection(r: &mut Reader<'_>, depth: usize) -> Result<Vec<Attribute>, WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::TooDeep);
    }
    let mut members: Vec<Attribute> = Vec::new();
    loop {
        let t = r.u8()?;
        let (name, bytes) = r.record()?;
        if !name.is_empty() {
            return Err(WireError::Malformed("a collection member value has a name"));
        }
        match t {
            tag::END_COLLECTION => return Ok(members),
            tag::MEMBER_NAME => {
                let name = std::str::from_utf8(bytes)
                    .ok()
                    .filter(|n| !n.is_empty())
                    .ok_or(WireError::Malformed("a member name is empty or not UTF-8"))?;
                members.push(Attribute {
                    name: name.to_string(),
                    values: Vec::new(),
                });
            }
            _ => {
                let v = if t == tag::BEG_COLLECTION {
                    Value::Collection(collection(r, depth + 1)?)
                } else {
                    value(t, bytes)?
                };
                let member = members.last_mut().ok_or(WireError::Malformed(
                    "a collection value before a member name",
                ))?;
                member.values.push(v);
            }
        }
    }
}

/// Decodes a message from the start of `buf`: the message and the bytes it took (what follows
/// is its document). [`WireError::Truncated`] when `buf` ends before the end-of-attributes tag
/// (and is shorter than [`MAX_HEAD`]).
pub fn decode(buf: &[u8]) -> Result<(Message, usize), WireError> {
    let mut r = Reader { buf, pos: 0 };
    let version = (r.u8()?, r.u8()?);
    let code = r.u16()?;
    let id = r.take(4)?;
    let request_id = i32_at(id, 0);
    let mut groups: Vec<Group> = Vec::new();
    loop {
        let t = r.u8()?;
        match t {
            group::END => break,
            0x00..=0x0F => {
                if t == 0x00 {
                    return Err(WireError::Malformed("a reserved delimiter tag"));
                }
                groups.push(Group::new(t));
            }
            _ => {
                let (name, bytes) = r.record()?;
                let g = groups
                    .last_mut()
                    .ok_or(WireError::Malformed("an attribute before any group"))?;
                let v = if t == tag::BEG_COLLECTION {
                    Value::Collection(collection(&mut r, 1)?)
                } else {
                    value(t, bytes)?
                };
                if name.is_empty() {
                    let last = g.attributes.last_mut().ok_or(WireError::Malformed(
                        "an additional value with no attribute",
                    ))?;
                    last.values.push(v);
                } else {
                    let name = std::str::from_utf8(name)
                        .map_err(|_| WireError::Malformed("an attribute name is not UTF-8"))?;
                    g.attributes.push(Attribute::new(name, v));
                }
            }
        }
    }
    Ok((
        Message {
            version,
            code,
            request_id,
            groups,
        },
        r.pos,
    ))
}

fn put_record(out: &mut Vec<u8>, t: u8, name: &[u8], value: &[u8]) {
    // Lengths are 16 bits: longer names or values are cut (our own values never are).
    let name = &name[..name.len().min(u16::MAX as usize)];
    let value = &value[..value.len().min(u16::MAX as usize)];
    out.push(t);
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

fn put_value(out: &mut Vec<u8>, name: &[u8], v: &Value) {
    match v {
        Value::Int(t, i) => put_record(out, *t, name, &i.to_be_bytes()),
        Value::Bool(b) => put_record(out, tag::BOOLEAN, name, &[u8::from(*b)]),
        Value::OutOfBand(t) => put_record(out, *t, name, &[]),
        Value::DateTime(d) => put_record(out, tag::DATE_TIME, name, d),
        Value::Resolution(x, y, u) => {
            let mut b = Vec::with_capacity(9);
            b.extend_from_slice(&x.to_be_bytes());
            b.extend_from_slice(&y.to_be_bytes());
            b.push(*u as u8);
            put_record(out, tag::RESOLUTION, name, &b);
        }
        Value::Range(lo, hi) => {
            let mut b = Vec::with_capacity(8);
            b.extend_from_slice(&lo.to_be_bytes());
            b.extend_from_slice(&hi.to_be_bytes());
            put_record(out, tag::RANGE, name, &b);
        }
        Value::WithLanguage(t, lang, text) => {
            let lang = &lang[..lang.len().min(255)];
            let text = &text[..text.len().min(u16::MAX as usize - lang.len() - 4)];
            let mut b = Vec::with_capacity(4 + lang.len() + text.len());
            b.extend_from_slice(&(lang.len() as u16).to_be_bytes());
            b.extend_from_slice(lang);
            b.extend_from_slice(&(text.len() as u16).to_be_bytes());
            b.extend_from_slice(text);
            put_record(out, *t, name, &b);
        }
        Value::Bytes(t, b) => put_record(out, *t, name, b),
        Value::Collection(members) => {
            put_record(out, tag::BEG_COLLECTION, name, &[]);
            for m in members {
                put_record(out, tag::MEMBER_NAME, &[], m.name.as_bytes());
                for v in &m.values {
                    put_value(out, &[], v);
                }
            }
            put_record(out, tag::END_COLLECTION, &[], &[]);
        }
    }
}

/// Encodes a message (without a document).
pub fn encode(m: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.push(m.version.0);
    out.push(m.version.1);
    out.extend_from_slice(&m.code.to_be_bytes());
    out.extend_from_slice(&m.request_id.to_be_bytes());
    for g in &m.groups {
        out.push(g.tag);
        for a in &g.attributes {
            let mut name = a.name.as_bytes();
            for v in &a.values {
                put_value(&mut out, name, v);
                name = &[];
            }
        }
    }
    out.push(group::END);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Message {
        let mut op = Group::new(group::OPERATION);
        op.push(
            "attributes-charset",
            Value::Bytes(tag::CHARSET, b"utf-8".to_vec()),
        );
        op.push(
            "attributes-natural-language",
            Value::Bytes(tag::LANGUAGE, b"en".to_vec()),
        );
        op.push("printer-uri", Value::uri("ipp://h/ipp/print"));
        op.push("requesting-user-name", Value::name("al"));
        op.push("job-name", Value::Bytes(tag::NAME, vec![0xff, 0xfe])); // not UTF-8: kept
        op.push(
            "n",
            Value::WithLanguage(tag::NAME_WITH_LANGUAGE, b"fr".to_vec(), b"x".to_vec()),
        );
        op.push(
            "t",
            Value::WithLanguage(tag::TEXT_WITH_LANGUAGE, b"en".to_vec(), b"y".to_vec()),
        );
        let mut job = Group::new(group::JOB);
        job.push("copies", Value::integer(2));
        job.push("print-quality", Value::enumeration(4));
        job.push("b", Value::Bool(true));
        job.push("d", Value::DateTime([7, 230, 1, 2, 3, 4, 5, 0, b'+', 0, 0]));
        job.push("r", Value::Resolution(300, 600, 3));
        job.push("g", Value::Range(1, 99));
        job.push("o", Value::Bytes(tag::OCTET_STRING, vec![0, 1, 2]));
        job.push("u", Value::OutOfBand(tag::UNKNOWN));
        job.push("nv", Value::OutOfBand(tag::NO_VALUE));
        job.push("s", Value::Bytes(tag::URI_SCHEME, b"ipp".to_vec()));
        job.push("x", Value::Bytes(0x7F, vec![0, 0, 0x40, 0, 1]));
        job.attributes.push(Attribute::many(
            "sides-supported",
            vec![
                Value::keyword("one-sided"),
                Value::keyword("two-sided-long-edge"),
            ],
        ));
        let size = Attribute::new(
            "media-size",
            Value::Collection(vec![
                Attribute::new("x-dimension", Value::integer(21000)),
                Attribute::new("y-dimension", Value::integer(29700)),
            ]),
        );
        job.attributes.push(Attribute::many(
            "media-col",
            vec![
                Value::Collection(vec![
                    Attribute::new("media-size", size.values[0].clone()),
                    Attribute::many("k", vec![Value::keyword("a"), Value::keyword("b")]),
                ]),
                Value::Collection(vec![]),
            ],
        ));
        // A duplicate is kept as sent (the request checks refuse it, not the decoder).
        job.push("copies", Value::integer(3));
        Message {
            version: (2, 0),
            code: 0x0002,
            request_id: 42,
            groups: vec![op, job, Group::new(group::PRINTER)],
        }
    }

    #[test]
    fn every_tag_kind_round_trips_and_the_document_follows() {
        let m = every_kind();
        let mut bytes = encode(&m);
        let head = bytes.len();
        bytes.extend_from_slice(b"%PDF-1.4 document");
        let (back, used) = decode(&bytes).expect("decodes");
        assert_eq!(back, m);
        assert_eq!(used, head);
        assert_eq!(&bytes[used..], b"%PDF-1.4 document");
    }

    #[test]
    fn every_prefix_is_truncated_never_a_panic() {
        let bytes = encode(&every_kind());
        for n in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..n]).err(),
                Some(WireError::Truncated),
                "prefix {n}"
            );
        }
    }

    #[test]
    fn the_attribute_section_is_bounded() {
        let mut g = Group::new(group::OPERATION);
        for i in 0..20 {
            g.push(&format!("a{i}"), Value::Bytes(tag::TEXT, vec![b'x'; 4000]));
        }
        let m = Message {
            version: (1, 1),
            code: 0x000B,
            request_id: 1,
            groups: vec![g],
        };
        let bytes = encode(&m);
        assert!(bytes.len() > MAX_HEAD);
        assert_eq!(decode(&bytes).err(), Some(WireError::TooLarge));
        // Cut below the cap, it is known too large as soon as a length reaches past the cap.
        assert_eq!(
            decode(&bytes[..MAX_HEAD - 1]).err(),
            Some(WireError::TooLarge)
        );
        // Short of that, it is merely truncated: more may come.
        assert_eq!(decode(&bytes[..30_000]).err(), Some(WireError::Truncated));
    }

    #[test]
    fn collections_nest_at_most_max_depth() {
        let nest = |depth: usize| {
            let mut v = Value::Collection(vec![Attribute::new("x", Value::integer(1))]);
            for _ in 1..depth {
                v = Value::Collection(vec![Attribute::new("c", v)]);
            }
            let mut g = Group::new(group::JOB);
            g.push("media-col", v);
            encode(&Message {
                version: (2, 0),
                code: 2,
                request_id: 1,
                groups: vec![g],
            })
        };
        assert!(decode(&nest(MAX_DEPTH)).is_ok());
        assert_eq!(decode(&nest(MAX_DEPTH + 1)).err(), Some(WireError::TooDeep));
        // Thousands deep (as an attacker sends, 9 bytes per level) stop at the cap.
        let mut deep = vec![2, 0, 0, 2, 0, 0, 0, 1, group::JOB];
        put_record(&mut deep, tag::BEG_COLLECTION, b"c", &[]);
        for _ in 0..5000 {
            put_record(&mut deep, tag::MEMBER_NAME, &[], b"m");
            put_record(&mut deep, tag::BEG_COLLECTION, &[], &[]);
        }
        assert_eq!(decode(&deep).err(), Some(WireError::TooDeep));
    }

    #[test]
    fn malformed_values_are_refused() {
        let with = |t: u8, name: &[u8], v: &[u8]| {
            let mut b = vec![1, 1, 0, 0x0B, 0, 0, 0, 1, group::OPERATION];
            put_record(&mut b, t, name, v);
            b.push(group::END);
            decode(&b)
        };
        assert!(with(tag::INTEGER, b"i", &[0, 1]).is_err());
        assert!(with(tag::BOOLEAN, b"b", &[2]).is_err());
        assert!(with(tag::DATE_TIME, b"d", &[0; 10]).is_err());
        assert!(with(tag::RESOLUTION, b"r", &[0; 8]).is_err());
        assert!(with(tag::RANGE, b"r", &[0; 9]).is_err());
        assert!(with(tag::TEXT_WITH_LANGUAGE, b"t", &[0, 5, b'e']).is_err());
        assert!(with(tag::END_COLLECTION, b"e", &[]).is_err());
        assert!(with(tag::MEMBER_NAME, b"m", b"x").is_err());
        assert!(
            with(tag::TEXT, &[0xff], b"x").is_err(),
            "a name must be UTF-8"
        );
        assert!(
            with(tag::TEXT, b"", b"x").is_err(),
            "no attribute to add a value to"
        );
        // An attribute before any group.
        let mut b = vec![1, 1, 0, 0x0B, 0, 0, 0, 1];
        put_record(&mut b, tag::TEXT, b"t", b"x");
        b.push(group::END);
        assert!(decode(&b).is_err());
        // A value length past the end is truncated, not read out of bounds; past the cap, too
        // large at once.
        let b = vec![
            1,
            1,
            0,
            0x0B,
            0,
            0,
            0,
            1,
            group::OPERATION,
            tag::TEXT,
            0,
            1,
            b't',
            0,
            0xff,
            1,
        ];
        assert_eq!(decode(&b).err(), Some(WireError::Truncated));
        let b = vec![
            1,
            1,
            0,
            0x0B,
            0,
            0,
            0,
            1,
            group::OPERATION,
            tag::TEXT,
            0,
            1,
            b't',
            0xff,
            0xff,
            1,
        ];
        assert_eq!(decode(&b).err(), Some(WireError::TooLarge));
    }
}
