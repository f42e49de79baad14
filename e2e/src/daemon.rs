//! A real `multus-daemon` process run inside a "node" network namespace, so the bridges and
//! veth parents its delegates create live in a namespace the test owns, never on the host.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::{Map, Value, json};
use tempfile::TempDir;

use crate::{bins, netns::Netns};

/// The directories a daemon under test uses, all inside one tempdir.
#[derive(Debug)]
pub struct Layout {
    root: TempDir,
}

impl Layout {
    pub fn new() -> Result<Self> {
        let root = tempfile::Builder::new().prefix("multus-e2e-").tempdir()?;
        for d in ["sock", "cni", "conf", "state", "status", "ipam", "net.d"] {
            fs::create_dir_all(root.path().join(d))?;
        }
        Ok(Self { root })
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The daemon config for this layout: standalone mode over `state/`, real plugins.
    pub fn config(&self, cluster_network: &str) -> Map<String, Value> {
        let d = |n: &str| json!(self.dir(n));
        let v = json!({
            "socketDir": d("sock"), "cniDir": d("cni"), "confDir": d("conf"),
            "binDir": crate::CNI_BIN_DIR, "clusterNetwork": cluster_network,
            "clusterStateDir": d("state"), "networkStatusDir": d("status"),
            "logToStderr": true, "logLevel": "debug",
        });
        v.as_object().cloned().unwrap_or_default()
    }

    /// Writes a manifest (Pod or NAD, as JSON) into the standalone cluster state.
    pub fn put_manifest(&self, file: &str, manifest: &Value) -> Result<()> {
        fs::write(
            self.dir("state").join(file),
            serde_json::to_vec_pretty(manifest)?,
        )?;
        Ok(())
    }

    /// The network-status the daemon wrote for a pod, if any.
    pub fn network_status(&self, namespace: &str, pod: &str) -> Result<Option<Value>> {
        let p = self.dir("status").join(format!("{namespace}.{pod}.json"));
        if !p.exists() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&fs::read(p)?)?))
    }

    /// Leases host-local holds under `ipam/` (every file that names an address).
    pub fn leases(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for net in fs::read_dir(self.dir("ipam"))? {
            for f in fs::read_dir(net?.path())? {
                let name = f?.file_name().to_string_lossy().into_owned();
                if name.parse::<std::net::IpAddr>().is_ok() {
                    out.push(name);
                }
            }
        }
        Ok(out)
    }

    /// Our cache record of the container as DEL reads it: `cni/multus-rs/<cid>` (what the ADD
    /// planned) with the lines of its journal `cni/multus-rs/progress/<cid>` applied (each marks
    /// the delegate at `index` added, with its `result`; a later line wins).
    pub fn record(&self, cid: &str) -> Result<Value> {
        let own = self.dir("cni").join("multus-rs");
        let path = own.join(cid);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut record: Value = serde_json::from_slice(&bytes)?;
        let journal = match fs::read_to_string(own.join("progress").join(cid)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(record),
            Err(e) => return Err(e.into()),
        };
        for line in journal.lines() {
            let line: Value = serde_json::from_str(line)?;
            let index = line["index"]
                .as_u64()
                .context("a journal line without index")?;
            let entry = &mut record["delegates"][usize::try_from(index)?];
            entry["state"] = json!("added");
            entry["result"] = line["result"].clone();
        }
        Ok(record)
    }

    /// Container ids with a cache record: ours (`cni/multus-rs/`) or upstream's scratch record
    /// (`cni/`).
    pub fn cache_records(&self) -> Result<Vec<String>> {
        let cni = self.dir("cni");
        let mut out = Vec::new();
        for dir in [cni.join("multus-rs"), cni] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            out.extend(
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// A running daemon; SIGTERMed and reaped on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    socket_dir: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts `multus-daemon` in `node` with `config`, waiting until its socket accepts.
    pub fn start(node: &Netns, layout: &Layout, config: &Map<String, Value>) -> Result<Self> {
        Self::start_with_env(node, layout, config, &[])
    }

    /// As [`Daemon::start`], with extra environment for the daemon (e.g. `MULTUS_NODE_NAME`).
    pub fn start_with_env(
        node: &Netns,
        layout: &Layout,
        config: &Map<String, Value>,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let (child, log) = spawn(node, layout, config, env, &[])?;
        let socket_dir = config
            .get("socketDir")
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .unwrap_or_default();
        let mut d = Self {
            child: Some(child),
            socket_dir,
            log,
        };
        d.wait_ready()?;
        Ok(d)
    }

    /// Runs the daemon in `node` under `wrapper` (a command line the daemon's own command is
    /// appended to, e.g. `unshare --pid --fork`) when it is expected to refuse to start: waits up
    /// to 20 s for it to exit and returns its exit status and what it logged. A daemon that is
    /// still running then is killed and reported as an error.
    pub fn run_to_exit(
        node: &Netns,
        layout: &Layout,
        config: &Map<String, Value>,
        wrapper: &[&str],
    ) -> Result<(std::process::ExitStatus, String)> {
        let (mut child, log) = spawn(node, layout, config, &[], wrapper)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok((status, fs::read_to_string(&log).unwrap_or_default()));
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "multus-daemon was still running after 20s:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        )
    }

    /// Spawns the daemon without waiting for its socket (races between daemons); see
    /// [`Daemon::wait_exit`] and [`Daemon::wait_listening`].
    pub fn spawn(node: &Netns, layout: &Layout, config: &Map<String, Value>) -> Result<Self> {
        let (child, log) = spawn(node, layout, config, &[], &[])?;
        let socket_dir = config
            .get("socketDir")
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .unwrap_or_default();
        Ok(Self {
            child: Some(child),
            socket_dir,
            log,
        })
    }

    /// Waits up to `timeout` for the daemon to exit; `None` while it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(child) = self.child.as_mut() else {
                return Ok(None);
            };
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the socket accepts (or the daemon exits: an error naming its log).
    pub fn wait_listening(&mut self) -> Result<()> {
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let socket = self.socket();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("multus-daemon exited with {status}:\n{}", self.log_text());
            }
            thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "multus-daemon did not listen on {} in 20s:\n{}",
            socket.display(),
            self.log_text()
        )
    }

    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn socket(&self) -> PathBuf {
        self.socket_dir.join("multus.sock")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the daemon logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (a crash, an OOM kill): no drain, no cleanup; the socket file stays behind.
    pub fn kill(&mut self) -> Result<Option<std::process::ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        child.kill()?;
        Ok(Some(child.wait()?))
    }

    /// SIGTERM, then wait (SIGKILL after 15 s). Returns the exit status.
    pub fn stop(&mut self) -> Result<Option<std::process::ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let pid = Pid::from_raw(i32::try_from(child.id())?);
        // `ip netns exec` execs the daemon in place, so the pid is the daemon's.
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        Ok(Some(child.wait()?))
    }
}

/// Writes `config` into the layout and spawns `ip netns exec <node> [wrapper...] multus-daemon
/// --config <file>`, stderr into a log file beside the config.
fn spawn(
    node: &Netns,
    layout: &Layout,
    config: &Map<String, Value>,
    env: &[(&str, &str)],
    wrapper: &[&str],
) -> Result<(Child, PathBuf)> {
    let file = layout
        .dir("conf")
        .join(format!("daemon-{}.json", crate::unique("c")));
    fs::write(&file, serde_json::to_vec_pretty(config)?)?;
    let log = file.with_extension("log");
    let binary = bins::daemon()?;
    let child = Command::new("ip")
        .args(["netns", "exec", node.name()])
        .args(wrapper)
        .arg(binary)
        .arg("--config")
        .arg(&file)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log)?)
        .spawn()
        .context("spawning multus-daemon")?;
    Ok((child, log))
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.stop();
        if thread::panicking() {
            eprintln!(
                "--- multus-daemon log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}
