//! Finds the binaries under test, building them once per test process when they are missing.
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

/// Whether the binaries under test are the release build (benchmarks) or the debug one (tests).
static RELEASE: AtomicBool = AtomicBool::new(false);

/// Makes every later lookup use (and build) the release profile. Call before the first lookup.
pub fn use_release() {
    RELEASE.store(true, Ordering::Relaxed);
}

fn release() -> bool {
    RELEASE.load(Ordering::Relaxed)
}

/// The workspace's target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The repository root (the e2e crate lives in `<root>/e2e`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Builds `multus-shim`, `multus-daemon` and `passthru` (debug) once, so a plain `cargo test -p multus-e2e`
/// tests what is in the tree rather than a stale binary.
fn ensure_built() -> &'static Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "multus-shim",
            "-p",
            "multus-daemon",
            "-p",
            "multus-passthru",
        ]);
        if release() {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(workspace_root())
            .status()
            .map_err(|e| format!("cargo build: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("cargo build failed: {status}"))
        }
    })
}

/// `MULTUS_E2E_BIN_DIR` points the suite at binaries built elsewhere (an installed release, a
/// tree another build is busy in) and skips the build.
fn binary(name: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MULTUS_E2E_BIN_DIR") {
        return Ok(PathBuf::from(dir).join(name));
    }
    if let Err(e) = ensure_built() {
        anyhow::bail!("cannot build the binaries under test ({e}); the build output is above");
    }
    Ok(target_dir()
        .join(if release() { "release" } else { "debug" })
        .join(name))
}

/// A shim that replaces the workspace build as the one under test (see [`use_shim`]).
static SHIM: OnceLock<PathBuf> = OnceLock::new();

/// Makes every later [`shim`] lookup return `path`: the bench runs the shim the image ships
/// (static musl, its own profile) rather than a `cargo build --release` one, which links
/// dynamically and spends about a millisecond more in each exec. First call wins.
pub fn use_shim(path: PathBuf) {
    let _ = SHIM.set(path);
}

/// Path of the `multus-shim` binary under test.
pub fn shim() -> anyhow::Result<PathBuf> {
    match SHIM.get() {
        Some(path) => Ok(path.clone()),
        None => built_shim(),
    }
}

/// The shim [`use_shim`] chose instead of the workspace build, if any.
pub fn shim_override() -> Option<PathBuf> {
    SHIM.get().cloned()
}

/// Path of the workspace's own `multus-shim` build, whatever [`use_shim`] chose.
pub fn built_shim() -> anyhow::Result<PathBuf> {
    binary("multus-shim")
}

/// Path of the `passthru` CNI plugin under test.
pub fn passthru() -> anyhow::Result<PathBuf> {
    binary("passthru")
}

/// A daemon `binDir` (a `:` list) that finds the reference plugins and the `passthru` under test.
pub fn bin_dir_with_passthru() -> anyhow::Result<String> {
    let passthru = passthru()?;
    anyhow::ensure!(
        passthru.is_file(),
        "{} missing: cargo build -p multus-passthru",
        passthru.display()
    );
    let dir = passthru
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no parent", passthru.display()))?;
    Ok(format!("{}:{}", crate::CNI_BIN_DIR, dir.display()))
}

/// Path of the `multus-daemon` binary under test.
pub fn daemon() -> anyhow::Result<PathBuf> {
    binary("multus-daemon")
}
