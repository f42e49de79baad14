//! Gives the heap a burst of requests freed back to the kernel once the daemon is idle again.
//!
//! glibc keeps what a thread frees in that thread's arena for reuse and returns memory to the
//! kernel only from the top of a heap, so after a burst (a node reboot starting every pod at
//! once) the daemon would stay at its peak resident size for good, as upstream Multus does.
//! `malloc_trim(0)` walks every arena and hands their free pages back. It runs once per burst,
//! [`QUIET`] after the last request ended: never while requests are in flight (a new one
//! postpones it) and never while idle (no timer is armed then, so an idle daemon stays at 0 CPU).
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// How long the daemon must have had no request in flight before the trim: long enough that
/// the pods of one burst, whose CNI calls come in waves, are one burst.
pub const QUIET: Duration = Duration::from_secs(3);

/// Counts the requests in flight; clones share the count.
#[derive(Debug, Clone, Default)]
pub struct HeapTrim {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    busy: AtomicUsize,
    /// Woken each time the count drops to zero.
    ended: Notify,
}

/// A request in flight, until dropped (however the request ends).
#[derive(Debug)]
pub struct Busy(Arc<Inner>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.ended.notify_one();
        }
    }
}

impl HeapTrim {
    /// Marks a request in flight until the guard drops.
    pub fn busy(&self) -> Busy {
        self.inner.busy.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(&self.inner))
    }

    /// Starts the task that trims the heap `quiet` after each burst; it ends when aborted.
    pub fn spawn(&self, quiet: Duration) -> AbortHandle {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(trim_after_bursts(inner, quiet)).abort_handle()
    }
}

async fn trim_after_bursts(inner: Arc<Inner>, quiet: Duration) {
    loop {
        inner.ended.notified().await;
        // Each time the last request ends again, the quiet period starts over.
        loop {
            tokio::select! {
                () = inner.ended.notified() => {}
                () = tokio::time::sleep(quiet) => break,
            }
        }
        if inner.busy.load(Ordering::Acquire) > 0 {
            // A request started and is still running: its end wakes us again.
            continue;
        }
        match tokio::task::spawn_blocking(release_free_heap).await {
            Ok(released) => tracing::debug!(released, "idle after a burst: heap trimmed"),
            Err(e) => tracing::warn!(error = %e, "heap trim task failed"),
        }
    }
}

/// Returns the free pages of every glibc arena to the kernel; whether any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_free_heap() -> bool {
    // SAFETY: malloc_trim takes no pointer and has no precondition: it only walks glibc's own
    // arenas, each under its lock, and is safe to call from any thread at any time.
    unsafe { nix::libc::malloc_trim(0) == 1 }
}

/// Other C libraries (musl) return freed memory themselves and have no such call.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn counts_requests_and_wakes_when_the_last_one_ends() {
        let trim = HeapTrim::default();
        let a = trim.busy();
        let b = trim.clone().busy();
        assert_eq!(trim.inner.busy.load(Ordering::Acquire), 2);
        drop(a);
        let woken = tokio::time::timeout(Duration::from_millis(10), trim.inner.ended.notified());
        assert!(woken.await.is_err(), "woken with a request still in flight");
        drop(b);
        let woken = tokio::time::timeout(Duration::from_millis(10), trim.inner.ended.notified());
        assert!(woken.await.is_ok(), "not woken when the last request ended");
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_freed_burst_is_released() {
        // Many small blocks freed below one that stays: glibc's free() cannot return them from
        // the top of the heap, malloc_trim can.
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 512]).collect();
        let keep = vec![1u8; 512];
        drop(blocks);
        assert!(release_free_heap(), "nothing released after freeing ~10 MB");
        assert_eq!(keep[0], 1);
    }
}
