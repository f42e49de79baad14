//! Ready-made clusters for tests and the demo: a node namespace running the daemon in
//! standalone mode, the cluster network, NADs for the reference plugins, and pods.
use anyhow::Result;
use serde_json::{Map, Value, json};

use crate::{
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
        let node = Netns::new("mrsnode")?;
        let layout = Layout::new()?;
        let bridge = crate::unique("mrsbr");
        let conflist = layout.dir("net.d").join("10-cluster.conflist");
        std::fs::write(
            &conflist,
            bridge_conflist(&layout, &bridge, "10.88.0.0/24").to_string(),
        )?;
        let mut config = layout.config(&conflist.to_string_lossy());
        tweak(&mut config);
        let daemon = Daemon::start(&node, &layout, &config)?;
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
