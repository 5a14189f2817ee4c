//! Mail deliveries the tests repeat (swaks with the same options, a raw SMTP session for what no
//! stock client does on purpose) and a Maildir read the same way by every test.

use std::fmt::Display;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// One swaks run, built up option by option: `swaks(server).to(..).data_file(..).deliver()`.
/// Every run has a 20 s timeout and says `HELO client.example`.
#[derive(Clone, Debug)]
pub struct Swaks {
    args: Vec<String>,
}

/// Starts a swaks command line against `server` (`host:port`).
pub fn swaks(server: impl Display) -> Swaks {
    Swaks {
        args: vec!["--server".into(), server.to_string()],
    }
}

/// What swaks printed (stdout then stderr: the whole SMTP transcript) and whether it succeeded.
#[derive(Debug)]
pub struct Transcript {
    pub ok: bool,
    pub text: String,
}

impl Swaks {
    fn opt(mut self, name: &str, value: impl Display) -> Swaks {
        self.args.push(name.into());
        self.args.push(value.to_string());
        self
    }

    pub fn from(self, address: &str) -> Swaks {
        self.opt("--from", address)
    }

    pub fn to(self, address: &str) -> Swaks {
        self.opt("--to", address)
    }

    /// The message is the file's content (swaks adds the final CRLF `.` CRLF).
    pub fn data_file(self, path: &Path) -> Swaks {
        self.opt("--data", format!("@{}", path.display()))
    }

    pub fn attach(self, path: &Path) -> Swaks {
        self.opt("--attach", format!("@{}", path.display()))
    }

    pub fn header(self, header: &str) -> Swaks {
        self.opt("--header", header)
    }

    /// `SMTP` (HELO, no extensions), `ESMTP` …
    pub fn protocol(self, protocol: &str) -> Swaks {
        self.opt("--protocol", protocol)
    }

    /// AUTH with `mechanism` (`PLAIN`, `LOGIN`).
    pub fn auth(self, mechanism: &str, user: &str, password: &str) -> Swaks {
        self.opt("--auth", mechanism)
            .opt("--auth-user", user)
            .opt("--auth-password", password)
    }

    /// STARTTLS before anything else (needs libnet-ssleay-perl).
    pub fn tls(mut self) -> Swaks {
        self.args.push("--tls".into());
        self
    }

    /// Runs swaks once.
    pub fn run(&self) -> Transcript {
        let out: Output = Command::new("swaks")
            .args(["--timeout", "20", "--helo", "client.example"])
            .args(&self.args)
            .stdin(Stdio::null())
            .output()
            .expect("swaks is installed (Debian package swaks)");
        Transcript {
            ok: out.status.success(),
            text: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// Runs swaks; the server must accept the message. Returns the transcript.
    pub fn deliver(&self) -> String {
        let t = self.run();
        assert!(t.ok, "swaks {:?} was refused:\n{}", self.args, t.text);
        t.text
    }

    /// Runs swaks `n` times; every message must be accepted.
    pub fn deliver_times(&self, n: usize) {
        for _ in 0..n {
            self.deliver();
        }
    }

    /// Runs swaks; the server must refuse (swaks exits non-zero). Returns the transcript.
    pub fn refused(&self) -> String {
        let t = self.run();
        assert!(!t.ok, "swaks {:?} was accepted:\n{}", self.args, t.text);
        t.text
    }
}

/// A raw SMTP client on loopback, for what no stock client does on purpose (stopping mid-DATA,
/// pipelining a smuggling attempt).
pub struct RawSmtp {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl RawSmtp {
    /// Connects to `127.0.0.1:port` and reads the 220 greeting.
    pub fn connect(port: u16) -> RawSmtp {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut raw = RawSmtp {
            reader: BufReader::new(stream.try_clone().expect("clone")),
            writer: stream,
        };
        let greeting = raw.reply();
        assert!(greeting.starts_with("220 "), "{greeting}");
        raw
    }

    /// One whole reply (the last line of a multi-line one).
    pub fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("reply");
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return line;
            }
        }
    }

    /// Sends one command line and returns the reply.
    pub fn command(&mut self, line: &str) -> String {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("send");
        self.reply()
    }

    /// EHLO, MAIL FROM `from`, RCPT TO `to`, DATA: the server waits for the message.
    pub fn start_data(&mut self, from: &str, to: &str) {
        for (command, code) in [
            ("EHLO raw.example".to_string(), "250 "),
            (format!("MAIL FROM:<{from}>"), "250 "),
            (format!("RCPT TO:<{to}>"), "250 "),
            ("DATA".to_string(), "354 "),
        ] {
            let reply = self.command(&command);
            assert!(reply.starts_with(code), "{command}: {reply}");
        }
    }
}

/// The message files of one Maildir or Maildir++ folder (`DIR/new` and `DIR/cur`), sorted; none
/// when the directories do not exist.
pub fn message_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            out.extend(entries.filter_map(Result::ok).map(|e| e.path()));
        }
    }
    out.sort();
    out
}

/// Maildirs under one root, one per user (`ROOT/USER/{tmp,new,cur}`).
#[derive(Clone, Debug)]
pub struct Maildir {
    root: PathBuf,
}

impl Maildir {
    pub fn new(root: impl Into<PathBuf>) -> Maildir {
        Maildir { root: root.into() }
    }

    pub fn dir(&self, user: &str, sub: &str) -> PathBuf {
        self.root.join(user).join(sub)
    }

    /// The files of `USER/SUB/`, sorted. A user without a Maildir (never sent anything) has
    /// none; use [`Maildir::messages`] where the Maildir must exist.
    pub fn files(&self, user: &str, sub: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir(user, sub))
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Messages in `USER/new` and `USER/cur`. The user's Maildir must exist: a count of 0 read
    /// from a wrong or missing path would prove nothing.
    pub fn messages(&self, user: &str) -> usize {
        ["new", "cur"]
            .iter()
            .map(|sub| {
                let dir = self.dir(user, sub);
                std::fs::read_dir(&dir)
                    .unwrap_or_else(|e| panic!("no Maildir at {}: {e}", dir.display()))
                    .count()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_maildir_is_empty_for_files_but_an_error_for_messages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let maildir = Maildir::new(dir.path());
        assert!(maildir.files("nobody", "new").is_empty());
        let counted = std::panic::catch_unwind(|| maildir.messages("nobody"));
        assert!(counted.is_err(), "counting a missing Maildir fails");
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(maildir.dir("alice", sub)).expect("mkdir");
        }
        std::fs::write(maildir.dir("alice", "new").join("1"), "m").expect("write");
        assert_eq!(maildir.messages("alice"), 1);
    }
}
