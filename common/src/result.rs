//! CNI results and their conversion between spec versions.
//!
//! A delegate answers in the `cniVersion` of its own config; the runtime expects the version of
//! the config it gave us. Results are converted through the 1.0.0 shape (interfaces, ips, routes,
//! dns), which every version maps into and out of.
use serde_json::{Map, Value, json};

use crate::version::SpecVersion;

/// A result could not be read or expressed in the requested version.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResultError {
    #[error("result is not a JSON object")]
    NotAnObject,
    #[error("unknown cniVersion {0:?}")]
    UnknownVersion(String),
}

/// Converts `result` (in its own `cniVersion`, or `fallback_version` when it names none) to
/// `target` version.
pub fn convert(result: &Value, fallback_version: &str, target: &str) -> Result<Value, ResultError> {
    let obj = result.as_object().ok_or(ResultError::NotAnObject)?;
    let from_str = obj
        .get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or(fallback_version);
    let from = SpecVersion::parse(from_str)
        .ok_or_else(|| ResultError::UnknownVersion(from_str.to_owned()))?;
    let to =
        SpecVersion::parse(target).ok_or_else(|| ResultError::UnknownVersion(target.to_owned()))?;
    let canonical = if from < SpecVersion::V0_3_0 {
        from_legacy(obj)
    } else {
        obj.clone()
    };
    Ok(if to < SpecVersion::V0_3_0 {
        to_legacy(&canonical, target)
    } else {
        to_current(canonical, to, target)
    })
}

/// An empty result of the given version (what a plugin that set nothing up would answer).
pub fn empty(version: &str) -> Value {
    json!({ "cniVersion": version })
}

fn family(address: &str) -> &'static str {
    if address.contains(':') { "6" } else { "4" }
}

/// 0.3.0 and later: `ips[].version` exists before 1.0.0 and is gone from 1.0.0 on.
fn to_current(mut obj: Map<String, Value>, to: SpecVersion, target: &str) -> Value {
    obj.insert("cniVersion".into(), target.into());
    if let Some(Value::Array(ips)) = obj.get_mut("ips") {
        for ip in ips.iter_mut().filter_map(Value::as_object_mut) {
            if to >= SpecVersion::V1_0_0 {
                ip.remove("version");
            } else if !ip.contains_key("version") {
                let v = family(
                    ip.get("address")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                );
                ip.insert("version".into(), v.into());
            }
        }
    }
    Value::Object(obj)
}

/// 0.1.0/0.2.0 (`ip4`/`ip6` objects) into the 1.0.0 shape.
fn from_legacy(obj: &Map<String, Value>) -> Map<String, Value> {
    let mut ips = Vec::new();
    let mut routes = Vec::new();
    for key in ["ip4", "ip6"] {
        let Some(ipc) = obj.get(key).and_then(Value::as_object) else {
            continue;
        };
        if let Some(address) = ipc.get("ip") {
            let mut ip = Map::new();
            ip.insert("address".into(), address.clone());
            if let Some(gw) = ipc.get("gateway") {
                ip.insert("gateway".into(), gw.clone());
            }
            ips.push(Value::Object(ip));
        }
        if let Some(Value::Array(r)) = ipc.get("routes") {
            routes.extend(r.iter().cloned());
        }
    }
    let mut out = Map::new();
    out.insert("ips".into(), Value::Array(ips));
    if !routes.is_empty() {
        out.insert("routes".into(), Value::Array(routes));
    }
    if let Some(dns) = obj.get("dns") {
        out.insert("dns".into(), dns.clone());
    }
    out
}

/// The 1.0.0 shape into 0.1.0/0.2.0: the first address of each family, routes by family.
fn to_legacy(obj: &Map<String, Value>, target: &str) -> Value {
    let mut out = Map::new();
    out.insert("cniVersion".into(), target.into());
    let ips = obj
        .get("ips")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let routes = obj
        .get("routes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (key, fam) in [("ip4", "4"), ("ip6", "6")] {
        let Some(ip) = ips.iter().filter_map(Value::as_object).find(|ip| {
            family(
                ip.get("address")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ) == fam
        }) else {
            continue;
        };
        let mut ipc = Map::new();
        if let Some(a) = ip.get("address") {
            ipc.insert("ip".into(), a.clone());
        }
        if let Some(gw) = ip.get("gateway") {
            ipc.insert("gateway".into(), gw.clone());
        }
        let fam_routes: Vec<Value> = routes
            .iter()
            .filter(|r| family(r.get("dst").and_then(Value::as_str).unwrap_or_default()) == fam)
            .cloned()
            .collect();
        if !fam_routes.is_empty() {
            ipc.insert("routes".into(), Value::Array(fam_routes));
        }
        out.insert(key.into(), Value::Object(ipc));
    }
    if let Some(dns) = obj.get("dns") {
        out.insert("dns".into(), dns.clone());
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v100() -> Value {
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x"}],
            "ips": [
                {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0},
                {"address": "fd00::5/64", "interface": 0}
            ],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "::/0"}],
            "dns": {"nameservers": ["10.1.0.1"]}
        })
    }

    #[test]
    fn down_to_031_adds_ip_versions() {
        let r = convert(&v100(), "1.0.0", "0.3.1").expect("convert");
        assert_eq!(r["cniVersion"], "0.3.1");
        assert_eq!(r["ips"][0]["version"], "4");
        assert_eq!(r["ips"][1]["version"], "6");
        assert_eq!(r["interfaces"][0]["name"], "eth0");
    }

    #[test]
    fn up_to_110_drops_ip_versions() {
        let old = convert(&v100(), "1.0.0", "0.4.0").expect("down");
        let r = convert(&old, "0.4.0", "1.1.0").expect("up");
        assert_eq!(r["cniVersion"], "1.1.0");
        assert!(r["ips"][0].get("version").is_none());
        assert_eq!(r["routes"], v100()["routes"]);
    }

    #[test]
    fn legacy_round_trip() {
        let r = convert(&v100(), "1.0.0", "0.2.0").expect("legacy");
        assert_eq!(r["ip4"]["ip"], "10.1.0.5/24");
        assert_eq!(r["ip4"]["gateway"], "10.1.0.1");
        assert_eq!(r["ip4"]["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(r["ip6"]["routes"][0]["dst"], "::/0");
        let back = convert(&r, "0.2.0", "1.0.0").expect("back");
        assert_eq!(back["ips"].as_array().map(Vec::len), Some(2));
        assert_eq!(back["dns"]["nameservers"][0], "10.1.0.1");
    }

    #[test]
    fn refuses_non_objects_and_unknown_versions() {
        assert_eq!(
            convert(&json!([1]), "1.0.0", "1.0.0"),
            Err(ResultError::NotAnObject)
        );
        assert!(convert(&json!({"cniVersion": "x"}), "1.0.0", "1.0.0").is_err());
        assert!(convert(&v100(), "1.0.0", "banana").is_err());
    }
}
