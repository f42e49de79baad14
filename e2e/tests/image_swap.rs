//! Issue 8, the image swap: a node of upstream's thick DaemonSet whose image is replaced by
//! ours. The daemon runs with upstream's own daemon-config (`fixtures/`, copied from upstream's
//! `deployments/multus-daemonset-thick.yml`; only its container paths are pointed at this test's
//! dirs) against the API server stand-in authorizing by upstream's ClusterRole. It writes
//! upstream's 00-multus.conf, and a pod with two NADs is attached and detached through our shim
//! run as a runtime runs it (that file as stdin, no `daemonSocketDir`, so the shim's default
//! `/run/multus`), and through the HTTP `POST /cni` request upstream's Go shim sends (still on
//! the host while the init container has not replaced it yet).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use axum::http::Method;
use multus_e2e::{
    apiserver::{Rbac, nad_json, pod_json, pod_path, pod_status_path},
    http, ip,
    netns::Netns,
    scenario::{KUBE_NODE, KubeCluster, host_local},
    shim::{Invocation, k8s_args},
};
use serde_json::{Map, Value, json};

/// Upstream's ConfigMap `multus-daemon-config`, key `daemon-config.json`, as shipped.
const UPSTREAM_DAEMON_CONFIG: &str = include_str!("../fixtures/upstream-thick-daemon-config.json");
const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

/// Upstream's daemon-config with the DaemonSet's container paths pointed at this node's test
/// dirs: `/hostroot` (the host's `/`) is `/`, `/host/etc/cni/net.d` the layout's `net.d`,
/// `/host/run/multus/` its `sock/`. What the DaemonSet mounts at the defaults' own paths
/// (`/var/lib/cni/multus` for cniDir, `/opt/cni/bin` for binDir, `/etc/cni/multus/net.d` for
/// confDir) is pointed at test dirs too, and the in-cluster service account is the stand-in's
/// kubeconfig. No other key is added.
fn upstream_config(k_config: &Map<String, Value>, net_d: &Path, sock: &Path) -> Map<String, Value> {
    let mut config: Map<String, Value> = serde_json::from_str(UPSTREAM_DAEMON_CONFIG).unwrap();
    let net_d = json!(net_d);
    for (key, from, to) in [
        ("chrootDir", "/hostroot", json!("/")),
        ("cniConfigDir", "/host/etc/cni/net.d", net_d.clone()),
        ("multusAutoconfigDir", "/host/etc/cni/net.d", net_d),
        (
            "socketDir",
            "/host/run/multus/",
            json!(format!("{}/", sock.display())),
        ),
    ] {
        assert_eq!(config[key], from, "upstream's {key}");
        config.insert(key.into(), to);
    }
    for key in ["cniDir", "binDir", "confDir", "kubeconfig"] {
        config.insert(key.into(), k_config[key].clone());
    }
    config
}

/// The node: upstream's config and ClusterRole, the two NADs `ptp-a` and `ptp-b`.
fn start() -> KubeCluster {
    let k = KubeCluster::start_with_api(
        |api| api.set_rbac(Rbac::upstream()),
        |config| {
            let sock = Path::new(config["socketDir"].as_str().unwrap()).to_owned();
            let net_d = sock.with_file_name("net.d");
            *config = upstream_config(config, &net_d, &sock);
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

/// Waits for the daemon's 00-multus.conf; its bytes.
fn multus_conf(k: &KubeCluster) -> Vec<u8> {
    let path = k.layout.dir("net.d").join("00-multus.conf");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match fs::read(&path) {
            Ok(bytes) if !bytes.is_empty() => return bytes,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "no 00-multus.conf:\n{}",
            k.daemon.log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn put_pod(k: &KubeCluster, name: &str, networks: &str) {
    let ann = BTreeMap::from([(NETWORKS.to_owned(), networks.to_owned())]);
    let mut pod = pod_json("default", name, KUBE_NODE, &ann);
    pod["metadata"]["uid"] = json!(format!("uid-{name}"));
    k.api.put_pod(pod);
}

/// Waits until the stand-in holds `count` events of `reason` about pod `name`; those events.
fn events_of(k: &KubeCluster, name: &str, reason: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<Value> = k
            .api
            .events()
            .into_iter()
            .filter(|e| e["reason"] == reason && e["involvedObject"]["name"] == name)
            .collect();
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{} {reason} events of {name}, not {count}:\n{}",
            found.len(),
            k.daemon.log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn links(ns: &Netns) -> Vec<String> {
    let mut l = ip::links(ns.name()).unwrap();
    l.sort();
    l
}

/// eth0, net1, net2 in the pod and a network-status naming the three networks, written with
/// upstream's RBAC: one update of pods/status, no patch granted.
fn assert_attached(k: &KubeCluster, pod_ns: &Netns, name: &str) {
    assert_eq!(links(pod_ns), ["eth0", "net1", "net2"]);
    let status = k.network_status("default", name).expect("network-status");
    let names = multus_e2e::probe::status_names(&status);
    assert_eq!(
        names,
        ["cluster", "default/ptp-a", "default/ptp-b"],
        "{status}"
    );
    assert_eq!(
        k.api
            .requests(&Method::PUT, &pod_status_path("default", name)),
        1
    );
}

fn assert_detached(k: &KubeCluster, pod_ns: &Netns, container_id: &str) {
    assert!(links(pod_ns).is_empty(), "interfaces left behind");
    let records = k.layout.cache_records().unwrap();
    assert!(
        !records.iter().any(|r| r.contains(container_id)),
        "{records:?}"
    );
}

#[test]
fn image_swap_upstream_daemon_config_upstream_rbac_two_nads() {
    let k = start();
    let net_d = k.layout.dir("net.d");
    // Upstream's generator's bytes for this config and primary (dropin-audit §3.7: binDir and
    // cniDir pass through, in its field order; the flannel + portmap example of §3.7 is pinned
    // by autoconf.rs `d1_upstream_configmap_with_flannel_portmap_gives_upstreams_bytes`).
    let conf = multus_conf(&k);
    assert_eq!(
        String::from_utf8(conf.clone()).unwrap(),
        format!(
            r#"{{"binDir":"{}","cniVersion":"0.3.1","logLevel":"verbose","logToStderr":true,"name":"multus-cni-network","clusterNetwork":"{}/10-cluster.conflist","type":"multus-shim","cniDir":"{}"}}"#,
            multus_e2e::CNI_BIN_DIR,
            net_d.display(),
            k.layout.dir("cni").display()
        )
    );

    // Through our shim, as the runtime runs it with that file.
    put_pod(&k, "via-shim", "ptp-a,ptp-b");
    let shim_ns = Netns::new("mrspod").unwrap();
    let cid = "5a0a0001";
    let add = Invocation::new(
        "ADD",
        cid,
        &shim_ns.path(),
        k8s_args("default", "via-shim", "uid-via-shim", cid),
        conf.clone(),
    );
    let sock = k.daemon.socket_dir().to_owned();
    let out = add.run_with_default_socket_dir(&sock).unwrap();
    assert!(out.success(), "{out:?}\n{}", k.daemon.log_text());
    assert_eq!(
        out.json()["cniVersion"],
        "0.3.1",
        "in 00-multus.conf's version"
    );
    assert_attached(&k, &shim_ns, "via-shim");
    // Upstream's ClusterRole grants the AddedInterface events too.
    let added = events_of(&k, "via-shim", "AddedInterface", 3);
    assert!(added.iter().all(|e| e["type"] == "Normal"), "{added:?}");
    assert_eq!(
        k.api.denials(),
        [(Method::PATCH, pod_path("default", "via-shim"))],
        "only the merge patch upstream's ClusterRole does not grant"
    );
    let del = add
        .with_command("DEL")
        .run_with_default_socket_dir(&sock)
        .unwrap();
    assert!(del.success(), "{del:?}\n{}", k.daemon.log_text());
    assert_detached(&k, &shim_ns, cid);

    // Through upstream's Go shim's request to /cni: its environment and the same file.
    put_pod(&k, "via-http", "ptp-a,ptp-b");
    let http_ns = Netns::new("mrspod").unwrap();
    let cid = "5a0a0002";
    let body = |command: &str| {
        let args = k8s_args("default", "via-http", "uid-via-http", cid);
        let netns = http_ns.path();
        http::shim_request(
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", cid),
                ("CNI_NETNS", &netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", &args),
                ("CNI_PATH", multus_e2e::CNI_BIN_DIR),
            ],
            &conf,
        )
    };
    let socket = k.daemon.socket();
    let r = http::request(&socket, "POST", "/cni", Some(&body("ADD"))).unwrap();
    assert_eq!(r.status, 200, "{r:?}\n{}", k.daemon.log_text());
    let result = &r.json()["Result"];
    assert_eq!(
        result["cniVersion"], "1.0.0",
        "upstream's server answers in 1.0.0"
    );
    assert!(
        result["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.88.0."),
        "{result}"
    );
    assert_attached(&k, &http_ns, "via-http");
    let r = http::request(&socket, "POST", "/cni", Some(&body("DEL"))).unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{r:?}");
    assert_detached(&k, &http_ns, cid);
    assert!(k.layout.leases().unwrap().is_empty(), "leases left");
    assert_eq!(
        k.api.denials(),
        [(Method::PATCH, pod_path("default", "via-shim"))],
        "no other refusal: the daemon switched to upstream's update for good"
    );
}

/// D-11 on the same node: a missing NAD fails the ADD with upstream's whole wording and posts
/// upstream's Warning `NoNetworkFound` event on the pod (upstream's ClusterRole grants it).
#[test]
fn d11_a_missing_nad_is_upstreams_error_and_no_network_found_warning_event() {
    let k = start();
    let conf = multus_conf(&k);
    put_pod(&k, "lost", "ptp-a,gone-net");
    let pod_ns = Netns::new("mrspod").unwrap();
    let cid = "5a0a0003";
    let out = Invocation::new(
        "ADD",
        cid,
        &pod_ns.path(),
        k8s_args("default", "lost", "uid-lost", cid),
        conf,
    )
    .run_with_default_socket_dir(k.daemon.socket_dir())
    .unwrap();
    assert!(!out.success(), "{out:?}");
    assert_eq!(out.cni_code(), Some(7), "{out:?}");
    let not_found = "cannot find a network-attachment-definition (gone-net) in namespace (default): network-attachment-definitions.k8s.cni.cncf.io \"gone-net\" not found";
    assert_eq!(
        out.json()["msg"],
        format!(
            "error configuring pod [default/lost] networking: Multus: [default/lost/uid-lost]: error loading k8s delegates k8s args: TryLoadPodDelegates: error in getting k8s network for pod: GetNetworkDelegates: failed getting the delegate: getKubernetesDelegate: {not_found}"
        )
    );
    assert!(links(&pod_ns).is_empty());
    let event = events_of(&k, "lost", "NoNetworkFound", 1).remove(0);
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["message"], not_found);
    assert_eq!(event["involvedObject"]["name"], "lost");
    assert_eq!(event["involvedObject"]["uid"], "uid-lost");
    assert_eq!(event["source"]["component"], "multus");
}

/// D-12 on the same node: a pod replaced under its name (the runtime's K8S_POD_UID is the old
/// one) fails the ADD with upstream's error and attaches nothing; a DEL of a pod that was
/// attached and then replaced, or deleted, still tears everything down (DEL needs only the
/// record).
#[test]
fn d12_a_replaced_pod_fails_the_add_and_del_of_a_replaced_or_vanished_pod_tears_down() {
    let k = start();
    let conf = multus_conf(&k);
    let sock = k.daemon.socket_dir().to_owned();
    let run = |command: &str, cid: &str, ns: &Netns, name: &str, uid: &str| {
        Invocation::new(
            command,
            cid,
            &ns.path(),
            k8s_args("default", name, uid, cid),
            conf.clone(),
        )
        .run_with_default_socket_dir(&sock)
        .unwrap()
    };

    put_pod(&k, "stateful-0", "ptp-a,ptp-b");
    let old_ns = Netns::new("mrspod").unwrap();
    let out = run("ADD", "5a0a0004", &old_ns, "stateful-0", "uid-before");
    assert_eq!(out.cni_code(), Some(7), "{out:?}");
    assert_eq!(
        out.json()["msg"],
        "error configuring pod [default/stateful-0] networking: Multus: [default/stateful-0/uid-before]: expected pod UID \"uid-before\" but got \"uid-stateful-0\" from Kube API"
    );
    assert!(links(&old_ns).is_empty());
    assert!(run("DEL", "5a0a0004", &old_ns, "stateful-0", "uid-before").success());

    for (cid, gone) in [("5a0a0005", "replaced"), ("5a0a0006", "deleted")] {
        put_pod(&k, "stateful-0", "ptp-a,ptp-b");
        let pod_ns = Netns::new("mrspod").unwrap();
        let add = run("ADD", cid, &pod_ns, "stateful-0", "uid-stateful-0");
        assert!(add.success(), "{add:?}\n{}", k.daemon.log_text());
        assert_eq!(links(&pod_ns), ["eth0", "net1", "net2"]);
        if gone == "replaced" {
            let mut newer = pod_json("default", "stateful-0", KUBE_NODE, &BTreeMap::new());
            newer["metadata"]["uid"] = json!("uid-after");
            k.api.put_pod(newer);
        } else {
            k.api.delete_pod("default", "stateful-0");
        }
        let del = run("DEL", cid, &pod_ns, "stateful-0", "uid-stateful-0");
        assert!(del.success(), "{gone}: {del:?}\n{}", k.daemon.log_text());
        assert_detached(&k, &pod_ns, cid);
    }
    assert!(k.layout.leases().unwrap().is_empty(), "leases left");
}
