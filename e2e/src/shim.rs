//! Runs the real `multus-shim` exactly as a container runtime does: CNI_* env, config on stdin.
use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::bins;

/// One CNI invocation of the shim.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub command: String,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
    pub cni_path: String,
    pub stdin: Vec<u8>,
    /// Extra environment, or variables to remove (value `None`).
    pub env: Vec<(String, Option<String>)>,
    /// Extra environment that need not be UTF-8 (a runtime's env is bytes), set last.
    pub env_os: Vec<(std::ffi::OsString, std::ffi::OsString)>,
}

/// What the shim printed and how it exited.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout as JSON (the CNI result or error object).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or(Value::Null)
    }

    /// The CNI error code printed on stdout, if the output is an error object.
    pub fn cni_code(&self) -> Option<u64> {
        self.json().get("code").and_then(Value::as_u64)
    }
}

/// The multus config a runtime would pass (what `00-multus.conf` holds).
pub fn multus_conf(cni_version: &str, socket_dir: &Path) -> Vec<u8> {
    json!({
        "cniVersion": cni_version, "name": "multus-cni-network", "type": "multus-shim",
        "daemonSocketDir": socket_dir,
    })
    .to_string()
    .into_bytes()
}

/// CNI_ARGS as kubelet/CRI runtimes set them for a pod.
pub fn k8s_args(namespace: &str, pod: &str, uid: &str, container_id: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}"
    )
}

impl Invocation {
    pub fn new(
        command: &str,
        container_id: &str,
        netns: &str,
        args: String,
        stdin: Vec<u8>,
    ) -> Self {
        Self {
            command: command.into(),
            container_id: container_id.into(),
            netns: netns.into(),
            ifname: "eth0".into(),
            args,
            cni_path: crate::CNI_BIN_DIR.into(),
            stdin,
            env: Vec::new(),
            env_os: Vec::new(),
        }
    }

    /// The same invocation with another verb.
    pub fn with_command(&self, command: &str) -> Self {
        Self {
            command: command.into(),
            ..self.clone()
        }
    }

    /// Runs the shim and collects its output.
    pub fn run(&self) -> Result<Output> {
        self.run_command(Command::new(bins::shim()?))
    }

    /// Runs the shim as [`Invocation::run`], in a private mount namespace where the shim's
    /// default socket dir `/run/multus` is `socket_dir`: for a stdin without
    /// `daemonSocketDir`, as upstream's generated 00-multus.conf, on a node whose daemon
    /// listens in a test dir. A tmpfs goes over `/run` first, so nothing appears on the host.
    pub fn run_with_default_socket_dir(&self, socket_dir: &Path) -> Result<Output> {
        anyhow::ensure!(
            !socket_dir.starts_with("/run"),
            "socket dir {} is under /run, which the shim's mount namespace covers",
            socket_dir.display()
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount -t tmpfs tmpfs /run && mkdir -p /run/multus \
                 && mount --bind \"$1\" /run/multus && exec \"$2\"",
            )
            .arg("sh")
            .arg(socket_dir)
            .arg(bins::shim()?);
        self.run_command(cmd)
    }

    fn run_command(&self, mut cmd: Command) -> Result<Output> {
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_COMMAND", &self.command)
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_NETNS", &self.netns)
            .env("CNI_IFNAME", &self.ifname)
            .env("CNI_ARGS", &self.args)
            .env("CNI_PATH", &self.cni_path);
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.envs(self.env_os.iter().map(|(k, v)| (k, v)));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // The shim may exit without reading stdin (VERSION, early env errors); a runtime
            // ignores the broken pipe, as Go's exec does in libcni.
            match stdin.write_all(&self.stdin) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
        }
        let out = child.wait_with_output()?;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
