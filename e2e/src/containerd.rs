//! A real containerd (Debian's, with runc) run by the test with its own root, state, socket and
//! CNI dirs inside one temp dir, driven through the CRI v1 API exactly as the kubelet drives it.
//! Its CRI plugin's own libcni calls the CNI plugins found in the fixture's CNI dirs, so the
//! shim gets the CNI_ARGS and netns a real runtime builds.
//!
//! Network namespaces are created under the fixture's state dir (`netns_mounts_under_state_dir`)
//! so a test can tell its sandboxes' namespaces from every other test's. That dir is made a
//! shared mount (as `ip netns add` makes /run/netns), so a process with a mount namespace of its
//! own, like a daemon under `ip netns exec`, sees the namespaces containerd mounts there later:
//! start the fixture before such a process. On drop every sandbox
//! still there is stopped and removed (which deletes its namespace), then containerd is stopped
//! by PID; its log is printed when the test failed.
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use multus_proto::cri::v1::{
    self as cri, PodSandboxConfig, PodSandboxMetadata, runtime_service_client::RuntimeServiceClient,
};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;
use tempfile::TempDir;
use tonic::transport::Channel;

use crate::oci;

/// The sandbox (pause) image every sandbox runs: written by the suite, imported with `ctr`.
pub const PAUSE_IMAGE: &str = "multus-e2e.local/pause:busybox";

/// The CRI plugin's Kubernetes namespace in containerd (where `ctr` must import the image).
const K8S_NAMESPACE: &str = "k8s.io";

/// The CRI plugin's netns dir (`netns_mounts_under_state_dir`), relative to the fixture's dir.
const NETNS_DIR: &str = "state/io.containerd.grpc.v1.cri/netns";

/// How long one CRI call may take (a sandbox start on a busy 2-core machine included).
const CRI_TIMEOUT: Duration = Duration::from_secs(120);

/// How long containerd may take to serve CRI with its runtime and network ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The programs the fixture needs, and the Debian package that ships each.
const REQUIRED: [(&str, &str); 5] = [
    ("containerd", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("ctr", "containerd"),
    ("runc", "runc"),
    ("nsenter", "util-linux"),
];

/// What the runtime's CNI dirs hold.
#[derive(Debug, Clone)]
pub struct CniSetup {
    /// `(file name, contents)` of each network config in containerd's CNI conf dir.
    pub confs: Vec<(String, Vec<u8>)>,
    /// Plugin binaries linked into containerd's CNI bin dir, by the name containerd calls.
    pub plugins: Vec<(String, PathBuf)>,
}

impl CniSetup {
    /// `00-multus.conf` as the daemon's install step writes it, and the binaries containerd's CRI
    /// calls: `multus-shim`, plus `loopback` (which the CRI plugin runs for `lo` itself).
    pub fn multus(socket_dir: &Path) -> Result<Self> {
        Ok(Self {
            confs: vec![(
                "00-multus.conf".into(),
                crate::shim::multus_conf("0.3.1", socket_dir),
            )],
            plugins: vec![
                ("multus-shim".into(), crate::bins::shim()?),
                (
                    "loopback".into(),
                    Path::new(crate::CNI_BIN_DIR).join("loopback"),
                ),
            ],
        })
    }
}

impl CniSetup {
    /// No multus: `conflist` (e.g. the cluster's bridge conflist) called by containerd itself,
    /// with the reference plugins it names and `loopback`.
    pub fn direct(conflist: &Value, plugins: &[&str]) -> Self {
        let mut names: Vec<&str> = plugins.to_vec();
        names.push("loopback");
        Self {
            confs: vec![(
                "10-direct.conflist".into(),
                conflist.to_string().into_bytes(),
            )],
            plugins: names
                .into_iter()
                .map(|n| (n.to_string(), Path::new(crate::CNI_BIN_DIR).join(n)))
                .collect(),
        }
    }
}

/// A running containerd and a CRI client connected to it.
pub struct Containerd {
    child: Option<Child>,
    dir: TempDir,
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<Channel>,
}

impl std::fmt::Debug for Containerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containerd")
            .field("dir", &self.dir.path())
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish_non_exhaustive()
    }
}

/// Fails naming the missing program and its Debian package (e2e/run installs them).
fn require_tools() -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for (tool, package) in REQUIRED {
        if !std::env::split_paths(&path).any(|d| d.join(tool).is_file()) {
            bail!("`{tool}` is not installed (Debian package `{package}`; e2e/run installs it)");
        }
    }
    if !Path::new(oci::BUSYBOX).is_file() {
        bail!(
            "{} is missing (Debian package `busybox-static`; e2e/run installs it)",
            oci::BUSYBOX
        );
    }
    Ok(())
}

impl Containerd {
    /// Starts containerd over `cni`, waits until CRI reports the runtime and the network ready,
    /// and imports the pause image.
    pub fn start(cni: &CniSetup) -> Result<Self> {
        Self::start_in(cni, None)
    }

    /// As [`Containerd::start`], with containerd (and so every CNI plugin it runs itself) in the
    /// network namespace `netns` rather than the host's: for conflists that create links on the
    /// "node" (a bridge called directly). Only the network namespace changes (`nsenter --net`),
    /// so the sandboxes' namespace mounts stay visible to this process.
    pub fn start_in(cni: &CniSetup, netns: Option<&crate::netns::Netns>) -> Result<Self> {
        Self::start_with(cni, netns, false)
    }

    /// containerd as a node runs it for a DaemonSet with `HostToContainer` mounts of host paths
    /// (e.g. the host root): in `netns`, and in a mount namespace of its own whose `/` is a shared
    /// mount, as systemd makes it on a real node (CRI refuses such a mount of a private `/`, and
    /// this machine's is private; the machine's own mounts are not changed). The sandboxes'
    /// namespace mounts still reach this process: the netns dir is shared before the copy.
    pub fn start_node(cni: &CniSetup, netns: &crate::netns::Netns) -> Result<Self> {
        Self::start_with(cni, Some(netns), true)
    }

    fn start_with(
        cni: &CniSetup,
        netns: Option<&crate::netns::Netns>,
        shared_root: bool,
    ) -> Result<Self> {
        require_tools()?;
        let dir = tempfile::Builder::new().prefix("multus-ctrd-").tempdir()?;
        for d in ["root", "state", "net.d", "bin", "pods", "opt"] {
            fs::create_dir_all(dir.path().join(d))?;
        }
        for (name, bytes) in &cni.confs {
            fs::write(dir.path().join("net.d").join(name), bytes)?;
        }
        for (name, target) in &cni.plugins {
            std::os::unix::fs::symlink(target, dir.path().join("bin").join(name))
                .with_context(|| format!("linking CNI plugin {name}"))?;
        }
        let config = dir.path().join("config.toml");
        fs::write(&config, config_toml(dir.path()))?;
        let log = fs::File::create(dir.path().join("containerd.log"))?;
        let mut cmd = command(netns, shared_root);
        cmd.arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        // Last before the spawn: from here on a failure must unmount it (the drop does later).
        let netns_dir = dir.path().join(NETNS_DIR);
        share_netns_dir(&netns_dir)?;
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = nix::mount::umount2(&netns_dir, nix::mount::MntFlags::MNT_DETACH);
                return Err(anyhow::Error::from(e).context("spawning containerd"));
            }
        };
        let socket = dir.path().join("containerd.sock");
        // The lazy channel spawns its worker on the runtime.
        let client = {
            let _in_runtime = rt.enter();
            connect(socket)
        };
        let mut c = Self {
            child: Some(child),
            dir,
            rt,
            client,
        };
        c.wait_ready()?;
        c.import_pause_image()?;
        Ok(c)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// containerd's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// The CNI conf dir containerd's CRI plugin loads (and watches).
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    /// The CNI bin dir containerd's CRI plugin runs plugins from.
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// A CRI client, for calls this fixture has no helper for; run them with
    /// [`Containerd::block_on`].
    pub fn client(&self) -> RuntimeServiceClient<Channel> {
        self.client.clone()
    }

    /// Runs `future` (a CRI call) on the fixture's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// Where the CRI plugin creates the sandboxes' network namespaces.
    pub fn netns_dir(&self) -> PathBuf {
        self.dir.path().join(NETNS_DIR)
    }

    /// The network namespaces of this containerd that still exist.
    pub fn netns_left(&self) -> Result<Vec<String>> {
        let dir = self.netns_dir();
        if !dir.exists() {
            return Ok(Vec::new());
        }
        Ok(fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect())
    }

    /// Polls CRI `Status` until RuntimeReady and NetworkReady (the CNI conf loaded) hold.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("containerd exited with {status}:\n{}", self.log_text());
            }
            let mut client = self.client.clone();
            match self
                .rt
                .block_on(client.status(cri::StatusRequest { verbose: false }))
            {
                Ok(resp) => {
                    let conditions = resp
                        .into_inner()
                        .status
                        .map(|s| s.conditions)
                        .unwrap_or_default();
                    if !conditions.is_empty() && conditions.iter().all(|c| c.status) {
                        return Ok(());
                    }
                    last = format!("{conditions:?}");
                }
                Err(e) => last = e.to_string(),
            }
            thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "containerd not ready in {READY_TIMEOUT:?} (last: {last}):\n{}",
            self.log_text()
        )
    }

    fn import_pause_image(&self) -> Result<()> {
        let archive = self.dir.path().join("pause.tar");
        oci::write_archive(&oci::pause_image(PAUSE_IMAGE), &archive)?;
        self.import(&archive)
    }

    /// `ctr images import` of an OCI layout archive into the CRI plugin's namespace, unpacked
    /// for the native snapshotter the CRI plugin uses.
    pub fn import(&self, archive: &Path) -> Result<()> {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", K8S_NAMESPACE, "images", "import"])
            .args(["--snapshotter", "native"])
            .arg(archive)
            .output()
            .context("running ctr images import")?;
        if !out.status.success() {
            bail!(
                "ctr images import {}: {}",
                archive.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// A sandbox config as the kubelet sends it for pod `namespace/name` with `uid`, carrying
    /// the pod's annotations.
    pub fn sandbox_config(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        annotations: &HashMap<String, String>,
    ) -> PodSandboxConfig {
        let log_directory = self.dir.path().join("pods").join(uid);
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_directory.to_string_lossy().into_owned(),
            labels: HashMap::from([
                ("io.kubernetes.pod.name".into(), name.into()),
                ("io.kubernetes.pod.namespace".into(), namespace.into()),
                ("io.kubernetes.pod.uid".into(), uid.into()),
            ]),
            annotations: annotations.clone(),
            linux: Some(cri::LinuxPodSandboxConfig::default()),
            ..Default::default()
        }
    }

    /// `RunPodSandbox`; the sandbox id, or containerd's error status.
    pub fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String, tonic::Status> {
        let mut client = self.client.clone();
        self.rt.block_on(run_sandbox(&mut client, config))
    }

    /// `RunPodSandbox` for every config at once, as a kubelet starting many pods does; the
    /// results in the order of `configs`, each with the time the call took.
    pub fn run_pod_sandboxes(
        &self,
        configs: Vec<PodSandboxConfig>,
    ) -> Vec<(Result<String, tonic::Status>, Duration)> {
        let tasks: Vec<_> = configs
            .into_iter()
            .map(|config| {
                let mut client = self.client.clone();
                self.rt.spawn(async move {
                    let started = Instant::now();
                    let result = run_sandbox(&mut client, config).await;
                    (result, started.elapsed())
                })
            })
            .collect();
        self.rt.block_on(async {
            let mut out = Vec::with_capacity(tasks.len());
            for task in tasks {
                out.push(task.await.unwrap_or_else(|e| {
                    (
                        Err(tonic::Status::internal(format!("task: {e}"))),
                        Duration::ZERO,
                    )
                }));
            }
            out
        })
    }

    /// `PodSandboxStatus` (verbose, so the info carries the netns path).
    pub fn status(&self, id: &str) -> Result<cri::PodSandboxStatusResponse> {
        let mut client = self.client.clone();
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        };
        Ok(self
            .rt
            .block_on(client.pod_sandbox_status(req))
            .with_context(|| format!("PodSandboxStatus {id}"))?
            .into_inner())
    }

    /// The IP the runtime reports for the sandbox (what the kubelet puts in `status.podIP`).
    pub fn pod_ip(&self, id: &str) -> Result<String> {
        self.status(id)?
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .context("PodSandboxStatus has no network status")
    }

    /// The sandbox's network namespace path, from the verbose status info: the network
    /// namespace of the OCI runtime spec containerd started the sandbox with.
    pub fn netns_path(&self, id: &str) -> Result<PathBuf> {
        let info = self.status(id)?.info;
        let text = info
            .get("info")
            .context("PodSandboxStatus has no verbose info")?;
        let v: Value = serde_json::from_str(text).context("verbose info is not JSON")?;
        v.pointer("/runtimeSpec/linux/namespaces")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|ns| ns["type"] == "network")
            .and_then(|ns| ns["path"].as_str())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .with_context(|| format!("no network namespace path in the sandbox info: {text}"))
    }

    /// `StopPodSandbox` (tears the network down through CNI DEL and deletes the namespace).
    pub fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut client = self.client.clone();
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt
            .block_on(client.stop_pod_sandbox(req))
            .with_context(|| format!("StopPodSandbox {id}"))?;
        Ok(())
    }

    /// `RemovePodSandbox`.
    pub fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut client = self.client.clone();
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt
            .block_on(client.remove_pod_sandbox(req))
            .with_context(|| format!("RemovePodSandbox {id}"))?;
        Ok(())
    }

    /// Stop then remove every id at once; the first failure, after all were tried.
    pub fn stop_and_remove_all(&self, ids: &[String]) -> Result<()> {
        let tasks: Vec<_> = ids
            .iter()
            .map(|id| {
                let mut client = self.client.clone();
                let id = id.clone();
                self.rt.spawn(async move {
                    let pod_sandbox_id = id.clone();
                    client
                        .stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id })
                        .await
                        .map_err(|e| anyhow::anyhow!("StopPodSandbox {id}: {e}"))?;
                    let pod_sandbox_id = id.clone();
                    client
                        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id })
                        .await
                        .map_err(|e| anyhow::anyhow!("RemovePodSandbox {id}: {e}"))?;
                    anyhow::Ok(())
                })
            })
            .collect();
        self.rt.block_on(async {
            let mut first = Ok(());
            for task in tasks {
                let r = task.await.map_err(anyhow::Error::from).and_then(|r| r);
                if first.is_ok() {
                    first = r;
                }
            }
            first
        })
    }

    /// The ids of every sandbox containerd knows, ready or not.
    pub fn sandboxes(&self) -> Result<Vec<String>> {
        let mut client = self.client.clone();
        let resp = self
            .rt
            .block_on(client.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }))
            .context("ListPodSandbox")?;
        Ok(resp.into_inner().items.into_iter().map(|s| s.id).collect())
    }

    /// SIGTERM by PID, then wait (SIGKILL after 15 s).
    fn stop_process(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `containerd`, behind `nsenter --net` for `netns` and `unshare --mount` with `/` made shared
/// for `shared_root`. Each step execs the next, so the child's PID is containerd's.
fn command(netns: Option<&crate::netns::Netns>, shared_root: bool) -> Command {
    let mut argv: Vec<String> = Vec::new();
    if let Some(ns) = netns {
        argv.extend(["nsenter".into(), format!("--net={}", ns.path())]);
    }
    if shared_root {
        argv.extend(
            [
                "unshare",
                "--mount",
                "--propagation",
                "unchanged",
                "sh",
                "-c",
                r#"mount --make-shared / && exec "$@""#,
                "containerd-node",
            ]
            .map(String::from),
        );
    }
    argv.push("containerd".into());
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd
}

/// Bind-mounts `dir` onto itself and marks it shared, so namespace mounts made in it later
/// propagate to mount namespaces copied from this one (their copy is a slave of it).
fn share_netns_dir(dir: &Path) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    fs::create_dir_all(dir)?;
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .with_context(|| format!("bind-mounting {}", dir.display()))?;
    if let Err(e) = mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    ) {
        let _ = nix::mount::umount2(dir, nix::mount::MntFlags::MNT_DETACH);
        bail!("making {} a shared mount: {e}", dir.display());
    }
    Ok(())
}

async fn run_sandbox(
    client: &mut RuntimeServiceClient<Channel>,
    config: PodSandboxConfig,
) -> Result<String, tonic::Status> {
    let req = cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    };
    Ok(client
        .run_pod_sandbox(req)
        .await?
        .into_inner()
        .pod_sandbox_id)
}

/// A channel over containerd's unix socket, dialled on first use (and on every reconnect);
/// [`Containerd::wait_ready`] polls through it until containerd serves.
fn connect(socket: PathBuf) -> RuntimeServiceClient<Channel> {
    let channel = multus_proto::channel::unix_lazy(&socket, Duration::from_secs(5), CRI_TIMEOUT);
    RuntimeServiceClient::new(channel)
}

/// containerd's config: everything under `dir`, plugins the suite does not use disabled, the
/// CRI plugin on the native snapshotter with the suite's pause image and CNI dirs.
fn config_toml(dir: &Path) -> String {
    let p = |n: &str| format!("{:?}", dir.join(n).to_string_lossy());
    format!(
        r#"version = 2
root = {root}
state = {state}
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = {sock}

[ttrpc]
  address = {ttrpc}

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # The kernel refuses a lower oom_score_adj than containerd's own on these machines.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = {runc}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {bin}
    conf_dir = {conf}
    max_conf_num = 1
"#,
        root = p("root"),
        state = p("state"),
        sock = p("containerd.sock"),
        ttrpc = p("containerd.sock.ttrpc"),
        opt = p("opt"),
        runc = p("runc"),
        bin = p("bin"),
        conf = p("net.d"),
    )
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Sandboxes a failed test left behind: stopping them deletes their namespaces.
        if let Ok(ids) = self.sandboxes()
            && let Err(e) = self.stop_and_remove_all(&ids)
        {
            eprintln!("cleanup: {e}");
        }
        self.stop_process();
        let netns = self.netns_dir();
        if let Err(e) = nix::mount::umount2(&netns, nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("cleanup: unmounting {}: {e}", netns.display());
        }
        if thread::panicking() {
            eprintln!(
                "--- containerd log ({}) ---\n{}",
                self.dir.path().join("containerd.log").display(),
                self.log_text()
            );
        }
    }
}
