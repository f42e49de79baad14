//! The header of `daemon/link-order.txt`: the rustc the list was made with, the Cargo.lock it was
//! made for and the features the daemon's dependencies were built with, one line each after
//! `# `. One definition for its writer ([`Current`], printed by `bench --link-order-header`, which
//! e2e/link-order runs) and its three readers, each of which compiles this file by `#[path]`: daemon/build.rs (a
//! build script cannot use the crate it builds), daemon/tests/link_order.rs and the bench's
//! machine table.
//!
//! The features need their own line: a symbol's hash covers its crate's enabled features, which
//! Cargo.lock does not record. Enabling nix's `net` feature renamed every nix symbol and left
//! Cargo.lock as it was (the idle daemon went from 4.5 to 7.6 MiB RSS until the list was made
//! again).
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

/// The list, beside this file.
pub const FILE: &str = "link-order.txt";

/// The list's first three lines, without their `# `.
pub struct Header<'a> {
    /// `rustc -V` of the toolchain the list was made with.
    pub made_with: &'a str,
    /// [`lock_line`] of the Cargo.lock the list was made for.
    pub made_for: &'a str,
    /// [`features_line`] of the dependency features the list was made for.
    pub features: &'a str,
}

impl<'a> Header<'a> {
    pub fn of(list: &'a str) -> Self {
        let mut lines = list.lines().map(|l| l.trim_start_matches("# ").trim());
        Self {
            made_with: lines.next().unwrap_or_default(),
            made_for: lines.next().unwrap_or_default(),
            features: lines.next().unwrap_or_default(),
        }
    }
}

/// The header a list made from a checkout now starts with, the three lines [`Header::of`] reads
/// (e2e/link-order writes it through `bench --link-order-header`).
pub struct Current {
    /// `rustc -V` of the toolchain.
    pub rustc: String,
    /// [`lock_line`] of the checkout's Cargo.lock.
    pub lock: String,
    /// [`features_line`] of the tree `cargo` resolves there.
    pub features: String,
}

impl Current {
    pub fn of(rustc: &str, cargo: &Path, workspace: &Path) -> Result<Self, String> {
        let lock = std::fs::read(workspace.join("Cargo.lock"))
            .map_err(|e| format!("reading Cargo.lock: {e}"))?;
        Ok(Self {
            rustc: rustc.to_owned(),
            lock: lock_line(&lock),
            features: features_now(cargo, workspace)?,
        })
    }
}

impl std::fmt::Display for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "# {}", self.rustc)?;
        writeln!(f, "# {}", self.lock)?;
        writeln!(f, "# {}", self.features)
    }
}

/// `Cargo.lock sha256 <hex>` of Cargo.lock's bytes, as the header's second line names it.
pub fn lock_line(lock: &[u8]) -> String {
    format!("Cargo.lock sha256 {}", sha256_hex(lock))
}

/// `cargo tree`'s arguments for the daemon's dependencies as `cargo build --release -p
/// multus-daemon` resolves them (a `--workspace` build unifies other features in), each with
/// the features it is built with. Proc macros are left out: none of their code is linked.
pub const TREE_ARGS: &[&str] = &[
    "tree",
    "--locked",
    "--offline",
    "-p",
    "multus-daemon",
    "-e",
    "normal,no-proc-macro",
    "--prefix",
    "none",
    "-f",
    "{p} {f}",
];

/// `features sha256 <hex>` of `cargo tree`'s output ([`TREE_ARGS`]), as the header's third line
/// names it. The workspace's own packages are printed with their directory, which is left out:
/// the same tree in another checkout is the same line.
pub fn features_line(tree: &str) -> String {
    let tree: Vec<String> = tree.lines().map(without_local_path).collect();
    format!("features sha256 {}", sha256_hex(tree.join("\n").as_bytes()))
}

/// `multus-daemon v0.1.0 (/work/main/daemon) ...` as `multus-daemon v0.1.0 ...`.
fn without_local_path(line: &str) -> String {
    line.split_once(" (/")
        .and_then(|(before, rest)| Some(format!("{before}{}", rest.split_once(')')?.1)))
        .unwrap_or_else(|| line.to_owned())
}

/// [`features_line`] of the tree `cargo` resolves in `workspace` now.
pub fn features_now(cargo: &Path, workspace: &Path) -> Result<String, String> {
    let out = Command::new(cargo)
        .args(TREE_ARGS)
        .current_dir(workspace)
        .output()
        .map_err(|e| format!("running {} tree: {e}", cargo.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed: {}",
            cargo.display(),
            TREE_ARGS.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(features_line(&String::from_utf8_lossy(&out.stdout)))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
