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
//! A thread's cache of freed chunks (glibc's tcache) goes back to its arena only when the thread
//! exits, and tokio's blocking threads exit 10 s after their last task: after that trim. So the
//! first trim after some work leaves one more due, armed by each thread that stops
//! ([`thread_stopped`], the runtime's stop hook) and run `QUIET` after the last of them. That
//! second trim follows no work, so the thread it ran on arms nothing when it exits in turn.
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
    /// Whether a request ended or an event was applied since the last trim.
    worked: AtomicBool,
    /// Whether a trim ran after work while the threads that did it may still be alive: their
    /// exits arm the next trim.
    exits_due: AtomicBool,
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

/// A runtime thread is stopping (tokio's `on_thread_stop`): if it may have worked before the last
/// trim, its freed chunks reach its arena now, so the next trim is armed.
pub fn thread_stopped() {
    ACTIVITY.thread_stopped();
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
            worked: AtomicBool::new(false),
            exits_due: AtomicBool::new(false),
            ended: Notify::const_new(),
        }
    }

    fn busy(&'static self) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self)
    }

    fn quiet_now(&self) {
        self.worked.store(true, Ordering::Release);
        self.arm();
    }

    fn thread_stopped(&self) {
        if self.exits_due.load(Ordering::Acquire) {
            self.arm();
        }
    }

    /// The quiet period starts over and the trim task counts down to a trim.
    fn arm(&self) {
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
            let after_work = self.worked.swap(false, Ordering::AcqRel);
            self.exits_due.store(after_work, Ordering::Release);
            match tokio::task::spawn_blocking(release_free_heap).await {
                Ok(released) => {
                    tracing::debug!(released, after_work, "quiet after a burst: heap trimmed")
                }
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

    /// Lets the paused clock run `secs` (the trim task's sleeps, its blocking trim).
    async fn pass(secs: u64) {
        for _ in 0..secs * 10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn thread_exits_after_work_trim_once_more_then_stop() {
        static A: Activity = Activity::new();
        let task = tokio::spawn(A.trim_after_bursts(Duration::from_secs(3)));
        A.thread_stopped();
        assert!(
            !A.armed.load(Ordering::Acquire),
            "a thread stop armed before any work"
        );
        drop(A.busy());
        pass(4).await;
        assert!(
            !A.armed.load(Ordering::Acquire),
            "the trim after the work did not run"
        );
        assert!(A.exits_due.load(Ordering::Acquire));
        A.thread_stopped();
        assert!(
            A.armed.load(Ordering::Acquire),
            "a worker's exit did not arm a trim"
        );
        pass(4).await;
        assert!(
            !A.armed.load(Ordering::Acquire),
            "the trim after the exits did not run"
        );
        assert!(!A.exits_due.load(Ordering::Acquire));
        // The thread that ran that trim did no work: its exit must not start a cycle.
        A.thread_stopped();
        assert!(
            !A.armed.load(Ordering::Acquire),
            "a trim's own thread re-armed the trim"
        );
        task.abort();
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
