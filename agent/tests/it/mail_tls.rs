//! The mail role's TLS (issue 16, "SMTP and TLS"): the implicit-TLS ports of RFC 8314 (IMAPS,
//! POP3S, submissions) beside STARTTLS, a rotated certificate served on all of them without a
//! restart, passwords refused on connections without TLS unless the manifest allows them, and
//! envelope senders on submission limited to the user's own addresses. Each host is a real
//! `hostrole-agent up` of a manifest (so the translator's ports and defaults are the ones under
//! test), and the clients are real: offlineimap3, getmail6, fetchmail and Python's ssl with
//! smtplib, imaplib and poplib, all verifying the certificate against a test CA.
//!
//! Debian packages: `offlineimap3`, `getmail6`, `fetchmail`, `python3`, `openssl`.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use hostrole_agent_core::users::hash_password;
use hostrole_testkit::mail::message_files;
use support::clients::wait_for;
use support::pki::{Pki, indent, served_serial, served_serial_starttls, write_pair};
use support::{Agent, free_port, installed, python, text, wait_until};

const ALICE_PASSWORD: &str = "alice-s3cret";
const BOB_PASSWORD: &str = "bob pass";
const DOMAIN: &str = "tls.example";

/// The ports of one mail host.
struct Ports {
    smtp: u16,
    submission: u16,
    imap: u16,
    pop3: u16,
    imaps: u16,
    pop3s: u16,
    submissions: u16,
}

/// A mail host started with `hostrole-agent up`; killed when dropped.
struct MailHost {
    agent: Agent,
    data: tempfile::TempDir,
    _manifest: tempfile::TempDir,
    ports: Ports,
}

impl MailHost {
    /// A host of users alice (the postmaster) and bob; with `cert`, its certificate and key
    /// (PEM) in a `kubernetes.io/tls` Secret. `extra` is added to `spec.servers.mail`
    /// (six-space indented lines), `spec_extra` to `spec` (two-space indented; the
    /// basic-auth Secret `login` holds alice's credentials for clients).
    fn start(cert: Option<(&str, &str)>, extra: &str, spec_extra: &str) -> MailHost {
        let ports = Ports {
            smtp: free_port(),
            submission: free_port(),
            imap: free_port(),
            pop3: free_port(),
            imaps: free_port(),
            pop3s: free_port(),
            submissions: free_port(),
        };
        let mut manifest = String::new();
        let mut tls = String::new();
        if let Some((crt, key)) = cert {
            manifest.push_str(&format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cert\n  labels: {{hostrole.dev/use: \"true\"}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
                indent(crt),
                indent(key)
            ));
            tls.push_str("      tls: {secret: cert}\n");
        }
        manifest.push_str(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: accounts\n  labels: {{hostrole.dev/use: \"true\"}}\nstringData:\n  users: \"alice:{}\\nbob:{}\\n\"\n---\n",
            hash_password(ALICE_PASSWORD).expect("hash"),
            hash_password(BOB_PASSWORD).expect("hash"),
        ));
        manifest.push_str(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: login\n  labels: {{hostrole.dev/use: \"true\"}}\ntype: kubernetes.io/basic-auth\nstringData: {{username: alice, password: {ALICE_PASSWORD}}}\n---\n"
        ));
        let p = &ports;
        manifest.push_str(&format!(
            "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {{name: secure-mail}}\nspec:\n  servers:\n    mail:\n      smtpPort: {}\n      submissionPort: {}\n      imapPort: {}\n      pop3Port: {}\n      imapsPort: {}\n      pop3sPort: {}\n      submissionsPort: {}\n      domains: [{DOMAIN}]\n      users: {{secret: accounts}}\n      postmaster: alice\n{tls}{extra}{spec_extra}",
            p.smtp, p.submission, p.imap, p.pop3, p.imaps, p.pop3s, p.submissions,
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mail.yaml");
        std::fs::write(&path, manifest).expect("manifest");
        let data = tempfile::tempdir().expect("data");
        let agent = Agent::up(&path, data.path(), &[]);
        MailHost {
            agent,
            data,
            _manifest: dir,
            ports,
        }
    }

    /// A host with a certificate for localhost and 127.0.0.1 from `pki` (serial 1001).
    fn with_tls(pki: &Pki, extra: &str) -> MailHost {
        let (crt, key) = pki.server("one", "1001");
        MailHost::start(Some((&crt, &key)), extra, "")
    }

    /// Message files of `user`'s folder (`""` for INBOX, `".Sent"`, …).
    fn messages(&self, user: &str, folder: &str) -> Vec<PathBuf> {
        message_files(&self.data.path().join("mail").join(user).join(folder))
    }
}

/// Python's smtplib over submissions delivers `count` messages from alice to `to`.
fn submit(host: &MailHost, pki: &Pki, to: &str, subject: &str, count: usize) {
    python(
        SUBMIT,
        &[
            &host.ports.submissions.to_string(),
            pki.path("ca.crt").to_str().expect("utf-8"),
            ALICE_PASSWORD,
            to,
            subject,
            &count.to_string(),
        ],
    );
}

const SUBMIT: &str = r#"
import smtplib, ssl, sys
port, ca, password, to, subject, count = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca)
with smtplib.SMTP_SSL("localhost", int(port), context=ctx) as s:
    s.login("alice", password)
    for i in range(int(count)):
        s.sendmail("alice@tls.example", [to],
                   f"From: alice@tls.example\r\nTo: {to}\r\nSubject: {subject} {i}\r\n\r\nbody {i}\r\n".encode())
"#;

const PYTHON_CLIENTS: &str = r#"
import imaplib, poplib, smtplib, socket, ssl, sys
ports = dict(a.split("=") for a in sys.argv[1].split(","))
ca, alice, bob = sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)

# submissions: TLS from the first byte, the certificate checked against the CA and the name.
with smtplib.SMTP_SSL("localhost", int(ports["submissions"]), context=ctx) as s:
    code, _ = s.ehlo("client.example")
    assert code == 250
    assert s.has_extn("auth"), s.esmtp_features
    assert not s.has_extn("starttls"), "no STARTTLS on a TLS connection"
    s.login("alice", alice)
    s.sendmail("alice@tls.example", ["bob@tls.example"],
               b"From: alice@tls.example\r\nTo: bob@tls.example\r\nSubject: over submissions\r\n\r\nsealed\r\n")
    print("submissions ok", s.sock.getpeercert()["subject"])

# IMAPS.
m = imaplib.IMAP4_SSL("localhost", int(ports["imaps"]), ssl_context=ctx)
assert "STARTTLS" not in m.capabilities and "LOGINDISABLED" not in m.capabilities, m.capabilities
typ, _ = m.login("bob", bob)
assert typ == "OK"
typ, data = m.select("INBOX")
assert typ == "OK" and data == [b"1"], data
typ, data = m.fetch("1", "(BODY[HEADER.FIELDS (SUBJECT)])")
assert b"over submissions" in data[0][1], data
m.logout()
print("imaps ok")

# POP3S.
p = poplib.POP3_SSL("localhost", int(ports["pop3s"]), context=ctx)
assert "STLS" not in p.capa() and "USER" in p.capa(), p.capa()
p.user("bob")
p.pass_(bob)
count, _ = p.stat()
assert count == 1, count
assert b"sealed" in b"\n".join(p.retr(1)[1])
p.quit()
print("pop3s ok")

# STARTTLS still works beside them, with the same certificate.
with smtplib.SMTP("localhost", int(ports["submission"])) as s:
    s.ehlo("client.example")
    assert s.has_extn("starttls") and not s.has_extn("auth"), s.esmtp_features
    s.starttls(context=ctx)
    s.ehlo("client.example")
    assert s.has_extn("auth")
print("starttls ok")

# A client that trusts only the system roots refuses the certificate; a wrong name too.
for name, context in [("localhost", ssl.create_default_context()), ("other.example", ctx)]:
    try:
        context.wrap_socket(socket.create_connection(("127.0.0.1", int(ports["imaps"]))), server_hostname=name)
        raise SystemExit(f"{name}: accepted")
    except ssl.SSLCertVerificationError:
        print("refused", name)
"#;

#[test]
fn python_clients_use_submissions_imaps_and_pop3s_and_verify_the_certificate() {
    let pki = Pki::new();
    let host = MailHost::with_tls(&pki, "");
    let p = &host.ports;
    // `up` names every listener; the implicit-TLS ones too.
    let out = host.agent.stdout() + &host.agent.stderr();
    for (name, port) in [
        ("imaps", p.imaps),
        ("pop3s", p.pop3s),
        ("submissions", p.submissions),
    ] {
        assert!(
            out.contains(&format!("127.0.0.1:{port}")),
            "{name} is announced: {out}"
        );
    }
    let ports = format!(
        "submissions={},imaps={},pop3s={},submission={}",
        p.submissions, p.imaps, p.pop3s, p.submission
    );
    let said = python(
        PYTHON_CLIENTS,
        &[
            &ports,
            pki.path("ca.crt").to_str().expect("utf-8"),
            ALICE_PASSWORD,
            BOB_PASSWORD,
        ],
    );
    for step in [
        "submissions ok",
        "imaps ok",
        "pop3s ok",
        "starttls ok",
        "refused localhost",
        "refused other.example",
    ] {
        assert!(said.contains(step), "{step}: {said}");
    }
    // Plain text on an implicit-TLS port gets no greeting it could mistake for one.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", p.imaps)).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    plain.write_all(b"a1 LOGIN bob x\r\n").expect("write");
    let mut answer = String::new();
    let _ = BufReader::new(&plain).read_line(&mut answer);
    assert!(!answer.contains("OK"), "{answer:?}");
}

/// Keeps one IMAPS session open across the rotation: logs in, says `ready`, waits for a line on
/// stdin, then proves the session still works.
const OPEN_SESSION: &str = r#"
import imaplib, ssl, sys
port, ca, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
m = imaplib.IMAP4_SSL("localhost", port, ssl_context=ssl.create_default_context(cafile=ca))
m.login("bob", password)
print("ready", flush=True)
sys.stdin.readline()
typ, data = m.select("INBOX")
assert typ == "OK", data
typ, _ = m.noop()
assert typ == "OK"
m.logout()
print("still served", flush=True)
"#;

#[test]
fn a_rotated_certificate_reaches_every_mail_port_without_a_restart() {
    let pki = Pki::new();
    let host = MailHost::with_tls(&pki, "");
    let p = &host.ports;
    assert_eq!(served_serial(&pki, p.imaps), "1001");
    let pid = host.agent.pid();

    let mut session = Command::new("python3")
        .arg("-c")
        .arg(OPEN_SESSION)
        .args([
            &p.imaps.to_string(),
            pki.path("ca.crt").to_str().expect("utf-8"),
            BOB_PASSWORD,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut said = BufReader::new(session.stdout.take().expect("stdout"));
    let mut line = String::new();
    said.read_line(&mut line).expect("ready");
    assert_eq!(line.trim(), "ready");

    // The Secret is rotated where the standalone agent keeps it (a pod's mount).
    let (crt, key) = pki.server("two", "2002");
    write_pair(&host.data.path().join("tls/mail"), &crt, &key);
    wait_until(
        "new IMAPS handshakes to get the new certificate",
        Duration::from_secs(10),
        || served_serial(&pki, p.imaps) == "2002",
    );
    assert_eq!(served_serial(&pki, p.pop3s), "2002");
    assert_eq!(served_serial(&pki, p.submissions), "2002");
    assert_eq!(served_serial_starttls(&pki, p.imap, "imap"), "2002");
    assert_eq!(served_serial_starttls(&pki, p.submission, "smtp"), "2002");
    assert_eq!(served_serial_starttls(&pki, p.pop3, "pop3"), "2002");

    // The session opened before goes on, on the same listener and process.
    writeln!(session.stdin.take().expect("stdin"), "go").expect("go");
    line.clear();
    said.read_line(&mut line).expect("answer");
    let status = session.wait().expect("python3");
    assert!(
        status.success() && line.trim() == "still served",
        "{line:?}"
    );
    assert_eq!(host.agent.pid(), pid, "no restart");
    // And new clients log in on the new certificate.
    submit(&host, &pki, "bob@tls.example", "after rotation", 1);
    assert_eq!(host.messages("bob", "").len(), 1);
}

const PLAINTEXT_REFUSED: &str = r#"
import base64, imaplib, poplib, smtplib, sys
submission, imap, pop3, password = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
plain = base64.b64encode(b"\0alice\0" + password.encode()).decode()

with smtplib.SMTP("127.0.0.1", submission) as s:
    s.ehlo("client.example")
    assert not s.has_extn("auth"), s.esmtp_features
    code, msg = s.docmd("AUTH", "PLAIN " + plain)
    assert code == 538 and msg.startswith(b"5.7.11 Encryption required"), (code, msg)
    code, msg = s.docmd("MAIL", "FROM:<alice@tls.example>")
    assert code == 530, (code, msg)
print("smtp refused")

m = imaplib.IMAP4("127.0.0.1", imap)
assert "LOGINDISABLED" in m.capabilities and "AUTH=PLAIN" not in m.capabilities, m.capabilities
for attempt in (lambda: m.login("alice", password),
                lambda: m.authenticate("PLAIN", lambda _: b"\0alice\0" + password.encode())):
    try:
        attempt()
        raise SystemExit("an IMAP login in the clear was accepted")
    except imaplib.IMAP4.error as e:
        assert "PRIVACYREQUIRED" in str(e), e
m.logout()
print("imap refused")

p = poplib.POP3("127.0.0.1", pop3)
assert "USER" not in p.capa(), p.capa()
for command in ("USER alice", "PASS " + password):
    try:
        p._shortcmd(command)
        raise SystemExit(f"{command.split()[0]} in the clear was accepted")
    except poplib.error_proto as e:
        assert str(e).startswith("b'-ERR [AUTH]"), e
p.quit()
print("pop3 refused")
"#;

#[test]
fn without_tls_passwords_are_refused_on_every_protocol_unless_the_manifest_allows_them() {
    // On loopback `up` would allow them: the manifest says no. The host is its own mail
    // client, whose probe logs in without TLS.
    let host = MailHost::start(
        None,
        "      allowPlaintextAuth: false\n",
        "  clients:\n    - {service: mail, server: secure-mail, every: 1s, credentials: {secret: login}}\n",
    );
    let p = &host.ports;
    // No certificate, so no implicit-TLS listener even though the ports are in the manifest.
    assert!(std::net::TcpStream::connect(("127.0.0.1", p.imaps)).is_err());
    let said = python(
        PLAINTEXT_REFUSED,
        &[
            &p.submission.to_string(),
            &p.imap.to_string(),
            &p.pop3.to_string(),
            ALICE_PASSWORD,
        ],
    );
    for protocol in ["smtp", "imap", "pop3"] {
        assert!(said.contains(&format!("{protocol} refused")), "{said}");
    }
    // Delivery on the SMTP port needs no password and still works.
    hostrole_testkit::mail::swaks(format!("127.0.0.1:{}", p.smtp))
        .from("someone@elsewhere.example")
        .to("alice@tls.example")
        .deliver();
    assert_eq!(host.messages("alice", "").len(), 1);
    // The client role's probe is refused too, and says what to do.
    let probe = wait_for(&host.agent, "mail-0", "AuthFailed", Duration::from_secs(20));
    let message = probe["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("PRIVACYREQUIRED") && message.contains("allowPlaintextAuth: true"),
        "{probe}"
    );
}

const SENDERS: &str = r#"
import smtplib, ssl, sys
port, ca, alice, bob = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)

def senders(user, password, addresses):
    out = []
    with smtplib.SMTP_SSL("localhost", port, context=ctx) as s:
        s.login(user, password)
        for address in addresses:
            code, msg = s.docmd("MAIL", f"FROM:<{address}>")
            out.append((address, code, msg.decode()))
            s.rset()
    return out

for address, code, msg in senders("alice", alice, [
        "alice@tls.example", "ALICE@TLS.EXAMPLE", "alice@Tls.Example.", "postmaster@tls.example",
        "Postmaster@tls.example", "bob@tls.example", "alice@elsewhere.example", ""]):
    print("alice", repr(address), code, msg)
for address, code, msg in senders("bob", bob, ["bob@tls.example", "postmaster@tls.example", "alice@tls.example"]):
    print("bob", repr(address), code, msg)
"#;

#[test]
fn submission_senders_must_be_the_users_own_addresses() {
    let pki = Pki::new();
    let host = MailHost::with_tls(&pki, "");
    let said = python(
        SENDERS,
        &[
            &host.ports.submissions.to_string(),
            pki.path("ca.crt").to_str().expect("utf-8"),
            ALICE_PASSWORD,
            BOB_PASSWORD,
        ],
    );
    let code = |user: &str, address: &str| -> String {
        let prefix = format!("{user} {address:?} ").replace('"', "'");
        said.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{prefix}: {said}"))
            .to_string()
    };
    // Their own address in any case of the domain, the local part as delivery resolves it,
    // and postmaster for the postmaster user.
    for address in [
        "alice@tls.example",
        "ALICE@TLS.EXAMPLE",
        "alice@Tls.Example.",
        "postmaster@tls.example",
        "Postmaster@tls.example",
    ] {
        assert!(code("alice", address).starts_with("250"), "{said}");
    }
    assert!(code("bob", "bob@tls.example").starts_with("250"), "{said}");
    for (user, address) in [
        ("alice", "bob@tls.example"),
        ("alice", "alice@elsewhere.example"),
        ("bob", "postmaster@tls.example"),
        ("bob", "alice@tls.example"),
    ] {
        assert_eq!(
            code(user, address),
            format!("553 5.7.1 <{address}>: sender address not owned by {user}"),
            "{said}"
        );
    }
    assert!(code("alice", "").starts_with("553 5.7.1 <>"), "{said}");
    // On the SMTP port (mail from other servers) any sender is still accepted.
    hostrole_testkit::mail::swaks(format!("127.0.0.1:{}", host.ports.smtp))
        .from("bob@tls.example")
        .to("alice@tls.example")
        .deliver();
}

/// An offlineimap3 configuration syncing alice's mailbox over IMAPS into `local`.
fn offlineimap_config(dir: &Path, port: u16, ca: &Path) -> PathBuf {
    let config = dir.join("offlineimaprc");
    std::fs::write(
        &config,
        format!(
            "[general]\naccounts = test\nmetadata = {meta}\nui = basic\n\n\
             [Account test]\nlocalrepository = local\nremoterepository = remote\n\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {local}\n\n\
             [Repository remote]\ntype = IMAP\nremotehost = localhost\nremoteport = {port}\n\
             remoteuser = alice\nremotepass = {ALICE_PASSWORD}\nssl = yes\nsslcacertfile = {ca}\n\
             createfolders = True\n",
            meta = dir.join("meta").display(),
            local = dir.join("local").display(),
            ca = ca.display(),
        ),
    )
    .expect("offlineimaprc");
    config
}

fn offlineimap(config: &Path) {
    let out = Command::new("offlineimap")
        .args(["-o", "-c"])
        .arg(config)
        .output()
        .expect("offlineimap");
    let all = text(&out);
    assert!(
        out.status.success() && !all.contains("ERROR"),
        "offlineimap:\n{all}"
    );
}

const IMAP_FLAGS: &str = r#"
import imaplib, ssl, sys
port, ca, password, action = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
m = imaplib.IMAP4_SSL("localhost", port, ssl_context=ssl.create_default_context(cafile=ca))
m.login("alice", password)
m.select("INBOX")
if action == "flag":
    # The server side marks the second message important.
    typ, _ = m.store("2", "+FLAGS", "(\\Flagged)")
    assert typ == "OK"
typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
for item in data:
    if isinstance(item, tuple):
        print(item[0].decode(), item[1].decode().strip())
typ, data = m.list()
print("folders", b" ".join(data).decode())
m.select("Sent")
typ, data = m.search(None, "ALL")
print("sent", len(data[0].split()))
m.select("Projects")
typ, data = m.search(None, "ALL")
print("projects", len(data[0].split()))
m.logout()
"#;

#[test]
fn offlineimap_syncs_both_ways_over_imaps() {
    installed("offlineimap", "offlineimap3");
    let pki = Pki::new();
    let host = MailHost::with_tls(&pki, "");
    submit(&host, &pki, "alice@tls.example", "pulled", 2);
    let work = tempfile::tempdir().expect("tempdir");
    let ca = pki.path("ca.crt");
    let config = offlineimap_config(work.path(), host.ports.imaps, &ca);

    // First sync: the server's folders and messages come down.
    offlineimap(&config);
    let local = work.path().join("local");
    for folder in ["INBOX", "Sent", "Drafts", "Trash"] {
        assert!(local.join(folder).join("cur").is_dir(), "{folder} pulled");
    }
    let inbox = message_files(&local.join("INBOX"));
    assert_eq!(inbox.len(), 2, "{inbox:?}");

    // Locally: a sent message, a new folder with a message, and the first message read.
    let message = |subject: &str| {
        format!(
            "From: alice@tls.example\r\nTo: bob@tls.example\r\nSubject: {subject}\r\nMessage-ID: <{subject}@tls.example>\r\n\r\nwritten offline\r\n"
        )
    };
    let projects = local.join("Projects");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(projects.join(sub)).expect("folder");
    }
    std::fs::write(
        local.join("Sent/cur/1700000000.1.client:2,S"),
        message("sent-offline"),
    )
    .expect("sent");
    std::fs::write(
        projects.join("cur/1700000000.2.client:2,S"),
        message("project-plan"),
    )
    .expect("project");
    let first = inbox
        .iter()
        .find(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("pulled 0")))
        .expect("the first message");
    let name = first.file_name().expect("name").to_string_lossy();
    let base = name.split(":2,").next().unwrap_or(&name).to_string();
    std::fs::rename(first, local.join("INBOX/cur").join(format!("{base}:2,S"))).expect("seen");

    offlineimap(&config);
    assert_eq!(host.messages("alice", ".Sent").len(), 1, "pushed to Sent");
    assert_eq!(
        host.messages("alice", ".Projects").len(),
        1,
        "folder created"
    );
    let ca_arg = ca.to_str().expect("utf-8");
    let port = host.ports.imaps.to_string();
    let server = python(IMAP_FLAGS, &[&port, ca_arg, ALICE_PASSWORD, "flag"]);
    assert!(
        server.contains("Projects") && server.contains("sent 1") && server.contains("projects 1"),
        "{server}"
    );
    let seen_line = server
        .lines()
        .find(|l| l.contains("pulled 0"))
        .unwrap_or_default();
    assert!(
        seen_line.contains("\\Seen"),
        "read locally, seen on the server: {server}"
    );

    // Third sync: the flag set on the server comes down.
    offlineimap(&config);
    let flagged = message_files(&local.join("INBOX"))
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("pulled 1")))
        .filter(|p| {
            let name = p.to_string_lossy().into_owned();
            name.rsplit(":2,")
                .next()
                .is_some_and(|flags| flags.contains('F'))
        })
        .count();
    assert_eq!(flagged, 1, "{:?}", message_files(&local.join("INBOX")));
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn getmail_retrieves_over_pop3s_and_imaps() {
    installed("getmail", "getmail6");
    let pki = Pki::new();
    let host = MailHost::with_tls(&pki, "");
    submit(&host, &pki, "alice@tls.example", "getmail", 3);
    let ca = pki.path("ca.crt");
    for (retriever, port, extra) in [
        ("SimplePOP3SSLRetriever", host.ports.pop3s, ""),
        (
            "SimpleIMAPSSLRetriever",
            host.ports.imaps,
            "mailboxes = (\"INBOX\",)\n",
        ),
    ] {
        let work = tempfile::tempdir().expect("tempdir");
        let maildir = work.path().join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
        }
        // getmail refuses to deliver as root: as root (a CI container) it delivers as nobody.
        let user = if running_as_root() {
            use std::os::unix::fs::PermissionsExt;
            let open = |p: &Path, mode| {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod")
            };
            open(work.path(), 0o755);
            open(&maildir, 0o777);
            for sub in ["cur", "new", "tmp"] {
                open(&maildir.join(sub), 0o777);
            }
            "user = nobody\n"
        } else {
            ""
        };
        std::fs::write(
            work.path().join("getmailrc"),
            format!(
                "[retriever]\ntype = {retriever}\nserver = localhost\nport = {port}\ntimeout = 15\nusername = alice\npassword = {ALICE_PASSWORD}\nca_certs = {ca}\n{extra}\n\
                 [destination]\ntype = Maildir\npath = {maildir}/\n{user}\n[options]\nread_all = true\ndelete = false\n",
                ca = ca.display(),
                maildir = maildir.display(),
            ),
        )
        .expect("getmailrc");
        // getmail forks a child per delivery and installs its SIGCHLD handler only after the
        // fork (getmailcore/baseclasses.py, forkchild): a child that exits first on a loaded
        // machine is never seen, and getmail gives up with "waiting child pid N timed out"
        // after its socket timeout. That race is the client's; try again on a fresh Maildir.
        let mut out = None;
        for _ in 0..3 {
            for sub in ["cur", "new", "tmp"] {
                for entry in std::fs::read_dir(maildir.join(sub))
                    .expect("list")
                    .flatten()
                {
                    std::fs::remove_file(entry.path()).expect("clean the Maildir");
                }
            }
            let run = Command::new("getmail")
                .arg("--getmaildir")
                .arg(work.path())
                .args(["--rcfile", "getmailrc"])
                .output()
                .expect("getmail");
            let lost_child =
                text(&run).contains("timed out") && text(&run).contains("waiting child pid");
            out = Some(run);
            if !lost_child {
                break;
            }
        }
        let out = out.expect("getmail ran");
        assert!(out.status.success(), "getmail {retriever}:\n{}", text(&out));
        let got = message_files(&maildir);
        assert_eq!(got.len(), 3, "{retriever}: {got:?}\n{}", text(&out));
        assert!(
            got.iter().any(|p| std::fs::read_to_string(p)
                .is_ok_and(|t| t.contains("Subject: getmail 2"))),
            "{retriever}"
        );
    }
    // Left on the server (delete = false).
    assert_eq!(host.messages("alice", "").len(), 3);
}

#[test]
fn fetchmail_retrieves_over_pop3s_and_imaps() {
    installed("fetchmail", "fetchmail");
    let pki = Pki::new();
    let host = MailHost::with_tls(&pki, "");
    submit(&host, &pki, "alice@tls.example", "fetchmail", 2);
    let ca = pki.path("ca.crt");
    for (protocol, port) in [("pop3", host.ports.pop3s), ("imap", host.ports.imaps)] {
        let work = tempfile::tempdir().expect("tempdir");
        let out_file = work.path().join("delivered");
        let rc = work.path().join("fetchmailrc");
        std::fs::write(
            &rc,
            format!(
                "set no bouncemail\npoll localhost protocol {protocol} port {port} auth password\n  user \"alice\" there with password \"{ALICE_PASSWORD}\"\n  ssl sslcertck sslcertfile \"{ca}\"\n  keep fetchall\n  mda \"/bin/sh -c 'cat >> {out}'\"\n",
                ca = ca.display(),
                out = out_file.display(),
            ),
        )
        .expect("fetchmailrc");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).expect("0600");
        }
        let out = Command::new("fetchmail")
            .arg("--fetchmailrc")
            .arg(&rc)
            .arg("--idfile")
            .arg(work.path().join("ids"))
            .args(["--nosyslog", "-v"])
            .env("FETCHMAILHOME", work.path())
            .env("HOME", work.path())
            .output()
            .expect("fetchmail");
        assert!(
            out.status.success(),
            "fetchmail {protocol}:\n{}",
            text(&out)
        );
        let delivered = std::fs::read_to_string(&out_file).unwrap_or_default();
        for i in 0..2 {
            assert!(
                delivered.contains(&format!("Subject: fetchmail {i}")),
                "{protocol}: {delivered}\n{}",
                text(&out)
            );
        }
    }
    assert_eq!(host.messages("alice", "").len(), 2, "kept on the server");
}
