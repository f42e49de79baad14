//! The reference side: the same delegates exec'd directly, the way libcni does for a runtime
//! that has no multus: each network's plugins in order with the previous result injected
//! (`name`, `cniVersion` and `prevResult` set on each plugin's config), the result cached on disk
//! as libcni caches it, and DEL of every plugin in reverse with the cached result.
use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use super::nodethread::NodeThread;
use crate::CNI_BIN_DIR;

/// One network as libcni sees it: a conflist (a single config becomes a list of one).
#[derive(Debug, Clone)]
pub struct Network {
    pub ifname: String,
    pub list: Value,
}

impl Network {
    pub fn list(ifname: &str, list: Value) -> Self {
        Self {
            ifname: ifname.into(),
            list,
        }
    }

    /// A single plugin config (a NAD's `spec.config`) named `name`.
    pub fn single(ifname: &str, name: &str, conf: &Value) -> Self {
        let mut c = conf.clone();
        c["name"] = name.into();
        let version = c["cniVersion"].clone();
        Self::list(
            ifname,
            serde_json::json!({"cniVersion": version, "name": name, "plugins": [c]}),
        )
    }

    fn plugins(&self) -> Vec<Value> {
        self.list["plugins"].as_array().cloned().unwrap_or_default()
    }
}

/// A pod's networks, attached and detached by execing the plugins from a node thread.
pub struct Direct {
    pub node: NodeThread,
    networks: Arc<Vec<Network>>,
    cache_dir: PathBuf,
}

impl Direct {
    pub fn new(node: NodeThread, networks: Vec<Network>, cache_dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&cache_dir)?;
        Ok(Self {
            node,
            networks: Arc::new(networks),
            cache_dir,
        })
    }

    /// ADD of every network, in order; the time it took.
    pub fn add(&self, cid: &str, netns: &str) -> Result<Duration> {
        let (nets, cid, netns, dir) = self.args(cid, netns);
        self.node.run(move || {
            let start = Instant::now();
            for n in nets.iter() {
                add_network(n, &cid, &netns, &dir)?;
            }
            Ok(start.elapsed())
        })?
    }

    /// DEL of every network, in reverse; the time it took.
    pub fn del(&self, cid: &str, netns: &str) -> Result<Duration> {
        let (nets, cid, netns, dir) = self.args(cid, netns);
        self.node.run(move || {
            let start = Instant::now();
            for n in nets.iter().rev() {
                del_network(n, &cid, &netns, &dir)?;
            }
            Ok(start.elapsed())
        })?
    }

    fn args(&self, cid: &str, netns: &str) -> (Arc<Vec<Network>>, String, String, PathBuf) {
        (
            self.networks.clone(),
            cid.into(),
            netns.into(),
            self.cache_dir.clone(),
        )
    }
}

fn cache_file(dir: &std::path::Path, n: &Network, cid: &str) -> PathBuf {
    let name = n.list["name"].as_str().unwrap_or("net");
    dir.join(format!("{name}-{cid}-{}", n.ifname))
}

fn plugin_conf(n: &Network, plugin: &Value, prev: Option<&Value>) -> Value {
    let mut p = plugin.clone();
    p["name"] = n.list["name"].clone();
    p["cniVersion"] = n.list["cniVersion"].clone();
    if let Some(r) = prev {
        p["prevResult"] = r.clone();
    }
    p
}

fn add_network(n: &Network, cid: &str, netns: &str, dir: &std::path::Path) -> Result<()> {
    let mut prev: Option<Value> = None;
    for p in n.plugins() {
        prev = Some(exec(
            &plugin_conf(n, &p, prev.as_ref()),
            "ADD",
            cid,
            netns,
            &n.ifname,
        )?);
    }
    // libcni caches the final result (and the config) for DEL.
    let cached = serde_json::json!({"kind": "cniCacheV1", "containerId": cid, "ifName": n.ifname,
        "networkName": n.list["name"], "config": n.list, "result": prev});
    std::fs::write(cache_file(dir, n, cid), cached.to_string())?;
    Ok(())
}

fn del_network(n: &Network, cid: &str, netns: &str, dir: &std::path::Path) -> Result<()> {
    let file = cache_file(dir, n, cid);
    let cached: Value = serde_json::from_slice(&std::fs::read(&file)?)?;
    let prev = cached.get("result").filter(|r| !r.is_null());
    for p in n.plugins().iter().rev() {
        exec(&plugin_conf(n, p, prev), "DEL", cid, netns, &n.ifname)?;
    }
    std::fs::remove_file(file)?;
    Ok(())
}

/// Execs one plugin as libcni does: CNI_* env, the config on stdin, the result on stdout.
fn exec(conf: &Value, cmd: &str, cid: &str, netns: &str, ifname: &str) -> Result<Value> {
    let ty = conf["type"].as_str().unwrap_or_default();
    let mut child = Command::new(format!("{CNI_BIN_DIR}/{ty}"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", CNI_BIN_DIR)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {ty}"))?;
    if let Some(mut s) = child.stdin.take() {
        s.write_all(conf.to_string().as_bytes())?;
    }
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "{ty} {cmd} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("{ty} {cmd}: result"))
}
