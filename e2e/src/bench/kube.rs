//! Section 5 (and the Kubernetes half of section 2): attach latency with the networks annotation
//! naming 3 NADs, the daemon reading pods and NADs from the API server stand-in through a
//! kubeconfig. The first pod after start (cold) and later pods (warm), the API calls each makes
//! (from the stand-in's request log: reads must be 0 when warm), the A/B ratio against the same
//! delegates exec'd directly, and the daemon's time split by span (a second node exporting its
//! spans to the bench's OTLP receiver, so the export does not weigh on the timed rounds).
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::http::Method;
use serde_json::{Map, Value, json};

use super::{
    Bench,
    attach::{PodRef, ab, direct_node, report_ab},
    check,
    direct::Network,
    report::Section,
    spans::{Receiver, split_tables, traced_rounds},
    stats::ms,
};
use crate::{
    apiserver::{ApiServer, nad_json, pod_json},
    daemon::Layout,
    ip::ip,
    netns::Netns,
    scenario::{Cluster, KUBE_NODE, KubeCluster, NodeApiServer},
};

pub const ANNOTATION: &str = "ptp-a,macvlan-net,ptp-b";

/// The 3 NADs' configs; `ipam` is a dir for host-local's leases, `master` the macvlan parent.
fn nad_configs(ipam: &std::path::Path, master: &str) -> [(&'static str, &'static str, Value); 3] {
    let hl = |subnet: &str| json!({"type": "host-local", "dataDir": ipam, "ranges": [[{"subnet": subnet}]]});
    [
        (
            "ptp-a",
            "net1",
            json!({"cniVersion": "1.0.0", "type": "ptp", "ipam": hl("10.89.0.0/16")}),
        ),
        (
            "macvlan-net",
            "net2",
            json!({"cniVersion": "1.0.0", "type": "macvlan", "master": master, "mode": "bridge", "ipam": hl("10.90.0.0/16")}),
        ),
        (
            "ptp-b",
            "net3",
            json!({"cniVersion": "1.0.0", "type": "ptp", "ipam": hl("10.92.0.0/16")}),
        ),
    ]
}

pub fn pod_name(i: usize) -> String {
    format!("bench-{i}")
}

/// Stores `count` pods on this node selecting the 3 NADs, uid `uid-<name>`.
pub fn put_pods(api: &ApiServer, range: std::ops::Range<usize>, networks: &str) {
    let ann: std::collections::BTreeMap<String, String> = if networks.is_empty() {
        Default::default()
    } else {
        [(
            "k8s.v1.cni.cncf.io/networks".to_owned(),
            networks.to_owned(),
        )]
        .into()
    };
    for i in range {
        let name = pod_name(i);
        let mut p = pod_json("default", &name, KUBE_NODE, &ann);
        p["metadata"]["uid"] = json!(format!("uid-{name}"));
        api.put_pod(p);
    }
}

/// A Kubernetes-mode node as `KubeCluster::start_with_api` makes it, with room for an OTLP
/// receiver in the node namespace before the daemon starts. Waits until the daemon watches.
pub fn kube_node(
    prepare: impl FnOnce(&ApiServer),
    with_receiver: bool,
    tweak: impl FnOnce(&mut Map<String, Value>),
) -> Result<(KubeCluster, Option<Receiver>)> {
    let node = Netns::new("mrsbk")?;
    let api = NodeApiServer::start(&node)?;
    prepare(&api);
    let receiver = if with_receiver {
        Some(Receiver::start_in(&node)?)
    } else {
        None
    };
    let kubeconfig = api.kubeconfig_path();
    let endpoint = receiver
        .as_ref()
        .map(|r| format!("http://127.0.0.1:{}", r.port));
    let env = [
        ("MULTUS_NODE_NAME", KUBE_NODE),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let cluster = Cluster::start_on(node, Layout::new()?, &env, |c| {
        c.remove("clusterStateDir");
        c.remove("networkStatusDir");
        c.insert("kubeconfig".into(), json!(kubeconfig));
        c.insert("logLevel".into(), json!("error"));
        if let Some(e) = endpoint {
            c.insert("otlpEndpoint".into(), json!(e));
        }
        tweak(c);
    })?;
    let k = KubeCluster { cluster, api };
    wait_watching(&k)?;
    Ok((k, receiver))
}

/// A list then a watch on pods and on NADs: from then on the caches see every change.
pub fn wait_watching(k: &KubeCluster) -> Result<()> {
    let paths = [
        "/api/v1/pods",
        "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions",
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    while paths.iter().any(|p| k.api.requests(&Method::GET, p) < 2) {
        if Instant::now() > deadline {
            bail!(
                "the daemon did not watch pods and NADs within 30 s:\n{}",
                k.daemon.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Reads and writes one pod's attach makes: GETs of single objects (the watches and lists on
/// collection paths are not the hot path), and PATCH/PUT/POST.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiCalls {
    pub reads: usize,
    pub writes: usize,
    /// Of the writes, the events posted (the bench's pods are all in `default`).
    pub events: usize,
}

pub fn api_calls(api: &ApiServer) -> ApiCalls {
    let under = |m: &Method| {
        api.requests_under(m, "/api/v1/namespaces/")
            + api.requests_under(m, "/apis/k8s.cni.cncf.io/v1/namespaces/")
    };
    ApiCalls {
        reads: under(&Method::GET),
        writes: under(&Method::PATCH) + under(&Method::PUT) + under(&Method::POST),
        events: api.requests_under(&Method::POST, "/api/v1/namespaces/default/events"),
    }
}

impl std::ops::Sub for ApiCalls {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            reads: self.reads - o.reads,
            writes: self.writes - o.writes,
            events: self.events - o.events,
        }
    }
}

/// Puts the NADs (with their macvlan master named in advance) and the pods; after start the
/// master is created in the node namespace.
fn setup(
    pods: usize,
    with_receiver: bool,
) -> Result<(KubeCluster, Option<Receiver>, tempfile::TempDir, String)> {
    let ipam = tempfile::tempdir()?;
    let master = crate::unique("mrskm");
    let configs = nad_configs(ipam.path(), &master);
    let (k, receiver) = kube_node(
        |api| {
            for (name, _, c) in &configs {
                api.put_nad(nad_json("default", name, &c.to_string()));
            }
            put_pods(api, 0..pods, ANNOTATION);
        },
        with_receiver,
        |_| {},
    )?;
    ip(&[
        "-n",
        k.node.name(),
        "link",
        "add",
        &master,
        "type",
        "veth",
        "peer",
        "name",
        &crate::unique("mrskp"),
    ])?;
    ip(&["-n", k.node.name(), "link", "set", &master, "up"])?;
    Ok((k, receiver, ipam, master))
}

fn pod_ref(i: usize) -> PodRef {
    let name = pod_name(i);
    PodRef {
        namespace: "default".into(),
        uid: format!("uid-{name}"),
        name,
    }
}

pub fn run(b: &Bench, s: &mut Section) -> Result<()> {
    b.stage("5. Kubernetes path: 3 NADs through the stand-in");
    let rounds = b.opts.rounds();
    let (k, _, _ipam, _) = setup(rounds + 1, false)?;
    let (direct, _dnode, _dl) = direct_node(|node, layout| {
        let (parent, _) = node.veth_pair("mrsmv")?;
        Ok(nad_configs(&layout.dir("ipam"), &parent)
            .iter()
            .map(|(name, ifname, c)| Network::single(ifname, name, c))
            .collect())
    })?;

    // The cold pod: the first attach after the daemon started.
    let before = api_calls(&k.api);
    let start = Instant::now();
    let inv = {
        let pod_ns = Netns::new("mrsbp")?;
        let p = pod_ref(0);
        let inv = k.invocation("benchcold", &pod_ns, &p.namespace, &p.name, &p.uid);
        let out = inv.run()?;
        let cold = start.elapsed();
        check("cold ADD", &out, &k)?;
        let cold_calls = api_calls(&k.api) - before;
        s.figure("cold first pod ADD (3 NADs)", ms(cold), "ms");
        s.figure("cold first pod ADD: API reads", cold_calls.reads as f64, "");
        // The AddedInterface events are posted from a queue after the ADD returned: some land
        // before this count and some after, so only the writes on the ADD's path are reported.
        s.figure(
            "cold first pod ADD: API writes on its path (network-status)",
            (cold_calls.writes - cold_calls.events) as f64,
            "",
        );
        (inv, pod_ns)
    };
    check("cold DEL", &inv.0.with_command("DEL").run()?, &k)?;
    drop(inv);

    let before = api_calls(&k.api);
    let t = ab(b, &k, &direct, rounds, |i| pod_ref(i + 1))?;
    let warm = api_calls(&k.api) - before;
    report_ab(s, &t, "kube (3 NADs)", 1.10, None);
    #[allow(clippy::cast_precision_loss)]
    let per = |n: usize| n as f64 / rounds as f64;
    s.target(
        "warm pods: API reads per ADD+DEL (hot path)",
        per(warm.reads),
        "",
        0.0,
    );
    s.figure(
        "warm pods: API writes per ADD+DEL (network-status patch, events)",
        per(warm.writes),
        "",
    );
    s.figure(
        "warm pods: of those, network-status writes (on the ADD's path)",
        per(warm.writes - warm.events),
        "",
    );
    s.figure(
        "warm pods: of those, AddedInterface events (queued, posted after the ADD returned)",
        per(warm.events),
        "",
    );
    drop(k);

    spans(b, s, rounds.min(30))?;
    s.note(format!(
        "The pods carry `k8s.v1.cni.cncf.io/networks: {ANNOTATION}` (ptp net1, macvlan net2 on a \
         veth parent, ptp net3, each + host-local) besides the cluster network (bridge + \
         host-local + tuning) on eth0. Each warm round is a new pod already in the daemon's cache \
         (stored before it started), so the warm ADD reads nothing from the API; its writes are \
         the network-status patch (the AddedInterface events, one per interface, are posted from \
         a bounded queue after the ADD returned). API calls are counted from the stand-in's request log \
         (single-object paths; the reflectors' lists and watches on collection paths are not \
         the hot path)."
    ));
    Ok(())
}

/// The split by span: `rounds` warm ADD+DELs on a node exporting spans to the bench's receiver.
fn spans(b: &Bench, s: &mut Section, rounds: usize) -> Result<()> {
    b.stage("5. span split (OTLP)");
    let (k, receiver, _ipam, _) = setup(rounds + 1, true)?;
    let receiver = receiver.context("no receiver")?;
    let traced = traced_rounds(b, &receiver, &k, rounds, |i, pod_ns| {
        let (cid, p) = match i {
            None => ("benchspanwarm".to_owned(), pod_ref(0)),
            Some(i) => (format!("benchspan{i:05}"), pod_ref(i + 1)),
        };
        k.invocation(&cid, pod_ns, &p.namespace, &p.name, &p.uid)
    })?;
    split_tables(s, "Kubernetes path", "kube", &traced);
    Ok(())
}
