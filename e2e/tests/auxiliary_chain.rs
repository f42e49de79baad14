//! D-4: `auxiliaryCNIChainName` through the real shim and daemon with the shipped `passthru`
//! and Debian's `tuning`: the chain `[passthru, <confDir>/<chain>/*.conf]` runs after the pod's
//! networks, its sysctl lands in the pod, it adds nothing to network-status, and DEL leaves
//! nothing behind.
#![allow(clippy::unwrap_used)]

use multus_e2e::{
    bins,
    netns::Netns,
    scenario::{Cluster, pod},
};
use serde_json::json;

const CHAIN: &str = "vendor-cni-chain";

/// A namespaced sysctl, read inside the pod's namespace.
fn unprivileged_port_start(pod_ns: &Netns) -> String {
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            pod_ns.name(),
            "cat",
            "/proc/sys/net/ipv4/ip_unprivileged_port_start",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn d4_auxiliary_chain_runs_passthru_then_the_vendor_plugins_after_the_networks() {
    let bin_dir = bins::bin_dir_with_passthru().unwrap();
    let cluster = Cluster::start(|c| {
        c.insert("binDir".into(), json!(bin_dir));
        c.insert("auxiliaryCNIChainName".into(), json!(CHAIN));
    })
    .unwrap();
    // The chain's plugin files sit beside the cluster network's file (net.d/10-cluster.conflist),
    // in <dir>/<chain>/; read at each ADD.
    let dir = cluster.layout.dir("net.d").join(CHAIN);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("10-sysctl.conf"),
        json!({"type": "tuning", "sysctl": {"net.ipv4.ip_unprivileged_port_start": "80"}})
            .to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("20-not-a-plugin.conflist"), "{}").unwrap();
    let l = &cluster.layout;
    l.put_manifest("pod.json", &pod("default", "aux", "uid-aux", ""))
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let before = unprivileged_port_start(&pod_ns);
    assert_ne!(
        before, "80",
        "the namespace's default is not what the chain sets"
    );
    let add = cluster.invocation("d4000001", &pod_ns, "default", "aux", "uid-aux");
    let out = add.run().unwrap();
    assert!(
        out.success(),
        "ADD failed: {out:?}\n{}",
        cluster.daemon.log_text()
    );
    assert_eq!(
        unprivileged_port_start(&pod_ns),
        "80",
        "the chain's tuning ran in the pod"
    );
    // The result is the cluster network's; the chain has no entry in network-status.
    let ip = out.json()["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(ip.starts_with("10.88.0."), "{out:?}");
    let status = l.network_status("default", "aux").unwrap().expect("status");
    let names: Vec<_> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(names, [json!("cluster")], "{status}");
    let log = cluster.daemon.log_text();
    assert!(log.contains(CHAIN), "the chain is logged: {log}");

    let out = add.with_command("DEL").run().unwrap();
    assert!(
        out.success(),
        "DEL failed: {out:?}\n{}",
        cluster.daemon.log_text()
    );
    assert!(l.cache_records().unwrap().is_empty());
    assert_eq!(
        multus_e2e::ip::links(pod_ns.name()).unwrap(),
        Vec::<String>::new()
    );
    assert!(l.leases().unwrap().is_empty());
}
