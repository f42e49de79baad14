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

/// A name unique to this process and call, short enough for a kernel interface (<= 15 bytes):
/// the prefix, the pid and a counter, both in base 36 (a 7-byte prefix leaves 3 digits of
/// counter, 46,656 names; in decimal a 6-byte one ran out at the 1,000th, as a bench run of 100
/// rounds found), apart by `-`, which no base-36 digit is.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!(
        "{prefix}{}-{}",
        base36(std::process::id() % 36u32.pow(4)),
        base36(n)
    );
    assert!(name.len() <= 15, "interface name {name} too long");
    name
}

fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.extend(char::from_digit(n % 36, 36));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_an_interface_past_the_thousandth() {
        let names: Vec<String> = (0..5_000).map(|_| unique("mrsmvb")).collect();
        assert!(names.iter().all(|n| n.len() <= 15), "{:?}", names.last());
        let distinct: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
    }

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        assert_eq!(base36(36u32.pow(4) - 1), "zzzz");
    }
}
