//! The multus-rs end-to-end harness: real network namespaces, the real `multus-daemon` and
//! `multus-shim` binaries, Debian's reference CNI plugins, and a Kubernetes API server stand-in.
//!
//! Every resource a test creates is owned by a guard that removes it on drop, so a failing test
//! leaves nothing behind on the machine.
#![forbid(unsafe_code)]

pub mod apiserver;
pub mod bench;
pub mod bins;
pub mod containerd;
pub mod daemon;
pub mod dockerfile;
pub mod elf;
pub mod helm;
pub mod http;
pub mod image;
pub mod ip;
pub mod kubelet;
pub mod netns;
pub mod oci;
pub mod otlp;
pub mod plugin;
pub mod probe;
pub mod scenario;
pub mod shim;

/// Where Debian's `containernetworking-plugins` installs the reference plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// A name unique to this process and call, short enough for a kernel interface (<= 15 bytes).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}x{n}", std::process::id() % 100_000);
    debug_assert!(name.len() <= 15, "interface name {name} too long");
    name
}
