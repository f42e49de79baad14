//! Reading upstream Go Multus' scratch cache (`multus.go:saveDelegates`): a JSON array of
//! DelegateNetConf with the delegate config base64-encoded in `Bytes`. Best effort: each entry
//! becomes a [`Delegate`] good enough for DEL; the result comes from libcni's own cache
//! (`<cniDir>/results/<netName>-<containerId>-<ifname>`) when it is still there.
use std::path::Path;

use base64::Engine as _;
use multus_common::CniArgs;
use multus_common::constants::k8s_args;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Entry, Record, SCHEMA_VERSION, State};
use crate::engine::netconf::{NetConf, capability};
use crate::engine::{Delegate, runtime};

/// The DelegateNetConf fields DEL needs (upstream's spellings).
#[derive(Debug, Deserialize)]
struct UpstreamDelegate {
    #[serde(rename = "Conf", default)]
    conf: Option<Value>,
    #[serde(rename = "ConfList", default)]
    conf_list: Option<Value>,
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "ifnameRequest", default)]
    ifname: Option<String>,
    #[serde(rename = "macRequest", default)]
    mac: Option<String>,
    #[serde(rename = "infinibandGUIDRequest", default)]
    infiniband_guid: Option<String>,
    #[serde(rename = "ipRequest", default)]
    ips: Option<Vec<String>>,
    #[serde(rename = "deviceID", default)]
    device_id: Option<String>,
    #[serde(rename = "default-route", default)]
    default_route: Option<Vec<std::net::IpAddr>>,
    #[serde(rename = "Bytes", default)]
    bytes: Option<String>,
}

/// Parses upstream's format; `None` when `bytes` is not that format.
pub(super) fn parse(
    bytes: &[u8],
    cni_dir: &Path,
    container_id: &str,
    ifname: &str,
    args: &CniArgs,
) -> Option<Record> {
    let list: Vec<UpstreamDelegate> = serde_json::from_slice(bytes).ok()?;
    if list.is_empty() {
        return None;
    }
    let uid = args.get(k8s_args::POD_UID).unwrap_or_default();
    let mut delegates = Vec::with_capacity(list.len());
    for (idx, u) in list.into_iter().enumerate() {
        let config = config_of(&u)?;
        let ifname = match u.ifname.as_deref().filter(|s| !s.is_empty()) {
            Some(i) => i.to_owned(),
            None if idx == 0 => ifname.to_owned(),
            None => format!("net{idx}"),
        };
        let mac = u.mac.clone().unwrap_or_default();
        let ips = u.ips.clone().unwrap_or_default();
        let delegate = Delegate {
            name: u
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| config.name().unwrap_or_default().to_owned()),
            cni_args: runtime::cni_args(args, uid, &mac, &ips),
            capability_args: capability_args(&u),
            is_default: idx == 0,
            default_route: u.default_route.clone(),
            ifname,
            config,
        };
        let result = libcni_result(
            cni_dir,
            delegate.network_name(),
            container_id,
            &delegate.ifname,
        );
        delegates.push(Entry {
            delegate,
            state: State::Added,
            result,
        });
    }
    Some(Record {
        schema_version: SCHEMA_VERSION,
        container_id: container_id.to_owned(),
        netns: String::new(),
        ifname: ifname.to_owned(),
        pod: None,
        result_version: String::new(),
        delegates,
        from_upstream: true,
    })
}

/// `Bytes` (the exact config) when present, else the parsed `ConfList` or `Conf`; `None` when
/// none of them is a runnable config (nothing in it could be torn down).
fn config_of(u: &UpstreamDelegate) -> Option<NetConf> {
    if let Some(b64) = u.bytes.as_deref().filter(|s| !s.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        return NetConf::from_value(serde_json::from_slice(&raw).ok()?).ok();
    }
    let list = u
        .conf_list
        .clone()
        .and_then(|l| NetConf::from_value(l).ok())
        .filter(NetConf::is_list);
    list.or_else(|| NetConf::from_value(u.conf.clone()?).ok())
}

fn capability_args(u: &UpstreamDelegate) -> Map<String, Value> {
    let mut caps = Map::new();
    let strings = [
        (capability::MAC, &u.mac),
        (capability::INFINIBAND_GUID, &u.infiniband_guid),
        (capability::DEVICE_ID, &u.device_id),
    ];
    for (key, value) in strings {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            caps.insert(key.into(), v.into());
        }
    }
    if let Some(ips) = u.ips.as_ref().filter(|i| !i.is_empty()) {
        caps.insert(capability::IPS.into(), ips.clone().into());
    }
    caps
}

/// The `result` libcni cached for the attachment, if the file is still there and readable.
fn libcni_result(cni_dir: &Path, network: &str, container_id: &str, ifname: &str) -> Option<Value> {
    let path = cni_dir
        .join("results")
        .join(format!("{network}-{container_id}-{ifname}"));
    let cached: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    cached.get("result").filter(|r| r.is_object()).cloned()
}
