//! Following one directory with inotify (`notify`): a burst of events becomes one wake-up
//! after it settles, and a slow periodic wake-up catches anything inotify dropped (queue
//! overflow, a directory that did not exist yet or was replaced, taking its watch with it).
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Quiet time that ends a burst (a `cp`, an editor's save, a ConfigMap's symlink swap).
const SETTLE: Duration = Duration::from_millis(200);
/// A stream of events is still answered this soon after it started.
const MAX_DELAY: Duration = Duration::from_secs(2);
/// Wake up this often without any event.
const RESYNC: Duration = Duration::from_secs(30);

/// Paths whose events never matter (our own output and its temp files).
pub type Ignore = dyn Fn(&Path) -> bool + Send + Sync;

/// A watched directory.
pub struct DirWatch {
    dir: PathBuf,
    ignore: std::sync::Arc<Ignore>,
    tx: mpsc::Sender<()>,
    rx: mpsc::Receiver<()>,
    /// The watch and the identity (dev, inode) of the directory it was put on.
    watcher: Option<(RecommendedWatcher, (u64, u64))>,
}

fn identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// Reads and our own metadata changes are no change; everything else (including an error such
/// as a queue overflow) is a reason to look again.
fn relevant(event: &notify::Result<Event>, ignore: &Ignore) -> bool {
    let Ok(event) = event else {
        return true;
    };
    if let EventKind::Access(kind) = event.kind
        && kind != AccessKind::Close(AccessMode::Write)
    {
        return false;
    }
    event.paths.is_empty() || !event.paths.iter().all(|p| ignore(p))
}

impl DirWatch {
    /// Watches `dir`; when that fails now, it is retried at every periodic wake-up.
    pub fn new(dir: PathBuf, ignore: std::sync::Arc<Ignore>) -> Self {
        // One slot: a pending wake-up already covers every later event.
        let (tx, rx) = mpsc::channel(1);
        let mut w = Self {
            dir,
            ignore,
            tx,
            rx,
            watcher: None,
        };
        w.ensure_watch();
        w
    }

    fn ensure_watch(&mut self) {
        // A directory removed or replaced took its inotify watch with it.
        let now = identity(&self.dir);
        if now.is_some() && self.watcher.as_ref().map(|(_, id)| *id) == now {
            return;
        }
        let tx = self.tx.clone();
        let ignore = std::sync::Arc::clone(&self.ignore);
        let handler = move |event: notify::Result<Event>| {
            if relevant(&event, &*ignore) {
                let _ = tx.try_send(());
            }
        };
        let watched = notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(&self.dir, RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        match watched {
            Ok(w) => {
                tracing::debug!(dir = %self.dir.display(), "watching for CNI config changes");
                self.watcher = now.map(|id| (w, id));
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, retry_seconds = RESYNC.as_secs(), "cannot watch the directory; looking again periodically");
                self.watcher = None;
            }
        }
    }

    /// Resolves once a burst of changes has settled, or after the periodic interval.
    pub async fn changed(&mut self) {
        tokio::select! {
            _ = self.rx.recv() => {}
            () = tokio::time::sleep(RESYNC) => {
                self.ensure_watch();
                return;
            }
        }
        let deadline = Instant::now() + MAX_DELAY;
        loop {
            let until = (Instant::now() + SETTLE).min(deadline);
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(())) if Instant::now() < deadline => continue,
                _ => break,
            }
        }
    }
}
