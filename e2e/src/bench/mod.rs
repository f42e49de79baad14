//! The on-demand benchmark (`cargo run --release -p multus-e2e --bin bench -- --out <dir>`): the
//! shim's exec cost, the attach overhead of shim → daemon → delegates next to the same delegates
//! exec'd directly as libcni does (standalone, Kubernetes path, containerd), a burst of
//! concurrent pods, and the daemon's memory and CPU. Rounds alternate between the sides so load
//! hits both alike. Not part of the test suite: nothing here is a timed assertion; the report
//! puts each figure beside the target.
pub mod attach;
pub mod burst;
pub mod cri;
pub mod direct;
pub mod exec;
pub mod floor;
pub mod kube;
pub mod machine;
pub mod memory;
pub mod nodethread;
pub mod plot;
pub mod procstat;
pub mod release_build;
pub mod report;
pub mod spans;
pub mod stats;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::{
    daemon::{Daemon, Layout},
    netns::Netns,
    scenario::Cluster,
};

/// The sections a run may be limited to (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Exec,
    Attach,
    Kube,
    Containerd,
    Burst,
    Memory,
    /// The workspace's release build from scratch (only with `--only build`: minutes of every core).
    Build,
}

pub const ALL_PARTS: [Part; 6] = [
    Part::Exec,
    Part::Attach,
    Part::Kube,
    Part::Containerd,
    Part::Burst,
    Part::Memory,
];

/// The bench's flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "bench",
    about = "multus-rs benchmarks, side by side (run as root)"
)]
pub struct Opts {
    /// Directory the report is written to (created if missing).
    #[arg(long, default_value = "bench-report")]
    pub out: PathBuf,
    /// Base name of the report files: <name>.md, <name>.json, <name>.svg
    /// (`--out docs --name benchmarks` regenerates docs/benchmarks.md).
    #[arg(long, default_value = "report")]
    pub name: String,
    /// A short run (few rounds, short idle windows): rough figures, for trying the command.
    #[arg(long)]
    pub quick: bool,
    /// Rounds per side of each attach comparison (default 100, --quick 10).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Pods in the burst.
    #[arg(long, default_value_t = 200)]
    pub burst: usize,
    /// ADD/DEL cycles of the leak check (default 10000, --quick 500).
    #[arg(long)]
    pub cycles: Option<usize>,
    /// A static shim already built (as the Dockerfile builds it) instead of building one.
    #[arg(long, conflicts_with = "no_static_shim")]
    pub static_shim: Option<PathBuf>,
    /// Leave the static shim out (no extra build); the shim targets are then judged on the
    /// `cargo build --release` shim, and the report says so.
    #[arg(long)]
    pub no_static_shim: bool,
    /// Only these sections (comma-separated; `build`, the release build from scratch, runs only
    /// when named here).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Print the header daemon/link-order.txt starts with when made from this checkout (the
    /// rustc, Cargo.lock and dependency features it names) and exit: e2e/link-order writes it.
    #[arg(long)]
    pub link_order_header: bool,
}

impl Opts {
    pub fn parts(&self) -> Vec<Part> {
        if self.only.is_empty() {
            ALL_PARTS.to_vec()
        } else {
            ALL_PARTS
                .into_iter()
                .chain([Part::Build])
                .filter(|p| self.only.contains(p))
                .collect()
        }
    }

    pub fn rounds(&self) -> usize {
        self.rounds.unwrap_or(if self.quick { 10 } else { 100 })
    }

    pub fn exec_rounds(&self) -> usize {
        self.rounds() * 10
    }

    pub fn cycles(&self) -> usize {
        self.cycles.unwrap_or(if self.quick { 500 } else { 10_000 })
    }

    /// How long the daemon is left alone to measure idle CPU.
    pub fn idle_window(&self) -> Duration {
        Duration::from_secs(if self.quick { 5 } else { 35 })
    }

    /// How long RSS is watched after the burst.
    pub fn settle_window(&self) -> Duration {
        Duration::from_secs(if self.quick { 10 } else { 60 })
    }

    /// Progress steps each part will take (for the bar's length).
    pub fn steps(&self, part: Part) -> u64 {
        let r = self.rounds() as u64;
        match part {
            Part::Exec => self.exec_rounds() as u64,
            Part::Attach => r + r.min(30) + r * floor::ROUNDS_PER_ATTACH_ROUND as u64,
            Part::Kube => r + r.min(30),
            Part::Containerd => r,
            Part::Burst => self.burst as u64 * 2 + self.settle_window().as_secs(),
            Part::Memory => self.cycles() as u64 + self.idle_window().as_secs() + 2,
            Part::Build => 1,
        }
    }
}

/// What every section gets: the flags and the progress bar.
pub struct Bench {
    pub opts: Opts,
    pub bar: ProgressBar,
}

impl Bench {
    pub fn new(opts: Opts) -> Self {
        let total: u64 = opts.parts().iter().map(|p| opts.steps(*p)).sum();
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Self { opts, bar }
    }

    /// Which shim the sections run (see [`crate::bins::use_shim`]), for their notes.
    pub fn shim_under_test(&self) -> &'static str {
        match crate::bins::shim_override() {
            Some(_) => "the shim as the image ships it (static musl, e2e/build-release-bins)",
            None => "the `cargo build --release` shim (--no-static-shim: not the shipped build)",
        }
    }

    pub fn step(&self) {
        self.bar.inc(1);
    }

    pub fn stage(&self, what: &str) {
        self.bar.set_message(what.to_owned());
    }
}

/// The daemon config for a benchmark: the layout's, with only errors logged (debug logging
/// would be timed too; a new user's daemon logs little).
pub fn quiet_config(layout: &Layout, cluster_network: &str) -> Map<String, Value> {
    let mut c = layout.config(cluster_network);
    c.insert("logLevel".into(), json!("error"));
    c
}

/// Drops the daemon binary's clean pages from the page cache, so the daemon started next reads
/// it from disk as after a node's boot. The kernel maps a whole cached folio at a fault, so the
/// binary's share of RSS otherwise depends on how the file was last written (a build, a copy).
pub fn evict_daemon_binary() -> Result<()> {
    use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};
    let path = crate::bins::daemon()?;
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .with_context(|| format!("evicting {} from the page cache", path.display()))
}

/// A standalone node whose cluster network is `conflist` (in net.d/10-cluster.conflist).
pub fn standalone(
    prefix: &str,
    conflist: impl FnOnce(&Layout) -> Value,
    tweak: impl FnOnce(&mut Map<String, Value>),
) -> Result<Cluster> {
    standalone_on(Netns::new(prefix)?, &[], conflist, tweak)
}

/// As [`standalone`], the daemon exporting its spans to a receiver in its node namespace.
pub fn standalone_traced(
    prefix: &str,
    conflist: impl FnOnce(&Layout) -> Value,
    tweak: impl FnOnce(&mut Map<String, Value>),
) -> Result<(Cluster, spans::Receiver)> {
    let node = Netns::new(prefix)?;
    let receiver = spans::Receiver::start_in(&node)?;
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let cluster = standalone_on(node, &env, conflist, |c| {
        c.insert("otlpEndpoint".into(), json!(endpoint));
        tweak(c);
    })?;
    Ok((cluster, receiver))
}

fn standalone_on(
    node: Netns,
    env: &[(&str, &str)],
    conflist: impl FnOnce(&Layout) -> Value,
    tweak: impl FnOnce(&mut Map<String, Value>),
) -> Result<Cluster> {
    let layout = Layout::new()?;
    let path = layout.dir("net.d").join("10-cluster.conflist");
    let list = conflist(&layout);
    std::fs::write(&path, list.to_string())?;
    let mut config = quiet_config(&layout, &path.to_string_lossy());
    tweak(&mut config);
    let daemon = Daemon::start_with_env(&node, &layout, &config, env)?;
    let bridge = list["plugins"][0]["bridge"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(Cluster {
        daemon,
        layout,
        node,
        bridge,
    })
}

/// The daemon's pid (`ip netns exec` execs it in place).
pub fn daemon_pid(cluster: &Cluster) -> Result<u32> {
    cluster.daemon.pid().context("the daemon is not running")
}

/// Fails with the daemon's log when a shim call did not succeed.
pub fn check(what: &str, out: &crate::shim::Output, cluster: &Cluster) -> Result<()> {
    if out.success() {
        return Ok(());
    }
    let log = cluster.daemon.log_text();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    bail!(
        "{what} failed ({:?}): {} {}\ndaemon log (last lines):\n{}",
        out.code,
        out.stdout.trim(),
        out.stderr.trim(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )
}
