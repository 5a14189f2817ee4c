//! Picking up changes to the selected mailbox without redoing all the work every time: IDLE
//! polls every 2 s, NOOP and CHECK on demand.
//!
//! - [`Stamp`]: the modification times of `new/` and `cur/`. A delivery, a flag change or an
//!   expunge by another session renames or removes a file there, which changes the directory's
//!   time; while the stamp stays the same the mailbox is not scanned at all. A directory changed
//!   less than [`RACY`] before the stamp was taken is not trusted (a change within the same
//!   clock tick would keep the same time), as git does with its index.
//! - [`merge`]: a rescan's result folded into the session's list by UID with a map, in linear
//!   time (it was a search of the whole list per message: quadratic).

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

    /// Whether `now` (a fresh stamp) proves nothing changed since `self` was taken.
    pub fn unchanged(&self, now: &Stamp) -> bool {
        let settled = |t: Option<SystemTime>| {
            t.is_some_and(|t| self.taken.duration_since(t).is_ok_and(|d| d >= RACY))
        };
        self.new == now.new && self.cur == now.cur && settled(self.new) && settled(self.cur)
    }
}

/// Folds `fresh` (a rescan, sorted by UID) into `messages`: known ones take their new path and
/// flags; those above `last` (the highest UID known) are returned as new. Linear in both.
pub(super) fn merge(messages: &mut [Message], fresh: Vec<Message>, last: u32) -> Vec<Message> {
    let mut by_uid: HashMap<u32, Message> = HashMap::with_capacity(fresh.len());
    let mut added = Vec::new();
    for f in fresh {
        if f.uid > last {
            added.push(f);
        } else {
            by_uid.insert(f.uid, f);
        }
    }
    for m in messages.iter_mut() {
        if let Some(f) = by_uid.remove(&m.uid) {
            m.path = f.path;
            m.flags = f.flags;
        }
    }
    added
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
            !just_made.unchanged(&Stamp::of(dir.path())),
            "changed within the last second: not trusted"
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
}
