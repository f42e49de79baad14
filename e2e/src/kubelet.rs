//! A kubelet for one pod: the pod template of a rendered DaemonSet run on the test containerd
//! over CRI, mapped as the kubelet maps it. `hostNetwork`/`hostPID` become NamespaceMode NODE,
//! `volumes` become bind mounts of host directories (hostPath as rendered; configMap and emptyDir
//! as directories the kubelet would make), `securityContext` becomes the CRI security context
//! (capabilities, privileged, read-only root, seccomp, no_new_privs), init containers run to
//! completion in order before the containers start, and exec probes run through `ExecSync`.
//! A field the mapping does not know is an error naming it, so a chart change that a real
//! kubelet would act on cannot pass here unnoticed.
use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use multus_proto::cri::v1 as cri;
use serde_json::Value;

use crate::containerd::Containerd;

/// Pod spec fields that change nothing on the node (scheduling, API-side) and are not mapped.
const POD_FIELDS_IGNORED: &[&str] = &[
    "serviceAccountName",
    "dnsPolicy",
    "priorityClassName",
    "terminationGracePeriodSeconds",
    "nodeSelector",
    "affinity",
    "tolerations",
    "imagePullSecrets",
];

/// Container fields not mapped: the image is present (pull policy), ports of a host-network
/// pod are informational, the termination message is the kubelet's own bookkeeping.
const CONTAINER_FIELDS_IGNORED: &[&str] = &[
    "name",
    "image",
    "imagePullPolicy",
    "ports",
    "terminationMessagePolicy",
];

/// How long an init container may take to complete.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);

/// What the node gives the pod besides the template.
#[derive(Debug, Clone)]
pub struct Node {
    /// `spec.nodeName` (for `fieldRef: spec.nodeName`).
    pub name: String,
    /// The ConfigMaps the chart rendered, for `configMap` volumes.
    pub config_maps: Vec<Value>,
    /// hostPath volumes of type `DirectoryOrCreate` are created only below these (the test's
    /// temp dirs), never elsewhere on the machine.
    pub creatable_roots: Vec<PathBuf>,
    /// Where configMap and emptyDir volumes are materialised.
    pub scratch: PathBuf,
}

/// One container of the pod, mapped.
#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub config: cri::ContainerConfig,
    /// Exec probes by kind (`startupProbe`, `readinessProbe`, `livenessProbe`).
    pub probes: BTreeMap<String, Probe>,
}

/// An exec probe.
#[derive(Debug, Clone)]
pub struct Probe {
    pub command: Vec<String>,
    pub timeout: Duration,
    /// How long the kubelet keeps trying (periodSeconds x failureThreshold).
    pub budget: Duration,
}

/// The pod template, mapped to CRI.
#[derive(Debug, Clone)]
pub struct PodPlan {
    pub sandbox: cri::PodSandboxConfig,
    pub init: Vec<Container>,
    pub containers: Vec<Container>,
}

/// Maps the pod template of `daemonset` for `node`.
pub fn plan(containerd: &Containerd, daemonset: &Value, node: &Node) -> Result<PodPlan> {
    let template = &daemonset["spec"]["template"];
    let spec = &template["spec"];
    let known: Vec<&str> = POD_FIELDS_IGNORED
        .iter()
        .copied()
        .chain([
            "hostNetwork",
            "hostPID",
            "hostIPC",
            "securityContext",
            "initContainers",
            "containers",
            "volumes",
        ])
        .collect();
    refuse_unknown(spec, &known, "pod spec")?;
    let namespaces = cri::NamespaceOption {
        network: mode(spec, "hostNetwork"),
        pid: mode(spec, "hostPID"),
        ipc: mode(spec, "hostIPC"),
        ..Default::default()
    };
    let pod_security = PodSecurity::read(&spec["securityContext"])?;
    let name = daemonset["metadata"]["name"]
        .as_str()
        .context("the DaemonSet has no name")?;
    let namespace = daemonset["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let pod_name = format!("{name}-{}", node.name);
    let mut sandbox = containerd.sandbox_config(
        namespace,
        &pod_name,
        &format!("uid-{pod_name}"),
        &annotations(template),
    );
    if spec["hostNetwork"].as_bool() == Some(true) {
        // The kubelet sets no hostname for a host-network pod: it has the node's UTS namespace.
        sandbox.hostname.clear();
    }
    sandbox.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(namespaces.clone()),
            seccomp: pod_security.seccomp.clone(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let volumes = volumes(spec, node)?;
    let map = |list: &Value| -> Result<Vec<Container>> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                container(
                    c,
                    &volumes,
                    namespaces.clone(),
                    &pod_security,
                    node,
                    &pod_name,
                )
            })
            .collect()
    };
    Ok(PodPlan {
        sandbox,
        init: map(&spec["initContainers"])?,
        containers: map(&spec["containers"])?,
    })
}

fn annotations(template: &Value) -> HashMap<String, String> {
    template["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

fn mode(spec: &Value, field: &str) -> i32 {
    if spec[field].as_bool() == Some(true) {
        cri::NamespaceMode::Node as i32
    } else {
        cri::NamespaceMode::Pod as i32
    }
}

fn refuse_unknown(object: &Value, known: &[&str], what: &str) -> Result<()> {
    for key in object.as_object().into_iter().flatten().map(|(k, _)| k) {
        ensure!(
            known.contains(&key.as_str()),
            "{what} field `{key}` is not mapped to CRI by e2e/src/kubelet.rs"
        );
    }
    Ok(())
}

/// Pod-level security defaults the containers inherit.
#[derive(Debug, Clone, Default)]
struct PodSecurity {
    seccomp: Option<cri::SecurityProfile>,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
}

impl PodSecurity {
    fn read(ctx: &Value) -> Result<Self> {
        refuse_unknown(
            ctx,
            &["seccompProfile", "runAsUser", "runAsGroup"],
            "pod securityContext",
        )?;
        Ok(Self {
            seccomp: seccomp(&ctx["seccompProfile"])?,
            run_as_user: ctx["runAsUser"].as_i64(),
            run_as_group: ctx["runAsGroup"].as_i64(),
        })
    }
}

fn seccomp(profile: &Value) -> Result<Option<cri::SecurityProfile>> {
    use cri::security_profile::ProfileType;
    let kind = match profile["type"].as_str() {
        None => return Ok(None),
        Some("RuntimeDefault") => ProfileType::RuntimeDefault,
        Some("Unconfined") => ProfileType::Unconfined,
        Some(other) => bail!("seccompProfile type {other} is not mapped"),
    };
    Ok(Some(cri::SecurityProfile {
        profile_type: kind as i32,
        localhost_ref: String::new(),
    }))
}

/// A volume as the host directory (or file) the kubelet bind-mounts.
#[derive(Debug, Clone)]
struct Volume {
    host_path: PathBuf,
}

fn volumes(spec: &Value, node: &Node) -> Result<HashMap<String, Volume>> {
    let mut out = HashMap::new();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().context("a volume without a name")?;
        let host_path = if let Some(hp) = v.get("hostPath") {
            host_path(hp, node).with_context(|| format!("volume {name}"))?
        } else if let Some(cm) = v.get("configMap") {
            config_map(cm, name, node)?
        } else if v.get("emptyDir").is_some() {
            let dir = node.scratch.join(format!("empty-{name}"));
            fs::create_dir_all(&dir)?;
            dir
        } else {
            bail!("volume {name}: only hostPath, configMap and emptyDir are mapped: {v}");
        };
        out.insert(name.to_owned(), Volume { host_path });
    }
    Ok(out)
}

fn host_path(hp: &Value, node: &Node) -> Result<PathBuf> {
    let path = PathBuf::from(hp["path"].as_str().context("hostPath without a path")?);
    match hp["type"].as_str().unwrap_or("") {
        "DirectoryOrCreate" => {
            if !path.is_dir() {
                ensure!(
                    node.creatable_roots.iter().any(|r| path.starts_with(r)),
                    "hostPath {} does not exist and is outside the test's dirs {:?}: point the chart value at a test dir",
                    path.display(),
                    node.creatable_roots
                );
                fs::create_dir_all(&path)?;
            }
        }
        "Directory" => ensure!(path.is_dir(), "hostPath {} is no directory", path.display()),
        "File" => ensure!(path.is_file(), "hostPath {} is no file", path.display()),
        "" => ensure!(path.exists(), "hostPath {} does not exist", path.display()),
        other => bail!("hostPath type {other} is not mapped"),
    }
    Ok(path)
}

/// The ConfigMap's `data` as files, as the kubelet projects them.
fn config_map(cm: &Value, volume: &str, node: &Node) -> Result<PathBuf> {
    let name = cm["name"]
        .as_str()
        .context("configMap volume without a name")?;
    let object = node
        .config_maps
        .iter()
        .find(|o| o["metadata"]["name"] == name)
        .with_context(|| format!("volume {volume}: ConfigMap {name} was not rendered"))?;
    let dir = node.scratch.join(format!("configmap-{volume}"));
    fs::create_dir_all(&dir)?;
    for (file, text) in object["data"].as_object().into_iter().flatten() {
        let text = text
            .as_str()
            .with_context(|| format!("ConfigMap {name} key {file}"))?;
        fs::write(dir.join(file), text)?;
    }
    Ok(dir)
}

fn container(
    c: &Value,
    volumes: &HashMap<String, Volume>,
    namespaces: cri::NamespaceOption,
    pod: &PodSecurity,
    node: &Node,
    pod_name: &str,
) -> Result<Container> {
    let name = c["name"].as_str().context("a container without a name")?;
    let known: Vec<&str> = CONTAINER_FIELDS_IGNORED
        .iter()
        .copied()
        .chain([
            "command",
            "args",
            "workingDir",
            "env",
            "resources",
            "securityContext",
            "volumeMounts",
            "startupProbe",
            "readinessProbe",
            "livenessProbe",
        ])
        .collect();
    refuse_unknown(c, &known, &format!("container {name}"))?;
    let image = c["image"]
        .as_str()
        .with_context(|| format!("container {name} has no image"))?;
    let mut probes = BTreeMap::new();
    for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
        if let Some(p) = c.get(kind) {
            probes.insert(
                kind.to_owned(),
                probe(p).with_context(|| format!("{name} {kind}"))?,
            );
        }
    }
    let config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        command: strings(&c["command"])?,
        args: strings(&c["args"])?,
        working_dir: c["workingDir"].as_str().unwrap_or_default().to_owned(),
        envs: envs(&c["env"], node, pod_name)?,
        mounts: mounts(&c["volumeMounts"], volumes)?,
        log_path: format!("{name}/0.log"),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources(&c["resources"])?),
            security_context: Some(security(&c["securityContext"], namespaces, pod)?),
        }),
        ..Default::default()
    };
    Ok(Container {
        name: name.to_owned(),
        config,
        probes,
    })
}

fn strings(v: &Value) -> Result<Vec<String>> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            // Kubernetes takes numbers in command/args only as strings; so does this.
            s.as_str()
                .map(str::to_owned)
                .with_context(|| format!("{s} is not a string"))
        })
        .collect()
}

fn envs(list: &Value, node: &Node, pod_name: &str) -> Result<Vec<cri::KeyValue>> {
    let mut out = Vec::new();
    for e in list.as_array().into_iter().flatten() {
        let key = e["name"].as_str().context("env without a name")?.to_owned();
        let value = if let Some(v) = e.get("value") {
            v.as_str().unwrap_or_default().to_owned()
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match path {
                "spec.nodeName" => node.name.clone(),
                "metadata.name" => pod_name.to_owned(),
                other => bail!("env {key}: fieldRef {other} is not mapped"),
            }
        } else {
            bail!("env {key}: only value and valueFrom.fieldRef are mapped: {e}");
        };
        out.push(cri::KeyValue {
            key,
            value: value.into_bytes(),
        });
    }
    Ok(out)
}

fn mounts(list: &Value, volumes: &HashMap<String, Volume>) -> Result<Vec<cri::Mount>> {
    let mut out = Vec::new();
    for m in list.as_array().into_iter().flatten() {
        refuse_unknown(
            m,
            &["name", "mountPath", "readOnly", "mountPropagation"],
            "volumeMount",
        )?;
        let name = m["name"].as_str().context("volumeMount without a name")?;
        let volume = volumes
            .get(name)
            .with_context(|| format!("volumeMount of undeclared volume {name}"))?;
        let propagation = match m["mountPropagation"].as_str() {
            None | Some("None") => cri::MountPropagation::PropagationPrivate,
            Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
            Some(other) => bail!("mountPropagation {other} is not mapped"),
        };
        out.push(cri::Mount {
            container_path: m["mountPath"]
                .as_str()
                .context("volumeMount without mountPath")?
                .to_owned(),
            host_path: volume.host_path.to_string_lossy().into_owned(),
            readonly: m["readOnly"].as_bool().unwrap_or(false),
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    Ok(out)
}

fn resources(r: &Value) -> Result<cri::LinuxContainerResources> {
    let mut out = cri::LinuxContainerResources::default();
    if let Some(q) = r["limits"]["memory"].as_str() {
        out.memory_limit_in_bytes = quantity_milli(q)? / 1000;
    }
    // The kubelet's cpu.shares from the request (1 CPU = 1024 shares, at least 2).
    if let Some(q) = r["requests"]["cpu"].as_str() {
        out.cpu_shares = (quantity_milli(q)? * 1024 / 1_000_000).max(2);
    }
    if let Some(q) = r["limits"]["cpu"].as_str() {
        out.cpu_period = 100_000;
        out.cpu_quota = quantity_milli(q)? * 100_000 / 1_000_000;
    }
    Ok(out)
}

/// A Kubernetes quantity in thousandths of its unit ("50m" -> 50, "360Mi" -> 360 * 2^20 * 1000).
pub fn quantity_milli(q: &str) -> Result<i64> {
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number
        .parse()
        .with_context(|| format!("quantity {q}: no number"))?;
    let factor: f64 = match suffix {
        "" => 1000.0,
        "m" => 1.0,
        "k" => 1e6,
        "M" => 1e9,
        "G" => 1e12,
        "Ki" => 1024.0 * 1000.0,
        "Mi" => 1_048_576.0 * 1000.0,
        "Gi" => 1_073_741_824.0 * 1000.0,
        other => bail!("quantity {q}: suffix {other} is not mapped"),
    };
    #[allow(clippy::cast_possible_truncation)]
    Ok((number * factor).round() as i64)
}

fn security(
    ctx: &Value,
    namespaces: cri::NamespaceOption,
    pod: &PodSecurity,
) -> Result<cri::LinuxContainerSecurityContext> {
    refuse_unknown(
        ctx,
        &[
            "privileged",
            "allowPrivilegeEscalation",
            "readOnlyRootFilesystem",
            "capabilities",
            "seccompProfile",
            "runAsUser",
            "runAsGroup",
        ],
        "container securityContext",
    )?;
    let caps = &ctx["capabilities"];
    refuse_unknown(caps, &["add", "drop"], "capabilities")?;
    let privileged = ctx["privileged"].as_bool().unwrap_or(false);
    let seccomp = match seccomp(&ctx["seccompProfile"])? {
        Some(p) => Some(p),
        None => pod.seccomp.clone(),
    };
    Ok(cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: strings(&caps["add"])?,
            drop_capabilities: strings(&caps["drop"])?,
            add_ambient_capabilities: Vec::new(),
        }),
        privileged,
        namespace_options: Some(namespaces),
        run_as_user: ctx["runAsUser"]
            .as_i64()
            .or(pod.run_as_user)
            .map(|value| cri::Int64Value { value }),
        run_as_group: ctx["runAsGroup"]
            .as_i64()
            .or(pod.run_as_group)
            .map(|value| cri::Int64Value { value }),
        readonly_rootfs: ctx["readOnlyRootFilesystem"].as_bool().unwrap_or(false),
        // The kubelet sets no_new_privs unless escalation is allowed (or privileged).
        no_new_privs: ctx["allowPrivilegeEscalation"].as_bool() == Some(false),
        seccomp,
        ..Default::default()
    })
}

fn probe(p: &Value) -> Result<Probe> {
    let command = strings(&p["exec"]["command"])?;
    ensure!(!command.is_empty(), "only exec probes are mapped: {p}");
    let secs = |k: &str, default: u64| p[k].as_u64().unwrap_or(default);
    Ok(Probe {
        command,
        timeout: Duration::from_secs(secs("timeoutSeconds", 1)),
        budget: Duration::from_secs(secs("periodSeconds", 10) * secs("failureThreshold", 3)),
    })
}

/// The pod running: its sandbox and containers, in the test containerd.
pub struct RunningPod<'a> {
    containerd: &'a Containerd,
    pub sandbox_id: String,
    pub plan: PodPlan,
    /// Container name -> id.
    pub ids: BTreeMap<String, String>,
}

impl std::fmt::Debug for RunningPod<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningPod")
            .field("sandbox_id", &self.sandbox_id)
            .field("ids", &self.ids)
            .finish_non_exhaustive()
    }
}

impl<'a> RunningPod<'a> {
    /// RunPodSandbox, each init container to exit 0, then every container started.
    pub fn start(containerd: &'a Containerd, plan: PodPlan) -> Result<Self> {
        let sandbox_id = containerd
            .run_pod_sandbox(plan.sandbox.clone())
            .map_err(|e| anyhow::anyhow!("RunPodSandbox of the DaemonSet pod: {}", e.message()))?;
        let mut pod = Self {
            containerd,
            sandbox_id,
            plan,
            ids: BTreeMap::new(),
        };
        for c in pod.plan.init.clone() {
            let id = pod.create_and_start(&c)?;
            pod.wait_exit_ok(&c.name, &id)?;
        }
        for c in pod.plan.containers.clone() {
            pod.create_and_start(&c)?;
        }
        Ok(pod)
    }

    fn create_and_start(&mut self, c: &Container) -> Result<String> {
        let mut client = self.containerd.client();
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: self.sandbox_id.clone(),
            config: Some(c.config.clone()),
            sandbox_config: Some(self.plan.sandbox.clone()),
        };
        let id = self
            .containerd
            .block_on(client.create_container(req))
            .map_err(|e| anyhow::anyhow!("CreateContainer {}: {}", c.name, e.message()))?
            .into_inner()
            .container_id;
        self.ids.insert(c.name.clone(), id.clone());
        let req = cri::StartContainerRequest {
            container_id: id.clone(),
        };
        self.containerd
            .block_on(client.start_container(req))
            .map_err(|e| {
                anyhow::anyhow!(
                    "StartContainer {}: {}\n{}",
                    c.name,
                    e.message(),
                    self.logs(&c.name)
                )
            })?;
        Ok(id)
    }

    /// The container's state and exit code.
    pub fn state(&self, id: &str) -> Result<(cri::ContainerState, i32)> {
        let mut client = self.containerd.client();
        let status = self
            .containerd
            .block_on(client.container_status(cri::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            }))
            .with_context(|| format!("ContainerStatus {id}"))?
            .into_inner()
            .status
            .context("ContainerStatus without a status")?;
        Ok((status.state(), status.exit_code))
    }

    fn wait_exit_ok(&self, name: &str, id: &str) -> Result<()> {
        let deadline = Instant::now() + INIT_TIMEOUT;
        while Instant::now() < deadline {
            let (state, code) = self.state(id)?;
            if state == cri::ContainerState::ContainerExited {
                ensure!(
                    code == 0,
                    "init container {name} exited with {code}:\n{}",
                    self.logs(name)
                );
                return Ok(());
            }
            thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "init container {name} still running after {INIT_TIMEOUT:?}:\n{}",
            self.logs(name)
        )
    }

    /// The container's log as containerd wrote it (CRI log format, one line per write).
    pub fn logs(&self, name: &str) -> String {
        let path = Path::new(&self.plan.sandbox.log_directory).join(format!("{name}/0.log"));
        fs::read_to_string(&path).unwrap_or_else(|e| format!("(no log at {}: {e})", path.display()))
    }

    /// `ExecSync` of `cmd` in container `name`: exit code, stdout, stderr.
    pub fn exec(&self, name: &str, cmd: &[String], timeout: Duration) -> Result<(i32, String)> {
        let id = self
            .ids
            .get(name)
            .with_context(|| format!("no container {name}"))?;
        let mut client = self.containerd.client();
        let resp = self
            .containerd
            .block_on(client.exec_sync(cri::ExecSyncRequest {
                container_id: id.clone(),
                cmd: cmd.to_vec(),
                timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            }))
            .map_err(|e| anyhow::anyhow!("ExecSync {cmd:?} in {name}: {}", e.message()))?
            .into_inner();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&resp.stdout),
            String::from_utf8_lossy(&resp.stderr)
        );
        Ok((resp.exit_code, output))
    }

    /// Runs container `name`'s probe `kind` until it succeeds, within the kubelet's budget for
    /// it; how long that took.
    pub fn wait_probe(&self, name: &str, kind: &str) -> Result<Duration> {
        let container = self
            .plan
            .containers
            .iter()
            .find(|c| c.name == name)
            .with_context(|| format!("no container {name}"))?;
        let probe = container
            .probes
            .get(kind)
            .with_context(|| format!("container {name} has no {kind}"))?;
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < probe.budget {
            let id = &self.ids[name];
            let (state, code) = self.state(id)?;
            if state == cri::ContainerState::ContainerExited {
                bail!(
                    "container {name} exited with {code} before its {kind} passed:\n{}",
                    self.logs(name)
                );
            }
            match self.exec(name, &probe.command, probe.timeout) {
                Ok((0, _)) => return Ok(started.elapsed()),
                Ok((code, out)) => last = format!("exit {code}: {out}"),
                Err(e) => last = format!("{e:#}"),
            }
            thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "{kind} of {name} did not pass in {:?} (last: {last}):\n{}",
            probe.budget,
            self.logs(name)
        )
    }

    /// StopContainer with the pod's grace period, as the kubelet deletes a pod: SIGTERM first.
    pub fn stop(&self, name: &str, grace: Duration) -> Result<()> {
        let id = self
            .ids
            .get(name)
            .with_context(|| format!("no container {name}"))?;
        let mut client = self.containerd.client();
        self.containerd
            .block_on(client.stop_container(cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: i64::try_from(grace.as_secs()).unwrap_or(30),
            }))
            .with_context(|| format!("StopContainer {name}"))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity_milli("50m").unwrap(), 50);
        assert_eq!(quantity_milli("1").unwrap(), 1000);
        assert_eq!(quantity_milli("0.5").unwrap(), 500);
        assert_eq!(quantity_milli("360Mi").unwrap() / 1000, 360 << 20);
        assert!(quantity_milli("3x").is_err());
    }
}
