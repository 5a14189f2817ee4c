//! Picking up changes to the selected folder without redoing all the work every time: before
//! each command that does not use sequence numbers, while IDLE polls every 2 s, and on NOOP and
//! CHECK.
//!
//! - [`Stamp`]: the modification times of the folder's `new/` and `cur/` (each Maildir++ folder
//!   has its own). A delivery, a flag change or an expunge by another session (or another
//!   program on the volume, such as Dovecot) renames or removes a file there, which changes the
//!   directory's time; while the stamp stays the same, and the store's change counter for the
//!   folder too, the folder is not scanned at all. A directory changed less than [`RACY`] before
//!   the stamp was taken is not trusted (a change within the same clock tick would keep the same
//!   time), as git does with its index: it is scanned once more when that time has settled.
//! - [`merge`]: a rescan's result folded into the session's list by UID with a map, in linear
//!   time (it was a search of the whole list per message: quadratic), with what the client must
//!   be told: expunges, flag changes, new messages.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::store::Message;

/// How recent a change may be for the stamp to be trusted.
const RACY: Duration = Duration::from_secs(1);

/// The times of a Maildir's `new/` and `cur/`, and when they were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    new: Option<SystemTime>,
    cur: Option<SystemTime>,
    taken: SystemTime,
}

impl Stamp {
    pub fn of(maildir: &Path) -> Stamp {
        let time = |sub: &str| {
            std::fs::metadata(maildir.join(sub))
                .and_then(|m| m.modified())
                .ok()
        };
        Stamp {
            new: time("new"),
            cur: time("cur"),
            taken: SystemTime::now(),
        }
    }

    /// Whether the folder may be taken as unchanged since `self` was taken, by `now` (a fresh
    /// stamp). Different times: changed. The same times, settled when `self` was taken (at
    /// least [`RACY`] old): unchanged. The same times, still recent when `self` was taken (a
    /// change in the same clock tick after the scan would not show): unchanged until they are
    /// `RACY` old at `now`, then changed once, so that one rescan settles it. A change by another
    /// program is so seen at most `RACY` late, and a busy folder is not rescanned at every
    /// command (it was, for a second after each change: every FETCH of a session that had
    /// just appended walked the whole folder).
    pub fn unchanged(&self, now: &Stamp) -> bool {
        let settled_at = |at: SystemTime, t: Option<SystemTime>| {
            t.is_some_and(|t| at.duration_since(t).is_ok_and(|d| d >= RACY))
        };
        if self.new != now.new || self.cur != now.cur {
            return false;
        }
        let settled = |at| settled_at(at, self.new) && settled_at(at, self.cur);
        settled(self.taken) || !settled(now.taken)
    }
}

/// What a rescan changed in the session's list of a folder.
#[derive(Debug, Default)]
pub(super) struct Merged {
    /// Sequence numbers of the messages gone (expunged by another session), highest first, so
    /// each stays valid as the client applies them in order (RFC 3501 section 7.4.1).
    pub expunged: Vec<usize>,
    /// Their UIDs.
    pub expunged_uids: Vec<u32>,
    /// Sequence numbers (after the expunges) of the messages whose flags changed.
    pub flags_changed: Vec<usize>,
    /// Messages above the highest UID known: new.
    pub added: Vec<Message>,
}

/// Folds `fresh` (a rescan, sorted by UID) into `messages`: known ones take their new path and
/// flags, those missing from the rescan are removed, those above `last` (the highest UID known)
/// are returned as new. Linear in both (it was a search of the whole list per message:
/// quadratic).
pub(super) fn merge(messages: &mut Vec<Message>, fresh: Vec<Message>, last: u32) -> Merged {
    let mut by_uid: HashMap<u32, Message> = HashMap::with_capacity(fresh.len());
    let mut merged = Merged::default();
    for f in fresh {
        if f.uid > last {
            merged.added.push(f);
        } else {
            by_uid.insert(f.uid, f);
        }
    }
    for (i, m) in messages.iter().enumerate().rev() {
        if !by_uid.contains_key(&m.uid) {
            merged.expunged.push(i + 1);
            merged.expunged_uids.push(m.uid);
        }
    }
    if !merged.expunged.is_empty() {
        messages.retain(|m| by_uid.contains_key(&m.uid));
    }
    for (i, m) in messages.iter_mut().enumerate() {
        if let Some(f) = by_uid.remove(&m.uid) {
            m.path = f.path;
            if m.flags != f.flags {
                m.flags = f.flags;
                merged.flags_changed.push(i + 1);
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_sees_a_delivery_and_distrusts_recent_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["new", "cur"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        let just_made = Stamp::of(dir.path());
        assert!(
            just_made.unchanged(&Stamp::of(dir.path())),
            "changed within the last second: the rescan waits until the times settle"
        );
        let later = Stamp {
            taken: just_made.taken + RACY + Duration::from_millis(10),
            ..Stamp::of(dir.path())
        };
        assert!(
            !just_made.unchanged(&later),
            "once settled, the recent times are not trusted: one rescan"
        );
        let old = SystemTime::now() - Duration::from_secs(60);
        for sub in ["new", "cur"] {
            let f = std::fs::File::open(dir.path().join(sub)).expect("open");
            f.set_modified(old).expect("set mtime");
        }
        let settled = Stamp::of(dir.path());
        assert!(settled.unchanged(&Stamp::of(dir.path())));
        std::fs::write(dir.path().join("new/1"), b"x").expect("deliver");
        assert!(!settled.unchanged(&Stamp::of(dir.path())));
    }

    fn message(uid: u32, flags: &str) -> Message {
        Message {
            base: format!("m{uid}"),
            path: format!("cur/m{uid}:2,{flags}").into(),
            flags: flags.into(),
            size: 1,
            mtime: SystemTime::UNIX_EPOCH,
            uid,
        }
    }

    #[test]
    fn merge_reports_expunges_highest_first_flag_changes_after_them_and_new_mail() {
        let mut known: Vec<Message> = (1..=5).map(|uid| message(uid, "")).collect();
        // 2 and 4 expunged elsewhere, 5 flagged, 6 and 7 delivered.
        let fresh = vec![
            message(1, ""),
            message(3, ""),
            message(5, "F"),
            message(6, ""),
            message(7, "S"),
        ];
        let merged = merge(&mut known, fresh, 5);
        assert_eq!(merged.expunged, [4, 2]);
        assert_eq!(merged.expunged_uids, [4, 2]);
        assert_eq!(known.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 3, 5]);
        assert_eq!(merged.flags_changed, [3], "UID 5 is now message 3");
        assert_eq!(known[2].path, std::path::Path::new("cur/m5:2,F"));
        assert_eq!(
            merged.added.iter().map(|m| m.uid).collect::<Vec<_>>(),
            [6, 7]
        );
        let unchanged = merge(&mut known.clone(), known.clone(), 5);
        assert!(unchanged.expunged.is_empty() && unchanged.flags_changed.is_empty());
    }
}
