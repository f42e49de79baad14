//! The daemon's logs through the real binaries: rotation keeps at most maxBackups, and JSON
//! lines carry the request's fields.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use multus_e2e::probe::*;
use multus_e2e::{
    netns::Netns,
    scenario::{Cluster, pod},
};
use serde_json::json;

#[test]
fn log_rotation_keeps_at_most_max_backups() {
    let logs = tempfile::tempdir().unwrap();
    let file = logs.path().join("daemon.log");
    // Already past maxSize: the daemon's first line rotates it.
    fs::write(&file, "old line\n".repeat(1024 * 1024 / 9 + 1)).unwrap();
    for day in 1..=4 {
        fs::write(
            logs.path()
                .join(format!("daemon-2020-01-0{day}T00-00-00.000.log")),
            "old\n",
        )
        .unwrap();
    }
    let f = file.clone();
    let cluster = Cluster::start(move |c| {
        c.insert("logFile".into(), json!(f));
        c.insert("logToStderr".into(), json!(false));
        c.insert(
            "logOptions".into(),
            json!({"maxSize": 1, "maxBackups": 2, "maxAge": 0, "compress": false}),
        );
    })
    .unwrap();
    let backups = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("daemon-"))
            .collect();
        v.sort();
        v
    };
    wait_for("rotation and pruning", || backups(logs.path()).len() == 2);
    let kept = backups(logs.path());
    assert_eq!(kept[0], "daemon-2020-01-04T00-00-00.000.log", "{kept:?}");
    let rotated = fs::read_to_string(logs.path().join(&kept[1])).unwrap();
    assert!(
        rotated.starts_with("old line"),
        "the rotated file is the full one"
    );
    let current = fs::read_to_string(&file).unwrap();
    assert!(current.contains("multus-daemon starting"), "{current}");
    assert!(current.len() < 1024 * 1024);
    drop(cluster);
}

#[test]
fn json_logs_carry_the_request_fields_on_every_line() {
    let cluster = Cluster::start(|c| {
        c.insert("logFormat".into(), json!("json"));
        c.insert("logLevel".into(), json!("info"));
    })
    .unwrap();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", ""))
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("150e0001", &pod_ns, "default", "web", "uid-web");
    assert!(add.run().unwrap().success());
    let log = cluster.daemon.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let in_request: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["span"]["name"] == "cni.rpc"
                || l["spans"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["name"] == "cni.rpc"))
        })
        .collect();
    assert!(in_request.len() >= 2, "{log}");
    for line in in_request {
        let rpc = line["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "cni.rpc")
            .unwrap();
        assert_eq!(rpc["container.id"], "150e0001", "{line}");
        assert_eq!(rpc["pod.name"], "web", "{line}");
        assert_eq!(rpc["cni.command"], "ADD", "{line}");
    }
}
