use super::*;

fn settings() -> Settings {
    Settings {
        server_name: "irc.test".into(),
        network: "TestNet".into(),
        nick_length: 16,
        max_channels: 3,
        max_channels_per_client: 2,
        motd: Some(vec!["hello".into()]),
        require_login: false,
        allow_plaintext_auth: false,
        has_accounts: true,
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_secs(1_764_670_000)
}

struct T {
    s: Server,
}

impl T {
    fn new(settings: Settings) -> Self {
        Self {
            s: Server::new(settings, now()),
        }
    }

    fn connect(&mut self, id: ClientId, tls: bool) {
        self.s.connect(id, format!("10.0.0.{id}"), tls);
    }

    fn line(&mut self, id: ClientId, line: &str) -> Vec<Out> {
        self.s.handle_line(id, line, now())
    }

    /// Lines sent to `to` by one input line.
    fn say(&mut self, id: ClientId, line: &str) -> Vec<String> {
        lines_to(&self.line(id, line), id)
    }

    fn register(&mut self, id: ClientId, nick: &str) {
        self.connect(id, false);
        self.line(id, &format!("NICK {nick}"));
        let out = self.say(id, &format!("USER {nick} 0 * :Real {nick}"));
        assert!(out[0].contains(" 001 "), "{out:?}");
    }
}

fn lines_to(outs: &[Out], to: ClientId) -> Vec<String> {
    outs.iter()
        .filter_map(|o| match o {
            Out::Send { to: t, line } if *t == to => Some(line.to_string()),
            _ => None,
        })
        .collect()
}

fn has(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn parse_splits_tags_prefix_and_trailing() {
    let m = parse("@+draft/react=x;time=1 :nick PRIVMSG #a :hello  there").unwrap();
    assert_eq!(m.client_tags, "+draft/react=x");
    assert_eq!(m.verb, "PRIVMSG");
    assert_eq!(m.params, ["#a", "hello  there"]);
    assert_eq!(parse("   "), Err(ParseError::Empty));
    let long = format!("PRIVMSG #a :{}", "x".repeat(600));
    assert_eq!(parse(&long), Err(ParseError::BodyTooLong));
    let tags = format!("@+a={} PING x", "y".repeat(5000));
    assert_eq!(parse(&tags), Err(ParseError::TagsTooLong));
    // Long tags within the IRCv3 allowance are fine.
    let ok = format!("@+a={} PING x", "y".repeat(3000));
    assert!(parse(&ok).is_ok());
}

#[test]
fn timestamp_is_rfc3339_utc() {
    let t = UNIX_EPOCH + std::time::Duration::from_millis(951_782_400_123); // 2000-02-29
    assert_eq!(timestamp(t), "2000-02-29T00:00:00.123Z");
    assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
}

#[test]
fn registration_sends_welcome_isupport_and_motd() {
    let mut t = T::new(settings());
    t.connect(1, false);
    assert!(t.say(1, "NICK alice").is_empty());
    let out = t.say(1, "USER alice 0 * :Alice A");
    assert!(out[0].starts_with(
        ":irc.test 001 alice :Welcome to the TestNet IRC Network alice!alice@10.0.0.1"
    ));
    assert!(has(&out, " 005 alice "));
    assert!(has(&out, "NETWORK=TestNet"));
    assert!(has(&out, "CHANLIMIT=#:2"));
    assert!(has(&out, "NICKLEN=16"));
    assert!(has(&out, "PREFIX=(o)@"));
    assert!(has(&out, "CASEMAPPING=ascii"));
    assert!(has(&out, " 375 ") && has(&out, " 372 alice :- hello") && has(&out, " 376 "));
    assert!(t.s.is_registered(1));
    // A second USER is refused.
    assert!(has(&t.say(1, "USER a b c d"), " 462 "));
}

#[test]
fn no_motd_gives_422_and_commands_before_registration_give_451() {
    let mut s = settings();
    s.motd = None;
    let mut t = T::new(s);
    t.connect(1, false);
    assert!(has(&t.say(1, "JOIN #a"), " 451 * :You have not registered"));
    t.line(1, "NICK bob");
    assert!(has(&t.say(1, "USER bob 0 * :B"), " 422 "));
}

#[test]
fn nick_errors() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    t.connect(2, false);
    assert!(has(&t.say(2, "NICK"), " 431 "));
    assert!(has(&t.say(2, "NICK 1abc"), " 432 "));
    assert!(
        has(&t.say(2, "NICK abcdefghijklmnopq"), " 432 "),
        "longer than NICKLEN"
    );
    assert!(has(
        &t.say(2, "NICK ALICE"),
        " 433 * ALICE :Nickname is already in use"
    ));
    assert!(t.say(2, "NICK Bob").is_empty());
    t.line(2, "USER b 0 * :b");
    assert!(t.s.is_registered(2));
}

#[test]
fn nick_change_is_seen_by_channel_peers() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    t.register(2, "bob");
    t.line(1, "JOIN #a");
    t.line(2, "JOIN #a");
    let outs = t.line(1, "NICK alicia");
    assert_eq!(lines_to(&outs, 1), [":alice!alice@10.0.0.1 NICK :alicia"]);
    assert_eq!(lines_to(&outs, 2), [":alice!alice@10.0.0.1 NICK :alicia"]);
    // The old nick is free again.
    t.connect(3, false);
    assert!(t.say(3, "NICK alice").is_empty());
}

#[test]
fn join_part_and_privmsg_fan_out() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    t.register(2, "bob");
    t.register(3, "carol");
    let out = t.say(1, "JOIN #Chat");
    assert_eq!(out[0], ":alice!alice@10.0.0.1 JOIN #Chat");
    assert!(has(&out, " 353 alice = #Chat :@alice"));
    assert!(has(&out, " 366 alice #Chat "));
    let outs = t.line(2, "JOIN #chat");
    assert_eq!(lines_to(&outs, 1), [":bob!bob@10.0.0.2 JOIN #Chat"]);
    assert!(has(&lines_to(&outs, 2), " 353 bob = #Chat :@alice bob"));

    let outs = t.line(1, "PRIVMSG #CHAT :hi all");
    assert_eq!(
        lines_to(&outs, 2),
        [":alice!alice@10.0.0.1 PRIVMSG #CHAT :hi all"]
    );
    assert!(
        lines_to(&outs, 1).is_empty(),
        "no echo without echo-message"
    );
    assert!(lines_to(&outs, 3).is_empty(), "not a member");
    // +n: outsiders cannot send.
    assert!(has(&t.say(3, "PRIVMSG #chat :hi"), " 404 carol #chat "));
    assert!(has(&t.say(3, "PRIVMSG #nope :hi"), " 403 "));
    assert!(has(&t.say(3, "PRIVMSG nobody :hi"), " 401 carol nobody "));
    assert!(has(&t.say(3, "PRIVMSG"), " 411 "));
    assert!(has(&t.say(3, "PRIVMSG bob"), " 412 "));
    assert!(
        t.say(3, "NOTICE nobody :hi").is_empty(),
        "NOTICE never gets errors"
    );
    // Private message.
    let outs = t.line(3, "PRIVMSG Bob :psst");
    assert_eq!(
        lines_to(&outs, 2),
        [":carol!carol@10.0.0.3 PRIVMSG Bob :psst"]
    );

    let outs = t.line(2, "PART #chat :bye");
    assert_eq!(lines_to(&outs, 1), [":bob!bob@10.0.0.2 PART #Chat :bye"]);
    assert_eq!(lines_to(&outs, 2), [":bob!bob@10.0.0.2 PART #Chat :bye"]);
    assert!(has(&t.say(2, "PART #chat"), " 442 "));
    assert!(has(&t.say(2, "PART #zzz"), " 403 "));
    t.line(1, "PART #chat");
    assert_eq!(t.s.channel_count(), 0, "an empty channel is gone");
}

#[test]
fn quit_and_disconnect_tell_peers_once() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    t.register(2, "bob");
    t.line(1, "JOIN #a,#b");
    t.line(2, "JOIN #a,#b");
    let outs = t.line(1, "QUIT :gone");
    assert_eq!(
        lines_to(&outs, 2),
        [":alice!alice@10.0.0.1 QUIT :Quit: gone"]
    );
    assert_eq!(
        lines_to(&outs, 1),
        ["ERROR :Closing Link: 10.0.0.1 (Quit: gone)"]
    );
    assert!(outs.contains(&Out::Close {
        client: 1,
        reason: "Quit: gone".into()
    }));
    assert!(t.s.disconnect(1, "again", now()).is_empty(), "idempotent");
    let outs = t.s.disconnect(2, "Connection closed", now());
    assert!(outs.is_empty());
    assert_eq!(t.s.client_count(), 0);
    assert_eq!(t.s.channel_count(), 0);
}

#[test]
fn join_zero_keys_limits_and_channel_counts() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    t.register(2, "bob");
    t.register(3, "carol");
    t.line(1, "JOIN #a");
    assert!(has(
        &t.say(1, "MODE #a +kl secret 2"),
        "MODE #a +kl secret 2"
    ));
    assert!(has(&t.say(2, "JOIN #a"), " 475 bob #a "));
    assert!(has(&t.say(2, "JOIN #a wrong"), " 475 "));
    assert!(has(&t.say(2, "JOIN #a secret"), "JOIN #a"));
    assert!(has(&t.say(3, "JOIN #a secret"), " 471 carol #a "));
    // Per-client limit (2) and server limit (3 channels).
    t.line(1, "JOIN #b");
    assert!(has(&t.say(1, "JOIN #c"), " 405 alice #c "));
    t.line(3, "JOIN #c");
    assert!(has(
        &t.say(3, "JOIN #d"),
        " 405 carol #d :The server has too many channels"
    ));
    // Invalid names.
    assert!(has(&t.say(3, "JOIN nohash"), " 403 "));
    let long = format!("JOIN #{}", "x".repeat(CHANNEL_LEN));
    assert!(has(&t.say(3, &long), " 403 "));
    assert!(has(&t.say(3, "JOIN"), " 461 "));
    // JOIN 0 leaves everything.
    let out = t.say(1, "JOIN 0");
    assert!(has(&out, "PART #a") && has(&out, "PART #b"));
}

#[test]
fn topic_rules() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    t.register(2, "bob");
    t.line(1, "JOIN #a");
    t.line(2, "JOIN #a");
    assert!(has(&t.say(2, "TOPIC #a"), " 331 bob #a :No topic is set"));
    assert!(has(&t.say(2, "TOPIC #a :mine"), " 482 "), "+t: ops only");
    let outs = t.line(1, "TOPIC #a :the topic");
    assert_eq!(
        lines_to(&outs, 2),
        [":alice!alice@10.0.0.1 TOPIC #a :the topic"]
    );
    let out = t.say(2, "TOPIC #a");
    assert_eq!(out[0], ":irc.test 332 bob #a :the topic");
    assert_eq!(out[1], ":irc.test 333 bob #a alice 1764670000");
    t.line(1, "MODE #a -t");
    assert!(has(&t.say(2, "TOPIC #a :mine"), "TOPIC #a :mine"));
    t.register(3, "carol");
    assert!(has(&t.say(3, "TOPIC #a :x"), " 442 "));
    assert!(has(&t.say(3, "JOIN #a"), " 332 carol #a :mine"));
}

#[test]
fn channel_modes_and_errors() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    t.register(2, "bob");
    t.line(1, "JOIN #a");
    t.line(2, "JOIN #a");
    let out = t.say(2, "MODE #a");
    assert!(has(&out, " 324 bob #a +nt"), "{out:?}");
    assert!(has(&out, " 329 bob #a "));
    assert!(has(&t.say(2, "MODE #a -n"), " 482 bob #a "));
    assert!(has(&t.say(2, "MODE #a b"), " 368 "));
    assert!(has(&t.say(1, "MODE #a +z"), " 472 alice z "));
    assert!(has(&t.say(1, "MODE #a +o nobody"), " 401 "));
    t.register(3, "carol");
    assert!(has(&t.say(1, "MODE #a +o carol"), " 441 "));
    assert!(has(&t.say(1, "MODE #nope +o carol"), " 403 "));
    let outs = t.line(1, "MODE #a +o bob");
    assert_eq!(lines_to(&outs, 2), [":alice!alice@10.0.0.1 MODE #a +o bob"]);
    assert!(has(&t.say(2, "NAMES #a"), ":@alice @bob"));
    let outs = t.line(2, "MODE #a -o+l-n alice 5");
    assert_eq!(
        lines_to(&outs, 1),
        [":bob!bob@10.0.0.2 MODE #a -o+l-n alice 5"]
    );
    assert!(has(&t.say(1, "MODE #a"), "+tl 5"));
    // User modes.
    assert!(has(&t.say(1, "MODE alice +i"), "MODE alice :+i"));
    assert!(has(&t.say(1, "MODE alice"), " 221 alice :+i"));
    assert!(has(&t.say(1, "MODE bob +i"), " 502 "));
    assert!(has(&t.say(1, "MODE alice +x"), " 501 "));
}

#[test]
fn kick_requires_op_and_membership() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    t.register(2, "bob");
    t.line(1, "JOIN #a");
    t.line(2, "JOIN #a");
    assert!(has(&t.say(2, "KICK #a alice"), " 482 "));
    assert!(has(&t.say(1, "KICK #a carol"), " 441 "));
    let outs = t.line(1, "KICK #a bob :out");
    assert_eq!(
        lines_to(&outs, 2),
        [":alice!alice@10.0.0.1 KICK #a bob :out"]
    );
    assert!(has(&t.say(2, "PRIVMSG #a :x"), " 404 "));
    assert!(has(&t.say(2, "KICK #a alice"), " 442 "));
}

#[test]
fn queries_who_whois_list_names_away_ison_userhost() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    t.register(2, "bob");
    t.line(1, "JOIN #a");
    t.line(1, "TOPIC #a :hi");
    t.line(2, "JOIN #a");
    let out = t.say(2, "WHO #a");
    assert!(has(
        &out,
        " 352 bob #a alice 10.0.0.1 irc.test alice H@ :0 Real alice"
    ));
    assert!(has(&out, " 315 bob #a "));
    let out = t.say(2, "WHOIS alice");
    assert!(has(&out, " 311 bob alice alice 10.0.0.1 * :Real alice"));
    assert!(has(&out, " 319 bob alice :@#a"));
    assert!(has(&out, " 312 bob alice irc.test "));
    assert!(has(&out, " 318 bob alice "));
    let out = t.say(2, "WHOIS nobody");
    assert!(has(&out, " 401 bob nobody ") && has(&out, " 318 "));
    let out = t.say(2, "LIST");
    assert!(has(&out, " 321 ") && has(&out, " 322 bob #a 2 :hi") && has(&out, " 323 "));
    assert!(has(&t.say(1, "AWAY :lunch"), " 306 "));
    assert!(has(
        &t.say(2, "PRIVMSG alice :hey"),
        " 301 bob alice :lunch"
    ));
    assert!(has(&t.say(2, "WHO alice"), " G :0 ") || has(&t.say(2, "WHO alice"), " G "));
    assert!(has(&t.say(1, "AWAY"), " 305 "));
    assert!(has(
        &t.say(1, "ISON bob nobody ALICE"),
        " 303 alice :bob alice"
    ));
    assert!(has(
        &t.say(1, "USERHOST bob"),
        " 302 alice :bob=+bob@10.0.0.2"
    ));
    assert!(has(&t.say(1, "FROB"), " 421 alice FROB "));
    assert!(has(&t.say(1, "PING :x1"), ":irc.test PONG irc.test :x1"));
    assert!(has(&t.say(1, "PING"), " 409 "));
}

#[test]
fn names_are_split_to_fit_a_line() {
    let mut s = settings();
    s.max_channels_per_client = 5;
    let mut t = T::new(s);
    for id in 1..=60 {
        t.register(id, &format!("user{id:02}_padding"));
        t.line(id, "JOIN #big");
    }
    let out = t.say(1, "NAMES #big");
    let names: Vec<&String> = out.iter().filter(|l| l.contains(" 353 ")).collect();
    assert!(names.len() > 1);
    assert!(out.iter().all(|l| l.len() <= 510));
    let total: usize = names
        .iter()
        .filter_map(|l| l.split_once(" :"))
        .map(|(_, list)| list.matches("_padding").count())
        .sum();
    assert_eq!(total, 60);
}

#[test]
fn cap_negotiation_holds_registration_until_end() {
    let mut t = T::new(settings());
    t.connect(1, true);
    let out = t.say(1, "CAP LS 302");
    assert_eq!(
        out,
        [":irc.test CAP * LS :echo-message message-tags multi-prefix server-time sasl=PLAIN"]
    );
    t.line(1, "NICK alice");
    assert!(
        t.say(1, "USER alice 0 * :A").is_empty(),
        "waits for CAP END"
    );
    // The ACK already carries the time its capabilities switched on.
    assert_eq!(
        t.say(1, "CAP REQ :server-time echo-message"),
        ["@time=2025-12-02T10:06:40.000Z :irc.test CAP alice ACK :server-time echo-message"]
    );
    assert_eq!(
        t.say(1, "CAP REQ :-server-time bogus"),
        ["@time=2025-12-02T10:06:40.000Z :irc.test CAP alice NAK :-server-time bogus"],
        "all or nothing"
    );
    let out = t.say(1, "CAP END");
    assert!(
        out[0].starts_with("@time=2025-12-02T10:06:40.000Z :irc.test 001 alice"),
        "{out:?}"
    );
    assert!(has(&t.say(1, "CAP LIST"), "LIST :server-time echo-message"));
    // echo-message: the sender gets its own message back.
    t.register(2, "bob");
    t.line(1, "JOIN #a");
    t.line(2, "JOIN #a");
    let outs = t.line(1, "PRIVMSG #a :hi");
    assert_eq!(
        lines_to(&outs, 1),
        ["@time=2025-12-02T10:06:40.000Z :alice!alice@10.0.0.1 PRIVMSG #a :hi"]
    );
    assert_eq!(lines_to(&outs, 2), [":alice!alice@10.0.0.1 PRIVMSG #a :hi"]);
}

#[test]
fn message_tags_are_relayed_only_to_clients_that_asked() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    t.register(2, "bob");
    t.register(3, "carol");
    t.line(2, "CAP REQ message-tags");
    for id in 1..=3 {
        t.line(id, "JOIN #a");
    }
    let outs = t.line(1, "@+draft/reply=abc;label=x PRIVMSG #a :hi");
    assert_eq!(
        lines_to(&outs, 2),
        ["@+draft/reply=abc :alice!alice@10.0.0.1 PRIVMSG #a :hi"]
    );
    assert_eq!(lines_to(&outs, 3), [":alice!alice@10.0.0.1 PRIVMSG #a :hi"]);
    // TAGMSG only reaches clients with message-tags, and only from one.
    assert!(
        t.line(1, "@+typing=active TAGMSG #a")
            .iter()
            .all(|o| !matches!(o, Out::Send { .. }))
    );
    let outs = t.line(2, "@+typing=active TAGMSG #a");
    assert!(lines_to(&outs, 1).is_empty() && lines_to(&outs, 3).is_empty());
}

fn login_settings() -> Settings {
    Settings {
        require_login: true,
        ..settings()
    }
}

#[test]
fn sasl_plain_success() {
    let mut t = T::new(login_settings());
    t.connect(1, true);
    t.line(1, "CAP LS 302");
    t.line(1, "NICK alice_");
    t.line(1, "USER alice 0 * :A");
    t.line(1, "CAP REQ sasl");
    assert_eq!(t.say(1, "AUTHENTICATE PLAIN"), ["AUTHENTICATE +"]);
    let outs = t.line(1, &format!("AUTHENTICATE {}", b64(b"\0alice\0pw")));
    assert!(outs.contains(&Out::CheckPassword {
        client: 1,
        account: "alice".into(),
        password: "pw".into()
    }));
    assert!(t.say(1, "CAP END").is_empty(), "waits for the check");
    let out = lines_to(&t.s.login_result(1, Some("alice".into()), now()), 1);
    assert!(
        out[0].contains(" 900 alice_ alice_!alice@10.0.0.1 alice :You are now logged in as alice")
    );
    assert!(out[1].contains(" 903 "));
    assert!(out[2].contains(" 001 alice_ "), "{out:?}");
    assert!(has(&t.say(1, "AUTHENTICATE PLAIN"), " 907 "));
    assert!(has(
        &t.say(1, "WHOIS alice_"),
        " 330 alice_ alice_ alice :is logged in as"
    ));
}

#[test]
fn sasl_failures_and_abort() {
    let mut t = T::new(login_settings());
    t.connect(1, true);
    t.line(1, "CAP LS 302");
    assert!(
        has(&t.say(1, "AUTHENTICATE PLAIN"), " 904 "),
        "sasl not requested"
    );
    t.line(1, "CAP REQ sasl");
    let out = t.say(1, "AUTHENTICATE SCRAM-SHA-256");
    assert!(has(&out, " 908 * PLAIN :") && has(&out, " 904 "));
    t.line(1, "AUTHENTICATE PLAIN");
    assert!(has(&t.say(1, "AUTHENTICATE *"), " 906 "));
    t.line(1, "AUTHENTICATE PLAIN");
    assert!(has(&t.say(1, "AUTHENTICATE !!notbase64"), " 904 "));
    t.line(1, "AUTHENTICATE PLAIN");
    // Another authorization identity is refused.
    assert!(has(
        &t.say(1, &format!("AUTHENTICATE {}", b64(b"bob\0alice\0pw"))),
        " 904 "
    ));
    t.line(1, "AUTHENTICATE PLAIN");
    t.line(1, &format!("AUTHENTICATE {}", b64(b"\0alice\0bad")));
    assert!(has(
        &lines_to(&t.s.login_result(1, None, now()), 1),
        " 904 "
    ));
    // Too long.
    t.line(1, "AUTHENTICATE PLAIN");
    let chunk = "A".repeat(400);
    for _ in 0..3 {
        t.line(1, &format!("AUTHENTICATE {chunk}"));
    }
    assert!(has(&t.say(1, &format!("AUTHENTICATE {chunk}")), " 905 "));
    // Registration without a login is refused and closed.
    t.line(1, "NICK alice");
    t.line(1, "USER alice 0 * :A");
    let outs = t.line(1, "CAP END");
    assert!(has(&lines_to(&outs, 1), " 464 "));
    assert!(
        outs.iter()
            .any(|o| matches!(o, Out::Close { client: 1, .. }))
    );
}

#[test]
fn no_sasl_or_pass_on_plaintext_without_permission() {
    let mut t = T::new(settings());
    t.connect(1, false);
    let out = t.say(1, "CAP LS 302");
    assert!(!has(&out, "sasl"), "{out:?}");
    assert!(has(&t.say(1, "CAP REQ sasl"), "NAK"));
    assert!(has(&t.say(1, "PASS alice:pw"), " 464 "));
    // With allow_plaintext_auth it is offered.
    let mut t = T::new(Settings {
        allow_plaintext_auth: true,
        ..settings()
    });
    t.connect(1, false);
    assert!(has(
        &t.say(1, "CAP LS"),
        " LS :echo-message message-tags multi-prefix server-time sasl"
    ));
}

#[test]
fn pass_login_and_nick_must_start_with_account() {
    let mut t = T::new(login_settings());
    t.connect(1, true);
    t.line(1, "PASS alice:pw");
    t.line(1, "NICK mallory");
    let outs = t.line(1, "USER x 0 * :x");
    assert!(outs.contains(&Out::CheckPassword {
        client: 1,
        account: "alice".into(),
        password: "pw".into()
    }));
    let out = lines_to(&t.s.login_result(1, Some("alice".into()), now()), 1);
    assert!(
        has(&out, " 432 mallory mallory :Your nick must start"),
        "{out:?}"
    );
    assert!(!t.s.is_registered(1));
    assert!(has(&t.say(1, "NICK Alice2"), " 001 Alice2 "));
    assert!(has(&t.say(1, "NICK bob"), " 432 "));
    // A wrong password closes.
    t.connect(2, true);
    t.line(2, "PASS alice:nope");
    t.line(2, "NICK alice");
    t.line(2, "USER x 0 * :x");
    let outs = t.s.login_result(2, None, now());
    assert!(has(&lines_to(&outs, 2), " 464 "));
    assert!(
        outs.iter()
            .any(|o| matches!(o, Out::Close { client: 2, .. }))
    );
}

#[test]
fn over_long_lines_are_refused() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    let long = format!("PRIVMSG #a :{}", "x".repeat(600));
    assert!(has(&t.say(1, &long), " 417 "));
    assert!(has(&lines_to(&t.s.line_too_long(1, now()), 1), " 417 "));
}

#[test]
fn metric_verbs_are_a_closed_set() {
    assert_eq!(verb_label("privmsg"), "PRIVMSG");
    assert_eq!(verb_label("X-EVIL-VERB"), "other");
    let mut t = T::new(settings());
    t.register(1, "alice");
    let outs = t.line(1, "X-EVIL-VERB");
    assert!(outs.contains(&Out::Count {
        verb: "other",
        outcome: Outcome::Rejected
    }));
    let outs = t.line(1, "PING x");
    assert!(outs.contains(&Out::Count {
        verb: "PING",
        outcome: Outcome::Ok
    }));
}

#[test]
fn every_line_the_server_writes_parses_with_an_independent_parser() {
    use irc_proto::{Command, Message};
    let mut t = T::new(settings());
    t.connect(1, true);
    let script = [
        "CAP LS 302",
        "CAP REQ :server-time message-tags echo-message",
        "NICK alice",
        "USER alice 0 * :Alice Liddell",
        "CAP END",
        "JOIN #a,#b",
        "TOPIC #a :a topic with spaces",
        "MODE #a +kl key 10",
        "MODE #a",
        "NAMES #a",
        "WHO #a",
        "WHOIS alice",
        "LIST",
        "AWAY :away now",
        "@+draft/reply=1 PRIVMSG #a :hi there",
        "PRIVMSG nobody :x",
        "FROB",
        "PART #b :bye",
        "QUIT :done",
    ];
    let mut all = Vec::new();
    for line in script {
        all.extend(lines_to(&t.line(1, line), 1));
    }
    assert!(all.len() > 30);
    for line in &all {
        let parsed: Result<Message, _> = line.parse();
        assert!(parsed.is_ok(), "{line:?}: {parsed:?}");
    }
    let echo = all
        .iter()
        .find(|l| l.contains("PRIVMSG #a"))
        .expect("echoed");
    let msg: Message = echo.parse().expect("parses");
    assert_eq!(
        msg.command,
        Command::PRIVMSG("#a".into(), "hi there".into())
    );
    let tags = msg.tags.clone().expect("tags");
    assert!(tags.iter().any(|t| t.0 == "time"));
    assert!(
        tags.iter()
            .any(|t| t.0 == "+draft/reply" && t.1.as_deref() == Some("1"))
    );
    assert_eq!(msg.source_nickname(), Some("alice"));
}

#[test]
fn fan_out_shares_one_line_per_variant() {
    let mut t = T::new(settings());
    for id in 1..=4 {
        t.register(id, &format!("n{id}"));
        t.line(id, "JOIN #a");
    }
    t.line(4, "CAP REQ server-time");
    let outs = t.line(1, "PRIVMSG #a :hi");
    let lines: Vec<&Arc<str>> = outs
        .iter()
        .filter_map(|o| match o {
            Out::Send { line, .. } => Some(line),
            _ => None,
        })
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        Arc::ptr_eq(lines[0], lines[1]),
        "plain recipients share one line"
    );
    assert!(lines[2].starts_with("@time="));
}

#[test]
fn an_empty_join_is_a_missing_parameter_and_empty_names_are_skipped() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    // irssi's `JOIN :` on connect.
    assert!(has(
        &t.say(1, "JOIN :"),
        " 461 alice JOIN :Not enough parameters"
    ));
    let out = t.say(1, "JOIN #a,,#b");
    assert!(out.iter().all(|l| !l.contains(" 403 ")), "{out:?}");
    assert!(has(&out, "JOIN #a") && has(&out, "JOIN #b"), "{out:?}");
}

#[test]
fn a_bare_carriage_return_cannot_smuggle_a_line_to_other_clients() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    t.register(2, "bob");
    t.line(1, "JOIN #a");
    t.line(2, "JOIN #a");
    let outs = t.line(
        1,
        "PRIVMSG #a :hi\r:carol!carol@10.0.0.3 PRIVMSG #a :I am carol",
    );
    assert!(lines_to(&outs, 2).is_empty(), "nothing relayed: {outs:?}");
    assert!(has(&lines_to(&outs, 1), " 400 alice * :"));
}

#[test]
fn require_login_without_accounts_refuses_everyone() {
    let mut t = T::new(Settings {
        has_accounts: false,
        ..login_settings()
    });
    t.connect(1, true);
    let caps = t.say(1, "CAP LS 302");
    assert!(
        caps.iter().all(|l| !l.contains("sasl")),
        "no SASL without accounts: {caps:?}"
    );
    t.line(1, "NICK alice");
    t.line(1, "USER alice 0 * :A");
    let outs = t.line(1, "CAP END");
    assert!(has(&lines_to(&outs, 1), " 464 "), "{outs:?}");
    assert!(
        outs.iter()
            .any(|o| matches!(o, Out::Close { client: 1, .. }))
    );
}

#[test]
fn a_relayed_line_is_cut_to_512_bytes_with_its_prefix_on_a_character_boundary() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    t.register(2, "bob");
    t.line(1, "JOIN #c");
    t.line(2, "JOIN #c");
    // The longest message a client may send: its own line is 510 bytes; relayed, the sender's
    // prefix makes it longer.
    let head = "PRIVMSG #c :";
    let text: String = "é".repeat((510 - head.len()) / 2);
    let out = t.line(1, &format!("{head}{text}"));
    let got = lines_to(&out, 2);
    assert_eq!(got.len(), 1, "{got:?}");
    let line = &got[0];
    assert!(line.len() <= 510, "{} bytes", line.len());
    assert!(line.starts_with(":alice!"), "{line}");
    let relayed = line.split_once(" :").map(|(_, t)| t).unwrap_or_default();
    assert!(
        !relayed.is_empty() && text.starts_with(relayed),
        "the text's start, whole characters"
    );
}

#[test]
fn setting_a_ban_says_bans_are_not_kept() {
    let mut t = T::new(settings());
    t.register(1, "alice");
    t.line(1, "JOIN #c");
    let out = t.say(1, "MODE #c +b bad!*@*");
    assert!(
        has(&out, " 472 alice b :is unknown mode char to me"),
        "{out:?}"
    );
    // The ban list query clients send on join still answers (empty).
    let out = t.say(1, "MODE #c b");
    assert!(has(&out, " 368 "), "{out:?}");
}
