//! Upstream's HTTP API on the daemon socket (D-8) and hot-plug (HTTP `/delegate` and the gRPC
//! `AddDelegate`/`DelDelegate`/`CheckDelegate`), through a real HTTP/1.1 client (hyper over the
//! unix socket), the real daemon and real reference plugins.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use multus_e2e::{
    http::{self, HttpResponse},
    ip,
    netns::Netns,
    scenario::{Cluster, PodOnNode, pod, pod_on_node, three_nads},
    shim::{k8s_args, multus_conf},
};
use multus_proto::v1::DelegateRequest;
use serde_json::Value;

fn links(ns: &Netns) -> Vec<String> {
    let mut l = ip::links(ns.name()).unwrap();
    l.sort();
    l
}

fn status_names(cluster: &Cluster, name: &str) -> Vec<(String, String)> {
    let status = cluster
        .layout
        .network_status("default", name)
        .unwrap()
        .expect("network-status written");
    status
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["interface"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The macvlan NAD's config as multus-dynamic-networks-controller sends it: the NAD's
/// spec.config with `name` defaulted to the NAD's name.
fn macvlan_config(cluster: &Cluster) -> Value {
    let nad: Value =
        serde_json::from_slice(&fs::read(cluster.layout.dir("state").join("nad-1.json")).unwrap())
            .unwrap();
    let mut config: Value = serde_json::from_str(nad["spec"]["config"].as_str().unwrap()).unwrap();
    config["name"] = "macvlan-net".into();
    config
}

/// The `/cni` body upstream's Go shim sends for `command` on this pod.
fn cni_body(cluster: &Cluster, command: &str, id: &str, pod_ns: &Netns, name: &str) -> Value {
    let args = k8s_args("default", name, &format!("uid-{name}"), id);
    let netns = pod_ns.path();
    let path = std::env::var("PATH").unwrap_or_default();
    http::shim_request(
        &[
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", &netns),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", &args),
            ("CNI_PATH", multus_e2e::CNI_BIN_DIR),
            ("PATH", &path),
        ],
        &multus_conf("0.3.1", cluster.daemon.socket_dir()),
    )
}

fn post(cluster: &Cluster, path: &str, body: &Value) -> HttpResponse {
    http::request(&cluster.daemon.socket(), "POST", path, Some(body)).unwrap()
}

#[test]
fn d8_healthz_and_readyz_answer_over_http1_beside_grpc() {
    let cluster = Cluster::start(|_| {}).unwrap();
    let socket = cluster.daemon.socket();
    for (method, path, want) in [
        ("GET", "/healthz", 200),
        ("POST", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("POST", "/readyz", 200),
        ("PUT", "/readyz", 405),
        ("GET", "/cni", 405),
        ("GET", "/delegate", 405),
        ("GET", "/nothing-here", 404),
    ] {
        let r = http::request(&socket, method, path, None).unwrap();
        assert_eq!(r.status, want, "{method} {path}: {r:?}");
        if want == 405 {
            assert_eq!(r.body, "Method not allowed\n");
        } else {
            assert_eq!(r.body, "", "{method} {path}");
        }
    }
    // gRPC still answers on the same socket (the shim's STATUS).
    let status = multus_e2e::shim::Invocation::new(
        "STATUS",
        "",
        "",
        String::new(),
        multus_conf("1.1.0", cluster.daemon.socket_dir()),
    )
    .run()
    .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn d8_a_pod_with_two_nads_attached_and_detached_through_upstreams_cni_request() {
    let cluster = Cluster::start(|_| {}).unwrap();
    three_nads(&cluster).unwrap();
    cluster
        .layout
        .put_manifest(
            "pod.json",
            &pod("default", "gosh", "uid-gosh", "ptp-net, macvlan-net"),
        )
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();

    let add = post(
        &cluster,
        "/cni",
        &cni_body(&cluster, "ADD", "90ad0001", &pod_ns, "gosh"),
    );
    assert_eq!(add.status, 200, "{add:?}\n{}", cluster.daemon.log_text());
    assert_eq!(add.content_type.as_deref(), Some("application/json"));
    // Upstream's Response: the cluster network's result in 1.0.0 under "Result".
    let result = &add.json()["Result"];
    assert_eq!(result["cniVersion"], "1.0.0", "{}", add.body);
    assert!(
        result["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.88.0."),
        "{result}"
    );
    assert_eq!(links(&pod_ns), ["eth0", "net1", "net2"]);
    assert_eq!(
        status_names(&cluster, "gosh"),
        [
            ("cluster".into(), "eth0".into()),
            ("default/ptp-net".into(), "net1".into()),
            ("default/macvlan-net".into(), "net2".into())
        ]
    );

    let check = post(
        &cluster,
        "/cni",
        &cni_body(&cluster, "CHECK", "90ad0001", &pod_ns, "gosh"),
    );
    assert_eq!((check.status, check.body.as_str()), (200, ""), "{check:?}");

    let del = post(
        &cluster,
        "/cni",
        &cni_body(&cluster, "DEL", "90ad0001", &pod_ns, "gosh"),
    );
    assert_eq!((del.status, del.body.as_str()), (200, ""), "{del:?}");
    assert!(links(&pod_ns).is_empty(), "interfaces left behind");
    assert!(cluster.layout.leases().unwrap().is_empty(), "leases left");
    assert!(cluster.layout.cache_records().unwrap().is_empty());

    // Upstream's failures: extraction errors as text, CNI errors as its JSON error object.
    let mut bad = cni_body(&cluster, "ADD", "90ad0002", &pod_ns, "gosh");
    bad["env"]["CNI_ARGS"] = "K8S_POD_NAMESPACE=default".into();
    let r = post(&cluster, "/cni", &bad);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        "could not extract the kubernetes runtime args: missing K8S_POD_NAME\n"
    );
    let mut no_nad = cni_body(&cluster, "ADD", "90ad0003", &pod_ns, "gosh");
    cluster
        .layout
        .put_manifest(
            "pod.json",
            &pod("default", "gosh", "uid-gosh", "missing-net"),
        )
        .unwrap();
    no_nad["env"]["CNI_IFNAME"] = "eth0".into();
    let r = post(&cluster, "/cni", &no_nad);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(r.json()["code"], 7, "{}", r.body);
    assert!(
        r.json()["msg"].as_str().unwrap().contains("missing-net"),
        "{}",
        r.body
    );
    assert!(links(&pod_ns).is_empty(), "a failed ADD left interfaces");
}

#[test]
fn hotplug_delegate_add_and_del_on_a_running_pod_then_the_pods_del_removes_both() {
    let PodOnNode {
        add,
        pod_ns,
        cluster,
    } = pod_on_node("d7e1e901", "dyn", "ptp-net").unwrap();
    assert!(add.run().unwrap().success());
    assert_eq!(links(&pod_ns), ["eth0", "net1"]);

    let netns = pod_ns.path();
    let body = |command: &str| {
        http::delegate_request(
            command,
            "d7e1e901",
            &netns,
            "net5",
            ("default", "dyn", "uid-dyn"),
            &macvlan_config(&cluster),
            None,
        )
    };
    let r = post(&cluster, "/delegate", &body("add"));
    assert_eq!(r.status, 200, "{r:?}\n{}", cluster.daemon.log_text());
    let result = &r.json()["Result"];
    assert_eq!(result["cniVersion"], "1.0.0", "{}", r.body);
    assert!(
        result["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.90.0."),
        "{result}"
    );
    assert_eq!(links(&pod_ns), ["eth0", "net1", "net5"]);
    assert!(status_names(&cluster, "dyn").contains(&("default/macvlan-net".into(), "net5".into())));
    let check = post(&cluster, "/delegate", &body("check"));
    assert_eq!((check.status, check.body.as_str()), (200, ""), "{check:?}");

    // The same interface twice is refused, nothing changes.
    let twice = post(&cluster, "/delegate", &body("add"));
    assert_eq!(twice.status, 400, "{twice:?}");
    assert_eq!(twice.json()["code"], 7, "{}", twice.body);
    assert_eq!(links(&pod_ns), ["eth0", "net1", "net5"]);

    let del = post(&cluster, "/delegate", &body("del"));
    assert_eq!((del.status, del.body.as_str()), (200, ""), "{del:?}");
    assert_eq!(links(&pod_ns), ["eth0", "net1"]);
    assert!(
        !status_names(&cluster, "dyn")
            .iter()
            .any(|(_, i)| i == "net5")
    );

    // A delegate whose plugin fails is rolled back: nothing attached, the record as before.
    let mut broken = macvlan_config(&cluster);
    broken["master"] = "no-such-dev".into();
    let failed = http::delegate_request(
        "ADD",
        "d7e1e901",
        &netns,
        "net6",
        ("default", "dyn", "uid-dyn"),
        &broken,
        None,
    );
    let r = post(&cluster, "/delegate", &failed);
    assert_eq!(r.status, 400, "{r:?}");
    let msg = r.json()["msg"].as_str().unwrap().to_owned();
    assert!(msg.contains("macvlan"), "{}", r.body);
    // D-11: upstream's /delegate ADD wording before ours.
    assert!(
        msg.starts_with("error configuring pod [default/dyn] networking: "),
        "{msg}"
    );
    assert_eq!(links(&pod_ns), ["eth0", "net1"]);
    let record = fs::read_to_string(cluster.layout.dir("cni").join("d7e1e901")).unwrap();
    assert!(!record.contains("net6"), "{record}");

    // Plugged again, then the pod's own DEL tears down everything.
    assert_eq!(post(&cluster, "/delegate", &body("add")).status, 200);
    assert_eq!(links(&pod_ns), ["eth0", "net1", "net5"]);
    let out = add.with_command("DEL").run().unwrap();
    assert!(out.success(), "{out:?}");
    assert!(links(&pod_ns).is_empty(), "interfaces left behind");
    assert!(cluster.layout.leases().unwrap().is_empty(), "leases left");
    assert!(cluster.layout.cache_records().unwrap().is_empty());
}

#[test]
fn hotplug_grpc_add_then_the_pods_del_removes_both_interfaces() {
    let PodOnNode {
        add,
        pod_ns,
        cluster,
    } = pod_on_node("d7e1e902", "grp", "").unwrap();
    assert!(add.run().unwrap().success());
    assert_eq!(links(&pod_ns), ["eth0"]);

    let socket = cluster.daemon.socket();
    let req = DelegateRequest {
        protocol_version: 1,
        container_id: "d7e1e902".into(),
        netns: pod_ns.path(),
        ifname: String::new(),
        cni_args_raw: "K8S_POD_NAMESPACE=default;K8S_POD_NAME=grp;K8S_POD_UID=uid-grp".into(),
        network: "default/macvlan-net@net3".into(),
        config: Vec::new(),
    };
    let result = http::hotplug(&socket, "AddDelegate", req.clone())
        .unwrap_or_else(|e| panic!("{e}\n{}", cluster.daemon.log_text()));
    let result: Value = serde_json::from_slice(&result).unwrap();
    assert_eq!(result["cniVersion"], "1.0.0", "{result}");
    assert_eq!(links(&pod_ns), ["eth0", "net3"]);
    assert_eq!(
        status_names(&cluster, "grp"),
        [
            ("cluster".into(), "eth0".into()),
            ("default/macvlan-net".into(), "net3".into())
        ]
    );
    http::hotplug(&socket, "CheckDelegate", req.clone()).unwrap();
    // A NAD that does not exist: refused before anything runs.
    let missing = DelegateRequest {
        network: "default/nope@net4".into(),
        ..req.clone()
    };
    let err = http::hotplug(&socket, "AddDelegate", missing).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    assert_eq!(links(&pod_ns), ["eth0", "net3"]);

    // DelDelegate detaches it alone; plugged again, the pod's DEL removes both.
    http::hotplug(&socket, "DelDelegate", req.clone()).unwrap();
    assert_eq!(links(&pod_ns), ["eth0"]);
    http::hotplug(&socket, "AddDelegate", req.clone()).unwrap();
    assert_eq!(links(&pod_ns), ["eth0", "net3"]);

    let out = add.with_command("DEL").run().unwrap();
    assert!(out.success(), "{out:?}");
    assert!(links(&pod_ns).is_empty(), "interfaces left behind");
    assert!(cluster.layout.leases().unwrap().is_empty(), "leases left");
    assert!(cluster.layout.cache_records().unwrap().is_empty());
}

#[test]
fn d8_a_non_root_peer_is_refused_on_http_too() {
    let cluster = Cluster::start(|_| {}).unwrap();
    // Open the socket to everyone so only the daemon's peer-credential check can refuse.
    let sock_dir = cluster.daemon.socket_dir().to_owned();
    for (p, mode) in [
        (sock_dir.parent().unwrap().to_owned(), 0o755),
        (sock_dir.clone(), 0o755),
        (cluster.daemon.socket(), 0o666),
    ] {
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    let socket = cluster.daemon.socket();
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(&socket)
        .arg("http://dummy/healthz")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("curl not found (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    assert_eq!(code, "403", "{text}");
    assert!(body.contains("uid 65534"), "{body}");
    let log = cluster.daemon.log_text();
    assert!(
        log.contains("caller refused") && log.contains("peer.uid=Some(65534)"),
        "{log}"
    );
    // Root still gets through.
    assert_eq!(
        http::request(&socket, "GET", "/healthz", None)
            .unwrap()
            .status,
        200
    );
}
