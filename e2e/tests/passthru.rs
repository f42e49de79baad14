//! The shipped `passthru` plugin as a real conflist member through the real shim and daemon
//! (D-10): after ptp it hands ptp's result on, alone it attaches nothing, and CHECK/DEL succeed.
#![allow(clippy::unwrap_used)]

use multus_e2e::{
    bins, ip,
    netns::Netns,
    scenario::{Cluster, host_local, nad, pod},
};
use serde_json::json;

#[test]
fn d10_passthru_runs_after_ptp_and_alone() {
    let bin_dir = bins::bin_dir_with_passthru().unwrap();
    let cluster = Cluster::start(|c| {
        c.insert("binDir".into(), json!(bin_dir));
    })
    .unwrap();
    let l = &cluster.layout;
    l.put_manifest(
        "nad-chain.json",
        &nad(
            "default",
            "ptp-pass",
            &json!({"cniVersion": "1.0.0", "name": "ptp-pass", "plugins": [
                {"type": "ptp", "ipam": host_local(l, "10.89.0.0/24")},
                {"type": "passthru"}
            ]}),
        ),
    )
    .unwrap();
    l.put_manifest(
        "nad-alone.json",
        &nad(
            "default",
            "pass-only",
            &json!({"cniVersion": "0.4.0", "name": "pass-only", "type": "passthru"}),
        ),
    )
    .unwrap();
    l.put_manifest(
        "pod.json",
        &pod("default", "pt", "uid-pt", "ptp-pass, pass-only"),
    )
    .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("c0ffee10", &pod_ns, "default", "pt", "uid-pt");
    let out = add.run().unwrap();
    assert!(
        out.success(),
        "ADD failed: {out:?}\n{}",
        cluster.daemon.log_text()
    );
    // ptp made net1; passthru alone made nothing (net2 does not exist).
    let links = ip::links(pod_ns.name()).unwrap();
    assert!(links.iter().any(|n| n == "net1"), "{links:?}");
    assert!(!links.iter().any(|n| n == "net2"), "{links:?}");

    // The chain's result is ptp's, handed on by passthru: network-status shows its address.
    let status = l.network_status("default", "pt").unwrap().expect("status");
    let chain = status
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "default/ptp-pass")
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        chain["ips"][0].as_str().unwrap().starts_with("10.89.0."),
        "{chain}"
    );

    let check = add.with_command("CHECK").run().unwrap();
    assert!(check.success(), "CHECK failed: {check:?}");
    let del = add.with_command("DEL").run().unwrap();
    assert!(del.success(), "DEL failed: {del:?}");
    assert!(ip::links(pod_ns.name()).unwrap().is_empty());
    assert!(l.leases().unwrap().is_empty(), "leases left");
    assert!(l.cache_records().unwrap().is_empty());
}
