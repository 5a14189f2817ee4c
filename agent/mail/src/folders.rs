//! Folder names and their place on disk, in Dovecot's Maildir++ layout: `INBOX` is the user's
//! Maildir itself (`<root>/<user>/{cur,new,tmp}`), every other folder a sibling directory named
//! after it with a leading dot and `.` for the hierarchy (`Work/2024` is `<user>/.Work.2024/`,
//! holding an empty `maildirfolder` file). Clients see `/` as the hierarchy delimiter. Pure
//! functions; the store does the I/O.

/// The folders every user gets on first login, with their RFC 6154 attribute.
pub const SPECIAL: [(&str, &str); 5] = [
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
];

/// The IMAP hierarchy delimiter.
pub const DELIMITER: char = '/';

/// Longest folder name, in bytes (a file name is at most 255 bytes on common filesystems).
const MAX_NAME: usize = 200;
const MAX_DEPTH: usize = 16;

/// Why a folder name cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the folder name is empty")]
    Empty,
    #[error("the folder name is longer than {MAX_NAME} bytes")]
    TooLong,
    #[error("the folder name is nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("a folder name part is empty (a leading, trailing or doubled '/')")]
    EmptyPart,
    #[error(
        "a folder name cannot contain {0:?} (the store keeps folders as Maildir++ directories)"
    )]
    BadChar(char),
}

/// The canonical form of an IMAP folder name: `INBOX` (any case) and its children's first
/// part as `INBOX`, checked for what the on-disk layout cannot hold.
pub fn canonical(name: &str) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME {
        return Err(NameError::TooLong);
    }
    let parts: Vec<&str> = name.split(DELIMITER).collect();
    if parts.len() > MAX_DEPTH {
        return Err(NameError::TooDeep);
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(NameError::EmptyPart);
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '.' || *c == '\\' || *c == '~' || c.is_control())
    {
        return Err(NameError::BadChar(c));
    }
    let mut out = String::with_capacity(name.len());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(DELIMITER);
        }
        if i == 0 && part.eq_ignore_ascii_case("INBOX") {
            out.push_str("INBOX");
        } else {
            out.push_str(part);
        }
    }
    Ok(out)
}

/// The directory of a (canonical) folder, relative to the user's Maildir: empty for INBOX.
pub fn dir_name(name: &str) -> String {
    if name == "INBOX" {
        return String::new();
    }
    format!(".{}", name.replace(DELIMITER, "."))
}

/// The folder a directory entry of the user's Maildir holds, if it is one (`.Sent` → `Sent`).
pub fn from_dir_name(entry: &str) -> Option<String> {
    let rest = entry.strip_prefix('.')?;
    if rest.is_empty() || rest.starts_with('.') {
        return None;
    }
    let name = rest.replace('.', &DELIMITER.to_string());
    canonical(&name).ok().filter(|n| n != "INBOX")
}

/// The RFC 6154 attribute of a folder, by name.
pub fn special_use(name: &str) -> Option<&'static str> {
    SPECIAL.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// The parents of a name (`A/B/C` → `A`, `A/B`).
pub fn parents(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices(DELIMITER).map(move |(i, _)| &name[..i])
}

/// RFC 3501 LIST matching: `*` matches anything, `%` anything but the delimiter; `INBOX` is
/// case-insensitive. agent/proto's linear matcher (no recursion, no backtracking; the parser caps
/// patterns at `MAX_LIST_PATTERN` bytes).
pub fn matches(pattern: &str, name: &str) -> bool {
    hostrole_proto::imap_match::list_matches(pattern, name, DELIMITER as u8)
}

/// Dovecot's subscriptions file, version 2: `V\t2\n\n`, then one name a line, its hierarchy
/// parts separated by tabs.
pub fn subscriptions_text(names: &[String]) -> String {
    let mut out = String::from("V\t2\n\n");
    for name in names {
        out.push_str(&name.replace(DELIMITER, "\t"));
        out.push('\n');
    }
    out
}

/// Reads a subscriptions file, version 2 or the older one name a line.
pub fn parse_subscriptions(text: &str) -> Vec<String> {
    let body = text.strip_prefix("V\t2\n\n").unwrap_or(text);
    let mut out: Vec<String> = body
        .lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| canonical(&l.replace('\t', &DELIMITER.to_string())).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_directories() {
        assert_eq!(canonical("inbox").as_deref(), Ok("INBOX"));
        assert_eq!(canonical("Inbox/Lists").as_deref(), Ok("INBOX/Lists"));
        assert_eq!(canonical("Work/2024").as_deref(), Ok("Work/2024"));
        assert_eq!(canonical("a.b"), Err(NameError::BadChar('.')));
        assert_eq!(canonical("../x"), Err(NameError::BadChar('.')));
        assert_eq!(canonical("a/../../b"), Err(NameError::BadChar('.')));
        assert_eq!(canonical("a\\b"), Err(NameError::BadChar('\\')));
        assert_eq!(canonical("/a"), Err(NameError::EmptyPart));
        assert_eq!(canonical("a//b"), Err(NameError::EmptyPart));
        assert_eq!(canonical(""), Err(NameError::Empty));
        assert_eq!(dir_name("INBOX"), "");
        assert_eq!(dir_name("Work/2024"), ".Work.2024");
        assert_eq!(from_dir_name(".Work.2024").as_deref(), Some("Work/2024"));
        assert_eq!(from_dir_name("..tmp"), None);
        assert_eq!(from_dir_name("."), None);
        assert_eq!(from_dir_name("cur"), None);
        assert_eq!(parents("A/B/C").collect::<Vec<_>>(), vec!["A", "A/B"]);
        assert_eq!(special_use("Sent"), Some("\\Sent"));
    }

    #[test]
    fn list_patterns() {
        assert!(matches("*", "INBOX"));
        assert!(matches("inbox", "INBOX"));
        assert!(matches("INBOX*", "INBOX"));
        assert!(matches("%", "Work"));
        assert!(!matches("%", "Work/2024"));
        assert!(matches("Work/%", "Work/2024"));
        assert!(matches("*", "Work/2024"));
        assert!(matches("W*4", "Work/2024"));
        assert!(!matches("Sent", "INBOX"));
        // Many stars against a long name finish at once.
        let name = "a".repeat(150);
        assert!(!matches(&format!("{}b", "*".repeat(100)), &name));
    }

    #[test]
    fn subscriptions_round_trip() {
        let names = vec!["Sent".to_string(), "Work/2024".to_string()];
        let text = subscriptions_text(&names);
        assert_eq!(text, "V\t2\n\nSent\nWork\t2024\n");
        assert_eq!(parse_subscriptions(&text), names);
        assert_eq!(
            parse_subscriptions("INBOX\nTrash\n"),
            vec!["INBOX", "Trash"]
        );
    }
}
