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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ignoring(name: &'static str) -> std::sync::Arc<Ignore> {
        std::sync::Arc::new(move |p: &Path| p.file_name().is_some_and(|f| f == name))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_wakes_once_settled_and_ignored_paths_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DirWatch::new(dir.path().to_owned(), ignoring("00-multus.conf"));
        std::fs::write(dir.path().join("00-multus.conf"), "{}").unwrap();
        let quiet = tokio::time::timeout(Duration::from_secs(1), w.changed()).await;
        assert!(quiet.is_err(), "an ignored path woke the watch");

        let started = Instant::now();
        for i in 0..5 {
            std::fs::write(dir.path().join("10-a.conf"), format!("{{\"i\":{i}}}")).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .expect("a write wakes the watch");
        assert!(started.elapsed() >= SETTLE, "woke before the burst settled");
        // The burst was one wake-up.
        let again = tokio::time::timeout(Duration::from_millis(500), w.changed()).await;
        assert!(again.is_err(), "one burst woke the watch twice");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_directory_that_appears_later_is_watched_after_a_resync() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("net.d");
        let mut w = DirWatch::new(dir.clone(), ignoring("none"));
        assert!(w.watcher.is_none());
        std::fs::create_dir(&dir).unwrap();
        w.ensure_watch();
        assert!(w.watcher.is_some());
        std::fs::write(dir.join("10-a.conf"), "{}").unwrap();
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .expect("a write wakes the watch");
    }
}
