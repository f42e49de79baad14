//! One delegate: a network to attach, fully resolved by `plan`, run by `exec`/`conflist`, and
//! kept by `cache` so DEL can run without any other source.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::netconf::NetConf;

/// A resolved network attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delegate {
    /// `<namespace>/<nad>` for NADs; the network's config `name` for file-based networks. This is
    /// network-status' `name`.
    pub name: String,
    /// Interface name in the sandbox.
    pub ifname: String,
    /// The network config: a single plugin's config or a conflist, as resolved (its own
    /// `cniVersion` kept, never up-converted). Serialized as the JSON object it was read from.
    pub config: NetConf,
    /// Values offered to the plugins as `runtimeConfig`, by capability name (`ips`, `mac`,
    /// `portMappings`, `bandwidth`, `infinibandGUID`, `deviceID`, `CNIDeviceInfoFile`, ...). A
    /// plugin only receives those its `capabilities` declare `true`.
    #[serde(default)]
    pub capability_args: Map<String, Value>,
    /// CNI_ARGS for this delegate.
    pub cni_args: String,
    /// The cluster network: its result is the one returned to the runtime.
    pub is_default: bool,
    /// Requested default-route gateways (`default-route` of the selection), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_route: Option<Vec<IpAddr>>,
}

impl Delegate {
    /// The config's `name` (the CNI network name).
    pub fn network_name(&self) -> &str {
        self.config.name().unwrap_or_default()
    }

    /// The config's `cniVersion`.
    pub fn cni_version(&self) -> &str {
        self.config.cni_version()
    }
}
