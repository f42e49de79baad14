//! Pods from before the swap, and the way back (D-5, D-6), with Debian's real plugins and a real
//! hostPort rule (portmap over `iptables`, nf_tables backend) in the test's node namespace.
//!
//! D-5: a pod attached by Go Multus (the test runs the plugins as upstream's libcni would and
//! writes upstream's scratch record and libcni's result cache, byte shapes as Go writes them)
//! is torn down by DEL through our shim: the DNAT rule, the interfaces and the lease are gone.
//!
//! D-6: a pod attached by us can be torn down from what Go Multus v4.3 reads: the test does
//! upstream's DEL itself from `<cniDir>/<cid>` and `<cniDir>/results/` only (config from
//! `Bytes`, interface from `getIfname`, prevResult from libcni's cache, runtimeConfig from the
//! DEL request), and our DEL of a record reduced to those files works too.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use multus_e2e::{
    daemon::Layout,
    ip,
    netns::Netns,
    probe,
    scenario::{Cluster, pod},
    shim::{Invocation, k8s_args},
};
use serde_json::{Value, json};

const HOST_PORT: u16 = 18081;
const CONTAINER_PORT: u16 = 80;
const PLUGINS: &str = multus_e2e::CNI_BIN_DIR;

fn require_iptables() {
    assert!(
        Path::new("/usr/sbin/iptables").exists(),
        "/usr/sbin/iptables missing: install Debian's `iptables` package (e2e/run does)"
    );
}

/// The cluster network: bridge + host-local (leases in `ipam/`), then portmap.
fn cluster_conflist(layout: &Layout, bridge: &str) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": "cluster",
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true,
             "ipam": {"type": "host-local", "dataDir": layout.dir("ipam"), "ranges": [[{"subnet": "10.89.0.0/24"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    })
}

/// A secondary network: ptp + host-local on its own subnet.
fn ptp_conf(layout: &Layout) -> Value {
    json!({"cniVersion": "0.3.1", "name": "ptp-net", "type": "ptp",
           "ipam": {"type": "host-local", "dataDir": layout.dir("ipam"), "ranges": [[{"subnet": "10.90.0.0/24"}]]}})
}

fn runtime_config() -> Value {
    json!({"portMappings": [{"hostPort": HOST_PORT, "containerPort": CONTAINER_PORT, "protocol": "tcp"}]})
}

/// The multus config the runtime passes for a pod with a hostPort, on ADD and DEL alike.
fn multus_conf(socket_dir: &Path) -> Vec<u8> {
    json!({
        "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim",
        "daemonSocketDir": socket_dir,
        "capabilities": {"portMappings": true},
        "runtimeConfig": runtime_config()
    })
    .to_string()
    .into_bytes()
}

struct Node {
    cluster: Cluster,
    conflist: Value,
    ptp: Value,
}

fn start() -> Node {
    let layout = Layout::new().unwrap();
    let bridge = multus_e2e::unique("mrssw");
    let conflist = cluster_conflist(&layout, &bridge);
    let path = layout.dir("net.d").join("20-cluster.conflist");
    std::fs::write(&path, conflist.to_string()).unwrap();
    let ptp = ptp_conf(&layout);
    let node_ns = Netns::new("mrsnode").unwrap();
    let devinfo = layout.dir("devinfo");
    let cluster = Cluster::start_on(node_ns, layout, &[], |c| {
        c.insert("clusterNetwork".into(), json!(path));
        c.insert("deviceInfoDir".into(), json!(devinfo));
    })
    .unwrap();
    let nad = multus_e2e::scenario::nad("default", "ptp-net", &ptp);
    cluster.layout.put_manifest("nad.json", &nad).unwrap();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", "ptp-net"))
        .unwrap();
    Node {
        cluster,
        conflist,
        ptp,
    }
}

/// The DNAT rules that send this test's host port to `pod_ip`.
fn dnat_rules_to(node: &Netns, pod_ip: &str) -> Vec<String> {
    probe::dnat_rules_to(node, HOST_PORT, pod_ip, CONTAINER_PORT)
}

fn ipv4_of(pod_ns: &Netns, ifname: &str) -> String {
    let addrs = ip::addresses(pod_ns.name())
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == ifname)
        .map(|(_, a)| a)
        .unwrap_or_default();
    let addr = addrs.iter().find(|a| !a.contains(':')).unwrap();
    addr.split('/').next().unwrap().to_owned()
}

/// host-local's leases (files named by address) under `ipam/<network>`.
fn leases(layout: &Layout) -> Vec<String> {
    layout.leases().unwrap()
}

/// Where and for whom a plugin runs (libcni's RuntimeConf).
struct At<'a> {
    node: &'a Netns,
    cid: &'a str,
    netns: &'a str,
    ifname: &'a str,
    args: &'a str,
}

/// Runs one plugin in the node namespace as libcni does (CNI_* environment, config on stdin).
fn exec_plugin(at: &At<'_>, command: &str, conf: &Value) -> Value {
    let plugin = conf["type"].as_str().unwrap();
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            at.node.name(),
            &format!("{PLUGINS}/{plugin}"),
        ])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", at.cid)
        .env("CNI_NETNS", at.netns)
        .env("CNI_IFNAME", at.ifname)
        .env("CNI_ARGS", at.args)
        .env("CNI_PATH", PLUGINS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{plugin} {command}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// One plugin's stdin as libcni builds it (`buildOneConfig` + `injectRuntimeConfig`): the
/// list's name and cniVersion, prevResult, and `runtimeConfig` with the capabilities it declares.
fn plugin_stdin(list: &Value, plugin: &Value, prev: Option<&Value>, caps: &Value) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    let mut rc = serde_json::Map::new();
    for (k, on) in plugin["capabilities"].as_object().into_iter().flatten() {
        if on.as_bool() == Some(true)
            && let Some(v) = caps.get(k)
        {
            rc.insert(k.clone(), v.clone());
        }
    }
    if !rc.is_empty() {
        conf["runtimeConfig"] = Value::Object(rc);
    }
    conf
}

/// libcni's AddNetworkList / DelNetworkList for a conf or conflist (a conf is a list of one).
fn libcni(at: &At<'_>, command: &str, config: &Value, caps: &Value, prev: Option<&Value>) -> Value {
    let list = if config["plugins"].is_array() {
        config.clone()
    } else {
        json!({"name": config["name"], "cniVersion": config["cniVersion"], "plugins": [config]})
    };
    let plugins = list["plugins"].as_array().unwrap().clone();
    let mut result = prev.cloned();
    if command == "ADD" {
        for p in &plugins {
            let conf = plugin_stdin(&list, p, result.as_ref(), caps);
            result = Some(exec_plugin(at, command, &conf));
        }
    } else {
        for p in plugins.iter().rev() {
            let conf = plugin_stdin(&list, p, prev, caps);
            exec_plugin(at, command, &conf);
        }
    }
    result.unwrap_or(Value::Null)
}

/// libcni's `cachedInfo` file as Go writes it (`config` is Go `[]byte`: base64).
fn libcni_cache_file(
    cid: &str,
    ifname: &str,
    netns: &str,
    config: &Value,
    caps: &Value,
    result: &Value,
) -> Value {
    json!({
        "kind": "cniCacheV1", "containerId": cid,
        "config": base64::engine::general_purpose::STANDARD.encode(config.to_string()),
        "ifName": ifname, "networkName": config["name"], "netns": netns,
        "cniArgs": [["IgnoreUnknown", "true"], ["K8S_POD_NAMESPACE", "default"], ["K8S_POD_NAME", "web"],
                    ["K8S_POD_INFRA_CONTAINER_ID", cid], ["K8S_POD_UID", "uid-web"]],
        "capabilityArgs": caps, "result": result
    })
}

/// Go Multus v4.3's `saveDelegates` output for the pod (field order and shapes of Go's
/// `json.Marshal` of `[]*DelegateNetConf`): the conflist master, without a cniVersion of its
/// own as in upstream's typical flannel config, then the NAD with a device.
fn upstream_scratch(conflist: &Value, ptp: &Value) -> Value {
    let b64 = |v: &Value| base64::engine::general_purpose::STANDARD.encode(v.to_string());
    let mut unversioned = conflist.clone();
    unversioned.as_object_mut().unwrap().remove("cniVersion");
    json!([
        {"Conf": {"ipam": {}, "dns": {}},
         "ConfList": {"name": "cluster", "plugins": [{"type": "bridge", "ipam": {}, "dns": {}}, {"type": "portmap", "capabilities": {"portMappings": true}, "ipam": {}, "dns": {}}]},
         "CNINetworkConfigList": {"Name": "", "CNIVersion": "", "DisableCheck": false, "DisableGC": false, "LoadOnlyInlinedPlugins": false, "Plugins": null, "Bytes": null},
         "Name": "", "IsFilterV4Gateway": false, "IsFilterV6Gateway": false, "Bytes": b64(&unversioned)},
        {"Conf": {"cniVersion": "0.3.1", "name": "ptp-net", "type": "ptp", "ipam": {"type": "host-local"}, "dns": {}},
         "ConfList": {},
         "CNINetworkConfigList": {"Name": "", "CNIVersion": "", "DisableCheck": false, "DisableGC": false, "LoadOnlyInlinedPlugins": false, "Plugins": null, "Bytes": null},
         "Name": "default/ptp-net", "IsFilterV4Gateway": false, "IsFilterV6Gateway": false,
         "deviceID": "0000:00:1f.6", "resourceName": "example.com/nic", "Bytes": b64(ptp)}
    ])
}

fn del_through_shim(node: &Node, cid: &str, pod_ns: &Netns) {
    let del = Invocation::new(
        "DEL",
        cid,
        &pod_ns.path(),
        k8s_args("default", "web", "uid-web", cid),
        multus_conf(node.cluster.daemon.socket_dir()),
    );
    let out = del.run().unwrap();
    assert!(
        out.success(),
        "DEL failed: {out:?}\n{}",
        node.cluster.daemon.log_text()
    );
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Nothing of the pod is left: no DNAT, no interface, no lease, no record of any kind.
fn assert_gone(node: &Node, cid: &str, pod_ns: &Netns, pod_ip: &str) {
    let cluster = &node.cluster;
    assert_eq!(
        dnat_rules_to(&cluster.node, pod_ip),
        Vec::<String>::new(),
        "DNAT left after DEL"
    );
    assert_eq!(
        ip::links(pod_ns.name()).unwrap(),
        Vec::<String>::new(),
        "interfaces left"
    );
    assert_eq!(leases(&cluster.layout), Vec::<String>::new(), "leases left");
    let cni = cluster.layout.dir("cni");
    for dir in [cni.clone(), cni.join("multus-rs"), cni.join("results")] {
        let left: Vec<_> = files(&dir)
            .into_iter()
            .filter(|f| f.contains(cid))
            .collect();
        assert!(left.is_empty(), "{}: {left:?} left", dir.display());
    }
}

#[test]
fn d5_del_of_a_go_multus_pod_removes_its_hostport_rule_interfaces_and_leases() {
    require_iptables();
    let node = start();
    let cluster = &node.cluster;
    let pod_ns = Netns::new("mrspod").unwrap();
    let cid = "d5000001";
    let netns = pod_ns.path();
    let args = format!(
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID=uid-web"
    );
    // Go Multus' ADD: the master with the runtime's portMappings, the NAD on net1; libcni
    // caches each result under cniDir.
    let caps = runtime_config();
    let at = |ifname| At {
        node: &cluster.node,
        cid,
        netns: &netns,
        ifname,
        args: &args,
    };
    let cluster_result = libcni(&at("eth0"), "ADD", &node.conflist, &caps, None);
    let ptp_result = libcni(&at("net1"), "ADD", &node.ptp, &json!({}), None);
    let cni = cluster.layout.dir("cni");
    std::fs::create_dir_all(cni.join("results")).unwrap();
    std::fs::write(
        cni.join(cid),
        upstream_scratch(&node.conflist, &node.ptp).to_string(),
    )
    .unwrap();
    for (ifname, config, caps, result) in [
        ("eth0", &node.conflist, &caps, &cluster_result),
        ("net1", &node.ptp, &json!({}), &ptp_result),
    ] {
        let name = format!("{}-{cid}-{ifname}", config["name"].as_str().unwrap());
        let file = libcni_cache_file(cid, ifname, &netns, config, caps, result);
        std::fs::write(cni.join("results").join(name), file.to_string()).unwrap();
    }
    // The device-info file upstream's ADD named for the NAD with a device.
    let devinfo: PathBuf = cluster
        .layout
        .dir("devinfo")
        .join("cni")
        .join(format!("default-ptp-net-{cid}_net1"));
    std::fs::create_dir_all(devinfo.parent().unwrap()).unwrap();
    std::fs::write(
        &devinfo,
        br#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:00:1f.6"}}"#,
    )
    .unwrap();
    let pod_ip = ipv4_of(&pod_ns, "eth0");
    assert!(
        !dnat_rules_to(&cluster.node, &pod_ip).is_empty(),
        "setup: no DNAT\n{}",
        probe::nat_rules(&cluster.node)
    );
    assert_eq!(leases(&cluster.layout).len(), 2, "setup: two leases");

    del_through_shim(&node, cid, &pod_ns);

    assert_gone(&node, cid, &pod_ns, &pod_ip);
    assert!(!devinfo.exists(), "device-info file left");
    let log = cluster.daemon.log_text();
    assert!(log.contains("DEL from an upstream Multus record"), "{log}");
}

/// Our ADD through the shim; returns the pod's cluster IP.
fn add_through_shim(node: &Node, cid: &str, pod_ns: &Netns) -> String {
    let add = Invocation::new(
        "ADD",
        cid,
        &pod_ns.path(),
        k8s_args("default", "web", "uid-web", cid),
        multus_conf(node.cluster.daemon.socket_dir()),
    );
    let out = add.run().unwrap();
    assert!(
        out.success(),
        "ADD failed: {out:?}\n{}",
        node.cluster.daemon.log_text()
    );
    let pod_ip = ipv4_of(pod_ns, "eth0");
    assert!(
        !dnat_rules_to(&node.cluster.node, &pod_ip).is_empty(),
        "no DNAT after ADD"
    );
    assert_eq!(leases(&node.cluster.layout).len(), 2);
    pod_ip
}

/// Go Multus v4.3's CmdDel from what it reads (`consumeScratchNetConf`, `delPlugins`, libcni's
/// `DelNetworkList` with cacheDir = cniDir), done by the test: delegates in reverse, config
/// from `Bytes`, interface from `getIfname`, prevResult from libcni's cache (cniVersion >=
/// 0.4.0), the DEL request's runtimeConfig; then the files removed as upstream and libcni do.
fn upstream_del(node: &Node, cid: &str, netns: &str) {
    let cni = node.cluster.layout.dir("cni");
    let scratch: Vec<Value> =
        serde_json::from_slice(&std::fs::read(cni.join(cid)).unwrap()).unwrap();
    let args = format!(
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID=uid-web"
    );
    for (idx, d) in scratch.iter().enumerate().rev() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(d["Bytes"].as_str().unwrap())
            .unwrap();
        let config: Value = serde_json::from_slice(&raw).unwrap();
        let requested = d["ifnameRequest"].as_str().unwrap_or_default();
        let ifname = match (requested, idx) {
            ("", 0) => "eth0".to_owned(),
            ("", i) => format!("net{i}"),
            (r, _) => r.to_owned(),
        };
        let version = config["cniVersion"].as_str().unwrap();
        let cache = cni.join("results").join(format!(
            "{}-{cid}-{ifname}",
            config["name"].as_str().unwrap()
        ));
        let prev = (version >= "0.4.0")
            .then(|| std::fs::read(&cache).ok())
            .flatten()
            .map(|b| serde_json::from_slice::<Value>(&b).unwrap()["result"].clone());
        let at = At {
            node: &node.cluster.node,
            cid,
            netns,
            ifname: &ifname,
            args: &args,
        };
        libcni(&at, "DEL", &config, &runtime_config(), prev.as_ref());
        let _ = std::fs::remove_file(cache);
    }
    std::fs::remove_file(cni.join(cid)).unwrap();
}

#[test]
fn d6_go_multus_can_del_a_pod_we_attached_from_what_it_reads() {
    require_iptables();
    let node = start();
    let pod_ns = Netns::new("mrspod").unwrap();
    let cid = "d6000001";
    let pod_ip = add_through_shim(&node, cid, &pod_ns);
    let cni = node.cluster.layout.dir("cni");
    assert_eq!(
        files(&cni.join("results")),
        [format!("cluster-{cid}-eth0"), format!("ptp-net-{cid}-net1")],
        "libcni's result cache of each delegate"
    );
    // The node is switched back to Go Multus: our daemon is gone, upstream's DEL runs.
    let multus_rs = cni.join("multus-rs").join(cid);
    assert!(multus_rs.exists());
    upstream_del(&node, cid, &pod_ns.path());
    // What Go Multus does not know of (our own record) is all that is left.
    std::fs::remove_file(&multus_rs).unwrap();
    assert_gone(&node, cid, &pod_ns, &pod_ip);
}

#[test]
fn d6_our_del_of_a_record_reduced_to_what_upstream_reads_still_works() {
    require_iptables();
    let node = start();
    let pod_ns = Netns::new("mrspod").unwrap();
    let cid = "d6000002";
    let pod_ip = add_through_shim(&node, cid, &pod_ns);
    // Downgrade then upgrade again before the pod went away (Go Multus kept upstream's files
    // and knew nothing of ours): only the scratch record and libcni's cache are left.
    std::fs::remove_file(node.cluster.layout.dir("cni").join("multus-rs").join(cid)).unwrap();
    del_through_shim(&node, cid, &pod_ns);
    assert_gone(&node, cid, &pod_ns, &pod_ip);
}
