//! Mail between hosts and out through a smarthost (issue 16, "Outbound"): real agents as
//! separate processes on loopback ports, each with its own mail volume; alice submits with
//! Python's smtplib (AUTH), mailboxes are read with Python's imaplib, bounces parsed with
//! Python's `email` package, and Debian's Postfix is the relay (STARTTLS required, SASL AUTH,
//! delivering into a Maildir this test reads).
//!
//! Debian packages: `python3`, `swaks`, `postfix`, `sasl2-bin` (`saslpasswd2`), `openssl`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use hostrole_testkit::mail::swaks;
use support::{Proc, agent_bin, free_port, password_hash, python, wait_ready, wait_until};

const PASSWORD: &str = "outb0und-s3cret";

fn hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| password_hash(PASSWORD))
}

/// A mail host `<name>.example` (users alice and carol) on free loopback ports, not started.
struct Host {
    name: &'static str,
    dir: tempfile::TempDir,
    config: PathBuf,
    smtp: u16,
    submission: u16,
    imap: u16,
    admin: u16,
    /// Environment variables for the agent.
    env: Vec<(&'static str, String)>,
    proc: Option<Proc>,
}

impl Host {
    /// `outbound` is the YAML of `mail.outbound` (indented by four spaces), if any.
    fn new(name: &'static str, outbound: Option<&str>) -> Host {
        Host::build(name, outbound, false, "")
    }

    /// A host whose SMTP offers STARTTLS with a self-signed certificate.
    fn with_tls(name: &'static str) -> Host {
        Host::build(name, None, true, "")
    }

    /// `extra` is more of the `mail:` section (indented by two spaces).
    fn build(name: &'static str, outbound: Option<&str>, tls: bool, extra: &str) -> Host {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("users"),
            format!("alice:{h}\ncarol:{h}\n", h = hash()),
        )
        .expect("users file");
        let (smtp, submission, imap, pop3, admin) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let config = dir.path().join("agent.yaml");
        let mut text = format!(
            "hostRole: {name}\nbind: 127.0.0.1\nadminPort: {admin}\nshutdownGraceSeconds: 5\nmail:\n  hostname: mail.{name}.example\n  smtpPort: {smtp}\n  submissionPort: {submission}\n  imapPort: {imap}\n  pop3Port: {pop3}\n  domains: [{name}.example]\n  root: {}\n  usersFile: {}\n  maxMessageBytes: 4194304\n  maxConnections: 32\n  allowPlaintextAuth: true\n",
            dir.path().join("mail").display(),
            dir.path().join("users").display(),
        );
        text.push_str(extra);
        if tls {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let out = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", &format!("/CN=mail.{name}.example")])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .expect("openssl");
            assert!(out.status.success(), "{}", support::text(&out));
            text.push_str(&format!(
                "  tls:\n    cert: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some(outbound) = outbound {
            text.push_str("  outbound:\n");
            text.push_str(outbound);
        }
        std::fs::write(&config, text).expect("config");
        Host {
            name,
            dir,
            config,
            smtp,
            submission,
            imap,
            admin,
            env: Vec::new(),
            proc: None,
        }
    }

    fn start(&mut self) {
        let mut proc = Proc::spawn(
            self.name,
            Command::new(agent_bin())
                .args(["run", "--config"])
                .arg(&self.config)
                .envs(self.env.iter().map(|(k, v)| (k, v))),
            self.dir.path(),
        );
        wait_ready(&mut proc, self.admin, Duration::from_secs(20));
        self.proc = Some(proc);
    }

    /// SIGKILL, as in a crash.
    fn kill9(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    fn log(&self) -> String {
        self.proc.as_ref().map(Proc::stderr).unwrap_or_default()
    }

    fn mail(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// The envelopes in the outbound queue.
    fn queued(&self) -> usize {
        std::fs::read_dir(self.mail().join(".queue"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Message files in `user`'s INBOX (new/ and cur/).
    fn inbox_files(&self, user: &str) -> usize {
        ["new", "cur"]
            .iter()
            .map(|sub| {
                std::fs::read_dir(self.mail().join(user).join(sub))
                    .map(|e| e.count())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// `user`'s INBOX over IMAP: every message, whole.
    fn read_inbox(&self, user: &str) -> Vec<String> {
        let out = python(IMAP_READ, &[&self.imap.to_string(), user, PASSWORD]);
        let line = out.lines().last().unwrap_or("[]");
        serde_json::from_str(line).unwrap_or_else(|e| panic!("imap output {out}: {e}"))
    }

    /// `alice` submits `count` messages to `to` (comma-separated) through submission with AUTH.
    fn submit(&self, to: &str, subject: &str, count: usize) {
        python(
            SUBMIT,
            &[
                &self.submission.to_string(),
                "alice",
                PASSWORD,
                &format!("alice@{}.example", self.name),
                to,
                subject,
                &count.to_string(),
            ],
        );
    }
}

/// Submits messages with smtplib: AUTH, then one transaction per message; every recipient
/// must be accepted. Each body has lines starting with dots (SMTP transparency both ways).
const SUBMIT: &str = r#"
import smtplib, sys
port, user, password, sender, rcpts, subject, count = sys.argv[1:8]
s = smtplib.SMTP("127.0.0.1", int(port), timeout=30)
s.ehlo("client.example")
s.login(user, password)
for i in range(int(count)):
    msg = (f"From: {sender}\r\nTo: {rcpts}\r\nSubject: {subject} n={i}\r\n"
           f"Message-ID: <{subject.replace(' ', '-')}-{i}@client.example>\r\n\r\n"
           f"hello {i}\r\n.a line with a leading dot\r\n..two dots\r\nend\r\n")
    refused = s.sendmail(sender, rcpts.split(","), msg)
    assert not refused, refused
s.quit()
"#;

/// Prints a JSON list of the messages in a user's INBOX.
const IMAP_READ: &str = r#"
import imaplib, json, sys
port, user, password = sys.argv[1:4]
m = imaplib.IMAP4("127.0.0.1", int(port))
m.login(user, password)
typ, _ = m.select("INBOX", readonly=True)
assert typ == "OK"
typ, data = m.search(None, "ALL")
out = []
for n in data[0].split():
    typ, d = m.fetch(n, "(BODY.PEEK[])")
    out.append(d[0][1].decode("utf-8", "replace"))
m.logout()
print(json.dumps(out))
"#;

/// Parses the bounces in a user's INBOX with Python's `email` package; prints a JSON list of
/// `{recipient, action, status, diagnostic, subject}` per failed recipient.
const DSN_READ: &str = r#"
import email, imaplib, json, sys
port, user, password, reporting = sys.argv[1:5]
m = imaplib.IMAP4("127.0.0.1", int(port))
m.login(user, password)
m.select("INBOX", readonly=True)
typ, data = m.search(None, "ALL")
out = []
for n in data[0].split():
    typ, d = m.fetch(n, "(BODY.PEEK[])")
    msg = email.message_from_bytes(d[0][1])
    if msg.get_content_type() != "multipart/report":
        continue
    assert msg.get_param("report-type") == "delivery-status", msg.get_param("report-type")
    assert msg["Return-Path"].strip() == "<>", msg["Return-Path"]
    assert msg["Auto-Submitted"] == "auto-replied", msg["Auto-Submitted"]
    human, status, headers = msg.get_payload()
    assert human.get_content_type() == "text/plain", human.get_content_type()
    assert status.get_content_type() == "message/delivery-status", status.get_content_type()
    assert headers.get_content_type() == "text/rfc822-headers", headers.get_content_type()
    original = email.message_from_string(headers.get_payload(decode=True).decode())
    blocks = status.get_payload()
    assert blocks[0]["Reporting-MTA"] == "dns; " + reporting, blocks[0]["Reporting-MTA"]
    assert blocks[0]["Arrival-Date"], "arrival date"
    for b in blocks[1:]:
        out.append({"recipient": b["Final-Recipient"], "action": b["Action"],
                    "status": b["Status"], "diagnostic": b["Diagnostic-Code"],
                    "subject": original["Subject"]})
m.logout()
print(json.dumps(out))
"#;

#[derive(Debug, serde::Deserialize)]
struct Failed {
    recipient: String,
    action: String,
    status: String,
    diagnostic: String,
    subject: String,
}

fn bounces(host: &Host) -> Vec<Failed> {
    let out = python(
        DSN_READ,
        &[
            &host.imap.to_string(),
            "alice",
            PASSWORD,
            &format!("mail.{}.example", host.name),
        ],
    );
    let line = out.lines().last().unwrap_or("[]");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("dsn output {out}: {e}"))
}

/// `mail.outbound` for host a: b's SMTP port is the route for b.example.
fn routes(b_smtp: u16, extra: &str) -> String {
    format!(
        "    retrySeconds: 1\n    maxRetrySeconds: 2\n{extra}    routes:\n    - domain: b.example\n      host: 127.0.0.1\n      port: {b_smtp}\n"
    )
}

/// Subjects of messages (their `Subject:` header).
fn subjects(messages: &[String]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn a_host_mails_another_that_is_down_for_a_while_and_it_arrives_once() {
    let mut b = Host::new("b", None);
    let mut a = Host::new("a", Some(&routes(b.smtp, "")));
    a.start();

    // b is not running: the message is accepted and waits in a's queue.
    a.submit("carol@b.example", "while b is down", 1);
    assert_eq!(a.queued(), 1, "the accepted message is on disk in .queue/");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(a.queued(), 1, "still queued while b is down: {}", a.log());

    b.start();
    wait_until(
        "the message reaches carol at b",
        Duration::from_secs(30),
        || b.inbox_files("carol") >= 1,
    );
    wait_until("a's queue empties", Duration::from_secs(10), || {
        a.queued() == 0
    });
    std::thread::sleep(Duration::from_secs(3));
    let inbox = b.read_inbox("carol");
    assert_eq!(
        subjects(&inbox),
        ["while b is down n=0"],
        "exactly once: {}",
        a.log()
    );
    let message = &inbox[0];
    assert!(
        message.contains("\r\nhello 0\r\n.a line with a leading dot\r\n..two dots\r\nend\r\n"),
        "the body arrives intact (dots unstuffed once, no extra line): {message:?}"
    );
    assert!(
        message.ends_with("end\r\n"),
        "no line added at the end: {message:?}"
    );
    assert!(
        message.contains("by mail.a.example (hostrole) with ESMTPA")
            && message.contains("by mail.b.example (hostrole) with ESMTP;"),
        "both hosts' Received lines: {message}"
    );

    // With b up, mail goes at once; a local recipient in the same message goes straight in.
    a.submit("carol@b.example,carol@a.example", "both up", 1);
    wait_until(
        "the second message reaches b",
        Duration::from_secs(20),
        || b.inbox_files("carol") == 2,
    );
    assert_eq!(
        a.inbox_files("carol"),
        1,
        "the local copy is delivered directly"
    );
    let url = format!("http://127.0.0.1:{}/metrics", a.admin);
    let metrics = String::from_utf8_lossy(&support::fetch(&[&url]).body).into_owned();
    assert!(
        metrics.contains("hostrole_agent_mail_outbound_total{result=\"Delivered\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hostrole_agent_mail_outbound_total{result=\"Deferred\"}"),
        "the attempts while b was down are counted: {metrics}"
    );
}

#[test]
fn an_unknown_user_and_an_expired_message_bounce_to_the_sender() {
    // b offers STARTTLS with a self-signed certificate: a uses it, unverified (opportunistic).
    let mut b = Host::with_tls("b");
    b.start();
    // c.example routes to a port where nothing listens; its messages expire after 4 seconds.
    let dead = free_port();
    let extra = format!(
        "    lifetimeSeconds: 4\n    routes:\n    - domain: c.example\n      host: 127.0.0.1\n      port: {dead}\n"
    );
    let outbound = format!(
        "    retrySeconds: 1\n    maxRetrySeconds: 2\n{}    - domain: b.example\n      host: 127.0.0.1\n      port: {}\n",
        extra, b.smtp
    );
    let mut a = Host::new("a", Some(&outbound));
    a.start();

    // One message, one good and one unknown recipient at b: only the unknown one bounces.
    a.submit("carol@b.example,nobody@b.example", "partly wrong", 1);
    wait_until("carol gets her copy", Duration::from_secs(20), || {
        b.inbox_files("carol") == 1
    });
    wait_until("alice gets a bounce", Duration::from_secs(20), || {
        a.inbox_files("alice") == 1
    });
    let found = bounces(&a);
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.recipient, "rfc822; nobody@b.example");
    assert_eq!(f.action, "failed");
    assert_eq!(f.status, "5.1.1");
    assert!(
        f.diagnostic.starts_with("smtp; 550 5.1.1") && f.diagnostic.contains("no such user"),
        "the remote's reply: {f:?}"
    );
    assert_eq!(
        f.subject, "partly wrong n=0",
        "the original header is attached"
    );
    let url = format!("http://127.0.0.1:{}/metrics", b.admin);
    let metrics = String::from_utf8_lossy(&support::fetch(&[&url]).body).into_owned();
    assert!(
        metrics.contains(
            "hostrole_agent_commands_total{role=\"smtp\",command=\"STARTTLS\",outcome=\"Ok\"} 1"
        ),
        "a used STARTTLS towards b: {metrics}"
    );

    // Nobody answers for c.example: retried until the lifetime runs out, then bounced.
    a.submit("dave@c.example", "never arrives", 1);
    assert_eq!(a.queued(), 1);
    wait_until(
        "the expired message bounces",
        Duration::from_secs(30),
        || a.inbox_files("alice") == 2,
    );
    wait_until("the queue empties", Duration::from_secs(10), || {
        a.queued() == 0
    });
    let found = bounces(&a);
    let expired = found
        .iter()
        .find(|f| f.recipient == "rfc822; dave@c.example")
        .unwrap_or_else(|| panic!("no bounce for dave: {found:?}"));
    assert_eq!(expired.action, "failed");
    assert_eq!(
        expired.status, "5.4.7",
        "delivery time expired, permanent: {expired:?}"
    );
    assert!(
        expired.diagnostic.contains("expired"),
        "{}",
        expired.diagnostic
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        a.inbox_files("alice"),
        2,
        "one bounce per failure, never more"
    );
}

#[test]
fn smtp_stays_closed_to_relaying_with_outbound_set() {
    let mut a = Host::new("a", Some(&routes(free_port(), "")));
    a.start();
    let text = swaks(format!("127.0.0.1:{}", a.smtp))
        .from("mallory@evil.example")
        .to("carol@b.example")
        .refused();
    assert!(text.contains("554 5.7.1"), "{text}");
    // Submission without AUTH does not take mail either.
    let text = swaks(format!("127.0.0.1:{}", a.submission))
        .from("alice@a.example")
        .to("carol@b.example")
        .refused();
    assert!(text.contains("530 5.7.0"), "{text}");
    assert_eq!(a.queued(), 0);
}

#[test]
fn without_outbound_submission_refuses_other_domains() {
    let mut a = Host::new("a", None);
    a.start();
    let text = swaks(format!("127.0.0.1:{}", a.submission))
        .from("alice@a.example")
        .to("carol@b.example")
        .auth("PLAIN", "alice", PASSWORD)
        .refused();
    assert!(text.contains("550 5.7.1"), "{text}");
    assert!(!a.mail().join(".queue").exists());
}

#[test]
fn kill_9_during_deliveries_loses_nothing() {
    const COUNT: usize = 40;
    let mut b = Host::new("b", None);
    let mut a = Host::new("a", Some(&routes(b.smtp, "")));
    a.start();
    // Everything is queued while b is down, then goes at once when b is up.
    a.submit("carol@b.example", "crash", COUNT);
    assert_eq!(a.queued(), COUNT);
    b.start();
    // Kill a in the middle of its deliveries.
    wait_until("deliveries have started", Duration::from_secs(30), || {
        b.inbox_files("carol") >= 3
    });
    a.kill9();
    let at_kill = b.inbox_files("carol");
    assert!(
        at_kill < COUNT,
        "the kill came after every delivery: nothing was tested"
    );
    a.start();
    wait_until(
        "a's queue empties after the restart",
        Duration::from_secs(60),
        || a.queued() == 0,
    );
    let got = subjects(&b.read_inbox("carol"));
    for i in 0..COUNT {
        assert!(
            got.contains(&format!("crash n={i}")),
            "message {i} was lost ({at_kill} delivered at the kill): {got:?}"
        );
    }
    // RFC 5321's edge: a message the remote took while its record was not yet written is sent
    // again; at most one per delivery in flight at the kill.
    let duplicates = got.len() - COUNT;
    eprintln!("kill -9 after {at_kill} of {COUNT} deliveries: {duplicates} duplicates");
    assert!(
        duplicates <= 4,
        "{duplicates} duplicates, more than the deliveries in flight: {got:?}"
    );
    assert_eq!(
        std::fs::read_dir(a.mail().join(".queue"))
            .expect("queue")
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .count(),
        0,
        "no message or envelope left behind"
    );
}

/// A Postfix instance of its own (config, queue and data directories under `dir`), listening
/// on `127.0.0.1:port` (STARTTLS required) and on a port with TLS from the first byte, SASL AUTH (Cyrus sasldb) required to relay, and
/// delivering `far.example` into Maildirs under `dir/vmail`. Stopped when dropped.
struct Postfix {
    dir: PathBuf,
}

impl Postfix {
    /// `port` takes STARTTLS, `tls_port` TLS from the first byte (`smtpd_tls_wrappermode`).
    fn start(dir: &Path, port: u16, tls_port: u16, user: &str, password: &str) -> Postfix {
        for (tool, package) in [
            ("postfix", "postfix"),
            ("saslpasswd2", "sasl2-bin"),
            ("openssl", "openssl"),
        ] {
            support::installed(tool, package);
        }
        let run = |cmd: &mut Command| {
            let out = cmd.output().expect("run");
            assert!(out.status.success(), "{cmd:?}: {}", support::text(&out));
        };
        let conf = dir.join("conf");
        for sub in ["conf/sasl", "queue", "data", "vmail"] {
            std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        // Postfix's daemons run as `postfix` and `nobody`: they must reach into the directory.
        run(Command::new("chmod").args(["755"]).arg(dir));
        run(Command::new("chown").arg("postfix").arg(dir.join("data")));
        run(Command::new("chown")
            .arg("65534:65534")
            .arg(dir.join("vmail")));
        // A CA (the agent's `caFile`) and the relay's certificate for 127.0.0.1, signed by it.
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=test relay CA"])
            .arg("-keyout")
            .arg(conf.join("ca-key.pem"))
            .arg("-out")
            .arg(conf.join("ca.pem")));
        run(Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=relay.test",
            ])
            .arg("-keyout")
            .arg(conf.join("key.pem"))
            .arg("-out")
            .arg(conf.join("req.pem")));
        std::fs::write(
            conf.join("ext.cnf"),
            "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext.cnf");
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(conf.join("req.pem"))
            .arg("-CA")
            .arg(conf.join("ca.pem"))
            .arg("-CAkey")
            .arg(conf.join("ca-key.pem"))
            .arg("-extfile")
            .arg(conf.join("ext.cnf"))
            .arg("-out")
            .arg(conf.join("cert.pem")));
        let d = dir.display();
        let main = format!(
            "compatibility_level = 3.6\nqueue_directory = {d}/queue\ndata_directory = {d}/data\nmail_owner = postfix\nsetgid_group = postdrop\nmyhostname = relay.test\nmydestination =\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmaillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\nsmtputf8_enable = no\nalias_maps =\nalias_database =\nvirtual_mailbox_domains = far.example\nvirtual_mailbox_base = {d}/vmail\nvirtual_mailbox_maps = texthash:{d}/conf/vmailbox\nvirtual_uid_maps = static:65534\nvirtual_gid_maps = static:65534\nsmtpd_tls_security_level = encrypt\nsmtpd_tls_cert_file = {d}/conf/cert.pem\nsmtpd_tls_key_file = {d}/conf/key.pem\nsmtpd_tls_auth_only = yes\nsmtpd_sasl_auth_enable = yes\nsmtpd_sasl_type = cyrus\nsmtpd_sasl_path = smtpd\ncyrus_sasl_config_path = {d}/conf\nsmtpd_relay_restrictions = permit_sasl_authenticated, reject\nsmtpd_recipient_restrictions = permit_sasl_authenticated, reject\n"
        );
        std::fs::write(conf.join("main.cf"), main).expect("main.cf");
        // Debian's master.cf with smtpd on our port and no chroot (the queue is not set up
        // for one).
        let stock = std::fs::read_to_string("/etc/postfix/master.cf").expect("postfix's master.cf");
        let mut master = String::new();
        for line in stock.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with("smtp ") && fields.get(1) == Some(&"inet") {
                master.push_str(&format!("127.0.0.1:{port} inet n - n - - smtpd\n"));
                master.push_str(&format!(
                    "127.0.0.1:{tls_port} inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n"
                ));
            } else if !line.starts_with([' ', '\t', '#']) && fields.len() >= 8 && fields[4] == "y" {
                let mut f = fields.clone();
                f[4] = "n";
                master.push_str(&f.join(" "));
                master.push('\n');
            } else {
                master.push_str(line);
                master.push('\n');
            }
        }
        std::fs::write(conf.join("master.cf"), master).expect("master.cf");
        // Debian's Cyrus SASL reads `<cyrus_sasl_config_path>/sasl/smtpd.conf`.
        std::fs::write(
            conf.join("sasl/smtpd.conf"),
            format!(
                "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: {d}/conf/sasldb2\n"
            ),
        )
        .expect("smtpd.conf");
        std::fs::write(
            conf.join("vmailbox"),
            "dave@far.example far.example/dave/\n",
        )
        .expect("vmailbox");
        let (name, realm) = user.split_once('@').expect("user@realm");
        let mut child = Command::new("saslpasswd2")
            .args(["-p", "-c", "-u", realm, "-f"])
            .arg(conf.join("sasldb2"))
            .arg(name)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("saslpasswd2");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(password.as_bytes()).expect("password");
        }
        assert!(child.wait().expect("saslpasswd2").success());
        run(Command::new("chgrp")
            .arg("postfix")
            .arg(conf.join("sasldb2")));
        run(Command::new("chmod").arg("640").arg(conf.join("sasldb2")));
        let postfix = Postfix {
            dir: dir.to_path_buf(),
        };
        let out = Command::new("postfix")
            .arg("-c")
            .arg(&conf)
            .arg("start")
            .output()
            .expect("postfix start");
        assert!(
            out.status.success(),
            "postfix start: {}{}",
            support::text(&out),
            postfix.log()
        );
        wait_until("postfix listens", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        postfix
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// Messages delivered to `dave@far.example`.
    fn delivered(&self) -> Vec<String> {
        let new = self.dir.join("vmail/far.example/dave/new");
        std::fs::read_dir(new)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.dir.join("conf"))
            .arg("stop")
            .output();
    }
}

/// `mail.outbound` with Postfix as the relay.
fn relay(port: u16, tls: &str, secret: &Path, ca: &Path) -> String {
    format!(
        "    retrySeconds: 1\n    maxRetrySeconds: 2\n    relay:\n      host: 127.0.0.1\n      port: {port}\n      tls: {tls}\n      credentialsDir: {}\n      caFile: {}\n",
        secret.display(),
        ca.display()
    )
}

#[test]
fn postfix_is_the_smarthost_with_starttls_or_tls_and_auth() {
    let relay_dir = tempfile::tempdir().expect("tempdir");
    let (port, tls_port) = (free_port(), free_port());
    let postfix = Postfix::start(
        relay_dir.path(),
        port,
        tls_port,
        "relayuser@relay.test",
        "relay-pass",
    );
    let secret = tempfile::tempdir().expect("tempdir");
    std::fs::write(secret.path().join("username"), "relayuser@relay.test").expect("username");
    std::fs::write(secret.path().join("password"), "relay-pass\n").expect("password");
    let ca = relay_dir.path().join("conf/ca.pem");

    // A certificate from another CA is refused: nothing goes, the message waits.
    let stranger = Host::with_tls("x");
    let wrong_ca = stranger.dir.path().join("cert.pem");
    let mut doubtful = Host::new(
        "d",
        Some(&relay(port, "StartTls", secret.path(), &wrong_ca)),
    );
    doubtful.start();
    doubtful.submit("dave@far.example", "wrong ca", 1);

    let mut a = Host::new("a", Some(&relay(port, "StartTls", secret.path(), &ca)));
    a.start();
    a.submit("dave@far.example", "via postfix", 1);
    let mut c = Host::new("c", Some(&relay(tls_port, "Tls", secret.path(), &ca)));
    c.start();
    c.submit("dave@far.example", "via postfix tls", 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while postfix.delivered().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "postfix did not get the messages:\n{}\n{}\npostfix:\n{}",
            a.log(),
            c.log(),
            postfix.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let delivered = postfix.delivered();
    let starttls = delivered
        .iter()
        .find(|m| m.contains("Subject: via postfix n=0"))
        .unwrap_or_else(|| panic!("{delivered:?}"));
    assert!(
        starttls.contains("\nhello 0\n.a line with a leading dot\n..two dots\nend\n"),
        "{starttls}"
    );
    assert!(
        delivered
            .iter()
            .any(|m| m.contains("Subject: via postfix tls n=0")),
        "{delivered:?}"
    );
    let log = postfix.log();
    assert!(
        log.contains("starttls=1 auth=1 mail=1 rcpt=1 data=1"),
        "STARTTLS and AUTH were used: {log}"
    );
    assert!(
        log.contains("ehlo=1 auth=1 mail=1 rcpt=1 data=1"),
        "TLS from the first byte (no STARTTLS) and AUTH: {log}"
    );
    wait_until("a's and c's queues empty", Duration::from_secs(10), || {
        a.queued() == 0 && c.queued() == 0
    });
    assert_eq!(doubtful.queued(), 1, "the unverified relay got nothing");
    assert_eq!(postfix.delivered().len(), 2);
    assert!(
        doubtful.log().contains("invalid peer certificate"),
        "{}",
        doubtful.log()
    );
}

/// Sends `count` messages of about `bytes` bytes each from alice to `to`; prints one line per
/// message: `ok`, or the refusing reply's code.
const SUBMIT_SIZED: &str = r#"
import smtplib, sys
port, user, password, sender, to, size, count = sys.argv[1:8]
s = smtplib.SMTP("127.0.0.1", int(port), timeout=30)
s.ehlo("client.example")
s.login(user, password)
for i in range(int(count)):
    msg = f"From: {sender}\r\nTo: {to}\r\nSubject: sized {i}\r\n\r\n" + ("x" * 70 + "\r\n") * (int(size) // 72)
    try:
        s.sendmail(sender, [to], msg)
        print("ok")
    except smtplib.SMTPRecipientsRefused as e:
        print(list(e.recipients.values())[0][0])
        s.rset()
    except smtplib.SMTPDataError as e:
        print(e.smtp_code)
s.quit()
"#;

#[test]
fn what_a_user_queues_counts_against_their_quota() {
    // b never answers: everything alice sends stays queued.
    let mut a = Host::build(
        "a",
        Some(&routes(free_port(), "")),
        false,
        "  mailboxQuotaBytes: 4000\n",
    );
    a.start();
    let out = python(
        SUBMIT_SIZED,
        &[
            &a.submission.to_string(),
            "alice",
            PASSWORD,
            "alice@a.example",
            "carol@b.example",
            "1500",
            "4",
        ],
    );
    let replies: Vec<&str> = out.lines().collect();
    assert_eq!(
        replies,
        ["ok", "ok", "552", "552"],
        "two messages fit alice's 4000 bytes, the third does not: {out}"
    );
    assert_eq!(a.queued(), 2);
}

/// A DNS server for the MX test (UDP, standard library only): `b.example` has MX 10
/// `mx1.b.example` (127.0.0.2, where nothing listens) and MX 20 `mx2.b.example` (127.0.0.1);
/// `implicit.example` has no MX and the address 127.0.0.1; `null.example` has a null MX (RFC
/// 7505); any other name does not exist. Prints `ready` once bound.
const DNS_SERVER: &str = r#"
import socket, struct, sys
port = int(sys.argv[1])
A = {"mx1.b.example": "127.0.0.2", "mx2.b.example": "127.0.0.1", "implicit.example": "127.0.0.1"}
MX = {"b.example": [(10, "mx1.b.example"), (20, "mx2.b.example")], "null.example": [(0, "")]}
EXIST = set(A) | set(MX)

def name(n):
    return b"".join(bytes([len(p)]) + p.encode() for p in n.split(".") if p) + b"\0"

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", port))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(512)
    ident, flags = struct.unpack(">HH", q[:4])
    i, labels = 12, []
    while q[i]:
        labels.append(q[i + 1:i + 1 + q[i]].decode().lower())
        i += 1 + q[i]
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    qname = ".".join(labels)
    answers = []
    if qtype == 15:
        for pref, host in MX.get(qname, []):
            answers.append((15, struct.pack(">H", pref) + name(host)))
    elif qtype == 1 and qname in A:
        answers.append((1, socket.inet_aton(A[qname])))
    rcode = 0 if qname in EXIST else 3
    out = struct.pack(">HHHHHH", ident, 0x8180 | (flags & 0x0100) | rcode, 1, len(answers), 0, 0)
    out += question
    for t, rdata in answers:
        out += b"\xc0\x0c" + struct.pack(">HHIH", t, 1, 60, len(rdata)) + rdata
    s.sendto(out, peer)
"#;

#[test]
fn mx_records_by_preference_implicit_mx_null_mx_and_a_domain_that_does_not_exist() {
    let dns_dir = tempfile::tempdir().expect("tempdir");
    let script = dns_dir.path().join("dns.py");
    std::fs::write(&script, DNS_SERVER).expect("dns script");
    let dns_port = free_port();
    let dns = Proc::spawn(
        "dns",
        Command::new("python3")
            .arg(&script)
            .arg(dns_port.to_string()),
        dns_dir.path(),
    );
    wait_until("the DNS server is up", Duration::from_secs(10), || {
        dns.stdout().contains("ready")
    });
    let mut b = Host::new("b", None);
    b.start();
    // No routes, no relay: a looks up MX records (at the test's DNS server, port b's SMTP).
    let mut a = Host::new(
        "a",
        Some("    retrySeconds: 1\n    maxRetrySeconds: 2\n    lifetimeSeconds: 60\n"),
    );
    a.env = vec![
        ("HOSTROLE_MAIL_TEST_DNS", format!("127.0.0.1:{dns_port}")),
        ("HOSTROLE_MAIL_TEST_MX_PORT", b.smtp.to_string()),
    ];
    a.start();
    a.submit(
        "carol@b.example,carol@implicit.example,x@null.example,x@nowhere.example",
        "by mx",
        1,
    );
    wait_until("carol at b gets it", Duration::from_secs(20), || {
        b.inbox_files("carol") == 1
    });
    assert!(
        a.log().contains("mx1.b.example (127.0.0.2:"),
        "the preferred MX host was tried first: {}",
        a.log()
    );
    wait_until(
        "the three failures are bounced",
        Duration::from_secs(20),
        || a.queued() == 0,
    );
    let mut found: Vec<(String, String)> = bounces(&a)
        .into_iter()
        .map(|f| (f.recipient, f.status))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            // The domain's own address took the connection: b, which serves no such domain.
            (
                "rfc822; carol@implicit.example".to_string(),
                "5.7.1".to_string()
            ),
            ("rfc822; x@nowhere.example".to_string(), "5.1.2".to_string()),
            ("rfc822; x@null.example".to_string(), "5.1.10".to_string()),
        ],
        "{}",
        a.log()
    );
}
