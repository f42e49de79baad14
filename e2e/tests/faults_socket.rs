//! The daemon socket under faults (issue 12): two daemons racing for it over a stale socket
//! (one serves, the other refuses, the winner's socket stays), a SIGKILLed daemon's socket taken
//! over by the next, and a socket path or socket dir that is a symlink or a regular file: not
//! followed, not clobbered.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use multus_e2e::{
    daemon::{Daemon, Layout},
    netns::Netns,
    scenario::bridge_conflist,
    shim::Invocation,
};
use serde_json::{Map, Value, json};

fn config(layout: &Layout) -> Map<String, Value> {
    let conflist = layout.dir("net.d").join("10-cluster.conflist");
    fs::write(
        &conflist,
        bridge_conflist(layout, "mrsbrsock", "10.88.0.0/24").to_string(),
    )
    .unwrap();
    layout.config(&conflist.to_string_lossy())
}

/// STATUS through the real shim: succeeds only when a daemon answers on the socket.
fn status(socket_dir: &std::path::Path) -> multus_e2e::shim::Output {
    let mut inv = Invocation::new(
        "STATUS",
        "",
        "",
        String::new(),
        multus_e2e::shim::multus_conf("1.1.0", socket_dir),
    );
    inv.env.push(("CNI_CONTAINERID".into(), None));
    inv.env.push(("CNI_NETNS".into(), None));
    inv.env.push(("CNI_IFNAME".into(), None));
    inv.env.push(("CNI_ARGS".into(), None));
    inv.run().unwrap()
}

#[test]
fn two_daemons_racing_over_a_stale_socket_leave_exactly_one_serving() {
    let node = Netns::new("mrsnode").unwrap();
    let layout = Layout::new().unwrap();
    let config = config(&layout);
    let socket = layout.dir("sock").join("multus.sock");
    for round in 0..3 {
        // A crashed daemon's socket file: nobody answers on it (from the previous round's
        // SIGKILL after the first).
        if round == 0 {
            drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        }
        assert!(socket.exists(), "round {round}: no stale socket");
        let mut a = Daemon::spawn(&node, &layout, &config).unwrap();
        let mut b = Daemon::spawn(&node, &layout, &config).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let (mut a_exit, mut b_exit) = (None, None);
        while a_exit.is_none() && b_exit.is_none() && std::time::Instant::now() < deadline {
            a_exit = a.wait_exit(Duration::from_millis(20)).unwrap();
            b_exit = b.wait_exit(Duration::ZERO).unwrap();
        }
        // The other one must still be running a moment later.
        std::thread::sleep(Duration::from_millis(500));
        a_exit = a_exit.or(a.wait_exit(Duration::ZERO).unwrap());
        b_exit = b_exit.or(b.wait_exit(Duration::ZERO).unwrap());
        let (winner, loser, status_of_loser) = match (a_exit, b_exit) {
            (None, Some(s)) => (a, b, s),
            (Some(s), None) => (b, a, s),
            other => panic!(
                "round {round}: expected exactly one daemon to exit, got {other:?}\n--- a\n{}\n--- b\n{}",
                a.log_text(),
                b.log_text()
            ),
        };
        assert!(!status_of_loser.success(), "round {round}");
        let log = loser.log_text();
        assert!(
            log.contains("another multus-daemon is serving"),
            "round {round}: {log}"
        );
        let mut winner = winner;
        winner.wait_listening().unwrap();
        let out = status(&layout.dir("sock"));
        assert!(
            out.success(),
            "round {round}: the winner's socket was taken: {out:?}\n{}",
            winner.log_text()
        );
        // A SIGKILLed daemon releases its claim: the next round starts over its stale socket.
        winner.kill().unwrap();
        assert!(socket.exists());
    }
}

#[test]
fn a_socket_path_that_is_a_symlink_or_a_file_and_a_symlinked_dir_are_refused_untouched() {
    let node = Netns::new("mrsnode").unwrap();
    let layout = Layout::new().unwrap();
    let config = config(&layout);
    let sock_dir = layout.dir("sock");
    let socket = sock_dir.join("multus.sock");
    let victim = layout.dir("conf").join("victim");
    fs::write(&victim, "keep me").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();

    // The socket path is a symlink to a file elsewhere.
    std::os::unix::fs::symlink(&victim, &socket).unwrap();
    let (status, log) = Daemon::run_to_exit(&node, &layout, &config, &[]).unwrap();
    assert!(!status.success());
    assert!(
        log.contains("is not a socket: refusing to replace it"),
        "{log}"
    );
    assert!(socket.symlink_metadata().unwrap().is_symlink());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me");
    assert_eq!(
        fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
        0o644
    );
    fs::remove_file(&socket).unwrap();

    // The socket path is a regular file.
    fs::write(&socket, "a file").unwrap();
    let (status, log) = Daemon::run_to_exit(&node, &layout, &config, &[]).unwrap();
    assert!(!status.success());
    assert!(
        log.contains("is not a socket: refusing to replace it"),
        "{log}"
    );
    assert_eq!(fs::read_to_string(&socket).unwrap(), "a file");
    fs::remove_file(&socket).unwrap();

    // The socket dir is a symlink to a directory the daemon must not chmod 0700.
    let elsewhere = layout.dir("status");
    fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o755)).unwrap();
    let linked = layout.dir("linked-sock");
    std::os::unix::fs::symlink(&elsewhere, &linked).unwrap();
    let mut config = config.clone();
    config.insert("socketDir".into(), json!(linked));
    let (status, log) = Daemon::run_to_exit(&node, &layout, &config, &[]).unwrap();
    assert!(!status.success());
    assert!(log.contains("is a symlink: refusing to follow it"), "{log}");
    assert_eq!(
        fs::metadata(&elsewhere).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert!(!elsewhere.join("multus.sock").exists());
}
