//! `multus-daemon -version` as upstream's Go flag parsing and `PrintVersionString` behave (D-17).
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn daemon(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_multus-daemon"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn d17_version_flag() {
    for spelling in [
        &["-version"][..],
        &["--version"],
        &["-version=true"],
        &["-version=1"],
        &["-config", "/nonexistent", "-version"],
    ] {
        let out = daemon(spelling);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(4), "{spelling:?}: {stdout}");
        // Upstream: "multus-daemon: version:%s(%s%s), commit:%s, date:%s\n".
        let line = stdout.strip_suffix('\n').unwrap();
        let rest = line
            .strip_prefix(&format!(
                "multus-daemon: version:{}(",
                env!("CARGO_PKG_VERSION")
            ))
            .unwrap_or_else(|| panic!("{spelling:?}: {line:?}"));
        let (state, rest) = rest.split_once("), commit:").unwrap();
        assert!(["", "clean", "dirty"].contains(&state.trim_end_matches(",released")));
        let (commit, date) = rest.split_once(", date:").unwrap();
        assert!(!commit.is_empty() && !date.is_empty(), "{line:?}");
        assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");
    }
    // `-version=false` means no version: the daemon goes on to load its (missing) config, exit 1.
    let out = daemon(&[
        "-version=false",
        "-config",
        "/nonexistent/daemon-config.json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    // A value Go's ParseBool refuses is a usage error, exit 2, as Go's flag package.
    let out = daemon(&["-version=yes"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("-version"));
}
