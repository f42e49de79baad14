//! Link flags for the daemon's binaries (multus-daemon, install_multus), which run in the image
//! on its glibc (distroless/cc-debian12: 2.36).
use std::{env, fs, path::Path, process::Command};

// The header's writer side (the features line, which asks cargo) is not needed here.
#[allow(dead_code)]
#[path = "link_order.rs"]
mod link_order;

use link_order::{FILE as LINK_ORDER, Header, lock_line};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || env::var("CARGO_CFG_TARGET_ENV").as_deref() != Ok("gnu")
    {
        return;
    }
    // Relative relocations packed as DT_RELR (glibc >= 2.36, which the binary then requires by
    // its GLIBC_ABI_DT_RELR version). The daemon is a PIE (ASLR kept) with about 57,000 of them:
    // as .rela.dyn that is 1.36 MB the loader reads whole at every start, resident in the
    // daemon's RSS for its life (issue 11's idle figure); packed, a few kB. Rust's default
    // linker for this target (lld) and GNU ld >= 2.38 take the flag; an older ld warns and
    // ignores it.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    link_order();
}

/// Lays the daemon's text out hot functions first: the ones it runs to start and idle, then
/// the ones an ADD, a DEL and the Kubernetes watches run. Unordered, those few hundred kB are
/// spread over its 11 MB of text, and the kernel maps each touched page with its 64 kB
/// neighbourhood (fault-around): 6.5 MiB of text resident at idle, 0.7 MiB ordered
/// (docs/benchmarks.md, "daemon RSS idle").
///
/// The list names symbols, whose hashes depend on the rustc that built them and on every
/// dependency's version and features: it applies only with the toolchain it was made with (its
/// first line), and says so when Cargo.lock changed since (its second). Its third line, the
/// dependencies' features, is checked by daemon/tests/link_order.rs: that takes asking cargo,
/// which a build script run by cargo should not. Names that match nothing are skipped
/// by the linker, so a stale list costs memory, never correctness.
fn link_order() {
    let dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let path = Path::new(&dir).join(LINK_ORDER);
    let lock = Path::new(&dir).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", path.display());
    println!("cargo:rerun-if-changed={}", lock.display());
    println!("cargo:rerun-if-changed=link_order.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let Ok(list) = fs::read_to_string(&path) else {
        return;
    };
    // Made from a release build: in any other profile no name can match.
    if env::var("PROFILE").as_deref() != Ok("release") || !default_lld() {
        return;
    }
    let Header {
        made_with,
        made_for,
        ..
    } = Header::of(&list);
    let rustc = rustc_version();
    if made_with != rustc {
        println!(
            "cargo:warning=daemon/{LINK_ORDER} was made with {made_with}, this is {rustc}: the daemon is linked without it (its idle RSS is about 5 MiB larger); regenerate it with e2e/link-order"
        );
        return;
    }
    let lock_now = fs::read(&lock)
        .map(|bytes| lock_line(&bytes))
        .unwrap_or_default();
    if made_for != lock_now {
        println!(
            "cargo:warning=daemon/{LINK_ORDER} was made for another Cargo.lock: the symbols of changed dependencies no longer match it; regenerate it with e2e/link-order"
        );
    }
    // The header lines match no symbol and are skipped like any other stale name.
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
        path.display()
    );
}

/// Whether the binaries are linked by the toolchain's own lld, which takes
/// `--symbol-ordering-file` (GNU ld does not): Rust's default for x86_64-unknown-linux-gnu
/// since 1.90, unless a linker was chosen in the configuration or the flags.
fn default_lld() -> bool {
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu")
        && env::var_os("RUSTC_LINKER").is_none()
        && !["linker", "fuse-ld", "link-self-contained"]
            .iter()
            .any(|f| flags.contains(f))
}

/// `rustc -V` of the compiler building this crate.
fn rustc_version() -> String {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
