//! Ready-made clusters for tests and the demo: a node namespace running the daemon in
//! standalone mode, the cluster network, NADs for the reference plugins, and pods.
use std::sync::mpsc;

use anyhow::{Context, Result};
use nix::sched::CloneFlags;
use serde_json::{Map, Value, json};
use tokio::sync::oneshot;

use crate::{
    apiserver::ApiServer,
    daemon::{Daemon, Layout},
    netns::Netns,
    shim::{Invocation, k8s_args, multus_conf},
};

/// A bridge + host-local (+ tuning) conflist: the cluster network on eth0.
pub fn bridge_conflist(layout: &Layout, bridge: &str, subnet: &str) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": "cluster",
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": true,
             "ipam": {"type": "host-local", "dataDir": layout.dir("ipam"), "ranges": [[{"subnet": subnet}]]}},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.all.arp_notify": "1"}}
        ]
    })
}

/// host-local IPAM over `subnet`, leases kept in the layout's `ipam/`.
pub fn host_local(layout: &Layout, subnet: &str) -> Value {
    json!({"type": "host-local", "dataDir": layout.dir("ipam"), "ranges": [[{"subnet": subnet}]]})
}

/// A NetworkAttachmentDefinition manifest with `config` as its `spec.config`.
pub fn nad(namespace: &str, name: &str, config: &Value) -> Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"config": config.to_string()}
    })
}

/// A Pod manifest selecting `networks` (the `k8s.v1.cni.cncf.io/networks` annotation).
pub fn pod(namespace: &str, name: &str, uid: &str, networks: &str) -> Value {
    let mut annotations = Map::new();
    if !networks.is_empty() {
        annotations.insert("k8s.v1.cni.cncf.io/networks".into(), networks.into());
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}
    })
}

/// A node namespace with the daemon running in standalone mode over a fresh layout.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order: stop the daemon before its namespace goes away.
    pub daemon: Daemon,
    pub layout: Layout,
    pub node: Netns,
    pub bridge: String,
}

impl Cluster {
    /// Starts a cluster whose network is bridge + host-local on 10.88.0.0/24; `tweak` may
    /// change the daemon config before start.
    pub fn start(tweak: impl FnOnce(&mut Map<String, Value>)) -> Result<Self> {
        Self::start_on(Netns::new("mrsnode")?, Layout::new()?, &[], tweak)
    }

    /// As [`Cluster::start`], on a node namespace and layout the caller made (e.g. with an API
    /// server stand-in already listening in `node`), with extra environment for the daemon.
    pub fn start_on(
        node: Netns,
        layout: Layout,
        env: &[(&str, &str)],
        tweak: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<Self> {
        let bridge = crate::unique("mrsbr");
        let conflist = layout.dir("net.d").join("10-cluster.conflist");
        std::fs::write(
            &conflist,
            bridge_conflist(&layout, &bridge, "10.88.0.0/24").to_string(),
        )?;
        let mut config = layout.config(&conflist.to_string_lossy());
        tweak(&mut config);
        let daemon = Daemon::start_with_env(&node, &layout, &config, env)?;
        Ok(Self {
            daemon,
            layout,
            node,
            bridge,
        })
    }

    /// Restarts the daemon with the same config (the cache on disk is kept).
    pub fn restart(&mut self, config: &Map<String, Value>) -> Result<()> {
        self.daemon.stop()?;
        self.daemon = Daemon::start(&self.node, &self.layout, config)?;
        Ok(())
    }

    /// An ADD invocation for pod `namespace/name` in `pod_ns`, as a runtime would make it.
    pub fn invocation(
        &self,
        container_id: &str,
        pod_ns: &Netns,
        namespace: &str,
        name: &str,
        uid: &str,
    ) -> Invocation {
        Invocation::new(
            "ADD",
            container_id,
            &pod_ns.path(),
            k8s_args(namespace, name, uid, container_id),
            multus_conf("1.0.0", self.daemon.socket_dir()),
        )
    }
}

/// The standard scenario's pod on a fresh node, not attached yet (fields drop in this order).
pub struct PodOnNode {
    /// The runtime's ADD of the pod's container; `with_command` gives its CHECK and DEL.
    pub add: Invocation,
    pub pod_ns: Netns,
    pub cluster: Cluster,
}

/// A node with [`three_nads`] and pod `default/<name>` (uid `uid-<name>`) selecting
/// `networks`, a fresh namespace for it, and the ADD of container `cid` into it.
pub fn pod_on_node(cid: &str, name: &str, networks: &str) -> Result<PodOnNode> {
    let cluster = Cluster::start(|_| {})?;
    three_nads(&cluster)?;
    let uid = format!("uid-{name}");
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", name, &uid, networks))?;
    let pod_ns = Netns::new("mrspod")?;
    let add = cluster.invocation(cid, &pod_ns, "default", name, &uid);
    Ok(PodOnNode {
        add,
        pod_ns,
        cluster,
    })
}

/// The three secondary networks of the standard scenario, written as NADs into `cluster`:
/// `ptp-net` (ptp + host-local), `macvlan-net` (macvlan on a veth parent in the node namespace
/// + host-local) and `hostdev-net` (host-device moving a node veth end into the pod, static IP).
pub fn three_nads(cluster: &Cluster) -> Result<()> {
    let l = &cluster.layout;
    let (parent, _) = cluster.node.veth_pair("mrsmv")?;
    let (dev, _) = cluster.node.veth_pair("mrshd")?;
    let nads = [
        nad(
            "default",
            "ptp-net",
            &json!({"cniVersion": "0.4.0", "name": "ptp-net", "type": "ptp", "ipam": host_local(l, "10.89.0.0/24")}),
        ),
        nad(
            "default",
            "macvlan-net",
            &json!({"cniVersion": "1.0.0", "type": "macvlan", "master": parent, "mode": "bridge", "ipam": host_local(l, "10.90.0.0/24")}),
        ),
        nad(
            "default",
            "hostdev-net",
            &json!({"cniVersion": "1.0.0", "type": "host-device", "device": dev, "ipam": {"type": "static", "addresses": [{"address": "10.91.0.5/24"}]}}),
        ),
    ];
    for (i, n) in nads.iter().enumerate() {
        l.put_manifest(&format!("nad-{i}.json"), n)?;
    }
    Ok(())
}

/// The node a Kubernetes-mode daemon reports in `MULTUS_NODE_NAME`; pods it should cache name it.
pub const KUBE_NODE: &str = "node-e2e";

/// The API server stand-in listening on 127.0.0.1 *inside a node namespace*, where a daemon run
/// there can reach it (a namespace has its own loopback), served by a runtime on its own thread.
/// Its store and fault rules are used directly through `Deref`.
pub struct NodeApiServer {
    server: ApiServer,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NodeApiServer {
    pub fn start(node: &Netns) -> Result<Self> {
        let ns = std::fs::File::open(node.path()).context("opening the node namespace")?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("apiserver-in-node".into())
            .spawn(move || {
                if let Err(e) = serve_in(&ns, stopped, &ready_tx) {
                    let _ = ready_tx.send(Err(e));
                }
            })?;
        let server = ready_rx
            .recv()
            .context("the stand-in's thread ended before it listened")??;
        Ok(Self {
            server,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Takes the server down hard, as a crashed API server: the listener and every open
    /// connection close. The store stays readable.
    pub fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::ops::Deref for NodeApiServer {
    type Target = ApiServer;
    fn deref(&self) -> &ApiServer {
        &self.server
    }
}

impl Drop for NodeApiServer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn serve_in(
    ns: &std::fs::File,
    stopped: oneshot::Receiver<()>,
    ready: &mpsc::Sender<Result<ApiServer>>,
) -> Result<()> {
    // A network namespace is a per-thread attribute: only this thread (and the sockets it opens)
    // moves into the node, the test process stays where it is.
    nix::sched::setns(ns, CloneFlags::CLONE_NEWNET).context("setns into the node namespace")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = ApiServer::start().await?;
        let _ = ready.send(Ok(server));
        let _ = stopped.await;
        Ok(())
    })
}

/// A node whose daemon reads pods and NADs from the API server stand-in through a kubeconfig,
/// exactly as in a real cluster (no `clusterStateDir`), with `MULTUS_NODE_NAME` = [`KUBE_NODE`].
pub struct KubeCluster {
    // Field order is drop order: stop the daemon before its API server.
    pub cluster: Cluster,
    pub api: NodeApiServer,
}

impl KubeCluster {
    /// The cluster network is `Cluster::start`'s; `tweak` may change the daemon config.
    pub fn start(tweak: impl FnOnce(&mut Map<String, Value>)) -> Result<Self> {
        Self::start_with_api(|_| {}, tweak)
    }

    /// As [`KubeCluster::start`], with `prepare` run on the API server before the daemon starts
    /// (e.g. to set its RBAC, so even the daemon's first list is authorized by it).
    pub fn start_with_api(
        prepare: impl FnOnce(&ApiServer),
        tweak: impl FnOnce(&mut Map<String, Value>),
    ) -> Result<Self> {
        let node = Netns::new("mrsnode")?;
        let api = NodeApiServer::start(&node)?;
        prepare(&api);
        let kubeconfig = api.kubeconfig_path();
        let env = [("MULTUS_NODE_NAME", KUBE_NODE)];
        let cluster = Cluster::start_on(node, Layout::new()?, &env, |config| {
            config.remove("clusterStateDir");
            config.remove("networkStatusDir");
            config.insert("kubeconfig".into(), json!(kubeconfig));
            tweak(config);
        })?;
        let k = Self { cluster, api };
        k.wait_watching()?;
        Ok(k)
    }

    /// Waits until the daemon's reflectors listed pods and NADs and opened their watches, so
    /// every later change reaches its caches, and a pod stored unwatched never does.
    fn wait_watching(&self) -> Result<()> {
        let paths = [
            "/api/v1/pods",
            "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions",
        ];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        // A list, then a watch: the second request on the collection path.
        while paths
            .iter()
            .any(|p| self.api.requests(&axum::http::Method::GET, p) < 2)
        {
            if std::time::Instant::now() > deadline {
                anyhow::bail!(
                    "the daemon did not watch pods and NADs within 30 s:\n{}",
                    self.cluster.daemon.log_text()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(())
    }

    /// The pod's network-status annotation as the stand-in stores it, parsed.
    pub fn network_status(&self, namespace: &str, pod: &str) -> Option<Value> {
        let stored = self.api.pod(namespace, pod)?;
        let text = stored
            .pointer("/metadata/annotations")?
            .get("k8s.v1.cni.cncf.io/network-status")?
            .as_str()?;
        serde_json::from_str(text).ok()
    }
}

impl std::ops::Deref for KubeCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}
