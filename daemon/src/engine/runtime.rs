//! What each delegate is told about the pod besides its config: its CNI_ARGS (upstream's order)
//! and its capability args (`runtimeConfig`), from the runtime and from the pod's selection.
use std::path::Path;

use multus_common::CniArgs;
use multus_common::constants::k8s_args;
use serde_json::{Map, Value};

use super::netconf::capability;
use super::selection::NetworkSelection;

/// Capability keys that describe one interface: a secondary network takes them from its
/// selection only, never from the runtime's request for the cluster network.
const PER_INTERFACE_KEYS: [&str; 7] = [
    capability::IPS,
    capability::MAC,
    capability::PORT_MAPPINGS,
    capability::BANDWIDTH,
    capability::INFINIBAND_GUID,
    capability::DEVICE_ID,
    capability::DEVICE_INFO_FILE,
];

/// Whether a runtimeConfig key applies to the whole pod (every network gets it) rather than to
/// the cluster network's interface only.
pub fn is_pod_wide(key: &str) -> bool {
    !PER_INTERFACE_KEYS.contains(&key)
}

/// Keys this module writes itself, in this order, before the runtime's other args.
const LEADING_KEYS: [&str; 5] = [
    "IgnoreUnknown",
    k8s_args::POD_NAMESPACE,
    k8s_args::POD_NAME,
    k8s_args::POD_INFRA_CONTAINER_ID,
    k8s_args::POD_UID,
];

/// A delegate's CNI_ARGS: `IgnoreUnknown=true;K8S_POD_NAMESPACE=..;K8S_POD_NAME=..;
/// K8S_POD_INFRA_CONTAINER_ID=..;K8S_POD_UID=..` (empty values kept), then the runtime's other
/// args in their order, then `MAC=` and `IP=a,b` when the selection asks for them.
///
/// Upstream appends the *daemon process'* CNI_ARGS in second place, which is meaningless in the
/// thick plugin; we pass the runtime's own extra args instead. `pod_uid` fills K8S_POD_UID when
/// the runtime did not send it.
pub fn cni_args(args: &CniArgs, pod_uid: &str, mac: &str, ips: &[String]) -> String {
    let uid = args.get(k8s_args::POD_UID).unwrap_or(pod_uid);
    let value = |key: &str| args.get(key).unwrap_or_default().to_owned();
    let mut out = vec![
        ("IgnoreUnknown".to_owned(), "true".to_owned()),
        (
            k8s_args::POD_NAMESPACE.to_owned(),
            value(k8s_args::POD_NAMESPACE),
        ),
        (k8s_args::POD_NAME.to_owned(), value(k8s_args::POD_NAME)),
        (
            k8s_args::POD_INFRA_CONTAINER_ID.to_owned(),
            value(k8s_args::POD_INFRA_CONTAINER_ID),
        ),
        (k8s_args::POD_UID.to_owned(), uid.to_owned()),
    ];
    let overridden = |k: &str| (k == "MAC" && !mac.is_empty()) || (k == "IP" && !ips.is_empty());
    out.extend(
        ordered_pairs(args)
            .into_iter()
            .filter(|(k, _)| !LEADING_KEYS.contains(&k.as_str()) && !overridden(k)),
    );
    if !mac.is_empty() {
        out.push(("MAC".into(), mac.to_owned()));
    }
    if !ips.is_empty() {
        out.push(("IP".into(), ips.join(",")));
    }
    out.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// The runtime's pairs in the order it sent them (the parsed map is sorted).
fn ordered_pairs(args: &CniArgs) -> Vec<(String, String)> {
    let from_raw: Vec<(String, String)> = args
        .raw
        .split(';')
        .filter_map(|item| item.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| args.pairs.contains_key(k))
        .collect();
    if from_raw.len() == args.pairs.len() {
        from_raw
    } else {
        args.pairs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The runtime's `runtimeConfig` from the shim's stdin, every key of it. Upstream keeps only 7
/// known keys (§9.15) and so drops e.g. `dns`, `cgroupPath` or the pod annotations CRI passes.
pub fn runtime_config(stdin_config: &Value) -> Map<String, Value> {
    stdin_config
        .get("runtimeConfig")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The cluster network's capability args: the runtime's own, untouched. As upstream
/// (`mergeCNIRuntimeConfig` skips the master plugin), what a default-network selection asks for
/// reaches the cluster network only as `MAC=`/`IP=` CNI_ARGS ([`cni_args`]), never in its
/// `runtimeConfig`.
pub fn cluster_capabilities(runtime: &Map<String, Value>) -> Map<String, Value> {
    runtime.clone()
}

/// A secondary network's capability args: the runtime's pod-wide keys, and the per-interface
/// keys from the selection only. Upstream lets secondaries inherit the runtime's
/// `portMappings`/`bandwidth` (§9.15), which applies the cluster network's host ports and limits
/// to every other interface. `device_info_file` is set when the selection names a device.
pub fn secondary_capabilities(
    runtime: &Map<String, Value>,
    selection: &NetworkSelection,
    device_info_file: Option<String>,
) -> Map<String, Value> {
    let mut caps: Map<String, Value> = runtime
        .iter()
        .filter(|(k, _)| is_pod_wide(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    caps.extend(selection_values(selection));
    if let Some(file) = device_info_file.filter(|_| !selection.device_id.is_empty()) {
        caps.insert(capability::DEVICE_INFO_FILE.into(), file.into());
    }
    caps
}

/// Where a delegate's device-info file goes (read by SR-IOV-style plugins and by
/// network-status' `device-info`): `<deviceInfoDir>/cni/<delegate name with '/'→'-'>-
/// <containerID>_<ifname>`, upstream's name.
pub fn device_info_file(
    device_info_dir: &Path,
    delegate_name: &str,
    container_id: &str,
    ifname: &str,
) -> String {
    let file = format!(
        "{}-{container_id}_{ifname}",
        delegate_name.replace('/', "-")
    );
    device_info_dir
        .join("cni")
        .join(file)
        .to_string_lossy()
        .into_owned()
}

/// The capability values a selection requests, under their CNI capability names.
fn selection_values(sel: &NetworkSelection) -> Map<String, Value> {
    let mut caps = Map::new();
    if !sel.ips.is_empty() {
        caps.insert(capability::IPS.into(), sel.ips.clone().into());
    }
    if !sel.mac.is_empty() {
        caps.insert(capability::MAC.into(), sel.mac.clone().into());
    }
    if !sel.port_mappings.is_empty() {
        caps.insert(
            capability::PORT_MAPPINGS.into(),
            serde_json::to_value(&sel.port_mappings).unwrap_or_default(),
        );
    }
    if let Some(bw) = &sel.bandwidth {
        caps.insert(
            capability::BANDWIDTH.into(),
            serde_json::to_value(bw).unwrap_or_default(),
        );
    }
    if !sel.infiniband_guid.is_empty() {
        caps.insert(
            capability::INFINIBAND_GUID.into(),
            sel.infiniband_guid.clone().into(),
        );
    }
    if !sel.device_id.is_empty() {
        caps.insert(capability::DEVICE_ID.into(), sel.device_id.clone().into());
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(raw: &str) -> CniArgs {
        CniArgs::parse(raw).unwrap()
    }

    #[test]
    fn cni_args_order() {
        let cases = [
            (
                "K8S_POD_UID=u1;K8S_POD_NAME=web;FOO=1;K8S_POD_NAMESPACE=ns;K8S_POD_INFRA_CONTAINER_ID=c1;BAR=2",
                "",
                vec![],
                "IgnoreUnknown=true;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=c1;K8S_POD_UID=u1;FOO=1;BAR=2",
            ),
            (
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;MAC=old",
                "c2:b0:57:49:47:f1",
                vec!["10.1.1.5/24".to_string(), "fd00::5/64".to_string()],
                "IgnoreUnknown=true;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=;K8S_POD_UID=from-pod;MAC=c2:b0:57:49:47:f1;IP=10.1.1.5/24,fd00::5/64",
            ),
        ];
        for (raw, mac, ips, want) in cases {
            assert_eq!(cni_args(&args(raw), "from-pod", mac, &ips), want);
        }
    }

    #[test]
    fn cni_args_without_raw_keep_every_pair() {
        let a = CniArgs::from_pairs(
            String::new(),
            [
                ("K8S_POD_NAME".into(), "p".into()),
                ("Z".into(), "9".into()),
            ],
        );
        assert!(
            cni_args(&a, "", "", &[])
                .ends_with("K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=;K8S_POD_UID=;Z=9")
        );
    }

    fn runtime() -> Map<String, Value> {
        runtime_config(&json!({"runtimeConfig": {
            "portMappings": [{"hostPort": 80, "containerPort": 8080}],
            "bandwidth": {"ingressRate": 1},
            "dns": {"servers": ["10.0.0.10"]},
            "io.kubernetes.cri.pod-annotations": {"a": "b"}
        }}))
    }

    #[test]
    fn d13_cluster_network_gets_only_the_runtime_keys() {
        let caps = cluster_capabilities(&runtime());
        assert_eq!(Value::Object(caps), Value::Object(runtime()));
        assert!(runtime_config(&json!({"runtimeConfig": 3})).is_empty());
    }

    #[test]
    fn secondary_gets_selection_values_not_runtime_interface_keys() {
        let sel: NetworkSelection = serde_json::from_value(json!({
            "name": "n", "ips": ["10.1.1.5/24"], "mac": "c2:b0:57:49:47:f1", "infiniband-guid": "c2:b0:57:49:47:f1:00:01",
            "portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "udp"}],
            "bandwidth": {"egressRate": 7}, "deviceID": "0000:03:00.1"
        }))
        .unwrap();
        let dir = crate::config::Config::default().device_info_dir;
        let file = device_info_file(&dir, "ns/n", "cid", "net1");
        assert_eq!(file, "/var/run/k8s.cni.cncf.io/devinfo/cni/ns-n-cid_net1");
        let caps = secondary_capabilities(&runtime(), &sel, Some(file.clone()));
        let want = json!({
            "dns": {"servers": ["10.0.0.10"]}, "io.kubernetes.cri.pod-annotations": {"a": "b"},
            "ips": ["10.1.1.5/24"], "mac": "c2:b0:57:49:47:f1",
            "portMappings": [{"hostPort": 1, "containerPort": 2, "protocol": "udp"}],
            "bandwidth": {"ingressRate": 0, "ingressBurst": 0, "egressRate": 7, "egressBurst": 0},
            "infinibandGUID": "c2:b0:57:49:47:f1:00:01", "deviceID": "0000:03:00.1", "CNIDeviceInfoFile": file
        });
        assert_eq!(Value::Object(caps), want);
        let plain = NetworkSelection {
            name: "n".into(),
            ..Default::default()
        };
        let caps = secondary_capabilities(&runtime(), &plain, Some("f".into()));
        assert!(!caps.contains_key("portMappings") && !caps.contains_key("CNIDeviceInfoFile"));
    }
}
