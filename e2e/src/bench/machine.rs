//! The machine a run was made on, read from the machine itself: CPU, cores, kernel, memory,
//! load, and the versions of what the figures depend on (containerd, runc, the CNI plugins).
use std::{fs, path::Path, process::Command};

use serde::Serialize;

use crate::bins;

#[path = "../../../daemon/link_order.rs"]
mod link_order;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub memory_gib: f64,
    pub load_at_start: String,
    pub load_at_end: String,
    pub containerd: String,
    pub runc: String,
    pub cni_plugins: String,
    pub rustc: String,
    pub commit: String,
    /// Whether daemon/link-order.txt applies to this toolchain, Cargo.lock and features.
    pub link_order: String,
}

/// The first line of a command's stdout, or what went wrong.
fn first_line(cmd: &str, args: &[&str]) -> String {
    match Command::new(cmd).args(args).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
        Ok(o) => format!(
            "({cmd} failed: {})",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("({cmd}: {e})"),
    }
}

pub fn load() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let mem_kb: f64 = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        let rustc = rustc();
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            memory_gib: mem_kb / 1024.0 / 1024.0,
            load_at_start: load(),
            load_at_end: String::new(),
            containerd: first_line("containerd", &["--version"]),
            runc: first_line("runc", &["--version"]),
            cni_plugins: format!(
                "containernetworking-plugins {}",
                first_line(
                    "dpkg-query",
                    &["-W", "-f", "${Version}", "containernetworking-plugins"]
                )
            ),
            link_order: link_order(&rustc),
            rustc,
            // The checkout the command runs from (the binaries may come from a copy of it).
            commit: first_line("git", &["describe", "--always", "--dirty"]),
        }
    }
}

/// Whether the daemon built from this checkout has its functions laid out as daemon/build.rs
/// lays them out: the list must name the symbols of this rustc, this Cargo.lock and these
/// dependency features, or the memory figures are those of an unordered binary. `rustc` is
/// `rustc --version`.
fn link_order(rustc: &str) -> String {
    let root = bins::workspace_root();
    let list = fs::read_to_string(root.join("daemon").join(link_order::FILE)).unwrap_or_default();
    let made = link_order::Header::of(&list);
    if made.made_with != rustc {
        return format!(
            "not applied: daemon/link-order.txt was made with {}",
            made.made_with
        );
    }
    match link_order::Current::of(rustc, Path::new(env!("CARGO")), &root) {
        Err(e) => format!("unknown: {e}"),
        Ok(now) if made.made_for != now.lock => {
            "stale: daemon/link-order.txt was made for another Cargo.lock".into()
        }
        Ok(now) if made.features != now.features => {
            "stale: daemon/link-order.txt was made for other dependency features".into()
        }
        Ok(_) => "daemon/link-order.txt, made for this rustc, Cargo.lock and features".into(),
    }
}

/// The header daemon/link-order.txt starts with when made from this checkout now, for
/// `bench --link-order-header` (e2e/link-order).
pub fn link_order_header() -> Result<String, String> {
    link_order::Current::of(&rustc(), Path::new(env!("CARGO")), &bins::workspace_root())
        .map(|now| now.to_string())
}

/// `rustc --version` of the rustc on PATH.
fn rustc() -> String {
    first_line("rustc", &["--version"])
}
