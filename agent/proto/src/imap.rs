//! IMAP4rev1 commands (RFC 3501 section 6), the subset this server implements, parsed without
//! I/O so they can be fuzzed. The input is one whole command: literals are already read and sit
//! in place (`{5}\r\nhello`), the final CRLF is removed.

/// A message set: ranges, `u32::MAX` standing for `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqSet(pub Vec<(u32, u32)>);

impl SeqSet {
    /// Whether `n` is in the set, `star` being the value of `*`.
    pub fn contains(&self, n: u32, star: u32) -> bool {
        self.0.iter().any(|&(a, b)| {
            let a = if a == u32::MAX { star } else { a };
            let b = if b == u32::MAX { star } else { b };
            (a.min(b)..=a.max(b)).contains(&n)
        })
    }
}

/// What part of a message `BODY[...]` asks for: the whole message or a MIME part (`path`,
/// part numbers from 1, empty for the message itself), and what of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub path: Vec<u32>,
    pub text: SectionText,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    /// `BODY[]` or `BODY[1.2]`: everything (a part's body, without its MIME header).
    Full,
    Header,
    Text,
    /// `BODY[1.MIME]`: a part's MIME header.
    Mime,
    HeaderFields {
        not: bool,
        fields: Vec<String>,
    },
}

impl Section {
    /// The top-level section of that kind.
    pub fn top(text: SectionText) -> Section {
        Section {
            path: Vec::new(),
            text,
        }
    }

    /// The section as the reply names it (`1.2.MIME`, `HEADER.FIELDS (DATE)`).
    pub fn spec(&self) -> String {
        let mut out: Vec<String> = self.path.iter().map(u32::to_string).collect();
        match &self.text {
            SectionText::Full => {}
            SectionText::Header => out.push("HEADER".into()),
            SectionText::Text => out.push("TEXT".into()),
            SectionText::Mime => out.push("MIME".into()),
            SectionText::HeaderFields { not, fields } => out.push(format!(
                "HEADER.FIELDS{} ({})",
                if *not { ".NOT" } else { "" },
                fields.join(" ")
            )),
        }
        out.join(".")
    }
}

/// A calendar date of SEARCH (`1-Feb-1994`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// Which date a date search key compares, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateWhich {
    /// The internal date (arrival).
    Internal,
    /// The `Date:` header.
    Sent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateCmp {
    Before,
    On,
    Since,
}

/// The month names of IMAP dates.
pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchItem {
    Flags,
    Uid,
    InternalDate,
    Rfc822Size,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    Envelope,
    /// `BODYSTRUCTURE` (with extension data) or `BODY` without a section (without).
    BodyStructure {
        extended: bool,
    },
    Body {
        peek: bool,
        section: Section,
        partial: Option<(u32, u32)>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    /// A system flag by Maildir letter, and whether it must be set.
    Flag(char, bool),
    New,
    Old,
    Recent,
    Seq(SeqSet),
    Uid(SeqSet),
    Not(Box<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    And(Vec<SearchKey>),
    /// A header field contains the text (case-insensitive).
    Header(String, String),
    Body(String),
    Text(String),
    Larger(u64),
    Smaller(u64),
    Date(DateWhich, DateCmp, Date),
    /// A keyword, and whether it must be set.
    Keyword(String, bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Capability,
    Noop,
    Logout,
    Check,
    Close,
    Expunge,
    Unselect,
    Idle,
    Namespace,
    StartTls,
    Login {
        user: String,
        password: String,
    },
    Authenticate {
        mechanism: String,
        initial: Option<String>,
    },
    Select(String),
    Examine(String),
    /// LIST, with RFC 5258/6154 selection (`(SPECIAL-USE)`, `(SUBSCRIBED)`) and return options.
    List {
        reference: String,
        pattern: String,
        special_use_only: bool,
        subscribed_only: bool,
        return_special_use: bool,
        return_subscribed: bool,
    },
    Lsub {
        reference: String,
        pattern: String,
    },
    Status {
        mailbox: String,
        items: Vec<String>,
    },
    Fetch {
        uid: bool,
        set: SeqSet,
        items: Vec<FetchItem>,
    },
    Store {
        uid: bool,
        set: SeqSet,
        mode: StoreMode,
        silent: bool,
        flags: Vec<String>,
    },
    Search {
        uid: bool,
        keys: Vec<SearchKey>,
    },
    Create(String),
    Delete(String),
    Rename {
        from: String,
        to: String,
    },
    Subscribe(String),
    Unsubscribe(String),
    Append {
        mailbox: String,
        flags: Vec<String>,
        /// The date-time as sent (`"17-Jul-1996 02:44:25 -0700"`), unchecked.
        date: Option<String>,
        message: Vec<u8>,
    },
    Copy {
        uid: bool,
        set: SeqSet,
        mailbox: String,
    },
    Move {
        uid: bool,
        set: SeqSet,
        mailbox: String,
    },
    /// `UID EXPUNGE` (RFC 4315).
    UidExpunge(SeqSet),
    Enable(Vec<String>),
    /// RFC 2971; the client's parameters are not kept.
    Id,
    /// A command of RFC 3501 this server does not offer.
    Unsupported(String),
}

impl Command {
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Capability => "CAPABILITY",
            Command::Noop => "NOOP",
            Command::Logout => "LOGOUT",
            Command::Check => "CHECK",
            Command::Close => "CLOSE",
            Command::Expunge => "EXPUNGE",
            Command::Unselect => "UNSELECT",
            Command::Idle => "IDLE",
            Command::Namespace => "NAMESPACE",
            Command::StartTls => "STARTTLS",
            Command::Login { .. } => "LOGIN",
            Command::Authenticate { .. } => "AUTHENTICATE",
            Command::Select(_) => "SELECT",
            Command::Examine(_) => "EXAMINE",
            Command::List { .. } => "LIST",
            Command::Lsub { .. } => "LSUB",
            Command::Status { .. } => "STATUS",
            Command::Fetch { uid: false, .. } => "FETCH",
            Command::Fetch { uid: true, .. } => "UID FETCH",
            Command::Store { uid: false, .. } => "STORE",
            Command::Store { uid: true, .. } => "UID STORE",
            Command::Search { uid: false, .. } => "SEARCH",
            Command::Search { uid: true, .. } => "UID SEARCH",
            Command::Create(_) => "CREATE",
            Command::Delete(_) => "DELETE",
            Command::Rename { .. } => "RENAME",
            Command::Subscribe(_) => "SUBSCRIBE",
            Command::Unsubscribe(_) => "UNSUBSCRIBE",
            Command::Append { .. } => "APPEND",
            Command::Copy { uid: false, .. } => "COPY",
            Command::Copy { uid: true, .. } => "UID COPY",
            Command::Move { uid: false, .. } => "MOVE",
            Command::Move { uid: true, .. } => "UID MOVE",
            Command::UidExpunge(_) => "UID EXPUNGE",
            Command::Enable(_) => "ENABLE",
            Command::Id => "ID",
            Command::Unsupported(_) => "UNSUPPORTED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub tag: String,
    pub command: Command,
}

/// A command that cannot be parsed: answered `BAD`, with the tag when there was one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub tag: Option<String>,
    pub why: String,
}

/// Literals one command may carry (LOGIN needs two; the command's total size is bounded by the
/// server too). More is refused before the next one is read.
pub const MAX_LITERALS: usize = 64;
/// How deep SEARCH keys may nest (parentheses, NOT, OR): the matcher recurses this deep.
pub const MAX_SEARCH_DEPTH: usize = 16;

/// Where a command line ends in a literal, `{n}` or `{n+}`: (n, non-synchronizing).
pub fn trailing_literal(line: &[u8]) -> Option<(usize, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let digits = &inner[open + 1..];
    let (digits, plus) = match digits.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (digits, false),
    };
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((std::str::from_utf8(digits).ok()?.parse().ok()?, plus))
}

type R<T> = Result<T, String>;

struct Cursor<'a> {
    input: &'a [u8],
    pos: usize,
}

fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !b"(){%*\"\\]".contains(&b)
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> R<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!("expected '{}' at {}", b as char, self.pos))
        }
    }

    fn space(&mut self) -> R<()> {
        self.expect(b' ')
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.input[start..self.pos]
    }

    fn atom(&mut self) -> R<String> {
        let a = self.take_while(is_atom_char);
        if a.is_empty() {
            return Err(format!("expected an atom at {}", self.pos));
        }
        Ok(String::from_utf8_lossy(a).into_owned())
    }

    fn number(&mut self) -> R<u32> {
        let d = self.take_while(|b| b.is_ascii_digit());
        if d.is_empty() || d.len() > 10 {
            return Err(format!("expected a number at {}", self.pos));
        }
        std::str::from_utf8(d)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "number too large".to_string())
    }

    fn quoted(&mut self) -> R<String> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r') | Some(b'\n') => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return Err("bad escape in quoted string".into()),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| "quoted string is not UTF-8".to_string())
    }

    fn literal(&mut self) -> R<String> {
        let bytes = self.literal_bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "literal is not UTF-8".to_string())
    }

    fn literal_bytes(&mut self) -> R<&'a [u8]> {
        self.expect(b'{')?;
        let n = self.number()? as usize;
        self.eat(b'+');
        self.expect(b'}')?;
        self.expect(b'\r')?;
        self.expect(b'\n')?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.input.len())
            .ok_or("literal longer than the command")?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// A parenthesised list of atoms (flags may start with `\\`), upper-cased when `upper`.
    fn atom_list(&mut self, upper: bool) -> R<Vec<String>> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        while !self.eat(b')') {
            if !out.is_empty() {
                self.space()?;
            }
            let a = self.take_while(|b| is_atom_char(b) || b == b'\\');
            if a.is_empty() {
                return Err(format!("expected an atom at {}", self.pos));
            }
            let a = String::from_utf8_lossy(a).into_owned();
            out.push(if upper { a.to_ascii_uppercase() } else { a });
            if out.len() > 100 {
                return Err("list too long".into());
            }
        }
        Ok(out)
    }

    /// `1-Feb-1994` (also quoted).
    fn date(&mut self) -> R<Date> {
        let quoted = self.eat(b'"');
        let day = self.number()?;
        self.expect(b'-')?;
        let month = self.take_while(|b| b.is_ascii_alphabetic());
        let month = MONTHS
            .iter()
            .position(|m| m.as_bytes().eq_ignore_ascii_case(month))
            .ok_or("expected a month name such as Feb")?;
        self.expect(b'-')?;
        let year = self.number()?;
        if quoted {
            self.expect(b'"')?;
        }
        if !(1..=31).contains(&day) || !(1..=9999).contains(&year) {
            return Err("the date is out of range".into());
        }
        Ok(Date {
            year: year as u16,
            month: month as u8 + 1,
            day: day as u8,
        })
    }

    fn string(&mut self) -> R<String> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(),
            _ => Err(format!("expected a string at {}", self.pos)),
        }
    }

    /// astring: atom (`]` allowed) or string.
    fn astring(&mut self) -> R<String> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string(),
            _ => {
                let a = self.take_while(|b| is_atom_char(b) || b == b']');
                if a.is_empty() {
                    return Err(format!("expected a string at {}", self.pos));
                }
                Ok(String::from_utf8_lossy(a).into_owned())
            }
        }
    }

    /// list-mailbox: like astring, with `%` and `*` allowed.
    fn list_mailbox(&mut self) -> R<String> {
        match self.peek() {
            Some(b'"') | Some(b'{') => self.string(),
            _ => {
                let a = self.take_while(|b| is_atom_char(b) || b"]%*".contains(&b));
                if a.is_empty() {
                    return Err(format!("expected a mailbox pattern at {}", self.pos));
                }
                Ok(String::from_utf8_lossy(a).into_owned())
            }
        }
    }

    fn seq_number(&mut self) -> R<u32> {
        if self.eat(b'*') {
            return Ok(u32::MAX);
        }
        match self.number()? {
            0 => Err("message numbers start at 1".into()),
            n => Ok(n),
        }
    }

    fn seq_set(&mut self) -> R<SeqSet> {
        let mut ranges = Vec::new();
        loop {
            let a = self.seq_number()?;
            let b = if self.eat(b':') {
                self.seq_number()?
            } else {
                a
            };
            ranges.push((a, b));
            if ranges.len() > 1000 {
                return Err("sequence set too long".into());
            }
            if !self.eat(b',') {
                break;
            }
        }
        Ok(SeqSet(ranges))
    }

    fn end(&self) -> R<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(format!("unexpected text at {}", self.pos))
        }
    }
}

/// Parses one whole command.
pub fn parse(input: &[u8]) -> Result<Request, ParseError> {
    let mut c = Cursor { input, pos: 0 };
    let tag = c.take_while(|b| is_atom_char(b) && b != b'+');
    if tag.is_empty() {
        return Err(ParseError {
            tag: None,
            why: "missing tag".into(),
        });
    }
    let tag = String::from_utf8_lossy(tag).into_owned();
    let command = command(&mut c).and_then(|cmd| c.end().map(|()| cmd));
    match command {
        Ok(command) => Ok(Request { tag, command }),
        Err(why) => Err(ParseError {
            tag: Some(tag),
            why,
        }),
    }
}

fn command(c: &mut Cursor) -> R<Command> {
    c.space()?;
    let mut name = c.atom()?.to_ascii_uppercase();
    let mut uid = false;
    if name == "UID" {
        c.space()?;
        uid = true;
        name = c.atom()?.to_ascii_uppercase();
        if name == "EXPUNGE" {
            c.space()?;
            return Ok(Command::UidExpunge(c.seq_set()?));
        }
        if !["FETCH", "STORE", "SEARCH", "COPY", "MOVE"].contains(&name.as_str()) {
            return Err(format!("unknown command UID {name}"));
        }
    }
    let simple = match name.as_str() {
        "CAPABILITY" => Some(Command::Capability),
        "NOOP" => Some(Command::Noop),
        "LOGOUT" => Some(Command::Logout),
        "CHECK" => Some(Command::Check),
        "CLOSE" => Some(Command::Close),
        "EXPUNGE" => Some(Command::Expunge),
        "UNSELECT" => Some(Command::Unselect),
        "IDLE" => Some(Command::Idle),
        "NAMESPACE" => Some(Command::Namespace),
        "STARTTLS" => Some(Command::StartTls),
        _ => None,
    };
    if let Some(cmd) = simple {
        return Ok(cmd);
    }
    match name.as_str() {
        "LOGIN" => {
            c.space()?;
            let user = c.astring()?;
            c.space()?;
            let password = c.astring()?;
            Ok(Command::Login { user, password })
        }
        "AUTHENTICATE" => {
            c.space()?;
            let mechanism = c.atom()?.to_ascii_uppercase();
            let initial = if c.eat(b' ') {
                let a = c.take_while(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
                Some(String::from_utf8_lossy(a).into_owned())
            } else {
                None
            };
            Ok(Command::Authenticate { mechanism, initial })
        }
        "SELECT" | "EXAMINE" => {
            c.space()?;
            let mailbox = c.astring()?;
            Ok(if name == "SELECT" {
                Command::Select(mailbox)
            } else {
                Command::Examine(mailbox)
            })
        }
        "LIST" | "LSUB" => {
            c.space()?;
            let mut selection = Vec::new();
            if name == "LIST" && c.peek() == Some(b'(') {
                selection = c.atom_list(true)?;
                c.space()?;
            }
            let reference = c.astring().or_else(|_| c.string())?;
            c.space()?;
            let pattern = c.list_mailbox()?;
            if reference.len() + pattern.len() > crate::imap_match::MAX_LIST_PATTERN {
                return Err(format!(
                    "reference and pattern longer than {} bytes",
                    crate::imap_match::MAX_LIST_PATTERN
                ));
            }
            if name == "LSUB" {
                return Ok(Command::Lsub { reference, pattern });
            }
            let mut returns = Vec::new();
            if c.eat(b' ') {
                let word = c.atom()?.to_ascii_uppercase();
                if word != "RETURN" {
                    return Err("expected RETURN".into());
                }
                c.space()?;
                returns = c.atom_list(true)?;
            }
            let has = |list: &[String], what: &str| list.iter().any(|s| s == what);
            Ok(Command::List {
                reference,
                pattern,
                special_use_only: has(&selection, "SPECIAL-USE"),
                subscribed_only: has(&selection, "SUBSCRIBED"),
                return_special_use: has(&returns, "SPECIAL-USE") || has(&selection, "SPECIAL-USE"),
                return_subscribed: has(&returns, "SUBSCRIBED") || has(&selection, "SUBSCRIBED"),
            })
        }
        "CREATE" | "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" => {
            c.space()?;
            let mailbox = c.astring()?;
            // RFC 6154 CREATE-SPECIAL-USE options are not offered; a trailing `(USE ..)` is refused.
            Ok(match name.as_str() {
                "CREATE" => Command::Create(mailbox),
                "DELETE" => Command::Delete(mailbox),
                "SUBSCRIBE" => Command::Subscribe(mailbox),
                _ => Command::Unsubscribe(mailbox),
            })
        }
        "RENAME" => {
            c.space()?;
            let from = c.astring()?;
            c.space()?;
            let to = c.astring()?;
            Ok(Command::Rename { from, to })
        }
        "APPEND" => {
            c.space()?;
            let mailbox = c.astring()?;
            c.space()?;
            let mut flags = Vec::new();
            if c.peek() == Some(b'(') {
                flags = c.atom_list(false)?;
                c.space()?;
            }
            let mut date = None;
            if c.peek() == Some(b'"') {
                date = Some(c.quoted()?);
                c.space()?;
            }
            let message = c.literal_bytes()?.to_vec();
            Ok(Command::Append {
                mailbox,
                flags,
                date,
                message,
            })
        }
        "COPY" | "MOVE" => {
            c.space()?;
            let set = c.seq_set()?;
            c.space()?;
            let mailbox = c.astring()?;
            Ok(if name == "COPY" {
                Command::Copy { uid, set, mailbox }
            } else {
                Command::Move { uid, set, mailbox }
            })
        }
        "ENABLE" => {
            let mut caps = Vec::new();
            while c.eat(b' ') {
                caps.push(c.atom()?.to_ascii_uppercase());
            }
            if caps.is_empty() {
                return Err("ENABLE needs a capability".into());
            }
            Ok(Command::Enable(caps))
        }
        "ID" => {
            // `ID NIL` or `ID ("name" "value" ...)`: read and dropped.
            c.space()?;
            if c.peek() == Some(b'(') {
                c.pos += 1;
                while !c.eat(b')') {
                    c.eat(b' ');
                    if c.peek().is_some_and(|b| b == b'N' || b == b'n') {
                        c.atom()?;
                    } else {
                        c.string()?;
                    }
                    if c.at_end() {
                        return Err("unterminated ID list".into());
                    }
                }
            } else {
                let nil = c.atom()?;
                if !nil.eq_ignore_ascii_case("NIL") {
                    return Err("expected NIL or a list".into());
                }
            }
            Ok(Command::Id)
        }
        "STATUS" => {
            c.space()?;
            let mailbox = c.astring()?;
            c.space()?;
            c.expect(b'(')?;
            let mut items = Vec::new();
            loop {
                items.push(c.atom()?.to_ascii_uppercase());
                if !c.eat(b' ') {
                    break;
                }
            }
            c.expect(b')')?;
            Ok(Command::Status { mailbox, items })
        }
        "FETCH" => {
            c.space()?;
            let set = c.seq_set()?;
            c.space()?;
            let items = fetch_items(c)?;
            Ok(Command::Fetch { uid, set, items })
        }
        "STORE" => {
            c.space()?;
            let set = c.seq_set()?;
            c.space()?;
            let what = c.atom()?.to_ascii_uppercase();
            let (mode, rest) = match what.as_bytes().first() {
                Some(b'+') => (StoreMode::Add, &what[1..]),
                Some(b'-') => (StoreMode::Remove, &what[1..]),
                _ => (StoreMode::Replace, what.as_str()),
            };
            let silent = match rest {
                "FLAGS" => false,
                "FLAGS.SILENT" => true,
                _ => return Err("expected FLAGS, +FLAGS or -FLAGS".into()),
            };
            c.space()?;
            let mut flags = Vec::new();
            let paren = c.eat(b'(');
            loop {
                if paren && c.peek() == Some(b')') {
                    break;
                }
                let f = c.take_while(|b| is_atom_char(b) || b == b'\\');
                if f.is_empty() {
                    return Err("expected a flag".into());
                }
                flags.push(String::from_utf8_lossy(f).into_owned());
                if !c.eat(b' ') {
                    break;
                }
            }
            if paren {
                c.expect(b')')?;
            }
            Ok(Command::Store {
                uid,
                set,
                mode,
                silent,
                flags,
            })
        }
        "SEARCH" => {
            c.space()?;
            if c.input[c.pos..].len() >= 8
                && c.input[c.pos..c.pos + 8].eq_ignore_ascii_case(b"CHARSET ")
            {
                c.pos += 8;
                let charset = c.astring()?;
                if !charset.eq_ignore_ascii_case("UTF-8")
                    && !charset.eq_ignore_ascii_case("US-ASCII")
                {
                    return Err("[BADCHARSET (UTF-8 US-ASCII)] unsupported charset".into());
                }
                c.space()?;
            }
            let mut keys = Vec::new();
            loop {
                keys.push(search_key(c, 0)?);
                if !c.eat(b' ') {
                    break;
                }
            }
            Ok(Command::Search { uid, keys })
        }
        _ => Err(format!("unknown command {name}")),
    }
}

fn fetch_items(c: &mut Cursor) -> R<Vec<FetchItem>> {
    if c.eat(b'(') {
        let mut items = Vec::new();
        loop {
            items.push(fetch_item(c)?);
            if items.len() > 64 {
                return Err("too many fetch items".into());
            }
            if !c.eat(b' ') {
                break;
            }
        }
        c.expect(b')')?;
        return Ok(items);
    }
    let start = c.pos;
    let name = c.atom()?.to_ascii_uppercase();
    let (flags, date, size, envelope) = (
        FetchItem::Flags,
        FetchItem::InternalDate,
        FetchItem::Rfc822Size,
        FetchItem::Envelope,
    );
    match name.as_str() {
        "ALL" => Ok(vec![flags, date, size, envelope]),
        "FAST" => Ok(vec![flags, date, size]),
        "FULL" => Ok(vec![
            flags,
            date,
            size,
            envelope,
            FetchItem::BodyStructure { extended: false },
        ]),
        _ => {
            c.pos = start;
            Ok(vec![fetch_item(c)?])
        }
    }
}

fn fetch_item(c: &mut Cursor) -> R<FetchItem> {
    let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let item = match name.as_str() {
        "FLAGS" => FetchItem::Flags,
        "UID" => FetchItem::Uid,
        "INTERNALDATE" => FetchItem::InternalDate,
        "RFC822.SIZE" => FetchItem::Rfc822Size,
        "RFC822" => FetchItem::Rfc822,
        "RFC822.HEADER" => FetchItem::Rfc822Header,
        "RFC822.TEXT" => FetchItem::Rfc822Text,
        "ENVELOPE" => FetchItem::Envelope,
        "BODY" | "BODY.PEEK" if c.peek() == Some(b'[') => {
            c.pos += 1;
            let section = section(c)?;
            c.expect(b']')?;
            let partial = if c.eat(b'<') {
                let start = c.number()?;
                c.expect(b'.')?;
                let len = c.number()?;
                c.expect(b'>')?;
                Some((start, len))
            } else {
                None
            };
            FetchItem::Body {
                peek: name == "BODY.PEEK",
                section,
                partial,
            }
        }
        "BODY" => FetchItem::BodyStructure { extended: false },
        "BODYSTRUCTURE" => FetchItem::BodyStructure { extended: true },
        _ => return Err(format!("unknown fetch item {name}")),
    };
    Ok(item)
}

fn section(c: &mut Cursor) -> R<Section> {
    let mut path = Vec::new();
    while c.peek().is_some_and(|b| b.is_ascii_digit()) {
        let n = c.number()?;
        if n == 0 {
            return Err("part numbers start at 1".into());
        }
        path.push(n);
        if path.len() > 32 {
            return Err("part number too deep".into());
        }
        if !c.eat(b'.') {
            return Ok(Section {
                path,
                text: SectionText::Full,
            });
        }
    }
    let name = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let text = match name.as_str() {
        "" if path.is_empty() => SectionText::Full,
        "HEADER" => SectionText::Header,
        "TEXT" => SectionText::Text,
        "MIME" if !path.is_empty() => SectionText::Mime,
        "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
            c.space()?;
            c.expect(b'(')?;
            let mut fields = Vec::new();
            loop {
                fields.push(c.astring()?.to_ascii_uppercase());
                if fields.len() > 100 {
                    return Err("too many header fields".into());
                }
                if !c.eat(b' ') {
                    break;
                }
            }
            c.expect(b')')?;
            SectionText::HeaderFields {
                not: name.ends_with(".NOT"),
                fields,
            }
        }
        _ => return Err(format!("unknown section {name}")),
    };
    Ok(Section { path, text })
}

fn search_key(c: &mut Cursor, depth: usize) -> R<SearchKey> {
    if depth > MAX_SEARCH_DEPTH {
        return Err("search keys nested too deep".into());
    }
    if c.eat(b'(') {
        let mut keys = Vec::new();
        loop {
            keys.push(search_key(c, depth + 1)?);
            if !c.eat(b' ') {
                break;
            }
        }
        c.expect(b')')?;
        return Ok(SearchKey::And(keys));
    }
    if c.peek().is_some_and(|b| b.is_ascii_digit() || b == b'*') {
        return Ok(SearchKey::Seq(c.seq_set()?));
    }
    let name = c.atom()?.to_ascii_uppercase();
    let arg = |c: &mut Cursor| -> R<String> {
        c.space()?;
        c.astring()
    };
    Ok(match name.as_str() {
        "ALL" => SearchKey::All,
        "SEEN" => SearchKey::Flag('S', true),
        "UNSEEN" => SearchKey::Flag('S', false),
        "DELETED" => SearchKey::Flag('T', true),
        "UNDELETED" => SearchKey::Flag('T', false),
        "FLAGGED" => SearchKey::Flag('F', true),
        "UNFLAGGED" => SearchKey::Flag('F', false),
        "ANSWERED" => SearchKey::Flag('R', true),
        "UNANSWERED" => SearchKey::Flag('R', false),
        "DRAFT" => SearchKey::Flag('D', true),
        "UNDRAFT" => SearchKey::Flag('D', false),
        "NEW" => SearchKey::New,
        "OLD" => SearchKey::Old,
        "RECENT" => SearchKey::Recent,
        "UID" => {
            c.space()?;
            SearchKey::Uid(c.seq_set()?)
        }
        "NOT" => {
            c.space()?;
            SearchKey::Not(Box::new(search_key(c, depth + 1)?))
        }
        "OR" => {
            c.space()?;
            let a = search_key(c, depth + 1)?;
            c.space()?;
            let b = search_key(c, depth + 1)?;
            SearchKey::Or(Box::new(a), Box::new(b))
        }
        "SUBJECT" | "FROM" | "TO" | "CC" | "BCC" => SearchKey::Header(name.clone(), arg(c)?),
        "HEADER" => {
            let field = arg(c)?.to_ascii_uppercase();
            SearchKey::Header(field, arg(c)?)
        }
        "BODY" => SearchKey::Body(arg(c)?),
        "TEXT" => SearchKey::Text(arg(c)?),
        "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
            c.space()?;
            let date = c.date()?;
            let (which, cmp) = match name.as_str() {
                "BEFORE" => (DateWhich::Internal, DateCmp::Before),
                "ON" => (DateWhich::Internal, DateCmp::On),
                "SINCE" => (DateWhich::Internal, DateCmp::Since),
                "SENTBEFORE" => (DateWhich::Sent, DateCmp::Before),
                "SENTON" => (DateWhich::Sent, DateCmp::On),
                _ => (DateWhich::Sent, DateCmp::Since),
            };
            SearchKey::Date(which, cmp, date)
        }
        "KEYWORD" | "UNKEYWORD" => {
            c.space()?;
            SearchKey::Keyword(c.atom()?, name == "KEYWORD")
        }
        "LARGER" | "SMALLER" => {
            c.space()?;
            let n = u64::from(c.number()?);
            if name == "LARGER" {
                SearchKey::Larger(n)
            } else {
                SearchKey::Smaller(n)
            }
        }
        _ => return Err(format!("search key {name} is not supported")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(s: &str) -> Command {
        parse(s.as_bytes())
            .unwrap_or_else(|e| panic!("{s}: {e:?}"))
            .command
    }

    #[test]
    fn commands_of_real_clients() {
        assert_eq!(
            cmd("a1 LOGIN alice \"pa ss\\\"w\""),
            Command::Login {
                user: "alice".into(),
                password: "pa ss\"w".into()
            }
        );
        assert_eq!(
            cmd("a1 LOGIN {5}\r\nalice {2+}\r\npw"),
            Command::Login {
                user: "alice".into(),
                password: "pw".into()
            }
        );
        assert_eq!(cmd("A2 select INBOX"), Command::Select("INBOX".into()));
        assert_eq!(
            cmd("A3 LIST \"\" *"),
            Command::List {
                reference: "".into(),
                pattern: "*".into(),
                special_use_only: false,
                subscribed_only: false,
                return_special_use: false,
                return_subscribed: false,
            }
        );
        assert_eq!(
            cmd("A3 LIST \"INBOX\" *"),
            Command::List {
                reference: "INBOX".into(),
                pattern: "*".into(),
                special_use_only: false,
                subscribed_only: false,
                return_special_use: false,
                return_subscribed: false,
            }
        );
        assert_eq!(
            cmd("a UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (DATE FROM)]<0.100>)"),
            Command::Fetch {
                uid: true,
                set: SeqSet(vec![(1, u32::MAX)]),
                items: vec![
                    FetchItem::Uid,
                    FetchItem::Flags,
                    FetchItem::Body {
                        peek: true,
                        section: Section::top(SectionText::HeaderFields {
                            not: false,
                            fields: vec!["DATE".into(), "FROM".into()]
                        }),
                        partial: Some((0, 100)),
                    },
                ],
            }
        );
        assert_eq!(
            cmd("a FETCH 1 BODY[]"),
            Command::Fetch {
                uid: false,
                set: SeqSet(vec![(1, 1)]),
                items: vec![FetchItem::Body {
                    peek: false,
                    section: Section::top(SectionText::Full),
                    partial: None
                }],
            }
        );
        assert_eq!(
            cmd("a STORE 1,3:4 +FLAGS.SILENT (\\Deleted \\Seen)"),
            Command::Store {
                uid: false,
                set: SeqSet(vec![(1, 1), (3, 4)]),
                mode: StoreMode::Add,
                silent: true,
                flags: vec!["\\Deleted".into(), "\\Seen".into()],
            }
        );
        assert_eq!(
            cmd("a STORE 1 +FLAGS \\Deleted"),
            Command::Store {
                uid: false,
                set: SeqSet(vec![(1, 1)]),
                mode: StoreMode::Add,
                silent: false,
                flags: vec!["\\Deleted".into()],
            }
        );
        assert_eq!(
            cmd("a SEARCH CHARSET UTF-8 UNSEEN NOT DELETED"),
            Command::Search {
                uid: false,
                keys: vec![
                    SearchKey::Flag('S', false),
                    SearchKey::Not(Box::new(SearchKey::Flag('T', true)))
                ],
            }
        );
        assert_eq!(
            cmd("a AUTHENTICATE PLAIN AGEAYg=="),
            Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            }
        );
        assert_eq!(
            parse(b"a APPEND Sent (\\Seen $Label1) \"17-Jul-1996 02:44:25 -0700\" {3+}\r\na\xffc")
                .expect("parses")
                .command,
            Command::Append {
                mailbox: "Sent".into(),
                flags: vec!["\\Seen".into(), "$Label1".into()],
                date: Some("17-Jul-1996 02:44:25 -0700".into()),
                message: b"a\xffc".to_vec(),
            }
        );
    }

    #[test]
    fn folder_and_message_commands() {
        assert_eq!(
            cmd("a LIST (SPECIAL-USE) \"\" \"*\" RETURN (SUBSCRIBED)"),
            Command::List {
                reference: "".into(),
                pattern: "*".into(),
                special_use_only: true,
                subscribed_only: false,
                return_special_use: true,
                return_subscribed: true,
            }
        );
        assert_eq!(
            cmd("a UID MOVE 4:* Trash"),
            Command::Move {
                uid: true,
                set: SeqSet(vec![(4, u32::MAX)]),
                mailbox: "Trash".into()
            }
        );
        assert_eq!(
            cmd("a UID EXPUNGE 1,3"),
            Command::UidExpunge(SeqSet(vec![(1, 1), (3, 3)]))
        );
        assert_eq!(
            cmd("a RENAME \"Old one\" New/Child"),
            Command::Rename {
                from: "Old one".into(),
                to: "New/Child".into()
            }
        );
        assert_eq!(cmd("a ID (\"name\" \"mutt\" \"os\" NIL)"), Command::Id);
        assert_eq!(
            cmd("a FETCH 1 (BODYSTRUCTURE BODY.PEEK[2.1.MIME] BODY[3] BODY)"),
            Command::Fetch {
                uid: false,
                set: SeqSet(vec![(1, 1)]),
                items: vec![
                    FetchItem::BodyStructure { extended: true },
                    FetchItem::Body {
                        peek: true,
                        section: Section {
                            path: vec![2, 1],
                            text: SectionText::Mime
                        },
                        partial: None
                    },
                    FetchItem::Body {
                        peek: false,
                        section: Section {
                            path: vec![3],
                            text: SectionText::Full
                        },
                        partial: None
                    },
                    FetchItem::BodyStructure { extended: false },
                ],
            }
        );
        assert_eq!(
            cmd("a SEARCH SINCE 1-Feb-1994 SENTBEFORE \"5-mar-2024\" KEYWORD $Junk"),
            Command::Search {
                uid: false,
                keys: vec![
                    SearchKey::Date(
                        DateWhich::Internal,
                        DateCmp::Since,
                        Date {
                            year: 1994,
                            month: 2,
                            day: 1
                        }
                    ),
                    SearchKey::Date(
                        DateWhich::Sent,
                        DateCmp::Before,
                        Date {
                            year: 2024,
                            month: 3,
                            day: 5
                        }
                    ),
                    SearchKey::Keyword("$Junk".into(), true),
                ],
            }
        );
        assert!(parse(b"a FETCH 1 BODY[0]").is_err());
        assert!(parse(b"a FETCH 1 BODY[MIME]").is_err());
        assert!(parse(b"a SEARCH SINCE 1-Foo-1994").is_err());
        assert!(parse(b"a UID FROB 1").is_err());
    }

    #[test]
    fn bad_commands_keep_their_tag() {
        assert_eq!(parse(b"").unwrap_err().tag, None);
        assert_eq!(
            parse(b"t1 FETCH 0 FLAGS").unwrap_err().tag,
            Some("t1".into())
        );
        assert!(parse(b"t1 LOGIN {10}\r\nab").is_err());
        assert!(parse(b"t1 SELECT INBOX extra").is_err());
        assert!(parse(b"t1 FROB").is_err());
        assert_eq!(trailing_literal(b"a LOGIN {5}"), Some((5, false)));
        assert_eq!(trailing_literal(b"a LOGIN {5+}"), Some((5, true)));
        assert_eq!(trailing_literal(b"a LOGIN {x}"), None);
    }
}
