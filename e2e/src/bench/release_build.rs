//! Optional section (`--only build`): the release build of the whole workspace from scratch, in
//! a fresh target dir, as CI or a packager runs it; its wall time, its CPU time (user + system of
//! cargo and every compiler it ran) and the shim it produced. It takes minutes and loads every
//! core, so a default run leaves it out.
use std::{process::Command, time::Instant};

use anyhow::{Context, Result, ensure};

use super::{Bench, procstat, report::Section};
use crate::bins;

pub fn run(b: &Bench, s: &mut Section) -> Result<()> {
    b.stage("release build of the workspace (fresh target dir)");
    let dir = tempfile::Builder::new()
        .prefix("multus-bench-build-")
        .tempdir()?;
    let cpu0 = procstat::children_cpu_time(std::process::id())?;
    let start = Instant::now();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--workspace", "--locked"])
        .env("CARGO_TARGET_DIR", dir.path())
        .env("CARGO_INCREMENTAL", "0")
        .current_dir(bins::workspace_root())
        .status()
        .context("running cargo build --release")?;
    let wall = start.elapsed();
    ensure!(
        status.success(),
        "cargo build --release --workspace failed: {status}"
    );
    let cpu = procstat::children_cpu_time(std::process::id())?.saturating_sub(cpu0);
    s.target(
        "release build of the workspace, wall",
        wall.as_secs_f64() / 60.0,
        "min",
        6.0,
    );
    s.figure(
        "release build: CPU time (user + system)",
        cpu.as_secs_f64() / 60.0,
        "min",
    );
    #[allow(clippy::cast_precision_loss)]
    let shim = std::fs::metadata(dir.path().join("release").join("multus-shim"))?.len() as f64;
    s.figure("multus-shim from that build", shim / 1e6, "MB");
    s.note(format!(
        "`cargo build --release --workspace --locked` with an empty target dir on {} cores; CPU \
         time / cores is what the build would take with the machine to itself.",
        std::thread::available_parallelism().map_or(0, usize::from)
    ));
    b.step();
    Ok(())
}
