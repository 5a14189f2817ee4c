//! SMTP command lines (RFC 5321 section 4.1), parsed without I/O so they can be fuzzed.

/// A mailbox `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub local: String,
    pub domain: String,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    /// `MAIL FROM:<path> [params]`; `None` is the null reverse-path `<>`.
    Mail {
        from: Option<Address>,
        params: Vec<(String, Option<String>)>,
    },
    Rcpt {
        to: Address,
        params: Vec<(String, Option<String>)>,
    },
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
    StartTls,
}

impl Command {
    /// The verb, for metrics.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Helo(_) => "HELO",
            Command::Ehlo(_) => "EHLO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy => "VRFY",
            Command::Help => "HELP",
            Command::Auth { .. } => "AUTH",
            Command::StartTls => "STARTTLS",
        }
    }
}

/// Why a line is not a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// `500 5.5.1`: no such command.
    Unknown,
    /// `501 5.5.4` (or `5.1.3`/`5.1.7` for addresses): the arguments are wrong.
    Syntax(&'static str),
    /// `501 5.1.3` / `5.1.7`: a malformed address.
    BadAddress(&'static str),
}

/// Parses one command line, without its CRLF.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    let line =
        std::str::from_utf8(line).map_err(|_| ParseError::Syntax("the line is not UTF-8"))?;
    if line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(ParseError::Syntax("control characters in the command"));
    }
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |c: Command| {
        if rest.trim().is_empty() {
            Ok(c)
        } else {
            Err(ParseError::Syntax("this command takes no arguments"))
        }
    };
    match verb.as_str() {
        "HELO" | "EHLO" => {
            let name = rest.trim();
            if name.is_empty() || name.contains(' ') {
                return Err(ParseError::Syntax(
                    "a domain or address literal is required",
                ));
            }
            Ok(if verb == "HELO" {
                Command::Helo(name.to_string())
            } else {
                Command::Ehlo(name.to_string())
            })
        }
        "MAIL" => {
            let arg = strip_prefix_ci(rest, "FROM:")
                .ok_or(ParseError::Syntax("expected MAIL FROM:<address>"))?;
            let (path, params) = path_and_params(arg)?;
            let from = if path.is_empty() {
                None
            } else {
                Some(
                    address(path)
                        .ok_or(ParseError::BadAddress("5.1.7 bad sender address syntax"))?,
                )
            };
            Ok(Command::Mail { from, params })
        }
        "RCPT" => {
            let arg = strip_prefix_ci(rest, "TO:")
                .ok_or(ParseError::Syntax("expected RCPT TO:<address>"))?;
            let (path, params) = path_and_params(arg)?;
            let to = address(path)
                .ok_or(ParseError::BadAddress("5.1.3 bad recipient address syntax"))?;
            Ok(Command::Rcpt { to, params })
        }
        "DATA" => no_args(Command::Data),
        "RSET" => no_args(Command::Rset),
        "QUIT" => no_args(Command::Quit),
        "STARTTLS" => no_args(Command::StartTls),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" | "EXPN" => Ok(Command::Vrfy),
        "AUTH" => {
            let mut words = rest.split(' ').filter(|w| !w.is_empty());
            let mechanism = words
                .next()
                .ok_or(ParseError::Syntax("expected AUTH mechanism"))?;
            let initial = words.next().map(str::to_string);
            if words.next().is_some() {
                return Err(ParseError::Syntax("too many AUTH arguments"));
            }
            Ok(Command::Auth {
                mechanism: mechanism.to_ascii_uppercase(),
                initial,
            })
        }
        _ => Err(ParseError::Unknown),
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

type Params = Vec<(String, Option<String>)>;

/// `<path> [SP param[=value]]...`; a space after the colon is tolerated (common in the wild).
fn path_and_params(arg: &str) -> Result<(&str, Params), ParseError> {
    let arg = arg.trim_start();
    let inner = arg
        .strip_prefix('<')
        .ok_or(ParseError::Syntax("the address must be in <>"))?;
    let end = inner
        .find('>')
        .ok_or(ParseError::Syntax("the address must be in <>"))?;
    let path = &inner[..end];
    let mut params = Vec::new();
    let rest = &inner[end + 1..];
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(ParseError::Syntax("expected a space after the address"));
    }
    for word in rest.split(' ').filter(|w| !w.is_empty()) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (word, None),
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ParseError::Syntax("malformed parameter"));
        }
        params.push((key.to_ascii_uppercase(), value));
    }
    if params.len() > 16 {
        return Err(ParseError::Syntax("too many parameters"));
    }
    // A source route (`@a,@b:user@host`) is accepted and ignored (RFC 5321 section 4.1.2).
    let path = match path.strip_prefix('@') {
        Some(_) => path
            .split_once(':')
            .map(|(_, p)| p)
            .ok_or(ParseError::Syntax("malformed source route"))?,
        None => path,
    };
    Ok((path, params))
}

/// `local@domain`, with a dot-string or quoted local part and a domain or address literal.
pub fn address(s: &str) -> Option<Address> {
    let at = s.rfind('@')?;
    let (local, domain) = (&s[..at], &s[at + 1..]);
    if local.is_empty() || local.len() > 64 || domain.is_empty() || domain.len() > 255 {
        return None;
    }
    let local_ok = if let Some(q) = local.strip_prefix('"') {
        q.strip_suffix('"').is_some()
    } else {
        local.split('.').all(|atom| {
            !atom.is_empty()
                && atom
                    .chars()
                    .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
        })
    };
    let domain_ok = if domain.starts_with('[') {
        domain.ends_with(']')
    } else {
        domain.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
    };
    (local_ok && domain_ok).then(|| Address {
        local: local.to_string(),
        domain: domain.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(l: &str, d: &str) -> Address {
        Address {
            local: l.into(),
            domain: d.into(),
        }
    }

    #[test]
    fn commands() {
        assert_eq!(
            parse(b"EHLO client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert_eq!(parse(b"helo x"), Ok(Command::Helo("x".into())));
        assert_eq!(
            parse(b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME"),
            Ok(Command::Mail {
                from: Some(addr("a", "b.example")),
                params: vec![
                    ("SIZE".into(), Some("100".into())),
                    ("BODY".into(), Some("8BITMIME".into()))
                ],
            })
        );
        assert_eq!(
            parse(b"mail from: <>"),
            Ok(Command::Mail {
                from: None,
                params: vec![]
            })
        );
        assert_eq!(
            parse(b"RCPT TO:<@relay.example:bob@home.example>"),
            Ok(Command::Rcpt {
                to: addr("bob", "home.example"),
                params: vec![]
            })
        );
        assert_eq!(parse(b"DATA"), Ok(Command::Data));
        assert_eq!(
            parse(b"DATA x"),
            Err(ParseError::Syntax("this command takes no arguments"))
        );
        assert_eq!(
            parse(b"AUTH plain AGFsaWNlAHNlY3JldA=="),
            Ok(Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGFsaWNlAHNlY3JldA==".into())
            })
        );
        assert_eq!(parse(b"BDAT 10"), Err(ParseError::Unknown));
        assert!(matches!(
            parse(b"RCPT TO:<bob>"),
            Err(ParseError::BadAddress(_))
        ));
        assert!(matches!(
            parse(b"RCPT TO:bob@x"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse(b"RCPT TO:<a..b@x>"),
            Err(ParseError::BadAddress(_))
        ));
        assert!(matches!(
            parse(b"MAIL FROM:<a@b>\x00"),
            Err(ParseError::Syntax(_))
        ));
        assert!(parse(&[0xff, 0xfe]).is_err());
    }
}
