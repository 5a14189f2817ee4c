//! Commands on the selected mailbox: FETCH, STORE, SEARCH (and their UID forms) and EXPUNGE.

use std::borrow::Cow;

use super::message;
use super::parse::{DateCmp, DateWhich, FetchItem, SearchKey, SeqSet, StoreMode};
use super::response::{Piece, literal, write_fetch};
use super::{Io, Session};
use crate::store::Message;
use crate::time;

impl Session {
    /// Indexes of the messages a set names (by sequence number or UID).
    pub(super) fn matching(&self, set: &SeqSet, uid: bool) -> Vec<usize> {
        let Some(sel) = &self.selected else {
            return Vec::new();
        };
        let star = if uid {
            sel.messages.last().map(|m| m.uid).unwrap_or(0)
        } else {
            sel.messages.len() as u32
        };
        sel.messages
            .iter()
            .enumerate()
            .filter(|(i, m)| set.contains(if uid { m.uid } else { *i as u32 + 1 }, star))
            .map(|(i, _)| i)
            .collect()
    }

    async fn set_flags(&mut self, i: usize, flags: String) -> Io<()> {
        let sel = self.selected.as_mut().expect("selected");
        let lock = self.shared.store.lock(&sel.user);
        let _guard = lock.lock().await;
        let m = &mut sel.messages[i];
        match self.shared.store.set_flags(m, &flags) {
            // Renamed meanwhile by another session: found again by its unique name.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(path) = self.shared.store.locate(m) else {
                    return Err(e);
                };
                m.path = path;
                self.shared.store.set_flags(m, &flags)
            }
            r => r,
        }
    }

    pub(super) async fn fetch(
        &mut self,
        tag: &str,
        verb: &'static str,
        uid: bool,
        set: &SeqSet,
        items: &[FetchItem],
    ) -> Io<()> {
        let needs_content = items.iter().any(|i| {
            !matches!(
                i,
                FetchItem::Flags | FetchItem::Uid | FetchItem::InternalDate | FetchItem::Rfc822Size
            )
        });
        let sets_seen = items.iter().any(|i| {
            matches!(
                i,
                FetchItem::Rfc822 | FetchItem::Rfc822Text | FetchItem::Body { peek: false, .. }
            )
        });
        let read_only = self.selected.as_ref().is_some_and(|s| s.read_only);
        let mut missing = false;
        for i in self.matching(set, uid) {
            let m = self.selected.as_ref().expect("selected").messages[i].clone();
            let content = if needs_content {
                let mut read = tokio::fs::read(&m.path).await;
                if read
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
                    && let Some(path) = self.shared.store.locate(&m)
                {
                    read = tokio::fs::read(&path).await;
                    if let Some(sel) = self.selected.as_mut() {
                        sel.messages[i].path = path;
                    }
                }
                match read {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "a message is gone");
                        missing = true;
                        continue;
                    }
                }
            } else {
                Vec::new()
            };
            let mut flags_changed = false;
            if sets_seen && !read_only && !m.flags.contains('S') {
                if let Err(e) = self.set_flags(i, format!("{}S", m.flags)).await {
                    tracing::warn!(error = %e, "cannot mark a message seen");
                } else {
                    flags_changed = true;
                }
            }
            let m = self.selected.as_ref().expect("selected").messages[i].clone();
            let keywords = &self.selected.as_ref().expect("selected").keywords;
            let (header, text) = message::split(&content);
            let mut parts: Vec<Piece> = Vec::new();
            if uid && !items.contains(&FetchItem::Uid) {
                parts.push(format!("UID {}", m.uid).into_bytes().into());
            }
            for item in items {
                parts.push(match item {
                    FetchItem::Flags => format!("FLAGS {}", message::flags(&m.flags, keywords))
                        .into_bytes()
                        .into(),
                    FetchItem::Uid => format!("UID {}", m.uid).into_bytes().into(),
                    FetchItem::InternalDate => {
                        format!("INTERNALDATE \"{}\"", time::internal_date(m.mtime))
                            .into_bytes()
                            .into()
                    }
                    FetchItem::Rfc822Size => format!("RFC822.SIZE {}", m.size).into_bytes().into(),
                    FetchItem::Rfc822 => literal("RFC822", content.as_slice()),
                    FetchItem::Rfc822Header => literal("RFC822.HEADER", header),
                    FetchItem::Rfc822Text => literal("RFC822.TEXT", text),
                    FetchItem::Envelope => {
                        let mut p = b"ENVELOPE ".to_vec();
                        p.extend(message::envelope(header));
                        p.into()
                    }
                    FetchItem::BodyStructure { extended } => {
                        let mut p = if *extended {
                            b"BODYSTRUCTURE ".to_vec()
                        } else {
                            b"BODY ".to_vec()
                        };
                        p.extend(message::bodystructure(&content, *extended));
                        p.into()
                    }
                    FetchItem::Body {
                        section, partial, ..
                    } => {
                        let spec = section.spec();
                        // A part that does not exist reads as empty, as in other servers.
                        let bytes = message::section(&content, section).unwrap_or_default();
                        let (label, range) = match partial {
                            Some((start, len)) => {
                                let s = (*start as usize).min(bytes.len());
                                let e = s.saturating_add(*len as usize).min(bytes.len());
                                (format!("BODY[{spec}]<{start}>"), s..e)
                            }
                            None => (format!("BODY[{spec}]"), 0..bytes.len()),
                        };
                        match bytes {
                            Cow::Borrowed(b) => literal(&label, &b[range]),
                            Cow::Owned(b) => literal(&label, b[range].to_vec()),
                        }
                    }
                });
            }
            if flags_changed && !items.contains(&FetchItem::Flags) {
                parts.push(
                    format!("FLAGS {}", message::flags(&m.flags, keywords))
                        .into_bytes()
                        .into(),
                );
            }
            write_fetch(&mut self.conn, i + 1, &parts).await?;
        }
        if missing {
            self.tagged(
                tag,
                verb,
                "NO",
                "some messages were removed by another session",
            )
            .await
        } else {
            self.tagged(tag, verb, "OK", &format!("{verb} completed"))
                .await
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store(
        &mut self,
        tag: &str,
        verb: &'static str,
        uid: bool,
        set: &SeqSet,
        mode: StoreMode,
        silent: bool,
        flags: &[String],
    ) -> Io<()> {
        if self.selected.as_ref().is_some_and(|s| s.read_only) {
            return self
                .tagged(tag, verb, "NO", "[READ-ONLY] mailbox is read-only")
                .await;
        }
        let dir = self.selected.as_ref().expect("selected").dir.clone();
        let letters = match self.letters(&dir, flags, mode != StoreMode::Remove).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record a keyword");
                return self
                    .tagged(tag, verb, "NO", "[SERVERBUG] cannot record the keywords")
                    .await;
            }
        };
        // A new keyword changes the folder's FLAGS.
        let keywords = crate::store::load_keywords(&dir).unwrap_or_default();
        if self
            .selected
            .as_ref()
            .is_some_and(|s| s.keywords != keywords)
        {
            if let Some(sel) = self.selected.as_mut() {
                sel.keywords = keywords.clone();
            }
            self.flag_lines(&keywords).await?;
        }
        for i in self.matching(set, uid) {
            let current = self.selected.as_ref().expect("selected").messages[i]
                .flags
                .clone();
            let new: String = match mode {
                StoreMode::Replace => letters.clone(),
                StoreMode::Add => format!("{current}{letters}"),
                StoreMode::Remove => current.chars().filter(|c| !letters.contains(*c)).collect(),
            };
            if let Err(e) = self.set_flags(i, new).await {
                tracing::warn!(error = %e, "cannot change flags");
                return self
                    .tagged(tag, verb, "NO", "a message was removed by another session")
                    .await;
            }
            if !silent {
                let sel = self.selected.as_ref().expect("selected");
                let m = &sel.messages[i];
                let uid_part = if uid {
                    format!(" UID {}", m.uid)
                } else {
                    String::new()
                };
                let text = format!(
                    "{} FETCH (FLAGS {}{uid_part})",
                    i + 1,
                    message::flags(&m.flags, &sel.keywords)
                );
                self.untagged(&text).await?;
            }
        }
        self.tagged(tag, verb, "OK", &format!("{verb} completed"))
            .await
    }

    pub(super) async fn search(
        &mut self,
        tag: &str,
        verb: &'static str,
        uid: bool,
        keys: &[SearchKey],
    ) -> Io<()> {
        let sel = self.selected.as_ref().expect("selected");
        let all = SearchKey::And(keys.to_vec());
        let needs_content = needs_content(&all);
        let star_seq = sel.messages.len() as u32;
        let star_uid = sel.messages.last().map(|m| m.uid).unwrap_or(0);
        let mut hits = Vec::new();
        for (i, m) in sel.messages.iter().enumerate() {
            let content = if needs_content {
                tokio::fs::read(&m.path).await.unwrap_or_default()
            } else {
                Vec::new()
            };
            let ctx = Ctx {
                m,
                keywords: &sel.keywords,
                seq: i as u32 + 1,
                star_seq,
                star_uid,
                recent: sel.recent.contains(&m.uid),
                content: &content,
            };
            if matches(&all, &ctx) {
                hits.push(if uid { m.uid } else { i as u32 + 1 });
            }
        }
        let mut text = String::from("SEARCH");
        for h in hits {
            text.push_str(&format!(" {h}"));
        }
        self.untagged(&text).await?;
        self.tagged(tag, verb, "OK", &format!("{verb} completed"))
            .await
    }

    /// Removes the messages flagged `\Deleted` (only those with a UID in `only`, for UID
    /// EXPUNGE), reporting each (when `report`) as EXPUNGE; the removals are fsynced.
    pub(super) async fn expunge_only(&mut self, report: bool, only: Option<&[u32]>) -> Io<()> {
        let sel = self.selected.as_mut().expect("selected");
        let lock = self.shared.store.lock(&sel.user);
        let _guard = lock.lock().await;
        let mut gone = Vec::new();
        let mut kept = Vec::new();
        for (i, m) in std::mem::take(&mut sel.messages).into_iter().enumerate() {
            let chosen = only.is_none_or(|uids| uids.contains(&m.uid));
            if chosen && m.flags.contains('T') {
                let mut m = m;
                if !m.path.exists()
                    && let Some(p) = self.shared.store.locate(&m)
                {
                    m.path = p;
                }
                if let Err(e) = self.shared.store.remove(&m) {
                    tracing::error!(error = %e, "cannot expunge a message");
                    kept.push(m);
                    continue;
                }
                sel.recent.remove(&m.uid);
                gone.push(i + 1 - gone.len());
            } else {
                kept.push(m);
            }
        }
        sel.messages = kept;
        if !gone.is_empty()
            && let Err(e) = self.shared.store.sync_removals(&sel.dir)
        {
            tracing::error!(error = %e, "cannot make an expunge durable");
        }
        if report {
            for seq in gone {
                self.untagged(&format!("{seq} EXPUNGE")).await?;
            }
        }
        Ok(())
    }
}

struct Ctx<'a> {
    m: &'a Message,
    keywords: &'a [String],
    seq: u32,
    star_seq: u32,
    star_uid: u32,
    recent: bool,
    content: &'a [u8],
}

fn needs_content(key: &SearchKey) -> bool {
    match key {
        SearchKey::Header(..)
        | SearchKey::Body(_)
        | SearchKey::Text(_)
        | SearchKey::Date(DateWhich::Sent, ..) => true,
        SearchKey::Not(k) => needs_content(k),
        SearchKey::Or(a, b) => needs_content(a) || needs_content(b),
        SearchKey::And(keys) => keys.iter().any(needs_content),
        _ => false,
    }
}

fn matches(key: &SearchKey, c: &Ctx) -> bool {
    match key {
        SearchKey::All => true,
        SearchKey::Flag(letter, set) => c.m.flags.contains(*letter) == *set,
        SearchKey::New => c.recent && !c.m.flags.contains('S'),
        SearchKey::Old => !c.recent,
        SearchKey::Recent => c.recent,
        SearchKey::Seq(set) => set.contains(c.seq, c.star_seq),
        SearchKey::Uid(set) => set.contains(c.m.uid, c.star_uid),
        SearchKey::Not(k) => !matches(k, c),
        SearchKey::Or(a, b) => matches(a, c) || matches(b, c),
        SearchKey::And(keys) => keys.iter().all(|k| matches(k, c)),
        SearchKey::Header(field, text) => {
            let (header, _) = message::split(c.content);
            message::header_value(header, field)
                .is_some_and(|v| message::contains(v.as_bytes(), text))
        }
        SearchKey::Body(text) => message::contains(message::split(c.content).1, text),
        SearchKey::Text(text) => message::contains(c.content, text),
        SearchKey::Larger(n) => c.m.size > *n,
        SearchKey::Smaller(n) => c.m.size < *n,
        SearchKey::Keyword(word, set) => {
            let has = c
                .keywords
                .iter()
                .position(|k| k.eq_ignore_ascii_case(word))
                .is_some_and(|i| c.m.flags.contains((b'a' + i as u8) as char));
            has == *set
        }
        SearchKey::Date(which, cmp, date) => {
            let day = match which {
                DateWhich::Internal => {
                    let (y, m, d) = crate::time::utc_date(c.m.mtime);
                    Some((i32::from(y), i32::from(m), i32::from(d)))
                }
                // The date as written, its time and zone disregarded (RFC 3501 section 6.4.4).
                DateWhich::Sent => {
                    let (header, _) = message::split(c.content);
                    mail_parser::MessageParser::default()
                        .parse_headers(header)
                        .and_then(|m| m.date().copied())
                        .map(|d| (i32::from(d.year), i32::from(d.month), i32::from(d.day)))
                }
            };
            let Some(day) = day else {
                return false;
            };
            let want = (
                i32::from(date.year),
                i32::from(date.month),
                i32::from(date.day),
            );
            match cmp {
                DateCmp::Before => day < want,
                DateCmp::On => day == want,
                DateCmp::Since => day >= want,
            }
        }
    }
}
