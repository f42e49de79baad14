//! Finds the binaries under test, building them once per test process when they are missing.
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

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

/// Builds `multus-shim` and `multus-daemon` (debug) once, so a plain `cargo test -p multus-e2e`
/// tests what is in the tree rather than a stale binary.
fn ensure_built() -> &'static Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--quiet",
                "-p",
                "multus-shim",
                "-p",
                "multus-daemon",
            ])
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

fn binary(name: &str) -> PathBuf {
    if let Err(e) = ensure_built() {
        panic!("cannot build the binaries under test: {e}");
    }
    target_dir().join("debug").join(name)
}

/// Path of the `multus-shim` binary under test.
pub fn shim() -> PathBuf {
    binary("multus-shim")
}

/// Path of the `multus-daemon` binary under test.
pub fn daemon() -> PathBuf {
    binary("multus-daemon")
}
