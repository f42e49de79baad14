//! D-2: network-status is written with upstream's ClusterRole too. Upstream's thick ClusterRole
//! grants pods and pods/status get/list/update/watch and no patch; our chart grants patch on
//! pods. Through the real shim and daemon on the API server stand-in with each RBAC shape: a pod
//! with two NADs is attached and its network-status written; with upstream's shape the daemon
//! meets one 403 on the merge patch, then writes as upstream (GET, PUT pods/<name>/status with
//! the resourceVersion) for that pod and every later one, re-reading on a 409.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use axum::http::Method;
use multus_e2e::{
    apiserver::{
        Action, Fault, RBAC_USER, Rbac, Rule, nad_json, pod_json, pod_path, pod_status_path,
    },
    ip,
    netns::Netns,
    scenario::{KUBE_NODE, KubeCluster, host_local},
    shim::Invocation,
};
use serde_json::{Value, json};

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const SWITCHED: &str = "RBAC forbids patching pods";

/// A Kubernetes-mode node whose API server authorizes by `rbac` from the daemon's first request,
/// with the two NADs `ptp-a` and `ptp-b`.
fn start(rbac: Rbac) -> KubeCluster {
    let k = KubeCluster::start_with_api(
        |api| api.set_rbac(rbac),
        |c| {
            c.insert("kubeApiTimeoutSeconds".into(), json!(1));
            c.insert("kubeApiRetrySeconds".into(), json!(2));
        },
    )
    .unwrap();
    for (name, subnet) in [("ptp-a", "10.89.0.0/24"), ("ptp-b", "10.93.0.0/24")] {
        let ptp =
            json!({"cniVersion": "1.0.0", "type": "ptp", "ipam": host_local(&k.layout, subnet)});
        k.api.put_nad(nad_json("default", name, &ptp.to_string()));
    }
    k
}

/// A watched pod on this node selecting both NADs, uid `uid-<name>`.
fn put_pod(k: &KubeCluster, name: &str) {
    let ann = BTreeMap::from([(NETWORKS.to_owned(), "ptp-a,ptp-b".to_owned())]);
    let mut pod = pod_json("default", name, KUBE_NODE, &ann);
    pod["metadata"]["uid"] = json!(format!("uid-{name}"));
    k.api.put_pod(pod);
}

fn add(k: &KubeCluster, cid: &str, pod_ns: &Netns, name: &str) -> Invocation {
    k.invocation(cid, pod_ns, "default", name, &format!("uid-{name}"))
}

fn run_ok(k: &KubeCluster, inv: &Invocation) {
    let out = inv.run().unwrap();
    assert!(
        out.success(),
        "{} failed: {out:?}\n{}",
        inv.command,
        k.daemon.log_text()
    );
}

/// eth0, net1 and net2 in the pod, and a network-status naming the three networks.
fn assert_attached(k: &KubeCluster, pod_ns: &Netns, name: &str) {
    let mut links = ip::links(pod_ns.name()).unwrap();
    links.sort();
    assert_eq!(links, ["eth0", "net1", "net2"]);
    let status = k
        .network_status("default", name)
        .expect("network-status written");
    let names = multus_e2e::probe::status_names(&status);
    assert_eq!(
        names,
        ["cluster", "default/ptp-a", "default/ptp-b"],
        "{status}"
    );
}

fn del_cleans_up(k: &KubeCluster, inv: &Invocation, pod_ns: &Netns) {
    run_ok(k, &inv.with_command("DEL"));
    assert_eq!(ip::links(pod_ns.name()).unwrap(), Vec::<String>::new());
    assert!(
        !k.layout
            .cache_records()
            .unwrap()
            .contains(&inv.container_id)
    );
}

fn patches(k: &KubeCluster, name: &str) -> usize {
    k.api.requests(&Method::PATCH, &pod_path("default", name))
}

fn status_updates(k: &KubeCluster, name: &str) -> usize {
    k.api
        .requests(&Method::PUT, &pod_status_path("default", name))
}

#[test]
fn d2_chart_rbac_writes_network_status_with_one_merge_patch() {
    let k = start(Rbac::chart());
    put_pod(&k, "chart");
    let pod_ns = Netns::new("mrspod").unwrap();
    let inv = add(&k, "d2000001", &pod_ns, "chart");
    run_ok(&k, &inv);

    assert_attached(&k, &pod_ns, "chart");
    assert_eq!(patches(&k, "chart"), 1);
    assert_eq!(status_updates(&k, "chart"), 0);
    // The chart's ClusterRole covers every call the daemon made, from its first list on.
    assert_eq!(k.api.denials(), []);
    assert!(!k.daemon.log_text().contains(SWITCHED));
    del_cleans_up(&k, &inv, &pod_ns);
}

#[test]
fn d2_upstream_rbac_patches_once_then_updates_pods_status_for_every_pod() {
    let k = start(Rbac::upstream());
    put_pod(&k, "first");
    put_pod(&k, "second");
    let first_ns = Netns::new("mrspod").unwrap();
    let first = add(&k, "d2000002", &first_ns, "first");
    run_ok(&k, &first);

    assert_attached(&k, &first_ns, "first");
    assert_eq!(patches(&k, "first"), 1, "one patch, refused with 403");
    assert_eq!(status_updates(&k, "first"), 1, "then upstream's update");
    // The status update kept what the API server had: spec, status, labels, the selection.
    let stored = k.api.pod("default", "first").unwrap();
    assert_eq!(stored["spec"]["nodeName"], KUBE_NODE);
    assert_eq!(stored["status"]["phase"], "Pending");
    assert_eq!(stored["metadata"]["labels"]["app"], "first");
    assert_eq!(stored["metadata"]["uid"], "uid-first");
    assert_eq!(stored["metadata"]["annotations"][NETWORKS], "ptp-a,ptp-b");

    let second_ns = Netns::new("mrspod").unwrap();
    let second = add(&k, "d2000003", &second_ns, "second");
    run_ok(&k, &second);
    assert_attached(&k, &second_ns, "second");
    assert_eq!(patches(&k, "second"), 0, "the choice is remembered");
    assert_eq!(status_updates(&k, "second"), 1);
    assert_eq!(k.daemon.log_text().matches(SWITCHED).count(), 1);
    // Upstream's ClusterRole covers every other call the daemon made (lists, watches, events).
    assert_eq!(
        k.api.denials(),
        [(Method::PATCH, pod_path("default", "first"))]
    );

    del_cleans_up(&k, &first, &first_ns);
    del_cleans_up(&k, &second, &second_ns);
}

#[test]
fn d2_a_conflicting_status_update_is_retried_on_a_fresh_read() {
    let k = start(Rbac::upstream());
    put_pod(&k, "busy");
    // Another client writes the pod between the daemon's GET and its PUT, once.
    k.api.inject(
        Fault::new(
            Method::PUT,
            pod_status_path("default", "busy"),
            Action::ConcurrentWrite,
        )
        .times(1),
    );
    let pod_ns = Netns::new("mrspod").unwrap();
    let inv = add(&k, "d2000004", &pod_ns, "busy");
    run_ok(&k, &inv);

    assert_attached(&k, &pod_ns, "busy");
    assert_eq!(status_updates(&k, "busy"), 2, "a 409, then the write");
    assert!(
        k.api.requests(&Method::GET, &pod_path("default", "busy")) >= 2,
        "the pod was read again after the 409"
    );
    // The other client's change survived: the retry was based on the fresh read.
    let stored = k.api.pod("default", "busy").unwrap();
    assert_eq!(
        stored["metadata"]["labels"]["standin/concurrent-writes"],
        "1"
    );
    del_cleans_up(&k, &inv, &pod_ns);
}

#[test]
fn d2_neither_patch_nor_status_update_allowed_is_code_11_naming_the_rule() {
    // Upstream's rule without `update`: no way to write the annotation.
    let rbac = Rbac::Rules(vec![
        Rule {
            groups: vec![""],
            resources: vec!["pods", "pods/status"],
            verbs: vec!["get", "list", "watch"],
        },
        Rule {
            groups: vec!["k8s.cni.cncf.io"],
            resources: vec!["*"],
            verbs: vec!["*"],
        },
        Rule {
            groups: vec!["", "events.k8s.io"],
            resources: vec!["events"],
            verbs: vec!["create", "patch", "update"],
        },
    ]);
    let k = start(rbac);
    put_pod(&k, "locked");
    let pod_ns = Netns::new("mrspod").unwrap();
    let out = add(&k, "d2000005", &pod_ns, "locked").run().unwrap();

    assert_eq!(out.cni_code(), Some(11), "{out:?}");
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    let refused = format!(
        "pods \"locked\" is forbidden: User \"{RBAC_USER}\" cannot update resource \
         \"pods/status\" in API group \"\" in the namespace \"default\""
    );
    assert!(msg.contains(&refused), "{msg}");
    assert!(
        msg.contains("neither `patch` on pods nor `update` on pods/status"),
        "{msg}"
    );
    // The attachment was rolled back.
    assert_eq!(ip::links(pod_ns.name()).unwrap(), Vec::<String>::new());
    assert_eq!(k.layout.cache_records().unwrap(), Vec::<String>::new());
    assert_eq!(k.network_status("default", "locked"), None::<Value>);
}
