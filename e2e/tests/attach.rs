//! ADD, DEL and CHECK through the real shim and daemon, with real reference plugins attaching
//! real interfaces to namespaces the tests create.
#![allow(clippy::unwrap_used)]

use multus_e2e::probe::addr_of;
use multus_e2e::{
    ip,
    netns::Netns,
    scenario::{Cluster, pod, pod_on_node, three_nads},
};

#[test]
fn add_attaches_four_networks_and_del_removes_everything() {
    let cluster = Cluster::start(|_| {}).unwrap();
    three_nads(&cluster).unwrap();
    let networks = "ptp-net, default/macvlan-net, hostdev-net@hostdev0";
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", networks))
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("c0ffee01", &pod_ns, "default", "web", "uid-web");

    let out = add.run().unwrap();
    assert!(
        out.success(),
        "ADD failed: {out:?}\n{}",
        cluster.daemon.log_text()
    );
    let result = out.json();
    // The runtime gets the cluster network's result, in its own cniVersion.
    assert_eq!(result["cniVersion"], "1.0.0");
    assert!(
        result["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.88.0."),
        "{result}"
    );

    assert!(addr_of(&pod_ns, "eth0")[0].starts_with("10.88.0."));
    assert!(addr_of(&pod_ns, "net1")[0].starts_with("10.89.0."));
    assert!(addr_of(&pod_ns, "net2")[0].starts_with("10.90.0."));
    assert_eq!(
        addr_of(&pod_ns, "hostdev0"),
        vec!["10.91.0.5/24".to_string()]
    );
    assert_eq!(cluster.layout.leases().unwrap().len(), 3);

    let status = cluster
        .layout
        .network_status("default", "web")
        .unwrap()
        .expect("network-status written");
    let names = multus_e2e::probe::status_names(&status);
    assert_eq!(
        names,
        [
            "cluster",
            "default/ptp-net",
            "default/macvlan-net",
            "default/hostdev-net"
        ]
    );
    assert_eq!(status[0]["default"], true);
    assert_eq!(status[3]["interface"], "hostdev0");

    let del = add.with_command("DEL").run().unwrap();
    assert!(del.success(), "DEL failed: {del:?}");
    assert!(
        ip::links(pod_ns.name()).unwrap().is_empty(),
        "interfaces left behind"
    );
    assert!(
        cluster.layout.leases().unwrap().is_empty(),
        "leases left behind"
    );
    assert!(
        cluster.layout.cache_records().unwrap().is_empty(),
        "cache record left behind"
    );
    // host-device gives the device back to the node namespace.
    assert!(
        ip::links(cluster.node.name())
            .unwrap()
            .iter()
            .any(|l| l.starts_with("mrshd"))
    );

    let again = add.with_command("DEL").run().unwrap();
    assert!(again.success(), "second DEL must succeed: {again:?}");
}

#[test]
fn check_after_add_and_del_of_unknown_container() {
    let node = pod_on_node("c0ffee02", "chk", "ptp-net").unwrap();
    let add = &node.add;
    assert!(add.run().unwrap().success());

    let check = add.with_command("CHECK").run().unwrap();
    assert!(check.success(), "CHECK failed: {check:?}");

    let mut unknown = add.with_command("DEL");
    unknown.container_id = "never-added".into();
    let out = unknown.run().unwrap();
    assert!(
        out.success(),
        "DEL of an unknown container must succeed: {out:?}"
    );

    assert!(add.with_command("DEL").run().unwrap().success());
}

#[test]
fn del_after_daemon_restart_uses_only_the_cache() {
    let mut cluster = Cluster::start(|_| {}).unwrap();
    three_nads(&cluster).unwrap();
    cluster
        .layout
        .put_manifest(
            "pod.json",
            &pod("default", "rs", "uid-rs", "ptp-net,macvlan-net"),
        )
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("c0ffee03", &pod_ns, "default", "rs", "uid-rs");
    assert!(add.run().unwrap().success());

    // The pod and its NADs disappear and the daemon restarts: DEL still tears everything down.
    for f in std::fs::read_dir(cluster.layout.dir("state")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let config = cluster.layout.config(
        &cluster
            .layout
            .dir("net.d")
            .join("gone.conflist")
            .to_string_lossy(),
    );
    cluster.restart(&config).unwrap();

    let del = add.with_command("DEL").run().unwrap();
    assert!(
        del.success(),
        "DEL failed: {del:?}\n{}",
        cluster.daemon.log_text()
    );
    assert!(ip::links(pod_ns.name()).unwrap().is_empty());
    assert!(cluster.layout.leases().unwrap().is_empty());
}

#[test]
fn failing_delegate_leaves_nothing_behind() {
    let cluster = Cluster::start(|_| {}).unwrap();
    three_nads(&cluster).unwrap();
    let broken = serde_json::json!({"cniVersion": "1.0.0", "type": "macvlan", "master": "no-such-dev",
        "ipam": multus_e2e::scenario::host_local(&cluster.layout, "10.92.0.0/24")});
    cluster
        .layout
        .put_manifest(
            "broken.json",
            &multus_e2e::scenario::nad("default", "broken-net", &broken),
        )
        .unwrap();
    cluster
        .layout
        .put_manifest(
            "pod.json",
            &pod("default", "bad", "uid-bad", "ptp-net,broken-net"),
        )
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("c0ffee04", &pod_ns, "default", "bad", "uid-bad");

    let out = add.run().unwrap();
    assert_eq!(out.code, Some(1), "ADD must fail: {out:?}");
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains("default/broken-net"),
        "error must name the delegate: {msg}"
    );
    assert!(
        ip::links(pod_ns.name()).unwrap().is_empty(),
        "half-attached pod"
    );
    assert!(cluster.layout.leases().unwrap().is_empty(), "leaked lease");
    assert!(
        cluster.layout.cache_records().unwrap().is_empty(),
        "stale cache record"
    );
    assert!(
        cluster
            .layout
            .network_status("default", "bad")
            .unwrap()
            .is_none()
    );
}

#[test]
fn missing_nad_is_a_config_error_and_attaches_nothing() {
    let cluster = Cluster::start(|_| {}).unwrap();
    cluster
        .layout
        .put_manifest(
            "pod.json",
            &pod("default", "nonad", "uid-n", "does-not-exist"),
        )
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let out = cluster
        .invocation("c0ffee05", &pod_ns, "default", "nonad", "uid-n")
        .run()
        .unwrap();
    assert_eq!(out.cni_code(), Some(7), "{out:?}");
    assert!(
        out.json()["msg"].as_str().unwrap().contains(
            "cannot find a network-attachment-definition (does-not-exist) in namespace (default)"
        ),
        "{out:?}"
    );
    assert!(ip::links(pod_ns.name()).unwrap().is_empty());
    assert!(cluster.layout.leases().unwrap().is_empty());
}

#[test]
fn json_list_annotation_picks_namespaces_and_interface_names() {
    let cluster = Cluster::start(|_| {}).unwrap();
    three_nads(&cluster).unwrap();
    let other = serde_json::json!({"cniVersion": "1.0.0", "type": "ptp",
        "ipam": multus_e2e::scenario::host_local(&cluster.layout, "10.93.0.0/24")});
    cluster
        .layout
        .put_manifest(
            "other.json",
            &multus_e2e::scenario::nad("other", "ptp-net", &other),
        )
        .unwrap();
    let networks = r#"[{"name": "ptp-net", "namespace": "other", "interface": "fast0"},
                       {"name": "ptp-net"}]"#;
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "js", "uid-js", networks))
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("c0ffee06", &pod_ns, "default", "js", "uid-js");

    let out = add.run().unwrap();
    assert!(
        out.success(),
        "ADD failed: {out:?}\n{}",
        cluster.daemon.log_text()
    );
    // The named interface keeps its name; the unnamed one is numbered by its position.
    assert!(addr_of(&pod_ns, "fast0")[0].starts_with("10.93.0."));
    assert!(addr_of(&pod_ns, "net2")[0].starts_with("10.89.0."));
    let status = cluster
        .layout
        .network_status("default", "js")
        .unwrap()
        .unwrap();
    assert_eq!(status[1]["name"], "other/ptp-net");
    assert_eq!(status[2]["name"], "default/ptp-net");

    assert!(add.with_command("DEL").run().unwrap().success());
    assert!(ip::links(pod_ns.name()).unwrap().is_empty());
    assert!(cluster.layout.leases().unwrap().is_empty());
}
