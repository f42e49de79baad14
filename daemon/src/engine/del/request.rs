//! What a DEL request adds to a cached record before the teardown (D-5).
//!
//! A record written by Go Multus holds only the selection's requests (`macRequest`, `ipRequest`,
//! ...): upstream's DEL (`delPlugins` → `CreateCNIRuntimeConf`) rebuilds each delegate's
//! runtimeConfig from the DEL request's `runtimeConfig` (portMappings, bandwidth, ...), puts the
//! requests on top for every delegate but the first, names the device-info file when a device
//! is set, and gives a conflist without `cniVersion` the multus config's. portmap's DEL does
//! nothing without `portMappings`, so without this the hostPort rules of every pod attached by
//! Go Multus would outlive it. We do the same, exactly as upstream, for those records.
//!
//! Our own records keep what we cached: those are the values the plugins got at ADD (CNI asks
//! DEL to pass the same), and the runtime's DEL may be built from a different source (after a
//! runtime restart, or by a runtime that sends nothing on DEL). Only keys the record lacks are
//! taken from the request, under the same rules as ADD (the cluster network gets every key, a
//! secondary only the pod-wide ones), so a record written without some key still tears down.
use std::path::Path;

use serde_json::{Map, Value};

use crate::engine::cache::Record;
use crate::engine::netconf::capability;
use crate::engine::runtime;

/// The runtimeConfig keys upstream's DEL knows (`types.RuntimeConfig`); it drops the others.
const UPSTREAM_KEYS: [&str; 7] = [
    capability::PORT_MAPPINGS,
    capability::BANDWIDTH,
    capability::IPS,
    capability::MAC,
    capability::INFINIBAND_GUID,
    capability::DEVICE_ID,
    capability::DEVICE_INFO_FILE,
];

/// Applies the DEL request (`stdin`, the shim's config) to the record's delegates.
pub(crate) fn apply(record: &mut Record, stdin: &Value, device_info_dir: &Path) {
    let runtime = runtime::runtime_config(stdin);
    let version = stdin
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let container_id = record.container_id.clone();
    let from_upstream = record.from_upstream;
    for (idx, entry) in record.delegates.iter_mut().enumerate() {
        let d = &mut entry.delegate;
        d.config.default_list_version(version);
        if from_upstream {
            let mut caps = upstream_caps(&runtime, &d.capability_args, idx == 0);
            if caps
                .get(capability::DEVICE_ID)
                .is_some_and(|v| !is_empty(v))
            {
                let file =
                    runtime::device_info_file(device_info_dir, &d.name, &container_id, &d.ifname);
                caps.insert(capability::DEVICE_INFO_FILE.into(), file.into());
            }
            d.capability_args = caps;
        } else {
            for (key, value) in &runtime {
                if d.is_default || runtime::is_pod_wide(key) {
                    d.capability_args
                        .entry(key.clone())
                        .or_insert_with(|| value.clone());
                }
            }
        }
    }
}

/// `mergeCNIRuntimeConfig` + `newCNIRuntimeConf`: the request's known keys, then (not for the
/// master) the element's requests, each only when set.
fn upstream_caps(
    runtime: &Map<String, Value>,
    requests: &Map<String, Value>,
    master: bool,
) -> Map<String, Value> {
    let mut caps: Map<String, Value> = UPSTREAM_KEYS
        .iter()
        .filter_map(|k| runtime.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    if !master {
        caps.extend(requests.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    caps.retain(|_, v| !is_empty(v));
    caps
}

/// Upstream's `len(x) != 0` / `!= nil` checks: an empty list or string is not passed.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
