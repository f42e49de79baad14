//! D-15 through the real shim and daemon: upstream's `validateIfName` pre-check refuses an ADD
//! whose pod netns already holds an interface a secondary network would get, before any plugin
//! runs (no interface, no lease, no record, no network-status).
#![allow(clippy::unwrap_used)]

use multus_e2e::{
    ip,
    netns::Netns,
    scenario::{Cluster, pod, three_nads},
};

#[test]
fn d15_an_existing_secondary_ifname_fails_the_add_and_attaches_nothing() {
    let cluster = Cluster::start(|_| {}).unwrap();
    three_nads(&cluster).unwrap();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "taken", "uid-taken", "ptp-net"))
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    // `ptp-net` would become net1: a veth end of that name is already in the pod namespace.
    let peer = multus_e2e::unique("mrsd15");
    ip::ip(&[
        "-n",
        pod_ns.name(),
        "link",
        "add",
        "net1",
        "type",
        "veth",
        "peer",
        "name",
        &peer,
    ])
    .unwrap();
    let before = ip::links(pod_ns.name()).unwrap();
    let add = cluster.invocation("c0ffeed15", &pod_ns, "default", "taken", "uid-taken");

    let out = add.run().unwrap();
    assert!(!out.success(), "ADD must fail: {out:?}");
    assert_eq!(out.cni_code(), Some(4), "{out:?}");
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains(
            r#"DelegateAdd: cannot set "ptp" interface name to "net1": validateIfName: interface name net1 already exists"#
        ),
        "{msg}"
    );
    assert_eq!(
        ip::links(pod_ns.name()).unwrap(),
        before,
        "an interface was attached"
    );
    assert!(
        cluster.layout.leases().unwrap().is_empty(),
        "a lease was taken"
    );
    assert!(
        cluster.layout.cache_records().unwrap().is_empty(),
        "a record was written"
    );
    assert!(
        cluster
            .layout
            .network_status("default", "taken")
            .unwrap()
            .is_none(),
        "network-status was written"
    );
}
