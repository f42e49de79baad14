//! D-3: delegates run with the environment libcni gives them, so plugins that look their tools
//! up in PATH work. Debian's `portmap` maps a hostPort with the real `iptables` (Debian's package,
//! nf_tables backend) in the test's node namespace, through the real shim and daemon; the daemon
//! is started with a PATH that lacks every sbin directory (where Debian installs iptables), so
//! the DNAT rule can only appear because the daemon appends the system directories.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use multus_e2e::{
    daemon::Layout,
    ip,
    netns::Netns,
    scenario::{Cluster, pod},
    shim::{Invocation, k8s_args},
};
use serde_json::{Value, json};

/// What a PATH without sbin finds: not iptables.
const PATH_WITHOUT_SBIN: &str = "/usr/bin:/bin";
const HOST_PORT: u16 = 18080;
const CONTAINER_PORT: u16 = 80;

/// Fails (naming the package) when iptables is missing, and checks that the daemon's PATH
/// really cannot find it, so the test proves the PATH append.
fn require_iptables() {
    assert!(
        Path::new("/usr/sbin/iptables").exists(),
        "/usr/sbin/iptables missing: install Debian's `iptables` package (e2e/run does)"
    );
    for dir in PATH_WITHOUT_SBIN.split(':') {
        assert!(
            !Path::new(dir).join("iptables").exists(),
            "{dir}/iptables exists: this PATH would find it and prove nothing"
        );
    }
}

/// bridge + host-local, then portmap (portMappings capability): the cluster network.
fn portmap_conflist(layout: &Layout, bridge: &str) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": "cluster",
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true,
             "ipam": {"type": "host-local", "dataDir": layout.dir("ipam"), "ranges": [[{"subnet": "10.88.0.0/24"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    })
}

/// The multus config a runtime passes for a pod with a hostPort: the portMappings capability
/// and its runtimeConfig (on ADD and on DEL alike, as containerd and CRI-O do).
fn hostport_conf(socket_dir: &Path) -> Vec<u8> {
    json!({
        "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim",
        "daemonSocketDir": socket_dir,
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": [
            {"hostPort": HOST_PORT, "containerPort": CONTAINER_PORT, "protocol": "tcp"}
        ]}
    })
    .to_string()
    .into_bytes()
}

/// `iptables -t nat -S` in the node namespace.
fn nat_rules(node: &Netns) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", node.name(), "iptables", "-t", "nat", "-S"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "iptables -t nat -S: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The DNAT rules that send the host port to `pod_ip`.
fn dnat_rules_to(node: &Netns, pod_ip: &str) -> Vec<String> {
    let to = format!("--to-destination {pod_ip}:{CONTAINER_PORT}");
    nat_rules(node)
        .lines()
        .filter(|l| l.contains(&to) && l.contains(&format!("--dport {HOST_PORT}")))
        .map(str::to_owned)
        .collect()
}

fn pod_ipv4(pod_ns: &Netns) -> String {
    let eth0 = ip::addresses(pod_ns.name())
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == "eth0")
        .map(|(_, a)| a)
        .unwrap_or_default();
    let addr = eth0.iter().find(|a| !a.contains(':')).unwrap();
    addr.split('/').next().unwrap().to_owned()
}

/// A standalone node whose cluster network is bridge + portmap, the daemon started with `env`;
/// `tweak` may change the daemon config.
fn start(env: &[(&str, &str)], tweak: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Cluster {
    let layout = Layout::new().unwrap();
    let bridge = multus_e2e::unique("mrspm");
    let conflist = layout.dir("net.d").join("20-portmap.conflist");
    std::fs::write(&conflist, portmap_conflist(&layout, &bridge).to_string()).unwrap();
    let node = Netns::new("mrsnode").unwrap();
    let cluster = Cluster::start_on(node, layout, env, |c| {
        c.insert("clusterNetwork".into(), json!(conflist));
        tweak(c);
    })
    .unwrap();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", ""))
        .unwrap();
    cluster
}

fn invocation(cluster: &Cluster, cid: &str, pod_ns: &Netns) -> Invocation {
    Invocation::new(
        "ADD",
        cid,
        &pod_ns.path(),
        k8s_args("default", "web", "uid-web", cid),
        hostport_conf(cluster.daemon.socket_dir()),
    )
}

/// ADD maps the host port to the pod (a DNAT rule in the node's nat table); DEL removes it.
fn hostport_round_trip(cluster: &Cluster, cid: &str) {
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = invocation(cluster, cid, &pod_ns);
    let out = add.run().unwrap();
    assert!(
        out.success(),
        "ADD failed: {out:?}\n{}",
        cluster.daemon.log_text()
    );
    let pod_ip = pod_ipv4(&pod_ns);
    let rules = dnat_rules_to(&cluster.node, &pod_ip);
    assert!(
        !rules.is_empty(),
        "no DNAT of :{HOST_PORT} to {pod_ip}:\n{}",
        nat_rules(&cluster.node)
    );

    let del = add.with_command("DEL");
    let out = del.run().unwrap();
    assert!(
        out.success(),
        "DEL failed: {out:?}\n{}",
        cluster.daemon.log_text()
    );
    assert_eq!(
        dnat_rules_to(&cluster.node, &pod_ip),
        Vec::<String>::new(),
        "DNAT left after DEL"
    );
    assert_eq!(ip::links(pod_ns.name()).unwrap(), Vec::<String>::new());
}

#[test]
fn d3_portmap_hostport_works_with_a_daemon_path_without_sbin() {
    require_iptables();
    let cluster = start(&[("PATH", PATH_WITHOUT_SBIN)], |_| {});
    hostport_round_trip(&cluster, "d3000001");
}
