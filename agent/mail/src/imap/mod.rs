//! IMAP4rev1 (RFC 3501) with the extensions common clients use (UIDPLUS, MOVE, SPECIAL-USE,
//! LIST-EXTENDED, IDLE, NAMESPACE, UNSELECT, ENABLE, ID) over a user's Maildir++ folders:
//! SELECT moves `new/` to `cur/` (those messages are `\Recent`), flags and keywords live in
//! file names, UIDs in each folder's `dovecot-uidlist`. Changes made by another session (or a
//! delivery) are reported at the next command boundary: `EXPUNGE`, `FETCH (FLAGS ..)`,
//! `EXISTS`. Replies count in metrics with OK = 200, NO = 400 and BAD = 500.

mod folders;
mod mailbox;
mod message;
mod refresh;
mod response;
pub use hostrole_proto::imap as parse;

use hostrole_agent_core::metrics::{Outcome, Reason};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use self::parse::{Command, ParseError, Request};
use super::conn::{Conn, ReadError, trim_eol};
use super::session::{Ending, Limits, LineProtocol, Next, PRE_AUTH_IDLE};
use super::store::Message;
use super::{Protocol, Shared, sasl};
use hostrole_agent_core::users::User;

const CAPABILITIES: &str = "IMAP4rev1 LITERAL+ SASL-IR IDLE NAMESPACE UNSELECT UIDPLUS MOVE SPECIAL-USE LIST-EXTENDED CHILDREN ENABLE ID";
/// RFC 3501 section 5.4: an autologout timer of at least 30 minutes.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Time for a literal's bytes to arrive.
const LITERAL_TIMEOUT: Duration = Duration::from_secs(60);
/// How often IDLE looks for new mail.
const IDLE_POLL: Duration = Duration::from_secs(2);
const MAX_LINE: usize = 8 * 1024;
/// A whole command with its literals.
const MAX_COMMAND: usize = 64 * 1024;

struct Selected {
    user: String,
    /// The canonical folder name and its directory.
    folder: String,
    dir: std::path::PathBuf,
    /// The folder's keywords (letter `a` + index).
    keywords: Vec<String>,
    /// The store's change counter for the folder when this session last looked.
    version: u64,
    read_only: bool,
    messages: Vec<Message>,
    recent: HashSet<u32>,
    next: u32,
    /// The folder directory's times at the last scan (see `refresh`).
    stamp: refresh::Stamp,
}

pub(crate) struct Session {
    conn: Conn,
    shared: Arc<Shared>,
    user: Option<User>,
    selected: Option<Selected>,
    /// Set by a failed LOGIN or AUTHENTICATE, taken by the driver's count.
    auth_failed: bool,
}

type Io<T> = std::io::Result<T>;

impl Session {
    pub fn new(conn: Conn, shared: Arc<Shared>) -> Session {
        Session {
            conn,
            shared,
            user: None,
            selected: None,
            auth_failed: false,
        }
    }
}

impl LineProtocol for Session {
    const MAX_ERRORS: usize = 20;
    const MAX_COMMANDS: usize = 100_000;

    fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn protocol(&self) -> Protocol {
        Protocol::Imap
    }

    fn authenticated(&self) -> bool {
        self.user.is_some()
    }

    fn limits(&self) -> Limits {
        Limits {
            max_line: MAX_LINE,
            timeout: if self.user.is_some() {
                IDLE_TIMEOUT
            } else {
                PRE_AUTH_IDLE
            },
        }
    }

    async fn greet(&mut self) -> Io<()> {
        let hello = format!(
            "* OK [CAPABILITY {}] {} IMAP4rev1 ready\r\n",
            self.capabilities(),
            self.shared.hostname
        );
        self.conn.send(hello.as_bytes()).await
    }

    /// One command with its literals.
    async fn read(&mut self, buf: &mut Vec<u8>) -> Result<(), ReadError> {
        let timeout = self.limits().timeout;
        read_command(&mut self.conn, buf, timeout, self.shared.max_message_bytes).await
    }

    async fn command(&mut self, input: &[u8], stop: &CancellationToken) -> Io<Next> {
        match parse::parse(input) {
            Ok(request) => {
                let next = self.handle(request, stop).await?;
                Ok(match next {
                    Next::Continue if std::mem::take(&mut self.auth_failed) => Next::AuthFailed,
                    next => next,
                })
            }
            Err(ParseError { tag, why }) => {
                self.shared
                    .count(Protocol::Imap, "UNKNOWN", Outcome::Malformed);
                let tag = tag.unwrap_or_else(|| "*".into());
                self.conn
                    .write(format!("{tag} BAD {why}\r\n").as_bytes())
                    .await?;
                Ok(Next::Bad)
            }
        }
    }

    async fn too_long(&mut self) -> Io<Option<Next>> {
        Ok(None)
    }

    async fn goodbye(&mut self, why: Ending) -> Io<()> {
        let text: &[u8] = match why {
            Ending::Stopping => b"* BYE server shutting down\r\n",
            Ending::Timeout => b"* BYE autologout; idle too long\r\n",
            Ending::Evicted => b"* BYE too many connections; closing an idle one\r\n",
            Ending::TooManyCommands => b"* BYE too many commands\r\n",
            Ending::TooManyErrors => b"* BYE too many errors\r\n",
            Ending::TooManyAuthFailures => b"* BYE too many failed logins\r\n",
            Ending::TooLong => b"* BYE command too long\r\n",
        };
        self.conn.send(text).await
    }
}

/// Whether a command line starts `<tag> APPEND ` (its literal may be a whole message).
fn is_append(line: &[u8]) -> bool {
    let mut words = line.splitn(3, |b| *b == b' ');
    words.next();
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case(b"APPEND"))
}

/// Reads one command with its literals (sending `+` for synchronizing ones) into `out`.
/// APPEND may carry up to `max_message` bytes; a larger synchronizing literal is refused
/// before it is sent.
async fn read_command(
    conn: &mut Conn,
    out: &mut Vec<u8>,
    timeout: Duration,
    max_message: u64,
) -> Result<(), ReadError> {
    out.clear();

    let mut line = Vec::new();
    let mut limit = MAX_COMMAND;
    let mut literals = 0;
    loop {
        conn.read_line(&mut line, MAX_LINE, timeout).await?;
        let content = trim_eol(&line);
        if out.is_empty() && is_append(content) {
            limit = usize::try_from(max_message)
                .unwrap_or(usize::MAX)
                .saturating_add(MAX_COMMAND);
        }
        match parse::trailing_literal(content) {
            Some((n, plus)) => {
                literals += 1;
                if out.len() + content.len() + n > limit || literals > parse::MAX_LITERALS {
                    return Err(ReadError::TooLong(limit));
                }
                out.extend_from_slice(content);
                out.extend_from_slice(b"\r\n");
                if !plus {
                    conn.send(b"+ go ahead\r\n").await?;
                }
                conn.read_exact(n, out, LITERAL_TIMEOUT).await?;
            }
            None => {
                out.extend_from_slice(content);
                return Ok(());
            }
        }
    }
}

impl Session {
    async fn tagged(&mut self, tag: &str, verb: &'static str, status: &str, text: &str) -> Io<()> {
        let outcome = match status {
            "OK" => Outcome::Ok,
            "NO" => Outcome::Rejected,
            _ => Outcome::Malformed,
        };
        self.shared.count(Protocol::Imap, verb, outcome);
        self.conn
            .write(format!("{tag} {status} {text}\r\n").as_bytes())
            .await
    }

    async fn untagged(&mut self, text: &str) -> Io<()> {
        self.conn.write(format!("* {text}\r\n").as_bytes()).await
    }

    async fn handle(&mut self, request: Request, stop: &CancellationToken) -> Io<Next> {
        let Request { tag, command } = request;
        let verb = command.verb();
        // ID is valid in every state (RFC 2971 section 3.1); offlineimap sends it before LOGIN.
        let needs_auth = !matches!(
            command,
            Command::Capability
                | Command::Id
                | Command::Noop
                | Command::Logout
                | Command::StartTls
                | Command::Login { .. }
                | Command::Authenticate { .. }
        );
        if needs_auth && self.user.is_none() {
            self.tagged(&tag, verb, "BAD", "log in first").await?;
            return Ok(Next::Continue);
        }
        let needs_selected = matches!(
            command,
            Command::Fetch { .. }
                | Command::Store { .. }
                | Command::Search { .. }
                | Command::Expunge
                | Command::Close
                | Command::Unselect
        );
        let needs_selected = needs_selected
            || matches!(
                command,
                Command::Copy { .. } | Command::Move { .. } | Command::UidExpunge(_)
            );
        if needs_selected && self.selected.is_none() {
            self.tagged(&tag, verb, "BAD", "no mailbox selected")
                .await?;
            return Ok(Next::Continue);
        }
        // Another session's changes, reported before this command; never before a command
        // that uses sequence numbers, since EXPUNGE would shift them (RFC 3501 section 7.4.1).
        let by_sequence = matches!(
            command,
            Command::Fetch { uid: false, .. }
                | Command::Store { uid: false, .. }
                | Command::Search { uid: false, .. }
                | Command::Copy { uid: false, .. }
                | Command::Move { uid: false, .. }
        );
        if !by_sequence {
            self.refresh().await?;
        }
        match command {
            Command::Capability => {
                let text = format!("CAPABILITY {}", self.capabilities());
                self.untagged(&text).await?;
                self.tagged(&tag, verb, "OK", "CAPABILITY completed")
                    .await?;
            }
            Command::Noop | Command::Check => {
                self.refresh().await?;
                self.tagged(&tag, verb, "OK", "completed").await?;
            }
            Command::Logout => {
                self.untagged("BYE logging out").await?;
                self.tagged(&tag, verb, "OK", "LOGOUT completed").await?;
                return Ok(Next::Close);
            }
            Command::StartTls => return self.start_tls(&tag, verb).await,
            Command::Login { user, password } => self.login(&tag, verb, &user, &password).await?,
            Command::Authenticate { mechanism, initial } => {
                self.authenticate(&tag, verb, &mechanism, initial).await?
            }
            Command::Select(mailbox) => self.select(&tag, verb, &mailbox, false).await?,
            Command::Examine(mailbox) => self.select(&tag, verb, &mailbox, true).await?,
            Command::List {
                reference,
                pattern,
                special_use_only,
                subscribed_only,
                return_special_use,
                return_subscribed,
            } => {
                let options = folders::ListOptions {
                    lsub: false,
                    special_use_only,
                    subscribed_only,
                    return_special_use,
                    return_subscribed,
                };
                self.list(&tag, verb, &reference, &pattern, options).await?
            }
            Command::Lsub { reference, pattern } => {
                let options = folders::ListOptions {
                    lsub: true,
                    ..Default::default()
                };
                self.list(&tag, verb, &reference, &pattern, options).await?
            }
            Command::Create(name) => self.create(&tag, verb, &name).await?,
            Command::Delete(name) => self.delete(&tag, verb, &name).await?,
            Command::Rename { from, to } => self.rename(&tag, verb, &from, &to).await?,
            Command::Subscribe(name) => self.subscribe(&tag, verb, &name, true).await?,
            Command::Unsubscribe(name) => self.subscribe(&tag, verb, &name, false).await?,
            Command::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                self.append(&tag, verb, &mailbox, &flags, date.as_deref(), &message)
                    .await?
            }
            Command::Copy { uid, set, mailbox } => {
                self.copy(&tag, verb, uid, &set, &mailbox, false).await?
            }
            Command::Move { uid, set, mailbox } => {
                self.copy(&tag, verb, uid, &set, &mailbox, true).await?
            }
            Command::UidExpunge(set) => {
                if self.selected.as_ref().is_some_and(|s| s.read_only) {
                    self.tagged(&tag, verb, "NO", "[READ-ONLY] mailbox is read-only")
                        .await?;
                } else {
                    let uids = self.uids_in(&set);
                    self.expunge_only(true, Some(&uids)).await?;
                    self.tagged(&tag, verb, "OK", "UID EXPUNGE completed")
                        .await?;
                }
            }
            Command::Enable(_) => {
                // None of the capabilities ENABLE turns on is offered.
                self.untagged("ENABLED").await?;
                self.tagged(&tag, verb, "OK", "ENABLE completed").await?;
            }
            Command::Id => {
                self.untagged("ID (\"name\" \"hostrole\")").await?;
                self.tagged(&tag, verb, "OK", "ID completed").await?;
            }
            Command::Namespace => {
                self.untagged("NAMESPACE ((\"\" \"/\")) NIL NIL").await?;
                self.tagged(&tag, verb, "OK", "NAMESPACE completed").await?;
            }
            Command::Status { mailbox, items } => self.status(&tag, verb, &mailbox, &items).await?,
            Command::Fetch { uid, set, items } => self.fetch(&tag, verb, uid, &set, &items).await?,
            Command::Store {
                uid,
                set,
                mode,
                silent,
                flags,
            } => {
                self.store(&tag, verb, uid, &set, mode, silent, &flags)
                    .await?
            }
            Command::Search { uid, keys } => self.search(&tag, verb, uid, &keys).await?,
            Command::Expunge => {
                if self.selected.as_ref().is_some_and(|s| s.read_only) {
                    self.tagged(&tag, verb, "NO", "[READ-ONLY] mailbox is read-only")
                        .await?;
                } else {
                    self.expunge_only(true, None).await?;
                    self.tagged(&tag, verb, "OK", "EXPUNGE completed").await?;
                }
            }
            Command::Close => {
                if self.selected.as_ref().is_some_and(|s| !s.read_only) {
                    self.expunge_only(false, None).await?;
                }
                self.selected = None;
                self.tagged(&tag, verb, "OK", "CLOSE completed").await?;
            }
            Command::Unselect => {
                self.selected = None;
                self.tagged(&tag, verb, "OK", "UNSELECT completed").await?;
            }
            Command::Idle => return self.idle(&tag, verb, stop).await,
            Command::Unsupported(name) => {
                let text = format!("[CANNOT] {name} is not supported");
                self.tagged(&tag, verb, "NO", &text).await?;
            }
        }
        Ok(Next::Continue)
    }

    /// What the server offers now: STARTTLS until TLS is on (when the role has a certificate);
    /// passwords only over TLS unless the configuration allows them in the clear (RFC 3501
    /// section 6.2.3, LOGINDISABLED).
    fn capabilities(&self) -> String {
        let mut caps = CAPABILITIES.to_string();
        if self.shared.tls.is_some() && !self.conn.tls {
            caps.push_str(" STARTTLS");
        }
        if self.login_allowed() {
            caps.push_str(" AUTH=PLAIN");
        } else {
            caps.push_str(" LOGINDISABLED");
        }
        caps
    }

    fn login_allowed(&self) -> bool {
        self.shared.password_allowed(self.conn.tls)
    }

    /// The refusal of a login on a connection without TLS (RFC 5530 PRIVACYREQUIRED).
    fn privacy_required(&self) -> &'static str {
        if self.shared.tls.is_some() {
            "[PRIVACYREQUIRED] use STARTTLS first"
        } else {
            "[PRIVACYREQUIRED] passwords only over TLS, and this host has no certificate"
        }
    }

    async fn start_tls(&mut self, tag: &str, verb: &'static str) -> Io<Next> {
        let acceptor = match (&self.shared.tls, self.conn.tls) {
            (Some(a), false) => a.clone(),
            (Some(_), true) => {
                self.tagged(tag, verb, "BAD", "TLS already active").await?;
                return Ok(Next::Continue);
            }
            (None, _) => {
                self.tagged(tag, verb, "NO", "TLS is not available").await?;
                return Ok(Next::Continue);
            }
        };
        if self.user.is_some() {
            self.tagged(tag, verb, "BAD", "STARTTLS only before login")
                .await?;
            return Ok(Next::Continue);
        }
        self.tagged(tag, verb, "OK", "begin TLS negotiation now")
            .await?;
        if let Err(e) = self.conn.start_tls(&acceptor).await {
            tracing::debug!(error = %e, "TLS handshake failed");
            self.shared.error(Protocol::Imap, Reason::TlsFailed);
            return Ok(Next::Close);
        }
        Ok(Next::Continue)
    }

    async fn login(&mut self, tag: &str, verb: &'static str, name: &str, password: &str) -> Io<()> {
        if self.user.is_some() {
            return self.tagged(tag, verb, "BAD", "already authenticated").await;
        }
        if !self.login_allowed() {
            let text = self.privacy_required();
            return self.tagged(tag, verb, "NO", text).await;
        }
        match self.shared.verify(self.conn.peer, name, password).await {
            Some(user) => {
                tracing::debug!(user = user.name, "imap login");
                self.first_login(&user).await;
                self.user = Some(user);
                self.tagged(
                    tag,
                    verb,
                    "OK",
                    &format!("[CAPABILITY {}] logged in", self.capabilities()),
                )
                .await
            }
            None => {
                self.shared.error(Protocol::Imap, Reason::AuthFailed);
                self.auth_failed = true;
                self.tagged(
                    tag,
                    verb,
                    "NO",
                    "[AUTHENTICATIONFAILED] invalid user name or password",
                )
                .await
            }
        }
    }

    async fn authenticate(
        &mut self,
        tag: &str,
        verb: &'static str,
        mechanism: &str,
        initial: Option<String>,
    ) -> Io<()> {
        if self.user.is_some() {
            return self.tagged(tag, verb, "BAD", "already authenticated").await;
        }
        if !self.login_allowed() {
            let text = self.privacy_required();
            return self.tagged(tag, verb, "NO", text).await;
        }
        if mechanism != "PLAIN" {
            return self
                .tagged(tag, verb, "NO", "unsupported mechanism; use PLAIN")
                .await;
        }
        let response = match initial {
            Some(r) if r == "=" => Vec::new(),
            Some(r) => r.into_bytes(),
            None => {
                self.conn.send(b"+ \r\n").await?;
                let mut line = Vec::new();
                match self
                    .conn
                    .read_line(&mut line, MAX_LINE, PRE_AUTH_IDLE)
                    .await
                {
                    Ok(()) => trim_eol(&line).to_vec(),
                    Err(ReadError::Io(e)) => return Err(e),
                    Err(e) => return Err(std::io::Error::other(e)),
                }
            }
        };
        if response == b"*" {
            return self
                .tagged(tag, verb, "BAD", "authentication cancelled")
                .await;
        }
        let user = match sasl::plain(&response) {
            Some((name, password)) => self.shared.verify(self.conn.peer, &name, &password).await,
            None => None,
        };
        match user {
            Some(user) => {
                self.first_login(&user).await;
                self.user = Some(user);
                self.tagged(
                    tag,
                    verb,
                    "OK",
                    &format!("[CAPABILITY {}] authenticated", self.capabilities()),
                )
                .await
            }
            None => {
                self.shared.error(Protocol::Imap, Reason::AuthFailed);
                self.auth_failed = true;
                self.tagged(
                    tag,
                    verb,
                    "NO",
                    "[AUTHENTICATIONFAILED] invalid credentials",
                )
                .await
            }
        }
    }

    /// Creates the special-use folders on a user's first login (not for read-only users).
    async fn first_login(&self, user: &User) {
        if user.read_only {
            return;
        }
        let lock = self.shared.store.lock(&user.name);
        let _guard = lock.lock().await;
        let shared = self.shared.clone();
        let name = user.name.clone();
        let done = tokio::task::spawn_blocking(move || shared.store.ensure_defaults(&name)).await;
        if let Ok(Err(e)) | Err(e) = done.map_err(std::io::Error::other) {
            tracing::warn!(user = user.name, error = %e, "cannot create the default folders");
        }
    }

    /// Scans a folder (moving `new/` to `cur/` when `take_new`) and gives UIDs; with the
    /// folder's keywords.
    async fn load(
        &self,
        user: &str,
        dir: &std::path::Path,
        take_new: bool,
    ) -> Io<(Vec<Message>, usize, u32, u32, Vec<String>)> {
        let lock = self.shared.store.lock(user);
        let _guard = lock.lock().await;
        let shared = self.shared.clone();
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let (mut messages, moved) = shared.store.scan_dir(&dir, take_new)?;
            let (validity, next) = shared.store.assign_uids(&dir, &mut messages)?;
            let keywords = crate::store::load_keywords(&dir)?;
            Ok((messages, moved, validity, next, keywords))
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// The FLAGS and PERMANENTFLAGS lines for a folder's keywords.
    async fn flag_lines(&mut self, keywords: &[String]) -> Io<()> {
        let mut names = String::from("\\Answered \\Flagged \\Deleted \\Seen \\Draft");
        for k in keywords.iter().filter(|k| !k.is_empty()) {
            names.push(' ');
            names.push_str(k);
        }
        self.untagged(&format!("FLAGS ({names})")).await?;
        let more = if keywords.len() < crate::store::MAX_KEYWORDS {
            " \\*"
        } else {
            ""
        };
        self.untagged(&format!(
            "OK [PERMANENTFLAGS ({names}{more})] flags and keywords kept"
        ))
        .await
    }

    async fn select(
        &mut self,
        tag: &str,
        verb: &'static str,
        mailbox: &str,
        examine: bool,
    ) -> Io<()> {
        self.selected = None;
        let user = self.user.clone().expect("checked by handle");
        let folder = match crate::folders::canonical(mailbox) {
            Ok(f) if self.shared.store.folder_exists(&user.name, &f) => f,
            _ => {
                return self
                    .tagged(tag, verb, "NO", "[NONEXISTENT] no such mailbox")
                    .await;
            }
        };
        let dir = self.shared.store.folder_dir(&user.name, &folder);
        let read_only = examine || user.read_only;
        let version = self.shared.store.version(&dir);
        let stamp = refresh::Stamp::of(&dir);
        let (messages, moved, validity, next, keywords) =
            match self.load(&user.name, &dir, !read_only).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(error = %e, "cannot open a mailbox");
                    self.shared.error(Protocol::Imap, Reason::StorageFailed);
                    return self
                        .tagged(tag, verb, "NO", "[SERVERBUG] cannot open the mailbox")
                        .await;
                }
            };
        let recent: HashSet<u32> = if moved > 0 {
            // The moved ones are the newest messages, hence the highest UIDs.
            messages.iter().rev().take(moved).map(|m| m.uid).collect()
        } else {
            HashSet::new()
        };
        let first_unseen = messages.iter().position(|m| !m.flags.contains('S'));
        self.flag_lines(&keywords).await?;
        self.untagged(&format!("{} EXISTS", messages.len())).await?;
        self.untagged(&format!("{} RECENT", recent.len())).await?;
        if let Some(i) = first_unseen {
            self.untagged(&format!("OK [UNSEEN {}] first unseen", i + 1))
                .await?;
        }
        self.untagged(&format!("OK [UIDVALIDITY {validity}] UIDs valid"))
            .await?;
        self.untagged(&format!("OK [UIDNEXT {next}] predicted next UID"))
            .await?;
        self.selected = Some(Selected {
            user: user.name,
            folder,
            dir,
            keywords,
            version,
            read_only,
            messages,
            recent,
            next,
            stamp,
        });
        let mode = if read_only {
            "[READ-ONLY]"
        } else {
            "[READ-WRITE]"
        };
        self.tagged(tag, verb, "OK", &format!("{mode} {verb} completed"))
            .await
    }

    /// The selected folder's change counter and directory times, when they show a change since
    /// this session last looked (see `refresh`); `None` when nothing changed or nothing is
    /// selected.
    fn changed(&self) -> Option<(u64, refresh::Stamp)> {
        let sel = self.selected.as_ref()?;
        let version = self.shared.store.version(&sel.dir);
        let stamp = refresh::Stamp::of(&sel.dir);
        let same = version == sel.version && sel.stamp.unchanged(&stamp);
        (!same).then_some((version, stamp))
    }

    /// Brings the selected folder up to date and tells the client what changed meanwhile:
    /// `EXPUNGE` for messages gone, `FETCH (FLAGS ..)` for changed flags, `EXISTS`/`RECENT`
    /// for new messages, `FLAGS` when keywords were added.
    async fn refresh(&mut self) -> Io<()> {
        let Some(sel) = &self.selected else {
            return Ok(());
        };
        let (user, dir, read_only) = (sel.user.clone(), sel.dir.clone(), sel.read_only);
        // Nothing renamed, added or removed since the last scan: nothing to do.
        let Some((version, stamp)) = self.changed() else {
            tracing::trace!(user, "selected mailbox unchanged");
            return Ok(());
        };
        tracing::trace!(user, folder = sel.folder, "rescanning the selected mailbox");
        let Ok((fresh, moved, _, next, keywords)) = self.load(&user, &dir, !read_only).await else {
            return Ok(());
        };
        let sel = self.selected.as_mut().expect("selected above");
        sel.version = version;
        sel.stamp = stamp;
        let keywords_changed = keywords != sel.keywords;
        sel.keywords = keywords.clone();
        let before = sel.messages.len();
        let last = sel.messages.last().map(|m| m.uid).unwrap_or(0);
        let merged = refresh::merge(&mut sel.messages, fresh, last);
        for uid in &merged.expunged_uids {
            sel.recent.remove(uid);
        }
        // Expunged by another session: highest sequence number first, so each stays valid.
        let lines: Vec<String> = merged
            .expunged
            .iter()
            .map(|seq| format!("{seq} EXPUNGE"))
            .collect();
        let flag_lines: Vec<String> = merged
            .flags_changed
            .iter()
            .map(|seq| {
                let m = &sel.messages[seq - 1];
                format!(
                    "{seq} FETCH (FLAGS {})",
                    message::flags(&m.flags, &keywords)
                )
            })
            .collect();
        let before = before - lines.len();
        let added = merged.added;
        if moved > 0 {
            sel.recent
                .extend(added.iter().rev().take(moved).map(|m| m.uid));
        }
        sel.messages.extend(added);
        sel.next = next;
        let (after, recent) = (sel.messages.len(), sel.recent.len());
        for line in lines {
            self.untagged(&line).await?;
        }
        if keywords_changed {
            self.flag_lines(&keywords).await?;
        }
        for line in flag_lines {
            self.untagged(&line).await?;
        }
        if after != before {
            self.untagged(&format!("{after} EXISTS")).await?;
            self.untagged(&format!("{recent} RECENT")).await?;
        }
        Ok(())
    }

    async fn idle(&mut self, tag: &str, verb: &'static str, stop: &CancellationToken) -> Io<Next> {
        self.conn.send(b"+ idling\r\n").await?;
        let mut line = Vec::new();
        let deadline = tokio::time::Instant::now() + IDLE_TIMEOUT;
        loop {
            let read = tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    self.conn.send(b"* BYE server shutting down\r\n").await?;
                    return Ok(Next::Close);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.conn.send(b"* BYE autologout; idle too long\r\n").await?;
                    return Ok(Next::Close);
                }
                _ = tokio::time::sleep(IDLE_POLL) => None,
                // Not `read_line`: the poll may interrupt a line, which must not be lost.
                r = self.conn.continue_line(&mut line, MAX_LINE) => Some(r),
            };
            match read {
                // Rescans only when the folder changed (see `refresh`).
                None => {
                    self.refresh().await?;
                    self.conn.flush().await?;
                }
                Some(Ok(())) if trim_eol(&line).eq_ignore_ascii_case(b"DONE") => {
                    self.refresh().await?;
                    self.tagged(tag, verb, "OK", "IDLE terminated").await?;
                    return Ok(Next::Continue);
                }
                Some(Ok(())) => {
                    self.tagged(tag, verb, "BAD", "expected DONE").await?;
                    return Ok(Next::Continue);
                }
                Some(Err(ReadError::Io(e))) => return Err(e),
                Some(Err(_)) => return Ok(Next::Close),
            }
        }
    }
}
