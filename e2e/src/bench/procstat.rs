//! What `/proc/<pid>` says about the daemon: resident memory (VmRSS, and VmHWM, the peak, which
//! `clear_refs` resets) and CPU time (the process's own: children excluded).
use std::{
    fs,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context, Result};

pub const MIB: f64 = 1024.0 * 1024.0;

fn status(pid: u32) -> Result<String> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))
}

/// A `kB` field of a `/proc/<pid>/status` text, in bytes.
fn field_kb(status: &str, field: &str) -> Result<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .with_context(|| format!("no {field} in /proc/<pid>/status"))
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn status_kb(pid: u32, field: &str) -> Result<u64> {
    field_kb(&status(pid)?, field)
}

/// Resident set size now, bytes.
pub fn rss(pid: u32) -> Result<u64> {
    status_kb(pid, "VmRSS")
}

/// The resident set now, MiB, from one read of `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy)]
pub struct Resident {
    pub rss: f64,
    /// The anonymous part (heap, stacks, relocated data): what the daemon allocated, as
    /// opposed to the binary's pages mapped from the page cache (RssFile), which the kernel may
    /// drop and read back at will.
    pub anon: f64,
}

pub fn resident(pid: u32) -> Result<Resident> {
    let text = status(pid)?;
    Ok(Resident {
        rss: field_kb(&text, "VmRSS")? as f64 / MIB,
        anon: field_kb(&text, "RssAnon")? as f64 / MIB,
    })
}

/// Peak resident set size since start or the last [`reset_peak`], bytes.
pub fn peak_rss(pid: u32) -> Result<u64> {
    status_kb(pid, "VmHWM")
}

/// Resets VmHWM to the current RSS (`echo 5 > clear_refs`).
pub fn reset_peak(pid: u32) -> Result<()> {
    fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("writing /proc/{pid}/clear_refs"))
}

/// The CPU time of the process itself (every thread, those that exited too; not its reaped
/// children), to the nanosecond: its CPU-time clock (`clock_getcpuclockid(3)`), the same sum
/// `/proc/<pid>/stat` gives as utime + stime in 10 ms ticks, which per request are too coarse.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let raw = i32::try_from(pid).context("pid out of range")?;
    let clock = nix::time::clock_getcpuclockid(nix::unistd::Pid::from_raw(raw))
        .with_context(|| format!("the CPU-time clock of process {pid}"))?;
    let t = nix::time::clock_gettime(clock)
        .with_context(|| format!("reading the CPU-time clock of process {pid}"))?;
    Ok(Duration::from(t))
}

/// cutime + cstime: the CPU time of the process's waited-for children (and theirs).
pub fn children_cpu_time(pid: u32) -> Result<Duration> {
    stat_ticks(pid, 13)
}

/// Fields `at` and `at + 1` of /proc/<pid>/stat counted after the command name, as time.
fn stat_ticks(pid: u32, at: usize) -> Result<Duration> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: fields are counted after its ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12, cutime (16)
    // and cstime (17) at 13 and 14.
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .context("utime/stime missing in /proc/<pid>/stat")
    };
    let ticks = tick(at)? + tick(at + 1)?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(100);
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// The summed RSS of the process's live children (the delegates it is running), bytes.
pub fn children_rss(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .filter_map(|child| rss(child).ok())
        .sum()
}

/// Samples the daemon's RSS, and its children's apart, every 10 ms on a thread until stopped;
/// keeps the largest values.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<AtomicU64>,
    max_children: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(AtomicU64::new(0));
        let max_children = Arc::new(AtomicU64::new(0));
        let (s, m, mc) = (stop.clone(), max.clone(), max_children.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Ok(v) = rss(pid) {
                    m.fetch_max(v, Ordering::Relaxed);
                }
                mc.fetch_max(children_rss(pid), Ordering::Relaxed);
                thread::sleep(Duration::from_millis(10));
            }
        });
        Self {
            stop,
            max,
            max_children,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the largest RSS seen of the process and of its children, bytes.
    pub fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.max.load(Ordering::Relaxed),
            self.max_children.load(Ordering::Relaxed),
        )
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss(me).unwrap() > 0);
        assert!(peak_rss(me).unwrap() >= rss(me).unwrap() / 2);
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(50) {}
        assert!(cpu_time(me).unwrap() > Duration::ZERO);
    }
}
