//! Upstream Go Multus' scratch cache (`multus.go:saveDelegates`): a JSON array of
//! DelegateNetConf with the delegate config base64-encoded in `Bytes`, and libcni's result cache
//! (`<cniDir>/results/<netName>-<containerId>-<ifname>`, `cniCacheV1`).
//!
//! Reading is best effort: each entry becomes a [`Delegate`] good enough for DEL; the result
//! comes from libcni's cache when it is still there. Writing ([`encode`], [`libcni_results`])
//! gives upstream's DEL and GC what they read after a node is switched back to Go Multus (D-6).
use std::path::Path;

use base64::Engine as _;
use multus_common::CniArgs;
use multus_common::constants::k8s_args;
use multus_common::validate;
use serde::{Deserialize, Serialize};
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
            // Upstream's DEL gives the master plugin only the request's runtimeConfig
            // (`mergeCNIRuntimeConfig`); the element's requests are for the others.
            capability_args: if idx == 0 {
                Map::new()
            } else {
                capability_args(&u)
            },
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
    Some(rebuilt(container_id, ifname, delegates, true))
}

/// A record rebuilt from files other than ours: no netns, pod or result version known (DEL
/// takes them from its request).
fn rebuilt(container_id: &str, ifname: &str, delegates: Vec<Entry>, from_upstream: bool) -> Record {
    Record {
        schema_version: SCHEMA_VERSION,
        container_id: container_id.to_owned(),
        netns: String::new(),
        ifname: ifname.to_owned(),
        pod: None,
        result_version: String::new(),
        delegates,
        from_upstream,
    }
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

/// One DelegateNetConf as upstream's DEL reads it (`pkg/types/types.go`, v4.3): `ConfList` with
/// plugins makes it a conflist (`ConfListPlugin`), `Bytes` is what libcni runs, `ifnameRequest`
/// names the interface, `Name` the device-info file, and the requests become capability args
/// of every delegate but the first (the master). `Conf` and `ConfList` keep only keys whose
/// Go types cannot fail to decode, so no plugin option can make upstream reject the file.
#[derive(Debug, Serialize)]
struct ScratchDelegate<'a> {
    #[serde(rename = "Conf")]
    conf: Map<String, Value>,
    #[serde(rename = "ConfList")]
    conf_list: Map<String, Value>,
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "ifnameRequest", skip_serializing_if = "str::is_empty")]
    ifname: &'a str,
    #[serde(rename = "macRequest", skip_serializing_if = "Option::is_none")]
    mac: Option<&'a Value>,
    #[serde(
        rename = "infinibandGUIDRequest",
        skip_serializing_if = "Option::is_none"
    )]
    infiniband_guid: Option<&'a Value>,
    #[serde(rename = "ipRequest", skip_serializing_if = "Option::is_none")]
    ips: Option<&'a Value>,
    #[serde(rename = "default-route", skip_serializing_if = "Option::is_none")]
    default_route: Option<&'a Vec<std::net::IpAddr>>,
    #[serde(rename = "IsFilterV4Gateway")]
    filter_v4: bool,
    #[serde(rename = "IsFilterV6Gateway")]
    filter_v6: bool,
    #[serde(rename = "deviceID", skip_serializing_if = "Option::is_none")]
    device_id: Option<&'a Value>,
    #[serde(rename = "Bytes")]
    bytes: String,
}

/// The record in upstream's scratch format, delegates in ADD order (the first is the master).
pub(super) fn encode(record: &Record) -> Result<Vec<u8>, serde_json::Error> {
    let list: Vec<ScratchDelegate<'_>> = record
        .delegates
        .iter()
        .map(|e| scratch_delegate(&e.delegate))
        .collect::<Result<_, _>>()?;
    serde_json::to_vec(&list)
}

fn scratch_delegate(d: &Delegate) -> Result<ScratchDelegate<'_>, serde_json::Error> {
    let config = serde_json::to_vec(&d.config)?;
    let caps = &d.capability_args;
    // Upstream's `getIfname` takes a request first; giving every delegate its real name makes
    // upstream's DEL find the interface whatever index or CNI_IFNAME it would compute.
    let string = |key: &str| {
        caps.get(key)
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    };
    Ok(ScratchDelegate {
        conf: if d.config.is_list() {
            Map::new()
        } else {
            header(&d.config, Some(d.config.first_type()))
        },
        conf_list: conf_list(&d.config),
        name: &d.name,
        ifname: &d.ifname,
        mac: string(capability::MAC),
        infiniband_guid: string(capability::INFINIBAND_GUID),
        ips: caps
            .get(capability::IPS)
            .filter(|v| v.as_array().is_some_and(|a| a.iter().all(Value::is_string))),
        default_route: d.default_route.as_ref(),
        filter_v4: false,
        filter_v6: false,
        device_id: string(capability::DEVICE_ID),
        bytes: base64::engine::general_purpose::STANDARD.encode(config),
    })
}

/// `cniVersion`, `name` and (for a plugin) `type`, the header every CNI config type shares.
fn header(config: &NetConf, plugin_type: Option<&str>) -> Map<String, Value> {
    let mut m = Map::new();
    if !config.cni_version().is_empty() {
        m.insert("cniVersion".into(), config.cni_version().into());
    }
    if let Some(name) = config.name() {
        m.insert("name".into(), name.into());
    }
    if let Some(t) = plugin_type {
        m.insert("type".into(), t.into());
    }
    m
}

/// A conflist's `ConfList` (header and each plugin's `type`); empty for a single conf.
fn conf_list(config: &NetConf) -> Map<String, Value> {
    if !config.is_list() {
        return Map::new();
    }
    let mut m = header(config, None);
    let plugins: Vec<Value> = config
        .plugins()
        .iter()
        .map(|p| serde_json::json!({"type": p.plugin_type()}))
        .collect();
    m.insert("plugins".into(), plugins.into());
    m
}

/// libcni's `cachedInfo` (`libcni/api.go`, kind `cniCacheV1`), as its `AddNetworkList` leaves it.
#[derive(Debug, Serialize)]
struct LibcniCache<'a> {
    kind: &'static str,
    #[serde(rename = "containerId")]
    container_id: &'a str,
    /// Go `[]byte`: base64.
    config: String,
    #[serde(rename = "ifName")]
    ifname: &'a str,
    #[serde(rename = "networkName")]
    network_name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    netns: &'a str,
    #[serde(rename = "cniArgs", skip_serializing_if = "Vec::is_empty")]
    cni_args: Vec<[&'a str; 2]>,
    #[serde(rename = "capabilityArgs", skip_serializing_if = "Map::is_empty")]
    capability_args: &'a Map<String, Value>,
    result: &'a Value,
}

/// The file names of libcni's cache for the record's delegates (libcni needs a network name).
pub(super) fn libcni_result_names(record: &Record) -> Vec<String> {
    record
        .delegates
        .iter()
        .filter_map(|e| result_name(&e.delegate, &record.container_id))
        .collect()
}

/// `<net>-<cid>-<ifname>`, only when it is one plain file name: a network name is the config's
/// (a NAD author's) and must not lead anywhere else; CNI allows only `[a-zA-Z0-9_.-]` in it.
fn result_name(d: &Delegate, container_id: &str) -> Option<String> {
    let name = format!("{}-{container_id}-{}", d.network_name(), d.ifname);
    let plain = !d.network_name().is_empty() && validate::id("network name", &name).is_ok();
    plain.then_some(name)
}

/// libcni's cache file (name and bytes) of each delegate that was added with a result: upstream's
/// DEL hands it to the plugins as `prevResult`, and upstream's GC lists the valid attachments
/// from these files (without them, a GC under Go Multus would release every lease we made).
pub(super) fn libcni_results(record: &Record) -> Result<Vec<(String, Vec<u8>)>, serde_json::Error> {
    let mut out = Vec::new();
    for entry in &record.delegates {
        let d = &entry.delegate;
        let (Some(result), State::Added) = (entry.result.as_ref(), entry.state) else {
            continue;
        };
        let Some(name) = result_name(d, &record.container_id) else {
            continue;
        };
        let cached = LibcniCache {
            kind: "cniCacheV1",
            container_id: &record.container_id,
            config: base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&d.config)?),
            ifname: &d.ifname,
            network_name: d.network_name(),
            netns: &record.netns,
            cni_args: d
                .cni_args
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| [k, v])
                .collect(),
            capability_args: &d.capability_args,
            result,
        };
        out.push((name, serde_json::to_vec(&cached)?));
    }
    Ok(out)
}

/// libcni's cache file as read back: the fields a DEL needs.
#[derive(Debug, Deserialize)]
struct LibcniCached {
    #[serde(rename = "containerId")]
    container_id: String,
    config: String,
    #[serde(rename = "ifName")]
    ifname: String,
    #[serde(rename = "cniArgs", default)]
    cni_args: Vec<[String; 2]>,
    #[serde(rename = "capabilityArgs", default)]
    capability_args: Map<String, Value>,
    #[serde(default)]
    result: Option<Value>,
}

/// The last resort when no record of `container_id` can be read: libcni's result cache files
/// (`<cniDir>/results/*-<cid>-*` naming it as their `containerId`), one delegate each, in
/// interface-name order (the request's `ifname`, the cluster network, first). They exist only
/// for delegates that finished their ADD, so this tears down what is known to be attached.
/// `None` when there is no such file.
pub(super) fn from_libcni_results(
    cni_dir: &Path,
    container_id: &str,
    ifname: &str,
) -> Option<Record> {
    let needle = format!("-{container_id}-");
    let entries = std::fs::read_dir(cni_dir.join(super::RESULTS_DIR)).ok()?;
    let mut delegates: Vec<Entry> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.contains(&needle)))
        .filter_map(|e| super::read_file(&e.path()).ok().flatten())
        .filter_map(|bytes| salvage_entry(&bytes, container_id, ifname))
        .collect();
    if delegates.is_empty() {
        return None;
    }
    delegates.sort_by(|a, b| {
        (!a.delegate.is_default, &a.delegate.ifname)
            .cmp(&(!b.delegate.is_default, &b.delegate.ifname))
    });
    Some(rebuilt(container_id, ifname, delegates, false))
}

fn salvage_entry(bytes: &[u8], container_id: &str, ifname: &str) -> Option<Entry> {
    let cached: LibcniCached = serde_json::from_slice(bytes).ok()?;
    if cached.container_id != container_id || validate::ifname(&cached.ifname).is_err() {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&cached.config)
        .ok()?;
    let config = NetConf::from_value(serde_json::from_slice(&raw).ok()?).ok()?;
    let cni_args = cached
        .cni_args
        .iter()
        .map(|[k, v]| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    Some(Entry {
        delegate: Delegate {
            name: config.name().unwrap_or_default().to_owned(),
            is_default: cached.ifname == ifname,
            ifname: cached.ifname,
            config,
            capability_args: cached.capability_args,
            cni_args,
            default_route: None,
        },
        state: State::Added,
        result: cached.result.filter(Value::is_object),
    })
}
