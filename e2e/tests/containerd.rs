//! containerd's CRI calls multus-shim: a real containerd (Debian's, with runc) started by the
//! test, driven over CRI v1 as the kubelet drives it. containerd's own libcni runs the shim from
//! `00-multus.conf` with the CNI_ARGS it builds; the daemon runs in a node namespace over
//! standalone cluster state whose Pod manifests match the sandboxes' metadata.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use multus_e2e::{
    containerd::{CniSetup, Containerd},
    daemon::Layout,
    ip,
    netns::Netns,
    probe,
    scenario::{Cluster, host_local, nad, pod, three_nads},
};
use serde_json::json;

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

/// The daemon's node and a containerd whose CNI conf is the multus shim pointing at it.
/// containerd starts first, so the daemon's mount namespace (`ip netns exec`) follows the
/// sandboxes' namespace mounts (see the fixture).
fn node() -> (Cluster, Containerd) {
    let layout = Layout::new().unwrap();
    let containerd = Containerd::start(&CniSetup::multus(&layout.dir("sock")).unwrap())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let cluster = Cluster::start_on(Netns::new("mrsnode").unwrap(), layout, &[], |_| {}).unwrap();
    (cluster, containerd)
}

/// Writes the Pod manifest the daemon reads and returns the sandbox config the kubelet would
/// send for it (same name, namespace and uid, the networks annotation).
fn pod_sandbox(
    cluster: &Cluster,
    containerd: &Containerd,
    name: &str,
    networks: &str,
) -> multus_proto::cri::v1::PodSandboxConfig {
    let uid = format!("uid-{name}");
    cluster
        .layout
        .put_manifest(
            &format!("pod-{name}.json"),
            &pod("default", name, &uid, networks),
        )
        .unwrap();
    let annotations = HashMap::from([(NETWORKS.to_string(), networks.to_string())]);
    containerd.sandbox_config("default", name, &uid, &annotations)
}

/// Files of the CNI result cache containerd's libcni keeps (`/var/lib/cni/results`) that name
/// this sandbox.
fn libcni_cache_for(id: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/var/lib/cni/results") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(id))
        .collect()
}

/// Links in the node namespace, except the cluster bridge (which outlives its pods).
fn node_links(cluster: &Cluster) -> Vec<String> {
    let mut links = ip::links(cluster.node.name()).unwrap();
    links.retain(|l| *l != cluster.bridge);
    links.sort();
    links
}

/// Nothing of the sandbox is left: no namespace, lease, cache record, libcni cache, sandbox,
/// and the node namespace has only the links it had before.
fn assert_nothing_left(
    cluster: &Cluster,
    containerd: &Containerd,
    ids: &[String],
    links_before: &[String],
) {
    assert_eq!(containerd.netns_left().unwrap(), Vec::<String>::new());
    assert_eq!(cluster.layout.leases().unwrap(), Vec::<String>::new());
    assert_eq!(
        cluster.layout.cache_records().unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(containerd.sandboxes().unwrap(), Vec::<String>::new());
    for id in ids {
        assert_eq!(libcni_cache_for(id), Vec::<String>::new());
    }
    assert_eq!(node_links(cluster), links_before);
}

#[test]
fn sandbox_gets_cluster_network_and_two_nads_and_stop_remove_leaves_nothing() {
    let (cluster, containerd) = node();
    three_nads(&cluster).unwrap();
    let links_before = node_links(&cluster);
    let config = pod_sandbox(&cluster, &containerd, "web", "ptp-net, default/macvlan-net");

    let id = containerd
        .run_pod_sandbox(config)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cluster.daemon.log_text()));

    let netns = containerd.netns_path(&id).unwrap();
    assert!(
        netns.starts_with(containerd.netns_dir()),
        "{}",
        netns.display()
    );
    let eth0 = probe::assert_cluster_and_two_nads(&netns);
    // The IP the runtime reports (the kubelet's podIP) is the cluster network's.
    let pod_ip = containerd.pod_ip(&id).unwrap();
    assert_eq!(eth0, pod_ip);
    assert_eq!(cluster.layout.leases().unwrap().len(), 3);
    assert_eq!(
        cluster.layout.cache_records().unwrap(),
        std::slice::from_ref(&id)
    );
    // containerd's CNI_ARGS found the pod: the daemon wrote its network-status.
    let status = cluster
        .layout
        .network_status("default", "web")
        .unwrap()
        .unwrap();
    assert_eq!(status.as_array().unwrap().len(), 3, "{status}");

    containerd.stop_pod_sandbox(&id).unwrap();
    assert!(!netns.exists(), "StopPodSandbox left {}", netns.display());
    assert_eq!(cluster.layout.leases().unwrap(), Vec::<String>::new());
    assert_eq!(
        cluster.layout.cache_records().unwrap(),
        Vec::<String>::new()
    );
    containerd.remove_pod_sandbox(&id).unwrap();
    assert_nothing_left(&cluster, &containerd, &[id], &links_before);
}

#[test]
fn missing_nad_fails_run_pod_sandbox_with_our_message_and_leaks_nothing() {
    let (cluster, containerd) = node();
    three_nads(&cluster).unwrap();
    let links_before = node_links(&cluster);
    let config = pod_sandbox(&cluster, &containerd, "lost", "ptp-net, no-such-net");

    let err = containerd.run_pod_sandbox(config).unwrap_err();
    let message = err.message();
    assert!(
        message.contains(
            "cannot find a network-attachment-definition (no-such-net) in namespace (default)"
        ),
        "containerd's error does not carry the daemon's: {message}"
    );
    // containerd tore the half-made sandbox down (CNI DEL included) before answering.
    assert_nothing_left(&cluster, &containerd, &[], &links_before);
}

#[test]
fn daemon_restarted_between_run_and_stop_still_tears_down() {
    let (mut cluster, containerd) = node();
    three_nads(&cluster).unwrap();
    let links_before = node_links(&cluster);
    let config = pod_sandbox(&cluster, &containerd, "rs", "ptp-net,macvlan-net");
    let id = containerd
        .run_pod_sandbox(config)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", cluster.daemon.log_text()));
    assert_eq!(cluster.layout.leases().unwrap().len(), 3);

    let conflist = cluster.layout.dir("net.d").join("10-cluster.conflist");
    let config = cluster.layout.config(&conflist.to_string_lossy());
    cluster.restart(&config).unwrap();

    containerd
        .stop_pod_sandbox(&id)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", cluster.daemon.log_text()));
    containerd.remove_pod_sandbox(&id).unwrap();
    assert_nothing_left(&cluster, &containerd, &[id], &links_before);
}

#[test]
fn burst_of_twenty_sandboxes_all_get_their_networks_and_all_go_away() {
    let (cluster, containerd) = node();
    let side = nad(
        "default",
        "side-net",
        &json!({"cniVersion": "1.0.0", "name": "side-net", "type": "ptp",
                "ipam": host_local(&cluster.layout, "10.89.0.0/24")}),
    );
    cluster.layout.put_manifest("nad-side.json", &side).unwrap();
    let links_before = node_links(&cluster);
    let configs: Vec<_> = (0..20)
        .map(|i| pod_sandbox(&cluster, &containerd, &format!("burst-{i}"), "side-net"))
        .collect();

    let results = containerd.run_pod_sandboxes(configs);
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    for (i, (r, took)) in results.into_iter().enumerate() {
        match r {
            Ok(id) => ids.push(id),
            Err(e) => failures.push(format!("burst-{i} after {took:?}: {}", e.message())),
        }
    }
    // (What did start is removed by the fixture's drop when this fails.)
    assert!(
        failures.is_empty(),
        "{failures:#?}\n{}",
        cluster.daemon.log_text()
    );
    // Inside each sandbox: the address the runtime reports on eth0, side-net on net1, none
    // shared with another sandbox.
    let mut seen = std::collections::BTreeSet::new();
    for id in &ids {
        let addrs = ip::addresses_at(&containerd.netns_path(id).unwrap()).unwrap();
        let (eth0, net1) = (ip::ipv4_of(&addrs, "eth0"), ip::ipv4_of(&addrs, "net1"));
        let pod_ip = containerd.pod_ip(id).unwrap();
        assert_eq!(
            eth0[0].split('/').next(),
            Some(pod_ip.as_str()),
            "{addrs:?}"
        );
        assert!(net1[0].starts_with("10.89.0."), "{addrs:?}");
        assert!(
            seen.insert(eth0[0].clone()) && seen.insert(net1[0].clone()),
            "{addrs:?}"
        );
    }
    assert_eq!(cluster.layout.leases().unwrap().len(), 40);

    containerd.stop_and_remove_all(&ids).unwrap();
    assert_nothing_left(&cluster, &containerd, &ids, &links_before);
}
