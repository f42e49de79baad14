//! Issue 9, the node's life, through the real shim and daemon: health NOT_SERVING until the pod
//! and NAD caches have synced (the API stand-in answers the first lists late) with an ADD that
//! arrived meanwhile served from the caches, an ADD past `cacheSyncTimeoutSeconds` failing with
//! code 11; the readiness indicator file appearing and disappearing at runtime; and the
//! stale-state reconcile, once from `--reconcile-once [--collect]` and periodically, reporting
//! and collecting only the records of pods whose namespace is gone.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::http::Method;
use multus_e2e::apiserver::{Action, ApiServer, Fault, nad_json, pod_json, pod_path};
use multus_e2e::daemon::Layout;
use multus_e2e::netns::Netns;
use multus_e2e::probe::{ServingStatus, health, wait_for};
use multus_e2e::scenario::{Cluster, KUBE_NODE, KubeCluster, NodeApiServer, host_local, pod};
use multus_e2e::shim::{Invocation, multus_conf};
use serde_json::{Map, Value, json};

const PODS: &str = "/api/v1/pods";
const NADS: &str = "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions";

fn readyz(socket: &Path) -> u16 {
    multus_e2e::http::request(socket, "GET", "/readyz", None)
        .unwrap()
        .status
}

/// Waits (bounded) until health is `want`; how long it took.
fn until_health(
    socket: &Path,
    want: ServingStatus,
    within: Duration,
    log: impl Fn() -> String,
) -> Duration {
    let started = Instant::now();
    while health(socket) != want {
        assert!(
            started.elapsed() < within,
            "health never became {want:?} within {within:?}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

/// A Kubernetes-mode node whose API stand-in already has `prepare`'s objects and faults when
/// the daemon starts, returned as soon as the daemon's socket accepts (no wait for its caches).
fn kube_node(
    prepare: impl FnOnce(&ApiServer),
    tweak: impl FnOnce(&mut Map<String, Value>),
) -> KubeCluster {
    let node = Netns::new("mrsnode").unwrap();
    let api = NodeApiServer::start(&node).unwrap();
    prepare(&api);
    let kubeconfig = api.kubeconfig_path();
    let env = [("MULTUS_NODE_NAME", KUBE_NODE)];
    let cluster = Cluster::start_on(node, Layout::new().unwrap(), &env, |config| {
        config.remove("clusterStateDir");
        config.remove("networkStatusDir");
        config.insert("kubeconfig".into(), json!(kubeconfig));
        tweak(config);
    })
    .unwrap();
    KubeCluster { cluster, api }
}

/// A pod `default/<name>` on this node selecting `networks`, with uid `uid-<name>`.
fn put_pod(api: &ApiServer, name: &str, networks: &str) {
    let mut ann = BTreeMap::new();
    if !networks.is_empty() {
        ann.insert(
            "k8s.v1.cni.cncf.io/networks".to_owned(),
            networks.to_owned(),
        );
    }
    let mut p = pod_json("default", name, KUBE_NODE, &ann);
    p["metadata"]["uid"] = json!(format!("uid-{name}"));
    api.put_pod(p);
}

#[test]
fn health_waits_for_the_cache_sync_and_an_add_meanwhile_is_served_from_the_caches() {
    let delay = Duration::from_secs(6);
    let layout_for_nad = Layout::new().unwrap();
    let k = kube_node(
        |api| {
            let ptp = json!({"cniVersion": "1.0.0", "type": "ptp",
                "ipam": host_local(&layout_for_nad, "10.89.7.0/24")});
            api.put_nad(nad_json("default", "ptp-a", &ptp.to_string()));
            put_pod(api, "early", "ptp-a");
            api.inject(Fault::new(Method::GET, PODS, Action::Delay(delay)).times(1));
        },
        |_| {},
    );
    let socket = k.daemon.socket();
    assert_eq!(
        health(&socket),
        ServingStatus::NotServing,
        "{}",
        k.daemon.log_text()
    );
    assert_eq!(readyz(&socket), 500, "/readyz agrees with gRPC health");

    let pod_ns = Netns::new("mrspod").unwrap();
    let inv = k.invocation("9a11c0de01", &pod_ns, "default", "early", "uid-early");
    let add = std::thread::spawn({
        let inv = inv.clone();
        move || inv.run().unwrap()
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!add.is_finished(), "the ADD did not wait for the caches");
    assert_eq!(health(&socket), ServingStatus::NotServing);

    until_health(
        &socket,
        ServingStatus::Serving,
        Duration::from_secs(30),
        || k.daemon.log_text(),
    );
    assert_eq!(readyz(&socket), 200);
    let out = add.join().unwrap();
    assert!(out.success(), "{out:?}\n{}", k.daemon.log_text());
    assert!(multus_e2e::probe::addr_of(&pod_ns, "net1")[0].starts_with("10.89.7."));
    // Served from the caches: no live GET of the pod or the NAD.
    assert_eq!(
        k.api.requests(&Method::GET, &pod_path("default", "early")),
        0
    );
    assert_eq!(
        k.api.requests(
            &Method::GET,
            "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/ptp-a"
        ),
        0
    );
    assert!(
        k.daemon.log_text().contains("pod and NAD caches synced"),
        "{}",
        k.daemon.log_text()
    );
    let del = inv.with_command("DEL").run().unwrap();
    assert!(del.success(), "{del:?}");
}

#[test]
fn an_add_past_the_sync_bound_fails_with_code_11_naming_the_cache_then_succeeds() {
    let k = kube_node(
        |api| {
            put_pod(api, "late", "");
            api.inject(
                Fault::new(Method::GET, NADS, Action::Delay(Duration::from_secs(6))).times(1),
            );
        },
        |c| {
            c.insert("cacheSyncTimeoutSeconds".into(), json!(1));
        },
    );
    let pod_ns = Netns::new("mrspod").unwrap();
    let inv = k.invocation("9a11c0de02", &pod_ns, "default", "late", "uid-late");
    let out = inv.run().unwrap();
    assert_eq!(out.cni_code(), Some(11), "{out:?}");
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains("NetworkAttachmentDefinition cache") && msg.contains("not synced"),
        "{msg}"
    );
    assert!(
        !msg.contains("pod cache"),
        "the pod cache had synced: {msg}"
    );
    assert_eq!(k.layout.cache_records().unwrap(), Vec::<String>::new());

    until_health(
        &k.daemon.socket(),
        ServingStatus::Serving,
        Duration::from_secs(30),
        || k.daemon.log_text(),
    );
    let out = inv.run().unwrap();
    assert!(out.success(), "{out:?}\n{}", k.daemon.log_text());
    assert!(inv.with_command("DEL").run().unwrap().success());
}

#[test]
fn the_readiness_indicator_file_gates_add_and_status_as_it_comes_and_goes() {
    let flag_dir = tempfile::tempdir().unwrap();
    // Its directory does not exist yet either.
    let flag = flag_dir.path().join("primary").join("ready");
    let cluster = Cluster::start(|c| {
        c.insert("readinessindicatorfile".into(), json!(flag));
    })
    .unwrap();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "gated", "uid-gated", ""))
        .unwrap();
    let socket = cluster.daemon.socket();
    let pod_ns = Netns::new("mrspod").unwrap();
    let inv = cluster.invocation("9a11c0de03", &pod_ns, "default", "gated", "uid-gated");
    let status = Invocation::new(
        "STATUS",
        "",
        "",
        String::new(),
        multus_conf("1.1.0", cluster.daemon.socket_dir()),
    );
    let flag_text = flag.display().to_string();
    let refused = |code: u64, out: &multus_e2e::shim::Output| {
        assert_eq!(out.cni_code(), Some(code), "{out:?}");
        let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
        assert!(msg.contains(&flag_text), "{msg}");
    };

    assert_eq!(health(&socket), ServingStatus::NotServing);
    refused(11, &inv.run().unwrap());
    refused(50, &status.run().unwrap());
    assert_eq!(
        cluster.layout.cache_records().unwrap(),
        Vec::<String>::new()
    );

    std::fs::create_dir_all(flag.parent().unwrap()).unwrap();
    std::fs::write(&flag, b"").unwrap();
    // No restart: the watch sees the file, health and ADD follow.
    until_health(
        &socket,
        ServingStatus::Serving,
        Duration::from_secs(10),
        || cluster.daemon.log_text(),
    );
    let out = inv.run().unwrap();
    assert!(out.success(), "{out:?}\n{}", cluster.daemon.log_text());
    assert!(status.run().unwrap().success());

    std::fs::remove_file(&flag).unwrap();
    until_health(
        &socket,
        ServingStatus::NotServing,
        Duration::from_secs(10),
        || cluster.daemon.log_text(),
    );
    let again = Netns::new("mrspod").unwrap();
    let second = cluster.invocation("9a11c0de04", &again, "default", "gated", "uid-gated");
    refused(11, &second.run().unwrap());
    refused(50, &status.run().unwrap());
    // DEL never waits for readiness: the pod attached before goes cleanly.
    assert!(inv.with_command("DEL").run().unwrap().success());
    assert_eq!(
        cluster.layout.cache_records().unwrap(),
        Vec::<String>::new()
    );
    let log = cluster.daemon.log_text();
    assert!(log.contains("readiness indicator file present"), "{log}");
    assert!(log.contains("readiness indicator file missing"), "{log}");
}

/// The daemon config `Cluster::start` runs with, written where an operator would find it.
fn config_file(layout: &Layout, tweak: impl FnOnce(&mut Map<String, Value>)) -> PathBuf {
    let conflist = layout.dir("net.d").join("10-cluster.conflist");
    let mut config = layout.config(&conflist.to_string_lossy());
    tweak(&mut config);
    let path = layout.dir("conf").join("operator-daemon-config.json");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    path
}

/// `multus-daemon --reconcile-once [--collect]` in the node namespace: exit code and stdout.
fn reconcile_once(node: &Netns, config: &Path, collect: bool) -> (Option<i32>, String, String) {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", node.name()])
        .arg(multus_e2e::bins::daemon().unwrap())
        .arg("--reconcile-once")
        .arg("--config")
        .arg(config);
    if collect {
        cmd.arg("--collect");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two attached pods, `default/live` and `default/gone`, of which the second's sandbox then
/// goes without a DEL (a runtime crash, a node cut off at the wrong moment). Returns the live
/// pod's invocation and its namespace (kept alive by the caller).
fn live_and_gone(cluster: &Cluster, live_id: &str, gone_id: &str) -> (Invocation, Netns) {
    let l = &cluster.layout;
    l.put_manifest("live.json", &pod("default", "live", "uid-live", ""))
        .unwrap();
    l.put_manifest("gone.json", &pod("default", "gone", "uid-gone", ""))
        .unwrap();
    let live_ns = Netns::new("mrspod").unwrap();
    let live = cluster.invocation(live_id, &live_ns, "default", "live", "uid-live");
    assert!(live.run().unwrap().success());
    let gone_ns = Netns::new("mrspod").unwrap();
    let gone = cluster.invocation(gone_id, &gone_ns, "default", "gone", "uid-gone");
    assert!(gone.run().unwrap().success());
    drop(gone_ns);
    (live, live_ns)
}

#[test]
fn reconcile_once_reports_then_collects_only_the_pod_whose_namespace_is_gone() {
    let cluster = Cluster::start(|_| {}).unwrap();
    let l = &cluster.layout;
    let (live, _live_ns) = live_and_gone(&cluster, "9a11c0de05", "9a11c0de06");
    // Both leases stay: the gone pod's sandbox went without a DEL.
    assert_eq!(l.leases().unwrap().len(), 2);
    let live_record = std::fs::read(l.dir("cni").join("multus-rs").join("9a11c0de05")).unwrap();
    let config = config_file(l, |_| {});

    let (code, stdout, stderr) = reconcile_once(&cluster.node, &config, false);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let stale: Vec<&str> = stdout.lines().filter(|l| l.starts_with("own\t")).collect();
    assert_eq!(stale.len(), 1, "{stdout}");
    assert!(
        stale[0].contains("container=9a11c0de06") && stale[0].ends_with("reported"),
        "{stdout}"
    );
    assert!(stdout.contains("own=1"), "{stdout}");
    assert_eq!(l.cache_records().unwrap(), ["9a11c0de05", "9a11c0de06"]);
    assert_eq!(l.leases().unwrap().len(), 2, "reporting released a lease");

    let (code, stdout, stderr) = reconcile_once(&cluster.node, &config, true);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("container=9a11c0de06") && l.ends_with("collected")),
        "{stdout}"
    );
    assert_eq!(l.cache_records().unwrap(), ["9a11c0de05"]);
    // Collected as GC collects: the bridge's DEL released the pod's address.
    assert_eq!(l.leases().unwrap().len(), 1);
    assert_eq!(
        std::fs::read(l.dir("cni").join("multus-rs").join("9a11c0de05")).unwrap(),
        live_record,
        "the live pod's record changed"
    );
    assert!(live.with_command("DEL").run().unwrap().success());
    assert_eq!(l.leases().unwrap(), Vec::<String>::new());
}

#[test]
fn the_periodic_reconcile_collects_a_pod_whose_namespace_went() {
    let cluster = Cluster::start(|c| {
        c.insert("reconcileIntervalSeconds".into(), json!(1));
        c.insert("reconcileCollect".into(), json!(true));
    })
    .unwrap();
    let l = &cluster.layout;
    let (live, _live_ns) = live_and_gone(&cluster, "9a11c0de07", "9a11c0de08");
    let started = Instant::now();
    while l.cache_records().unwrap() != ["9a11c0de07"] {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not collected: {:?}\n{}",
            l.cache_records().unwrap(),
            cluster.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(l.leases().unwrap().len(), 1);
    // The run's summary line is logged after its last collection: the record can be gone a
    // moment before the line is there.
    wait_for("the reconcile's summary line", || {
        cluster.daemon.log_text().contains("reconcile: stale state")
    });
    assert!(live.with_command("DEL").run().unwrap().success());
}
