//! Issue 3's attachments through the real shim and daemon with the daemon reading pods and NADs
//! from the Kubernetes API server stand-in through a kubeconfig (no standalone state): selection
//! features, refusals that attach nothing, the network-status annotation as the API stores it,
//! and API faults (retried 500 and 409, an API server too slow or down within the budget).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::Method;
use multus_e2e::probe::addr_of;
use multus_e2e::{
    apiserver::{Action, Fault, nad_json, pod_json, pod_path},
    ip,
    netns::Netns,
    scenario::{KUBE_NODE, KubeCluster, host_local},
    shim::{Invocation, Output},
};
use serde_json::{Value, json};

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const DEFAULT_NETWORK: &str = "v1.multus-cni.io/default-network";

/// A Kubernetes-mode node with small API budgets (1 s per call, 2 s of retries) so the fault
/// cases end quickly.
fn start(tweak: impl FnOnce(&mut serde_json::Map<String, Value>)) -> KubeCluster {
    KubeCluster::start(|c| {
        c.insert("kubeApiTimeoutSeconds".into(), json!(1));
        c.insert("kubeApiRetrySeconds".into(), json!(2));
        tweak(c);
    })
    .unwrap()
}

/// A pod on this node with uid `uid-<name>`; `watched` false keeps it out of the daemon's
/// cache (only a live GET finds it).
fn put_pod(k: &KubeCluster, ns: &str, name: &str, annotations: &[(&str, &str)], watched: bool) {
    let ann: BTreeMap<String, String> = annotations
        .iter()
        .map(|(a, v)| ((*a).to_owned(), (*v).to_owned()))
        .collect();
    let mut pod = pod_json(ns, name, KUBE_NODE, &ann);
    pod["metadata"]["uid"] = json!(format!("uid-{name}"));
    if watched {
        k.api.put_pod(pod);
    } else {
        k.api.put_pod_unwatched(pod);
    }
}

fn put_nad(k: &KubeCluster, ns: &str, name: &str, config: &Value) {
    k.api.put_nad(nad_json(ns, name, &config.to_string()));
}

/// `ptp` + host-local over `subnet`.
fn ptp(k: &KubeCluster, subnet: &str) -> Value {
    json!({"cniVersion": "1.0.0", "type": "ptp", "ipam": host_local(&k.layout, subnet)})
}

fn add(k: &KubeCluster, cid: &str, pod_ns: &Netns, ns: &str, name: &str) -> Invocation {
    k.invocation(cid, pod_ns, ns, name, &format!("uid-{name}"))
}

fn run_ok(k: &KubeCluster, inv: &Invocation) -> Output {
    let out = inv.run().unwrap();
    assert!(
        out.success(),
        "{} failed: {out:?}\n{}",
        inv.command,
        k.daemon.log_text()
    );
    out
}

fn mac_of(ns: &Netns, ifname: &str) -> String {
    let link = ip::ip_json(&["-n", ns.name(), "link", "show", "dev", ifname]).unwrap();
    link[0]["address"].as_str().unwrap().to_owned()
}

/// No pod interface, no lease, no cache record, no network-status.
fn assert_nothing_attached(k: &KubeCluster, pod_ns: &Netns, ns: &str, name: &str) {
    assert_eq!(ip::links(pod_ns.name()).unwrap(), Vec::<String>::new());
    assert_eq!(k.layout.leases().unwrap(), Vec::<String>::new());
    assert_eq!(k.layout.cache_records().unwrap(), Vec::<String>::new());
    assert_eq!(k.network_status(ns, name), None);
}

/// DEL, then nothing of the pod is left on the node.
fn del_cleans_up(k: &KubeCluster, inv: &Invocation, pod_ns: &Netns) {
    run_ok(k, &inv.with_command("DEL"));
    assert_eq!(ip::links(pod_ns.name()).unwrap(), Vec::<String>::new());
    assert_eq!(k.layout.leases().unwrap(), Vec::<String>::new());
    assert_eq!(k.layout.cache_records().unwrap(), Vec::<String>::new());
}

fn failed_with(out: &Output, code: u64) -> String {
    assert!(!out.success(), "should fail: {out:?}");
    assert_eq!(out.cni_code(), Some(code), "{out:?}");
    out.json()["msg"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn static_ip_and_mac_on_a_macvlan_attachment() {
    let k = start(|_| {});
    let (parent, _) = k.node.veth_pair("mrsmv").unwrap();
    // Both the plugin and its static IPAM read the runtimeConfig multus injects for the
    // capabilities the NAD declares.
    let macvlan = json!({"cniVersion": "1.0.0", "type": "macvlan", "master": parent,
        "mode": "bridge", "capabilities": {"ips": true, "mac": true}, "ipam": {"type": "static"}});
    put_nad(&k, "default", "macvlan-static", &macvlan);
    let selection =
        r#"[{"name": "macvlan-static", "ips": ["10.92.0.7/24"], "mac": "c2:b0:57:49:47:f1"}]"#;
    put_pod(&k, "default", "mv", &[(NETWORKS, selection)], true);
    let pod_ns = Netns::new("mrspod").unwrap();
    let inv = add(&k, "4b0e0001", &pod_ns, "default", "mv");
    run_ok(&k, &inv);

    assert_eq!(addr_of(&pod_ns, "net1"), ["10.92.0.7/24"]);
    assert_eq!(mac_of(&pod_ns, "net1"), "c2:b0:57:49:47:f1");
    let status = k.network_status("default", "mv").unwrap();
    assert_eq!(status[1]["name"], "default/macvlan-static");
    assert_eq!(status[1]["ips"], json!(["10.92.0.7"]));
    assert_eq!(status[1]["mac"], "c2:b0:57:49:47:f1");
    del_cleans_up(&k, &inv, &pod_ns);
}

#[test]
fn requested_interface_names_in_both_annotation_forms() {
    let k = start(|_| {});
    put_nad(&k, "default", "ptp-a", &ptp(&k, "10.89.0.0/24"));
    put_nad(&k, "default", "ptp-b", &ptp(&k, "10.93.0.0/24"));
    let pod_ns = Netns::new("mrspod").unwrap();
    put_pod(&k, "default", "named", &[(NETWORKS, "ptp-a@fast0")], true);
    let comma = add(&k, "4b0e0002", &pod_ns, "default", "named");
    run_ok(&k, &comma);
    assert!(addr_of(&pod_ns, "fast0")[0].starts_with("10.89.0."));
    assert_eq!(
        k.network_status("default", "named").unwrap()[1]["interface"],
        "fast0"
    );
    del_cleans_up(&k, &comma, &pod_ns);

    let selection = r#"[{"name": "ptp-b", "namespace": "default", "interface": "slow1"}]"#;
    put_pod(&k, "default", "named-json", &[(NETWORKS, selection)], true);
    let listed = add(&k, "4b0e0003", &pod_ns, "default", "named-json");
    run_ok(&k, &listed);
    assert!(addr_of(&pod_ns, "slow1")[0].starts_with("10.93.0."));
    assert_eq!(
        k.network_status("default", "named-json").unwrap()[1]["interface"],
        "slow1"
    );
    del_cleans_up(&k, &listed, &pod_ns);
}

#[test]
fn default_route_moves_to_net1() {
    let k = start(|_| {});
    put_nad(&k, "default", "ptp-gw", &ptp(&k, "10.89.0.0/24"));
    let selection = r#"[{"name": "ptp-gw", "default-route": ["10.89.0.1"]}]"#;
    put_pod(&k, "default", "gw", &[(NETWORKS, selection)], true);
    let pod_ns = Netns::new("mrspod").unwrap();
    let inv = add(&k, "4b0e0004", &pod_ns, "default", "gw");
    run_ok(&k, &inv);

    let routes = ip::ip_json(&["-n", pod_ns.name(), "-4", "route", "show", "table", "main"]);
    let defaults: Vec<(Value, Value)> = routes
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dst"] == "default")
        .map(|r| (r["gateway"].clone(), r["dev"].clone()))
        .collect();
    assert_eq!(defaults, [(json!("10.89.0.1"), json!("net1"))]);
    let status = k.network_status("default", "gw").unwrap();
    assert_eq!(status[1]["gateway"], json!(["10.89.0.1"]));
    assert_eq!(status[0].get("gateway"), None, "{status}");
    del_cleans_up(&k, &inv, &pod_ns);
}

#[test]
fn namespace_isolation_refuses_a_cross_namespace_nad() {
    let k = start(|c| {
        c.insert("namespaceIsolation".into(), json!(true));
    });
    put_nad(&k, "b", "net", &ptp(&k, "10.89.0.0/24"));
    put_pod(&k, "a", "iso", &[(NETWORKS, "b/net")], true);
    let pod_ns = Netns::new("mrspod").unwrap();
    let out = add(&k, "4b0e0005", &pod_ns, "a", "iso").run().unwrap();
    let msg = failed_with(&out, 7);
    assert!(
        msg.contains("pod is in namespace a but refers to target namespace b"),
        "{out:?}"
    );
    assert_nothing_attached(&k, &pod_ns, "a", "iso");
}

#[test]
fn nad_without_config_takes_the_conf_dir_network_of_its_name() {
    let k = start(|_| {});
    let mut conf = ptp(&k, "10.95.0.0/24");
    conf["name"] = json!("from-disk");
    std::fs::write(
        k.layout.dir("conf").join("20-from-disk.conf"),
        conf.to_string(),
    )
    .unwrap();
    k.api.put_nad(nad_json("default", "from-disk", ""));
    put_pod(&k, "default", "disk", &[(NETWORKS, "from-disk")], true);
    let pod_ns = Netns::new("mrspod").unwrap();
    let inv = add(&k, "4b0e0006", &pod_ns, "default", "disk");
    run_ok(&k, &inv);
    assert!(addr_of(&pod_ns, "net1")[0].starts_with("10.95.0."));
    assert_eq!(
        k.network_status("default", "disk").unwrap()[1]["name"],
        "default/from-disk"
    );
    del_cleans_up(&k, &inv, &pod_ns);
}

#[test]
fn default_network_annotation_replaces_the_cluster_network() {
    let k = start(|_| {});
    // Resolved in multusNamespace (kube-system) like clusterNetwork.
    put_nad(&k, "kube-system", "alt-primary", &ptp(&k, "10.94.0.0/24"));
    put_pod(
        &k,
        "default",
        "alt",
        &[(DEFAULT_NETWORK, "alt-primary")],
        true,
    );
    let pod_ns = Netns::new("mrspod").unwrap();
    let inv = add(&k, "4b0e0007", &pod_ns, "default", "alt");
    let out = run_ok(&k, &inv);

    let eth0 = addr_of(&pod_ns, "eth0");
    assert!(eth0[0].starts_with("10.94.0."), "{eth0:?}");
    assert_eq!(ip::links(pod_ns.name()).unwrap(), ["eth0"]);
    let result_ip = out.json()["ips"][0]["address"].as_str().unwrap().to_owned();
    assert_eq!(
        result_ip, eth0[0],
        "the runtime gets the replacement's result"
    );
    let status = k.network_status("default", "alt").unwrap();
    assert_eq!(status.as_array().unwrap().len(), 1, "{status}");
    assert_eq!(status[0]["name"], "kube-system/alt-primary");
    assert_eq!(status[0]["default"], true);
    del_cleans_up(&k, &inv, &pod_ns);
}

#[test]
fn missing_nad_is_code_7_and_attaches_nothing() {
    let k = start(|_| {});
    put_nad(&k, "default", "there", &ptp(&k, "10.89.0.0/24"));
    put_pod(
        &k,
        "default",
        "lost",
        &[(NETWORKS, "there,not-there")],
        true,
    );
    let pod_ns = Netns::new("mrspod").unwrap();
    let out = add(&k, "4b0e0008", &pod_ns, "default", "lost")
        .run()
        .unwrap();
    let msg = failed_with(&out, 7);
    assert!(msg.contains("not-there"), "{out:?}");
    assert_nothing_attached(&k, &pod_ns, "default", "lost");
}

#[test]
fn network_status_is_one_merge_patch_in_upstreams_schema() {
    let k = start(|_| {});
    put_nad(&k, "default", "ptp-s", &ptp(&k, "10.89.0.0/24"));
    put_pod(&k, "default", "st", &[(NETWORKS, "ptp-s")], true);
    let pod_ns = Netns::new("mrspod").unwrap();
    let inv = add(&k, "4b0e0009", &pod_ns, "default", "st");
    run_ok(&k, &inv);

    let raw = k.api.pod("default", "st").unwrap()["metadata"]["annotations"]
        ["k8s.v1.cni.cncf.io/network-status"]
        .as_str()
        .unwrap()
        .to_owned();
    // Upstream's text: entries indented by four spaces, joined with "," inside "[...]".
    assert!(raw.starts_with("[{\n    \"name\": \"cluster\",\n"), "{raw}");
    let ip_of = |ifname: &str| {
        addr_of(&pod_ns, ifname)[0]
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let expected = json!([
        {"name": "cluster", "interface": "eth0", "ips": [ip_of("eth0")],
         "mac": mac_of(&pod_ns, "eth0"), "default": true, "dns": {}},
        {"name": "default/ptp-s", "interface": "net1", "ips": [ip_of("net1")],
         "mac": mac_of(&pod_ns, "net1"), "dns": {}},
    ]);
    assert_eq!(serde_json::from_str::<Value>(&raw).unwrap(), expected);
    // Only the annotation was patched: the rest of the pod is as the test stored it.
    let stored = k.api.pod("default", "st").unwrap();
    assert_eq!(stored["spec"]["nodeName"], KUBE_NODE);
    assert_eq!(stored["metadata"]["annotations"][NETWORKS], "ptp-s");
    let path = pod_path("default", "st");
    assert_eq!(k.api.requests(&Method::PATCH, &path), 1);
    assert_eq!(k.api.requests(&Method::PUT, &path), 0);
    del_cleans_up(&k, &inv, &pod_ns);
}

#[test]
fn a_500_on_the_pod_get_and_409s_on_the_status_patch_are_retried() {
    let k = start(|_| {});
    put_nad(&k, "default", "ptp-r", &ptp(&k, "10.89.0.0/24"));
    // Not in the daemon's cache: the ADD must GET it.
    put_pod(&k, "default", "flaky", &[(NETWORKS, "ptp-r")], false);
    let path = pod_path("default", "flaky");
    k.api
        .inject(Fault::new(Method::GET, &path, Action::Status(500)).times(1));
    k.api
        .inject(Fault::new(Method::PATCH, &path, Action::Status(409)).times(2));
    let pod_ns = Netns::new("mrspod").unwrap();
    let inv = add(&k, "4b0e000a", &pod_ns, "default", "flaky");
    run_ok(&k, &inv);

    assert!(addr_of(&pod_ns, "net1")[0].starts_with("10.89.0."));
    assert!(
        k.api.requests(&Method::GET, &path) >= 2,
        "the 500 was retried"
    );
    assert_eq!(
        k.api.requests(&Method::PATCH, &path),
        3,
        "two 409s, then the write"
    );
    assert_eq!(
        k.network_status("default", "flaky").unwrap()[1]["name"],
        "default/ptp-r"
    );
    del_cleans_up(&k, &inv, &pod_ns);
}

#[test]
fn a_failing_status_write_rolls_the_attachment_back_with_code_11() {
    let k = start(|_| {});
    put_nad(&k, "default", "ptp-w", &ptp(&k, "10.89.0.0/24"));
    put_pod(&k, "default", "nowrite", &[(NETWORKS, "ptp-w")], true);
    let path = pod_path("default", "nowrite");
    k.api
        .inject(Fault::new(Method::PATCH, &path, Action::Status(500)));
    let pod_ns = Netns::new("mrspod").unwrap();
    let out = add(&k, "4b0e000b", &pod_ns, "default", "nowrite")
        .run()
        .unwrap();
    let msg = failed_with(&out, 11);
    assert!(msg.contains("network-status"), "{out:?}");
    assert!(
        k.api.requests(&Method::PATCH, &path) >= 2,
        "retried within the budget"
    );
    assert_nothing_attached(&k, &pod_ns, "default", "nowrite");
}

#[test]
fn an_api_server_slower_than_the_budget_is_code_11_and_attaches_nothing() {
    let k = start(|_| {});
    put_nad(&k, "default", "ptp-slow", &ptp(&k, "10.89.0.0/24"));
    put_pod(&k, "default", "slow", &[(NETWORKS, "ptp-slow")], false);
    let path = pod_path("default", "slow");
    k.api.inject(Fault::new(
        Method::GET,
        &path,
        Action::Delay(Duration::from_secs(30)),
    ));
    let pod_ns = Netns::new("mrspod").unwrap();
    let out = add(&k, "4b0e000c", &pod_ns, "default", "slow")
        .run()
        .unwrap();
    let msg = failed_with(&out, 11);
    assert!(msg.contains("pod default/slow"), "{out:?}");
    assert_nothing_attached(&k, &pod_ns, "default", "slow");
}

#[test]
fn api_server_down_is_code_11_on_add_while_del_still_works_from_the_cache() {
    let mut k = start(|_| {});
    put_nad(&k, "default", "ptp-d", &ptp(&k, "10.89.0.0/24"));
    put_pod(&k, "default", "before", &[(NETWORKS, "ptp-d")], true);
    put_pod(&k, "default", "after", &[(NETWORKS, "ptp-d")], false);
    let attached_ns = Netns::new("mrspod").unwrap();
    let before = add(&k, "4b0e000d", &attached_ns, "default", "before");
    run_ok(&k, &before);

    k.api.halt();
    let pod_ns = Netns::new("mrspod").unwrap();
    let out = add(&k, "4b0e000e", &pod_ns, "default", "after")
        .run()
        .unwrap();
    failed_with(&out, 11);
    assert_eq!(ip::links(pod_ns.name()).unwrap(), Vec::<String>::new());
    assert_eq!(k.layout.cache_records().unwrap(), ["4b0e000d"]);

    // DEL needs no API: the cache record says what to undo.
    del_cleans_up(&k, &before, &attached_ns);
}

#[test]
fn add_for_a_pod_that_is_gone_succeeds_with_a_placeholder_and_attaches_nothing() {
    let k = start(|_| {});
    let pod_ns = Netns::new("mrspod").unwrap();
    let out = run_ok(&k, &add(&k, "4b0e000f", &pod_ns, "default", "ghost"));
    let result = out.json();
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["ips"][0]["address"], "0.0.0.0/0", "{result}");
    assert_eq!(result["interfaces"][0]["name"], "eth0");
    assert_eq!(ip::links(pod_ns.name()).unwrap(), Vec::<String>::new());
    assert_eq!(k.layout.cache_records().unwrap(), Vec::<String>::new());
    assert!(k.api.requests(&Method::GET, &pod_path("default", "ghost")) >= 1);
}
