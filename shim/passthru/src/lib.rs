//! The `passthru` CNI plugin, as upstream Multus ships it (`cmd/passthru-cni`, built on libcni's
//! `skel` v1.3): it configures nothing. Upstream's auxiliary chains (`auxiliaryCNIChainName`) run
//! it first so that the plugins after it get a `prevResult` to work on.
//!
//! Behaviour, verb by verb (upstream's via skel):
//! * ADD: an empty result in the config's `cniVersion` (`{"cniVersion": v, "dns": {}}`). One
//!   difference on purpose: with a `prevResult` (passthru chained after another plugin) that
//!   result is returned, converted to the config's version, as the spec requires of a plugin
//!   that changes nothing ("it must output a result equivalent to the provided prevResult");
//!   upstream drops it and returns the empty result.
//! * DEL, CHECK (config 0.4.0 or later), GC and STATUS (1.1.0): succeed with no output.
//! * VERSION: the versions upstream's passthru declares.
//! * skel's checks first: required CNI_* variables, container id and interface name syntax, a
//!   JSON config with a valid `name`, a supported `cniVersion`.
#![forbid(unsafe_code)]
use multus_common::{CniError, code, result, validate};
use serde_json::{Value, json};

/// The versions upstream's passthru supports (`PluginSupports(...)` in its main.go).
pub const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// skel's `ImplementedSpecVersion` (libcni v1.3), the `cniVersion` of the VERSION answer.
const IMPLEMENTED: &str = "1.1.0";
/// What skel prints to stderr when CNI_COMMAND is not set.
pub const ABOUT: &str = "Passthrough CNI Plugin v1.0";

/// The CNI_* environment of one invocation (unset and empty are the same, as in skel).
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub command: Option<String>,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    pub path: Option<String>,
}

impl Env {
    /// Reads the variables through `get` (e.g. `std::env::var`), treating "" as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| get(name).filter(|v| !v.is_empty());
        Self {
            command: var("CNI_COMMAND"),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            path: var("CNI_PATH"),
        }
    }
}

/// What the plugin does with its stdout/stderr and exit code.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Exit 0, print this (possibly nothing) on stdout.
    Stdout(String),
    /// Exit 0, print the about text on stderr (no CNI_COMMAND).
    About(String),
    /// Exit 1, print the error object (in this cniVersion) on stdout.
    Error(CniError, String),
}

/// Runs one invocation. `read_stdin` is called for every verb but VERSION (skel ignores stdin
/// there).
pub fn run(env: &Env, read_stdin: impl FnOnce() -> std::io::Result<Vec<u8>>) -> Outcome {
    let Some(command) = env.command.as_deref() else {
        return Outcome::About(format!(
            "{ABOUT}\nCNI protocol versions supported: {}",
            SUPPORTED.join(", ")
        ));
    };
    if let Err(e) = check_env(command, env) {
        return Outcome::Error(e, IMPLEMENTED.to_owned());
    }
    if command == "VERSION" {
        return Outcome::Stdout(
            json!({"cniVersion": IMPLEMENTED, "supportedVersions": SUPPORTED}).to_string(),
        );
    }
    let conf = match read_stdin()
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("error reading from stdin: {e}")))
        .and_then(|bytes| parse_conf(&bytes))
    {
        Ok(conf) => conf,
        Err(e) => return Outcome::Error(e, IMPLEMENTED.to_owned()),
    };
    let version = conf_version(&conf);
    match verb(command, &conf, &version) {
        Ok(out) => Outcome::Stdout(out),
        Err(e) => Outcome::Error(e, version),
    }
}

/// skel's required variables per verb and its syntax checks of the container id and ifname.
fn check_env(command: &str, env: &Env) -> Result<(), CniError> {
    let per_container = matches!(command, "ADD" | "CHECK" | "DEL");
    let required: &[(&str, &Option<String>, bool)] = &[
        ("CNI_COMMAND", &env.command, true),
        ("CNI_CONTAINERID", &env.container_id, per_container),
        ("CNI_NETNS", &env.netns, matches!(command, "ADD" | "CHECK")),
        ("CNI_IFNAME", &env.ifname, per_container),
        (
            "CNI_PATH",
            &env.path,
            per_container || matches!(command, "GC" | "STATUS"),
        ),
    ];
    let missing: Vec<&str> = required
        .iter()
        .filter(|(_, value, needed)| *needed && value.is_none())
        .map(|(name, _, _)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!("required env variables [{}] missing", missing.join(",")),
        ));
    }
    if per_container {
        if let Some(id) = &env.container_id {
            validate::id("CNI_CONTAINERID", id)
                .map_err(|e| CniError::new(code::INVALID_ENV, e.to_string()))?;
        }
        if let Some(ifname) = &env.ifname {
            validate::ifname(ifname)
                .map_err(|e| CniError::new(code::INVALID_ENV, e.to_string()))?;
        }
    }
    Ok(())
}

/// The config: a JSON object with a valid network `name`.
fn parse_conf(bytes: &[u8]) -> Result<Value, CniError> {
    let conf: Value = serde_json::from_slice(bytes).map_err(|e| {
        CniError::new(
            code::DECODE_FAILURE,
            format!("error unmarshall network config: {e}"),
        )
    })?;
    let name = conf.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return Err(CniError::new(
            code::INVALID_NETWORK_CONFIG,
            "missing network name",
        ));
    }
    validate::id("network name", name)
        .map_err(|e| CniError::new(code::INVALID_NETWORK_CONFIG, e.to_string()))?;
    Ok(conf)
}

/// The config's `cniVersion`; skel reads a missing one as 0.1.0.
fn conf_version(conf: &Value) -> String {
    conf.get("cniVersion")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .unwrap_or("0.1.0")
        .to_owned()
}

fn verb(command: &str, conf: &Value, version: &str) -> Result<String, CniError> {
    if !matches!(command, "ADD" | "DEL" | "CHECK" | "GC" | "STATUS") {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!("unknown CNI_COMMAND: {command}"),
        ));
    }
    // skel: CHECK needs a 0.4.0+ config, GC and STATUS a 1.1.0 one, before the version check.
    let minimum = match command {
        "CHECK" => Some("0.4.0"),
        "GC" | "STATUS" => Some("1.1.0"),
        _ => None,
    };
    if let Some(min) = minimum
        && multus_common::version::SpecVersion::cmp_str(version, min).is_lt()
    {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("config version does not allow {command}"),
        ));
    }
    if !SUPPORTED.contains(&version) {
        return Err(
            CniError::new(code::INCOMPATIBLE_VERSION, "incompatible CNI versions").with_details(
                format!("config is {version:?}, plugin supports {:?}", SUPPORTED),
            ),
        );
    }
    if command == "ADD" {
        add(conf, version)
    } else {
        Ok(String::new())
    }
}

/// The prevResult in the config's version, or upstream's empty result.
fn add(conf: &Value, version: &str) -> Result<String, CniError> {
    let out = match conf.get("prevResult").filter(|p| !p.is_null()) {
        Some(prev) => result::convert(prev, version, version).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                format!("passthru cni: prevResult: {e}"),
            )
        })?,
        None => json!({"cniVersion": version, "dns": {}}),
    };
    Ok(out.to_string())
}

#[cfg(test)]
mod tests;
