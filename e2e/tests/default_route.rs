//! `default-route` through the real shim and daemon: the requested gateway becomes the pod's
//! only IPv4 default route (read back with `ip -j route` in the pod's namespace), the cached
//! results and network-status say so, and a gateway that cannot be set rolls the ADD back.
//! Also the AddedInterface events' Kubernetes side: `KubeSource::record_event` against the API
//! server stand-in, whose failures and slowness never reach the caller.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::http::Method;
use multus_daemon::source::kube::{Budget, KubeSettings, KubeSource};
use multus_daemon::source::{ClusterSource, EventType, PodInfo};
use multus_e2e::{
    apiserver::{Action, ApiServer, Fault},
    ip,
    netns::Netns,
    scenario::{Cluster, host_local, nad, pod},
};
use serde_json::{Value, json};

/// The cluster network (bridge on 10.88.0.0/24 with a gateway, so eth0 gets a default route)
/// plus `ptp-net` (ptp + host-local on 10.89.0.0/24, gateway 10.89.0.1) selected with
/// `default-route` = `gateways`.
fn cluster_with_ptp(gateways: Value) -> Cluster {
    let cluster = Cluster::start(|_| {}).unwrap();
    let ptp = json!({"cniVersion": "1.0.0", "name": "ptp-net", "type": "ptp",
        "ipam": host_local(&cluster.layout, "10.89.0.0/24")});
    cluster
        .layout
        .put_manifest("nad-ptp.json", &nad("default", "ptp-net", &ptp))
        .unwrap();
    let selection = json!([{"name": "ptp-net", "default-route": gateways}]).to_string();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", &selection))
        .unwrap();
    cluster
}

/// IPv4 default routes in the namespace as `(gateway, dev)`.
fn v4_defaults(ns: &Netns) -> Vec<(String, String)> {
    let routes = ip::ip_json(&["-n", ns.name(), "-4", "route", "show", "table", "main"]).unwrap();
    routes
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dst"] == "default")
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("gateway"), s("dev"))
        })
        .collect()
}

/// The default routes of each delegate's cached result, by interface name.
fn cached_defaults(cluster: &Cluster, container_id: &str) -> Vec<(String, Vec<Value>)> {
    let record = cluster.layout.record(container_id).unwrap();
    record["delegates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let routes = d["result"]["routes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let defaults = routes
                .into_iter()
                .filter(|r| r["dst"].as_str().is_some_and(|d| d.ends_with("/0")))
                .collect();
            (
                d["delegate"]["ifname"].as_str().unwrap().to_owned(),
                defaults,
            )
        })
        .collect()
}

#[test]
fn default_route_moves_to_net1() {
    let cluster = cluster_with_ptp(json!(["10.89.0.1"]));
    let pod_ns = Netns::new("mrsdr").unwrap();
    let add = cluster.invocation("d3fa0001", &pod_ns, "default", "web", "uid-web");
    let out = add.run().unwrap();
    assert!(
        out.success(),
        "ADD failed: {out:?}\n{}",
        cluster.daemon.log_text()
    );

    assert_eq!(
        v4_defaults(&pod_ns),
        [("10.89.0.1".to_owned(), "net1".to_owned())]
    );
    assert_eq!(
        cached_defaults(&cluster, "d3fa0001"),
        [
            ("eth0".to_owned(), vec![]),
            (
                "net1".to_owned(),
                vec![json!({"dst": "0.0.0.0/0", "gw": "10.89.0.1"})]
            ),
        ]
    );
    // The runtime's result is the cluster network's, rewritten too.
    let result = out.json();
    let routes = result["routes"].as_array().cloned().unwrap_or_default();
    assert!(!routes.iter().any(|r| r["dst"] == "0.0.0.0/0"), "{result}");

    let status = cluster
        .layout
        .network_status("default", "web")
        .unwrap()
        .unwrap();
    assert_eq!(status[0]["interface"], "eth0");
    assert_eq!(status[0].get("gateway"), None, "{status}");
    assert_eq!(status[1]["interface"], "net1");
    assert_eq!(status[1]["gateway"], json!(["10.89.0.1"]));

    // The plugins' CHECK compares the cached results' routes with the namespace: it only passes
    // because the results were rewritten to match.
    let check = add.with_command("CHECK").run().unwrap();
    assert!(
        check.success(),
        "CHECK failed: {check:?}\n{}",
        cluster.daemon.log_text()
    );

    let del = add.with_command("DEL").run().unwrap();
    assert!(del.success(), "DEL failed: {del:?}");
    assert!(cluster.layout.cache_records().unwrap().is_empty());
}

#[test]
fn empty_default_route_removes_every_default() {
    let cluster = cluster_with_ptp(json!([]));
    let pod_ns = Netns::new("mrsdr").unwrap();
    let add = cluster.invocation("d3fa0002", &pod_ns, "default", "web", "uid-web");
    let out = add.run().unwrap();
    assert!(
        out.success(),
        "ADD failed: {out:?}\n{}",
        cluster.daemon.log_text()
    );
    assert_eq!(v4_defaults(&pod_ns), []);
    assert_eq!(
        cached_defaults(&cluster, "d3fa0002"),
        [("eth0".to_owned(), vec![]), ("net1".to_owned(), vec![])]
    );
    assert!(add.with_command("DEL").run().unwrap().success());
}

#[test]
fn unreachable_gateway_rolls_the_add_back() {
    let cluster = cluster_with_ptp(json!(["10.99.0.1"]));
    let pod_ns = Netns::new("mrsdr").unwrap();
    let add = cluster.invocation("d3fa0003", &pod_ns, "default", "web", "uid-web");
    let out = add.run().unwrap();
    assert!(!out.success(), "ADD should fail: {out:?}");
    let log = cluster.daemon.log_text();
    assert!(
        log.contains("default-route") || format!("{out:?}").contains("default-route"),
        "{out:?}\n{log}"
    );
    // Rolled back: no pod interfaces, no leases, no record.
    assert_eq!(ip::links(pod_ns.name()).unwrap(), Vec::<String>::new());
    assert!(cluster.layout.leases().unwrap().is_empty());
    assert!(cluster.layout.cache_records().unwrap().is_empty());
}

async fn kube_source(server: &ApiServer) -> KubeSource {
    let settings = KubeSettings {
        kubeconfig: Some(server.kubeconfig_path()),
        node_name: Some("node-a".into()),
        budget: Budget {
            per_call: Duration::from_millis(500),
            total: Duration::from_secs(2),
        },
        per_node_certificate: None,
    };
    KubeSource::connect(settings).await.unwrap()
}

#[tokio::test]
async fn added_interface_events_are_posted_and_their_failures_only_logged() {
    let server = ApiServer::start().await.unwrap();
    let source = kube_source(&server).await;
    let web = PodInfo {
        namespace: "app".into(),
        name: "web".into(),
        uid: "uid-web".into(),
        ..PodInfo::default()
    };
    let message = "Add net1 [10.89.0.2/24] from default/ptp-net";
    // Recording only queues the event; the source posts it in the background.
    source
        .record_event(&web, EventType::Normal, "AddedInterface", message)
        .await;
    until("the event to be posted", || server.events().len() == 1).await;
    let events = server.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["metadata"]["namespace"], "app");
    assert_eq!(e["involvedObject"]["kind"], "Pod");
    assert_eq!(e["involvedObject"]["name"], "web");
    assert_eq!(e["involvedObject"]["uid"], "uid-web");
    assert_eq!(
        (&e["type"], &e["reason"], &e["message"]),
        (&json!("Normal"), &json!("AddedInterface"), &json!(message))
    );
    assert_eq!(
        e["source"],
        json!({"component": "multus", "host": "node-a"})
    );

    // A failing and a hanging API server: nothing is stored, nothing retried, and the hanging
    // POST is given up at the per-call timeout (the event after it is posted).
    let path = "/api/v1/namespaces/app/events";
    server.inject(Fault::new(Method::POST, path, Action::Status(500)).times(1));
    source
        .record_event(&web, EventType::Normal, "AddedInterface", message)
        .await;
    until("the refused event's POST", || {
        server.requests(&Method::POST, path) == 2
    })
    .await;
    server.inject(Fault::new(Method::POST, path, Action::Delay(Duration::from_secs(30))).times(1));
    source
        .record_event(&web, EventType::Normal, "AddedInterface", message)
        .await;
    source
        .record_event(&web, EventType::Normal, "AddedInterface", "after the hang")
        .await;
    until("the event after the hanging one", || {
        server.events().len() == 2
    })
    .await;
    let events = server.events();
    assert_eq!(events[1]["message"], "after the hang", "{events:?}");
    assert_eq!(server.requests(&Method::POST, path), 4);
}

/// Polls `done` without blocking the runtime the source's event task runs on.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
