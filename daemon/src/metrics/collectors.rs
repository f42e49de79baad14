//! Metrics computed on each scrape: the process's CPU/RSS/fds from /proc/self (prometheus-client
//! has no process collector) and the number of cache records on disk.
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::EntryCount;

/// The standard `process_*` families (the names Go's collector and dashboards use).
#[derive(Debug)]
pub(super) struct Process;

/// What /proc/self/stat says, in Prometheus units.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ProcStat {
    pub cpu_seconds: f64,
    pub rss_bytes: i64,
    pub virtual_bytes: i64,
    pub start_ticks: u64,
}

/// Parses /proc/<pid>/stat; the command name (field 2) may hold spaces and parentheses, so the
/// fields are counted after its last `)`.
pub(super) fn parse_stat(stat: &str, ticks_per_second: f64, page_size: i64) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); field n is index n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let utime = num(14)?;
    let stime = num(15)?;
    Some(ProcStat {
        cpu_seconds: (utime + stime) as f64 / ticks_per_second,
        start_ticks: num(22)?,
        virtual_bytes: i64::try_from(num(23)?).ok()?,
        rss_bytes: i64::try_from(num(24)?).ok()?.saturating_mul(page_size),
    })
}

fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn sysconf(var: nix::unistd::SysconfVar, fallback: i64) -> i64 {
    nix::unistd::sysconf(var).ok().flatten().unwrap_or(fallback)
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let ticks = sysconf(nix::unistd::SysconfVar::CLK_TCK, 100) as f64;
        let page = sysconf(nix::unistd::SysconfVar::PAGE_SIZE, 4096);
        let Some(stat) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s, ticks, page))
        else {
            // Not Linux or /proc not mounted: the families are left out, the scrape still works.
            return Ok(());
        };
        let cpu = ConstCounter::new(stat.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            stat.rss_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            stat.virtual_bytes,
        )?;
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let n = i64::try_from(fds.count()).unwrap_or(i64::MAX);
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors",
                n,
            )?;
        }
        if let Some(boot) = boot_time() {
            let start = boot as f64 + stat.start_ticks as f64 / ticks;
            let g = ConstGauge::new(start);
            g.encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since the epoch in seconds",
                None,
                g.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

/// Cache records on disk (one per attached container), counted at scrape time so the number is
/// what DEL would find, whoever wrote the files.
pub(super) struct CacheEntries {
    count: EntryCount,
}

impl CacheEntries {
    pub fn new(count: EntryCount) -> Self {
        Self { count }
    }
}

impl std::fmt::Debug for CacheEntries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheEntries").finish_non_exhaustive()
    }
}

impl Collector for CacheEntries {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(n) = (self.count)() else {
            return Ok(());
        };
        gauge(
            &mut encoder,
            "multus_rs_cache_entries",
            "Containers with a cache record (what DEL would tear down)",
            i64::try_from(n).unwrap_or(i64::MAX),
        )
    }
}
