//! Section 2: the attach overhead in standalone mode. A pod with the cluster network (bridge +
//! host-local, + tuning, on eth0) and a macvlan NAD (net1, on a veth parent: there is no dummy
//! driver here) ADDed then DELed into a fresh namespace (a) through shim → daemon → delegates and
//! (b) by execing the same delegates directly, as libcni does, from a node thread; the sides
//! alternate which goes first.
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};

use super::{
    Bench, check,
    direct::{Direct, Network},
    nodethread::NodeThread,
    report::Section,
    spans::{split_tables, traced_rounds},
    standalone, standalone_traced,
    stats::Series,
};
use crate::{
    daemon::Layout,
    netns::Netns,
    scenario::{Cluster, bridge_conflist, host_local, nad, pod},
};

/// The four series of an A/B attach comparison.
#[derive(Debug, Default)]
pub struct AbTimes {
    pub add_a: Vec<Duration>,
    pub del_a: Vec<Duration>,
    pub add_b: Vec<Duration>,
    pub del_b: Vec<Duration>,
}

/// A pod as the runtime names it in CNI_ARGS.
#[derive(Debug, Clone)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// Side A once: shim ADD then DEL into a fresh namespace; their times.
pub fn shim_round(cluster: &Cluster, cid: &str, p: &PodRef) -> Result<(Duration, Duration)> {
    let pod_ns = Netns::new("mrsbp")?;
    let inv = cluster.invocation(cid, &pod_ns, &p.namespace, &p.name, &p.uid);
    let start = Instant::now();
    let add = inv.run()?;
    let add_t = start.elapsed();
    check("shim ADD", &add, cluster)?;
    let del_inv = inv.with_command("DEL");
    let start = Instant::now();
    let del = del_inv.run()?;
    let del_t = start.elapsed();
    check("shim DEL", &del, cluster)?;
    Ok((add_t, del_t))
}

/// Side B once: the delegates exec'd directly, ADD then DEL into a fresh namespace.
pub fn direct_round(direct: &Direct, cid: &str) -> Result<(Duration, Duration)> {
    let pod_ns = Netns::new("mrsbq")?;
    let add = direct.add(cid, &pod_ns.path())?;
    let del = direct.del(cid, &pod_ns.path())?;
    Ok((add, del))
}

/// `rounds` alternating rounds of both sides.
pub fn ab(
    b: &Bench,
    cluster: &Cluster,
    direct: &Direct,
    rounds: usize,
    pod_of: impl Fn(usize) -> PodRef,
) -> Result<AbTimes> {
    let mut t = AbTimes::default();
    for i in 0..rounds {
        let p = pod_of(i);
        let mut side_a = || -> Result<()> {
            let (a, d) = shim_round(cluster, &format!("benchshim{i:06}"), &p)?;
            t.add_a.push(a);
            t.del_a.push(d);
            Ok(())
        };
        if i % 2 == 0 {
            side_a()?;
        }
        let (a, d) = direct_round(direct, &format!("benchdirect{i:06}"))?;
        if i % 2 == 1 {
            side_a()?;
        }
        t.add_b.push(a);
        t.del_b.push(d);
        b.step();
    }
    Ok(t)
}

/// Puts the four series and their comparisons in `s`; targets: ratio and overhead per verb.
pub fn report_ab(
    s: &mut Section,
    t: &AbTimes,
    what: &str,
    ratio_limit: f64,
    overhead_limit: Option<f64>,
) {
    for (verb, a, bb) in [("ADD", &t.add_a, &t.add_b), ("DEL", &t.del_a, &t.del_b)] {
        let sa = s.series(Series::new(format!("{what} {verb} via shim → daemon"), a));
        let sb = s.series(Series::new(format!("{what} {verb} delegates direct"), bb));
        let c = s.compare(&format!("{what} {verb}"), &sa, &sb);
        s.target(
            &format!("{what} {verb} ratio (a)/(b), median"),
            c.ratio_p50,
            "×",
            ratio_limit,
        );
        s.figure(
            &format!("{what} {verb} ratio (a)/(b), p99"),
            c.ratio_p99,
            "×",
        );
        match overhead_limit {
            Some(l) => s.target(
                &format!("{what} {verb} overhead, median"),
                c.overhead_p50_ms,
                "ms",
                l,
            ),
            None => s.figure(
                &format!("{what} {verb} overhead, median"),
                c.overhead_p50_ms,
                "ms",
            ),
        }
        s.figure(
            &format!("{what} {verb} overhead, p99"),
            c.overhead_p99_ms,
            "ms",
        );
    }
}

pub fn macvlan(layout: &Layout, master: &str) -> Value {
    json!({"cniVersion": "1.0.0", "type": "macvlan", "master": master, "mode": "bridge",
           "ipam": host_local(layout, "10.90.0.0/24")})
}

/// The reference node: a namespace of its own with its own bridge and macvlan parent.
pub fn direct_node(
    extra: impl FnOnce(&Netns, &Layout) -> Result<Vec<Network>>,
) -> Result<(Direct, Netns, Layout)> {
    let node = Netns::new("mrsbd")?;
    let layout = Layout::new()?;
    let bridge = crate::unique("mrsbb");
    let mut networks = vec![Network::list(
        "eth0",
        bridge_conflist(&layout, &bridge, "10.88.0.0/16"),
    )];
    networks.extend(extra(&node, &layout)?);
    let direct = Direct::new(
        NodeThread::start(&node)?,
        networks,
        layout.dir("cni").join("results"),
    )?;
    Ok((direct, node, layout))
}

/// The split by span: `rounds` ADD+DELs on a second standalone node exporting its spans to the
/// bench's receiver (so the export does not weigh on the timed A/B rounds).
fn spans(b: &Bench, s: &mut Section, rounds: usize) -> Result<()> {
    b.stage("2a. span split (OTLP)");
    let (cluster, receiver) = standalone_traced("mrsbt", cluster_conflist, |_| {})?;
    standalone_networks(&cluster)?;
    let p = bench_pod();
    let traced = traced_rounds(b, &receiver, &cluster, rounds, |i, pod_ns| {
        let cid = i.map_or_else(
            || "benchspanwarm".to_owned(),
            |i| format!("benchspan{i:05}"),
        );
        cluster.invocation(&cid, pod_ns, &p.namespace, &p.name, &p.uid)
    })?;
    split_tables(s, "Standalone", "standalone", &traced);
    Ok(())
}

/// Longer than the daemon's window for recently changed manifests (`source::files`).
pub(super) const MANIFESTS_SETTLE: Duration = Duration::from_millis(2500);

/// The pod of section 2a: the cluster network and a macvlan NAD on net1.
fn bench_pod() -> PodRef {
    PodRef {
        namespace: "default".into(),
        name: "bench".into(),
        uid: "uid-bench".into(),
    }
}

/// The cluster network (bridge + host-local, then tuning) and the pod's macvlan NAD on a veth
/// parent in the node namespace, as manifests old enough to be served from the daemon's parse.
fn standalone_networks(cluster: &Cluster) -> Result<()> {
    let (parent, _) = cluster.node.veth_pair("mrsmv")?;
    let l = &cluster.layout;
    l.put_manifest(
        "nad-macvlan.json",
        &nad("default", "macvlan-net", &macvlan(l, &parent)),
    )?;
    let p = bench_pod();
    l.put_manifest(
        "pod.json",
        &pod(&p.namespace, &p.name, &p.uid, "macvlan-net"),
    )?;
    // A node's manifests are older than its pods: the daemon parses a file again on every
    // lookup while it is younger than 2 s (a same-size rewrite could hide in one clock tick),
    // which no node but a freshly written one sees.
    std::thread::sleep(MANIFESTS_SETTLE);
    Ok(())
}

fn cluster_conflist(l: &Layout) -> Value {
    bridge_conflist(l, &crate::unique("mrsbr"), "10.88.0.0/16")
}

pub fn run(b: &Bench, s: &mut Section) -> Result<()> {
    b.stage("2. attach overhead, standalone");
    let cluster = standalone("mrsba", cluster_conflist, |_| {})?;
    standalone_networks(&cluster)?;
    let (direct, _dnode, _dlayout) = direct_node(|node, layout| {
        let (parent, _) = node.veth_pair("mrsmv")?;
        Ok(vec![Network::single(
            "net1",
            "macvlan-net",
            &macvlan(layout, &parent),
        )])
    })?;
    let p = bench_pod();
    let rounds = b.opts.rounds();
    let t = ab(b, &cluster, &direct, rounds, |_| p.clone())?;
    report_ab(s, &t, "standalone", 1.05, Some(1.0));
    drop(cluster);
    spans(b, s, rounds.min(30))?;
    super::floor::run(b, s, rounds * super::floor::ROUNDS_PER_ATTACH_ROUND)?;
    s.note(
        "Networks: eth0 = the cluster conflist (bridge + host-local, then tuning), net1 = a macvlan \
         NAD in bridge mode on a veth parent in the node namespace (+ host-local). (b) is what \
         libcni does without multus: each plugin of each network exec'd in order with \
         `prevResult`, the result cached in a file, DEL in reverse with the cached result; it runs \
         on a thread inside a second node namespace set up alike. (a) is the runtime execing \
         multus-shim, which makes one RPC to the daemon, which runs the same plugins.",
    );
    Ok(())
}
