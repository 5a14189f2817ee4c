//! POP3 command lines (RFC 1939, RFC 2449 CAPA), parsed without I/O so they can be fuzzed.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    /// The rest of the line: a password may hold spaces.
    Pass(String),
    Quit,
    Stat,
    List(Option<u32>),
    Retr(u32),
    Dele(u32),
    Noop,
    Rset,
    Top(u32, u32),
    Uidl(Option<u32>),
    Capa,
    Stls,
}

impl Command {
    pub fn verb(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Quit => "QUIT",
            Command::Stat => "STAT",
            Command::List(_) => "LIST",
            Command::Retr(_) => "RETR",
            Command::Dele(_) => "DELE",
            Command::Noop => "NOOP",
            Command::Rset => "RSET",
            Command::Top(..) => "TOP",
            Command::Uidl(_) => "UIDL",
            Command::Capa => "CAPA",
            Command::Stls => "STLS",
        }
    }
}

/// Why a line is not a command: the text after `-ERR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub &'static str);

/// Parses one command line, without its CRLF.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| ParseError("the line is not UTF-8"))?;
    if line.bytes().any(|b| b.is_ascii_control()) {
        return Err(ParseError("control characters in the command"));
    }
    let (keyword, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let args: Vec<&str> = rest.split(' ').filter(|a| !a.is_empty()).collect();
    let none = |c: Command| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(ParseError("this command takes no arguments"))
        }
    };
    let number = |s: &str| -> Result<u32, ParseError> {
        if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError("expected a number"));
        }
        s.parse().map_err(|_| ParseError("expected a number"))
    };
    let optional = |c: fn(Option<u32>) -> Command| match args.as_slice() {
        [] => Ok(c(None)),
        [n] => Ok(c(Some(number(n)?))),
        _ => Err(ParseError("too many arguments")),
    };
    let one = |c: fn(u32) -> Command| match args.as_slice() {
        [n] => Ok(c(number(n)?)),
        _ => Err(ParseError("expected one message number")),
    };
    match keyword.to_ascii_uppercase().as_str() {
        "USER" => match args.as_slice() {
            [name] if name.len() <= 255 => Ok(Command::User(name.to_string())),
            _ => Err(ParseError("expected USER name")),
        },
        "PASS" if !rest.is_empty() => Ok(Command::Pass(rest.to_string())),
        "PASS" => Err(ParseError("expected PASS password")),
        "QUIT" => none(Command::Quit),
        "STAT" => none(Command::Stat),
        "NOOP" => none(Command::Noop),
        "RSET" => none(Command::Rset),
        "CAPA" => none(Command::Capa),
        "STLS" => none(Command::Stls),
        "LIST" => optional(Command::List),
        "UIDL" => optional(Command::Uidl),
        "RETR" => one(Command::Retr),
        "DELE" => one(Command::Dele),
        "TOP" => match args.as_slice() {
            [n, lines] => Ok(Command::Top(number(n)?, number(lines)?)),
            _ => Err(ParseError("expected TOP message lines")),
        },
        _ => Err(ParseError("unknown command")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse(b"user alice"), Ok(Command::User("alice".into())));
        assert_eq!(
            parse(b"PASS pass with spaces"),
            Ok(Command::Pass("pass with spaces".into()))
        );
        assert_eq!(parse(b"LIST"), Ok(Command::List(None)));
        assert_eq!(parse(b"LIST 2"), Ok(Command::List(Some(2))));
        assert_eq!(parse(b"TOP 1 10"), Ok(Command::Top(1, 10)));
        assert!(parse(b"RETR").is_err());
        assert!(parse(b"RETR -1").is_err());
        assert!(parse(b"RETR 99999999999").is_err());
        assert!(parse(b"STAT x").is_err());
        assert!(parse(b"APOP a b").is_err());
        assert!(parse(b"\xff").is_err());
    }
}
