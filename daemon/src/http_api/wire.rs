//! The JSON of upstream's `pkg/server/api/types.go` `Request` and the checks upstream's
//! `extractCniData` and `kubernetesRuntimeArgs` make on its `env`, with their messages.
use std::collections::HashMap;

use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::engine::selection::NetworkSelection;

/// `{"env": {...}, "config": "<base64>", "interfaceAttributes": {...}}`: Go encodes `[]byte`
/// as standard base64 and writes `null` for nil fields.
#[derive(Debug, Default, Deserialize)]
pub struct ShimRequest {
    #[serde(default, deserialize_with = "null_map")]
    pub env: HashMap<String, String>,
    #[serde(default, deserialize_with = "base64_bytes")]
    pub config: Option<Vec<u8>>,
    #[serde(rename = "interfaceAttributes", default)]
    pub interface_attributes: Option<InterfaceAttributes>,
}

/// Upstream's `DelegateInterfaceAttributes`: what the selection element asked for.
#[derive(Debug, Default, Deserialize)]
pub struct InterfaceAttributes {
    #[serde(default)]
    pub ips: Option<Vec<String>>,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(rename = "cni-args", default)]
    pub cni_args: Option<Map<String, Value>>,
}

impl ShimRequest {
    /// The selection values `/delegate` applies (upstream copies mac, ips and cni-args).
    pub fn selection(&self) -> NetworkSelection {
        let Some(a) = &self.interface_attributes else {
            return NetworkSelection::default();
        };
        NetworkSelection {
            ips: a.ips.clone().unwrap_or_default(),
            mac: a.mac.clone().unwrap_or_default(),
            cni_args: a.cni_args.clone(),
            ..NetworkSelection::default()
        }
    }
}

fn null_map<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<String, String>, D::Error> {
    Ok(Option::<HashMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

fn base64_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("config: illegal base64 data: {e}")))
}

/// The sandbox a per-container request is for.
#[derive(Debug, PartialEq)]
pub struct Target {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub cni_args: String,
}

/// Upstream's `extractCniData`: the keys must exist (even empty); CNI_IFNAME defaults to eth0.
pub fn target(env: &HashMap<String, String>) -> Result<Target, String> {
    let key = |k: &str| env.get(k).cloned().ok_or_else(|| format!("missing {k}"));
    Ok(Target {
        container_id: key("CNI_CONTAINERID")?,
        netns: key("CNI_NETNS")?,
        ifname: env
            .get("CNI_IFNAME")
            .cloned()
            .unwrap_or_else(|| "eth0".to_owned()),
        cni_args: key("CNI_ARGS")?,
    })
}

/// Upstream's `kubernetesRuntimeArgs`: every `;` item must be exactly `K=V`, and the pod's
/// namespace and name must be there.
pub fn k8s_args(env: &HashMap<String, String>) -> Result<HashMap<String, String>, String> {
    let raw = env
        .get("CNI_ARGS")
        .ok_or_else(|| "missing CNI_ARGS".to_owned())?;
    let mut args = HashMap::new();
    for item in raw.split(';') {
        let parts: Vec<&str> = item.split('=').collect();
        let [k, v] = parts[..] else {
            return Err(format!("invalid CNI_ARG '{item}'"));
        };
        args.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    for k in ["K8S_POD_NAMESPACE", "K8S_POD_NAME"] {
        if !args.contains_key(k) {
            return Err(format!("missing {k}"));
        }
    }
    Ok(args)
}
