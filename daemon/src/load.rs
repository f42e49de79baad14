//! Loading the daemon `Config`: the JSON file, then `MULTUS_`-prefixed environment, merged with
//! figment. Keys are matched case-insensitively like upstream's Go decoding; unknown keys are kept
//! in `Config::extra`; a wrong type fails startup naming the key.
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::Serialized;
use serde_json::{Map, Value};

use multus_common::constants;

use crate::config::{Config, ConfigWarning, LogLevel};

/// Environment variables `MULTUS_<KEY>` set config keys (`MULTUS_SOCKET_DIR` → `socketDir`).
pub const ENV_PREFIX: &str = "MULTUS_";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading daemon config {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing daemon config {path}: {source}")]
    ParseJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("daemon config {path} is not a JSON object")]
    NotAnObject { path: PathBuf },
    #[error("daemon config: {0}")]
    Extract(String),
    #[error("daemon config key {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The canonical spelling of every key `Config` knows (its serialized default's keys).
pub fn known_keys() -> Vec<String> {
    match serde_json::to_value(Config::default()) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Renames keys to the canonical spelling of a known key that matches case-insensitively; an
/// exact spelling wins over a case-insensitive one (Go's rule). Unknown keys stay as written.
pub fn normalise(obj: Map<String, Value>, known: &[String]) -> Map<String, Value> {
    let (exact, folded): (Vec<_>, Vec<_>) = obj.into_iter().partition(|(k, _)| known.contains(k));
    let mut out: Map<String, Value> = exact.into_iter().collect();
    for (key, value) in folded {
        match known.iter().find(|k| k.eq_ignore_ascii_case(&key)) {
            Some(canon) if out.contains_key(canon) => {}
            Some(canon) => {
                out.insert(canon.clone(), value);
            }
            None => {
                out.insert(key, value);
            }
        }
    }
    out
}

/// `MULTUS_<KEY>` variables as config keys: the suffix matched against known keys ignoring case
/// and underscores. Values are JSON when they decode to the key's type, else strings. Variables
/// that name no key (e.g. `MULTUS_NODE_NAME`) are not config.
pub fn env_overrides(
    vars: impl IntoIterator<Item = (String, String)>,
    known: &[String],
) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, raw) in vars {
        let Some(suffix) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let folded: String = suffix.chars().filter(|c| *c != '_').collect();
        let Some(key) = known.iter().find(|k| k.eq_ignore_ascii_case(&folded)) else {
            continue;
        };
        let typed = serde_json::from_str::<Value>(&raw)
            .ok()
            .filter(|v| decodes_as(key, v));
        out.insert(key.clone(), typed.unwrap_or(Value::String(raw)));
    }
    out
}

fn decodes_as(key: &str, value: &Value) -> bool {
    let mut probe = Map::new();
    probe.insert(key.to_owned(), value.clone());
    serde_json::from_value::<Config>(Value::Object(probe)).is_ok()
}

/// Reads and merges the file at `path` and the given environment into a `Config`.
pub fn load(
    path: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, LoadError> {
    from_layers(read_object(path)?, vars)
}

/// The daemon config file as the JSON object it holds, keys as written.
pub fn read_object(path: &Path) -> Result<Map<String, Value>, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|source| LoadError::ParseJson {
        path: path.to_owned(),
        source,
    })?;
    match value {
        Value::Object(file) => Ok(file),
        _ => Err(LoadError::NotAnObject {
            path: path.to_owned(),
        }),
    }
}

/// Merges a parsed file object and the environment (environment wins).
pub fn from_layers(
    file: Map<String, Value>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, LoadError> {
    let known = known_keys();
    let figment = Figment::new()
        .merge(Serialized::defaults(Value::Object(normalise(file, &known))))
        .merge(Serialized::defaults(Value::Object(env_overrides(
            vars, &known,
        ))));
    let (figment, mut warnings) = ignore_unknown_level(figment);
    let mut config: Config = figment
        .extract()
        .map_err(|e| LoadError::Extract(describe(&e)))?;
    empty_means_default(&mut config);
    warnings.extend(ignore_missing_kubeconfig(&mut config));
    validate(&config)?;
    config.warnings = warnings;
    Ok(config)
}

/// Upstream ignores a `logLevel` it does not know ("cannot set logging level") and keeps its
/// default; a value of the wrong type is still an error.
fn ignore_unknown_level(figment: Figment) -> (Figment, Vec<ConfigWarning>) {
    let Ok(Value::String(name)) = figment.extract_inner::<Value>("logLevel") else {
        return (figment, Vec::new());
    };
    if LogLevel::from_name(&name).is_some() {
        return (figment, Vec::new());
    }
    let default = LogLevel::default();
    let warning = ConfigWarning {
        key: "logLevel",
        reason: format!(
            "cannot set logging level to {name:?} (not one of {}): using {}",
            LogLevel::NAMES,
            default.name()
        ),
    };
    let figment = figment.merge(Serialized::default("logLevel", default));
    (figment, vec![warning])
}

/// Path and name keys that upstream defaults when they are `""` (`if x == "" { x = default }`).
fn empty_means_default(c: &mut Config) {
    let d = Config::default();
    let paths = [
        (&mut c.conf_dir, d.conf_dir),
        (&mut c.cni_dir, d.cni_dir),
        (&mut c.bin_dir, d.bin_dir),
        (&mut c.cni_config_dir, d.cni_config_dir),
        (
            &mut c.kubelet_pod_resources_socket,
            d.kubelet_pod_resources_socket,
        ),
        (&mut c.kubelet_checkpoint_file, d.kubelet_checkpoint_file),
        (&mut c.device_info_dir, d.device_info_dir),
    ];
    for (value, default) in paths {
        if value.as_os_str().is_empty() {
            *value = default;
        }
    }
    if c.multus_namespace.is_empty() {
        c.multus_namespace = d.multus_namespace;
    }
}

/// The thick daemon upstream ignores `kubeconfig` (a thin-plugin key); a stale one naming a
/// file that does not exist must not stop the daemon, so it falls back to in-cluster
/// credentials. One that exists is still used (standalone test clusters rely on it).
fn ignore_missing_kubeconfig(c: &mut Config) -> Option<ConfigWarning> {
    let path = c.kubeconfig.as_ref()?;
    if path.exists() {
        return None;
    }
    let reason = format!(
        "{} does not exist (a thin-plugin key the thick daemon does not need): using in-cluster credentials",
        path.display()
    );
    c.kubeconfig = None;
    Some(ConfigWarning {
        key: "kubeconfig",
        reason,
    })
}

/// figment's message with the key path first, so the operator sees which key is wrong.
fn describe(e: &figment::Error) -> String {
    e.clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            if key.is_empty() {
                e.kind.to_string()
            } else {
                format!("key {key}: {}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks serde cannot express.
fn validate(c: &Config) -> Result<(), LoadError> {
    if c.connection_limit == Some(0) {
        let reason = "must be greater than 0 when set".to_owned();
        return Err(LoadError::Invalid {
            key: "connectionLimit",
            reason,
        });
    }
    if c.socket_dir.as_os_str().is_empty() {
        return Err(LoadError::Invalid {
            key: "socketDir",
            reason: "must not be empty".into(),
        });
    }
    Ok(())
}

/// Keys accepted for compatibility whose behaviour this build does not have, one line each.
pub fn unimplemented_keys(c: &Config) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let mut note = |set: bool, key, what| {
        if set {
            out.push((key, what));
        }
    };
    note(
        c.enable_pprof == Some(true),
        "enablePprof",
        "there is no Go profiler to serve",
    );
    note(
        c.connection_limit.is_some(),
        "connectionLimit",
        "not enforced; delegateConcurrency bounds concurrent plugin runs",
    );
    out
}

/// What the command line asks for (besides `-version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flags {
    pub config: PathBuf,
    /// `-reconcile-once`: one stale-state reconcile, a report on stdout, exit.
    pub reconcile_once: bool,
    /// `-collect` (with `-reconcile-once`): also collect what it finds.
    pub collect: bool,
}

/// The daemon's flags in Go `flag` spellings (`-config x`, `--config=x`, `-version`,
/// `-version=true`, `-reconcile-once`, `-collect`): `None` when `-version` is set. As Go's
/// `flag`, every flag is parsed before `-version` is acted on (a bad flag after it is still a
/// usage error), and parsing stops at `--` or the first argument that is not a flag.
pub fn parse_flags(mut args: impl Iterator<Item = String>) -> Result<Option<Flags>, String> {
    let mut flags = Flags {
        config: PathBuf::from(constants::DEFAULT_DAEMON_CONFIG),
        reconcile_once: false,
        collect: false,
    };
    let mut version = false;
    let boolean = |name: &str, v: &str| {
        go_bool(v).ok_or_else(|| format!("invalid boolean value {v:?} for -{name}"))
    };
    while let Some(arg) = args.next() {
        if arg == "--" || arg == "-" || !arg.starts_with('-') {
            break;
        }
        let flag = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        match flag.split_once('=') {
            None if flag == "version" => version = true,
            Some(("version", v)) => version = boolean("version", v)?,
            None if flag == "reconcile-once" => flags.reconcile_once = true,
            Some(("reconcile-once", v)) => flags.reconcile_once = boolean("reconcile-once", v)?,
            None if flag == "collect" => flags.collect = true,
            Some(("collect", v)) => flags.collect = boolean("collect", v)?,
            None if flag == "config" => {
                flags.config = args.next().ok_or("flag needs an argument: -config")?.into()
            }
            Some(("config", v)) => flags.config = v.into(),
            _ => return Err(format!("flag provided but not defined: {arg}")),
        }
    }
    if flags.collect && !flags.reconcile_once {
        return Err("-collect needs -reconcile-once".into());
    }
    Ok((!version).then_some(flags))
}

/// Go's `strconv.ParseBool`, which `flag` uses for `-name=value` of a bool flag.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Logs [`unimplemented_keys`] and the values loading ignored at warn, one line per key.
pub fn warn_unimplemented(c: &Config) {
    for (key, reason) in unimplemented_keys(c) {
        tracing::warn!(key, reason, "config key accepted but not implemented");
    }
    for w in &c.warnings {
        tracing::warn!(key = w.key, reason = %w.reason, "config value ignored");
    }
}

#[cfg(test)]
mod tests;
