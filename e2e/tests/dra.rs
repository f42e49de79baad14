//! Issue 9, devices from DRA: a pod whose ResourceClaim was allocated a VF gets that VF's PCI
//! address (the slice's `k8s.cni.cncf.io/deviceID`) in its NAD's delegate config (`deviceID`,
//! `pciBusID`, recorded from the plugin's stdin) and in network-status `device-info`, through
//! the real shim and daemon, with the daemon reading pods, NADs, claims and slices from the API
//! server stand-in. Also: a claim not allocated or missing fails the ADD (upstream's words) and
//! attaches nothing; an API server serving only v1beta1; the chart's RBAC and upstream's (list
//! without watch) both work; the node's slices are watched once, not listed per ADD.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::http::Method;
use multus_e2e::{
    apiserver::{
        Action, ApiServer, Fault, Rbac, nad_json, pod_json, resource_claim_json,
        resource_claim_path, resource_slice_json, resource_slices_path,
    },
    netns::Netns,
    scenario::{KUBE_NODE, KubeCluster},
    shim::{Invocation, Output},
};
use serde_json::{Value, json};

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const RESOURCE: &str = "intel.com/sriov_netdevice";
const DRIVER: &str = "sriovnetwork.k8snetworkplumbingwg.io";
const GPU_DRIVER: &str = "gpu.example.com";

/// A node whose daemon has an empty device-plugin checkpoint (no device plugin devices, no
/// PodResources socket), a device-info dir and a recorder plugin in its binDir.
struct Node {
    k: KubeCluster,
    plugins: tempfile::TempDir,
}

impl Node {
    fn start(prepare: impl FnOnce(&ApiServer)) -> Self {
        let plugins = tempfile::tempdir().unwrap();
        write_recorder(plugins.path());
        let checkpoint = plugins.path().join("kubelet_internal_checkpoint");
        std::fs::write(
            &checkpoint,
            r#"{"Data":{"PodDeviceEntries":null,"RegisteredDevices":{}},"Checksum":0}"#,
        )
        .unwrap();
        let bin_dir = format!("{}:{}", plugins.path().display(), multus_e2e::CNI_BIN_DIR);
        let devinfo = plugins.path().join("devinfo");
        let socket = plugins.path().join("no-kubelet.sock");
        let k = KubeCluster::start_with_api(prepare, |c| {
            c.insert("binDir".into(), json!(bin_dir));
            c.insert("kubeletCheckpointFile".into(), json!(checkpoint));
            c.insert("kubeletPodResourcesSocket".into(), json!(socket));
            c.insert("deviceInfoDir".into(), json!(devinfo));
            c.insert("kubeApiTimeoutSeconds".into(), json!(2));
            c.insert("kubeApiRetrySeconds".into(), json!(4));
        })
        .unwrap();
        let mut nad = nad_json(
            "default",
            "sriov-net",
            &json!({"cniVersion": "1.0.0", "type": "recorder"}).to_string(),
        );
        nad["metadata"]["annotations"] = json!({"k8s.v1.cni.cncf.io/resourceName": RESOURCE});
        k.api.put_nad(nad);
        Self { k, plugins }
    }

    fn devinfo(&self) -> PathBuf {
        self.plugins.path().join("devinfo")
    }

    /// What the DRA driver (as a device plugin does) leaves for the CNI plugin about a VF.
    fn publish_device_info(&self, pci: &str) {
        let dp = self.devinfo().join("dp");
        std::fs::create_dir_all(&dp).unwrap();
        let name = format!("{}-{pci}-device.json", RESOURCE.replace('/', "-"));
        let info = json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": pci}});
        std::fs::write(dp.join(name), info.to_string()).unwrap();
    }

    /// The config the recorder plugin got on its ADD for `ifname` of container `cid`.
    fn recorded_stdin(&self, cid: &str, ifname: &str) -> Value {
        let path = self.plugins.path().join(format!("stdin-{cid}-{ifname}"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), self.k.daemon.log_text()));
        serde_json::from_str(&text).unwrap()
    }

    /// A pod of this node selecting `sriov-net`, its status naming `claim`.
    fn put_pod(&self, name: &str, claim: &str) {
        let ann = BTreeMap::from([(NETWORKS.to_owned(), "sriov-net".to_owned())]);
        let mut pod = pod_json("default", name, KUBE_NODE, &ann);
        pod["metadata"]["uid"] = json!(format!("uid-{name}"));
        pod["spec"]["resourceClaims"] = json!([{"name": "nic", "resourceClaimTemplateName": "vf"}]);
        pod["status"]["resourceClaimStatuses"] =
            json!([{"name": "nic", "resourceClaimName": claim}]);
        self.k.api.put_pod(pod);
    }

    fn add(&self, cid: &str, pod_ns: &Netns, name: &str) -> Invocation {
        self.k
            .invocation(cid, pod_ns, "default", name, &format!("uid-{name}"))
    }

    fn run(&self, inv: &Invocation) -> Output {
        inv.run().unwrap()
    }

    fn run_ok(&self, inv: &Invocation) -> Output {
        let out = self.run(inv);
        assert!(
            out.success(),
            "{} failed: {out:?}\n{}",
            inv.command,
            self.k.daemon.log_text()
        );
        out
    }

    /// The network-status entry of `sriov-net`.
    fn sriov_status(&self, pod: &str) -> Value {
        let status = self.k.network_status("default", pod).unwrap();
        status
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "default/sriov-net")
            .cloned()
            .unwrap_or_else(|| panic!("no default/sriov-net in {status}"))
    }
}

/// A CNI plugin that records its stdin per container and interface and reports the interface.
fn write_recorder(dir: &Path) {
    let script = format!(
        "#!/bin/bash\nstdin=$(cat)\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\n\
         printf '%s' \"$stdin\" > {}/stdin-$CNI_CONTAINERID-$CNI_IFNAME\n\
         echo '{{\"cniVersion\":\"1.0.0\",\"interfaces\":[{{\"name\":\"'$CNI_IFNAME'\",\"mac\":\"02:00:00:00:00:09\",\"sandbox\":\"'$CNI_NETNS'\"}}]}}'\n",
        dir.display()
    );
    let plugin = dir.join("recorder");
    std::fs::write(&plugin, script).unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// The node's slices at `version`: two VFs published for CNI, and a GPU that is not.
fn put_slices(api: &ApiServer, version: &str) {
    api.put_resource_slice(resource_slice_json(
        version,
        "node-e2e-sriov-x8f2",
        KUBE_NODE,
        DRIVER,
        &[
            ("vf-0", Some("0000:03:00.1"), Some(RESOURCE)),
            ("vf-1", Some("0000:03:00.2"), Some(RESOURCE)),
        ],
    ));
    api.put_resource_slice(resource_slice_json(
        version,
        "node-e2e-gpu-p2k4",
        KUBE_NODE,
        GPU_DRIVER,
        &[("gpu-0", None, None)],
    ));
    // Another node's VF of the same name: outside this node's watch.
    api.put_resource_slice(resource_slice_json(
        version,
        "node-other-sriov-q9z1",
        "node-other",
        DRIVER,
        &[("vf-1", Some("0000:99:00.7"), Some(RESOURCE))],
    ));
}

/// A claim allocated `vf` (and a GPU, which multus skips).
fn put_claim(api: &ApiServer, version: &str, name: &str, vf: &str) {
    api.put_resource_claim(resource_claim_json(
        version,
        "default",
        name,
        Some(&[
            ("nic", DRIVER, KUBE_NODE, vf),
            ("gpu", GPU_DRIVER, KUBE_NODE, "gpu-0"),
        ]),
    ));
}

fn assert_device(node: &Node, cid: &str, pod: &str, pci: &str) {
    let stdin = node.recorded_stdin(cid, "net1");
    assert_eq!(stdin["deviceID"], pci, "{stdin}");
    assert_eq!(stdin["pciBusID"], pci, "{stdin}");
    let entry = node.sriov_status(pod);
    assert_eq!(
        entry["device-info"],
        json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": pci}}),
        "{entry}"
    );
}

fn slice_requests(api: &ApiServer, version: &str) -> usize {
    api.requests(&Method::GET, &resource_slices_path(version))
}

#[test]
fn d9_a_claimed_vf_reaches_the_plugin_config_and_network_status() {
    let node = Node::start(|api| {
        api.set_rbac(Rbac::chart());
        put_slices(api, "v1");
    });
    let api = &node.k.api;
    node.publish_device_info("0000:03:00.2");
    node.publish_device_info("0000:03:00.1");
    put_claim(api, "v1", "web-nic-x7k2", "vf-1");
    node.put_pod("web", "web-nic-x7k2");
    let pod_ns = Netns::new("mrspod").unwrap();
    let web = node.add("d9a00001", &pod_ns, "web");
    node.run_ok(&web);
    assert_device(&node, "d9a00001", "web", "0000:03:00.2");

    put_claim(api, "v1", "db-nic-m3q8", "vf-0");
    node.put_pod("db", "db-nic-m3q8");
    let db_ns = Netns::new("mrspod").unwrap();
    let db = node.add("d9a00002", &db_ns, "db");
    node.run_ok(&db);
    assert_device(&node, "d9a00002", "db", "0000:03:00.1");

    // One list and one watch of the node's slices for both pods; a claim GET per pod.
    assert_eq!(slice_requests(api, "v1"), 2);
    let claims = "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/";
    assert_eq!(api.requests_under(&Method::GET, claims), 2);
    assert_eq!(
        api.denials(),
        Vec::new(),
        "the chart's ClusterRole covers DRA"
    );
    node.run_ok(&web.with_command("DEL"));
    node.run_ok(&db.with_command("DEL"));
    let cni = node.devinfo().join("cni");
    let left: Vec<_> = std::fs::read_dir(&cni)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "device-info copies left: {left:?}");
}

#[test]
fn a_claim_not_allocated_or_missing_fails_the_add_and_attaches_nothing() {
    let node = Node::start(|api| put_slices(api, "v1"));
    let api = &node.k.api;
    api.put_resource_claim(resource_claim_json(
        "v1",
        "default",
        "web-nic-pending",
        None,
    ));
    node.put_pod("web", "web-nic-pending");
    let pod_ns = Netns::new("mrspod").unwrap();
    let out = node.run(&node.add("d9a00011", &pod_ns, "web"));
    assert!(!out.success(), "{out:?}");
    assert_eq!(out.cni_code(), Some(7), "{out:?}");
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains("DRA: claim web-nic-pending has no device allocation"),
        "{msg}"
    );
    assert_eq!(node.k.layout.cache_records().unwrap(), Vec::<String>::new());
    assert_eq!(node.k.network_status("default", "web"), None);

    node.put_pod("api", "api-nic-gone");
    let out = node.run(&node.add("d9a00012", &pod_ns, "api"));
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert_eq!(out.cni_code(), Some(7), "{out:?}");
    assert!(
        msg.contains("resource claim default/api-nic-gone not found"),
        "{msg}"
    );
    assert_eq!(node.k.layout.cache_records().unwrap(), Vec::<String>::new());
}

#[test]
fn a_server_error_on_a_claim_is_retried() {
    let node = Node::start(|api| put_slices(api, "v1"));
    let api = &node.k.api;
    let path = resource_claim_path("v1", "default", "web-nic-r1");
    api.inject(Fault::new(Method::GET, &path, Action::Status(500)).times(1));
    put_claim(api, "v1", "web-nic-r1", "vf-0");
    node.put_pod("web", "web-nic-r1");
    let pod_ns = Netns::new("mrspod").unwrap();
    let web = node.add("d9a00041", &pod_ns, "web");
    node.run_ok(&web);
    assert_eq!(
        node.recorded_stdin("d9a00041", "net1")["deviceID"],
        "0000:03:00.1"
    );
    assert_eq!(api.requests(&Method::GET, &path), 2);
    node.run_ok(&web.with_command("DEL"));
}

#[test]
fn a_cluster_without_resource_k8s_io_fails_a_claiming_pod_and_is_not_asked_again_at_once() {
    let node = Node::start(|api| api.serve_dra(None));
    node.put_pod("web", "web-nic-x");
    let pod_ns = Netns::new("mrspod").unwrap();
    for cid in ["d9a00051", "d9a00052"] {
        let out = node.run(&node.add(cid, &pod_ns, "web"));
        assert_eq!(out.cni_code(), Some(7), "{out:?}");
        let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
        assert!(
            msg.contains("serves no resource.k8s.io version the daemon reads"),
            "{msg}"
        );
    }
    // Discovery is retried after a back-off, not on every ADD.
    assert_eq!(
        node.k.api.requests(&Method::GET, "/apis/resource.k8s.io"),
        1
    );
    assert_eq!(node.k.layout.cache_records().unwrap(), Vec::<String>::new());
}

#[test]
fn an_api_server_serving_only_v1beta1_is_read_in_its_shape() {
    let node = Node::start(|api| {
        api.serve_dra(Some("v1beta1"));
        put_slices(api, "v1beta1");
    });
    node.publish_device_info("0000:03:00.2");
    put_claim(&node.k.api, "v1beta1", "web-nic-b1", "vf-1");
    node.put_pod("web", "web-nic-b1");
    let pod_ns = Netns::new("mrspod").unwrap();
    let web = node.add("d9a00021", &pod_ns, "web");
    node.run_ok(&web);
    assert_device(&node, "d9a00021", "web", "0000:03:00.2");
    assert_eq!(slice_requests(&node.k.api, "v1"), 0);
    node.run_ok(&web.with_command("DEL"));
}

#[test]
fn upstreams_clusterrole_without_watch_still_finds_a_slice_published_later() {
    let node = Node::start(|api| {
        api.set_rbac(Rbac::upstream_with_dra());
        put_slices(api, "v1");
    });
    let api = &node.k.api;
    put_claim(api, "v1", "web-nic-u1", "vf-1");
    node.put_pod("web", "web-nic-u1");
    let pod_ns = Netns::new("mrspod").unwrap();
    let web = node.add("d9a00031", &pod_ns, "web");
    node.run_ok(&web);
    assert_eq!(
        node.recorded_stdin("d9a00031", "net1")["deviceID"],
        "0000:03:00.2"
    );
    assert!(
        api.denials()
            .iter()
            .any(|(_, p)| p == &resource_slices_path("v1")),
        "the watch is refused under upstream's ClusterRole: {:?}",
        api.denials()
    );
    // A VF published after the refused watch: the ADD that misses it relists.
    api.put_resource_slice(resource_slice_json(
        "v1",
        "node-e2e-sriov-late",
        KUBE_NODE,
        DRIVER,
        &[("vf-7", Some("0000:03:00.7"), Some(RESOURCE))],
    ));
    put_claim(api, "v1", "db-nic-u2", "vf-7");
    node.put_pod("db", "db-nic-u2");
    let db_ns = Netns::new("mrspod").unwrap();
    let db = node.add("d9a00032", &db_ns, "db");
    node.run_ok(&db);
    assert_eq!(
        node.recorded_stdin("d9a00032", "net1")["deviceID"],
        "0000:03:00.7"
    );
    node.run_ok(&web.with_command("DEL"));
    node.run_ok(&db.with_command("DEL"));
}

/// The chart's ClusterRole (the template with its `{{ }}` lines left out) grants the stand-in's
/// `Rbac::chart()` DRA rules, which the first test shows are all the daemon needs.
#[test]
fn the_charts_clusterrole_grants_get_on_claims_and_list_watch_on_slices() {
    let path =
        multus_e2e::bins::workspace_root().join("charts/multus-rs/templates/clusterrole.yaml");
    let template = std::fs::read_to_string(&path).unwrap();
    let plain: String = template
        .lines()
        .filter(|l| !l.contains("{{"))
        .map(|l| format!("{l}\n"))
        .collect();
    let role: Value = serde_yaml_ng::from_str(&plain).unwrap();
    let verbs = |resource: &str| -> Vec<String> {
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["apiGroups"] == json!(["resource.k8s.io"]))
            .filter(|r| {
                r["resources"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(resource))
            })
            .flat_map(|r| r["verbs"].as_array().unwrap().clone())
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(verbs("resourceclaims"), ["get"]);
    assert_eq!(verbs("resourceslices"), ["list", "watch"]);
}
