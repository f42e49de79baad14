//! `chrootDir` on a node (issue 14): delegates run chrooted see the chroot's `/proc`, so the
//! daemon must be in the PID namespace that `/proc` belongs to (Kubernetes: `hostPID: true`).
//! Both sides with the real daemon: in its own PID namespace it refuses to start naming the fix;
//! in the host PID namespace a pod gets its networks through the real shim and DEL cleans up.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use multus_e2e::{
    daemon::{Daemon, Layout},
    ip,
    netns::Netns,
    scenario::{Cluster, pod, three_nads},
};
use serde_json::json;

/// util-linux `unshare`, which the first test needs to give the daemon its own PID namespace.
fn unshare() -> &'static str {
    let found = Command::new("unshare")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`unshare` (util-linux) is needed: apt-get install util-linux"
    );
    "unshare"
}

#[test]
fn chrooted_daemon_in_its_own_pid_namespace_refuses_to_start_naming_host_pid() {
    let node = Netns::new("mrsnode").unwrap();
    let layout = Layout::new().unwrap();
    let mut config = layout.config("cluster");
    // The chroot is the machine's root, whose /proc belongs to the outer PID namespace: the
    // same situation as /hostroot in a container with hostPID: false.
    config.insert("chrootDir".into(), json!("/"));
    // `--pid --fork` only: no --mount-proc, so no mount of /proc anywhere is touched (the
    // daemon keeps seeing the outer /proc, which is the point).
    let (status, log) =
        Daemon::run_to_exit(&node, &layout, &config, &[unshare(), "--pid", "--fork"]).unwrap();
    assert_eq!(status.code(), Some(1), "config/startup error exit:\n{log}");
    assert!(log.contains("hostPID: true"), "names the fix:\n{log}");
    assert!(log.contains("another PID namespace"), "{log}");
    // The daemon was pid 1 of its new namespace, the chroot's /proc said otherwise.
    assert!(log.contains("this daemon is pid 1"), "{log}");
    assert!(
        !layout.dir("sock").join("multus.sock").exists(),
        "a refused daemon must not serve"
    );
    // Nothing here remounted /proc: this process still finds itself there.
    let me = std::fs::read_link("/proc/self").unwrap();
    assert_eq!(me, Path::new(&std::process::id().to_string()));
}

#[test]
fn chrooted_delegates_in_the_host_pid_namespace_attach_and_detach() {
    let cluster = Cluster::start(|c| {
        c.insert("chrootDir".into(), json!("/"));
    })
    .unwrap();
    three_nads(&cluster).unwrap();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "chr", "uid-chr", "ptp-net"))
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("c0ffee14", &pod_ns, "default", "chr", "uid-chr");
    let out = add.run().unwrap();
    assert!(
        out.success(),
        "ADD failed: {out:?}\n{}",
        cluster.daemon.log_text()
    );
    let links = ip::links(pod_ns.name()).unwrap();
    assert!(links.iter().any(|l| l == "eth0"), "{links:?}");
    assert!(links.iter().any(|l| l == "net1"), "{links:?}");
    assert_eq!(cluster.layout.leases().unwrap().len(), 2);

    let del = add.with_command("DEL").run().unwrap();
    assert!(del.success(), "DEL failed: {del:?}");
    assert!(
        ip::links(pod_ns.name()).unwrap().is_empty(),
        "interfaces left behind"
    );
    assert!(cluster.layout.leases().unwrap().is_empty(), "leases left");
    assert!(cluster.layout.cache_records().unwrap().is_empty());
}
