//! The readiness indicator file (upstream's `readinessindicatorfile`, typically the primary
//! CNI's config or a file its agent writes once it is up), followed with inotify through
//! `notify` as `autoconf::watch` follows the CNI config directory, but with no periodic
//! wake-up: the watch sits on the nearest directory of the path that exists, and moves down
//! (or up) as directories on the way appear or go, so a file under a directory that does not
//! exist yet is still seen the moment it is created.
//!
//! A symlinked file is followed by its name only: a change of the link's target elsewhere is
//! seen at the next request, which checks the disk whenever the watched state says missing.
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

/// The file and whether it was there when last looked at.
#[derive(Debug)]
pub struct Indicator {
    path: PathBuf,
    state: watch::Sender<bool>,
}

impl Indicator {
    pub fn new(path: PathBuf) -> Self {
        let present = path.exists();
        Self {
            path,
            state: watch::Sender::new(present),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// As last seen (by the watch, or by a request's own check).
    pub fn present(&self) -> bool {
        *self.state.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.subscribe()
    }

    /// Present as last seen, or else on disk now (off the async workers). A request never
    /// fails on an event that has not arrived yet, or when the watch could not be set up.
    pub async fn confirm(&self) -> bool {
        if self.present() {
            return true;
        }
        let now = tokio::fs::try_exists(&self.path).await.unwrap_or(false);
        if now {
            self.set(true);
        }
        now
    }

    fn set(&self, present: bool) {
        let changed = self
            .state
            .send_if_modified(|s| std::mem::replace(s, present) != present);
        if !changed {
            return;
        }
        if present {
            tracing::info!(path = %self.path.display(), "readiness indicator file present: ADD proceeds");
        } else {
            tracing::warn!(path = %self.path.display(), "readiness indicator file missing: ADD fails with code 11, STATUS with 50");
        }
    }
}

/// Where to watch for `path`: its nearest existing ancestor directory, and the entry in it on
/// the way to `path` (the file itself once its directory exists).
fn anchor(path: &Path) -> (PathBuf, PathBuf) {
    let mut next = path.to_owned();
    loop {
        let parent = match next.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        if parent.is_dir() || parent == Path::new("/") || parent == Path::new(".") {
            return (parent, next);
        }
        next = parent;
    }
}

fn identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// An event about the watched directory itself or the entry on the way to the file (or an
/// error such as a queue overflow) is a reason to look again; reads and other names are not.
fn relevant(event: &notify::Result<Event>, dir: &Path, next: &Path) -> bool {
    let Ok(event) = event else {
        return true;
    };
    if let EventKind::Access(kind) = event.kind
        && kind != AccessKind::Close(AccessMode::Write)
    {
        return false;
    }
    event.paths.is_empty() || event.paths.iter().any(|p| p == next || p == dir)
}

/// The watched directory itself was removed or moved: its inotify watch is gone with it (a new
/// directory at the same path may even get the same inode number, so identity cannot tell).
fn ends_watch(event: &notify::Result<Event>, dir: &Path) -> bool {
    let Ok(event) = event else {
        return false;
    };
    let gone = matches!(
        event.kind,
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    );
    gone && event.paths.iter().any(|p| p == dir)
}

/// The current inotify watch: on which directory (and its identity), for which entry.
struct Current {
    _watcher: RecommendedWatcher,
    dir: PathBuf,
    id: Option<(u64, u64)>,
    ended: Arc<AtomicBool>,
}

fn watch_on(dir: &Path, next: &Path, wake: &mpsc::Sender<()>) -> notify::Result<Current> {
    let (d, n, tx) = (dir.to_owned(), next.to_owned(), wake.clone());
    let ended = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ended);
    let handler = move |event: notify::Result<Event>| {
        if ends_watch(&event, &d) {
            flag.store(true, Ordering::SeqCst);
        }
        if relevant(&event, &d, &n) {
            // One slot: a pending wake-up already covers every later event.
            let _ = tx.try_send(());
        }
    };
    let mut watcher = notify::recommended_watcher(handler)?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(Current {
        _watcher: watcher,
        dir: dir.to_owned(),
        id: identity(dir),
        ended,
    })
}

/// How often in a row the directories on the way may change under a watch being set before the
/// watch stays where it is (each retry moves it one level, so this bounds a path's depth, not a
/// wait).
const MAX_RETRIES: u32 = 64;

fn vanished(e: &notify::Error) -> bool {
    match &e.kind {
        notify::ErrorKind::PathNotFound => true,
        notify::ErrorKind::Io(io) => io.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// Follows the file until the task is aborted. If inotify cannot be used (e.g. the node's
/// `max_user_watches` is exhausted), it says so and stops: requests then check the disk
/// themselves whenever the last seen state is "missing".
pub(super) async fn follow(indicator: Arc<Indicator>) {
    let (wake, mut woken) = mpsc::channel(1);
    let mut current: Option<Current> = None;
    let mut retries = 0;
    loop {
        let (dir, next) = anchor(&indicator.path);
        let stale = current.as_ref().is_none_or(|c| {
            c.ended.load(Ordering::SeqCst) || c.dir != dir || c.id != identity(&dir)
        });
        if stale {
            // Dropping the old watcher removes its inotify watch.
            drop(current.take());
            match watch_on(&dir, &next, &wake) {
                Ok(c) => {
                    tracing::debug!(dir = %dir.display(), path = %indicator.path.display(), "watching for the readiness indicator file");
                    current = Some(c);
                }
                // The directory went between the look and the watch: look again, higher up.
                Err(e) if vanished(&e) && retries < MAX_RETRIES => {
                    retries += 1;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for the readiness indicator file; requests check it on disk instead");
                    indicator.set(indicator.path.exists());
                    return;
                }
            }
        }
        // Looked at again once the watch is in place, so no change between the look and the
        // watch is missed: a directory on the way made meanwhile moves the watch down now.
        if anchor(&indicator.path).0 != dir && retries < MAX_RETRIES {
            retries += 1;
            continue;
        }
        retries = 0;
        indicator.set(indicator.path.exists());
        if woken.recv().await.is_none() {
            return;
        }
    }
}
