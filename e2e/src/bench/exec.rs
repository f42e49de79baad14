//! Section 1: what one exec of the shim costs. `CNI_COMMAND=VERSION` (answered by the shim
//! itself, no daemon) next to `/bin/true` (the floor: exec + exit of a dynamically linked C
//! program) and a Go reference plugin (Debian's loopback), rounds rotating the order; the shim as
//! the image ships it (built by `e2e/build-release-bins --host`: static, release-small; the one
//! the targets are judged on) and as `cargo build --release` links it.
use std::{
    ffi::OsStr,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};

use super::{Bench, report::Section, stats::Series};
use crate::{CNI_BIN_DIR, bins};

/// 1.5 MB, the issue's limit on the shim binary.
const SHIM_SIZE_LIMIT: f64 = 1.5e6;

/// What the report calls the shipped shim.
const SHIPPED: &str = "static musl, release-small, e2e/build-release-bins";

/// Builds the host binaries with the Dockerfile's own recipe (`e2e/build-release-bins --host`:
/// release-small, static C runtime, explicit target) and returns the shim it built, so the
/// figures are those of the binary the image ships.
pub fn static_shim() -> Result<PathBuf> {
    let root = bins::workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out = target.join("bench-host-bins");
    let status = Command::new(root.join("e2e/build-release-bins"))
        .arg("--host")
        .arg(&out)
        .current_dir(&root)
        .status()
        .context("running e2e/build-release-bins --host")?;
    ensure!(
        status.success(),
        "e2e/build-release-bins --host failed: {status}"
    );
    Ok(out.join("multus-shim"))
}

fn size(path: &Path) -> Result<f64> {
    #[allow(clippy::cast_precision_loss)]
    Ok(std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .len() as f64)
}

/// One exec: spawn, stdin written (a broken pipe ignored, as libcni does), wait.
fn time_exec(bin: &OsStr, version: bool) -> Result<Duration> {
    let start = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if version {
        cmd.env("CNI_COMMAND", "VERSION");
    }
    let mut child = cmd.spawn().with_context(|| format!("spawning {bin:?}"))?;
    if let Some(mut s) = child.stdin.take() {
        match s.write_all(br#"{"cniVersion":"1.0.0"}"#) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
    }
    let out = child.wait_with_output()?;
    let took = start.elapsed();
    if !out.status.success() {
        bail!("{bin:?} failed: {}", String::from_utf8_lossy(&out.stdout));
    }
    Ok(took)
}

/// The shim every section runs besides the workspace build: `--static-shim`, else the one
/// `e2e/build-release-bins` builds; none with `--no-static-shim`.
pub fn shipped_shim(opts: &super::Opts) -> Result<Option<PathBuf>> {
    match (&opts.static_shim, opts.no_static_shim) {
        (_, true) => Ok(None),
        (Some(p), false) => Ok(Some(p.clone())),
        (None, false) => static_shim().map(Some),
    }
}

pub fn run(b: &Bench, s: &mut Section) -> Result<()> {
    let shim_static = bins::shim_override();
    let shim = bins::built_shim()?;
    let loopback = PathBuf::from(CNI_BIN_DIR).join("loopback");
    let true_bin = PathBuf::from("/bin/true");
    let mut sizes: Vec<(&str, PathBuf)> = Vec::new();
    if let Some(p) = &shim_static {
        sizes.push((
            "multus-shim as shipped (static musl, release-small)",
            p.clone(),
        ));
    }
    sizes.extend([
        ("multus-shim, cargo build --release", shim.clone()),
        ("passthru, cargo build --release", bins::passthru()?),
        ("multus-daemon, cargo build --release", bins::daemon()?),
        ("Go loopback plugin (Debian)", loopback.clone()),
        (
            "Go bridge plugin (Debian)",
            PathBuf::from(CNI_BIN_DIR).join("bridge"),
        ),
        ("/bin/true", true_bin.clone()),
    ]);
    for (label, p) in &sizes {
        s.figure(&format!("size: {label}"), size(p)? / 1e6, "MB");
    }
    // The target is judged on what nodes run: the static shim when it was built.
    let (judged, judged_label) = match &shim_static {
        Some(p) => (p.clone(), SHIPPED),
        None => (
            shim.clone(),
            "cargo build --release, --no-static-shim: not the shipped build",
        ),
    };
    s.target(
        &format!("shim binary ({judged_label})"),
        size(&judged)? / 1e6,
        "MB",
        SHIM_SIZE_LIMIT / 1e6,
    );

    b.stage("1. VERSION execs");
    let mut sides: Vec<(String, PathBuf, bool)> = Vec::new();
    if let Some(p) = &shim_static {
        sides.push(("multus-shim VERSION, as shipped".into(), p.clone(), true));
    }
    sides.extend([
        (
            "multus-shim VERSION, cargo build --release".to_owned(),
            shim.clone(),
            true,
        ),
        ("Go loopback VERSION".to_owned(), loopback, true),
        ("/bin/true".to_owned(), true_bin, false),
    ]);
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); sides.len()];
    for round in 0..b.opts.exec_rounds() {
        for k in 0..sides.len() {
            let i = (round + k) % sides.len();
            let (_, bin, version) = &sides[i];
            times[i].push(time_exec(bin.as_os_str(), *version)?);
        }
        b.step();
    }
    let series: Vec<Series> = sides
        .iter()
        .zip(&times)
        .map(|((label, _, _), t)| s.series(Series::new(label.clone(), t)))
        .collect();
    let n = series.len();
    let floor = &series[n - 1];
    let mut judged_ratio = None;
    for (i, x) in series[..n - 1].iter().enumerate() {
        let c = s.compare(&format!("{} vs /bin/true", x.label), x, floor);
        if i == 0 {
            judged_ratio = Some(c.ratio_p50);
        }
    }
    s.target(
        &format!("shim VERSION exec ({judged_label}) / /bin/true, median"),
        judged_ratio.unwrap_or(f64::NAN),
        "×",
        1.2,
    );
    s.note(
        "Each round execs every side once, the order rotating by one each round. `/bin/true` is \
         Debian's coreutils binary (dynamically linked), the floor any exec pays; the Go plugin is \
         what the runtime execs for each network without multus.",
    );
    Ok(())
}
