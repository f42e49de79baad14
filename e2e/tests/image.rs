//! The image we ship is the image we test (issue 10). The image is built without docker from the
//! Dockerfile's final stage (`build-image`, e2e/src/image.rs) and imported into a real containerd;
//! the chart's DaemonSet, rendered by the real Helm library (e2e/src/helm.rs), is run from it
//! as a kubelet runs it (e2e/src/kubelet.rs): host network and PID namespace, the chart's mounts
//! pointed at this test's "host" dirs, its capabilities, seccomp and read-only root. The init
//! container installs the shim into containerd's CNI bin dir, the daemon container serves and
//! writes 00-multus.conf, and a sandbox containerd starts gets its networks through the
//! installed shim and the containerised daemon, whose delegates run chrooted in the host root.
//!
//! The binaries come from `MULTUS_E2E_IMAGE_BINS` (e2e/run points it at the release build made
//! with the Dockerfile's recipe), or else the binaries under test (debug).
#![allow(clippy::unwrap_used)]

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use multus_e2e::{
    containerd::{CniSetup, Containerd},
    daemon::Layout,
    dockerfile::FinalStage,
    helm, image,
    kubelet::{self, RunningPod},
    netns::Netns,
    oci, probe,
    scenario::{bridge_conflist, host_local, nad, pod},
};
use serde_json::{Value, json};

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

/// Where the image's binaries come from (see the module doc).
fn image_bins() -> PathBuf {
    if let Some(dir) = std::env::var_os("MULTUS_E2E_IMAGE_BINS") {
        return PathBuf::from(dir);
    }
    multus_e2e::bins::daemon()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

fn stage() -> FinalStage {
    image::final_stage(&image::dockerfile_path(), &BTreeMap::new()).unwrap()
}

fn yaml_file(path: &Path) -> Value {
    serde_yaml_ng::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// The files the release recipe (`e2e/build-release-bins`, the Dockerfile's build stage)
/// copies into its output directory.
fn recipe_outputs() -> BTreeSet<String> {
    let script = multus_e2e::bins::workspace_root().join("e2e/build-release-bins");
    let text = fs::read_to_string(&script).unwrap();
    let cp = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("cp ") && l.ends_with("\"$out/\""))
        .expect("the recipe's `cp ... \"$out/\"` line");
    cp.split_whitespace()
        .filter(|w| *w != "cp" && *w != "\"$out/\"")
        .map(|w| {
            Path::new(w.trim_matches('"'))
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn dockerfile_final_stage_is_what_the_writer_reads_and_the_chart_expects() {
    let stage = stage();
    assert_eq!(stage.base, image::DISTROLESS_CC);
    let binaries = image::copied_binaries(&stage).unwrap();
    let names: BTreeSet<String> = binaries.iter().map(|(n, _)| n.clone()).collect();
    let expected: BTreeSet<String> = ["multus-daemon", "multus-shim", "passthru", "install_multus"]
        .map(String::from)
        .into();
    assert_eq!(names, expected, "upstream's four binaries");
    for (name, dest) in &binaries {
        assert_eq!(
            *dest,
            format!("usr/src/multus-cni/bin/{name}"),
            "upstream's path"
        );
    }
    // The build stage runs the recipe CI runs, into the /out/ the final stage copies from.
    let text = fs::read_to_string(image::dockerfile_path()).unwrap();
    assert!(
        text.contains("    e2e/build-release-bins /out\n"),
        "the build stage's RUN"
    );
    assert_eq!(recipe_outputs(), expected, "recipe vs COPY");
    let path = stage.env_var("PATH").unwrap();
    for dir in [
        "/usr/local/sbin",
        "/usr/sbin",
        "/sbin",
        "/usr/src/multus-cni/bin",
    ] {
        assert!(
            path.split(':').any(|d| d == dir),
            "{dir} not in PATH={path}"
        );
    }
    assert_eq!(
        stage.user.as_deref(),
        Some("0:0"),
        "numeric root, no /etc/passwd"
    );
    assert_eq!(stage.entrypoint, ["/usr/src/multus-cni/bin/multus-daemon"]);
    assert_eq!(
        stage.cmd,
        ["--config", "/etc/cni/net.d/multus.d/daemon-config.json"],
        "the daemon's default config path"
    );
    // The chart pulls <repository>:<appVersion>: the image the Dockerfile labels.
    let chart = yaml_file(&helm::chart_dir().join("Chart.yaml"));
    let values = yaml_file(&helm::chart_dir().join("values.yaml"));
    assert_eq!(
        stage.labels["org.opencontainers.image.version"],
        chart["appVersion"].as_str().unwrap()
    );
    assert_eq!(values["image"]["repository"], image::REPOSITORY);
    for label in [
        "title",
        "description",
        "version",
        "revision",
        "licenses",
        "source",
    ] {
        assert!(
            stage
                .labels
                .contains_key(&format!("org.opencontainers.image.{label}")),
            "label {label}"
        );
    }
}

#[test]
fn helm_renders_the_chart_with_test_values_and_reports_its_failures() {
    let values =
        json!({"hostPaths": {"socketDir": "/tmp/x-sock"}, "daemonConfig": {"logLevel": "debug"}});
    let rendered = helm::install("multus-rs", "kube-system", &values).unwrap();
    let kinds: BTreeSet<&str> = rendered
        .objects
        .iter()
        .filter_map(|o| o["kind"].as_str())
        .collect();
    for kind in [
        "CustomResourceDefinition",
        "ConfigMap",
        "DaemonSet",
        "ClusterRole",
        "ServiceAccount",
    ] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }
    let ds = rendered.one("DaemonSet").unwrap();
    assert_eq!(ds["metadata"]["namespace"], "kube-system");
    let socket = ds["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "socket-dir")
        .unwrap();
    assert_eq!(socket["hostPath"]["path"], "/tmp/x-sock");
    let cm = rendered.config_map("multus-rs-daemon-config").unwrap();
    let config: Value =
        serde_json::from_str(cm["data"]["daemon-config.json"].as_str().unwrap()).unwrap();
    assert_eq!(config["logLevel"], "debug");
    assert_eq!(config["daemonSocketDir"], "/tmp/x-sock");

    // A template's `fail` is Helm's error, and reaches the caller.
    let err = helm::install("multus-rs", "kube-system", &json!({"hostPID": false}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("set hostPID: true"), "{err}");
}

/// Reads a layout directory back: the image config and the layer's entries (path -> mode, size).
fn read_layout(dir: &Path) -> (Value, BTreeMap<String, (u32, u64)>) {
    let blob =
        |digest: &str| fs::read(dir.join("blobs").join(digest.replacen(':', "/", 1))).unwrap();
    let index: Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let config: Value =
        serde_json::from_slice(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    let mut entries = BTreeMap::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&layer[..]));
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let header = e.header();
        entries.insert(
            format!("/{}", e.path().unwrap().display()),
            (header.mode().unwrap(), header.size().unwrap()),
        );
    }
    (config, entries)
}

#[test]
fn image_layout_has_the_dockerfile_config_the_binaries_and_their_c_library() {
    let stage = stage();
    let reference = image::default_reference(&stage).unwrap();
    let spec = image::spec(&stage, &image_bins(), &reference).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("oci");
    let first = oci::write_dir(&spec, &out).unwrap();
    let (config, entries) = read_layout(&out);

    let c = &config["config"];
    assert_eq!(c["Entrypoint"], json!(stage.entrypoint));
    assert_eq!(c["Cmd"], json!(stage.cmd));
    assert_eq!(c["User"], "0:0");
    let env: Vec<String> = stage.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(c["Env"], json!(env));
    assert_eq!(c["Labels"], json!(stage.labels));

    let files: BTreeSet<&str> = entries
        .iter()
        .filter(|(p, _)| !p.ends_with('/'))
        .map(|(p, _)| p.as_str())
        .collect();
    for name in ["multus-daemon", "multus-shim", "passthru", "install_multus"] {
        let path = format!("/usr/src/multus-cni/bin/{name}");
        assert!(files.contains(path.as_str()), "{path} in {files:?}");
        assert_eq!(entries[&path].0 & 0o777, 0o755);
    }
    // The loader at the path the binaries' PT_INTERP names, and glibc: all distroless/cc gave
    // them (libgcc_s too when a binary links it), nothing else.
    let needs = |name: &str| multus_e2e::elf::needs(&image_bins().join(name)).unwrap();
    let daemon = needs("multus-daemon");
    // daemon/build.rs: 1.36 MB of .rela.dyn the loader would read at each start otherwise;
    // distroless/cc-debian12's glibc (2.36) applies DT_RELR.
    for (name, elf) in [
        ("multus-daemon", &daemon),
        ("install_multus", &needs("install_multus")),
    ] {
        assert!(
            elf.relr,
            "{name}'s relative relocations are packed (DT_RELR)"
        );
    }
    let interp = daemon
        .interpreter
        .expect("the daemon is dynamically linked against glibc");
    assert!(files.contains(interp.as_str()), "{interp} in {files:?}");
    assert!(files.iter().any(|f| f.ends_with("/libc.so.6")), "{files:?}");
    for f in &files {
        assert!(
            f.starts_with("/usr/src/multus-cni/bin/")
                || f.starts_with("/lib")
                || f.starts_with("/usr/lib"),
            "unexpected file {f}"
        );
        let name = Path::new(f).file_name().unwrap().to_string_lossy();
        assert!(
            f.starts_with("/usr/src/")
                || ["ld-linux", "libc.so", "libgcc_s.so", "libm.so"]
                    .iter()
                    .any(|l| name.starts_with(l)),
            "{f} is not part of what distroless/cc provides"
        );
    }
    let list = image::file_list(&spec).unwrap();
    let total: u64 = list.iter().map(|(_, n)| n).sum();
    eprintln!("image {reference} from {}:", image_bins().display());
    for (path, len) in &list {
        eprintln!("{len:>12}  {path}");
    }
    eprintln!(
        "{total:>12}  bytes in {} files; compressed layer {} bytes",
        list.len(),
        first.layer_size
    );
}

/// The node: its network namespace (containerd and the daemon's host network), containerd in
/// it with the cluster's bridge conflist as the primary network, and the "host" dirs.
struct Node {
    // Drop order: containerd (and every sandbox) before the dirs and the namespace.
    containerd: Containerd,
    layout: Layout,
    node: Netns,
    scratch: tempfile::TempDir,
}

const NODE_NAME: &str = "node-e2e";

fn node() -> Node {
    let node = Netns::new("mrsnode").unwrap();
    let layout = Layout::new().unwrap();
    let bridge = multus_e2e::unique("mrsbr");
    let primary = bridge_conflist(&layout, &bridge, "10.88.0.0/24");
    let plugins = [
        "bridge",
        "host-local",
        "tuning",
        "ptp",
        "macvlan",
        "loopback",
    ]
    .iter()
    .map(|p| (p.to_string(), Path::new(multus_e2e::CNI_BIN_DIR).join(p)))
    .collect();
    let cni = CniSetup {
        confs: vec![(
            "10-cluster.conflist".into(),
            primary.to_string().into_bytes(),
        )],
        plugins,
    };
    let containerd = Containerd::start_node(&cni, &node).unwrap_or_else(|e| panic!("{e:#}"));
    Node {
        containerd,
        layout,
        node,
        scratch: tempfile::Builder::new()
            .prefix("multus-kubelet-")
            .tempdir()
            .unwrap(),
    }
}

/// The chart's values for this node: every host path at a test dir (the host root stays `/`,
/// where the delegates find the reference plugins), and standalone cluster state mounted in.
fn values(n: &Node) -> Value {
    let l = &n.layout;
    let c = &n.containerd;
    let podres = l.dir("pod-resources");
    json!({
        "hostPaths": {
            "cniConfDir": c.cni_conf_dir(), "cniBinDir": c.cni_bin_dir(),
            "socketDir": l.dir("sock"), "cniCacheDir": l.dir("cni"),
            "multusConfDir": l.dir("conf"), "netnsDir": c.netns_dir(),
            "kubeletPodResourcesDir": podres, "hostRoot": "/",
        },
        "daemonConfig": {
            // With chrootDir (the default) binDir is a path in the host root: the host's dir.
            "binDir": c.cni_bin_dir(),
            "kubeletPodResourcesSocket": podres.join("kubelet.sock"),
            "kubeletCheckpointFile": l.dir("device-plugins").join("kubelet_internal_checkpoint"),
            "deviceInfoDir": l.dir("devinfo"),
            // No API server here: the daemon reads pods and NADs from files.
            "clusterStateDir": "/var/lib/multus-e2e/state",
            "networkStatusDir": "/var/lib/multus-e2e/status",
            "logLevel": "debug",
        },
        "extraVolumes": [
            {"name": "e2e-state", "hostPath": {"path": l.dir("state"), "type": "Directory"}},
            {"name": "e2e-status", "hostPath": {"path": l.dir("status"), "type": "Directory"}},
        ],
        "extraVolumeMounts": [
            {"name": "e2e-state", "mountPath": "/var/lib/multus-e2e/state", "readOnly": true},
            {"name": "e2e-status", "mountPath": "/var/lib/multus-e2e/status"},
        ],
    })
}

/// Waits until containerd's CRI has loaded the CNI network `name` (it follows its conf dir).
fn wait_cni_network(containerd: &Containerd, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut client = containerd.client();
        let resp = containerd
            .block_on(client.status(multus_proto::cri::v1::StatusRequest { verbose: true }));
        if let Ok(resp) = resp {
            last = resp
                .into_inner()
                .info
                .get("cniconfig")
                .cloned()
                .unwrap_or_default();
            if last.contains(&format!("\"{name}\"")) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("containerd did not load CNI network {name}: {last}");
}

fn wait_file(path: &Path, pod: &RunningPod<'_>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} not written:\n{}",
            path.display(),
            pod.logs("multus-daemon")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn chart_daemonset_runs_the_image_and_a_sandbox_gets_its_networks_through_it() {
    let n = node();
    let stage = stage();
    let reference = image::default_reference(&stage).unwrap();
    let spec = image::spec(&stage, &image_bins(), &reference).unwrap();
    let archive = n.scratch.path().join("multus-rs.tar");
    oci::write_archive(&spec, &archive).unwrap();
    n.containerd.import(&archive).unwrap();

    let rendered = helm::install("multus-rs", "kube-system", &values(&n)).unwrap();
    let ds = rendered.one("DaemonSet").unwrap();
    let template = &ds["spec"]["template"]["spec"];
    assert_eq!(template["containers"][0]["image"], reference.as_str());
    assert_eq!(
        template["hostPID"], true,
        "the chart's default chroots delegates"
    );
    let config_maps: Vec<Value> = rendered
        .objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .cloned()
        .collect();
    let kubelet_node = kubelet::Node {
        name: NODE_NAME.into(),
        config_maps,
        creatable_roots: vec![
            n.layout.dir("sock").parent().unwrap().to_path_buf(),
            n.containerd.cni_conf_dir().parent().unwrap().to_path_buf(),
        ],
        scratch: n.scratch.path().to_path_buf(),
    };
    let plan = kubelet::plan(&n.containerd, ds, &kubelet_node).unwrap();
    assert_eq!(plan.init.len(), 1, "install-multus-shim");

    let started = Instant::now();
    let daemon_pod = RunningPod::start(&n.containerd, plan).unwrap_or_else(|e| panic!("{e:#}"));
    // The init container installed the image's shim and passthru into the host's CNI bin dir.
    let bin = n.containerd.cni_bin_dir();
    for name in ["multus-shim", "passthru"] {
        let installed = fs::read(bin.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            installed,
            fs::read(image_bins().join(name)).unwrap(),
            "{name}"
        );
    }
    let startup = daemon_pod
        .wait_probe("multus-daemon", "startupProbe")
        .unwrap_or_else(|e| panic!("{e:#}"));
    daemon_pod
        .wait_probe("multus-daemon", "readinessProbe")
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "DaemonSet pod: started and ready in {:?} (startup probe passed after {startup:?})",
        started.elapsed()
    );
    assert!(n.layout.dir("sock").join("multus.sock").exists());
    wait_file(
        &n.containerd.cni_conf_dir().join("00-multus.conf"),
        &daemon_pod,
    );
    wait_cni_network(&n.containerd, "multus-cni-network");

    // Two NADs of the standalone cluster state the daemon container reads.
    let (parent, _) = n.node.veth_pair("mrsmv").unwrap();
    let l = &n.layout;
    l.put_manifest(
        "nad-ptp.json",
        &nad(
            "default",
            "ptp-net",
            &json!({"cniVersion": "0.4.0", "name": "ptp-net", "type": "ptp", "ipam": host_local(l, "10.89.0.0/24")}),
        ),
    )
    .unwrap();
    l.put_manifest(
        "nad-macvlan.json",
        &nad(
            "default",
            "macvlan-net",
            &json!({"cniVersion": "1.0.0", "type": "macvlan", "master": parent, "mode": "bridge", "ipam": host_local(l, "10.90.0.0/24")}),
        ),
    )
    .unwrap();
    let networks = "ptp-net, default/macvlan-net";
    l.put_manifest("pod-web.json", &pod("default", "web", "uid-web", networks))
        .unwrap();
    let annotations = HashMap::from([(NETWORKS.to_string(), networks.to_string())]);
    let config = n
        .containerd
        .sandbox_config("default", "web", "uid-web", &annotations);

    let id = n.containerd.run_pod_sandbox(config).unwrap_or_else(|e| {
        panic!(
            "RunPodSandbox: {}\n--- daemon container ---\n{}",
            e.message(),
            daemon_pod.logs("multus-daemon")
        )
    });
    let netns = n.containerd.netns_path(&id).unwrap();
    let eth0 = probe::assert_cluster_and_two_nads(&netns);
    let pod_ip = n.containerd.pod_ip(&id).unwrap();
    assert_eq!(eth0, pod_ip);
    let status = l.network_status("default", "web").unwrap().unwrap();
    assert_eq!(status.as_array().unwrap().len(), 3, "{status}");
    assert_eq!(l.leases().unwrap().len(), 3);
    assert_eq!(l.cache_records().unwrap(), std::slice::from_ref(&id));

    n.containerd.stop_pod_sandbox(&id).unwrap();
    n.containerd.remove_pod_sandbox(&id).unwrap();
    assert!(!netns.exists(), "StopPodSandbox left {}", netns.display());
    assert_eq!(l.leases().unwrap(), Vec::<String>::new());
    assert_eq!(l.cache_records().unwrap(), Vec::<String>::new());

    // The kubelet's pod deletion: SIGTERM and the grace period; the daemon drains and exits 0,
    // keeping 00-multus.conf (cleanupConfigOnExit is false).
    let grace = Duration::from_secs(
        ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap(),
    );
    daemon_pod.stop("multus-daemon", grace).unwrap();
    let (_, code) = daemon_pod.state(&daemon_pod.ids["multus-daemon"]).unwrap();
    assert_eq!(code, 0, "{}", daemon_pod.logs("multus-daemon"));
    assert!(n.containerd.cni_conf_dir().join("00-multus.conf").exists());
}
