//! Which manifests of `clusterStateDir` changed since the last lookup, from an inotify watch on
//! the directory that the lookup itself drains without blocking.
//!
//! The kernel queues an event before the writer's call returns, so a lookup that finds the
//! queue empty knows no file in the directory was written, created, removed or renamed since
//! the last drain: edits still take effect at the next lookup, with one `read(2)` and one
//! `stat(2)` instead of a stat of every manifest. (The `notify` crate reads its queue on a
//! thread of its own and hands the events over later: a lookup right after a write could miss
//! it.) What a watch on the directory cannot see, an edit of a symlinked manifest's target, is
//! left to the caller (see `files.rs`).
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// Names kept at most before [`Changes::All`] stands for them (a writer making a new temporary
/// name per write would otherwise grow the set until the next lookup).
const MAX_NAMES: usize = 4096;

/// What happened in the directory since the last [`DirWatch::changes`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) enum Changes {
    #[default]
    None,
    /// Only these entries (file names in the directory).
    Names(BTreeSet<OsString>),
    /// Anything may have changed: the queue overflowed, or the watch is new.
    All,
}

impl Changes {
    /// Adds `more` (later changes) to these.
    pub(super) fn add(&mut self, more: Changes) {
        match more {
            Changes::None => {}
            Changes::All => *self = Changes::All,
            Changes::Names(names) => names.into_iter().for_each(|n| self.name(n)),
        }
    }

    /// Adds the entry `name`; past [`MAX_NAMES`] every entry counts as changed.
    fn name(&mut self, name: OsString) {
        match self {
            Changes::All => {}
            Changes::Names(names) if names.len() >= MAX_NAMES => *self = Changes::All,
            Changes::Names(names) => {
                names.insert(name);
            }
            Changes::None => *self = Changes::Names(BTreeSet::from([name])),
        }
    }

    /// Whether the entry `name` may have changed.
    pub(super) fn touches(&self, name: &std::ffi::OsStr) -> bool {
        match self {
            Changes::None => false,
            Changes::Names(names) => names.contains(name),
            Changes::All => true,
        }
    }
}

/// An inotify watch on one directory, and which directory (device, inode) it is on.
#[derive(Debug)]
pub(super) struct DirWatch {
    inotify: Inotify,
    dir: (u64, u64),
}

/// The watch is gone: the directory was removed, moved, unmounted or replaced at its path.
#[derive(Debug)]
pub(super) struct Lost;

/// Every change to an entry's content, name or times; and the directory's own end.
fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_DELETE_SELF
        | AddWatchFlags::IN_MOVE_SELF
        | AddWatchFlags::IN_ONLYDIR
}

impl DirWatch {
    /// Watches `dir` (following a symlink to it); events from before this call are not seen,
    /// so the caller reads the directory whole after it.
    pub(super) fn new(dir: &Path) -> std::io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        inotify.add_watch(dir, mask())?;
        let meta = std::fs::metadata(dir)?;
        Ok(Self {
            inotify,
            dir: (meta.dev(), meta.ino()),
        })
    }

    /// Drains the queue: what changed since the last call, or [`Lost`] when this watch can no
    /// longer tell (the caller then makes a new one).
    pub(super) fn changes(&self, dir: &Path) -> Result<Changes, Lost> {
        let gone = AddWatchFlags::IN_IGNORED
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_UNMOUNT;
        let mut changes = Changes::None;
        loop {
            let events = match self.inotify.read_events() {
                Ok(events) => events,
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(_) => return Err(Lost),
            };
            for event in events {
                if event.mask.intersects(gone) {
                    return Err(Lost);
                }
                match event.name {
                    Some(name) if !event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) => {
                        changes.name(name);
                    }
                    _ => changes = Changes::All,
                }
            }
        }
        // The path may name another directory now (a symlink to it retargeted, another
        // directory renamed over it): this watch would see nothing of that one.
        match std::fs::metadata(dir) {
            Ok(m) if (m.dev(), m.ino()) == self.dir => {}
            _ => return Err(Lost),
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn names(list: &[&str]) -> Changes {
        Changes::Names(list.iter().map(OsString::from).collect())
    }

    #[test]
    fn writes_creates_renames_and_removals_are_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.yaml"), "x").unwrap();
        let watch = DirWatch::new(dir.path()).unwrap();
        assert_eq!(watch.changes(dir.path()).unwrap(), Changes::None);
        fs::write(dir.path().join("a.yaml"), "y").unwrap();
        assert_eq!(watch.changes(dir.path()).unwrap(), names(&["a.yaml"]));
        assert_eq!(watch.changes(dir.path()).unwrap(), Changes::None);
        fs::write(dir.path().join("b.tmp"), "z").unwrap();
        fs::rename(dir.path().join("b.tmp"), dir.path().join("b.json")).unwrap();
        fs::remove_file(dir.path().join("a.yaml")).unwrap();
        assert_eq!(
            watch.changes(dir.path()).unwrap(),
            names(&["a.yaml", "b.json", "b.tmp"])
        );
    }

    #[test]
    fn a_removed_or_replaced_directory_loses_the_watch() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state");
        fs::create_dir(&dir).unwrap();
        let watch = DirWatch::new(&dir).unwrap();
        fs::remove_dir(&dir).unwrap();
        assert!(watch.changes(&dir).is_err());

        fs::create_dir(&dir).unwrap();
        let watch = DirWatch::new(&dir).unwrap();
        let other = parent.path().join("other");
        fs::create_dir(&other).unwrap();
        fs::rename(&dir, parent.path().join("old")).unwrap();
        fs::rename(&other, &dir).unwrap();
        assert!(watch.changes(&dir).is_err());
    }

    #[test]
    fn a_retargeted_symlink_to_the_directory_loses_the_watch() {
        let parent = tempfile::tempdir().unwrap();
        let (a, b, link) = (
            parent.path().join("a"),
            parent.path().join("b"),
            parent.path().join("current"),
        );
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let watch = DirWatch::new(&link).unwrap();
        assert_eq!(watch.changes(&link).unwrap(), Changes::None);
        let tmp = parent.path().join("next");
        std::os::unix::fs::symlink(&b, &tmp).unwrap();
        fs::rename(&tmp, &link).unwrap();
        assert!(watch.changes(&link).is_err());
    }

    #[test]
    fn changes_add_up() {
        let mut c = Changes::None;
        c.add(names(&["a"]));
        c.add(Changes::None);
        c.add(names(&["b"]));
        assert_eq!(c, names(&["a", "b"]));
        c.add(Changes::All);
        c.add(names(&["c"]));
        assert_eq!(c, Changes::All);
        let mut many = Changes::None;
        for i in 0..=MAX_NAMES {
            many.add(Changes::Names([OsString::from(i.to_string())].into()));
        }
        assert_eq!(many, Changes::All);
    }

    #[test]
    fn a_missing_directory_cannot_be_watched() {
        assert!(DirWatch::new(Path::new("/nonexistent/multus-rs-state")).is_err());
    }
}
