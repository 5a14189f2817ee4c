//! The chat role (an IRC server) with real IRC clients: the Python `irc` library, irssi and
//! weechat, each driven headless and scripted. Every scenario runs twice: against ngircd
//! (Debian's reference IRC server, started here as an unprivileged process on a loopback port
//! with a generated configuration) and against the agent (`run --config` with a `chat` role), so
//! a client driver is proven against a known-good server and a failure against the agent is
//! the agent's. What ngircd cannot do (SASL and `PASS` accounts, and the TLS port, which these
//! tests do not configure for it) runs against the agent only; the IRCv3 capability test expects
//! of each server what it offers (ngircd 26: multi-prefix only).
//!
//! Every check is on delivery: a line one client sends is seen by another with its text and its
//! sender, never just "the process exited 0".
//!
//! Debian packages these tests need: `ngircd`, `python3-irc` (for `/usr/bin/python3`, the
//! interpreter Debian's package installs into), `irssi`, `weechat-headless`, `util-linux`
//! (`script` gives irssi a terminal), `coreutils` (`timeout`), `openssl` (the TLS test's
//! certificate).

use crate::support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::{Proc, agent_bin, free_port};

/// The interpreter Debian's `python3-irc` belongs to (a `python3` earlier on PATH, such as a
/// pyenv one, does not see it).
const PYTHON: &str = "/usr/bin/python3";
const CHANNEL: &str = "#office";
/// How long one client scenario may take before it counts as failed.
const LIMIT: Duration = Duration::from_secs(40);

const ALICE_PASSWORD: &str = "alice-s3cret";
const BOB_PASSWORD: &str = "bob pass";

/// `alice` and `bob`. Hashed once: Argon2 is slow in debug builds.
fn users_file_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let hash = support::password_hash;
        format!(
            "alice:{}\nbob:{}\n",
            hash(ALICE_PASSWORD),
            hash(BOB_PASSWORD)
        )
    })
}

/// Fails with the package to install when Debian's python3-irc is missing.
fn need_python_irc() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import irc.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{PYTHON} cannot import irc.client: apt-get install python3-irc (scripts/install-deps.sh does)"
    );
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Debian's ngircd: the reference.
    Ngircd,
    /// The agent's chat role.
    Agent,
}

/// Accounts and login rules of an agent's chat role.
#[derive(Clone, Copy, Default)]
struct Login {
    /// Write the users file (alice, bob) and name it in the config.
    users: bool,
    require_login: bool,
    allow_plaintext_auth: bool,
    /// An implicit-TLS port with a self-signed certificate from openssl.
    tls: bool,
}

/// A running IRC server on a loopback port; killed when dropped (the process first: fields
/// drop in order).
struct Server {
    proc: Proc,
    kind: Kind,
    port: u16,
    /// The agent's implicit-TLS port, when [`Login::tls`].
    tls_port: Option<u16>,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(kind: Kind) -> Server {
        match kind {
            Kind::Ngircd => Server::ngircd(),
            Kind::Agent => Server::agent(Login::default()),
        }
    }

    /// ngircd in the foreground (`-n`) with a configuration of its own: no DNS, ident or PAM,
    /// no per-address connection limit. Run as root it drops to `nobody` by itself (after
    /// reading the configuration).
    fn ngircd() -> Server {
        support::installed("ngircd", "ngircd");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let conf = dir.path().join("ngircd.conf");
        std::fs::write(
            &conf,
            format!(
                "[Global]\n\tName = irc.ngircd.test\n\tInfo = reference server\n\tNetwork = RefNet\n\tListen = 127.0.0.1\n\tPorts = {port}\n\tMotdPhrase = reference server for hostrole's chat tests\n\tAdminInfo1 = tests\n\tAdminInfo2 = tests\n\tAdminEMail = tests@localhost\n[Limits]\n\tMaxConnectionsIP = 0\n\tMaxNickLength = 30\n\tPingTimeout = 120\n\tPongTimeout = 20\n[Options]\n\tDNS = no\n\tIdent = no\n\tPAM = no\n"
            ),
        )
        .expect("ngircd.conf");
        let proc = Proc::spawn(
            "ngircd",
            Command::new("ngircd").arg("-n").arg("-f").arg(&conf),
            dir.path(),
        );
        let mut server = Server {
            proc,
            kind: Kind::Ngircd,
            port,
            tls_port: None,
            dir,
        };
        server.wait_listening();
        server
    }

    /// The agent with only a chat role, from a JSON configuration.
    fn agent(login: Login) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, admin) = (free_port(), free_port());
        let mut extra = String::new();
        if login.users {
            let users = dir.path().join("users");
            std::fs::write(&users, users_file_text()).expect("users file");
            extra.push_str(&format!(",\"usersFile\":\"{}\"", users.display()));
        }
        if login.require_login {
            extra.push_str(",\"requireLogin\":true");
        }
        if login.allow_plaintext_auth {
            extra.push_str(",\"allowPlaintextAuth\":true");
        }
        let mut tls_port = None;
        if login.tls {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let out = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=irc.home.example", "-addext"])
                .args([
                    "subjectAltName=DNS:irc.home.example,IP:127.0.0.1",
                    "-keyout",
                ])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .expect("openssl is installed (Debian package openssl)");
            assert!(out.status.success(), "{}", support::text(&out));
            let port = free_port();
            tls_port = Some(port);
            extra.push_str(&format!(
                ",\"tlsPort\":{port},\"tls\":{{\"cert\":\"{}\",\"key\":\"{}\"}}",
                cert.display(),
                key.display()
            ));
        }
        let config = dir.path().join("agent.json");
        std::fs::write(
            &config,
            format!(
                "{{\"hostRole\":\"chattest\",\"bind\":\"127.0.0.1\",\"adminPort\":{admin},\"shutdownGraceSeconds\":2,\"chat\":{{\"serverName\":\"irc.home.example\",\"network\":\"HomeNet\",\"port\":{port},\"maxConnections\":32,\"maxChannels\":16,\"maxChannelsPerClient\":8,\"nickLength\":30,\"motd\":\"welcome to the office\"{extra}}}}}"
            ),
        )
        .expect("config");
        let proc = Proc::spawn(
            "agent",
            Command::new(agent_bin())
                .args(["run", "--config"])
                .arg(&config),
            dir.path(),
        );
        let mut server = Server {
            proc,
            kind: Kind::Agent,
            port,
            tls_port,
            dir,
        };
        server.wait_listening();
        server
    }

    /// Polls the IRC port until it accepts a connection; fails, with the server's log, if the
    /// process exits first or nothing listens within 20 s.
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            self.proc.assert_running();
            let up = |port: u16| TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.port) && self.tls_port.is_none_or(up) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{:?}: nothing listens on the IRC port {} after 20 s:\n{}",
                self.kind,
                self.port,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn logs(&self) -> String {
        format!("{}{}", self.proc.stdout(), self.proc.stderr())
    }

    /// A fresh directory for one client's files, inside the server's.
    fn client_dir(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("client dir");
        dir
    }

    /// The server's log, to add to a failure.
    fn context(&self) -> String {
        format!("--- {:?} server log ---\n{}", self.kind, self.logs())
    }
}

/// A Python script written into `dir` (Debian's interpreter runs it).
fn script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("script");
    path
}

/// Events of an `irc.client` connection printed one a line (see [`LISTENER`]).
const LISTENER: &str = r#"
import sys, time, irc.client
host, port, nick, chan, reply, limit, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]), sys.argv[7]
def log(*a): print(*a, flush=True)
reactor = (getattr(irc.client, "Reactor", None) or irc.client.IRC)()
conn = reactor.server().connect(host, port, nick, password=password or None)
def on_all_raw_messages(c, e): log("<<", e.arguments[0])
def on_welcome(c, e): log("WELCOME", e.target); c.join(chan)
def on_join(c, e):
    log("JOIN", e.source.nick, e.target)
    if e.source.nick != c.get_nickname() and reply:
        c.privmsg(chan, reply); log("SENT", reply)
def on_pubmsg(c, e): log("PUBMSG", e.source.nick, e.target, e.arguments[0])
def on_privmsg(c, e): log("PRIVMSG", e.source.nick, e.target, e.arguments[0])
def on_quit(c, e): log("QUIT", e.source.nick, *e.arguments)
def on_part(c, e): log("PART", e.source.nick, e.target)
def on_error(c, e): log("ERROR", *e.arguments)
def on_disconnect(c, e): log("DISCONNECT", *e.arguments); sys.exit(0)
for name, f in list(globals().items()):
    if name.startswith("on_"): reactor.add_global_handler(name[3:], f)
deadline = time.time() + limit
while time.time() < deadline:
    reactor.process_once(0.2)
log("TIMEOUT")
"#;

/// A python3-irc client in `#office` that prints what it sees (`WELCOME nick`, `JOIN nick
/// #chan`, `PUBMSG nick #chan text`, `<< raw line` …) and, when `reply` is not empty, says it
/// in the channel whenever someone else joins.
struct Listener {
    proc: Proc,
    nick: String,
}

impl Listener {
    fn start(server: &Server, nick: &str, reply: &str, password: &str) -> Listener {
        need_python_irc();
        let dir = server.client_dir(nick);
        let path = script(&dir, "listener.py", LISTENER);
        let proc = Proc::spawn(
            nick,
            Command::new(PYTHON).arg(path).args([
                "127.0.0.1",
                &server.port.to_string(),
                nick,
                CHANNEL,
                reply,
                "60",
                password,
            ]),
            &dir,
        );
        let mut listener = Listener {
            proc,
            nick: nick.to_string(),
        };
        listener.wait_line(server, &format!("JOIN {nick} {CHANNEL}"));
        listener
    }

    fn output(&self) -> String {
        format!("{}{}", self.proc.stdout(), self.proc.stderr())
    }

    fn has_line(&self, line: &str) -> bool {
        self.proc.stdout().lines().any(|l| l == line)
    }

    /// Waits for an event line starting with `prefix`.
    fn wait_prefix(&mut self, server: &Server, prefix: &str) {
        let out = || self.output();
        wait_or_fail(
            &format!("the listener {} to see `{prefix}…`", self.nick),
            || self.proc.stdout().lines().any(|l| l.starts_with(prefix)),
            || format!("{}\n{}", out(), server.context()),
        );
    }

    /// Waits for the exact event line `line`; fails with the listener's and server's output.
    fn wait_line(&mut self, server: &Server, line: &str) {
        let deadline = Instant::now() + LIMIT;
        while !self.has_line(line) {
            assert!(
                Instant::now() < deadline,
                "{:?}: the python3-irc listener {} did not see `{line}` within {LIMIT:?}:\n{}\n{}",
                server.kind,
                self.nick,
                self.output(),
                server.context()
            );
            assert!(
                self.proc.running(),
                "{:?}: the python3-irc listener {} ended before `{line}`:\n{}\n{}",
                server.kind,
                self.nick,
                self.output(),
                server.context()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Polls `check` until it holds or `LIMIT` passes; `what` and `context()` make the failure.
fn wait_or_fail(what: &str, mut check: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + LIMIT;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {LIMIT:?} waiting for {what}:\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// --- 1. The Python irc library: two connections, a topic, a message -----------------------

/// alice joins and sets the topic; bob joins once the topic is set (and sees it as 332, and
/// alice as an operator in NAMES); alice then speaks and bob must receive the line from her.
const TWO_CONNECTIONS: &str = r#"
import sys, time, irc.client
host, port, chan = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pa, pb = (sys.argv[4] or None), (sys.argv[5] or None)
TOPIC, TEXT = "quarterly numbers, v2", "hello bob: the numbers are in"
def log(*a): print(*a, flush=True)
reactor = (getattr(irc.client, "Reactor", None) or irc.client.IRC)()
a = reactor.server().connect(host, port, "alice", password=pa)
b = reactor.server().connect(host, port, "bob", password=pb)
name = {a: "alice", b: "bob"}
state = {"b_welcome": False, "topic": False, "done": False}
def maybe_join_b():
    if state["b_welcome"] and state["topic"]:
        state["topic"] = False
        b.join(chan)
def on_all_raw_messages(c, e): log("<<", name[c], e.arguments[0])
def on_welcome(c, e):
    log("WELCOME", name[c], e.target)
    if c is a: a.join(chan)
    else:
        state["b_welcome"] = True; maybe_join_b()
def on_join(c, e):
    log("JOIN", name[c], e.source.nick, e.target)
    if c is a and e.source.nick == "alice": a.topic(chan, TOPIC)
    if c is a and e.source.nick == "bob": a.privmsg(chan, TEXT)
def on_topic(c, e):
    log("TOPIC", name[c], e.source.nick, e.target, e.arguments[0])
    if c is a:
        state["topic"] = True; maybe_join_b()
def on_currenttopic(c, e): log("332", name[c], *e.arguments)
def on_namreply(c, e): log("353", name[c], e.arguments[-1])
def on_pubmsg(c, e):
    log("PUBMSG", name[c], e.source.nick, e.target, e.arguments[0])
    if c is b: state["done"] = True
def on_error(c, e): log("ERROR", name[c], *e.arguments)
def on_disconnect(c, e): log("DISCONNECT", name[c], *e.arguments)
for n, f in list(globals().items()):
    if n.startswith("on_"): reactor.add_global_handler(n[3:], f)
deadline = time.time() + 30
while time.time() < deadline and not state["done"]:
    reactor.process_once(0.2)
if not state["done"]:
    log("TIMEOUT"); sys.exit(1)
# alice must not get her own line back (no echo-message requested).
end = time.time() + 0.5
while time.time() < end:
    reactor.process_once(0.1)
a.quit("bye"); b.quit("bye")
end = time.time() + 2
while time.time() < end and any(c.is_connected() for c in (a, b)):
    reactor.process_once(0.1)
log("DONE")
"#;

fn run_two_connections(server: &Server, passwords: (&str, &str)) -> String {
    need_python_irc();
    let dir = server.client_dir("two");
    let path = script(&dir, "two.py", TWO_CONNECTIONS);
    let out = Command::new("timeout")
        .arg("60")
        .arg(PYTHON)
        .arg(path)
        .args([
            "127.0.0.1",
            &server.port.to_string(),
            CHANNEL,
            passwords.0,
            passwords.1,
        ])
        .output()
        .expect("timeout (coreutils)");
    let all = support::text(&out);
    assert!(
        out.status.success() && all.lines().any(|l| l == "DONE"),
        "{:?}: python3-irc scenario failed ({}):\n{all}\n{}",
        server.kind,
        out.status,
        server.context()
    );
    all
}

fn check_two_connections(server: &Server, all: &str) {
    let has = |line: &str| all.lines().any(|l| l == line);
    for line in [
        "WELCOME alice alice",
        "WELCOME bob bob",
        "TOPIC alice alice #office quarterly numbers, v2",
        "332 bob #office quarterly numbers, v2",
        "PUBMSG bob alice #office hello bob: the numbers are in",
    ] {
        assert!(
            has(line),
            "{:?}: no `{line}` in:\n{all}\n{}",
            server.kind,
            server.context()
        );
    }
    let names = all
        .lines()
        .filter_map(|l| l.strip_prefix("353 bob "))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>();
    assert!(
        names.contains(&"@alice") && names.contains(&"bob"),
        "{:?}: bob's NAMES should list @alice and bob: {names:?}\n{all}",
        server.kind
    );
    assert!(
        !all.lines().any(|l| l.starts_with("PUBMSG alice ")),
        "{:?}: alice got her own line back without echo-message:\n{all}",
        server.kind
    );
}

fn python_irc_two_connections(kind: Kind) {
    let server = Server::start(kind);
    let all = run_two_connections(&server, ("", ""));
    check_two_connections(&server, &all);
}

#[test]
fn python_irc_two_connections_topic_and_message_ngircd() {
    python_irc_two_connections(Kind::Ngircd);
}

#[test]
fn python_irc_two_connections_topic_and_message_agent() {
    python_irc_two_connections(Kind::Agent);
}

// --- 1b. Logins (agent only: ngircd has no SASL nor accounts) ------------------------------

/// SASL PLAIN by hand over irc.client: the connection factory sends `CAP LS 302` before the
/// library's NICK/USER, so registration waits for `CAP END`. Prints the raw lines and
/// `LOGGEDIN`, `SASLOK`, `SASLFAIL`, `WELCOME nick` as they come.
const SASL: &str = r#"
import sys, time, base64, irc.client, irc.connection
host, port, nick, account, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
tls = len(sys.argv) > 6 and sys.argv[6] == "tls"
def log(*a): print(*a, flush=True)
def wrapper(sock):
    if not tls: return sock
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(sock, server_hostname="irc.home.example")
def factory(address):
    sock = irc.connection.Factory(wrapper=wrapper)(address)
    sock.send(b"CAP LS 302\r\n")
    return sock
reactor = (getattr(irc.client, "Reactor", None) or irc.client.IRC)()
c = reactor.server().connect(host, port, nick, connect_factory=factory)
state = {"end": False}
def on_all_raw_messages(conn, e):
    line = e.arguments[0]
    log("<<", line)
    words = line.split(" ")
    if words[0].startswith("@"): words = words[1:]
    if words[0].startswith(":"): words = words[1:]
    cmd, rest = words[0], words[1:]
    if cmd == "CAP" and len(rest) >= 2 and rest[1] == "LS":
        more = len(rest) > 2 and rest[2] == "*"
        caps = " ".join(rest[3:] if more else rest[2:]).lstrip(":").split()
        state.setdefault("caps", []).extend(caps)
        if more: return
        caps = state["caps"]
        log("CAPS", *caps)
        if any(cap == "sasl" or cap.startswith("sasl=") for cap in caps):
            conn.send_raw("CAP REQ :sasl")
        else:
            log("NOSASL"); conn.send_raw("CAP END")
    elif cmd == "CAP" and len(rest) >= 2 and rest[1] == "ACK":
        conn.send_raw("AUTHENTICATE PLAIN")
    elif cmd == "CAP" and len(rest) >= 2 and rest[1] == "NAK":
        log("NAK"); conn.send_raw("CAP END")
    elif cmd == "AUTHENTICATE" and rest == ["+"]:
        token = base64.b64encode(("\0" + account + "\0" + password).encode()).decode()
        conn.send_raw("AUTHENTICATE " + token)
    elif cmd == "900": log("LOGGEDIN", *rest[:3])
    elif cmd == "903": log("SASLOK"); conn.send_raw("CAP END")
    elif cmd in ("904", "905", "906"): log("SASLFAIL", cmd); conn.send_raw("CAP END")
    elif cmd == "001":
        log("WELCOME", rest[0]); conn.quit("bye")
def on_disconnect(conn, e): log("DISCONNECT"); state["end"] = True
reactor.add_global_handler("all_raw_messages", on_all_raw_messages)
reactor.add_global_handler("disconnect", on_disconnect)
deadline = time.time() + 15
while time.time() < deadline and not state["end"]:
    reactor.process_once(0.2)
log("END")
"#;

fn sasl(server: &Server, nick: &str, account: &str, password: &str) -> String {
    sasl_on(server, server.port, false, nick, account, password)
}

/// [`SASL`] on `port`, over TLS (certificate not checked) when `tls`.
fn sasl_on(
    server: &Server,
    port: u16,
    tls: bool,
    nick: &str,
    account: &str,
    password: &str,
) -> String {
    need_python_irc();
    let dir = server.client_dir(&format!("sasl-{nick}"));
    let path = script(&dir, "sasl.py", SASL);
    let out = Command::new("timeout")
        .arg("40")
        .arg(PYTHON)
        .arg(path)
        .args([
            "127.0.0.1",
            &port.to_string(),
            nick,
            account,
            password,
            if tls { "tls" } else { "plain" },
        ])
        .output()
        .expect("timeout (coreutils)");
    support::text(&out)
}

#[test]
fn python_irc_sasl_plain_and_pass_logins_agent() {
    let server = Server::agent(Login {
        users: true,
        require_login: true,
        allow_plaintext_auth: true,
        tls: false,
    });
    let ctx = |all: &str| format!("{all}\n{}", server.context());

    let ok = sasl(&server, "alice", "alice", ALICE_PASSWORD);
    assert!(
        ok.lines().any(|l| l == "CAPS" || l.starts_with("CAPS "))
            && !ok.lines().any(|l| l == "NOSASL"),
        "the server should offer sasl in CAP LS (allowPlaintextAuth):\n{}",
        ctx(&ok)
    );
    for line in ["SASLOK", "WELCOME alice"] {
        assert!(
            ok.lines().any(|l| l == line),
            "SASL PLAIN as alice: no `{line}`:\n{}",
            ctx(&ok)
        );
    }
    assert!(
        ok.lines().any(|l| l.starts_with("LOGGEDIN alice ")),
        "no 900 RPL_LOGGEDIN naming the nick:\n{}",
        ctx(&ok)
    );

    let bad = sasl(&server, "alice", "alice", "wrong password");
    assert!(
        bad.lines().any(|l| l.starts_with("SASLFAIL 904")),
        "a wrong password should get 904 ERR_SASLFAIL:\n{}",
        ctx(&bad)
    );
    assert!(
        !bad.lines().any(|l| l.starts_with("WELCOME")),
        "requireLogin: a failed login must not register:\n{}",
        ctx(&bad)
    );

    // bob's password has a space: SASL carries it in base64.
    let spaced = sasl(&server, "bob", "bob", BOB_PASSWORD);
    assert!(
        spaced.lines().any(|l| l == "WELCOME bob"),
        "SASL PLAIN as bob (a password with a space):\n{}",
        ctx(&spaced)
    );

    // `PASS account:password` from the library's own registration, both users at once: the
    // same topic and message scenario as without accounts. The library sends `PASS ` and the
    // text as is, so bob's (with a space) goes as a trailing parameter, `PASS :bob:bob pass`;
    // alice's as a middle one.
    let all = run_two_connections(
        &server,
        (
            &format!("alice:{ALICE_PASSWORD}"),
            &format!(":bob:{BOB_PASSWORD}"),
        ),
    );
    check_two_connections(&server, &all);
}

/// Without `allowPlaintextAuth`, passwords go over the implicit-TLS port only: there SASL PLAIN
/// registers alice; on the plain port the same login must not register her.
#[test]
fn python_irc_sasl_plain_over_tls_only_agent() {
    let server = Server::agent(Login {
        users: true,
        require_login: true,
        allow_plaintext_auth: false,
        tls: true,
    });
    let ctx = |all: &str| format!("{all}\n{}", server.context());
    let tls_port = server.tls_port.expect("a TLS port");

    let ok = sasl_on(&server, tls_port, true, "alice", "alice", ALICE_PASSWORD);
    for line in ["SASLOK", "WELCOME alice"] {
        assert!(
            ok.lines().any(|l| l == line),
            "SASL PLAIN over TLS as alice: no `{line}`:\n{}",
            ctx(&ok)
        );
    }
    let offers_sasl = |l: &str| {
        l.starts_with("CAPS ") && l.split(' ').any(|c| c == "sasl" || c.starts_with("sasl="))
    };
    assert!(
        ok.lines().any(offers_sasl),
        "the TLS port should offer sasl:\n{}",
        ctx(&ok)
    );

    let plain = sasl_on(
        &server,
        server.port,
        false,
        "alice",
        "alice",
        ALICE_PASSWORD,
    );
    assert!(
        !plain
            .lines()
            .any(|l| l.starts_with("WELCOME") || l == "SASLOK"),
        "a login in the clear must not succeed without allowPlaintextAuth:\n{}",
        ctx(&plain)
    );
    assert!(
        plain
            .lines()
            .any(|l| l == "NOSASL" || l.starts_with("SASLFAIL")),
        "the plain port should not offer sasl (or refuse it) without allowPlaintextAuth:\n{}",
        ctx(&plain)
    );
}

// --- 1c. IRCv3 capabilities ---------------------------------------------------------------

/// alice negotiates (`CAP LS 302` before the library's NICK/USER) whichever of multi-prefix,
/// echo-message, server-time and message-tags the server offers; bob is a plain client. Both
/// join; alice speaks. Raw lines only: this old irc.client does not parse message tags.
/// Prints `OFFERED caps…`, `ACK caps…`, `NAK caps…`, `NAMES who names`, `ECHO tags text` (alice's
/// own line back), `GOT tags text` (bob's copy), then `DONE`.
const CAPS: &str = r#"
import sys, time, irc.client, irc.connection
host, port, chan = sys.argv[1], int(sys.argv[2]), sys.argv[3]
WANT = ["multi-prefix", "echo-message", "server-time", "message-tags"]
TEXT = "capabilities: check"
def log(*a): print(*a, flush=True)
def factory(address):
    sock = irc.connection.Factory()(address)
    sock.send(b"CAP LS 302\r\n")
    return sock
reactor = (getattr(irc.client, "Reactor", None) or irc.client.IRC)()
a = reactor.server().connect(host, port, "alice", connect_factory=factory)
b = reactor.server().connect(host, port, "bob")
name = {a: "alice", b: "bob"}
st = {"offered": [], "a_in": False, "b_welcome": False, "b_joined": False, "done": False}
def parse(line):
    tags = "-"
    if line.startswith("@"):
        tags, line = line.split(" ", 1)
    prefix = ""
    if line.startswith(":"):
        prefix, line = line.split(" ", 1)
        prefix = prefix[1:]
    trailing = None
    if " :" in line:
        line, trailing = line.split(" :", 1)
    words = line.split()
    if trailing is not None: words.append(trailing)
    return tags, prefix.split("!")[0], words[0], words[1:]
def maybe_join_b():
    if st["a_in"] and st["b_welcome"] and not st["b_joined"]:
        st["b_joined"] = True; b.join(chan)
def on_raw(c, e):
    line = e.arguments[0]
    log("<<", name[c], line)
    tags, nick, cmd, params = parse(line)
    if cmd == "353": log("NAMES", name[c], params[-1])
    if c is a:
        if cmd == "CAP" and params[1] == "LS":
            more = len(params) > 3 and params[2] == "*"
            st["offered"] += params[-1].split()
            if more: return
            offered = [cap.split("=")[0] for cap in st["offered"]]
            log("OFFERED", *offered)
            req = [cap for cap in WANT if cap in offered]
            if req: a.send_raw("CAP REQ :" + " ".join(req))
            else: a.send_raw("CAP END")
        elif cmd == "CAP" and params[1] in ("ACK", "NAK"):
            log(params[1], *params[-1].split()); a.send_raw("CAP END")
        elif cmd == "JOIN" and nick == "alice":
            st["a_in"] = True; maybe_join_b()
        elif cmd == "JOIN" and nick == "bob": a.privmsg(chan, TEXT)
        elif cmd == "PRIVMSG" and nick == "alice": log("ECHO", tags, params[-1])
        elif cmd == "001": a.join(chan)
    else:
        if cmd == "001":
            st["b_welcome"] = True; maybe_join_b()
        elif cmd == "PRIVMSG" and nick == "alice":
            log("GOT", tags, params[-1]); st["done"] = True
reactor.add_global_handler("all_raw_messages", on_raw)
deadline = time.time() + 30
while time.time() < deadline and not st["done"]:
    reactor.process_once(0.2)
if not st["done"]:
    log("TIMEOUT"); sys.exit(1)
end = time.time() + 1
while time.time() < end:
    reactor.process_once(0.1)
log("DONE")
"#;

fn capabilities(kind: Kind) {
    need_python_irc();
    let server = Server::start(kind);
    let dir = server.client_dir("caps");
    let path = script(&dir, "caps.py", CAPS);
    let out = Command::new("timeout")
        .arg("60")
        .arg(PYTHON)
        .arg(path)
        .args(["127.0.0.1", &server.port.to_string(), CHANNEL])
        .output()
        .expect("timeout (coreutils)");
    let all = support::text(&out);
    let fail = |what: &str| -> String { format!("{kind:?}: {what}:\n{all}\n{}", server.context()) };
    assert!(
        out.status.success() && all.lines().any(|l| l == "DONE"),
        "{}",
        fail(&format!(
            "the capabilities scenario failed ({})",
            out.status
        ))
    );
    let words = |prefix: &str| -> Vec<String> {
        all.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .flat_map(|l| l.split_whitespace().map(str::to_string))
            .collect()
    };
    let offered = words("OFFERED ");
    let acked = words("ACK ");
    let expected: &[&str] = match kind {
        // ngircd 26 implements multi-prefix only.
        Kind::Ngircd => &["multi-prefix"],
        Kind::Agent => &[
            "multi-prefix",
            "echo-message",
            "server-time",
            "message-tags",
        ],
    };
    for cap in expected {
        assert!(
            offered.iter().any(|c| c == cap),
            "{}",
            fail(&format!("CAP LS does not offer {cap}"))
        );
        assert!(
            acked.iter().any(|c| c == cap),
            "{}",
            fail(&format!("CAP REQ of {cap} was not acknowledged"))
        );
    }
    assert!(
        !all.lines().any(|l| l.starts_with("NAK")),
        "{}",
        fail("a request of offered capabilities was refused")
    );
    // bob (no capabilities) gets the line untagged, from alice.
    assert!(
        all.lines().any(|l| l == "GOT - capabilities: check"),
        "{}",
        fail("bob did not receive alice's line untagged")
    );
    let echoes: Vec<&str> = all.lines().filter(|l| l.starts_with("ECHO ")).collect();
    if acked.iter().any(|c| c == "echo-message") {
        assert_eq!(
            echoes.len(),
            1,
            "{}",
            fail("echo-message: one echo of alice's line")
        );
        let echo = echoes[0];
        assert!(
            echo.ends_with(" capabilities: check"),
            "{}",
            fail("the echo's text")
        );
        if acked.iter().any(|c| c == "server-time") {
            let tags = echo.split(' ').nth(1).unwrap_or_default();
            let time = tags
                .trim_start_matches('@')
                .split(';')
                .find_map(|t| t.strip_prefix("time="))
                .unwrap_or_else(|| panic!("{}", fail("server-time: no time tag on the echo")));
            // 2026-12-02T10:30:57.330Z
            let b = time.as_bytes();
            assert!(
                b.len() == 24 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && b[23] == b'Z',
                "{}",
                fail(&format!(
                    "server-time: `{time}` is not YYYY-MM-DDThh:mm:ss.sssZ"
                ))
            );
        }
    } else {
        assert!(
            echoes.is_empty(),
            "{}",
            fail("an echo without echo-message")
        );
    }
    // multi-prefix acknowledged: alice is listed as an operator when she joins.
    assert!(
        all.lines().any(|l| l == "NAMES alice @alice"),
        "{}",
        fail("alice's NAMES on joining should be `@alice`")
    );
}

#[test]
fn python_irc_capabilities_ngircd() {
    capabilities(Kind::Ngircd);
}

#[test]
fn python_irc_capabilities_agent() {
    capabilities(Kind::Agent);
}

// --- 2. irssi ---------------------------------------------------------------------------------

/// irssi, headless under `script` (it needs a terminal), from a config in its own home: it
/// connects, autojoins `#office`, says `text` once joined (the channel's autosendcmd) and quits.
fn irssi(server: &Server, nick: &str, text: &str) -> Proc {
    support::installed("irssi", "irssi");
    support::installed("script", "util-linux");
    let home = server.client_dir(&format!("irssi-{nick}"));
    let raw = home.join("raw.log");
    std::fs::write(
        home.join("config"),
        format!(
            r#"servers = (
  {{ address = "127.0.0.1"; chatnet = "t"; port = "{port}"; use_tls = "no"; tls_verify = "no"; autoconnect = "yes"; }}
);
chatnets = {{ t = {{ type = "IRC"; autosendcmd = "/rawlog open {raw}"; }}; }};
channels = (
  {{ name = "{CHANNEL}"; chatnet = "t"; autojoin = "yes"; autosendcmd = "/msg {CHANNEL} {text};/quit irssi done"; }}
);
settings = {{
  core = {{ real_name = "irssi test"; user_name = "{nick}"; nick = "{nick}"; }};
  "irc/core" = {{ cmd_queue_speed = "0"; cmds_max_at_once = "100"; }};
}};
"#,
            port = server.port,
            raw = raw.display(),
        ),
    )
    .expect("irssi config");
    let command = format!("TERM=xterm irssi --home={}", home.display());
    Proc::spawn(
        "irssi",
        Command::new("script").args(["-qfc", &command, "/dev/null"]),
        &home,
    )
}

/// irssi's raw protocol log (`/rawlog open`), for a failure message.
fn irssi_rawlog(server: &Server, nick: &str) -> String {
    std::fs::read_to_string(server.client_dir(&format!("irssi-{nick}")).join("raw.log"))
        .unwrap_or_else(|e| format!("(no raw log: {e})"))
}

fn irssi_says_a_line(kind: Kind) {
    let server = Server::start(kind);
    let mut listener = Listener::start(&server, "listener", "", "");
    let text = "hello from irssi, with UTF-8: café";
    let mut irssi = irssi(&server, "irssinick", text);
    let line = format!("PUBMSG irssinick {CHANNEL} {text}");
    let deadline = Instant::now() + LIMIT;
    while !listener.has_line(&line) {
        assert!(
            Instant::now() < deadline,
            "{kind:?}: the listener did not receive irssi's line within {LIMIT:?}:\n{}\n--- irssi raw log ---\n{}\n{}",
            listener.output(),
            irssi_rawlog(&server, "irssinick"),
            server.context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ngircd quotes the reason (`"irssi done"`); any QUIT from irssi will do.
    listener.wait_prefix(&server, "QUIT irssinick ");
    let status = irssi.wait_exit(Duration::from_secs(20));
    assert!(
        status.success(),
        "{kind:?}: irssi did not quit cleanly ({status}):\n{}",
        irssi_rawlog(&server, "irssinick")
    );
}

#[test]
fn irssi_says_a_line_a_listener_receives_ngircd() {
    irssi_says_a_line(Kind::Ngircd);
}

#[test]
fn irssi_says_a_line_a_listener_receives_agent() {
    irssi_says_a_line(Kind::Agent);
}

// --- 3. weechat --------------------------------------------------------------------------------

/// weechat-headless (foreground, no `--daemon`) with its own `--dir`: connects, joins
/// `#office`, says `text` (the server's `command` option, run after registration) and logs the
/// channel to `<dir>/logs/irc.t.#office.weechatlog` with no flush delay.
struct Weechat {
    proc: Proc,
    dir: PathBuf,
}

impl Weechat {
    fn start(server: &Server, nick: &str, text: &str) -> Weechat {
        support::installed("weechat-headless", "weechat-headless");
        let dir = server.client_dir(&format!("weechat-{nick}"));
        // `-r` splits at `;`; `\;` keeps one inside the server's command option, which
        // weechat splits again when it runs it.
        let commands = format!(
            "/set logger.file.flush_delay 0;/set irc.look.temporary_servers on;/server add t 127.0.0.1/{port} -nicks={nick} -username={nick};/set irc.server.t.command \"/join {CHANNEL}\\;/msg {CHANNEL} {text}\";/connect t",
            port = server.port
        );
        let proc = Proc::spawn(
            "weechat",
            Command::new("weechat-headless")
                .arg("--dir")
                .arg(&dir)
                .args(["-r", &commands]),
            &dir,
        );
        Weechat { proc, dir }
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("logs").join(name)).unwrap_or_default()
    }

    fn channel_log(&self) -> String {
        self.file(&format!("irc.t.{CHANNEL}.weechatlog"))
    }

    /// Whether the channel log has a message from `nick` saying `text` (`time TAB nick TAB
    /// text`; the nick may carry a mode prefix such as `@`).
    fn saw(&self, nick: &str, text: &str) -> bool {
        self.channel_log().lines().any(|l| {
            let mut f = l.splitn(3, '\t');
            let (_, who, what) = (f.next(), f.next(), f.next());
            who.is_some_and(|w| w.trim_start_matches(['@', '+', '%', '~', '&']) == nick)
                && what == Some(text)
        })
    }

    fn output(&self) -> String {
        format!(
            "--- weechat server buffer ---\n{}\n--- weechat #office ---\n{}\n--- weechat core ---\n{}",
            self.file("irc.server.t.weechatlog"),
            self.channel_log(),
            self.file("core.weechat.weechatlog")
        )
    }
}

fn weechat_sends_and_receives(kind: Kind) {
    let server = Server::start(kind);
    let reply = "hello weechat, from python";
    let mut listener = Listener::start(&server, "listener", reply, "");
    let text = "hello from weechat";
    let mut weechat = Weechat::start(&server, "wee", text);
    let line = format!("PUBMSG wee {CHANNEL} {text}");
    let deadline = Instant::now() + LIMIT;
    while !listener.has_line(&line) {
        assert!(
            Instant::now() < deadline,
            "{kind:?}: the listener did not receive weechat's line within {LIMIT:?}:\n{}\n{}\n{}",
            listener.output(),
            weechat.output(),
            server.context()
        );
        weechat.proc.assert_running();
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_or_fail(
        "weechat to log the listener's line in #office",
        || weechat.saw("listener", reply),
        || {
            format!(
                "{}\n{}\n{}",
                weechat.output(),
                listener.output(),
                server.context()
            )
        },
    );
    // SIGTERM: weechat quits, sending QUIT, which the listener sees.
    weechat.proc.terminate();
    listener.wait_prefix(&server, "QUIT wee ");
    let _ = weechat.proc.wait_exit(Duration::from_secs(20));
}

#[test]
fn weechat_sends_and_receives_a_line_ngircd() {
    weechat_sends_and_receives(Kind::Ngircd);
}

#[test]
fn weechat_sends_and_receives_a_line_agent() {
    weechat_sends_and_receives(Kind::Agent);
}

// --- 4. Two different client programs through one server ------------------------------------

/// weechat waits in `#office`; irssi joins, says a line and quits; weechat must log that line
/// from irssi's nick.
fn irssi_to_weechat(kind: Kind) {
    let server = Server::start(kind);
    // A listener too, so that the test knows when weechat is in the channel.
    let mut listener = Listener::start(&server, "listener", "", "");
    let mut weechat = Weechat::start(&server, "wee", "weechat is here");
    listener.wait_line(&server, &format!("PUBMSG wee {CHANNEL} weechat is here"));
    let text = "irssi to weechat: ping";
    let mut irssi = irssi(&server, "irssinick", text);
    wait_or_fail(
        "weechat to log irssi's line",
        || weechat.saw("irssinick", text),
        || {
            format!(
                "{}\n--- irssi raw log ---\n{}\n{}\n{}",
                weechat.output(),
                irssi_rawlog(&server, "irssinick"),
                listener.output(),
                server.context()
            )
        },
    );
    let status = irssi.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "irssi: {status}");
    weechat.proc.assert_running();
}

#[test]
fn irssi_and_weechat_talk_through_one_server_ngircd() {
    irssi_to_weechat(Kind::Ngircd);
}

#[test]
fn irssi_and_weechat_talk_through_one_server_agent() {
    irssi_to_weechat(Kind::Agent);
}
