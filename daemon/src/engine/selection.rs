//! Parsing of the network-selection annotations (`k8s.v1.cni.cncf.io/networks` and
//! `v1.multus-cni.io/default-network`): the comma form `[ns/]name[@ifname]` and the JSON list of
//! NetworkSelectionElements, validated the way upstream does, plus the checks upstream skips for
//! the JSON form.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The pod annotation listing the secondary networks.
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
/// The pod annotation replacing the cluster network.
pub const DEFAULT_NETWORK_ANNOTATION: &str = "v1.multus-cni.io/default-network";

/// Why an annotation was refused. Messages are upstream's, so existing tooling and runbooks that
/// grep for them keep working.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectionError {
    #[error("parsePodNetworkAnnotation: pod annotation does not have \"network\" as key")]
    Empty,
    #[error(
        "parsePodNetworkAnnotation: failed to parse pod Network Attachment Selection Annotation JSON format: {0}"
    )]
    Json(String),
    #[error(
        "parsePodNetworkAnnotation: parsePodNetworkObjectName: Invalid network object (failed at '{0}')"
    )]
    ObjectSyntax(char),
    #[error(
        "parsePodNetworkAnnotation: parsePodNetworkObjectName: Failed to parse: one or more items did not match comma-delimited format (must consist of lower case alphanumeric characters). Must start and end with an alphanumeric character), mismatch @ '{0}'"
    )]
    BadName(String),
    /// Upstream accepts an empty name and fails later at the NAD lookup; we refuse it here.
    #[error("parsePodNetworkAnnotation: network name is empty in item '{0}'")]
    EmptyName(String),
    #[error(
        "parsePodNetworkAnnotation: parsePodNetworkObjectName: Failed to parse interface name: must be less than 15 chars and not contain '/' or spaces. interface name '{0}'"
    )]
    BadIfname(String),
    #[error("parsePodNetworkAnnotation: failed to mac: address {0}: invalid MAC address")]
    BadMac(String),
    #[error(
        "parsePodNetworkAnnotation: failed to validate infiniband GUID: address {0}: invalid MAC address"
    )]
    BadGuid(String),
    #[error("failed to parse CIDR {0:?}: invalid CIDR address: {0}")]
    BadCidr(String),
    #[error("failed to parse IP address {0:?}")]
    BadIp(String),
    #[error("more than one default network is specified")]
    MoreThanOneDefault,
}

/// One port mapping request (CNI `portMappings` capability).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: i64,
    pub container_port: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default, rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// A bandwidth request (CNI `bandwidth` capability).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Bandwidth {
    pub ingress_rate: i64,
    pub ingress_burst: i64,
    pub egress_rate: i64,
    pub egress_burst: i64,
}

/// One NetworkSelectionElement (upstream `pkg/types.NetworkSelectionElement`). Unknown keys,
/// `ipam-claim-reference` included, are ignored as upstream does. Keys are case-sensitive
/// (Go's decoder is not; nobody should rely on that).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkSelection {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub interface: String,
    /// Deprecated spelling of `interface`, still honoured when `interface` is empty.
    #[serde(rename = "interfaceRequest", skip_serializing)]
    pub interface_request: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(rename = "infiniband-guid", skip_serializing_if = "String::is_empty")]
    pub infiniband_guid: String,
    #[serde(rename = "portMappings", skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    #[serde(rename = "deviceID", skip_serializing_if = "String::is_empty")]
    pub device_id: String,
    #[serde(rename = "cni-args", skip_serializing_if = "Option::is_none")]
    pub cni_args: Option<Map<String, Value>>,
    /// `Some(vec![])` is meaningful: it asks for every default route to be removed.
    #[serde(rename = "default-route", skip_serializing_if = "Option::is_none")]
    pub default_route: Option<Vec<IpAddr>>,
}

/// Parses a networks annotation; elements without a namespace get `default_namespace`.
///
/// Unlike upstream (§9.18), the JSON form gets the same name and interface-name checks as the
/// comma form, so a bad name fails here with a clear message instead of at the NAD lookup or in
/// the kernel.
pub fn parse(
    annotation: &str,
    default_namespace: &str,
) -> Result<Vec<NetworkSelection>, SelectionError> {
    let annotation = annotation.trim();
    if annotation.is_empty() {
        return Err(SelectionError::Empty);
    }
    let mut elements = if annotation.contains(['[', '{', '"']) {
        serde_json::from_str::<Vec<NetworkSelection>>(annotation)
            .map_err(|e| SelectionError::Json(e.to_string()))?
    } else {
        annotation
            .split(',')
            .map(|item| parse_object_name(item.trim()))
            .collect::<Result<_, _>>()?
    };
    for element in &mut elements {
        finish(element, default_namespace)?;
    }
    Ok(elements)
}

/// Parses the default-network annotation: exactly one element, namespace defaulting to
/// `multus_namespace`.
pub fn parse_default(
    annotation: &str,
    multus_namespace: &str,
) -> Result<NetworkSelection, SelectionError> {
    let mut elements = parse(annotation, multus_namespace)?;
    match elements.len() {
        1 => Ok(elements.remove(0)),
        0 => Err(SelectionError::Empty),
        _ => Err(SelectionError::MoreThanOneDefault),
    }
}

fn parse_object_name(item: &str) -> Result<NetworkSelection, SelectionError> {
    let (namespace, rest) = match item.split('/').collect::<Vec<_>>()[..] {
        [rest] => ("", rest),
        [ns, rest] => (ns.trim(), rest),
        _ => return Err(SelectionError::ObjectSyntax('/')),
    };
    let (name, interface) = match rest.split('@').collect::<Vec<_>>()[..] {
        [name] => (name.trim(), ""),
        [name, ifname] => (name.trim(), ifname.trim()),
        _ => return Err(SelectionError::ObjectSyntax('@')),
    };
    if name.is_empty() {
        return Err(SelectionError::EmptyName(item.to_owned()));
    }
    Ok(NetworkSelection {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        interface: interface.to_owned(),
        ..NetworkSelection::default()
    })
}

/// Upstream's post-processing of every element, plus the name checks for the JSON form.
fn finish(element: &mut NetworkSelection, default_namespace: &str) -> Result<(), SelectionError> {
    if element.interface.is_empty() && !element.interface_request.is_empty() {
        element.interface = std::mem::take(&mut element.interface_request);
    }
    if element.name.is_empty() {
        return Err(SelectionError::EmptyName(element.name.clone()));
    }
    for part in [&element.namespace, &element.name] {
        if !part.is_empty() && !is_dns_label(part) {
            return Err(SelectionError::BadName(part.clone()));
        }
    }
    let ifname = &element.interface;
    if ifname.len() > 15 || ifname.contains(|c: char| c == '/' || c.is_whitespace()) {
        return Err(SelectionError::BadIfname(ifname.clone()));
    }
    if element.namespace.is_empty() {
        element.namespace = default_namespace.to_owned();
    }
    if !element.mac.is_empty() && !is_hw_address(&element.mac) {
        return Err(SelectionError::BadMac(element.mac.clone()));
    }
    if !element.infiniband_guid.is_empty() && !is_hw_address(&element.infiniband_guid) {
        return Err(SelectionError::BadGuid(element.infiniband_guid.clone()));
    }
    element.ips.iter().try_for_each(|ip| check_ip(ip))
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`, upstream's check for names in the annotation.
fn is_dns_label(s: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => alnum(f) && alnum(l) && b.iter().all(|&c| alnum(c) || c == b'-'),
        _ => false,
    }
}

/// An IP address, or a CIDR when it contains '/' (Go's `net.ParseIP` / `net.ParseCIDR`).
pub fn check_ip(ip: &str) -> Result<(), SelectionError> {
    match ip.split_once('/') {
        Some((addr, prefix)) => {
            let max = match addr.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => 32,
                Ok(IpAddr::V6(_)) => 128,
                Err(_) => return Err(SelectionError::BadCidr(ip.to_owned())),
            };
            let ok = !prefix.is_empty()
                && prefix.bytes().all(|c| c.is_ascii_digit())
                && prefix.parse::<u8>().is_ok_and(|p| p <= max);
            if ok {
                Ok(())
            } else {
                Err(SelectionError::BadCidr(ip.to_owned()))
            }
        }
        None => ip
            .parse::<IpAddr>()
            .map(|_| ())
            .map_err(|_| SelectionError::BadIp(ip.to_owned())),
    }
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets as `xx:xx:..`, `xx-xx-..` or `xxxx.xxxx.xxxx`.
fn is_hw_address(s: &str) -> bool {
    let octets_ok = |n: usize| matches!(n, 6 | 8 | 20);
    let hex = |p: &str, len: usize| p.len() == len && p.bytes().all(|c| c.is_ascii_hexdigit());
    for sep in [':', '-'] {
        if s.contains(sep) {
            let parts: Vec<&str> = s.split(sep).collect();
            return octets_ok(parts.len()) && parts.iter().all(|p| hex(p, 2));
        }
    }
    let parts: Vec<&str> = s.split('.').collect();
    octets_ok(parts.len() * 2) && parts.iter().all(|p| hex(p, 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[NetworkSelection]) -> Vec<(String, String, String)> {
        list.iter()
            .map(|e| (e.namespace.clone(), e.name.clone(), e.interface.clone()))
            .collect()
    }

    fn t(ns: &str, name: &str, ifname: &str) -> (String, String, String) {
        (ns.into(), name.into(), ifname.into())
    }

    #[test]
    fn comma_form() {
        let cases = [
            ("net1", vec![t("pod-ns", "net1", "")]),
            (
                "net1, net2",
                vec![t("pod-ns", "net1", ""), t("pod-ns", "net2", "")],
            ),
            (
                " other/net1@eth5 ,net2@ex_1",
                vec![t("other", "net1", "eth5"), t("pod-ns", "net2", "ex_1")],
            ),
            ("a / b @ c", vec![t("a", "b", "c")]),
        ];
        for (input, want) in cases {
            assert_eq!(names(&parse(input, "pod-ns").unwrap()), want, "{input}");
        }
    }

    #[test]
    fn comma_form_errors_are_upstreams() {
        let cases = [
            ("a/b/c", "Invalid network object (failed at '/')"),
            ("b@c@d", "Invalid network object (failed at '@')"),
            ("Net1", "mismatch @ 'Net1'"),
            ("ns_x/net1", "mismatch @ 'ns_x'"),
            ("-net", "mismatch @ '-net'"),
            (
                "net1@averyveryverylongname",
                "interface name 'averyveryverylongname'",
            ),
            ("net1,,net2", "network name is empty"),
            ("ns/", "network name is empty"),
        ];
        for (input, want) in cases {
            let msg = parse(input, "d").unwrap_err().to_string();
            assert!(msg.starts_with("parsePodNetworkAnnotation: "), "{msg}");
            assert!(msg.contains(want), "{input}: {msg}");
        }
        assert_eq!(parse("  ", "d"), Err(SelectionError::Empty));
    }

    #[test]
    fn json_form_every_field() {
        let input = r#"[{"name":"sriov","namespace":"net","interface":"eth9","ips":["10.1.1.5/24","fd00::1"],
            "mac":"c2:b0:57:49:47:f1","infiniband-guid":"c2:b0:57:49:47:f1:00:01","portMappings":[{"hostPort":8080,
            "containerPort":80,"protocol":"tcp"}],"bandwidth":{"ingressRate":100,"egressBurst":5},"deviceID":"0000:03:00.1",
            "cni-args":{"foo":"bar"},"default-route":["10.1.1.1"],"ipam-claim-reference":"ignored"},
            {"name":"plain","interfaceRequest":"old0"}]"#;
        let got = parse(input, "pod-ns").unwrap();
        assert_eq!(
            names(&got),
            vec![t("net", "sriov", "eth9"), t("pod-ns", "plain", "old0")]
        );
        let e = &got[0];
        assert_eq!(e.ips, vec!["10.1.1.5/24", "fd00::1"]);
        assert_eq!(e.port_mappings[0].container_port, 80);
        assert_eq!(
            e.bandwidth
                .as_ref()
                .map(|b| (b.ingress_rate, b.egress_burst)),
            Some((100, 5))
        );
        assert_eq!(e.device_id, "0000:03:00.1");
        assert_eq!(
            e.cni_args.as_ref().and_then(|a| a.get("foo")),
            Some(&Value::from("bar"))
        );
        assert_eq!(
            e.default_route,
            Some(vec!["10.1.1.1".parse::<IpAddr>().unwrap()])
        );
        let serialized = serde_json::to_value(&e.port_mappings[0]).unwrap();
        assert_eq!(
            serialized,
            serde_json::json!({"hostPort":8080,"containerPort":80,"protocol":"tcp"})
        );
    }

    #[test]
    fn json_form_errors() {
        let cases = [
            (r#"{"name":"a"}"#, "JSON format"),
            (
                r#"[{"name":"a","mac":"zz:bb"}]"#,
                "failed to mac: address zz:bb: invalid MAC address",
            ),
            (
                r#"[{"name":"a","infiniband-guid":"1:2"}]"#,
                "failed to validate infiniband GUID",
            ),
            (
                r#"[{"name":"a","ips":["10.1.1.1/33"]}]"#,
                "failed to parse CIDR \"10.1.1.1/33\"",
            ),
            (
                r#"[{"name":"a","ips":["10.1.1"]}]"#,
                "failed to parse IP address \"10.1.1\"",
            ),
            (r#"[{"name":"a","default-route":["x"]}]"#, "JSON format"),
            (r#"[{"name":"A_b"}]"#, "mismatch @ 'A_b'"),
            (r#"[{"name":"a","namespace":"Bad"}]"#, "mismatch @ 'Bad'"),
            (
                r#"[{"name":"a","interface":"eth 0"}]"#,
                "interface name 'eth 0'",
            ),
            (r#"[{"namespace":"x"}]"#, "network name is empty"),
        ];
        for (input, want) in cases {
            let msg = parse(input, "d").unwrap_err().to_string();
            assert!(msg.contains(want), "{input}: {msg}");
        }
    }

    #[test]
    fn hardware_addresses() {
        for good in [
            "c2:b0:57:49:47:f1",
            "C2-B0-57-49-47-F1",
            "c2b0.5749.47f1",
            "00:00:00:00:fe:80:00:00",
        ] {
            assert!(is_hw_address(good), "{good}");
        }
        for bad in [
            "",
            "c2:b0:57:49:47",
            "c2:b0:57:49:47:f1:",
            "g2:b0:57:49:47:f1",
            "c2b0.5749",
        ] {
            assert!(!is_hw_address(bad), "{bad}");
        }
    }

    #[test]
    fn default_network_annotation() {
        assert_eq!(
            parse_default("my-net", "kube-system").unwrap().namespace,
            "kube-system"
        );
        assert_eq!(
            parse_default("ns1/my-net@eth1", "kube-system")
                .unwrap()
                .interface,
            "eth1"
        );
        assert_eq!(
            parse_default("a,b", "kube-system"),
            Err(SelectionError::MoreThanOneDefault)
        );
        assert_eq!(
            parse_default("[]", "kube-system"),
            Err(SelectionError::Empty)
        );
    }
}
