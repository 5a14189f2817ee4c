//! The mail role, started as the real agent binary (`run --config`) on loopback ports and
//! exercised with real clients: swaks, Python's smtplib/imaplib/poplib, curl and mutt.
//!
//! Debian packages these tests need: `swaks` (with `libnet-ssleay-perl` for `--tls`), `curl`,
//! `python3`, `openssl` (a test certificate), `mutt`, `util-linux` (`script` gives mutt a
//! terminal).

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use hostrole_testkit::http::status;
use hostrole_testkit::mail::{Maildir, RawSmtp, swaks};
use support::{Proc, agent_bin, curl, free_port, python, text, wait_ready, wait_until};

const ALICE_PASSWORD: &str = "alice-s3cret";
const BOB_PASSWORD: &str = "bob pass";

/// `alice` may read and write; `bob` is read-only. Hashed once: Argon2 is slow in debug builds.
fn users_file_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let hash = support::password_hash;
        format!(
            "alice:{}\nbob:{}:ro\n",
            hash(ALICE_PASSWORD),
            hash(BOB_PASSWORD)
        )
    })
}

/// A mail host on free loopback ports with its own store; killed when dropped (the process
/// first: fields drop in order).
struct MailHost {
    proc: Option<Proc>,
    dir: tempfile::TempDir,
    config: PathBuf,
    smtp: u16,
    submission: u16,
    imap: u16,
    pop3: u16,
    admin: u16,
    maildir: Maildir,
}

impl MailHost {
    fn start(max_message_bytes: u64) -> MailHost {
        MailHost::start_with(max_message_bytes, false)
    }

    /// With `tls`, a self-signed certificate from openssl makes the role offer STARTTLS.
    fn start_with(max_message_bytes: u64, tls: bool) -> MailHost {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls_config = if tls {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let out = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=mail.home.example",
                ])
                .args([
                    "-addext",
                    "subjectAltName=DNS:mail.home.example,IP:127.0.0.1",
                    "-keyout",
                ])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .expect("openssl is installed (Debian package openssl)");
            assert!(out.status.success(), "{}", text(&out));
            format!(
                "  tls:\n    cert: {}\n    key: {}\n",
                cert.display(),
                key.display()
            )
        } else {
            // Without a certificate, logins in the clear (loopback; these tests are about the
            // protocols, mail_tls.rs proves the refusal).
            "  allowPlaintextAuth: true\n".to_string()
        };
        std::fs::write(dir.path().join("users"), users_file_text()).expect("users file");
        let (smtp, submission, imap, pop3, admin) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let config = dir.path().join("agent.yaml");
        let text = format!(
            "hostRole: mailtest\nbind: 127.0.0.1\nadminPort: {admin}\nshutdownGraceSeconds: 10\nmail:\n  hostname: mail.home.example\n  smtpPort: {smtp}\n  submissionPort: {submission}\n  imapPort: {imap}\n  pop3Port: {pop3}\n  domains: [home.example]\n  root: {}\n  usersFile: {}\n  maxMessageBytes: {max_message_bytes}\n  maxConnections: 16\n{tls_config}",
            dir.path().join("mail").display(),
            dir.path().join("users").display(),
        );
        std::fs::write(&config, text).expect("config");
        let mut host = MailHost {
            proc: None,
            config,
            smtp,
            submission,
            imap,
            pop3,
            admin,
            maildir: Maildir::new(dir.path().join("mail")),
            dir,
        };
        host.spawn();
        host
    }

    /// Starts the agent (again, after a kill: its logs continue in the same files).
    fn spawn(&mut self) {
        let mut proc = Proc::spawn(
            "agent",
            Command::new(agent_bin())
                .args(["run", "--config"])
                .arg(&self.config),
            self.dir.path(),
        );
        wait_ready(&mut proc, self.admin, Duration::from_secs(20));
        self.proc = Some(proc);
    }

    fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("running")
    }

    fn ready_code(&self) -> u16 {
        status(&[&format!("http://127.0.0.1:{}/readyz", self.admin)])
    }

    fn metrics(&self) -> String {
        String::from_utf8_lossy(
            &curl(&["-s", &format!("http://127.0.0.1:{}/metrics", self.admin)]).stdout,
        )
        .into_owned()
    }

    fn logs(&self) -> String {
        self.proc.as_ref().map(Proc::stderr).unwrap_or_default()
    }

    /// The files of `<user>/<sub>/` (none when the user has no Maildir yet).
    fn files(&self, user: &str, sub: &str) -> Vec<PathBuf> {
        self.maildir.files(user, sub)
    }
}

/// What the store keeps: the trace fields the server adds, then the message as sent.
fn assert_stored(stored: &[u8], sender: &str, sent: &[u8]) {
    let prefix = format!("Return-Path: <{sender}>\r\nReceived: from ");
    assert!(
        stored.starts_with(prefix.as_bytes()),
        "{}",
        String::from_utf8_lossy(stored)
    );
    assert!(
        stored.ends_with(sent),
        "the message is not stored byte for byte:\n{}",
        String::from_utf8_lossy(stored)
    );
    let trace = &stored[..stored.len() - sent.len()];
    assert!(
        trace
            .windows(26)
            .any(|w| w == b"by mail.home.example (host"),
        "{}",
        String::from_utf8_lossy(trace)
    );
}

/// swaks ends DATA with CRLF `.` CRLF after the file's content, so the file lacks the last CRLF.
fn write_for_swaks(path: &Path) {
    std::fs::write(path, MESSAGE.strip_suffix(b"\r\n").expect("ends with CRLF")).expect("message");
}

const MESSAGE: &[u8] = b"From: Sender <sender@example.org>\r\nTo: Alice <alice@home.example>\r\nSubject: exact body\r\n\r\nHello Alice,\r\n.a line that starts with a dot\r\n\r\nbytes: caf\xc3\xa9\r\n";

#[test]
fn swaks_delivers_locally_and_refuses_relay_unknown_users_and_oversized_mail() {
    let host = MailHost::start(64 * 1024);
    let server = format!("127.0.0.1:{}", host.smtp);
    let data = host.dir.path().join("message.eml");
    write_for_swaks(&data);

    let all = swaks(&server)
        .from("sender@example.org")
        .to("alice@home.example")
        .data_file(&data)
        .deliver();
    for ext in [
        "SIZE 65536",
        "8BITMIME",
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(all.contains(ext), "EHLO lacks {ext}:\n{all}");
    }
    assert!(!all.contains("AUTH") && !all.contains("STARTTLS"), "{all}");
    assert!(all.contains("250 2.0.0 Ok: queued as"), "{all}");
    let new = host.files("alice", "new");
    assert_eq!(new.len(), 1, "{new:?}");
    assert_stored(
        &std::fs::read(&new[0]).expect("stored"),
        "sender@example.org",
        MESSAGE,
    );
    assert!(host.files("alice", "tmp").is_empty());

    // Not an open relay.
    let out = swaks(&server)
        .from("sender@example.org")
        .to("victim@elsewhere.example")
        .refused();
    assert!(
        out.contains("554 5.7.1 <victim@elsewhere.example>: relay access denied"),
        "{out}"
    );

    let out = swaks(&server).to("nobody@home.example").refused();
    assert!(out.contains("550 5.1.1 <nobody@home.example>"), "{out}");

    // Too big: announced with SIZE, refused at MAIL.
    let big = host.dir.path().join("big.txt");
    std::fs::write(&big, "0123456789abcdef\n".repeat(8 * 1024)).expect("big");
    let too_big = swaks(&server).to("alice@home.example").attach(&big);
    let out = too_big.refused();
    assert!(out.contains("552 5.3.4"), "{out}");
    // Too big without SIZE (plain SMTP, HELO): refused after DATA, nothing kept.
    let out = too_big.protocol("SMTP").refused();
    assert!(out.contains("552 5.3.4"), "{out}");
    assert_eq!(host.files("alice", "new").len(), 1);
    assert!(host.files("alice", "tmp").is_empty());

    let metrics = host.metrics();
    assert!(
        metrics.contains(
            "hostrole_agent_commands_total{role=\"smtp\",command=\"RCPT\",outcome=\"Rejected\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("hostrole_agent_role_ready{role=\"mail\"} 1"),
        "{metrics}"
    );
    for reason in ["RelayDenied", "UnknownUser", "MessageTooBig"] {
        let line = format!("hostrole_agent_errors_total{{role=\"smtp\",reason=\"{reason}\"}}");
        assert!(metrics.contains(&line), "no {line}:\n{metrics}");
    }
    assert!(
        metrics.contains("hostrole_agent_bytes_total{role=\"smtp\",direction=\"in\"}"),
        "{metrics}"
    );
}

#[test]
fn swaks_submits_with_auth_plain_and_login_only_after_auth() {
    let host = MailHost::start(1024 * 1024);
    let server = format!("127.0.0.1:{}", host.submission);

    let out = swaks(&server).to("alice@home.example").refused();
    assert!(out.contains("530 5.7.0 authentication required"), "{out}");

    for (mechanism, user, password) in [
        ("PLAIN", "alice", ALICE_PASSWORD),
        ("LOGIN", "bob", BOB_PASSWORD),
    ] {
        let out = swaks(&server)
            .from(&format!("{user}@home.example"))
            .to("alice@home.example")
            .auth(mechanism, user, password)
            .header(&format!("Subject: via {mechanism}"))
            .deliver();
        assert!(out.contains("235 2.7.0"), "{out}");
    }
    assert_eq!(host.files("alice", "new").len(), 2);

    let out = swaks(&server)
        .to("alice@home.example")
        .auth("LOGIN", "alice", "wrong")
        .refused();
    assert!(out.contains("535 5.7.8"), "{out}");

    // Authenticated users still cannot send out: this host has no outbound delivery.
    let out = swaks(&server)
        .from("alice@home.example")
        .to("someone@elsewhere.example")
        .auth("PLAIN", "alice", ALICE_PASSWORD)
        .refused();
    assert!(out.contains("550 5.7.1"), "{out}");

    // The SMTP port offers no AUTH at all.
    swaks(format!("127.0.0.1:{}", host.smtp))
        .to("alice@home.example")
        .auth("PLAIN", "alice", ALICE_PASSWORD)
        .refused();
    assert_eq!(host.files("alice", "new").len(), 2);
}

const SMTPLIB_IMAPLIB: &str = r#"
import imaplib, smtplib, sys
submission, imap, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
message = (b"From: Alice <alice@home.example>\r\nTo: alice@home.example\r\nSubject: round trip\r\n"
           b"Message-ID: <rt-1@home.example>\r\n\r\nfirst line\r\n.starts with a dot\r\n\xc3\xa9t\xc3\xa9\r\n")
with smtplib.SMTP("127.0.0.1", submission) as s:
    s.ehlo("client.example")
    s.login("alice", password)
    s.sendmail("alice@home.example", ["alice@home.example"], message)
    s.sendmail("alice@home.example", ["alice@home.example", "bob@home.example"], b"Subject: second\r\n\r\nsecond\r\n")

m = imaplib.IMAP4("127.0.0.1", imap)
assert "IMAP4REV1" in m.capabilities, m.capabilities
typ, _ = m.login("alice", password)
assert typ == "OK"
typ, boxes = m.list()
assert typ == "OK" and b'"INBOX"' in boxes[0], boxes
typ, data = m.select("INBOX")
assert typ == "OK" and data == [b"2"], data
typ, data = m.search(None, "ALL")
assert data == [b"1 2"], data
typ, data = m.search(None, "UNSEEN")
assert data == [b"1 2"], data
typ, data = m.fetch("1", "(UID RFC822.SIZE FLAGS INTERNALDATE ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert typ == "OK", data
head = data[0][0].decode()
assert "UID 1" in head and "FLAGS ()" in head and '"round trip"' in head and "INTERNALDATE" in head, head
assert data[0][1] == b"Subject: round trip\r\n\r\n", data
typ, data = m.fetch("1", "(BODY[])")
stored = data[0][1]
assert stored.endswith(message) and stored.startswith(b"Return-Path: <alice@home.example>\r\nReceived: "), stored
assert b"\\Seen" in data[1] or b"\\Seen" in data[0][0], data
typ, data = m.search(None, "UNSEEN")
assert data == [b"2"], data
typ, data = m.uid("SEARCH", None, "SUBJECT", "second")
assert data == [b"2"], data
typ, data = m.fetch("1", "(BODY.PEEK[TEXT])")
assert data[0][1] == b"first line\r\n.starts with a dot\r\n\xc3\xa9t\xc3\xa9\r\n", data
typ, data = m.store("1", "+FLAGS", "(\\Deleted)")
assert typ == "OK" and b"\\Deleted" in data[0], data
typ, data = m.expunge()
assert typ == "OK" and data == [b"1"], data
typ, data = m.status("INBOX", "(MESSAGES UNSEEN UIDNEXT)")
assert typ == "OK" and b"MESSAGES 1" in data[0] and b"UIDNEXT 3" in data[0], data
typ, data = m.uid("FETCH", "2", "(UID FLAGS)")
assert b"UID 2" in data[0], data
m.close()
m.logout()

# bob is read-only: SELECT opens read-only, STORE is refused.
m = imaplib.IMAP4("127.0.0.1", imap)
m.login("bob", sys.argv[4])
try:
    m.select("INBOX")
    raise SystemExit("SELECT by a read-only user was read-write")
except imaplib.IMAP4.readonly:
    pass
m.shutdown()
m = imaplib.IMAP4("127.0.0.1", imap)
m.login("bob", sys.argv[4])
typ, data = m.select("INBOX", readonly=True)
assert typ == "OK" and data == [b"1"], data
typ, data = m.store("1", "+FLAGS", "(\\Deleted)")
assert typ == "NO", (typ, data)
m.logout()

try:
    m = imaplib.IMAP4("127.0.0.1", imap)
    m.login("alice", "wrong")
    raise SystemExit("a wrong password logged in")
except imaplib.IMAP4.error as e:
    assert "AUTHENTICATIONFAILED" in str(e), e
print("ok")
"#;

#[test]
fn python_smtplib_sends_and_imaplib_reads_flags_and_expunges() {
    let host = MailHost::start(1024 * 1024);
    let out = python(
        SMTPLIB_IMAPLIB,
        &[
            &host.submission.to_string(),
            &host.imap.to_string(),
            ALICE_PASSWORD,
            BOB_PASSWORD,
        ],
    );
    assert!(out.contains("ok"), "{out}");
    // SELECT moved the messages to cur/; the expunged one is gone, the other is seen.
    assert!(host.files("alice", "new").is_empty());
    let cur = host.files("alice", "cur");
    assert_eq!(cur.len(), 1, "{cur:?}");
    assert!(host.files("bob", "new").len() + host.files("bob", "cur").len() == 1);
}

const POPLIB: &str = r#"
import poplib, smtplib, socket, sys
smtp, pop3, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with smtplib.SMTP("127.0.0.1", smtp) as s:
    for i in (1, 2):
        s.sendmail("x@example.org", ["alice@home.example"], f"Subject: pop {i}\r\n\r\n.dot\r\nbody {i}\r\n".encode())

p = poplib.POP3("127.0.0.1", pop3)
assert "UIDL" in p.capa() and "TOP" in p.capa(), p.capa()
p.user("alice")
p.pass_(password)
count, size = p.stat()
assert count == 2, (count, size)
resp, lines, _ = p.retr(1)
assert lines[-2:] == [b".dot", b"body 1"], lines
resp, lines, _ = p.top(2, 0)
assert lines[-1] == b"" and b"Subject: pop 2" in lines, lines
resp, uidls, _ = p.uidl()
assert len(uidls) == 2, uidls
p.dele(1)
assert p.stat()[0] == 1
# Drop the connection without QUIT: nothing is deleted.
p.sock.close()

p = poplib.POP3("127.0.0.1", pop3)
p.user("alice")
p.pass_(password)
assert p.stat()[0] == 2
p.dele(1)
p.rset()
p.dele(2)
p.quit()

p = poplib.POP3("127.0.0.1", pop3)
p.user("alice")
p.pass_(password)
assert p.stat()[0] == 1
resp, lines, _ = p.retr(1)
assert lines[-1] == b"body 1", lines
p.quit()

p = poplib.POP3("127.0.0.1", pop3)
p.user("alice")
try:
    p.pass_("wrong")
    raise SystemExit("a wrong password logged in")
except poplib.error_proto as e:
    assert b"-ERR" in e.args[0], e
print("ok")
"#;

#[test]
fn python_poplib_reads_and_deletes_only_at_quit() {
    let host = MailHost::start(1024 * 1024);
    let out = python(
        POPLIB,
        &[
            &host.smtp.to_string(),
            &host.pop3.to_string(),
            ALICE_PASSWORD,
        ],
    );
    assert!(out.contains("ok"), "{out}");
    assert_eq!(
        host.files("alice", "new").len() + host.files("alice", "cur").len(),
        1
    );
}

#[test]
fn curl_lists_and_fetches_over_imap_and_pop3() {
    let host = MailHost::start(1024 * 1024);
    let data = host.dir.path().join("message.eml");
    write_for_swaks(&data);
    swaks(format!("127.0.0.1:{}", host.smtp))
        .from("sender@example.org")
        .to("alice@home.example")
        .data_file(&data)
        .deliver();
    let user = format!("alice:{ALICE_PASSWORD}");
    let run = |url: &str| {
        let out = curl(&["-s", "-S", "-u", &user, url]);
        assert!(out.status.success(), "curl {url}: {}", text(&out));
        out.stdout
    };
    let imap = format!("imap://127.0.0.1:{}", host.imap);
    let pop3 = format!("pop3://127.0.0.1:{}", host.pop3);

    assert!(String::from_utf8_lossy(&run(&format!("{imap}/"))).contains("\"INBOX\""));
    assert_eq!(
        String::from_utf8_lossy(&run(&format!("{imap}/INBOX?ALL"))).trim(),
        "* SEARCH 1"
    );
    assert_stored(
        &run(&format!("{imap}/INBOX;UID=1")),
        "sender@example.org",
        MESSAGE,
    );
    assert_stored(
        &run(&format!("{imap}/INBOX;MAILINDEX=1")),
        "sender@example.org",
        MESSAGE,
    );

    let list = String::from_utf8_lossy(&run(&format!("{pop3}/"))).into_owned();
    assert!(list.starts_with("1 "), "{list}");
    // curl undoes POP3's dot-stuffing, so the message comes back as stored.
    assert_stored(&run(&format!("{pop3}/1")), "sender@example.org", MESSAGE);

    let out = curl(&["-s", "-u", "alice:wrong", &format!("{imap}/INBOX?ALL")]);
    assert_eq!(out.status.code(), Some(67), "login denied: {}", text(&out));
    let out = curl(&["-s", "-u", "alice:wrong", &format!("{pop3}/")]);
    assert_eq!(out.status.code(), Some(67), "login denied: {}", text(&out));
}

const IMAPLIB_STARTTLS: &str = r#"
import imaplib, ssl, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
assert "STARTTLS" in m.capabilities and "LOGINDISABLED" in m.capabilities, m.capabilities
try:
    m.login("alice", sys.argv[2])
    raise SystemExit("a password was accepted without TLS")
except imaplib.IMAP4.error as e:
    assert "PRIVACYREQUIRED" in str(e), e
m.starttls(ssl._create_unverified_context())
assert "AUTH=PLAIN" in m.capabilities and "STARTTLS" not in m.capabilities, m.capabilities
m.login("alice", sys.argv[2])
typ, data = m.select("INBOX")
assert typ == "OK" and data == [b"1"], data
m.logout()
print("ok")
"#;

#[test]
fn starttls_protects_passwords_on_submission_imap_and_pop3() {
    let host = MailHost::start_with(1024 * 1024, true);
    let submission = format!("127.0.0.1:{}", host.submission);
    // Without TLS the submission port offers no AUTH, so swaks cannot log in.
    let out = swaks(&submission)
        .to("alice@home.example")
        .auth("PLAIN", "alice", ALICE_PASSWORD)
        .refused();
    assert!(
        out.contains("250 STARTTLS") || out.contains("250-STARTTLS"),
        "{out}"
    );
    let out = swaks(&submission)
        .tls()
        .from("alice@home.example")
        .to("alice@home.example")
        .auth("LOGIN", "alice", ALICE_PASSWORD)
        .deliver();
    assert!(
        out.contains("220 2.0.0 ready to start TLS") && out.contains("235 2.7.0"),
        "{out}"
    );
    assert_eq!(host.files("alice", "new").len(), 1);

    assert!(python(IMAPLIB_STARTTLS, &[&host.imap.to_string(), ALICE_PASSWORD]).contains("ok"));

    let user = format!("alice:{ALICE_PASSWORD}");
    let pop3 = format!("pop3://127.0.0.1:{}/", host.pop3);
    let out = curl(&["-s", "-S", "--ssl-reqd", "-k", "-u", &user, &pop3]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("1 "),
        "{}",
        text(&out)
    );
    let imap = format!("imap://127.0.0.1:{}/INBOX?ALL", host.imap);
    let out = curl(&["-s", "-S", "--ssl-reqd", "-k", "-u", &user, &imap]);
    assert!(out.status.success(), "{}", text(&out));
    // Without TLS, curl's login is refused.
    let out = curl(&["-s", "-u", &user, &pop3]);
    assert_eq!(out.status.code(), Some(67), "{}", text(&out));
}

#[test]
fn sigterm_lets_the_current_command_finish_then_exits_zero() {
    let mut host = MailHost::start(1024 * 1024);
    let mut smtp = RawSmtp::connect(host.smtp);
    smtp.start_data("raw@example.org", "alice@home.example");
    smtp.writer
        .write_all(b"Subject: in flight\r\n\r\nfirst half\r\n")
        .expect("send");

    // An IMAP client waiting for its next command is told goodbye.
    let imap = TcpStream::connect(("127.0.0.1", host.imap)).expect("imap");
    imap.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut imap = BufReader::new(imap);
    let mut greeting = String::new();
    imap.read_line(&mut greeting).expect("greeting");
    assert!(greeting.starts_with("* OK"), "{greeting}");

    host.proc().terminate();
    wait_until("readiness to turn off", Duration::from_secs(10), || {
        host.ready_code() != 200
    });
    let mut bye = String::new();
    imap.read_line(&mut bye).expect("bye");
    assert!(bye.starts_with("* BYE"), "{bye}");

    // The message in flight is still received and stored.
    smtp.writer
        .write_all(b"second half\r\n.\r\n")
        .expect("send");
    let reply = smtp.reply();
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let closing = smtp.reply();
    assert!(closing.starts_with("421 4.3.2"), "{closing}");
    let status = host.proc().wait_exit(Duration::from_secs(15));
    assert!(status.success(), "exit status {status}: {}", host.logs());
    let new = host.files("alice", "new");
    assert_eq!(new.len(), 1);
    assert!(
        std::fs::read(&new[0])
            .expect("read")
            .ends_with(b"Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n")
    );
}

#[test]
fn a_crash_mid_data_leaves_no_partial_mail_after_restart() {
    let mut host = MailHost::start(8 * 1024 * 1024);
    let mut smtp = RawSmtp::connect(host.smtp);
    smtp.start_data("raw@example.org", "alice@home.example");
    // A large message sent slowly: stop half way, once the server has written part of it.
    let line = format!("{}\r\n", "x".repeat(998));
    for _ in 0..512 {
        smtp.writer.write_all(line.as_bytes()).expect("send");
    }
    smtp.writer.flush().expect("flush");
    wait_until(
        "the partial message in tmp/",
        Duration::from_secs(10),
        || {
            host.files("alice", "tmp")
                .iter()
                .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 64 * 1024))
        },
    );
    assert!(host.files("alice", "new").is_empty());

    host.proc().kill();
    let mut rest = Vec::new();
    let _ = smtp.reader.read_to_end(&mut rest);
    assert!(host.files("alice", "new").is_empty());

    host.spawn();
    assert!(
        host.files("alice", "tmp").is_empty(),
        "tmp/ not cleaned: {:?}",
        host.files("alice", "tmp")
    );
    assert!(host.files("alice", "new").is_empty());
    assert!(
        host.logs().contains("removing an unfinished delivery"),
        "{}",
        host.logs()
    );
}

#[test]
fn a_client_that_disconnects_mid_data_leaves_nothing_behind() {
    let host = MailHost::start(1024 * 1024);
    let mut smtp = RawSmtp::connect(host.smtp);
    smtp.start_data("raw@example.org", "alice@home.example");
    smtp.writer
        .write_all(b"Subject: cut\r\n\r\npartial\r\n")
        .expect("send");
    // The delivery's tmp/ file exists from the 354 reply on.
    assert_eq!(host.files("alice", "tmp").len(), 1);
    drop(smtp);
    wait_until("tmp/ to be cleaned", Duration::from_secs(10), || {
        host.files("alice", "tmp").is_empty()
    });
    assert!(host.files("alice", "new").is_empty());
}

#[test]
fn mutt_reads_the_mailbox_over_imap_in_batch_mode() {
    assert!(
        Command::new("mutt").arg("-v").output().is_ok(),
        "mutt is not installed: apt-get install mutt (scripts/install-deps.sh does)"
    );
    let host = MailHost::start(1024 * 1024);
    let data = host.dir.path().join("message.eml");
    write_for_swaks(&data);
    swaks(format!("127.0.0.1:{}", host.smtp))
        .from("sender@example.org")
        .to("alice@home.example")
        .data_file(&data)
        .deliver();

    let saved = host.dir.path().join("saved.eml");
    let muttrc = host.dir.path().join("muttrc");
    std::fs::write(
        &muttrc,
        format!(
            "set imap_user=alice\nset imap_pass=\"{ALICE_PASSWORD}\"\nset folder=imap://127.0.0.1:{}/\nset spoolfile=+INBOX\nset header_cache=\"\"\nset message_cachedir=\"\"\nset imap_passive=no\nset wait_key=no\nset confirmappend=no\nset confirmcreate=no\nset move=no\nset mbox_type=mbox\nset ssl_starttls=no\nset ssl_force_tls=no\n",
            host.imap
        ),
    )
    .expect("muttrc");
    // mutt needs a terminal: `script` gives it one. It saves message 1 to a file, then quits.
    let command = format!(
        "TERM=vt100 mutt -n -F {} -e 'push \"<save-message>{}<enter><quit>\"'",
        muttrc.display(),
        saved.display()
    );
    let out = Command::new("timeout")
        .args(["30", "script", "-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (Debian package util-linux)");
    let saved_text = std::fs::read(&saved).unwrap_or_default();
    assert!(
        saved_text
            .windows(b"Subject: exact body".len())
            .any(|w| w == b"Subject: exact body"),
        "mutt did not save the message ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
            .chars()
            .rev()
            .take(2000)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
}

#[test]
fn imap_idle_reports_mail_that_arrives_meanwhile() {
    let host = MailHost::start(1024 * 1024);
    let stream = TcpStream::connect(("127.0.0.1", host.imap)).expect("imap");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    // Reads lines until one starts with `prefix`; returns every line read.
    let mut until = |prefix: &str| {
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("a line");
            assert!(!line.is_empty(), "closed; so far:\n{seen}");
            seen.push_str(&line);
            if line.starts_with(prefix) {
                return seen;
            }
        }
    };
    until("* OK");
    writer
        .write_all(format!("a1 LOGIN alice \"{ALICE_PASSWORD}\"\r\na2 SELECT INBOX\r\n").as_bytes())
        .expect("send");
    until("a1 OK");
    assert!(until("a2 OK").contains("* 0 EXISTS"));
    writer.write_all(b"a3 IDLE\r\n").expect("send");
    until("+ ");
    let delivery = swaks(format!("127.0.0.1:{}", host.smtp)).to("alice@home.example");
    delivery.deliver();
    until("* 1 EXISTS");
    // DONE split across two writes, around a poll, still ends IDLE. A second message that
    // arrives after the first half is reported by a poll: proof that one ran in between.
    writer.write_all(b"DO").expect("send");
    delivery.deliver();
    until("* 2 EXISTS");
    writer.write_all(b"NE\r\n").expect("send");
    until("a3 OK");
    writer
        .write_all(b"a4 FETCH 1 (FLAGS)\r\na5 LOGOUT\r\n")
        .expect("send");
    assert!(until("a4 OK").contains("* 1 FETCH (FLAGS ())"));
    until("a5 OK");
}

#[test]
fn only_crlf_dot_crlf_ends_a_message_so_nothing_is_smuggled() {
    let host = MailHost::start(1024 * 1024);
    let mut smtp = RawSmtp::connect(host.smtp);
    smtp.start_data("raw@example.org", "alice@home.example");
    smtp.writer
        .write_all(b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@home.example>\r\n.\r\n")
        .expect("send");
    let reply = smtp.reply();
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    assert!(smtp.command("QUIT").starts_with("221"));
    let new = host.files("alice", "new");
    assert_eq!(new.len(), 1);
    let stored = std::fs::read(&new[0]).expect("read");
    assert!(
        stored.ends_with(b"body\n\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<bob@home.example>\r\n")
    );
    assert!(host.files("bob", "new").is_empty());
}
