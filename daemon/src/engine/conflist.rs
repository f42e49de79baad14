//! Runs one delegate's network config, single plugin or conflist, with libcni's semantics:
//! `name`/`cniVersion` of the list injected into every plugin, `prevResult` chained on ADD and
//! the cached result on DEL/CHECK (>= 0.4.0), `runtimeConfig` filtered by each plugin's declared
//! `capabilities`, DEL in reverse, CHECK/STATUS/GC gated on the config's own version (a
//! delegate's `cniVersion` is never up-converted).
//!
//! One deliberate difference from libcni: a conflist DEL runs every plugin even after one fails
//! and reports all failures, so a broken plugin in the middle does not leak what the others hold.
use multus_common::version::SpecVersion;
use multus_common::{Command, code};
use serde_json::{Map, Value, json};

use super::Delegate;
use super::error::{CniCode, Several};
use super::exec::{ExecEnv, ExecError, Executor};
use super::netconf::PluginConf;

/// Where a delegate is attached (the per-container CNI parameters).
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    pub container_id: &'a str,
    pub netns: &'a str,
}

/// A delegate's config could not be run, or one of its plugins failed. [`CniCode`]: noted on
/// each variant.
#[derive(Debug, thiserror::Error)]
pub enum ConflistError {
    /// The config is not a runnable network config (code 7).
    #[error("invalid network config: {0}")]
    InvalidConfig(String),
    /// The plugin's code (see [`ExecError`]).
    #[error("plugin type={plugin:?} name={network:?} failed ({command}): {source}")]
    Exec {
        plugin: String,
        network: String,
        command: &'static str,
        source: Box<ExecError>,
    },
    /// Code 6.
    #[error("plugin type={plugin:?} returned an invalid result: {reason}")]
    InvalidResult { plugin: String, reason: String },
    /// Code 1.
    #[error("configuration version {0:?} does not support the CHECK command")]
    CheckUnsupported(String),
    /// DEL ran every plugin; these failed (the first one's code).
    #[error("{0}")]
    Several(Several<ConflistError>),
}

impl CniCode for ConflistError {
    fn cni_code(&self) -> u32 {
        match self {
            ConflistError::InvalidConfig(_) => code::INVALID_NETWORK_CONFIG,
            ConflistError::Exec { source, .. } => source.cni_code(),
            ConflistError::InvalidResult { .. } => code::DECODE_FAILURE,
            ConflistError::CheckUnsupported(_) => code::INCOMPATIBLE_VERSION,
            ConflistError::Several(all) => all.cni_code(),
        }
    }

    fn cni_details(&self) -> Option<&str> {
        match self {
            ConflistError::Exec { source, .. } => source.cni_details(),
            ConflistError::Several(all) => all.cni_details(),
            _ => None,
        }
    }
}

impl ConflistError {
    /// The exec failure behind the first underlying error, if it was one.
    pub fn exec_error(&self) -> Option<&ExecError> {
        match self.first() {
            ConflistError::Exec { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The first underlying error (the one whose CNI code a caller reports).
    pub fn first(&self) -> &ConflistError {
        match self {
            ConflistError::Several(all) => all.first().map_or(self, ConflistError::first),
            other => other,
        }
    }
}

/// The plugin configs of a delegate (a single conf is a list of itself) and the list's version.
struct Plugins<'a> {
    name: &'a str,
    version: &'a str,
    list: &'a [PluginConf],
    is_list: bool,
}

fn plugins(d: &Delegate) -> Plugins<'_> {
    Plugins {
        name: d.network_name(),
        version: d.cni_version(),
        list: d.config.plugins(),
        is_list: d.config.is_list(),
    }
}

fn at_least(version: &str, min: SpecVersion) -> bool {
    SpecVersion::parse(version).is_some_and(|v| v >= min)
}

/// libcni's `buildOneConfig`: the plugin config as the plugin will read it on stdin.
fn one_config(
    p: &Plugins<'_>,
    plugin: &PluginConf,
    d: &Delegate,
    extra: &[(&str, &Value)],
) -> Vec<u8> {
    let mut conf = plugin.to_object();
    if p.is_list {
        conf.insert("name".into(), p.name.into());
        conf.insert("cniVersion".into(), p.version.into());
    }
    let rc: Map<String, Value> = d
        .capability_args
        .iter()
        .filter(|(k, _)| plugin.declares(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !rc.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(rc));
    }
    for (k, v) in extra {
        conf.insert((*k).into(), (*v).clone());
    }
    serde_json::to_vec(&Value::Object(conf)).unwrap_or_default()
}

async fn run_one(
    x: &Executor,
    p: &Plugins<'_>,
    plugin: &PluginConf,
    env: &ExecEnv<'_>,
    stdin: &[u8],
) -> Result<Vec<u8>, ConflistError> {
    let ty = plugin.plugin_type();
    x.run(ty, env, stdin)
        .await
        .map_err(|source| ConflistError::Exec {
            plugin: ty.to_owned(),
            network: p.name.to_owned(),
            command: env.command.as_str(),
            source: Box::new(source),
        })
}

fn env<'a>(command: Command, d: &'a Delegate, at: &Attachment<'a>) -> ExecEnv<'a> {
    ExecEnv {
        command,
        container_id: at.container_id,
        netns: at.netns,
        ifname: &d.ifname,
        cni_args: &d.cni_args,
    }
}

/// ADD: every plugin in order, each getting the previous one's result; returns the last result.
pub async fn add(x: &Executor, d: &Delegate, at: &Attachment<'_>) -> Result<Value, ConflistError> {
    let p = plugins(d);
    let env = env(Command::Add, d, at);
    let mut prev: Option<Value> = None;
    for plugin in p.list {
        let extra: Vec<(&str, &Value)> = prev.iter().map(|r| ("prevResult", r)).collect();
        let out = run_one(x, &p, plugin, &env, &one_config(&p, plugin, d, &extra)).await?;
        let result: Value =
            serde_json::from_slice(&out).map_err(|e| ConflistError::InvalidResult {
                plugin: plugin.plugin_type().to_owned(),
                reason: e.to_string(),
            })?;
        if !result.is_object() {
            return Err(ConflistError::InvalidResult {
                plugin: plugin.plugin_type().to_owned(),
                reason: "not a JSON object".into(),
            });
        }
        prev = Some(result);
    }
    prev.ok_or_else(|| ConflistError::InvalidConfig("no plugins".into()))
}

/// DEL: every plugin in reverse with the cached result as `prevResult` (>= 0.4.0); all run.
pub async fn del(
    x: &Executor,
    d: &Delegate,
    at: &Attachment<'_>,
    cached: Option<&Value>,
) -> Result<(), ConflistError> {
    let p = plugins(d);
    let env = env(Command::Del, d, at);
    let prev = cached.filter(|_| at_least(p.version, SpecVersion::V0_4_0));
    let extra: Vec<(&str, &Value)> = prev.iter().map(|r| ("prevResult", *r)).collect();
    let mut errors = Vec::new();
    for plugin in p.list.iter().rev() {
        if let Err(e) = run_one(x, &p, plugin, &env, &one_config(&p, plugin, d, &extra)).await {
            tracing::warn!(network = %p.name, plugin = %plugin.plugin_type(), error = %e, "DEL failed; continuing");
            errors.push(e);
        }
    }
    several(errors)
}

fn several(errors: Vec<ConflistError>) -> Result<(), ConflistError> {
    Several::collect(errors, ConflistError::Several)
}

/// CHECK: only for configs >= 0.4.0; `disableCheck` skips it; every plugin gets the cached result.
pub async fn check(
    x: &Executor,
    d: &Delegate,
    at: &Attachment<'_>,
    cached: Option<&Value>,
) -> Result<(), ConflistError> {
    let p = plugins(d);
    if !at_least(p.version, SpecVersion::V0_4_0) {
        return Err(ConflistError::CheckUnsupported(p.version.to_owned()));
    }
    if d.config.flag("disableCheck") {
        return Ok(());
    }
    let env = env(Command::Check, d, at);
    let extra: Vec<(&str, &Value)> = cached.iter().map(|r| ("prevResult", *r)).collect();
    for plugin in p.list {
        run_one(x, &p, plugin, &env, &one_config(&p, plugin, d, &extra)).await?;
    }
    Ok(())
}

/// STATUS: every plugin of a config >= 1.1.0; older configs cannot answer and count as ready.
pub async fn status(x: &Executor, d: &Delegate) -> Result<(), ConflistError> {
    let p = plugins(d);
    if !at_least(p.version, SpecVersion::V1_1_0) {
        return Ok(());
    }
    let env = ExecEnv {
        command: Command::Status,
        container_id: "",
        netns: "",
        ifname: "",
        cni_args: "",
    };
    for plugin in p.list {
        run_one(x, &p, plugin, &env, &one_config(&p, plugin, d, &[])).await?;
    }
    Ok(())
}

/// One `cni.dev/valid-attachments` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// GC: configs >= 1.1.0 without `disableGC`; every plugin gets `cni.dev/valid-attachments` (and
/// the legacy `cni.dev/attachments`, as libcni). All plugins run; failures are collected.
pub async fn gc(
    x: &Executor,
    d: &Delegate,
    valid: &[ValidAttachment],
) -> Result<(), ConflistError> {
    let p = plugins(d);
    if !at_least(p.version, SpecVersion::V1_1_0) || d.config.flag("disableGC") {
        return Ok(());
    }
    let env = ExecEnv {
        command: Command::Gc,
        container_id: "",
        netns: "",
        ifname: "",
        cni_args: "",
    };
    let list = json!(valid);
    let extra = [
        ("cni.dev/valid-attachments", &list),
        ("cni.dev/attachments", &list),
    ];
    let mut errors = Vec::new();
    for plugin in p.list {
        if let Err(e) = run_one(x, &p, plugin, &env, &one_config(&p, plugin, d, &extra)).await {
            errors.push(e);
        }
    }
    several(errors)
}

#[cfg(test)]
mod tests;
