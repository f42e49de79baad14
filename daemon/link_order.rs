//! The header of `daemon/link-order.txt` (e2e/link-order writes it): the rustc the list was made
//! with and the Cargo.lock it was made for, one line each after `# `. One definition for the
//! three readers, each of which compiles this file by `#[path]`: daemon/build.rs (a build script
//! cannot use the crate it builds), daemon/tests/link_order.rs and the bench's machine table.
use sha2::{Digest, Sha256};

/// The list, beside this file.
pub const FILE: &str = "link-order.txt";

/// The list's first two lines, without their `# `.
pub struct Header<'a> {
    /// `rustc -V` of the toolchain the list was made with.
    pub made_with: &'a str,
    /// [`lock_line`] of the Cargo.lock the list was made for.
    pub made_for: &'a str,
}

impl<'a> Header<'a> {
    pub fn of(list: &'a str) -> Self {
        let mut lines = list.lines().map(|l| l.trim_start_matches("# ").trim());
        Self {
            made_with: lines.next().unwrap_or_default(),
            made_for: lines.next().unwrap_or_default(),
        }
    }
}

/// `Cargo.lock sha256 <hex>` of Cargo.lock's bytes, as the header's second line names it.
pub fn lock_line(lock: &[u8]) -> String {
    let hex: String = Sha256::digest(lock)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("Cargo.lock sha256 {hex}")
}
