//! The mail role's folders (issue 16), with the real agent binary on loopback ports and real
//! clients: Python's imaplib for exact protocol checks (folders, APPEND/COPY/MOVE with UIDPLUS,
//! BODYSTRUCTURE against Python's `email` package, date search, keywords, changes seen by a
//! second session), neomutt sending with Fcc to Sent, mbsync syncing folders both ways, and a
//! store written by the previous version (INBOX only) opened by this one.
//!
//! Debian packages: `python3`, `neomutt`, `isync` (mbsync), `util-linux` (`script`), `swaks`.

use crate::support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use hostrole_testkit::mail::{message_files, swaks};
use support::{Proc, agent_bin, free_port, installed, python, text, wait_ready};

const ALICE_PASSWORD: &str = "alice-s3cret";

fn users_file_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let hash = support::password_hash(ALICE_PASSWORD);
        format!("alice:{hash}\nbob:{hash}\n")
    })
}

/// A mail host on free loopback ports with its own store.
struct MailHost {
    proc: Option<Proc>,
    dir: tempfile::TempDir,
    config: PathBuf,
    smtp: u16,
    submission: u16,
    imap: u16,
    admin: u16,
}

impl MailHost {
    /// Starts an agent; `prepare` may fill the store first (a volume from an older version).
    fn start(prepare: impl FnOnce(&Path)) -> MailHost {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("users"), users_file_text()).expect("users file");
        prepare(&dir.path().join("mail"));
        let (smtp, submission, imap, pop3, admin) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let config = dir.path().join("agent.yaml");
        let text = format!(
            "hostRole: mailtest\nbind: 127.0.0.1\nadminPort: {admin}\nshutdownGraceSeconds: 10\nmail:\n  hostname: mail.home.example\n  smtpPort: {smtp}\n  submissionPort: {submission}\n  imapPort: {imap}\n  pop3Port: {pop3}\n  domains: [home.example]\n  root: {}\n  usersFile: {}\n  maxMessageBytes: 4194304\n  maxConnections: 16\n  allowPlaintextAuth: true\n",
            dir.path().join("mail").display(),
            dir.path().join("users").display(),
        );
        std::fs::write(&config, text).expect("config");
        let mut host = MailHost {
            proc: None,
            dir,
            config,
            smtp,
            submission,
            imap,
            admin,
        };
        host.spawn();
        host
    }

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

    fn mail(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// Message files of a folder directory (`""` for INBOX, `".Sent"`, ...).
    fn messages(&self, user: &str, folder: &str) -> Vec<PathBuf> {
        message_files(&self.mail().join(user).join(folder))
    }
}

const IMAPLIB_FOLDERS: &str = r#"
import email, email.policy, imaplib, re, sys, time
from email.message import EmailMessage
port, password = int(sys.argv[1]), sys.argv[2]

def ok(r):
    typ, data = r
    assert typ == "OK", (typ, data)
    return data

m = imaplib.IMAP4("127.0.0.1", port)
for cap in ("UIDPLUS", "MOVE", "SPECIAL-USE", "LIST-EXTENDED"):
    assert cap in m.capabilities, m.capabilities
ok(m.login("alice", password))

# Special-use folders exist after the first login.
boxes = b"\n".join(ok(m.list()))
for name, attr in [(b"Sent", b"\\Sent"), (b"Drafts", b"\\Drafts"), (b"Trash", b"\\Trash"),
                   (b"Junk", b"\\Junk"), (b"Archive", b"\\Archive")]:
    assert re.search(rb'\(([^)]*)' + re.escape(attr) + rb'[^)]*\) "/" "?' + name, boxes), (name, boxes)
special = ok(m._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"'))
special = m.untagged_responses.pop("LIST", [])
assert len(special) == 5 and all(b"INBOX" not in s for s in special), special

# CREATE, hierarchy, RENAME, DELETE, SUBSCRIBE.
ok(m.create("Work/2024"))
typ, data = m.create("Work/2024")
assert typ == "NO" and b"ALREADYEXISTS" in data[0], data
top = b"\n".join(ok(m.list('""', "%")))
assert b'(\\Noselect \\HasChildren) "/" "Work"' in top, top
assert b"Work/2024" not in top, top
ok(m.rename("Work/2024", "Projects/2024"))
deep = b"\n".join(ok(m.list('""', "Projects/*")))
assert b'"Projects/2024"' in deep, deep
ok(m.subscribe("Projects/2024"))
subs = b"\n".join(ok(m.lsub('""', "*")))
assert b'"Projects/2024"' in subs and b'"Sent"' in subs, subs
for bad in ("../escape", "a/../../b", ".hidden", "/abs", "a//b"):
    typ, data = m.create(bad)
    assert typ == "NO" and b"CANNOT" in data[0], (bad, data)
typ, data = m.select("Nope")
assert typ == "NO" and b"NONEXISTENT" in data[0], data

# APPEND with flags, a keyword and a date: APPENDUID.
sent = b"From: Alice <alice@home.example>\r\nTo: bob@home.example\r\nSubject: sent one\r\nDate: Mon, 01 Jan 2024 10:00:00 +0100\r\n\r\nhello\r\n"
typ, data = m.append("Sent", "(\\Seen $Label1)", '"17-Jul-2023 02:44:25 -0700"', sent)
assert typ == "OK", data
code = re.search(rb"\[APPENDUID (\d+) (\d+)\]", data[0])
assert code, data
validity, uid = code.group(1), code.group(2)
typ, data = m.select("Sent")
assert typ == "OK" and data == [b"1"], data
assert m.untagged_responses["UIDVALIDITY"] == [validity], m.untagged_responses
perm = [r for r in m.untagged_responses.get("OK", []) if b"PERMANENTFLAGS" in r]
assert perm and b"\\*" in perm[0] and b"$Label1" in perm[0], perm
data = ok(m.uid("FETCH", uid, "(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"))
head = data[0][0]
assert b"\\Seen" in head and b"$Label1" in head, head
assert b'INTERNALDATE "17-Jul-2023 09:44:25 +0000"' in head, head
assert data[0][1] == sent, data
# Keywords are kept: a new one with STORE, searchable.
ok(m.uid("STORE", uid, "+FLAGS", "(Important)"))
assert ok(m.uid("SEARCH", None, "KEYWORD", "Important")) == [uid], "keyword search"
assert ok(m.uid("SEARCH", None, "UNKEYWORD", "Important")) == [b""], "unkeyword search"

# SEARCH by dates: the internal date (17 Jul 2023) and the Date header (1 Jan 2024).
assert ok(m.search(None, "SINCE", "17-Jul-2023")) == [b"1"]
assert ok(m.search(None, "BEFORE", "17-Jul-2023")) == [b""]
assert ok(m.search(None, "ON", "17-Jul-2023")) == [b"1"]
assert ok(m.search(None, "SENTSINCE", "1-Jan-2024")) == [b"1"]
assert ok(m.search(None, "SENTBEFORE", "1-Jan-2024")) == [b""]
assert ok(m.search(None, "SENTON", "1-Jan-2024")) == [b"1"]

# COPY into INBOX: COPYUID; the copy keeps flags and keywords.
typ, data = m._simple_command("UID", "COPY", uid, "INBOX")
assert typ == "OK", data
copy = re.search(rb"\[COPYUID (\d+) (\S+) (\S+)\]", data[0])
assert copy and copy.group(2) == uid, data
typ, data = m.uid("COPY", uid, "Missing")
assert typ == "NO" and b"TRYCREATE" in data[0], data

# A multipart with an inline image, a non-ASCII attachment and a forwarded message.
inner = EmailMessage()
inner["From"] = "Carol <carol@x.example>"
inner["Subject"] = "forwarded"
inner.set_content("the inner text\n")
outer = EmailMessage()
outer["From"] = "Alice <alice@home.example>"
outer["To"] = "bob@home.example"
outer["Subject"] = "with parts"
outer.set_content("plain body\n")
outer.add_alternative("<p>html <img src=\"cid:img1\"></p>\n", subtype="html")
outer.get_payload()[1].add_related(b"\x89PNG\r\n\x1a\nfake", maintype="image", subtype="png", cid="<img1>")
outer.add_attachment(bytes(range(256)) * 4, maintype="application", subtype="octet-stream", filename="résumé.bin")
outer.add_attachment(inner)
raw = outer.as_bytes(policy=email.policy.SMTP)
typ, data = m.append("Drafts", "(\\Draft)", None, raw)
assert typ == "OK", data
ok(m.select("Drafts"))
data = ok(m.fetch("1", "(BODYSTRUCTURE)"))
bs = data[0] if isinstance(data[0], bytes) else b"".join(x if isinstance(x, bytes) else x[0] + x[1] for x in data)

# The structure Python's email package sees, in IMAP's order of parts.
def shape(part):
    if part.is_multipart() and part.get_content_type() != "message/rfc822":
        return [shape(p) for p in part.get_payload()] + [part.get_content_subtype().upper().encode()]
    return (part.get_content_maintype().upper(), part.get_content_subtype().upper())
expected = shape(email.message_from_bytes(raw, policy=email.policy.default))

# A small IMAP parser for the reply: nested lists of strings/numbers/NIL.
def tokens(s):
    i = 0
    while i < len(s):
        c = s[i:i+1]
        if c in b" ":
            i += 1
        elif c in b"()":
            yield c; i += 1
        elif c == b'"':
            j = i + 1; out = b""
            while s[j:j+1] != b'"':
                if s[j:j+1] == b"\\": j += 1
                out += s[j:j+1]; j += 1
            yield ("s", out); i = j + 1
        elif c == b"{":
            j = s.index(b"}", i); n = int(s[i+1:j]); start = j + 3
            yield ("s", s[start:start+n]); i = start + n
        else:
            j = i
            while j < len(s) and s[j:j+1] not in b" ()": j += 1
            yield ("a", s[i:j]); i = j
def parse(toks):
    out = []
    for t in toks:
        if t == b"(": out.append(parse(toks))
        elif t == b")": return out
        else: out.append(t[1])
    return out
tree = parse(iter(list(tokens(bs))))
body = tree[1][tree[1].index(b"BODYSTRUCTURE") + 1]
def imap_shape(node):
    if isinstance(node[0], list):
        kids, i = [], 0
        while isinstance(node[i], list):
            kids.append(imap_shape(node[i])); i += 1
        return kids + [node[i].upper()]
    return (node[0].decode().upper(), node[1].decode().upper())
got = imap_shape(body)
assert got == expected, (got, expected)
assert "résumé.bin".encode() in bs or b"=?utf-8?b?" in bs.lower() or b"r=C3=A9sum=C3=A9" in bs, bs
# The forwarded message/rfc822 part carries its ENVELOPE.
assert b'"forwarded"' in bs, bs

# BODY[n] for each leaf equals what the email package holds, encoded as sent.
def leaves(part, prefix):
    if part.get_content_type() == "message/rfc822":
        yield prefix, part
        return
    if part.is_multipart():
        for i, p in enumerate(part.get_payload(), 1):
            yield from leaves(p, prefix + [i])
        return
    yield prefix, part
parsed = email.message_from_bytes(raw, policy=email.policy.default)
count = 0
for path, part in leaves(parsed, []):
    spec = ".".join(map(str, path))
    data = ok(m.fetch("1", "(BODY.PEEK[%s] BODY.PEEK[%s.MIME])" % (spec, spec)))
    got_body, got_mime = data[0][1], data[1][1]
    if part.get_content_type() == "message/rfc822":
        assert b"Subject: forwarded" in got_body, got_body
    else:
        norm = lambda b: b.replace(b"\r\n", b"\n").rstrip(b"\n")
        assert norm(got_body) == norm(part.get_payload().encode()), (spec, got_body[:80])
        assert part.get_payload(decode=True) == email.message_from_bytes(got_mime + got_body).get_payload(decode=True), spec
    assert b"content-type: " + part.get_content_type().encode() in got_mime.lower(), (spec, got_mime)
    count += 1
assert count == 5, count
# The forwarded message's own parts: BODY[4.1] is its text, BODY[4.HEADER] its header.
fwd = next(p for p, part in leaves(parsed, []) if part.get_content_type() == "message/rfc822")
spec = ".".join(map(str, fwd))
data = ok(m.fetch("1", "(BODY.PEEK[%s.HEADER] BODY.PEEK[%s.1])" % (spec, spec)))
assert b"Subject: forwarded" in data[0][1] and data[1][1].startswith(b"the inner text"), data

# MOVE (RFC 6851): untagged COPYUID, EXPUNGE, gone from the source.
ok(m.select("INBOX"))
typ, data = m.uid("MOVE", copy.group(3), "Archive")
assert typ == "OK", data
moved = m.untagged_responses.get("OK", [])
assert any(b"COPYUID" in r for r in moved), m.untagged_responses
assert m.untagged_responses.get("EXPUNGE") == [b"1"], m.untagged_responses
typ, data = m.status("Archive", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)")
assert typ == "OK" and b"MESSAGES 1" in data[0] and b"UNSEEN 0" in data[0], data
typ, data = m.status("INBOX", "(MESSAGES)")
assert b"MESSAGES 0" in data[0], data

# UID EXPUNGE removes only the named \Deleted messages.
for i in range(3):
    ok(m.append("INBOX", "(\\Deleted)", None, b"Subject: del %d\r\n\r\nx\r\n" % i))
ok(m.select("INBOX"))
uids = ok(m.uid("SEARCH", None, "ALL"))[0].split()
assert len(uids) == 3, uids
typ, data = m.uid("EXPUNGE", uids[1].decode())
assert typ == "OK", data
assert ok(m.uid("SEARCH", None, "ALL"))[0].split() == [uids[0], uids[2]]

# Another session sees this one's changes at its next command.
other = imaplib.IMAP4("127.0.0.1", port)
ok(other.login("alice", password))
ok(other.select("INBOX"))
ok(m.uid("STORE", uids[0].decode(), "-FLAGS", "(\\Deleted)"))
ok(m.uid("STORE", uids[0].decode(), "+FLAGS", "(\\Flagged)"))
ok(m.uid("EXPUNGE", uids[2].decode()))
ok(other.noop())
assert other.untagged_responses.get("EXPUNGE") == [b"2"], other.untagged_responses
fetches = other.untagged_responses.get("FETCH", [])
assert any(b"\\Flagged" in f for f in fetches), other.untagged_responses
other.logout()

ok(m.delete("Projects/2024"))
boxes = b"\n".join(ok(m.list()))
assert b"Projects" not in boxes, boxes
typ, data = m.delete("INBOX")
assert typ == "NO", data
m.logout()
print("folders ok")
"#;

#[test]
fn imaplib_folders_append_copy_move_uidplus_bodystructure_and_other_sessions() {
    let host = MailHost::start(|_| {});
    let out = python(IMAPLIB_FOLDERS, &[&host.imap.to_string(), ALICE_PASSWORD]);
    assert!(out.contains("folders ok"), "{out}");
    // The layout on disk is Dovecot's Maildir++.
    let alice = host.mail().join("alice");
    for folder in [".Sent", ".Drafts", ".Trash", ".Junk", ".Archive"] {
        assert!(alice.join(folder).join("cur").is_dir(), "{folder}");
        assert!(
            alice.join(folder).join("maildirfolder").is_file(),
            "{folder}"
        );
    }
    let uidlist = std::fs::read_to_string(alice.join(".Sent/dovecot-uidlist")).expect("uidlist");
    assert!(uidlist.starts_with("3 V"), "{uidlist}");
    assert!(uidlist.contains("\n1 :"), "{uidlist}");
    let keywords = std::fs::read_to_string(alice.join(".Sent/dovecot-keywords")).expect("kw");
    assert!(keywords.contains("0 $Label1"), "{keywords}");
    let subscriptions = std::fs::read_to_string(alice.join("subscriptions")).expect("subs");
    assert!(subscriptions.starts_with("V\t2\n\n"), "{subscriptions}");
    let sent = host.messages("alice", ".Sent");
    assert_eq!(sent.len(), 1);
    let name = sent[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        name.ends_with(":2,Sab"),
        "flags and keyword letters: {name}"
    );
    // No folder name reached outside the user's Maildir.
    assert!(!host.mail().join("escape").exists() && !host.dir.path().join("escape").exists());
    // Nothing is left half written.
    for folder in ["", ".Sent", ".Drafts", ".Archive"] {
        let tmp = std::fs::read_dir(alice.join(folder).join("tmp")).expect("tmp");
        assert_eq!(tmp.count(), 0, "{folder}/tmp");
    }
}

const MIGRATION: &str = r#"
import imaplib, sys
port, password = int(sys.argv[1]), sys.argv[2]
m = imaplib.IMAP4("127.0.0.1", port)
m.login("alice", password)
typ, data = m.select("INBOX")
assert typ == "OK" and data == [b"3"], data
assert m.untagged_responses["UIDVALIDITY"] == [b"1234567"], m.untagged_responses
assert m.untagged_responses["UIDNEXT"] == [b"12"], m.untagged_responses
typ, data = m.uid("FETCH", "5:11", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
got = [(d[0].split(b"UID ")[1].split()[0], d[1].strip()) for d in data if isinstance(d, tuple)]
assert got == [(b"5", b"Subject: five"), (b"9", b"Subject: nine"), (b"11", b"Subject: new one")], got
assert b"\\Seen" in data[0][0], data
typ, boxes = m.list()
assert any(b'"Sent"' in b for b in boxes), boxes
m.logout()
print("migrated ok")
"#;

/// A volume of the previous version: INBOX only, UIDs in `hostrole-uidlist`.
fn old_volume(mail: &Path) {
    let alice = mail.join("alice");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(alice.join(sub)).expect("mkdir");
    }
    std::fs::write(
        alice.join("cur/1700000000.M1P1Q0.old:2,S"),
        b"Subject: five\r\n\r\n5\r\n",
    )
    .expect("msg");
    std::fs::write(
        alice.join("cur/1700000001.M1P1Q1.old:2,"),
        b"Subject: nine\r\n\r\n9\r\n",
    )
    .expect("msg");
    std::fs::write(
        alice.join("new/1700000002.M1P1Q2.old"),
        b"Subject: new one\r\n\r\nnew\r\n",
    )
    .expect("msg");
    std::fs::write(
        alice.join("hostrole-uidlist"),
        "V1234567 N11\n5 1700000000.M1P1Q0.old\n9 1700000001.M1P1Q1.old\n",
    )
    .expect("uidlist");
}

#[test]
fn an_inbox_only_volume_of_the_previous_version_keeps_uidvalidity_and_uids() {
    let host = MailHost::start(old_volume);
    let out = python(MIGRATION, &[&host.imap.to_string(), ALICE_PASSWORD]);
    assert!(out.contains("migrated ok"), "{out}");
    let alice = host.mail().join("alice");
    assert!(
        !alice.join("hostrole-uidlist").exists(),
        "the old list is converted"
    );
    let list = std::fs::read_to_string(alice.join("dovecot-uidlist")).expect("uidlist");
    assert!(list.starts_with("3 V1234567 N12 G"), "{list}");
    assert!(
        list.contains("5 :1700000000.M1P1Q0.old\n"),
        "a UID survives: {list}"
    );
}

/// neomutt sends through submission and saves the copy (`$record`) in the IMAP Sent folder.
/// Batch mode skips an IMAP Fcc, so neomutt runs on a terminal (`script`): the message is
/// composed from a file (`$editor` is `true`; `autoedit` with `edit_headers` skips the
/// prompts) and sent with `y` from the compose menu. On the code before folders, neomutt stops
/// at "Fcc failed" and the test fails.
#[test]
fn neomutt_sends_with_fcc_to_the_sent_folder() {
    installed("neomutt", "neomutt");
    installed("script", "util-linux");
    let host = MailHost::start(|_| {});
    let muttrc = host.dir.path().join("neomuttrc");
    let body = host.dir.path().join("body.txt");
    std::fs::write(&body, "sent by neomutt\n").expect("body");
    std::fs::write(
        &muttrc,
        format!(
            "set from=alice@home.example\nset realname=Alice\n\
             set smtp_url=smtp://alice@127.0.0.1:{}/\nset smtp_pass=\"{ALICE_PASSWORD}\"\n\
             set imap_user=alice\nset imap_pass=\"{ALICE_PASSWORD}\"\n\
             set folder=imap://127.0.0.1:{}/\nset record=+Sent\nset copy=yes\n\
             set ssl_starttls=no\nset ssl_force_tls=no\nset header_cache=\"\"\n\
             set message_cachedir=\"\"\nset confirmappend=no\nset confirmcreate=no\n\
             set editor=true\nset abort_unmodified=no\nset autoedit=yes\nset edit_headers=yes\nset wait_key=no\n\
             set sleep_time=0\n",
            host.submission, host.imap
        ),
    )
    .expect("muttrc");
    let command = format!(
        "TERM=vt100 neomutt -n -F {} -s 'fcc check' -i {} -- bob@home.example",
        muttrc.display(),
        body.display()
    );
    let mut child = Command::new("timeout")
        .args(["60", "script", "-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (Debian package util-linux)");
    // neomutt discards typeahead before its compose menu, so `y` (send) is typed until it
    // has exited; a `y` that arrives early is simply dropped.
    let mut keys = child.stdin.take().expect("stdin");
    let typist = std::thread::spawn(move || {
        for _ in 0..25 {
            std::thread::sleep(Duration::from_secs(2));
            if keys.write_all(b"y").and_then(|()| keys.flush()).is_err() {
                break;
            }
        }
    });
    let out = child.wait_with_output().expect("neomutt");
    let _ = typist.join();
    let all = text(&out);
    let tail: String = all
        .chars()
        .rev()
        .take(3000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(!all.contains("Fcc failed"), "{tail}");
    let delivered = host.messages("bob", "");
    assert_eq!(delivered.len(), 1, "bob got the message: {tail}");
    let sent = host.messages("alice", ".Sent");
    assert_eq!(sent.len(), 1, "the Fcc copy is in Sent: {tail}");
    let copy = std::fs::read(&sent[0]).expect("sent copy");
    assert!(
        copy.windows(b"fcc check".len()).any(|w| w == b"fcc check"),
        "{}",
        String::from_utf8_lossy(&copy)
    );
}

/// mbsync: the server's folders come down, a folder made locally goes up with its message,
/// a flag set locally reaches the server, and a message appended on the server comes down.
#[test]
fn mbsync_syncs_folders_both_ways() {
    installed("mbsync", "isync");
    let host = MailHost::start(|_| {});
    swaks(format!("127.0.0.1:{}", host.smtp))
        .from("sender@example.org")
        .to("alice@home.example")
        .header("Subject: from the server")
        .deliver();
    let local = host.dir.path().join("local");
    // A folder that exists only on the client, with one message.
    let mine = local.join("Mine");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(mine.join(sub)).expect("mkdir");
    }
    std::fs::write(
        mine.join("cur/1.local:2,S"),
        b"From: alice@home.example\r\nSubject: made offline\r\n\r\nlocal\r\n",
    )
    .expect("local message");
    let rc = host.dir.path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount home\nHost 127.0.0.1\nPort {}\nUser alice\nPass {ALICE_PASSWORD}\nSSLType None\nAuthMechs LOGIN PLAIN\n\n\
             IMAPStore remote\nAccount home\n\n\
             MaildirStore local\nPath {}/\nInbox {}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nExpunge Both\nSyncState *\n",
            host.imap,
            local.display(),
            local.display()
        ),
    )
    .expect("mbsyncrc");
    let run = || {
        let out = Command::new("timeout")
            .args(["60", "mbsync", "-c"])
            .arg(&rc)
            .arg("-a")
            .output()
            .expect("mbsync");
        assert!(out.status.success(), "mbsync failed: {}", text(&out));
        text(&out)
    };
    run();
    // Down: INBOX and the special-use folders.
    let inbox: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .flat_map(|s| {
            std::fs::read_dir(local.join("INBOX").join(s))
                .into_iter()
                .flatten()
        })
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert_eq!(inbox.len(), 1, "the server's message came down");
    for folder in ["Sent", "Drafts", "Trash", "Junk", "Archive"] {
        assert!(
            local.join(folder).join("cur").is_dir(),
            "{folder} came down"
        );
    }
    // Up: the local folder and its message, flags kept.
    let up = host.messages("alice", ".Mine");
    assert_eq!(up.len(), 1, "the local folder's message went up");
    assert!(up[0].to_string_lossy().ends_with(":2,S"), "{up:?}");
    // A flag set locally goes up on the next run.
    let local_copy = inbox[0].clone();
    let name = local_copy
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let base = name.split(":2,").next().expect("base").to_string();
    let flagged = local.join("INBOX/cur").join(format!("{base}:2,FS"));
    std::fs::rename(&local_copy, &flagged).expect("flag locally");
    run();
    let server = host.messages("alice", "");
    assert_eq!(server.len(), 1);
    assert!(
        server[0].to_string_lossy().ends_with(":2,FS"),
        "the flag went up: {server:?}"
    );
}

/// RFC 5321 section 4.5.1: `postmaster@` every served domain is accepted, here routed to the
/// first user (no `postmaster` user, none configured).
#[test]
fn postmaster_is_accepted_and_delivered_to_a_user() {
    let host = MailHost::start(|_| {});
    swaks(format!("127.0.0.1:{}", host.smtp))
        .from("someone@example.org")
        .to("PostMaster@home.example")
        .header("Subject: for the postmaster")
        .deliver();
    let got = host.messages("alice", "");
    assert_eq!(got.len(), 1, "postmaster mail reaches alice");
    assert!(host.messages("bob", "").is_empty());
}

const APPEND_LOOP: &str = r#"
import imaplib, re, sys
port, password = int(sys.argv[1]), sys.argv[2]
m = imaplib.IMAP4("127.0.0.1", port)
m.login("alice", password)
m.select("Sent")
n = 0
try:
    while True:
        n += 1
        body = b"Subject: n%d\r\n\r\n" % n + b"x" * 20000 + b"\r\n"
        typ, data = m.append("Sent", None, None, body)
        assert typ == "OK", data
        uid = re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1).decode()
        print("ACK APPEND n%d %s" % (n, uid), flush=True)
        # Every third message is also copied to Drafts, then moved to Archive.
        if n % 3 == 0:
            m.noop()
            typ, data = m._simple_command("UID", "COPY", uid, "Drafts")
            assert typ == "OK" and b"COPYUID" in data[0], data
            print("ACK COPY n%d" % n, flush=True)
            typ, data = m.uid("MOVE", uid, "Archive")
            assert typ == "OK", data
            print("ACK MOVE n%d" % n, flush=True)
except (imaplib.IMAP4.abort, OSError, EOFError) as e:
    print("DEAD", e, flush=True)
"#;

const AFTER_CRASH: &str = r#"
import imaplib, sys, collections
port, password = int(sys.argv[1]), sys.argv[2]
m = imaplib.IMAP4("127.0.0.1", port)
m.login("alice", password)
for box in ("Sent", "Drafts", "Archive"):
    typ, data = m.select(box)
    assert typ == "OK", data
    typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    seen = collections.Counter()
    for d in data:
        if isinstance(d, tuple):
            uid = d[0].split(b"UID ")[1].split()[0].decode()
            subject = d[1].strip().decode().replace("Subject: ", "")
            print("%s %s %s" % (box, uid, subject))
"#;

/// kill -9 while a client APPENDs, COPYs and MOVEs in a loop: after a restart every
/// acknowledged APPEND is in Sent with the UID it was given (or, moved, in Archive), every
/// acknowledged COPY in Drafts and MOVE in Archive, no UID appears twice in a folder and nothing
/// is left in `tmp/`. (A kill keeps the page cache: this checks that replies come after the
/// writes, not the fsyncs themselves.)
#[test]
fn kill_9_during_append_copy_move_loses_nothing_acknowledged() {
    let mut host = MailHost::start(|_| {});
    let mut child = Command::new("python3")
        .args(["-", &host.imap.to_string(), ALICE_PASSWORD])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(APPEND_LOOP.as_bytes())
        .expect("script");
    let stdout = child.stdout.take().expect("stdout");
    let mut acks: Vec<String> = Vec::new();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    for line in lines.by_ref() {
        let line = line.expect("line");
        let done = line.starts_with("ACK MOVE") || line.starts_with("DEAD");
        acks.push(line);
        let moves = acks.iter().filter(|l| l.starts_with("ACK MOVE")).count();
        if done && moves >= 4 || acks.len() > 1000 {
            break;
        }
    }
    // Mid-loop: the client is sending the next message.
    host.proc.as_mut().expect("running").kill();
    for line in lines {
        acks.push(line.expect("line"));
    }
    let _ = child.wait();
    host.spawn();
    let alice = host.mail().join("alice");
    for folder in ["", ".Sent", ".Drafts", ".Archive"] {
        let tmp = std::fs::read_dir(alice.join(folder).join("tmp")).expect("tmp");
        assert_eq!(tmp.count(), 0, "{folder}/tmp is empty after the restart");
    }
    let listing = python(AFTER_CRASH, &[&host.imap.to_string(), ALICE_PASSWORD]);
    let stored: Vec<(String, String, String)> = listing
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.into(), w.next()?.into(), w.next()?.into()))
        })
        .collect();
    let mut uids = std::collections::HashSet::new();
    for (folder, uid, _) in &stored {
        assert!(
            uids.insert((folder.clone(), uid.clone())),
            "UID {uid} twice in {folder}"
        );
    }
    for ack in &acks {
        let w: Vec<&str> = ack.split_whitespace().collect();
        match w.as_slice() {
            ["ACK", "APPEND", n, uid] => assert!(
                stored
                    .iter()
                    .any(|(f, u, s)| (f == "Sent" && u == uid || f == "Archive") && s == n),
                "APPEND {n} (UID {uid}) lost: {listing}"
            ),
            ["ACK", "COPY", n] => assert!(
                stored.iter().any(|(f, _, s)| f == "Drafts" && s == n),
                "COPY {n} lost: {listing}"
            ),
            ["ACK", "MOVE", n] => assert!(
                stored.iter().any(|(f, _, s)| f == "Archive" && s == n),
                "MOVE {n} lost: {listing}"
            ),
            _ => {}
        }
    }
}

const MAKE_FOLDERS: &str = r#"
import imaplib, re, sys
port, password = int(sys.argv[1]), sys.argv[2]
m = imaplib.IMAP4("127.0.0.1", port)
m.login("alice", password)
assert m.create("Work/2024")[0] == "OK"
typ, data = m.append("Sent", "(\\Seen $Label1)", '"17-Jul-2023 02:44:25 -0700"', b"Subject: one\r\n\r\nbody\r\n")
assert typ == "OK", data
print("VALIDITY", re.search(rb"APPENDUID (\d+)", data[0]).group(1).decode())
assert m.append("Sent", "(\\Flagged)", None, b"Subject: two\r\n\r\nbody2\r\n")[0] == "OK"
assert m.append("Work/2024", None, None, b"Subject: three\r\n\r\nbody3\r\n")[0] == "OK"
m.logout()
"#;

const READ_BACK: &str = r#"
import imaplib, sys
port, password = int(sys.argv[1]), sys.argv[2]
m = imaplib.IMAP4("127.0.0.1", port)
m.login("alice", password)
typ, boxes = m.list()
assert any(b'"FromDovecot"' in b for b in boxes), boxes
typ, data = m.select("Sent")
assert data == [b"3"], data
typ, data = m.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
got = [(d[0], d[1].strip()) for d in data if isinstance(d, tuple)]
assert len(got) == 3 and b"UID 3 " in got[2][0] and b"$FromDovecot" in got[2][0], got
assert got[2][1] == b"Subject: four", got
assert b"UID 1 " in got[0][0] and b"$Label1" in got[0][0], got
m.logout()
print("read back ok")
"#;

/// The layout is Dovecot's: Debian's Dovecot (its `imap` binary, preauthenticated, as an
/// unprivileged user) opens a volume the mail role wrote and sees the same folders, UIDVALIDITY,
/// UIDs, flags, keywords and subscriptions; then it appends and creates a folder, and the mail
/// role reads that back with Dovecot's UIDs and keywords.
#[test]
fn dovecot_and_the_mail_role_read_each_others_volume() {
    let dovecot = Path::new("/usr/lib/dovecot/imap");
    assert!(
        dovecot.exists(),
        "Dovecot is not installed: apt-get install dovecot-imapd (scripts/install-deps.sh does)"
    );
    installed("setpriv", "util-linux");
    let host = MailHost::start(|_| {});
    let made = python(MAKE_FOLDERS, &[&host.imap.to_string(), ALICE_PASSWORD]);
    let validity = made
        .lines()
        .find_map(|l| l.strip_prefix("VALIDITY "))
        .expect("validity")
        .to_string();
    // A copy Dovecot may open as `nobody` (it refuses to run mail access as root).
    let shared = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect(args[0]);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    let dv = shared.path().join("alice");
    run(&["chmod", "755", &shared.path().to_string_lossy()]);
    run(&[
        "cp",
        "-a",
        &host.mail().join("alice").to_string_lossy(),
        &dv.to_string_lossy(),
    ]);
    run(&["chown", "-R", "nobody:nogroup", &dv.to_string_lossy()]);
    let conf = shared.path().join("dovecot.conf");
    let log = shared.path().join("dovecot.log");
    std::fs::write(
        &conf,
        format!(
            "mail_location = maildir:{}\nnamespace inbox {{\n  inbox = yes\n  separator = /\n}}\nlog_path = {}\nssl = no\n",
            dv.display(),
            log.display()
        ),
    )
    .expect("conf");
    std::fs::write(&log, b"").expect("log");
    run(&["chown", "nobody", &log.to_string_lossy()]);
    let four = b"Subject: four\r\n\r\nfrom dovecot\r\n";
    let mut script = format!(
        "a LIST \"\" \"*\"\r\nb SELECT Sent\r\nc UID FETCH 1:* (UID FLAGS)\r\nd STATUS Work/2024 (MESSAGES UIDVALIDITY)\r\ne LSUB \"\" \"*\"\r\nf CREATE FromDovecot\r\ng APPEND Sent (\\Flagged $FromDovecot) {{{}+}}\r\n",
        four.len()
    )
    .into_bytes();
    script.extend_from_slice(four);
    script.extend_from_slice(b"\r\nh LOGOUT\r\n");
    let mut child = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(dovecot)
        .arg("-c")
        .arg(&conf)
        .env("USER", "alice")
        .env("HOME", &dv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dovecot imap");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&script)
        .expect("commands");
    let out = child.wait_with_output().expect("dovecot");
    let reply = text(&out);
    // `3 V<uidvalidity> N<next> G<guid>`: the header of the folder's list, as the role wrote it.
    let work_list = std::fs::read_to_string(host.mail().join("alice/.Work.2024/dovecot-uidlist"))
        .expect("Work/2024's uidlist");
    let work_validity = work_list
        .split_whitespace()
        .find_map(|w| w.strip_prefix('V'))
        .expect("a UIDVALIDITY in Work/2024's uidlist")
        .to_string();
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    for want in [
        "* LIST (\\Noselect \\HasChildren) \"/\" Work".to_string(),
        "* LIST (\\HasNoChildren) \"/\" Work/2024".to_string(),
        "* LIST (\\HasNoChildren) \"/\" Archive".to_string(),
        format!("* OK [UIDVALIDITY {validity}]"),
        "* OK [UIDNEXT 3]".to_string(),
        "* 1 FETCH (UID 1 FLAGS (\\Seen $Label1))".to_string(),
        "* 2 FETCH (UID 2 FLAGS (\\Flagged))".to_string(),
        // Each folder has its own UIDVALIDITY (created a second later, it differs).
        format!("* STATUS Work/2024 (MESSAGES 1 UIDVALIDITY {work_validity})"),
        "* LSUB () \"/\" Sent".to_string(),
        format!("g OK [APPENDUID {validity} 3]"),
    ] {
        assert!(
            reply.contains(&want),
            "Dovecot does not say {want:?}:\n{reply}\n{logged}"
        );
    }
    // Back: the volume Dovecot wrote, opened by the mail role.
    let back = MailHost::start(|mail| {
        std::fs::create_dir_all(mail).expect("mkdir");
        let out = Command::new("cp")
            .args(["-a"])
            .arg(&dv)
            .arg(mail.join("alice"))
            .output()
            .expect("cp");
        assert!(out.status.success(), "{}", text(&out));
        let out = Command::new("chown")
            .args(["-R", "root:root"])
            .arg(mail.join("alice"))
            .output()
            .expect("chown");
        assert!(out.status.success(), "{}", text(&out));
    });
    let out = python(READ_BACK, &[&back.imap.to_string(), ALICE_PASSWORD]);
    assert!(out.contains("read back ok"), "{out}");
}
