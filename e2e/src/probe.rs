//! What the end-to-end tests look at: addresses and links in a namespace, the metrics endpoint
//! scraped from inside the node namespace, polling. Test helpers: they panic on failure.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
pub use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{
    ip,
    netns::Netns,
    scenario::{Cluster, host_local, nad},
};

/// Runs `f` on a thread inside `ns`'s network namespace (the daemon's loopback lives there).
pub fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    ns.run(f).unwrap()
}

/// The metrics port: every test's node namespace is new, so nothing else listens on it.
pub const METRICS_PORT: u16 = 9091;

/// GET /metrics from inside the node namespace, parsed by a real Prometheus text parser.
pub fn scrape(ns: &Netns, port: u16) -> prometheus_parse::Scrape {
    let text = in_netns(ns, || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of the first sample named `name` with all of `labels`.
pub fn sample(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    use prometheus_parse::Value;
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(_) | Value::Summary(_) => f64::NAN,
        })
}

/// The ptp secondary network every test pod here selects.
pub fn ptp_nad(cluster: &Cluster) {
    let l = &cluster.layout;
    let config = json!({"cniVersion": "0.4.0", "name": "ptp-net", "type": "ptp", "ipam": host_local(l, "10.89.0.0/24")});
    l.put_manifest("nad-ptp.json", &nad("default", "ptp-net", &config))
        .unwrap();
}

pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Links in `ns` other than loopback.
pub fn attached(ns: &Netns) -> Vec<String> {
    ip::links(ns.name())
        .unwrap()
        .into_iter()
        .filter(|l| l != "lo")
        .collect()
}

/// IPv4 addresses (with prefix) of `ifname` in `ns`.
pub fn addr_of(ns: &Netns, ifname: &str) -> Vec<String> {
    ip::addresses(ns.name())
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == ifname)
        .map(|(_, a)| a.into_iter().filter(|a| !a.contains(':')).collect())
        .unwrap_or_default()
}

/// `iptables -t nat -S` in `node`: the rules portmap leaves there.
pub fn nat_rules(node: &Netns) -> String {
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

/// The DNAT rules in `node` that send `host_port` to `pod_ip:container_port`.
pub fn dnat_rules_to(
    node: &Netns,
    host_port: u16,
    pod_ip: &str,
    container_port: u16,
) -> Vec<String> {
    let to = format!("--to-destination {pod_ip}:{container_port}");
    let dport = format!("--dport {host_port}");
    nat_rules(node)
        .lines()
        .filter(|l| l.contains(&to) && l.contains(&dport))
        .map(str::to_owned)
        .collect()
}

/// The daemon's overall gRPC health over its socket, as the chart's readiness probe asks it.
pub fn health(socket: &Path) -> ServingStatus {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = multus_proto::channel::unix(socket, Duration::from_secs(5))
            .await
            .unwrap();
        let reply = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .unwrap();
        ServingStatus::try_from(reply.into_inner().status).unwrap()
    })
}

/// Asserts the sandbox netns holds exactly eth0 on the cluster network (10.88.0.0/16) and net1
/// and net2 on the two NADs' (10.89, 10.90) the containerd tests select; eth0's address (no
/// prefix) is returned, for the pod IP the runtime must report.
pub fn assert_cluster_and_two_nads(netns: &Path) -> String {
    let addrs = ip::addresses_at(netns).unwrap();
    let mut names: Vec<&str> = addrs.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["eth0", "net1", "net2"], "{addrs:?}");
    for (ifname, net) in [
        ("eth0", "10.88.0."),
        ("net1", "10.89.0."),
        ("net2", "10.90.0."),
    ] {
        let v4 = ip::ipv4_of(&addrs, ifname);
        assert!(
            v4.first().is_some_and(|a| a.starts_with(net)),
            "{ifname}: {addrs:?}"
        );
    }
    let eth0 = ip::ipv4_of(&addrs, "eth0").remove(0);
    eth0.split('/').next().unwrap_or_default().to_owned()
}

/// The `name` of every entry of a network-status annotation, in order.
pub fn status_names(status: &serde_json::Value) -> Vec<&str> {
    status
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect()
}
