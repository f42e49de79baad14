//! The multus config in force for one request: the daemon's config with the shim's stdin config
//! filling the gaps.
use serde::Deserialize;
use serde_json::{Map, Value};

use super::PlanError;
use crate::config::Config;

/// The keys of the shim's stdin config that planning reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct StdinConf {
    cni_version: String,
    cluster_network: Option<String>,
    default_networks: Vec<String>,
    delegates: Vec<Value>,
    namespace_isolation: bool,
    runtime_config: Option<Value>,
    #[serde(rename = "auxiliaryCNIChainName")]
    auxiliary_cni_chain_name: Option<String>,
}

/// The multus config in force for this request: the daemon's, with the shim's stdin filling what
/// the daemon leaves unset (upstream overlays daemon keys onto stdin, daemon wins). Keys with a
/// built-in default (namespaces, directories) always come from the daemon; isolation is on when
/// either side asks for it.
pub(super) struct Effective {
    pub(super) cluster_network: Option<String>,
    pub(super) default_networks: Vec<String>,
    pub(super) delegates: Vec<Value>,
    pub(super) namespace_isolation: bool,
    pub(super) runtime: Map<String, Value>,
    pub(super) result_version: String,
    /// `auxiliaryCNIChainName` (the daemon's, else the generated 00-multus.conf's).
    pub(super) auxiliary_chain: Option<String>,
}

/// The daemon's list when it has one, else the shim's.
fn or_stdin<T: Clone>(daemon: &[T], stdin: Vec<T>) -> Vec<T> {
    if daemon.is_empty() {
        stdin
    } else {
        daemon.to_vec()
    }
}

pub(super) fn effective(config: &Config, stdin: &[u8]) -> Result<Effective, PlanError> {
    let raw: Value =
        serde_json::from_slice(stdin).map_err(|e| PlanError::DecodeConfig(e.to_string()))?;
    if !raw.is_object() {
        return Err(PlanError::DecodeConfig("not a JSON object".into()));
    }
    let conf = StdinConf::deserialize(&raw).map_err(|e| PlanError::DecodeConfig(e.to_string()))?;
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    Ok(Effective {
        cluster_network: non_empty(&config.cluster_network).or(non_empty(&conf.cluster_network)),
        default_networks: or_stdin(&config.default_networks, conf.default_networks),
        delegates: or_stdin(&config.delegates, conf.delegates),
        namespace_isolation: config.namespace_isolation || conf.namespace_isolation,
        runtime: conf
            .runtime_config
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default(),
        result_version: conf.cni_version,
        auxiliary_chain: non_empty(&config.auxiliary_cni_chain_name)
            .or(non_empty(&conf.auxiliary_cni_chain_name)),
    })
}
