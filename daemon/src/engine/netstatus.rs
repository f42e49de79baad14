//! The `k8s.v1.cni.cncf.io/network-status` annotation: one entry per pod interface a delegate
//! set up, in upstream's schema (NAD client `CreateNetworkStatuses`) and textual layout.
use serde_json::{Map, Value};

use super::Delegate;

mod device_info;

/// Builds the network-status list from each delegate and its result (any spec version).
#[cfg(test)]
pub fn build(entries: &[(&Delegate, &Value)]) -> Value {
    build_with(entries, |_| None)
}

/// As [`build`], with each delegate's `device-info` (read by the caller from its
/// `CNIDeviceInfoFile`, see [`read_device_info`]).
pub fn build_with(
    entries: &[(&Delegate, &Value)],
    device_info: impl Fn(&Delegate) -> Option<Value>,
) -> Value {
    let mut out = Vec::new();
    for (delegate, result) in entries {
        let current = match multus_common::result::convert(result, delegate.cni_version(), "1.0.0")
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(network = %delegate.name, error = %e, "result left out of network-status");
                continue;
            }
        };
        out.extend(statuses(delegate, &current, device_info(delegate)));
    }
    Value::Array(out)
}

/// The path of the delegate's `CNIDeviceInfoFile`, when it has one.
fn device_info_path(delegate: &Delegate) -> Option<&str> {
    delegate
        .capability_args
        .get(super::netconf::capability::DEVICE_INFO_FILE)?
        .as_str()
}

/// Whether [`read_device_info`] has a file to read for the delegate.
pub fn has_device_info_file(delegate: &Delegate) -> bool {
    device_info_path(delegate).is_some()
}

/// The device-info a plugin left at its `CNIDeviceInfoFile`, if any, as upstream reads it
/// (see [`device_info::normalize`]).
pub fn read_device_info(delegate: &Delegate) -> Option<Value> {
    let path = device_info_path(delegate)?;
    let bytes = std::fs::read(path).ok()?;
    let raw: Value = serde_json::from_slice(&bytes).ok()?;
    let normalized = device_info::normalize(&raw);
    if normalized.is_none() {
        tracing::debug!(network = %delegate.name, path, "device-info file does not decode as upstream's DeviceInfo; left out");
    }
    normalized
}

/// The annotation text: upstream's `"[" + join(",", MarshalIndent(entry, "", "    ")) + "]"`,
/// with Go's HTML-safe escaping of `<`, `>`, `&`, U+2028, U+2029.
pub fn to_annotation(status: &Value) -> String {
    let entries = status.as_array().map(Vec::as_slice).unwrap_or_default();
    let parts: Vec<String> = entries.iter().map(pretty).collect();
    crate::autoconf::go_html_escape(&format!("[{}]", parts.join(",")))
}

fn pretty(v: &Value) -> String {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    match serde::Serialize::serialize(v, &mut ser) {
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        Err(_) => v.to_string(),
    }
}

/// One entry for a result with exactly one interface; otherwise one per sandbox interface.
///
/// Upstream writes no entry at all for a result without interfaces (every 0.1.0/0.2.0 result,
/// and plugins that only report IPs), so the attachment vanishes from the status; we write one
/// entry named after the delegate's interface when the result has addresses.
fn statuses(delegate: &Delegate, r: &Value, device_info: Option<Value>) -> Vec<Value> {
    let interfaces = r
        .get("interfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ips = r
        .get("ips")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let gateways = default_gateways(r);
    let dns = dns(r);
    let addr = |ip: &Value| ip.get("address").and_then(Value::as_str).map(strip_prefix);
    let synthetic = serde_json::json!({"name": delegate.ifname, "sandbox": "-"});
    if interfaces.len() == 1 || (interfaces.is_empty() && !ips.is_empty()) {
        let iface = interfaces
            .first()
            .or(Some(&synthetic))
            .filter(|i| in_sandbox(i));
        let all_ips = ips.iter().filter_map(addr).collect();
        let e = Entry {
            iface,
            ips: all_ips,
            default: delegate.is_default,
            gateways: &gateways,
            dns: &dns,
        };
        return vec![e.to_json(&delegate.name, device_info.as_ref())];
    }
    let sandboxed: Vec<usize> = (0..interfaces.len())
        .filter(|&i| in_sandbox(&interfaces[i]))
        .collect();
    let Some(&last) = sandboxed.last() else {
        return Vec::new();
    };
    // The result's `interface` index (any integer, as Go's `*int`).
    let index = |ip: &Value| ip.get("interface").and_then(Value::as_i64);
    let sandbox_at = |i: i64| usize::try_from(i).ok().filter(|i| sandboxed.contains(i));
    // As upstream's CreateNetworkStatuses: an IP without an interface index goes to the last
    // sandbox entry; one whose index is not a sandbox interface is dropped.
    let mut per_iface: Vec<Vec<String>> = vec![Vec::new(); interfaces.len()];
    for ip in &ips {
        let target = match index(ip) {
            Some(i) => match sandbox_at(i) {
                Some(i) => i,
                None => continue,
            },
            None => last,
        };
        if let Some(a) = addr(ip) {
            per_iface[target].push(a);
        }
    }
    // The default is the interface of the first IP with both a gateway and an index; without
    // such an IP (or with index -1, upstream's "none found") the first sandbox interface; with
    // an index that is no sandbox interface, none.
    let gateway_index = ips
        .iter()
        .filter(|ip| ip.get("gateway").is_some_and(|g| !g.is_null()))
        .find_map(index)
        .unwrap_or(-1);
    let default_iface = if gateway_index == -1 {
        Some(sandboxed[0])
    } else {
        sandbox_at(gateway_index)
    };
    sandboxed
        .iter()
        .map(|&i| {
            let e = Entry {
                iface: interfaces.get(i),
                ips: std::mem::take(&mut per_iface[i]),
                default: delegate.is_default && Some(i) == default_iface,
                gateways: &gateways,
                dns: &dns,
            };
            e.to_json(&delegate.name, device_info.as_ref())
        })
        .collect()
}

/// The fields of one entry before serialization.
struct Entry<'a> {
    iface: Option<&'a Value>,
    ips: Vec<String>,
    default: bool,
    gateways: &'a [String],
    dns: &'a Value,
}

impl Entry<'_> {
    /// Upstream's key order and omissions: only `name` and `dns` are always present.
    fn to_json(&self, name: &str, device_info: Option<&Value>) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), name.into());
        let field = |k: &str| self.iface.and_then(|i| i.get(k)).filter(|v| !v.is_null());
        if let Some(ifname) = field("name").filter(|v| v.as_str().is_some_and(|s| !s.is_empty())) {
            m.insert("interface".into(), ifname.clone());
        }
        if !self.ips.is_empty() {
            m.insert("ips".into(), self.ips.clone().into());
        }
        if let Some(mac) = field("mac").filter(|v| v.as_str().is_some_and(|s| !s.is_empty())) {
            m.insert("mac".into(), mac.clone());
        }
        if let Some(mtu) = field("mtu").filter(|v| v.as_u64().is_some_and(|n| n > 0)) {
            m.insert("mtu".into(), mtu.clone());
        }
        if self.default {
            m.insert("default".into(), true.into());
        }
        m.insert("dns".into(), self.dns.clone());
        if let Some(dev) = device_info {
            m.insert("device-info".into(), dev.clone());
        }
        if !self.gateways.is_empty() {
            m.insert("gateway".into(), self.gateways.to_vec().into());
        }
        Value::Object(m)
    }
}

fn in_sandbox(iface: &Value) -> bool {
    iface
        .get("sandbox")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

fn strip_prefix(address: &str) -> String {
    address
        .split_once('/')
        .map_or(address, |(ip, _)| ip)
        .to_owned()
}

/// Gateways of default routes: as upstream's `isDefaultRoute`, a route without `dst` or whose
/// `dst` address is `0.0.0.0` or `::`, whatever its prefix length (`0.0.0.0/8` counts). A
/// default route without a `gw` is left out; upstream prints Go's `<nil>` for it.
fn default_gateways(r: &Value) -> Vec<String> {
    let routes = r
        .get("routes")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let is_default = |route: &Value| match route.get("dst").and_then(Value::as_str) {
        None => true,
        Some(dst) => dst.split_once('/').is_some_and(|(ip, _)| {
            ip.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_unspecified())
        }),
    };
    routes
        .iter()
        .filter(|route| is_default(route))
        .filter_map(|route| route.get("gw").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// The result's DNS with upstream's `omitempty` fields; `{}` when there is none.
fn dns(r: &Value) -> Value {
    let mut out = Map::new();
    if let Some(d) = r.get("dns").and_then(Value::as_object) {
        for key in ["nameservers", "domain", "search", "options"] {
            let present = d.get(key).is_some_and(|v| match v {
                Value::Array(a) => !a.is_empty(),
                Value::String(s) => !s.is_empty(),
                _ => false,
            });
            if let Some(v) = d.get(key).filter(|_| present) {
                out.insert(key.into(), v.clone());
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn delegate(name: &str, version: &str, is_default: bool) -> Delegate {
        Delegate {
            name: name.into(),
            ifname: "net1".into(),
            config: json!({"cniVersion": version, "name": name, "type": "x"})
                .try_into()
                .unwrap(),
            capability_args: Map::new(),
            cni_args: String::new(),
            is_default,
            default_route: None,
        }
    }

    #[test]
    fn one_interface_result() {
        let d = delegate("kube-system/cluster", "1.0.0", true);
        let r = json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "mtu": 1450, "sandbox": "/run/netns/x"}],
            "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 0}, {"address": "fd00::5/64"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.9"}, {"dst": "::/0", "gw": "fd00::1"}],
            "dns": {"nameservers": ["10.96.0.10"], "search": []}});
        let got = build(&[(&d, &r)]);
        let want = json!([{"name": "kube-system/cluster", "interface": "eth0", "ips": ["10.1.0.5", "fd00::5"],
            "mac": "aa:bb:cc:dd:ee:ff", "mtu": 1450, "default": true, "dns": {"nameservers": ["10.96.0.10"]},
            "gateway": ["10.1.0.1", "fd00::1"]}]);
        assert_eq!(got, want);
        let keys: Vec<&String> = got[0].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "name",
                "interface",
                "ips",
                "mac",
                "mtu",
                "default",
                "dns",
                "gateway"
            ]
        );
    }

    #[test]
    fn multi_interface_result_one_entry_per_sandbox_interface() {
        let d = delegate("app/sriov", "1.0.0", false);
        let r = json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "br0", "mac": "00:00:00:00:00:01"}, {"name": "net1", "mac": "00:00:00:00:00:02", "sandbox": "/x"},
                           {"name": "net2", "sandbox": "/x"}],
            "ips": [{"address": "10.2.0.5/24", "interface": 1}, {"address": "10.3.0.5/24", "interface": 2, "gateway": "10.3.0.1"},
                    {"address": "10.4.0.5/24"}]});
        let got = build(&[(&d, &r)]);
        let want = json!([
            {"name": "app/sriov", "interface": "net1", "ips": ["10.2.0.5"], "mac": "00:00:00:00:00:02", "dns": {}},
            {"name": "app/sriov", "interface": "net2", "ips": ["10.3.0.5", "10.4.0.5"], "dns": {}}
        ]);
        assert_eq!(got, want);
        let def = delegate("cluster", "1.0.0", true);
        let got = build(&[(&def, &r)]);
        assert_eq!(got[0].get("default"), None);
        assert_eq!(got[1]["default"], true);
    }

    #[test]
    fn zero_interfaces_and_legacy_versions() {
        let d = delegate("n", "0.3.1", false);
        assert_eq!(
            build(&[(&d, &json!({"cniVersion": "0.3.1", "ips": []}))]),
            json!([])
        );
        let legacy = delegate("old", "0.2.0", false);
        let r = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.5.0.2/16", "gateway": "10.5.0.1",
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.5.0.1"}]}});
        // 0.2.0 has no interfaces: upstream drops the attachment, we name the delegate's ifname.
        let got = build(&[(&legacy, &r)]);
        let want = json!([{"name": "old", "interface": "net1", "ips": ["10.5.0.2"], "dns": {}, "gateway": ["10.5.0.1"]}]);
        assert_eq!(got, want);
        let v031 = json!({"cniVersion": "0.3.1", "interfaces": [{"name": "net1", "sandbox": "/x"}],
            "ips": [{"version": "4", "address": "10.6.0.2/24", "interface": 0}]});
        let got = build(&[(&d, &v031), (&d, &json!("garbage"))]);
        assert_eq!(
            got,
            json!([{"name": "n", "interface": "net1", "ips": ["10.6.0.2"], "dns": {}}])
        );
    }

    /// D-12: an IP whose interface index is not a sandbox interface is dropped, not given to
    /// the last entry; `default` needs a gateway IP with an index.
    #[test]
    fn d12_ips_of_non_sandbox_interfaces_are_dropped_and_default_needs_an_index() {
        let def = delegate("cluster", "1.0.0", true);
        let ifaces = json!([{"name": "br0"}, {"name": "eth0", "sandbox": "/x"}, {"name": "eth1", "sandbox": "/x"}]);
        let r = json!({"cniVersion": "1.0.0", "interfaces": ifaces,
            "ips": [{"address": "10.9.0.1/24", "interface": 0, "gateway": "10.9.0.254"},
                    {"address": "10.9.0.2/24", "interface": 7},
                    {"address": "10.9.0.3/24", "interface": -1},
                    {"address": "10.2.0.5/24", "interface": 1},
                    {"address": "10.3.0.5/24"}]});
        // The first gateway IP's index (0) is the host-side bridge: no entry is the default.
        assert_eq!(
            build(&[(&def, &r)]),
            json!([{"name": "cluster", "interface": "eth0", "ips": ["10.2.0.5"], "dns": {}},
                   {"name": "cluster", "interface": "eth1", "ips": ["10.3.0.5"], "dns": {}}])
        );
        // A gateway IP without an index does not make its entry the default: the first
        // sandbox interface is, as without any gateway.
        let r = json!({"cniVersion": "1.0.0", "interfaces": ifaces,
            "ips": [{"address": "10.3.0.5/24", "gateway": "10.3.0.1"}, {"address": "10.2.0.5/24", "interface": 1}]});
        let got = build(&[(&def, &r)]);
        assert_eq!(got[0]["default"], true);
        assert_eq!(got[1].get("default"), None);
        assert_eq!(got[1]["ips"], json!(["10.3.0.5"]));
        // With an indexed gateway IP, its interface is the default.
        let r = json!({"cniVersion": "1.0.0", "interfaces": ifaces,
            "ips": [{"address": "10.3.0.5/24", "gateway": "10.3.0.1", "interface": 2}]});
        let got = build(&[(&def, &r)]);
        assert_eq!(
            (got[0].get("default"), &got[1]["default"]),
            (None, &json!(true))
        );
    }

    /// D-12: upstream's `isDefaultRoute` looks at the address only (`0.0.0.0/8` counts).
    #[test]
    fn d12_default_routes_ignore_the_prefix_length() {
        let d = delegate("n", "1.0.0", false);
        let r = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "sandbox": "/x"}],
            "routes": [{"dst": "0.0.0.0/8", "gw": "10.0.0.1"}, {"dst": "::/64", "gw": "fd00::1"},
                       {"dst": "10.0.0.0/8", "gw": "10.0.0.2"}, {"gw": "10.0.0.3"}]});
        assert_eq!(
            build(&[(&d, &r)])[0]["gateway"],
            json!(["10.0.0.1", "fd00::1", "10.0.0.3"])
        );
    }

    /// D-12: the annotation text has Go's HTML-safe escaping, as `json.MarshalIndent`.
    #[test]
    fn d12_annotation_text_escapes_html_as_go() {
        let status = json!([{"name": "app/a<b>&c", "dns": {"domain": "x\u{2028}"}}]);
        let text = to_annotation(&status);
        assert!(
            text.contains(r#""name": "app/a\u003cb\u003e\u0026c""#),
            "{text}"
        );
        assert!(text.contains(r#""domain": "x\u2028""#), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, status, "still the same JSON");
    }

    #[test]
    fn annotation_text_is_upstreams_layout() {
        let status =
            json!([{"name": "a", "ips": ["10.0.0.1"], "dns": {}}, {"name": "b", "dns": {}}]);
        let want = "[{\n    \"name\": \"a\",\n    \"ips\": [\n        \"10.0.0.1\"\n    ],\n    \"dns\": {}\n},{\n    \"name\": \"b\",\n    \"dns\": {}\n}]";
        assert_eq!(to_annotation(&status), want);
        assert_eq!(to_annotation(&json!([])), "[]");
    }

    #[test]
    fn device_info_is_included() {
        let d = delegate("app/sriov", "1.0.0", false);
        let r = json!({"interfaces": [{"name": "net1", "sandbox": "/x"}]});
        let dev =
            json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:03:00.1"}});
        let got = build_with(&[(&d, &r)], |_| Some(dev.clone()));
        assert_eq!(got[0]["device-info"], dev);
        assert_eq!(read_device_info(&d), None);
    }
}
