//! Folder commands (LIST, LSUB, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS) and the
//! commands that write messages into a folder (APPEND, COPY, MOVE), with UIDPLUS codes.

use std::path::PathBuf;

use hostrole_agent_core::metrics::Reason;

use super::parse::SeqSet;
use super::{Io, Protocol, Session, message};
use crate::folders::{self as names, DELIMITER};
use crate::quota::Room;
use crate::store::{FolderError, FolderInfo, Message};

/// What a LIST or LSUB asks for.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ListOptions {
    pub lsub: bool,
    pub special_use_only: bool,
    pub subscribed_only: bool,
    pub return_special_use: bool,
    pub return_subscribed: bool,
}

/// A UID set as UIDPLUS writes it (`1:3,7`).
fn uid_set(uids: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = uids[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// A folder name as a reply writes it (quoted, or a literal when it is not plain ASCII).
fn quoted_name(name: &str) -> String {
    String::from_utf8_lossy(&message::string(name.as_bytes())).into_owned()
}

impl Session {
    fn user_name(&self) -> String {
        self.user
            .as_ref()
            .map(|u| u.name.clone())
            .unwrap_or_default()
    }

    fn user_read_only(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.read_only)
    }

    /// Runs a blocking store operation under the user's lock.
    async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&crate::store::Store, &str) -> T + Send + 'static,
    ) -> Io<T> {
        let user = self.user_name();
        let lock = self.shared.store.lock(&user);
        let _guard = lock.lock().await;
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared.store, &user))
            .await
            .map_err(std::io::Error::other)
    }

    async fn folder_reply(
        &mut self,
        tag: &str,
        verb: &'static str,
        result: Result<(), FolderError>,
    ) -> Io<()> {
        match result {
            Ok(()) => {
                self.tagged(tag, verb, "OK", &format!("{verb} completed"))
                    .await
            }
            Err(e) => {
                if let FolderError::Io(io) = &e {
                    tracing::error!(error = %io, "a folder operation failed");
                    self.shared.error(Protocol::Imap, Reason::StorageFailed);
                }
                self.tagged(tag, verb, "NO", &e.to_string()).await
            }
        }
    }

    /// Refuses a write of `bytes` more into the user's mailbox beyond its quota (all folders
    /// count), as Dovecot does: `NO [OVERQUOTA]` (RFC 9208 section 4.3, RFC 5530).
    async fn refuse_over_quota(&mut self, tag: &str, verb: &'static str, bytes: u64) -> Io<bool> {
        let user = self.user_name();
        match self.shared.quota.room(&user, bytes).await {
            Room::Fits => Ok(false),
            room => {
                self.shared.error(Protocol::Imap, Reason::QuotaExceeded);
                let why = if room == Room::Full {
                    "[OVERQUOTA] Quota exceeded (mailbox for user is full)"
                } else {
                    "[OVERQUOTA] Quota exceeded (the message does not fit the mailbox quota)"
                };
                self.tagged(tag, verb, "NO", why).await?;
                Ok(true)
            }
        }
    }

    async fn refuse_read_only(&mut self, tag: &str, verb: &'static str) -> Io<bool> {
        if self.user_read_only() {
            self.tagged(tag, verb, "NO", "[NOPERM] this user may only read")
                .await?;
            return Ok(true);
        }
        Ok(false)
    }

    pub(super) async fn list(
        &mut self,
        tag: &str,
        verb: &'static str,
        reference: &str,
        pattern: &str,
        options: ListOptions,
    ) -> Io<()> {
        let name = if options.lsub { "LSUB" } else { "LIST" };
        if pattern.is_empty() && !options.lsub {
            self.untagged(&format!("LIST (\\Noselect) \"{DELIMITER}\" \"\""))
                .await?;
            return self.tagged(tag, verb, "OK", "LIST completed").await;
        }
        let listed = self
            .with_store(
                |store, user| -> std::io::Result<(Vec<FolderInfo>, Vec<String>)> {
                    Ok((store.folders(user)?, store.subscriptions(user)?))
                },
            )
            .await?;
        let (folders, subscribed) = match listed {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "cannot list folders");
                self.shared.error(Protocol::Imap, Reason::StorageFailed);
                return self
                    .tagged(tag, verb, "NO", "[SERVERBUG] cannot list the folders")
                    .await;
            }
        };
        let full = format!("{reference}{pattern}");
        let mut lines = Vec::new();
        let subscribed_view = options.lsub || options.subscribed_only;
        if subscribed_view {
            for sub in &subscribed {
                if !names::matches(&full, sub) {
                    continue;
                }
                let info = folders.iter().find(|f| f.name == *sub);
                let special = names::special_use(sub);
                if options.special_use_only && special.is_none() {
                    continue;
                }
                let mut attrs: Vec<&str> = Vec::new();
                match info {
                    None if options.lsub => attrs.push("\\Noselect"),
                    None => attrs.push("\\NonExistent"),
                    Some(f) if f.virtual_parent => attrs.push("\\Noselect"),
                    Some(_) => {}
                }
                if !options.lsub {
                    attrs.push("\\Subscribed");
                    if let Some(s) = special {
                        attrs.push(s);
                    }
                }
                lines.push(format!(
                    "{name} ({}) \"{DELIMITER}\" {}",
                    attrs.join(" "),
                    quoted_name(sub)
                ));
            }
        } else {
            for f in &folders {
                if !names::matches(&full, &f.name) {
                    continue;
                }
                let special = names::special_use(&f.name).filter(|_| !f.virtual_parent);
                if options.special_use_only && special.is_none() {
                    continue;
                }
                let mut attrs: Vec<&str> = Vec::new();
                if f.virtual_parent {
                    attrs.push("\\Noselect");
                }
                attrs.push(if f.has_children {
                    "\\HasChildren"
                } else {
                    "\\HasNoChildren"
                });
                if options.return_subscribed && subscribed.contains(&f.name) {
                    attrs.push("\\Subscribed");
                }
                // RFC 6154 lets a server show the attributes in every LIST; clients that
                // never ask (older Thunderbird, mutt) then still find Sent and Trash.
                if let Some(s) = special {
                    attrs.push(s);
                }
                lines.push(format!(
                    "LIST ({}) \"{DELIMITER}\" {}",
                    attrs.join(" "),
                    quoted_name(&f.name)
                ));
            }
        }
        let _ = options.return_special_use;
        for line in lines {
            self.untagged(&line).await?;
        }
        self.tagged(tag, verb, "OK", &format!("{name} completed"))
            .await
    }

    pub(super) async fn create(&mut self, tag: &str, verb: &'static str, name: &str) -> Io<()> {
        if self.refuse_read_only(tag, verb).await? {
            return Ok(());
        }
        // A trailing delimiter only says that the folder will have children (RFC 3501).
        let name = name.strip_suffix(DELIMITER).unwrap_or(name).to_string();
        let result = self
            .with_store(move |store, user| store.create_folder(user, &name))
            .await?;
        self.folder_reply(tag, verb, result).await
    }

    pub(super) async fn delete(&mut self, tag: &str, verb: &'static str, name: &str) -> Io<()> {
        if self.refuse_read_only(tag, verb).await? {
            return Ok(());
        }
        let canonical = names::canonical(name).ok();
        let owned = name.to_string();
        let result = self
            .with_store(move |store, user| store.delete_folder(user, &owned))
            .await?;
        if result.is_ok()
            && self
                .selected
                .as_ref()
                .is_some_and(|s| Some(&s.folder) == canonical.as_ref())
        {
            self.selected = None;
        }
        self.folder_reply(tag, verb, result).await
    }

    pub(super) async fn rename(
        &mut self,
        tag: &str,
        verb: &'static str,
        from: &str,
        to: &str,
    ) -> Io<()> {
        if self.refuse_read_only(tag, verb).await? {
            return Ok(());
        }
        let (from, to) = (from.to_string(), to.to_string());
        let result = self
            .with_store(move |store, user| store.rename_folder(user, &from, &to))
            .await?;
        self.folder_reply(tag, verb, result).await
    }

    pub(super) async fn subscribe(
        &mut self,
        tag: &str,
        verb: &'static str,
        name: &str,
        on: bool,
    ) -> Io<()> {
        if self.refuse_read_only(tag, verb).await? {
            return Ok(());
        }
        let name = name.to_string();
        let result = self
            .with_store(move |store, user| store.subscribe(user, &name, on))
            .await?;
        self.folder_reply(tag, verb, result).await
    }

    /// The directory of an existing folder, or the reply to give (`TRYCREATE` for a target).
    fn existing_folder(&self, mailbox: &str) -> Result<(String, PathBuf), &'static str> {
        let user = self.user_name();
        match names::canonical(mailbox) {
            Ok(f) if self.shared.store.folder_exists(&user, &f) => {
                let dir = self.shared.store.folder_dir(&user, &f);
                Ok((f, dir))
            }
            _ => Err("[TRYCREATE] no such mailbox"),
        }
    }

    pub(super) async fn status(
        &mut self,
        tag: &str,
        verb: &'static str,
        mailbox: &str,
        items: &[String],
    ) -> Io<()> {
        let (folder, dir) = match self.existing_folder(mailbox) {
            Ok(x) => x,
            Err(_) => {
                return self
                    .tagged(tag, verb, "NO", "[NONEXISTENT] no such mailbox")
                    .await;
            }
        };
        let user = self.user_name();
        let Ok((messages, _, validity, next, _)) = self.load(&user, &dir, false).await else {
            return self
                .tagged(tag, verb, "NO", "[SERVERBUG] cannot read the mailbox")
                .await;
        };
        let mut parts = Vec::new();
        for item in items {
            let value = match item.as_str() {
                "MESSAGES" => messages.len() as u64,
                "RECENT" => messages
                    .iter()
                    .filter(|m| m.path.parent().is_some_and(|p| p.ends_with("new")))
                    .count() as u64,
                "UIDNEXT" => u64::from(next),
                "UIDVALIDITY" => u64::from(validity),
                "UNSEEN" => messages.iter().filter(|m| !m.flags.contains('S')).count() as u64,
                "SIZE" => messages.iter().map(|m| m.size).sum(),
                _ => {
                    return self
                        .tagged(tag, verb, "BAD", &format!("unknown status item {item}"))
                        .await;
                }
            };
            parts.push(format!("{item} {value}"));
        }
        self.untagged(&format!(
            "STATUS {} ({})",
            quoted_name(&folder),
            parts.join(" ")
        ))
        .await?;
        self.tagged(tag, verb, "OK", "STATUS completed").await
    }

    /// Maildir letters for IMAP flags in the folder `dir`, keywords added to its
    /// `dovecot-keywords` when `add` (unknown ones are skipped otherwise, and past 26).
    pub(super) async fn letters(
        &self,
        dir: &std::path::Path,
        flags: &[String],
        add: bool,
    ) -> Io<String> {
        let mut letters: String = flags.iter().filter_map(|f| message::letter(f)).collect();
        let keywords: Vec<String> = flags
            .iter()
            .filter(|f| message::is_keyword(f))
            .cloned()
            .collect();
        if keywords.is_empty() {
            return Ok(letters);
        }
        let shared = self.shared.clone();
        let dir = dir.to_path_buf();
        let found = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut out = String::new();
            for k in keywords {
                if let Some(c) = shared.store.keyword_letter(&dir, &k, add)? {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .await
        .map_err(std::io::Error::other)??;
        letters.push_str(&found);
        Ok(letters)
    }

    pub(super) async fn append(
        &mut self,
        tag: &str,
        verb: &'static str,
        mailbox: &str,
        flags: &[String],
        date: Option<&str>,
        bytes: &[u8],
    ) -> Io<()> {
        if self.refuse_read_only(tag, verb).await? {
            return Ok(());
        }
        let (_, dir) = match self.existing_folder(mailbox) {
            Ok(x) => x,
            Err(why) => return self.tagged(tag, verb, "NO", why).await,
        };
        if bytes.len() as u64 > self.shared.max_message_bytes {
            return self
                .tagged(
                    tag,
                    verb,
                    "NO",
                    "[TOOBIG] the message is larger than allowed",
                )
                .await;
        }
        if self
            .refuse_over_quota(tag, verb, bytes.len() as u64)
            .await?
        {
            return Ok(());
        }
        let date = match date {
            Some(d) => match crate::time::parse_internal_date(d) {
                Some(t) => Some(t),
                None => {
                    return self
                        .tagged(
                            tag,
                            verb,
                            "BAD",
                            "the date-time must look like \"17-Jul-1996 02:44:25 -0700\"",
                        )
                        .await;
                }
            },
            None => None,
        };
        // Lock order: the user's lock is taken inside `with_store`; keywords first.
        let letters = match self.letters(&dir, flags, true).await {
            Ok(l) => l,
            Err(e) => return self.storage_failed(tag, verb, &e).await,
        };
        let bytes = bytes.to_vec();
        let size = bytes.len() as u64;
        let target = dir.clone();
        let result = self
            .with_store(move |store, _| store.append(&target, &bytes, &letters, date))
            .await?;
        match result {
            Ok((validity, uid)) => {
                self.shared.quota.charge(&[self.user_name()], size);
                if self.selected.as_ref().is_some_and(|s| s.dir == dir) {
                    self.refresh().await?;
                }
                self.tagged(
                    tag,
                    verb,
                    "OK",
                    &format!("[APPENDUID {validity} {uid}] APPEND completed"),
                )
                .await
            }
            Err(e) => self.storage_failed(tag, verb, &e).await,
        }
    }

    async fn storage_failed(
        &mut self,
        tag: &str,
        verb: &'static str,
        e: &std::io::Error,
    ) -> Io<()> {
        tracing::error!(error = %e, "cannot write a message");
        self.shared.error(Protocol::Imap, Reason::StorageFailed);
        let code = if e.kind() == std::io::ErrorKind::StorageFull {
            "[OVERQUOTA] the store is full"
        } else {
            "[SERVERBUG] the message could not be stored"
        };
        self.tagged(tag, verb, "NO", code).await
    }

    /// The UIDs a UID set names among the selected messages.
    pub(super) fn uids_in(&self, set: &SeqSet) -> Vec<u32> {
        self.matching(set, true)
            .into_iter()
            .filter_map(|i| self.selected.as_ref().map(|s| s.messages[i].uid))
            .collect()
    }

    /// COPY and MOVE (RFC 6851), with COPYUID (RFC 4315).
    pub(super) async fn copy(
        &mut self,
        tag: &str,
        verb: &'static str,
        uid: bool,
        set: &SeqSet,
        mailbox: &str,
        is_move: bool,
    ) -> Io<()> {
        if self.refuse_read_only(tag, verb).await? {
            return Ok(());
        }
        if is_move && self.selected.as_ref().is_some_and(|s| s.read_only) {
            return self
                .tagged(tag, verb, "NO", "[READ-ONLY] mailbox is read-only")
                .await;
        }
        let (_, to) = match self.existing_folder(mailbox) {
            Ok(x) => x,
            Err(why) => return self.tagged(tag, verb, "NO", why).await,
        };
        let Some(sel) = self.selected.as_ref() else {
            return Ok(());
        };
        if is_move && sel.dir == to {
            return self
                .tagged(
                    tag,
                    verb,
                    "NO",
                    "[CANNOT] the message is already in that folder",
                )
                .await;
        }
        let indexes = self.matching(set, uid);
        if indexes.is_empty() {
            return self
                .tagged(tag, verb, "OK", &format!("{verb} completed (no messages)"))
                .await;
        }
        // A move stays within the user's mailbox and its quota (Dovecot checks only a move
        // between quota roots); a copy adds its bytes.
        let copied: u64 = indexes.iter().map(|i| sel.messages[*i].size).sum();
        if !is_move && self.refuse_over_quota(tag, verb, copied).await? {
            return Ok(());
        }
        let Some(sel) = self.selected.as_ref() else {
            return Ok(());
        };
        let from_keywords = sel.keywords.clone();
        let mut chosen: Vec<Message> = indexes.iter().map(|i| sel.messages[*i].clone()).collect();
        // Flags travel; keywords by name, since each folder numbers its own.
        let mut flag_sets = Vec::with_capacity(chosen.len());
        for m in &chosen {
            let mut names: Vec<String> = Vec::new();
            let mut system = String::new();
            for c in m.flags.chars() {
                match c {
                    'a'..='z' => {
                        if let Some(k) = from_keywords.get(c as usize - 'a' as usize) {
                            names.push(k.clone());
                        }
                    }
                    c => system.push(c),
                }
            }
            let mut letters = system;
            if !names.is_empty() {
                match self.letters(&to, &names, true).await {
                    Ok(l) => letters.push_str(&l),
                    Err(e) => return self.storage_failed(tag, verb, &e).await,
                }
            }
            // Flags are file-name letters; a message renamed by another session is found again.
            flag_sets.push(letters);
        }
        let shared = self.shared.clone();
        for m in &mut chosen {
            if !m.path.exists()
                && let Some(p) = shared.store.locate(m)
            {
                m.path = p;
            }
        }
        let sources: Vec<u32> = chosen.iter().map(|m| m.uid).collect();
        let target = to.clone();
        let result = self
            .with_store(move |store, _| store.copy(&chosen, &target, &flag_sets, is_move))
            .await?;
        let (validity, new_uids) = match result {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self
                    .tagged(
                        tag,
                        verb,
                        "NO",
                        "[EXPUNGEISSUED] some messages were expunged meanwhile",
                    )
                    .await;
            }
            Err(e) => return self.storage_failed(tag, verb, &e).await,
        };
        let code = format!(
            "[COPYUID {validity} {} {}]",
            uid_set(&sources),
            uid_set(&new_uids)
        );
        if !is_move {
            self.shared.quota.charge(&[self.user_name()], copied);
            if self.selected.as_ref().is_some_and(|s| s.dir == to) {
                self.refresh().await?;
            }
            return self
                .tagged(tag, verb, "OK", &format!("{code} COPY completed"))
                .await;
        }
        self.untagged(&format!("OK {code} moved")).await?;
        // The moved messages leave this session's view: EXPUNGE, highest first.
        let Some(sel) = self.selected.as_mut() else {
            return Ok(());
        };
        let mut gone = indexes;
        gone.sort_unstable();
        let lines: Vec<String> = gone
            .iter()
            .rev()
            .map(|i| format!("{} EXPUNGE", i + 1))
            .collect();
        let moved: std::collections::HashSet<u32> = sources.iter().copied().collect();
        sel.messages.retain(|m| !moved.contains(&m.uid));
        sel.recent.retain(|uid| !moved.contains(uid));
        for line in lines {
            self.untagged(&line).await?;
        }
        self.tagged(tag, verb, "OK", "MOVE completed").await
    }
}

#[cfg(test)]
mod tests {
    use super::uid_set;

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
    }
}
