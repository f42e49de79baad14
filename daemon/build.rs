//! Link flags for the daemon's binaries (multus-daemon, install_multus), which run in the image
//! on its glibc (distroless/cc-debian12: 2.36).
fn main() {
    // Relative relocations packed as DT_RELR (glibc >= 2.36, which the binary then requires by
    // its GLIBC_ABI_DT_RELR version). The daemon is a PIE (ASLR kept) with about 57,000 of them:
    // as .rela.dyn that is 1.36 MB the loader reads whole at every start, resident in the
    // daemon's RSS for its life (issue 11's idle figure); packed, a few kB. Rust's default
    // linker for this target (lld) and GNU ld >= 2.38 take the flag; an older ld warns and
    // ignores it.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
