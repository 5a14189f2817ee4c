//! The IRC server's state and rules, without I/O: the shell feeds it lines and connection events
//! and carries out the effects ([`Out`]) it returns. Nicks and channel names compare under
//! `CASEMAPPING=ascii` (only `A-Z` fold to `a-z`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hostrole_agent_core::metrics::Outcome;

/// A connection's id, given by the shell.
pub type ClientId = u64;

pub use hostrole_proto::irc::{MAX_BODY, MAX_CLIENT_TAGS, MAX_LINE, Msg, ParseError, parse};

/// `CHANNELLEN`.
pub const CHANNEL_LEN: usize = 50;
/// `TOPICLEN`.
pub const TOPIC_LEN: usize = 390;
/// `KICKLEN`.
pub const KICK_LEN: usize = 255;
/// `AWAYLEN`.
pub const AWAY_LEN: usize = 200;
/// `USERLEN`.
pub const USER_LEN: usize = 10;
/// Targets of one PRIVMSG/NOTICE (`TARGMAX`).
pub const MAX_TARGETS: usize = 4;
/// Mode changes in one MODE (`MODES`).
pub const MAX_MODES: usize = 4;
/// Base64 bytes of one SASL response (several 400-byte chunks).
const MAX_SASL: usize = 1200;

const VERSION: &str = concat!("hostrole-", env!("CARGO_PKG_VERSION"));

/// The server's fixed settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server_name: String,
    pub network: String,
    pub nick_length: usize,
    pub max_channels: usize,
    pub max_channels_per_client: usize,
    pub motd: Option<Vec<String>>,
    pub require_login: bool,
    pub allow_plaintext_auth: bool,
    /// Whether a users file exists (no SASL without accounts).
    pub has_accounts: bool,
}

/// An effect for the shell to carry out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// One line (without CR LF) to one client.
    Send { to: ClientId, line: Arc<str> },
    /// Close the connection once the lines before this are sent. The core has already forgotten
    /// the client (peers got its QUIT).
    Close { client: ClientId, reason: String },
    /// Check a password off the event loop, then call [`Server::login_result`].
    CheckPassword {
        client: ClientId,
        account: String,
        password: String,
    },
    /// Count one command in the metrics.
    Count {
        verb: &'static str,
        outcome: Outcome,
    },
}

/// `CASEMAPPING=ascii`.
pub fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The metric label of a command: from a fixed list, never the client's text.
pub fn verb_label(verb: &str) -> &'static str {
    const VERBS: &[&str] = &[
        "CAP",
        "AUTHENTICATE",
        "PASS",
        "NICK",
        "USER",
        "PING",
        "PONG",
        "QUIT",
        "JOIN",
        "PART",
        "PRIVMSG",
        "NOTICE",
        "TAGMSG",
        "TOPIC",
        "MODE",
        "NAMES",
        "WHO",
        "WHOIS",
        "LIST",
        "KICK",
        "AWAY",
        "ISON",
        "USERHOST",
        "MOTD",
    ];
    VERBS
        .iter()
        .find(|v| v.eq_ignore_ascii_case(verb))
        .copied()
        .unwrap_or("other")
}

/// Capabilities a client may request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    pub server_time: bool,
    pub echo_message: bool,
    pub multi_prefix: bool,
    pub message_tags: bool,
    pub sasl: bool,
}

impl Caps {
    fn flag(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "server-time" => &mut self.server_time,
            "echo-message" => &mut self.echo_message,
            "multi-prefix" => &mut self.multi_prefix,
            "message-tags" => &mut self.message_tags,
            "sasl" => &mut self.sasl,
            _ => return None,
        })
    }

    fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        for (on, name) in [
            (self.server_time, "server-time"),
            (self.echo_message, "echo-message"),
            (self.multi_prefix, "multi-prefix"),
            (self.message_tags, "message-tags"),
            (self.sasl, "sasl"),
        ] {
            if on {
                v.push(name);
            }
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sasl {
    Idle,
    /// `AUTHENTICATE PLAIN` was accepted; base64 chunks so far.
    Plain(String),
    /// The password is being checked.
    Checking,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checking {
    No,
    Sasl,
    Pass,
}

#[derive(Debug)]
struct Client {
    nick: Option<String>,
    user: Option<String>,
    realname: String,
    host: String,
    tls: bool,
    caps: Caps,
    /// CAP negotiation holds registration until `CAP END`.
    negotiating: bool,
    registered: bool,
    account: Option<String>,
    pass: Option<String>,
    sasl: Sasl,
    checking: Checking,
    /// Folded names of the client's channels.
    channels: BTreeSet<String>,
    away: Option<String>,
    invisible: bool,
}

impl Client {
    fn nick_or_star(&self) -> &str {
        self.nick.as_deref().unwrap_or("*")
    }
}

#[derive(Debug)]
struct Channel {
    name: String,
    created: u64,
    /// Text, setter, time.
    topic: Option<(String, String, u64)>,
    topic_ops_only: bool,
    no_outside: bool,
    key: Option<String>,
    limit: Option<usize>,
    /// Members and whether each is an operator.
    members: BTreeMap<ClientId, bool>,
}

/// One line on its way to many clients: its variants (with or without `@time=`, with or
/// without client tags), each built once.
#[derive(Default)]
struct Fanout {
    variants: [Option<Arc<str>>; 4],
}

/// The whole server.
#[derive(Debug)]
pub struct Server {
    settings: Settings,
    created: String,
    clients: HashMap<ClientId, Client>,
    nicks: HashMap<String, ClientId>,
    channels: HashMap<String, Channel>,
    /// The `@time=` value of the current call.
    time: String,
    /// Seconds since the epoch of the current call.
    now: u64,
    out: Vec<Out>,
    rejected: bool,
}

fn secs(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// RFC 3339 UTC with milliseconds, as `server-time` wants.
pub fn timestamp(now: SystemTime) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (s, ms) = (d.as_secs(), d.subsec_millis());
    let days = i64::try_from(s / 86_400).unwrap_or(0);
    let rem = s % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn valid_nick(nick: &str, max: usize) -> bool {
    let special = |c: char| "[]\\`_^{|}".contains(c);
    let mut chars = nick.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || special(c) => {}
        _ => return false,
    }
    nick.len() <= max && chars.all(|c| c.is_ascii_alphanumeric() || special(c) || c == '-')
}

fn valid_channel(name: &str) -> bool {
    name.starts_with('#')
        && name.len() > 1
        && name.len() <= CHANNEL_LEN
        && !name
            .chars()
            .any(|c| c == ' ' || c == ',' || c == '\x07' || c.is_control())
}

/// Longest line the server writes, without its tags and CRLF.
const MAX_BODY_OUT: usize = 510;

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn b64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

impl Server {
    pub fn new(settings: Settings, now: SystemTime) -> Self {
        Self {
            settings,
            created: timestamp(now),
            clients: HashMap::new(),
            nicks: HashMap::new(),
            channels: HashMap::new(),
            time: String::new(),
            now: 0,
            out: Vec::new(),
            rejected: false,
        }
    }

    /// Number of channels that exist.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Number of clients connected.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Whether a client completed registration.
    pub fn is_registered(&self, client: ClientId) -> bool {
        self.clients.get(&client).is_some_and(|c| c.registered)
    }

    /// A new connection from `host`; `tls` when it came over TLS.
    pub fn connect(&mut self, client: ClientId, host: String, tls: bool) {
        self.clients.insert(
            client,
            Client {
                nick: None,
                user: None,
                realname: String::new(),
                host,
                tls,
                caps: Caps::default(),
                negotiating: false,
                registered: false,
                account: None,
                pass: None,
                sasl: Sasl::Idle,
                checking: Checking::No,
                channels: BTreeSet::new(),
                away: None,
                invisible: false,
            },
        );
    }

    /// The connection is gone (or must go): peers see it quit with `reason`. Idempotent.
    pub fn disconnect(&mut self, client: ClientId, reason: &str, now: SystemTime) -> Vec<Out> {
        self.begin(now);
        self.remove(client, reason);
        std::mem::take(&mut self.out)
    }

    /// Closes a client with an `ERROR` line (timeouts, floods): it quits with `reason`.
    pub fn close(&mut self, client: ClientId, reason: &str, now: SystemTime) -> Vec<Out> {
        self.begin(now);
        self.close_inner(client, reason);
        std::mem::take(&mut self.out)
    }

    /// Forgets a client without telling anyone (the server is stopping).
    pub fn forget(&mut self, client: ClientId) {
        if let Some(c) = self.clients.remove(&client) {
            if let Some(nick) = &c.nick
                && self.nicks.get(&fold(nick)) == Some(&client)
            {
                self.nicks.remove(&fold(nick));
            }
            for chan in &c.channels {
                self.leave(chan, client);
            }
        }
    }

    /// A line longer than [`MAX_LINE`] arrived (the shell skipped it).
    pub fn line_too_long(&mut self, client: ClientId, now: SystemTime) -> Vec<Out> {
        self.begin(now);
        self.num(client, "417", &["Input line was too long"]);
        std::mem::take(&mut self.out)
    }

    /// The answer to an [`Out::CheckPassword`]: the account when the password matched.
    pub fn login_result(
        &mut self,
        client: ClientId,
        account: Option<String>,
        now: SystemTime,
    ) -> Vec<Out> {
        self.begin(now);
        let Some(c) = self.clients.get_mut(&client) else {
            return Vec::new();
        };
        let how = std::mem::replace(&mut c.checking, Checking::No);
        match (how, account) {
            (Checking::No, _) => {}
            (Checking::Sasl, Some(account)) => {
                c.sasl = Sasl::Idle;
                c.account = Some(account.clone());
                let mask = format!(
                    "{}!{}@{}",
                    c.nick_or_star(),
                    c.user.as_deref().unwrap_or("*"),
                    c.host
                );
                self.num(
                    client,
                    "900",
                    &[
                        &mask,
                        &account,
                        &format!("You are now logged in as {account}"),
                    ],
                );
                self.num(client, "903", &["SASL authentication successful"]);
                self.try_register(client);
            }
            (Checking::Sasl, None) => {
                c.sasl = Sasl::Idle;
                self.num(client, "904", &["SASL authentication failed"]);
                self.try_register(client);
            }
            (Checking::Pass, Some(account)) => {
                c.account = Some(account);
                self.try_register(client);
            }
            (Checking::Pass, None) => {
                self.num(client, "464", &["Password incorrect"]);
                self.close_inner(client, "Bad password");
            }
        }
        std::mem::take(&mut self.out)
    }

    /// One line from a client.
    pub fn handle_line(&mut self, client: ClientId, line: &str, now: SystemTime) -> Vec<Out> {
        self.begin(now);
        match parse(line) {
            Ok(msg) => self.command(client, msg),
            Err(ParseError::Empty) => {}
            Err(ParseError::ForbiddenByte) => {
                self.out.push(Out::Count {
                    verb: "other",
                    outcome: Outcome::Malformed,
                });
                self.num(
                    client,
                    "400",
                    &["*", "Line holding a CR or NUL byte ignored"],
                );
            }
            Err(ParseError::TagsTooLong | ParseError::BodyTooLong) => {
                self.num(client, "417", &["Input line was too long"]);
                self.out.push(Out::Count {
                    verb: "other",
                    outcome: Outcome::Malformed,
                });
            }
        }
        std::mem::take(&mut self.out)
    }

    /// One parsed message from a client.
    pub fn handle(&mut self, client: ClientId, msg: Msg, now: SystemTime) -> Vec<Out> {
        self.begin(now);
        self.command(client, msg);
        std::mem::take(&mut self.out)
    }

    fn begin(&mut self, now: SystemTime) {
        self.time = timestamp(now);
        self.now = secs(now);
        self.out.clear();
        self.rejected = false;
    }

    fn command(&mut self, id: ClientId, msg: Msg) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        let registered = client.registered;
        let verb = verb_label(&msg.verb);
        let p = &msg.params;
        let before_registration = matches!(
            verb,
            "CAP" | "AUTHENTICATE" | "PASS" | "NICK" | "USER" | "PING" | "PONG" | "QUIT"
        );
        if !registered && !before_registration {
            self.num(id, "451", &["You have not registered"]);
        } else {
            match verb {
                "CAP" => self.cap(id, p),
                "AUTHENTICATE" => self.authenticate(id, p),
                "PASS" => self.pass(id, p),
                "NICK" => self.nick(id, p),
                "USER" => self.user(id, p),
                "PING" => match p.first() {
                    Some(token) => {
                        let line = format!(":{0} PONG {0} :{token}", self.settings.server_name);
                        self.send(id, &line, "");
                    }
                    None => self.num(id, "409", &["No origin specified"]),
                },
                "PONG" => {}
                "QUIT" => {
                    let reason = match p.first() {
                        Some(r) => format!("Quit: {}", truncate(r, AWAY_LEN)),
                        None => "Client Quit".to_string(),
                    };
                    self.close_inner(id, &reason);
                }
                "JOIN" => self.join(id, p),
                "PART" => self.part(id, p),
                "PRIVMSG" | "NOTICE" | "TAGMSG" => self.message(id, verb, &msg),
                "TOPIC" => self.topic(id, p),
                "MODE" => self.mode(id, p),
                "NAMES" => self.names_cmd(id, p),
                "WHO" => self.who(id, p),
                "WHOIS" => self.whois(id, p),
                "LIST" => self.list(id, p),
                "KICK" => self.kick(id, p),
                "AWAY" => self.away(id, p),
                "ISON" => self.ison(id, p),
                "USERHOST" => self.userhost(id, p),
                "MOTD" => self.motd(id),
                _ => {
                    let unknown = truncate(&msg.verb, 32).to_string();
                    self.num(id, "421", &[&unknown, "Unknown command"]);
                }
            }
        }
        let outcome = if self.rejected {
            Outcome::Rejected
        } else {
            Outcome::Ok
        };
        self.out.push(Out::Count { verb, outcome });
    }

    // --- Output helpers ---

    /// Sends `body` to `to`, with `@time=` when it asked for server-time and the client tags
    /// when it asked for message-tags.
    fn send(&mut self, to: ClientId, body: &str, client_tags: &str) {
        self.send_via(to, body, client_tags, &mut Fanout::default());
    }

    /// [`Server::send`] of one line to many: each variant of the line is built once.
    fn send_via(&mut self, to: ClientId, body: &str, client_tags: &str, fan: &mut Fanout) {
        let Some(c) = self.clients.get(&to) else {
            return;
        };
        // Every line fits RFC 1459's 512 bytes with its CRLF (tags aside): a relayed message
        // grows by the sender's prefix, and clients that read 512 bytes (ii, epic) lose the rest.
        let body = truncate(body, MAX_BODY_OUT);
        let with_tags = c.caps.message_tags && !client_tags.is_empty();
        let variant = usize::from(c.caps.server_time) * 2 + usize::from(with_tags);
        if let Some(line) = &fan.variants[variant] {
            let line = line.clone();
            self.out.push(Out::Send { to, line });
            return;
        }
        let mut tags = String::new();
        if c.caps.server_time {
            tags.push_str("time=");
            tags.push_str(&self.time);
        }
        if with_tags {
            if !tags.is_empty() {
                tags.push(';');
            }
            tags.push_str(client_tags);
        }
        let line: Arc<str> = if tags.is_empty() {
            Arc::from(body)
        } else {
            Arc::from(format!("@{tags} {body}"))
        };
        fan.variants[variant] = Some(line.clone());
        self.out.push(Out::Send { to, line });
    }

    /// A numeric reply: `:server NNN nick params... :last`.
    fn num(&mut self, to: ClientId, code: &str, params: &[&str]) {
        let Some(c) = self.clients.get(&to) else {
            return;
        };
        if code.starts_with('4') || code.starts_with('5') || code == "904" {
            self.rejected = true;
        }
        let mut line = format!(":{} {code} {}", self.settings.server_name, c.nick_or_star());
        if let Some((last, first)) = params.split_last() {
            for p in first {
                line.push(' ');
                line.push_str(p);
            }
            line.push_str(" :");
            line.push_str(last);
        }
        self.send(to, &line, "");
    }

    fn mask(&self, id: ClientId) -> String {
        match self.clients.get(&id) {
            Some(c) => format!(
                "{}!{}@{}",
                c.nick_or_star(),
                c.user.as_deref().unwrap_or("*"),
                c.host
            ),
            None => String::from("*"),
        }
    }

    fn nick_of(&self, id: ClientId) -> String {
        self.clients
            .get(&id)
            .map_or_else(|| "*".to_string(), |c| c.nick_or_star().to_string())
    }

    /// Every client sharing a channel with `id` (not `id`).
    fn peers(&self, id: ClientId) -> BTreeSet<ClientId> {
        let mut peers = BTreeSet::new();
        if let Some(c) = self.clients.get(&id) {
            for chan in &c.channels {
                if let Some(ch) = self.channels.get(chan) {
                    peers.extend(ch.members.keys().copied().filter(|m| *m != id));
                }
            }
        }
        peers
    }

    fn broadcast(&mut self, chan: &str, body: &str, except: Option<ClientId>, tags: &str) {
        let members: Vec<ClientId> = self
            .channels
            .get(chan)
            .map(|c| c.members.keys().copied().collect())
            .unwrap_or_default();
        let mut fan = Fanout::default();
        for m in members.into_iter().filter(|m| Some(*m) != except) {
            self.send_via(m, body, tags, &mut fan);
        }
    }

    // --- Connection life ---

    fn close_inner(&mut self, id: ClientId, reason: &str) {
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        let line = format!("ERROR :Closing Link: {} ({reason})", c.host);
        self.send(id, &line, "");
        self.remove(id, reason);
        self.out.push(Out::Close {
            client: id,
            reason: reason.to_string(),
        });
    }

    fn remove(&mut self, id: ClientId, reason: &str) {
        if !self.clients.contains_key(&id) {
            return;
        }
        let line = format!(":{} QUIT :{reason}", self.mask(id));
        let mut fan = Fanout::default();
        for peer in self.peers(id) {
            self.send_via(peer, &line, "", &mut fan);
        }
        self.forget(id);
    }

    /// Removes a member; a channel with nobody left is gone.
    fn leave(&mut self, chan: &str, id: ClientId) {
        if let Some(ch) = self.channels.get_mut(chan) {
            ch.members.remove(&id);
            if ch.members.is_empty() {
                self.channels.remove(chan);
            }
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.channels.remove(chan);
        }
    }

    // --- Registration ---

    fn auth_allowed(&self, id: ClientId) -> bool {
        self.settings.has_accounts
            && (self.settings.allow_plaintext_auth || self.clients.get(&id).is_some_and(|c| c.tls))
    }

    fn cap(&mut self, id: ClientId, p: &[String]) {
        let Some(sub) = p.first().map(|s| s.to_ascii_uppercase()) else {
            self.num(id, "461", &["CAP", "Not enough parameters"]);
            return;
        };
        let nick = self.nick_of(id);
        let server = self.settings.server_name.clone();
        let sasl = self.auth_allowed(id);
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        match sub.as_str() {
            "LS" => {
                if !c.registered {
                    c.negotiating = true;
                }
                let v302 = p.get(1).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0) >= 302;
                let mut caps = String::from("echo-message message-tags multi-prefix server-time");
                if sasl {
                    caps.push_str(if v302 { " sasl=PLAIN" } else { " sasl" });
                }
                self.send(id, &format!(":{server} CAP {nick} LS :{caps}"), "");
            }
            "LIST" => {
                let caps = c.caps.names().join(" ");
                self.send(id, &format!(":{server} CAP {nick} LIST :{caps}"), "");
            }
            "REQ" => {
                if !c.registered {
                    c.negotiating = true;
                }
                let wanted = p.get(1).cloned().unwrap_or_default();
                let mut caps = c.caps;
                let mut ok = true;
                for name in wanted.split(' ').filter(|n| !n.is_empty()) {
                    let (on, name) = match name.strip_prefix('-') {
                        Some(n) => (false, n),
                        None => (true, name),
                    };
                    match caps.flag(name) {
                        Some(_) if name == "sasl" && !sasl => ok = false,
                        Some(flag) => *flag = on,
                        None => ok = false,
                    }
                }
                let answer = if ok {
                    c.caps = caps;
                    "ACK"
                } else {
                    "NAK"
                };
                self.send(id, &format!(":{server} CAP {nick} {answer} :{wanted}"), "");
            }
            "END" => {
                if !c.registered {
                    c.negotiating = false;
                    self.try_register(id);
                }
            }
            _ => {
                let sub = truncate(&sub, 32).to_string();
                self.num(id, "410", &[&sub, "Invalid CAP command"]);
            }
        }
    }

    fn authenticate(&mut self, id: ClientId, p: &[String]) {
        let Some(arg) = p.first().cloned() else {
            self.num(id, "461", &["AUTHENTICATE", "Not enough parameters"]);
            return;
        };
        if !self.auth_allowed(id) || !self.clients.get(&id).is_some_and(|c| c.caps.sasl) {
            self.num(id, "904", &["SASL authentication failed"]);
            return;
        }
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if c.account.is_some() {
            self.num(id, "907", &["You have already authenticated using SASL"]);
            return;
        }
        if arg == "*" {
            c.sasl = Sasl::Idle;
            self.num(id, "906", &["SASL authentication aborted"]);
            return;
        }
        match std::mem::replace(&mut c.sasl, Sasl::Idle) {
            Sasl::Checking => {
                c.sasl = Sasl::Checking;
                self.num(id, "904", &["SASL authentication failed"]);
            }
            Sasl::Idle => {
                if arg.eq_ignore_ascii_case("PLAIN") {
                    c.sasl = Sasl::Plain(String::new());
                    self.send(id, "AUTHENTICATE +", "");
                } else {
                    self.num(id, "908", &["PLAIN", "are available SASL mechanisms"]);
                    self.num(id, "904", &["SASL authentication failed"]);
                }
            }
            Sasl::Plain(mut so_far) => {
                if arg != "+" {
                    so_far.push_str(&arg);
                }
                if so_far.len() > MAX_SASL {
                    self.num(id, "905", &["SASL message too long"]);
                    return;
                }
                if arg.len() == 400 {
                    c.sasl = Sasl::Plain(so_far);
                    return;
                }
                match b64_decode(&so_far).and_then(|raw| hostrole_proto::sasl::plain(&raw)) {
                    Some((account, password)) => {
                        c.sasl = Sasl::Checking;
                        c.checking = Checking::Sasl;
                        self.out.push(Out::CheckPassword {
                            client: id,
                            account,
                            password,
                        });
                    }
                    None => self.num(id, "904", &["SASL authentication failed"]),
                }
            }
        }
    }

    fn pass(&mut self, id: ClientId, p: &[String]) {
        let Some(pass) = p.first().cloned() else {
            self.num(id, "461", &["PASS", "Not enough parameters"]);
            return;
        };
        let allowed = self.auth_allowed(id);
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if c.registered {
            self.num(id, "462", &["You may not reregister"]);
        } else if !allowed {
            self.num(
                id,
                "464",
                &["Passwords are refused on this connection (use TLS)"],
            );
        } else {
            c.pass = Some(pass);
        }
    }

    fn nick(&mut self, id: ClientId, p: &[String]) {
        let Some(nick) = p.first().cloned() else {
            self.num(id, "431", &["No nickname given"]);
            return;
        };
        if !valid_nick(&nick, self.settings.nick_length) {
            let shown = truncate(&nick, 64).to_string();
            self.num(id, "432", &[&shown, "Erroneous nickname"]);
            return;
        }
        let key = fold(&nick);
        if self.nicks.get(&key).is_some_and(|holder| *holder != id) {
            self.num(id, "433", &[&nick, "Nickname is already in use"]);
            return;
        }
        let registered = self.is_registered(id);
        if registered && !self.nick_fits_account(id, &nick) {
            self.num(
                id,
                "432",
                &[&nick, "Your nick must start with your account name"],
            );
            return;
        }
        let old_mask = self.mask(id);
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let old = c.nick.replace(nick.clone());
        if let Some(old) = &old {
            self.nicks.remove(&fold(old));
        }
        self.nicks.insert(key, id);
        if registered {
            let line = format!("{old_mask} NICK :{nick}");
            let line = format!(":{line}");
            self.send(id, &line, "");
            let mut fan = Fanout::default();
            for peer in self.peers(id) {
                self.send_via(peer, &line, "", &mut fan);
            }
        } else {
            self.try_register(id);
        }
    }

    fn nick_fits_account(&self, id: ClientId, nick: &str) -> bool {
        if !self.settings.require_login {
            return true;
        }
        match self.clients.get(&id).and_then(|c| c.account.as_deref()) {
            Some(account) => fold(nick).starts_with(&fold(account)),
            None => false,
        }
    }

    fn user(&mut self, id: ClientId, p: &[String]) {
        if p.len() < 4 {
            self.num(id, "461", &["USER", "Not enough parameters"]);
            return;
        }
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if c.registered || c.user.is_some() {
            self.num(id, "462", &["You may not reregister"]);
            return;
        }
        let user: String = p[0]
            .chars()
            .filter(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(*ch))
            .take(USER_LEN)
            .collect();
        c.user = Some(if user.is_empty() { "user".into() } else { user });
        c.realname = truncate(&p[3], 100).to_string();
        self.try_register(id);
    }

    fn try_register(&mut self, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if c.registered
            || c.negotiating
            || c.checking != Checking::No
            || c.nick.is_none()
            || c.user.is_none()
        {
            return;
        }
        if c.account.is_none()
            && let Some(pass) = c.pass.take()
        {
            let (account, password) = match pass.split_once(':') {
                Some((a, p)) => (a.to_string(), p.to_string()),
                None => (c.nick_or_star().to_string(), pass),
            };
            c.checking = Checking::Pass;
            self.out.push(Out::CheckPassword {
                client: id,
                account,
                password,
            });
            return;
        }
        if self.settings.require_login {
            if c.account.is_none() {
                self.num(
                    id,
                    "464",
                    &["Login required: SASL PLAIN or PASS account:password"],
                );
                self.close_inner(id, "Login required");
                return;
            }
            let nick = self.nick_of(id);
            if !self.nick_fits_account(id, &nick) {
                self.num(
                    id,
                    "432",
                    &[&nick, "Your nick must start with your account name"],
                );
                return;
            }
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.registered = true;
        }
        self.welcome(id);
    }

    fn welcome(&mut self, id: ClientId) {
        let s = &self.settings;
        let (server, network) = (s.server_name.clone(), s.network.clone());
        let mask = self.mask(id);
        let tokens1 = [
            format!("AWAYLEN={AWAY_LEN}"),
            "CASEMAPPING=ascii".to_string(),
            format!("CHANLIMIT=#:{}", s.max_channels_per_client),
            "CHANMODES=,k,l,nt".to_string(),
            format!("CHANNELLEN={CHANNEL_LEN}"),
            "CHANTYPES=#".to_string(),
            format!("KICKLEN={KICK_LEN}"),
            format!("MODES={MAX_MODES}"),
            format!("NETWORK={network}"),
        ];
        let tokens2 = [
            format!("NICKLEN={}", s.nick_length),
            "PREFIX=(o)@".to_string(),
            format!("TARGMAX=PRIVMSG:{MAX_TARGETS},NOTICE:{MAX_TARGETS},KICK:1,WHOIS:1"),
            format!("TOPICLEN={TOPIC_LEN}"),
            format!("USERLEN={USER_LEN}"),
        ];
        self.num(
            id,
            "001",
            &[&format!("Welcome to the {network} IRC Network {mask}")],
        );
        self.num(
            id,
            "002",
            &[&format!("Your host is {server}, running version {VERSION}")],
        );
        let created = self.created.clone();
        self.num(id, "003", &[&format!("This server was created {created}")]);
        self.num(id, "004", &[&server, VERSION, "i", "klnot", "klo"]);
        for tokens in [&tokens1[..], &tokens2[..]] {
            let mut params: Vec<&str> = tokens.iter().map(String::as_str).collect();
            params.push("are supported by this server");
            self.num(id, "005", &params);
        }
        self.motd(id);
    }

    fn motd(&mut self, id: ClientId) {
        let server = self.settings.server_name.clone();
        match self.settings.motd.clone() {
            Some(lines) => {
                self.num(id, "375", &[&format!("- {server} Message of the day - ")]);
                for line in &lines {
                    self.num(id, "372", &[&format!("- {}", truncate(line, 400))]);
                }
                self.num(id, "376", &["End of /MOTD command."]);
            }
            None => self.num(id, "422", &["MOTD File is missing"]),
        }
    }

    // --- Channels ---

    fn join(&mut self, id: ClientId, p: &[String]) {
        // irssi sends `JOIN :` on connect: an empty list is a missing parameter (as ngircd
        // answers), not a channel named "".
        let Some(names) = p.first().filter(|n| !n.is_empty()) else {
            self.num(id, "461", &["JOIN", "Not enough parameters"]);
            return;
        };
        if names == "0" {
            let chans: Vec<String> = self
                .clients
                .get(&id)
                .map(|c| c.channels.iter().cloned().collect())
                .unwrap_or_default();
            for chan in chans {
                self.part_one(id, &chan, "Left all channels");
            }
            return;
        }
        let keys: Vec<&str> = p.get(1).map(|k| k.split(',').collect()).unwrap_or_default();
        for (i, name) in names.split(',').enumerate() {
            if !name.is_empty() {
                self.join_one(id, name, keys.get(i).copied());
            }
        }
    }

    fn join_one(&mut self, id: ClientId, name: &str, key: Option<&str>) {
        if !valid_channel(name) {
            let shown = truncate(name, 64).to_string();
            self.num(id, "403", &[&shown, "No such channel"]);
            return;
        }
        let folded = fold(name);
        let Some(c) = self.clients.get(&id) else {
            return;
        };
        if c.channels.contains(&folded) {
            return;
        }
        if c.channels.len() >= self.settings.max_channels_per_client {
            self.num(id, "405", &[name, "You have joined too many channels"]);
            return;
        }
        let created = self.time_secs();
        match self.channels.get_mut(&folded) {
            Some(ch) => {
                if ch.key.as_deref().is_some_and(|k| Some(k) != key) {
                    self.num(id, "475", &[name, "Cannot join channel (+k)"]);
                    return;
                }
                if ch.limit.is_some_and(|l| ch.members.len() >= l) {
                    self.num(id, "471", &[name, "Cannot join channel (+l)"]);
                    return;
                }
                ch.members.insert(id, false);
            }
            None => {
                if self.channels.len() >= self.settings.max_channels {
                    self.num(id, "405", &[name, "The server has too many channels"]);
                    return;
                }
                let mut members = BTreeMap::new();
                members.insert(id, true);
                self.channels.insert(
                    folded.clone(),
                    Channel {
                        name: name.to_string(),
                        created,
                        topic: None,
                        topic_ops_only: true,
                        no_outside: true,
                        key: None,
                        limit: None,
                        members,
                    },
                );
            }
        }
        if let Some(c) = self.clients.get_mut(&id) {
            c.channels.insert(folded.clone());
        }
        let display = self
            .channels
            .get(&folded)
            .map_or_else(|| name.to_string(), |c| c.name.clone());
        let line = format!(":{} JOIN {display}", self.mask(id));
        self.broadcast(&folded, &line, None, "");
        if let Some((text, setter, at)) = self.channels.get(&folded).and_then(|c| c.topic.clone()) {
            self.num(id, "332", &[&display, &text]);
            let nick = self.nick_of(id);
            let line = format!(
                ":{} 333 {nick} {display} {setter} {at}",
                self.settings.server_name
            );
            self.send(id, &line, "");
        }
        self.names(id, &folded);
    }

    fn time_secs(&self) -> u64 {
        self.now
    }

    fn part(&mut self, id: ClientId, p: &[String]) {
        let Some(names) = p.first() else {
            self.num(id, "461", &["PART", "Not enough parameters"]);
            return;
        };
        let reason = p.get(1).map(|r| truncate(r, KICK_LEN).to_string());
        for name in names.split(',') {
            let folded = fold(name);
            if !self.channels.contains_key(&folded) {
                let shown = truncate(name, 64).to_string();
                self.num(id, "403", &[&shown, "No such channel"]);
            } else if !self.is_member(&folded, id) {
                self.num(id, "442", &[name, "You're not on that channel"]);
            } else {
                self.part_one(id, &folded, reason.as_deref().unwrap_or(""));
            }
        }
    }

    fn part_one(&mut self, id: ClientId, folded: &str, reason: &str) {
        let Some(display) = self.channels.get(folded).map(|c| c.name.clone()) else {
            return;
        };
        let mut line = format!(":{} PART {display}", self.mask(id));
        if !reason.is_empty() {
            line.push_str(" :");
            line.push_str(reason);
        }
        self.broadcast(folded, &line, None, "");
        self.leave(folded, id);
    }

    fn is_member(&self, folded: &str, id: ClientId) -> bool {
        self.channels
            .get(folded)
            .is_some_and(|c| c.members.contains_key(&id))
    }

    fn is_op(&self, folded: &str, id: ClientId) -> bool {
        self.channels
            .get(folded)
            .is_some_and(|c| c.members.get(&id) == Some(&true))
    }

    fn names_cmd(&mut self, id: ClientId, p: &[String]) {
        match p.first() {
            Some(names) => {
                for name in names.split(',').take(MAX_TARGETS) {
                    let folded = fold(name);
                    if self.channels.contains_key(&folded) {
                        self.names(id, &folded);
                    } else {
                        let shown = truncate(name, 64).to_string();
                        self.num(id, "366", &[&shown, "End of /NAMES list."]);
                    }
                }
            }
            None => self.num(id, "366", &["*", "End of /NAMES list."]),
        }
    }

    /// 353 lines (split to fit 512 bytes) and 366.
    fn names(&mut self, id: ClientId, folded: &str) {
        let Some(ch) = self.channels.get(folded) else {
            return;
        };
        let display = ch.name.clone();
        let names: Vec<String> = ch
            .members
            .iter()
            .filter_map(|(m, op)| {
                let nick = self.clients.get(m)?.nick.clone()?;
                Some(if *op { format!("@{nick}") } else { nick })
            })
            .collect();
        let mut chunk = String::new();
        for name in names {
            if chunk.len() + name.len() > 400 {
                let line = std::mem::take(&mut chunk);
                self.num(id, "353", &["=", &display, &line]);
            }
            if !chunk.is_empty() {
                chunk.push(' ');
            }
            chunk.push_str(&name);
        }
        if !chunk.is_empty() {
            self.num(id, "353", &["=", &display, &chunk]);
        }
        self.num(id, "366", &[&display, "End of /NAMES list."]);
    }

    fn message(&mut self, id: ClientId, verb: &'static str, msg: &Msg) {
        let notice = verb == "NOTICE";
        let tagmsg = verb == "TAGMSG";
        let p = &msg.params;
        let Some(targets) = p.first() else {
            if !notice {
                self.num(id, "411", &[&format!("No recipient given ({verb})")]);
            }
            return;
        };
        let text = match (tagmsg, p.get(1)) {
            (true, _) => String::new(),
            (false, Some(t)) if !t.is_empty() => t.clone(),
            (false, _) => {
                if !notice {
                    self.num(id, "412", &["No text to send"]);
                }
                return;
            }
        };
        let sender_tags = self.clients.get(&id).map(|c| c.caps).unwrap_or_default();
        if tagmsg && !sender_tags.message_tags {
            return;
        }
        let mask = self.mask(id);
        for target in targets.split(',').take(MAX_TARGETS) {
            let body = if tagmsg {
                format!(":{mask} TAGMSG {target}")
            } else {
                format!(":{mask} {verb} {target} :{text}")
            };
            if target.starts_with('#') {
                let folded = fold(target);
                let Some(ch) = self.channels.get(&folded) else {
                    if !notice {
                        self.num(id, "403", &[target, "No such channel"]);
                    }
                    continue;
                };
                if ch.no_outside && !ch.members.contains_key(&id) {
                    if !notice {
                        self.num(id, "404", &[target, "Cannot send to channel"]);
                    }
                    continue;
                }
                let recipients: Vec<ClientId> =
                    ch.members.keys().copied().filter(|m| *m != id).collect();
                let mut fan = Fanout::default();
                for r in recipients {
                    if tagmsg && !self.clients.get(&r).is_some_and(|c| c.caps.message_tags) {
                        continue;
                    }
                    self.send_via(r, &body, &msg.client_tags, &mut fan);
                }
            } else {
                let Some(&r) = self.nicks.get(&fold(target)) else {
                    if !notice {
                        self.num(id, "401", &[target, "No such nick/channel"]);
                    }
                    continue;
                };
                if !tagmsg || self.clients.get(&r).is_some_and(|c| c.caps.message_tags) {
                    self.send(r, &body, &msg.client_tags);
                }
                if verb == "PRIVMSG"
                    && let Some(away) = self.clients.get(&r).and_then(|c| c.away.clone())
                {
                    let nick = self.nick_of(r);
                    self.num(id, "301", &[&nick, &away]);
                }
            }
            if sender_tags.echo_message {
                self.send(id, &body, &msg.client_tags);
            }
        }
    }

    fn topic(&mut self, id: ClientId, p: &[String]) {
        let Some(name) = p.first() else {
            self.num(id, "461", &["TOPIC", "Not enough parameters"]);
            return;
        };
        let folded = fold(name);
        let Some(ch) = self.channels.get(&folded) else {
            let shown = truncate(name, 64).to_string();
            self.num(id, "403", &[&shown, "No such channel"]);
            return;
        };
        let display = ch.name.clone();
        let Some(text) = p.get(1) else {
            match ch.topic.clone() {
                Some((text, setter, at)) => {
                    self.num(id, "332", &[&display, &text]);
                    let nick = self.nick_of(id);
                    let line = format!(
                        ":{} 333 {nick} {display} {setter} {at}",
                        self.settings.server_name
                    );
                    self.send(id, &line, "");
                }
                None => self.num(id, "331", &[&display, "No topic is set"]),
            }
            return;
        };
        if !ch.members.contains_key(&id) {
            self.num(id, "442", &[&display, "You're not on that channel"]);
            return;
        }
        if ch.topic_ops_only && !self.is_op(&folded, id) {
            self.num(id, "482", &[&display, "You're not channel operator"]);
            return;
        }
        let text = truncate(text, TOPIC_LEN).to_string();
        let setter = self.nick_of(id);
        let at = self.time_secs();
        if let Some(ch) = self.channels.get_mut(&folded) {
            ch.topic = (!text.is_empty()).then(|| (text.clone(), setter, at));
        }
        let line = format!(":{} TOPIC {display} :{text}", self.mask(id));
        self.broadcast(&folded, &line, None, "");
    }

    fn mode(&mut self, id: ClientId, p: &[String]) {
        let Some(target) = p.first() else {
            self.num(id, "461", &["MODE", "Not enough parameters"]);
            return;
        };
        if target.starts_with('#') {
            self.channel_mode(id, target, &p[1..]);
        } else {
            self.user_mode(id, target, &p[1..]);
        }
    }

    fn user_mode(&mut self, id: ClientId, target: &str, p: &[String]) {
        if !self.nicks.contains_key(&fold(target)) {
            self.num(id, "401", &[target, "No such nick/channel"]);
            return;
        }
        if self.nicks.get(&fold(target)) != Some(&id) {
            self.num(id, "502", &["Cant change mode for other users"]);
            return;
        }
        let Some(modes) = p.first() else {
            let invisible = self.clients.get(&id).is_some_and(|c| c.invisible);
            self.num(id, "221", &[if invisible { "+i" } else { "+" }]);
            return;
        };
        let mut on = true;
        let mut changed = String::new();
        let mut unknown = false;
        for m in modes.chars() {
            match m {
                '+' => on = true,
                '-' => on = false,
                'i' => {
                    if let Some(c) = self.clients.get_mut(&id)
                        && c.invisible != on
                    {
                        c.invisible = on;
                        changed.push_str(if on { "+i" } else { "-i" });
                    }
                }
                _ => unknown = true,
            }
        }
        if unknown {
            self.num(id, "501", &["Unknown MODE flag"]);
        }
        if !changed.is_empty() {
            let nick = self.nick_of(id);
            let line = format!(":{nick} MODE {nick} :{changed}");
            self.send(id, &line, "");
        }
    }

    fn channel_mode(&mut self, id: ClientId, name: &str, p: &[String]) {
        let folded = fold(name);
        let Some(ch) = self.channels.get(&folded) else {
            let shown = truncate(name, 64).to_string();
            self.num(id, "403", &[&shown, "No such channel"]);
            return;
        };
        let display = ch.name.clone();
        let Some(modes) = p.first() else {
            let mut flags = String::from("+");
            let mut args = Vec::new();
            if ch.no_outside {
                flags.push('n');
            }
            if ch.topic_ops_only {
                flags.push('t');
            }
            if let Some(key) = &ch.key {
                flags.push('k');
                args.push(if ch.members.contains_key(&id) {
                    key.clone()
                } else {
                    "*".into()
                });
            }
            if let Some(limit) = ch.limit {
                flags.push('l');
                args.push(limit.to_string());
            }
            let created = ch.created.to_string();
            let mut params: Vec<&str> = vec![&display, &flags];
            params.extend(args.iter().map(String::as_str));
            let nick = self.nick_of(id);
            let line = format!(
                ":{} 324 {nick} {}",
                self.settings.server_name,
                params.join(" ")
            );
            self.send(id, &line, "");
            self.num(id, "329", &[&display, &created]);
            return;
        };
        // A ban list query (clients send `MODE #chan b` on join): always empty.
        if modes.trim_start_matches('+') == "b" && p.len() < 2 {
            self.num(id, "368", &[&display, "End of channel ban list"]);
            return;
        }
        if !self.is_op(&folded, id) {
            self.num(id, "482", &[&display, "You're not channel operator"]);
            return;
        }
        let mut args = p[1..].iter();
        let mut on = true;
        let mut applied: Vec<(bool, char, Option<String>)> = Vec::new();
        for m in modes.chars() {
            if applied.len() >= MAX_MODES {
                break;
            }
            match m {
                '+' => on = true,
                '-' => on = false,
                'n' | 't' => {
                    if let Some(ch) = self.channels.get_mut(&folded) {
                        let flag = if m == 'n' {
                            &mut ch.no_outside
                        } else {
                            &mut ch.topic_ops_only
                        };
                        if *flag != on {
                            *flag = on;
                            applied.push((on, m, None));
                        }
                    }
                }
                'k' => {
                    let arg = args.next().cloned();
                    if on {
                        let Some(key) = arg
                            .filter(|k| !k.is_empty() && k.len() <= 23 && !k.contains([',', ' ']))
                        else {
                            self.num(id, "525", &[&display, "Key is not well-formed"]);
                            continue;
                        };
                        if let Some(ch) = self.channels.get_mut(&folded) {
                            ch.key = Some(key.clone());
                        }
                        applied.push((true, 'k', Some(key)));
                    } else if let Some(ch) = self.channels.get_mut(&folded)
                        && ch.key.take().is_some()
                    {
                        applied.push((false, 'k', Some("*".into())));
                    }
                }
                'l' => {
                    if on {
                        let Some(limit) = args
                            .next()
                            .and_then(|a| a.parse::<usize>().ok())
                            .filter(|l| *l > 0)
                        else {
                            self.num(id, "461", &["MODE", "Not enough parameters"]);
                            continue;
                        };
                        if let Some(ch) = self.channels.get_mut(&folded) {
                            ch.limit = Some(limit);
                        }
                        applied.push((true, 'l', Some(limit.to_string())));
                    } else if let Some(ch) = self.channels.get_mut(&folded)
                        && ch.limit.take().is_some()
                    {
                        applied.push((false, 'l', None));
                    }
                }
                'o' => {
                    let Some(nick) = args.next().cloned() else {
                        self.num(id, "461", &["MODE", "Not enough parameters"]);
                        continue;
                    };
                    let Some(&target) = self.nicks.get(&fold(&nick)) else {
                        self.num(id, "401", &[&nick, "No such nick/channel"]);
                        continue;
                    };
                    let Some(op) = self
                        .channels
                        .get_mut(&folded)
                        .and_then(|c| c.members.get_mut(&target))
                    else {
                        self.num(id, "441", &[&nick, &display, "They aren't on that channel"]);
                        continue;
                    };
                    if *op != on {
                        *op = on;
                        let nick = self.nick_of(target);
                        applied.push((on, 'o', Some(nick)));
                    }
                }
                // Bans are not kept (`CHANMODES` does not offer `b`): say so, as for any
                // unknown mode, rather than seem to set one.
                'b' => {
                    args.next();
                    self.num(id, "472", &["b", "is unknown mode char to me"]);
                }
                _ => {
                    let shown = m.to_string();
                    self.num(id, "472", &[&shown, "is unknown mode char to me"]);
                }
            }
        }
        if applied.is_empty() {
            return;
        }
        let mut flags = String::new();
        let mut margs = Vec::new();
        let mut sign = None;
        for (on, m, arg) in applied {
            if sign != Some(on) {
                flags.push(if on { '+' } else { '-' });
                sign = Some(on);
            }
            flags.push(m);
            margs.extend(arg);
        }
        let mut line = format!(":{} MODE {display} {flags}", self.mask(id));
        for a in margs {
            line.push(' ');
            line.push_str(&a);
        }
        self.broadcast(&folded, &line, None, "");
    }

    fn kick(&mut self, id: ClientId, p: &[String]) {
        let (Some(name), Some(nicks)) = (p.first(), p.get(1)) else {
            self.num(id, "461", &["KICK", "Not enough parameters"]);
            return;
        };
        let folded = fold(name);
        let Some(display) = self.channels.get(&folded).map(|c| c.name.clone()) else {
            let shown = truncate(name, 64).to_string();
            self.num(id, "403", &[&shown, "No such channel"]);
            return;
        };
        if !self.is_member(&folded, id) {
            self.num(id, "442", &[&display, "You're not on that channel"]);
            return;
        }
        if !self.is_op(&folded, id) {
            self.num(id, "482", &[&display, "You're not channel operator"]);
            return;
        }
        let kicker = self.nick_of(id);
        let reason =
            truncate(p.get(2).map_or(kicker.as_str(), |r| r.as_str()), KICK_LEN).to_string();
        for nick in nicks.split(',').take(MAX_TARGETS) {
            let target = self.nicks.get(&fold(nick)).copied();
            let Some(target) = target.filter(|t| self.is_member(&folded, *t)) else {
                self.num(id, "441", &[nick, &display, "They aren't on that channel"]);
                continue;
            };
            let shown = self.nick_of(target);
            let line = format!(":{} KICK {display} {shown} :{reason}", self.mask(id));
            self.broadcast(&folded, &line, None, "");
            self.leave(&folded, target);
        }
    }

    // --- Queries ---

    fn who(&mut self, id: ClientId, p: &[String]) {
        let mask = p.first().cloned().unwrap_or_else(|| "*".into());
        let server = self.settings.server_name.clone();
        let mut rows: Vec<(String, ClientId, bool)> = Vec::new();
        if mask.starts_with('#') {
            if let Some(ch) = self.channels.get(&fold(&mask)) {
                rows.extend(ch.members.iter().map(|(m, op)| (ch.name.clone(), *m, *op)));
            }
        } else if let Some(&target) = self.nicks.get(&fold(&mask)) {
            rows.push(("*".into(), target, false));
        }
        for (chan, m, op) in rows {
            let Some(c) = self.clients.get(&m) else {
                continue;
            };
            let flags = format!(
                "{}{}",
                if c.away.is_some() { "G" } else { "H" },
                if op { "@" } else { "" }
            );
            let row = [
                chan,
                c.user.clone().unwrap_or_default(),
                c.host.clone(),
                server.clone(),
                c.nick_or_star().to_string(),
                flags,
                format!("0 {}", c.realname),
            ];
            let params: Vec<&str> = row.iter().map(String::as_str).collect();
            self.num(id, "352", &params);
        }
        let shown = truncate(&mask, 64).to_string();
        self.num(id, "315", &[&shown, "End of WHO list"]);
    }

    fn whois(&mut self, id: ClientId, p: &[String]) {
        let Some(nick) = p.last() else {
            self.num(id, "431", &["No nickname given"]);
            return;
        };
        let nick = truncate(nick, 64).to_string();
        let server = self.settings.server_name.clone();
        let Some(&target) = self.nicks.get(&fold(&nick)) else {
            self.num(id, "401", &[&nick, "No such nick/channel"]);
            self.num(id, "318", &[&nick, "End of /WHOIS list"]);
            return;
        };
        let Some(c) = self.clients.get(&target) else {
            return;
        };
        let (shown, user, host, real) = (
            c.nick_or_star().to_string(),
            c.user.clone().unwrap_or_default(),
            c.host.clone(),
            c.realname.clone(),
        );
        let (away, account) = (c.away.clone(), c.account.clone());
        let chans: Vec<String> = c
            .channels
            .iter()
            .filter_map(|f| {
                let ch = self.channels.get(f)?;
                let op = ch.members.get(&target) == Some(&true);
                Some(format!("{}{}", if op { "@" } else { "" }, ch.name))
            })
            .collect();
        self.num(id, "311", &[&shown, &user, &host, "*", &real]);
        if !chans.is_empty() {
            self.num(id, "319", &[&shown, &chans.join(" ")]);
        }
        self.num(id, "312", &[&shown, &server, VERSION]);
        if let Some(away) = away {
            self.num(id, "301", &[&shown, &away]);
        }
        if let Some(account) = account {
            self.num(id, "330", &[&shown, &account, "is logged in as"]);
        }
        self.num(id, "318", &[&shown, "End of /WHOIS list"]);
    }

    fn list(&mut self, id: ClientId, p: &[String]) {
        self.num(id, "321", &["Channel", "Users  Name"]);
        let wanted: Option<BTreeSet<String>> = p.first().map(|n| n.split(',').map(fold).collect());
        let mut rows: Vec<(String, String, String)> = self
            .channels
            .iter()
            .filter(|(f, _)| wanted.as_ref().is_none_or(|w| w.contains(*f)))
            .map(|(_, ch)| {
                (
                    ch.name.clone(),
                    ch.members.len().to_string(),
                    ch.topic.as_ref().map(|t| t.0.clone()).unwrap_or_default(),
                )
            })
            .collect();
        rows.sort();
        for (name, count, topic) in rows {
            self.num(id, "322", &[&name, &count, &topic]);
        }
        self.num(id, "323", &["End of /LIST"]);
    }

    fn away(&mut self, id: ClientId, p: &[String]) {
        let text = p
            .first()
            .filter(|t| !t.is_empty())
            .map(|t| truncate(t, AWAY_LEN).to_string());
        let now_away = text.is_some();
        if let Some(c) = self.clients.get_mut(&id) {
            c.away = text;
        }
        if now_away {
            self.num(id, "306", &["You have been marked as being away"]);
        } else {
            self.num(id, "305", &["You are no longer marked as being away"]);
        }
    }

    fn ison(&mut self, id: ClientId, p: &[String]) {
        let present: Vec<String> = p
            .iter()
            .flat_map(|a| a.split(' '))
            .take(32)
            .filter_map(|n| self.nicks.get(&fold(n)).map(|t| self.nick_of(*t)))
            .collect();
        self.num(id, "303", &[&present.join(" ")]);
    }

    fn userhost(&mut self, id: ClientId, p: &[String]) {
        let replies: Vec<String> = p
            .iter()
            .take(5)
            .filter_map(|n| {
                let c = self.clients.get(self.nicks.get(&fold(n))?)?;
                Some(format!(
                    "{}={}{}@{}",
                    c.nick_or_star(),
                    if c.away.is_some() { '-' } else { '+' },
                    c.user.as_deref().unwrap_or("*"),
                    c.host
                ))
            })
            .collect();
        self.num(id, "302", &[&replies.join(" ")]);
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
