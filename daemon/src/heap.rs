//! Gives the heap a burst freed back to the kernel once the daemon is quiet again.
//!
//! glibc keeps what a thread frees in that thread's arena for reuse and returns memory to the
//! kernel only from the top of a heap, so after a burst (a node reboot starting every pod at
//! once, a watch delivering thousands of pods) the daemon would stay at its peak resident size
//! for good, as upstream Multus does. `malloc_trim(0)` walks every arena and hands their free
//! pages back. It runs once per burst, [`QUIET`] after the last request ended or the last watch
//! event was applied: never while a request is in flight (its end arms it again) and never while
//! idle (no timer is armed then, so an idle daemon stays at 0 CPU).
//!
//! The heap is one per process, and so is what watches it: the engine's requests and the
//! sources' watches report to the same [`busy`] and [`touched`].
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// How long the daemon must have been quiet before the trim: longer than the pauses inside one
/// burst (between its waves of requests, between its ADDs and its DELs), so a burst is trimmed
/// once, after it, and its next wave does not fault back in what a trim in between returned.
pub const QUIET: Duration = Duration::from_secs(3);

static ACTIVITY: Activity = Activity::new();

#[derive(Debug)]
struct Activity {
    busy: AtomicUsize,
    /// When the daemon last became quiet (the last request ended, a watch event was applied),
    /// in milliseconds after [`epoch`]. Moving it on wakes nobody: the trim task reads it when
    /// its sleep ends, so a flood of events costs a store each, not a task wake-up each.
    quiet_since_ms: AtomicU64,
    /// Whether the trim task is counting down to a trim; only the step that arms it wakes it.
    armed: AtomicBool,
    /// Wakes the trim task when the daemon becomes quiet while it is not armed.
    ended: Notify,
}

/// A request in flight, until dropped (however the request ends).
#[derive(Debug)]
pub struct Busy(&'static Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.busy.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.quiet_now();
        }
    }
}

/// Marks a request in flight until the guard drops.
pub fn busy() -> Busy {
    ACTIVITY.busy()
}

/// Something allocated and is done (a watch event applied): the quiet period starts over.
pub fn touched() {
    ACTIVITY.quiet_now();
}

/// Starts the task that trims the heap `quiet` after each burst; it ends when aborted.
pub fn spawn(quiet: Duration) -> AbortHandle {
    tokio::spawn(ACTIVITY.trim_after_bursts(quiet)).abort_handle()
}

/// The time base of [`Activity::quiet_since_ms`] (tokio's clock, so tests can pause it).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Activity {
    const fn new() -> Self {
        Self {
            busy: AtomicUsize::new(0),
            quiet_since_ms: AtomicU64::new(0),
            armed: AtomicBool::new(false),
            ended: Notify::const_new(),
        }
    }

    fn busy(&'static self) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self)
    }

    fn quiet_now(&self) {
        let ms = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        self.quiet_since_ms.store(ms, Ordering::Release);
        if !self.armed.swap(true, Ordering::AcqRel) {
            self.ended.notify_one();
        }
    }

    async fn trim_after_bursts(&'static self, quiet: Duration) {
        loop {
            self.ended.notified().await;
            // Until `quiet` after the daemon last became quiet; each later request or event
            // moves that on, read here when the sleep ends.
            loop {
                let since = Duration::from_millis(self.quiet_since_ms.load(Ordering::Acquire));
                let due = epoch() + since + quiet;
                if Instant::now() >= due {
                    break;
                }
                tokio::time::sleep_until(due).await;
            }
            // Disarmed before the check: a request ending from here on arms (and wakes) again.
            self.armed.store(false, Ordering::SeqCst);
            if self.busy.load(Ordering::Acquire) > 0 {
                // A request started and is still running: its end wakes us again.
                continue;
            }
            match tokio::task::spawn_blocking(release_free_heap).await {
                Ok(released) => tracing::debug!(released, "quiet after a burst: heap trimmed"),
                Err(e) => tracing::warn!(error = %e, "heap trim task failed"),
            }
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
    async fn wakes_only_when_the_last_request_ends() {
        static A: Activity = Activity::new();
        let (first, second) = (A.busy(), A.busy());
        assert_eq!(A.busy.load(Ordering::Acquire), 2);
        drop(first);
        let woken = tokio::time::timeout(Duration::from_millis(10), A.ended.notified());
        assert!(woken.await.is_err(), "woken with a request still in flight");
        drop(second);
        let woken = tokio::time::timeout(Duration::from_millis(10), A.ended.notified());
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
