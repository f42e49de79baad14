//! Optional section (`--only build`): the release build of the whole workspace from scratch, as
//! CI or a packager runs it: `cargo build --release --workspace --locked --timings` in a fresh
//! temp target dir (nothing of a dev or an earlier release build is reused) and without a
//! `RUSTC_WRAPPER` (no compiler cache). The target is judged on CPU time (user + system of cargo
//! and of every compiler and build script it ran) divided by the cores, which is what the build
//! takes with the machine to itself; on a shared machine the wall clock says how busy the others
//! were, so it is reported beside it and not judged. Cargo's timings report (per crate, and the
//! critical path: the serial chain that more cores would not shorten) is kept next to the bench
//! report. It takes minutes and loads every core, so a default run leaves it out.
use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context, Result, ensure};

use super::{Bench, procstat, report::Section};
use crate::bins;

pub fn run(b: &Bench, s: &mut Section) -> Result<()> {
    b.stage("release build of the workspace (fresh target dir)");
    let dir = tempfile::Builder::new()
        .prefix("multus-bench-build-")
        .tempdir()?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let cpu0 = procstat::children_cpu_time(std::process::id())?;
    let start = Instant::now();
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--release",
            "--workspace",
            "--locked",
            "--timings",
        ])
        .env("CARGO_TARGET_DIR", dir.path())
        .env("CARGO_INCREMENTAL", "0")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_RUSTC_WRAPPER")
        .current_dir(bins::workspace_root())
        .status()
        .context("running cargo build --release")?;
    let wall = start.elapsed();
    ensure!(
        status.success(),
        "cargo build --release --workspace failed: {status}"
    );
    // cargo waits for every rustc and build script it starts, so their times are in its
    // children's total, which this process collects when it waits for cargo.
    let cpu_min = procstat::children_cpu_time(std::process::id())?
        .saturating_sub(cpu0)
        .as_secs_f64()
        / 60.0;
    #[allow(clippy::cast_precision_loss)]
    let per_core = cpu_min / cores as f64;
    s.target(
        &format!("release build of the workspace, CPU time / {cores} cores"),
        per_core,
        "min",
        6.0,
    );
    s.figure("release build: CPU time (user + system)", cpu_min, "min");
    s.figure(
        "release build: wall time (this run; others' load included)",
        wall.as_secs_f64() / 60.0,
        "min",
    );
    let release = dir.path().join("release");
    for bin in ["multus-shim", "multus-daemon"] {
        #[allow(clippy::cast_precision_loss)]
        let size = std::fs::metadata(release.join(bin))
            .with_context(|| format!("{bin} missing after the release build"))?
            .len() as f64;
        s.figure(&format!("{bin} from that build"), size / 1e6, "MB");
    }
    let timings = keep_timings(dir.path(), &b.opts.out, &b.opts.name)?;
    s.note(format!(
        "`cargo build --release --workspace --locked --timings` from an empty target dir on {cores} \
         cores; the target is its CPU time (user + system of cargo and all it ran) / {cores}, what \
         the build takes with the machine to itself. Per-crate times and the critical path: \
         {timings}."
    ));
    b.step();
    Ok(())
}

/// Copies cargo's timings report beside the bench report; returns its file name.
fn keep_timings(target: &Path, out: &Path, name: &str) -> Result<String> {
    let file = format!("{name}-build-timings.html");
    std::fs::copy(
        target.join("cargo-timings").join("cargo-timing.html"),
        out.join(&file),
    )
    .context("copying cargo's timings report")?;
    Ok(file)
}
