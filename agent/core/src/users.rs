//! User accounts shared by the roles that log users in (file, mail).
//!
//! The users file holds one account a line, `name:hash` or `name:hash:ro` for a read-only user,
//! where `hash` is an Argon2 PHC string (`$argon2id$…`, e.g. from `hostrole-agent hash-password`)
//! or a bcrypt hash (`$2b$…`, `$2y$…`, e.g. from `htpasswd -nbB`). Blank lines and `#` comments
//! are skipped. Passwords are never stored in clear.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Why a users file was refused.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read the users file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: {problem} (expected `name:hash` or `name:hash:ro`, hash from `hostrole-agent hash-password` or `htpasswd -nbB`)"
    )]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
    },
}

/// One account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub read_only: bool,
}

#[derive(Debug, Clone)]
struct Account {
    hash: String,
    read_only: bool,
}

/// The accounts of one role.
#[derive(Debug, Clone, Default)]
pub struct Users {
    accounts: BTreeMap<String, Account>,
}

impl Users {
    /// No accounts at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads a users file.
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses the text of a users file; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, UsersError> {
        let mut accounts = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |problem: &str| UsersError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                problem: problem.to_string(),
            };
            let (name, rest) = line
                .split_once(':')
                .ok_or_else(|| bad("no ':' after the name"))?;
            let (hash, flags) = match rest.rsplit_once(':') {
                Some((hash, flag)) if flag == "ro" || flag == "rw" => (hash, flag),
                _ => (rest, "rw"),
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return Err(bad("a name holds only letters, digits, '.', '_' and '-'"));
            }
            let known = hash.starts_with("$argon2")
                || hash.starts_with("$2a$")
                || hash.starts_with("$2b$")
                || hash.starts_with("$2y$");
            if !known {
                return Err(bad(
                    "the hash is not Argon2 or bcrypt (clear-text passwords are refused)",
                ));
            }
            let complete = |h: PasswordHash| h.salt.is_some() && h.hash.is_some();
            if hash.starts_with("$argon2") && !PasswordHash::new(hash).is_ok_and(complete) {
                return Err(bad("the Argon2 hash is malformed"));
            }
            if accounts.contains_key(name) {
                return Err(bad("the name appears twice"));
            }
            accounts.insert(
                name.to_string(),
                Account {
                    hash: hash.to_string(),
                    read_only: flags == "ro",
                },
            );
        }
        Ok(Self { accounts })
    }

    /// Checks a name and password; the user when they match.
    pub fn verify(&self, name: &str, password: &str) -> Option<User> {
        let account = self.accounts.get(name)?;
        let ok = if account.hash.starts_with("$argon2") {
            PasswordHash::new(&account.hash)
                .map(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        } else {
            bcrypt::verify(password, &account.hash).unwrap_or(false)
        };
        ok.then(|| User {
            name: name.to_string(),
            read_only: account.read_only,
        })
    }

    /// Whether an account of that name exists (e.g. a local mailbox).
    pub fn exists(&self, name: &str) -> bool {
        self.accounts.contains_key(name)
    }

    /// Every account name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.accounts.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

/// An Argon2id hash of `password` for a users file.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_and_bcrypt_accounts_verify_and_read_only_is_kept() {
        let argon = hash_password("s3cret").expect("hash");
        let bcrypt = bcrypt::hash("hunter2", 4).expect("bcrypt");
        let text = format!("# users\nalice:{argon}\nbob:{bcrypt}:ro\n\n");
        let users = Users::parse(&text, Path::new("users")).expect("valid");
        assert_eq!(
            users.verify("alice", "s3cret"),
            Some(User {
                name: "alice".into(),
                read_only: false
            })
        );
        assert_eq!(
            users.verify("bob", "hunter2"),
            Some(User {
                name: "bob".into(),
                read_only: true
            })
        );
        assert_eq!(users.verify("alice", "wrong"), None);
        assert_eq!(users.verify("carol", "s3cret"), None);
        assert!(users.exists("bob") && !users.exists("carol"));
    }

    #[test]
    fn clear_text_and_malformed_lines_are_refused_with_the_line_number() {
        for (text, problem) in [
            ("alice:plain-password\n", "clear-text passwords are refused"),
            ("alice\n", "no ':'"),
            (
                "al ice:$2b$04$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0\n",
                "a name holds only",
            ),
            ("alice:$argon2id$nonsense\n", "malformed"),
        ] {
            let err = Users::parse(&format!("# c\n{text}"), Path::new("u")).expect_err(text);
            let msg = err.to_string();
            assert!(msg.contains("u:2:") && msg.contains(problem), "{msg}");
        }
        let argon = hash_password("x").expect("hash");
        let dup = format!("a:{argon}\na:{argon}\n");
        assert!(
            Users::parse(&dup, Path::new("u"))
                .expect_err("dup")
                .to_string()
                .contains("twice")
        );
    }
}
