//! The primary CNI config: which file it is (upstream's `findMasterPlugin`), and what upstream's
//! manager reads from it (`CheckVersionCompatibility`, `setCapabilities`, `overrideNetworkName`),
//! with upstream's error texts. Where upstream panics on a malformed primary we return an error.
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde_json::{Map, Value};

use super::goversion;

/// File names upstream never takes as the primary (its own output and its siblings).
const OWN_PREFIX: &[u8] = b"00-multus";

/// Why the primary config could not be used as the cluster network.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LoadError {
    #[error("failed to access the primary CNI configuration from {path}: {detail}")]
    Access { path: String, detail: String },
    #[error("couldn't get top level cni version")]
    TopVersion,
    #[error("couldn't get cni version of delegate")]
    DelegateVersion,
    /// blang/semver's own message, returned unwrapped as upstream does.
    #[error("{0}")]
    DelegateSemver(String),
    #[error("delegate cni version is {delegate} while top level cni version is {top}")]
    TooOld { delegate: String, top: String },
    #[error("couldn't get cni config from delegate")]
    NotAnObject,
    #[error("the primary CNI config's plugins is not a list")]
    PluginsNotAList,
    #[error("the primary CNI config's capability {0:?} is not a boolean")]
    CapabilityNotBool(String),
}

/// Why `overrideNetworkName` could not take the primary's name.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NameError {
    #[error("failed to access delegate CNI plugin name")]
    Missing,
    #[error("the primary CNI config's name is not a string")]
    NotAString,
    #[error("the primary CNI Configuration does not feature the network name: {0}")]
    Empty(String),
}

/// Go's `filepath.Join(dir, name)`: joined with `/` and lexically cleaned, so an absolute `name`
/// stays inside `dir` (unlike `Path::join`). This string becomes `clusterNetwork`.
pub fn join(dir: &Path, name: &str) -> String {
    let dir = dir.to_string_lossy();
    let joined = match (dir.is_empty(), name.is_empty()) {
        (true, true) => return String::new(),
        (true, false) => name.to_owned(),
        (false, true) => dir.into_owned(),
        (false, false) => format!("{dir}/{name}"),
    };
    path_clean::clean(joined).to_string_lossy().into_owned()
}

/// Go's `filepath.Ext`: from the last `.` of the name (so `.conf` alone counts).
fn ext(name: &[u8]) -> &[u8] {
    name.iter()
        .rposition(|b| *b == b'.')
        .map_or(&[][..], |i| &name[i..])
}

/// The first of the sorted `*.conf`/`*.conflist` names in `dir` that is not `00-multus*`; no
/// file-type check, as upstream (`os.ReadDir`, `sort.Strings`).
pub fn first_candidate(dir: &Path) -> io::Result<Option<String>> {
    let mut names: Vec<OsString> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let bytes = name.as_bytes();
        if bytes.starts_with(OWN_PREFIX) {
            continue;
        }
        if matches!(ext(bytes), b".conf" | b".conflist") {
            names.push(name);
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names
        .into_iter()
        .next()
        .map(|n| n.to_string_lossy().into_owned()))
}

/// Reads and decodes the primary at `path` (upstream's `primaryCNIData`).
pub fn read(path: &str) -> Result<Value, LoadError> {
    let access = |detail| LoadError::Access {
        path: path.to_owned(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| {
        access(format!(
            "failed to read the cluster primary CNI config {path}: {e}"
        ))
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| access(format!("failed to unmarshall primary CNI config: {e}")))
}

/// upstream's `CheckVersionCompatibility`: under a multus `cniVersion` >= 0.4.0 the primary's
/// must be a version string >= 0.4.0 too (CHECK came with 0.4.0).
pub fn check_version(top: &str, primary: &Value) -> Result<(), LoadError> {
    let top_version = goversion::parse(top).map_err(|_| LoadError::TopVersion)?;
    if top_version < goversion::v040() {
        return Ok(());
    }
    let delegate = primary
        .as_object()
        .and_then(|m| m.get("cniVersion"))
        .and_then(Value::as_str)
        .ok_or(LoadError::DelegateVersion)?;
    let version = goversion::parse(delegate).map_err(LoadError::DelegateSemver)?;
    if version < goversion::v040() {
        return Err(LoadError::TooOld {
            delegate: delegate.to_owned(),
            top: top.to_owned(),
        });
    }
    Ok(())
}

/// The enabled capability names of one config object (`capabilities` entries that are `true`).
fn enabled(config: &Value) -> Result<Vec<String>, LoadError> {
    let Some(caps) = config
        .as_object()
        .and_then(|m| m.get("capabilities"))
        .and_then(Value::as_object)
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, on) in caps {
        match on {
            Value::Bool(true) => out.push(name.clone()),
            Value::Bool(false) => {}
            _ => return Err(LoadError::CapabilityNotBool(name.clone())),
        }
    }
    Ok(out)
}

/// upstream's `setCapabilities`: with a non-empty `plugins` list, the union over its plugins
/// (the top level's own `capabilities` are then ignored); otherwise the top level's.
pub fn capabilities(primary: &Value) -> Result<Vec<String>, LoadError> {
    let map: &Map<String, Value> = primary.as_object().ok_or(LoadError::NotAnObject)?;
    let plugins = match map.get("plugins") {
        None => &[][..],
        Some(Value::Array(list)) => &list[..],
        Some(_) => return Err(LoadError::PluginsNotAList),
    };
    if plugins.is_empty() {
        return enabled(primary);
    }
    let mut out = Vec::new();
    for plugin in plugins {
        out.extend(enabled(plugin)?);
    }
    Ok(out)
}

/// upstream's `overrideNetworkName`: the primary's non-empty `name`.
pub fn network_name(primary: &Value) -> Result<String, NameError> {
    match primary.as_object().and_then(|m| m.get("name")) {
        None => Err(NameError::Missing),
        Some(Value::String(s)) if s.is_empty() => Err(NameError::Empty(primary.to_string())),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(NameError::NotAString),
    }
}
