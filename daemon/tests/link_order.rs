//! `daemon/link-order.txt` (the daemon's hot functions first, see build.rs) belongs to the
//! dependencies it was made with: a Cargo.lock change renames the symbols of every crate it
//! touches and of all that depend on it, and the daemon's idle RSS quietly grows back by about
//! 5 MiB. So a dependency change comes with the list made again (`sudo e2e/link-order`). The
//! toolchain is the machine's, not the tree's: build.rs warns about that one instead. The
//! features the dependencies are built with count too, and Cargo.lock does not record them: the
//! list names those it was made for, and the second test asks cargo for today's.
use std::fs;
use std::path::Path;

// Only the Cargo.lock line's format is shared: the test reads the header lines as written.
#[allow(dead_code)]
#[path = "../link_order.rs"]
mod link_order;

use link_order::{FILE, Header, features_now, lock_line};

fn read(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

#[test]
fn the_link_order_was_made_for_this_cargo_lock() {
    let list = String::from_utf8(read(FILE)).expect("link-order.txt is text");
    let mut lines = list.lines();
    let made_with = lines.next().unwrap_or_default();
    let made_for = lines.next().unwrap_or_default();
    assert!(
        made_with.starts_with("# rustc "),
        "link-order.txt's first line names the rustc it was made with, not {made_with:?}"
    );
    assert_eq!(
        made_for,
        format!("# {}", lock_line(&read("../Cargo.lock"))),
        "daemon/link-order.txt was made for another Cargo.lock: regenerate it with `sudo e2e/link-order`"
    );
    let symbols = lines.filter(|l| l.starts_with("_ZN") || l.starts_with("_R"));
    assert!(
        symbols.count() > 1_000,
        "link-order.txt lists too few functions to be a profile of the daemon"
    );
}

#[test]
fn the_link_order_was_made_for_these_dependency_features() {
    let list = String::from_utf8(read(FILE)).expect("link-order.txt is text");
    let made = Header::of(&list);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let now = features_now(Path::new(env!("CARGO")), &root).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        made.features, now,
        "daemon/link-order.txt was made for other features of the daemon's dependencies (a \
         feature turned on or off renames that crate's symbols; Cargo.lock does not show it): \
         regenerate it with `sudo e2e/link-order`"
    );
}
