//! Request deadlines through the real binaries: an ADD past its deadline answers code 11 and
//! leaves nothing attached.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use multus_e2e::probe::*;
use multus_e2e::{
    netns::Netns,
    scenario::{Cluster, nad, pod},
};
use serde_json::json;

#[test]
fn add_past_its_deadline_returns_code_11_and_leaves_nothing_attached() {
    let bin = tempfile::tempdir().unwrap();
    let sleepy = bin.path().join("sleepy");
    // ADD never finishes (exec: the killed process is the one holding the pipes); everything
    // else succeeds at once, so the rollback's DEL of it works.
    fs::write(
        &sleepy,
        "#!/bin/bash\ncase \"$CNI_COMMAND\" in\n  ADD) exec sleep 600 ;;\n  VERSION) echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}' ;;\nesac\nexit 0\n",
    )
    .unwrap();
    fs::set_permissions(&sleepy, fs::Permissions::from_mode(0o755)).unwrap();
    let bin_dir = format!("{}:{}", bin.path().display(), multus_e2e::CNI_BIN_DIR);
    let cluster = Cluster::start(|c| {
        c.insert("binDir".into(), json!(bin_dir));
        c.insert("requestTimeouts".into(), json!({"add": 3}));
    })
    .unwrap();
    ptp_nad(&cluster);
    let sleepy_conf = json!({"cniVersion": "0.4.0", "name": "sleepy-net", "type": "sleepy"});
    cluster
        .layout
        .put_manifest(
            "nad-sleepy.json",
            &nad("default", "sleepy-net", &sleepy_conf),
        )
        .unwrap();
    cluster
        .layout
        .put_manifest(
            "pod.json",
            &pod("default", "slow", "uid-slow", "ptp-net, sleepy-net"),
        )
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let out = cluster
        .invocation("5100e001", &pod_ns, "default", "slow", "uid-slow")
        .run()
        .unwrap();
    assert_eq!(
        out.cni_code(),
        Some(11),
        "{out:?}\n{}",
        cluster.daemon.log_text()
    );
    assert!(
        out.json()["msg"].as_str().unwrap().contains("deadline"),
        "{out:?}"
    );
    // The rollback runs on after the answer, holding the container lock; wait for it.
    wait_for("the rollback to remove the record", || {
        cluster.layout.cache_records().unwrap().is_empty()
    });
    assert!(attached(&pod_ns).is_empty(), "{:?}", attached(&pod_ns));
    assert!(cluster.layout.leases().unwrap().is_empty());
    let sleeping = Command::new("pgrep")
        .args(["-f", "sleep 600"])
        .output()
        .unwrap();
    assert!(
        sleeping.stdout.is_empty(),
        "the hung delegate was not killed"
    );
    let log = cluster.daemon.log_text();
    assert!(log.contains("request deadline passed"), "{log}");
    assert!(log.contains("deadline passed; rolling back"), "{log}");
}
