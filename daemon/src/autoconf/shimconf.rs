//! Upstream's `MultusConf` as far as it reaches `00-multus.conf`: its fields in upstream's order
//! with upstream's `omitempty` rules, decoded from the daemon-config the way Go's `json.Unmarshal`
//! decodes it over `{type: multus-shim, capabilities: {}}` (keys case-insensitive, a later
//! duplicate wins, `null` leaves a value as it was, unknown keys ignored).
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

/// upstream's `multusPluginName`.
pub const SHIM_TYPE: &str = "multus-shim";
/// upstream's `MultusDefaultNetworkName`.
pub const DEFAULT_NAME: &str = "multus-cni-network";

/// The generated config: serialized in this field order, empty values left out as Go does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShimConf {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub bin_dir: String,
    /// Sorted like a Go map; `false` entries from the daemon-config survive, as upstream.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub capabilities: BTreeMap<String, bool>,
    pub cni_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log_file: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log_level: String,
    #[serde(skip_serializing_if = "is_false")]
    pub log_to_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_options: Option<LogOptions>,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_network: String,
    #[serde(skip_serializing_if = "is_false")]
    pub namespace_isolation: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub global_namespaces: String,
    #[serde(rename = "type")]
    pub plugin_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cni_dir: String,
    #[serde(
        rename = "auxiliaryCNIChainName",
        skip_serializing_if = "String::is_empty"
    )]
    pub auxiliary_cni_chain_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub daemon_socket_dir: String,
    /// Upstream never clears it, so `"overrideNetworkName":true` closes the file when set.
    #[serde(skip_serializing_if = "is_false")]
    pub override_network_name: bool,
}

/// upstream's `logging.LogOptions`: pointers, so an explicit `0`/`false` is kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_backups: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A daemon-config value of the wrong JSON type for upstream's field (Go's wording).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "failed to unmarshall the daemon configuration: json: cannot unmarshal {found} into Go struct field MultusConf.{field} of type {go_type}"
)]
pub struct DecodeError {
    pub field: String,
    pub found: &'static str,
    pub go_type: &'static str,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn mismatch(field: &str, v: &Value, go_type: &'static str) -> DecodeError {
    DecodeError {
        field: field.to_owned(),
        found: kind(v),
        go_type,
    }
}

fn set_string(slot: &mut String, field: &str, v: &Value) -> Result<(), DecodeError> {
    match v {
        Value::Null => Ok(()),
        Value::String(s) => {
            s.clone_into(slot);
            Ok(())
        }
        other => Err(mismatch(field, other, "string")),
    }
}

fn set_bool(slot: &mut bool, field: &str, v: &Value) -> Result<(), DecodeError> {
    match v {
        Value::Null => Ok(()),
        Value::Bool(b) => {
            *slot = *b;
            Ok(())
        }
        other => Err(mismatch(field, other, "bool")),
    }
}

/// Go decodes an object into an existing map by adding to it; `null` drops the map.
fn set_capabilities(slot: &mut BTreeMap<String, bool>, v: &Value) -> Result<(), DecodeError> {
    match v {
        Value::Null => slot.clear(),
        Value::Object(map) => {
            for (name, enabled) in map {
                let field = format!("capabilities.{name}");
                let mut b = false;
                set_bool(&mut b, &field, enabled)?;
                slot.insert(name.clone(), b);
            }
        }
        other => return Err(mismatch("capabilities", other, "map[string]bool")),
    }
    Ok(())
}

fn set_int(slot: &mut Option<i64>, field: &str, v: &Value) -> Result<(), DecodeError> {
    match v {
        Value::Null => *slot = None,
        Value::Number(n) => *slot = Some(n.as_i64().ok_or_else(|| mismatch(field, v, "int"))?),
        other => return Err(mismatch(field, other, "int")),
    }
    Ok(())
}

fn set_log_options(slot: &mut Option<LogOptions>, v: &Value) -> Result<(), DecodeError> {
    let map = match v {
        Value::Null => {
            *slot = None;
            return Ok(());
        }
        Value::Object(map) => map,
        other => return Err(mismatch("logOptions", other, "logging.LogOptions")),
    };
    let opts = slot.get_or_insert_with(LogOptions::default);
    for (key, v) in map {
        match key.to_ascii_lowercase().as_str() {
            "maxage" => set_int(&mut opts.max_age, "logOptions.maxAge", v)?,
            "maxsize" => set_int(&mut opts.max_size, "logOptions.maxSize", v)?,
            "maxbackups" => set_int(&mut opts.max_backups, "logOptions.maxBackups", v)?,
            "compress" => {
                if v.is_null() {
                    opts.compress = None;
                } else {
                    let mut b = false;
                    set_bool(&mut b, "logOptions.compress", v)?;
                    opts.compress = Some(b);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

impl ShimConf {
    /// upstream's starting value, before the daemon-config is decoded over it.
    fn upstream_default() -> Self {
        Self {
            bin_dir: String::new(),
            capabilities: BTreeMap::new(),
            cni_version: String::new(),
            log_file: String::new(),
            log_level: String::new(),
            log_to_stderr: false,
            log_options: None,
            name: String::new(),
            cluster_network: String::new(),
            namespace_isolation: false,
            global_namespaces: String::new(),
            plugin_type: SHIM_TYPE.to_owned(),
            cni_dir: String::new(),
            auxiliary_cni_chain_name: String::new(),
            daemon_socket_dir: String::new(),
            override_network_name: false,
        }
    }

    /// upstream's `ParseMultusConfig`: the daemon-config's entries in order over the default,
    /// then `name` forced to `multus-cni-network`. Keys that never reach the file (the
    /// generator's own inputs, `readinessindicatorfile`, daemon-only keys) are not decoded here.
    pub fn from_daemon_config(raw: &Map<String, Value>) -> Result<Self, DecodeError> {
        let mut c = Self::upstream_default();
        for (key, v) in raw {
            match key.to_ascii_lowercase().as_str() {
                "bindir" => set_string(&mut c.bin_dir, "binDir", v)?,
                "capabilities" => set_capabilities(&mut c.capabilities, v)?,
                "cniversion" => set_string(&mut c.cni_version, "cniVersion", v)?,
                "logfile" => set_string(&mut c.log_file, "logFile", v)?,
                "loglevel" => set_string(&mut c.log_level, "logLevel", v)?,
                "logtostderr" => set_bool(&mut c.log_to_stderr, "logToStderr", v)?,
                "logoptions" => set_log_options(&mut c.log_options, v)?,
                "name" => set_string(&mut c.name, "name", v)?,
                "clusternetwork" => set_string(&mut c.cluster_network, "clusterNetwork", v)?,
                "namespaceisolation" => {
                    set_bool(&mut c.namespace_isolation, "namespaceIsolation", v)?
                }
                "globalnamespaces" => set_string(&mut c.global_namespaces, "globalNamespaces", v)?,
                "type" => set_string(&mut c.plugin_type, "type", v)?,
                "cnidir" => set_string(&mut c.cni_dir, "cniDir", v)?,
                "auxiliarycnichainname" => {
                    set_string(&mut c.auxiliary_cni_chain_name, "auxiliaryCNIChainName", v)?
                }
                "daemonsocketdir" => set_string(&mut c.daemon_socket_dir, "daemonSocketDir", v)?,
                "overridenetworkname" => {
                    set_bool(&mut c.override_network_name, "overrideNetworkName", v)?
                }
                _ => {}
            }
        }
        DEFAULT_NAME.clone_into(&mut c.name);
        Ok(c)
    }

    /// upstream's `Generate()`: `json.Marshal`, compact, no trailing newline, with Go's HTML
    /// escaping of `<`, `>`, `&`, U+2028 and U+2029 (serde_json escapes the rest as Go does).
    pub fn marshal(&self) -> Vec<u8> {
        // A struct of strings, bools, ints and a string-keyed map cannot fail to serialize.
        let json = serde_json::to_string(self).unwrap_or_default();
        go_html_escape(&json).into_bytes()
    }
}

/// Go's `encoding/json` HTML-safe escaping. These characters only occur inside JSON strings,
/// so replacing them in the whole document is exact.
pub fn go_html_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}
