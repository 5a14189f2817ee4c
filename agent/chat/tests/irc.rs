//! The chat role over real TCP: raw IRC lines against a bound [`Chat`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hostrole_agent_core::Role;
use hostrole_agent_core::metrics::AgentMetrics;
use hostrole_chat::{Chat, Tuning};
use hostrole_config::ChatRoleConfig;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

fn config() -> ChatRoleConfig {
    ChatRoleConfig {
        server_name: "irc.test".into(),
        network: "TestNet".into(),
        port: 0,
        tls_port: None,
        tls: None,
        users_file: None,
        require_login: false,
        allow_plaintext_auth: false,
        max_connections: 32,
        max_channels: 10,
        max_channels_per_client: 5,
        nick_length: 16,
        motd: Some("welcome".into()),
    }
}

struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

async fn start(config: ChatRoleConfig, tuning: Tuning) -> Running {
    start_with(config, tuning, &AgentMetrics::default()).await
}

async fn start_with(config: ChatRoleConfig, tuning: Tuning, metrics: &AgentMetrics) -> Running {
    let chat = Chat::bind_tuned(&config, IpAddr::from([127, 0, 0, 1]), metrics, tuning)
        .await
        .expect("binds");
    let addresses = chat.addresses();
    assert_eq!(addresses[0].0, "irc");
    let addr = addresses[0].1;
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(chat).run(stop.clone(), Duration::from_secs(2)));
    Running { addr, stop, task }
}

struct Client {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let (rd, wr) = TcpStream::connect(addr)
            .await
            .expect("connects")
            .into_split();
        Self {
            rd: BufReader::new(rd),
            wr,
        }
    }

    async fn send(&mut self, line: &str) {
        self.wr
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .expect("writes");
    }

    /// The next line, or `None` at the end of the stream.
    async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, self.rd.read_line(&mut line))
            .await
            .expect("a line in time")
            .ok()?;
        (n > 0).then(|| line.trim_end().to_string())
    }

    /// Reads until a line contains `needle`; every line read.
    async fn until(&mut self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.line().await {
                Some(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                None => panic!("closed before {needle:?}; saw {seen:?}"),
            }
        }
    }

    /// Reads to the end of the stream; the lines read.
    async fn until_closed(&mut self) -> Vec<String> {
        let mut seen = Vec::new();
        while let Some(line) = self.line().await {
            seen.push(line);
        }
        seen
    }

    async fn register(addr: SocketAddr, nick: &str) -> Self {
        let mut c = Self::connect(addr).await;
        c.send(&format!("NICK {nick}")).await;
        c.send(&format!("USER {nick} 0 * :{nick}")).await;
        c.until(" 376 ").await;
        c
    }
}

#[tokio::test]
async fn two_clients_talk_in_a_channel() {
    let server = start(config(), Tuning::default()).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let mut bob = Client::register(server.addr, "bob").await;
    alice.send("JOIN #room").await;
    alice.until(" 366 alice #room ").await;
    bob.send("JOIN #Room").await;
    let names = bob.until(" 366 ").await;
    assert!(
        names.iter().any(|l| l.ends_with(":@alice bob")),
        "{names:?}"
    );
    assert_eq!(
        alice.line().await.as_deref(),
        Some(":bob!bob@127.0.0.1 JOIN #room")
    );
    bob.send("PRIVMSG #room :hello alice").await;
    assert_eq!(
        alice.line().await.as_deref(),
        Some(":bob!bob@127.0.0.1 PRIVMSG #room :hello alice")
    );
    alice.send("QUIT :bye").await;
    let last = alice.until_closed().await;
    assert_eq!(last, ["ERROR :Closing Link: 127.0.0.1 (Quit: bye)"]);
    assert_eq!(
        bob.line().await.as_deref(),
        Some(":alice!alice@127.0.0.1 QUIT :Quit: bye")
    );
    server.stop.cancel();
    assert_eq!(
        bob.until_closed().await,
        ["ERROR :Closing Link: server shutting down"]
    );
    tokio::time::timeout(WAIT, server.task)
        .await
        .expect("stops within the grace period")
        .expect("no panic");
}

#[tokio::test]
async fn a_flooding_client_is_dropped_and_others_keep_working() {
    let tuning = Tuning {
        flood_burst: 5,
        flood_rate: 5.0,
        flood_excess_after: Duration::from_millis(800),
        ..Tuning::default()
    };
    let server = start(config(), tuning).await;
    let mut calm = Client::register(server.addr, "calm").await;
    let mut flood = Client::register(server.addr, "flood").await;
    calm.send("JOIN #a").await;
    calm.until(" 366 ").await;
    flood.send("JOIN #a").await;
    flood.until(" 366 ").await;
    let burst: String = (0..500)
        .map(|i| format!("PRIVMSG #a :spam {i}\r\n"))
        .collect();
    flood.wr.write_all(burst.as_bytes()).await.expect("writes");
    let started = tokio::time::Instant::now();
    // The calm client keeps getting answers while the flood is slowed down.
    calm.send("PING :still-here").await;
    let seen = calm.until("PONG irc.test :still-here").await;
    let spam_before_pong = seen.iter().filter(|l| l.contains(":spam ")).count();
    assert!(
        spam_before_pong < 20,
        "flood control let {spam_before_pong} through at once"
    );
    let rest = calm.until("QUIT :Excess Flood").await;
    let spam = spam_before_pong + rest.iter().filter(|l| l.contains(":spam ")).count();
    assert!(
        spam < 40,
        "{spam} lines relayed before the flooder was dropped"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let last = flood.until_closed().await;
    assert!(
        last.last()
            .is_some_and(|l| l.ends_with("(Excess Flood)") && l.starts_with("ERROR ")),
        "{last:?}"
    );
    calm.send("PRIVMSG #a :alive").await;
    calm.send("PING :again").await;
    calm.until("PONG irc.test :again").await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_without_hurting_others() {
    let tuning = Tuning {
        flood_burst: 1_000_000,
        flood_rate: 1_000_000.0,
        send_queue_bytes: 256 * 1024,
        ..Tuning::default()
    };
    let server = start(config(), tuning).await;
    let mut speaker = Client::register(server.addr, "speaker").await;
    let mut watcher = Client::register(server.addr, "watcher").await;
    let mut sleeper = Client::register(server.addr, "sleeper").await;
    for c in [&mut speaker, &mut watcher, &mut sleeper] {
        c.send("JOIN #a").await;
        c.until(" 366 ").await;
    }
    // The sleeper stops reading from here on.
    let gone = Arc::new(AtomicBool::new(false));
    let watching = {
        let gone = gone.clone();
        tokio::spawn(async move {
            let mut relayed = 0usize;
            loop {
                let Some(line) = watcher.line().await else {
                    panic!("the watcher was dropped");
                };
                if line.contains("PRIVMSG #a :") {
                    relayed += 1;
                }
                if line.starts_with(":sleeper!") && line.ends_with("QUIT :SendQ exceeded") {
                    gone.store(true, Ordering::SeqCst);
                    return (watcher, relayed);
                }
            }
        })
    };
    let text = "x".repeat(400);
    let batch: String = (0..200)
        .map(|_| format!("PRIVMSG #a :{text}\r\n"))
        .collect();
    let mut sent = 0usize;
    while !gone.load(Ordering::SeqCst) {
        assert!(sent < 200_000, "the sleeper was never dropped");
        speaker
            .wr
            .write_all(batch.as_bytes())
            .await
            .expect("writes");
        sent += 200;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut watcher, relayed) = tokio::time::timeout(WAIT, watching)
        .await
        .expect("in time")
        .expect("watcher ok");
    assert!(relayed > 0);
    // The server still answers the others.
    speaker.send("PING :ok").await;
    speaker.until("PONG irc.test :ok").await;
    watcher.send("PING :ok2").await;
    watcher.until("PONG irc.test :ok2").await;
    // The sleeper's connection is closed: what it finally reads ends.
    let tail = tokio::time::timeout(Duration::from_secs(30), async {
        let mut n = 0usize;
        while sleeper.line().await.is_some() {
            n += 1;
        }
        n
    })
    .await
    .expect("the sleeper's stream ends");
    assert!(tail > 0);
}

#[tokio::test]
async fn registration_times_out() {
    let tuning = Tuning {
        registration_timeout: Duration::from_millis(300),
        ..Tuning::default()
    };
    let server = start(config(), tuning).await;
    let mut lazy = Client::connect(server.addr).await;
    lazy.send("NICK lazy").await;
    let started = tokio::time::Instant::now();
    let lines = lazy.until_closed().await;
    assert_eq!(
        lines,
        ["ERROR :Closing Link: 127.0.0.1 (Registration timed out)"]
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // A registered client is not affected.
    let mut ok = Client::register(server.addr, "ok").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    ok.send("PING :x").await;
    ok.until("PONG").await;
}

#[tokio::test]
async fn a_silent_client_is_pinged_then_dropped() {
    let tuning = Tuning {
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(300),
        ..Tuning::default()
    };
    let server = start(config(), tuning).await;
    let mut silent = Client::register(server.addr, "silent").await;
    assert_eq!(silent.line().await.as_deref(), Some("PING :irc.test"));
    let last = silent.until_closed().await;
    assert_eq!(last.len(), 1);
    assert!(last[0].contains("(Ping timeout: "), "{last:?}");
    // One that answers stays.
    let mut answers = Client::register(server.addr, "answers").await;
    for _ in 0..3 {
        answers.until("PING :irc.test").await;
        answers.send("PONG :irc.test").await;
    }
    answers.send("PING :x").await;
    answers.until("PONG irc.test :x").await;
}

#[tokio::test]
async fn over_long_lines_are_refused_and_skipped() {
    let server = start(config(), Tuning::default()).await;
    let mut c = Client::register(server.addr, "long").await;
    let huge = "x".repeat(20_000);
    c.send(&format!("PRIVMSG #a :{huge}")).await;
    c.until(" 417 long :Input line was too long").await;
    c.send("PING :after").await;
    let seen = c.until("PONG").await;
    assert_eq!(seen, [":irc.test PONG irc.test :after"]);
}

#[tokio::test]
async fn when_full_an_unregistered_connection_makes_room_and_registered_ones_stay() {
    let mut cfg = config();
    cfg.max_connections = 2;
    let server = start(cfg, Tuning::default()).await;
    let mut a = Client::register(server.addr, "a").await;
    let mut idle = Client::connect(server.addr).await;
    idle.send("NICK idle").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Full: the unregistered connection is closed to make room.
    let mut b = Client::register(server.addr, "b").await;
    assert_eq!(
        idle.until_closed().await,
        ["ERROR :Closing Link: 127.0.0.1 (Server full)"]
    );
    // Full of registered clients: a newcomer is told so and closed.
    let mut c = Client::connect(server.addr).await;
    assert_eq!(
        c.until_closed().await,
        ["ERROR :Closing Link: 127.0.0.1 (Server full)"]
    );
    for (client, token) in [(&mut a, "pa"), (&mut b, "pb")] {
        client.send(&format!("PING :{token}")).await;
        client.until(&format!("PONG irc.test :{token}")).await;
    }
}

#[tokio::test]
async fn one_address_holds_only_its_share_of_connections() {
    let mut cfg = config();
    cfg.max_connections = 40; // a quarter each: 10
    let server = start(cfg, Tuning::default()).await;
    let mut held = Vec::new();
    for i in 0..10 {
        held.push(Client::register(server.addr, &format!("n{i}")).await);
    }
    let mut extra = Client::connect(server.addr).await;
    assert_eq!(
        extra.until_closed().await,
        ["ERROR :Closing Link: 127.0.0.1 (Too many connections from your address)"]
    );
    held[0].send("PING :x").await;
    held[0].until("PONG irc.test :x").await;
}

#[tokio::test]
async fn sasl_plain_login_over_the_wire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = hostrole_agent_core::users::hash_password("s3cret").expect("hash");
    let users = dir.path().join("users");
    std::fs::write(&users, format!("alice:{hash}\n")).expect("write users");
    let mut cfg = config();
    cfg.users_file = Some(users);
    cfg.require_login = true;
    cfg.allow_plaintext_auth = true;
    let server = start(cfg, Tuning::default()).await;

    let mut c = Client::connect(server.addr).await;
    c.send("CAP LS 302").await;
    let ls = c.until(" LS ").await;
    assert!(ls[0].contains("sasl=PLAIN"), "{ls:?}");
    c.send("NICK alice").await;
    c.send("USER alice 0 * :Alice").await;
    c.send("CAP REQ :sasl server-time").await;
    c.until(" ACK ").await;
    c.send("AUTHENTICATE PLAIN").await;
    c.until("AUTHENTICATE +").await;
    // base64("\0alice\0s3cret")
    c.send("AUTHENTICATE AGFsaWNlAHMzY3JldA==").await;
    let seen = c.until(" 903 ").await;
    assert!(seen.iter().any(|l| l.contains(" 900 alice ")), "{seen:?}");
    c.send("CAP END").await;
    let welcome = c.until(" 001 ").await;
    assert!(welcome[0].starts_with("@time="), "{welcome:?}");

    // A wrong password: 904, and without a login no registration.
    let mut bad = Client::connect(server.addr).await;
    bad.send("CAP LS 302").await;
    bad.send("CAP REQ sasl").await;
    bad.until(" ACK ").await;
    bad.send("AUTHENTICATE PLAIN").await;
    bad.until("AUTHENTICATE +").await;
    // base64("\0alice\0wrong")
    bad.send("AUTHENTICATE AGFsaWNlAHdyb25n").await;
    bad.until(" 904 ").await;
    bad.send("NICK alice2").await;
    bad.send("USER a 0 * :a").await;
    bad.send("CAP END").await;
    let last = bad.until_closed().await;
    assert!(last.iter().any(|l| l.contains(" 464 ")), "{last:?}");
    assert!(last.last().is_some_and(|l| l.contains("(Login required)")));
}

/// A self-signed certificate for 127.0.0.1, made with openssl.
fn certificate(dir: &std::path::Path) -> hostrole_config::TlsFiles {
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success());
    hostrole_config::TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

#[tokio::test]
async fn the_tls_port_offers_sasl_and_the_plain_port_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = certificate(dir.path());
    let hash = hostrole_agent_core::users::hash_password("pw").expect("hash");
    let users = dir.path().join("users");
    std::fs::write(&users, format!("alice:{hash}\n")).expect("write users");
    let mut cfg = config();
    cfg.tls_port = Some(0);
    cfg.tls = Some(files.clone());
    cfg.users_file = Some(users);
    let chat = Chat::bind_tuned(
        &cfg,
        IpAddr::from([127, 0, 0, 1]),
        &AgentMetrics::default(),
        Tuning::default(),
    )
    .await
    .expect("binds");
    let names: Vec<&str> = chat.addresses().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["irc", "ircs"]);
    let (plain_addr, tls_addr) = (chat.addresses()[0].1, chat.addresses()[1].1);
    let stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(chat).run(stop.clone(), Duration::from_secs(2)));

    // Plain port: no SASL offered, PASS refused.
    let mut plain = Client::connect(plain_addr).await;
    plain.send("CAP LS 302").await;
    let ls = plain.until(" LS ").await;
    assert!(!ls[0].contains("sasl"), "{ls:?}");
    plain.send("PASS alice:pw").await;
    plain.until(" 464 ").await;

    // TLS port: SASL offered and a login works.
    let roots = hostrole_agent_core::tls::roots(&files.cert).expect("roots");
    let mut client = hostrole_agent_core::tls::client_config(roots).expect("client config");
    client.alpn_protocols.clear();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(tls_addr).await.expect("connects");
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("127.0.0.1")
        .expect("name")
        .to_owned();
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let (rd, mut wr) = tokio::io::split(tls);
    let mut rd = BufReader::new(rd);
    wr.write_all(b"CAP LS 302\r\nCAP REQ sasl\r\nAUTHENTICATE PLAIN\r\n")
        .await
        .expect("writes");
    // base64("\0alice\0pw")
    wr.write_all(b"AUTHENTICATE AGFsaWNlAHB3\r\nNICK alice\r\nUSER a 0 * :a\r\nCAP END\r\n")
        .await
        .expect("writes");
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, rd.read_line(&mut line))
            .await
            .expect("in time")
            .expect("reads");
        assert!(n > 0, "closed; saw {seen:?}");
        seen.push(line.trim_end().to_string());
        if line.contains(" 001 ") {
            break;
        }
    }
    assert!(seen[0].contains("sasl=PLAIN"), "{seen:?}");
    assert!(seen.iter().any(|l| l.contains(" 903 ")), "{seen:?}");
    stop.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("stops")
        .expect("no panic");
}

fn metrics_text(metrics: &AgentMetrics) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    text
}

#[tokio::test]
async fn password_guessing_is_throttled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = hostrole_agent_core::users::hash_password("right").expect("hash");
    let users = dir.path().join("users");
    std::fs::write(&users, format!("victim:{hash}\n")).expect("write users");
    let mut cfg = config();
    cfg.users_file = Some(users);
    cfg.allow_plaintext_auth = true;
    let metrics = AgentMetrics::default();
    let server = start_with(cfg, Tuning::default(), &metrics).await;
    let mut guessers = Vec::new();
    for _ in 0..4 {
        let addr = server.addr;
        guessers.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            c.send("CAP REQ sasl").await;
            c.until(" ACK ").await;
            for _ in 0..6 {
                c.send("AUTHENTICATE PLAIN").await;
                c.until("AUTHENTICATE +").await;
                // base64("\0victim\0guess")
                c.send("AUTHENTICATE AHZpY3RpbQBndWVzcw==").await;
                c.until(" 904 ").await;
            }
        }));
    }
    // Beyond the free failures, guesses wait their turn, and those that would wait too long
    // are refused without a hash.
    let throttled = |text: &str| {
        text.lines().any(|l| {
            l.contains("role=\"chat\"")
                && l.contains("reason=\"AuthThrottled\"")
                && !l.ends_with(" 0")
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !throttled(&metrics_text(&metrics)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            metrics_text(&metrics)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for g in guessers {
        g.abort();
    }
    assert!(
        metrics_text(&metrics)
            .lines()
            .any(|l| l.contains("reason=\"AuthFailed\"") && !l.ends_with(" 0"))
    );
}
