//! Normal `AddedInterface` events (behaviour ref §4.9 step 3): one per delegate whose result has
//! interfaces or IPs, with upstream's message `Add <ifname> [<ip/cidr> ...] from <name>`.
//!
//! Sent only once the whole ADD succeeded (upstream sends them as each delegate succeeds, so a
//! rolled-back ADD leaves events for interfaces that no longer exist), from a detached task: an
//! event is informational and must neither fail nor slow the request.
use std::sync::Arc;

use serde_json::Value;

use super::Delegate;
use super::cache::Record;
use crate::source::{ClusterSource, EventType, PodInfo};

/// The event reason, as upstream.
pub const ADDED_INTERFACE: &str = "AddedInterface";

/// Records the AddedInterface events of `record` for `pod` from a detached task, so not even
/// their formatting is on the ADD's path. The task is short: a source's `record_event` only
/// queues the event (the Kubernetes source posts it from its bounded queue, see
/// `source::kube::events`).
pub(super) fn added_interfaces(source: Arc<dyn ClusterSource>, pod: PodInfo, record: Record) {
    tokio::spawn(async move {
        for message in messages(&record) {
            source
                .record_event(&pod, EventType::Normal, ADDED_INTERFACE, &message)
                .await;
        }
    });
}

/// The messages, in delegate order.
pub(super) fn messages(record: &Record) -> Vec<String> {
    record
        .delegates
        .iter()
        .filter_map(|en| en.result.as_ref().and_then(|r| message(&en.delegate, r)))
        .collect()
}

/// Upstream formats the addresses as Go's `%v` of a string slice: `[a b]`.
fn message(d: &Delegate, result: &Value) -> Option<String> {
    let current = multus_common::result::convert(result, d.cni_version(), "1.0.0").ok()?;
    let list = |key: &str| {
        current
            .get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (interfaces, ips) = (list("interfaces"), list("ips"));
    if interfaces.is_empty() && ips.is_empty() {
        return None;
    }
    let addresses: Vec<&str> = ips
        .iter()
        .filter_map(|ip| ip.get("address").and_then(Value::as_str))
        .collect();
    Some(format!(
        "Add {} [{}] from {}",
        d.ifname,
        addresses.join(" "),
        d.name
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;
    use crate::engine::cache::{Entry, SCHEMA_VERSION, State};

    fn entry(ifname: &str, version: &str, result: Option<Value>) -> Entry {
        Entry {
            delegate: Delegate {
                name: format!("default/{ifname}-net"),
                ifname: ifname.into(),
                config: json!({"cniVersion": version, "name": "n", "type": "x"})
                    .try_into()
                    .unwrap(),
                capability_args: Map::new(),
                cni_args: String::new(),
                is_default: false,
                default_route: None,
            },
            state: State::Added,
            result,
        }
    }

    #[test]
    fn one_message_per_delegate_with_a_non_empty_result() {
        let record = Record {
            schema_version: SCHEMA_VERSION,
            container_id: "c".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            pod: None,
            result_version: "1.0.0".into(),
            delegates: vec![
                entry(
                    "eth0",
                    "1.0.0",
                    Some(json!({"cniVersion": "1.0.0",
                    "interfaces": [{"name": "eth0"}],
                    "ips": [{"address": "10.1.0.5/24"}, {"address": "fd00::5/64"}]})),
                ),
                entry(
                    "net1",
                    "1.0.0",
                    Some(json!({"cniVersion": "1.0.0", "dns": {}})),
                ),
                entry(
                    "net2",
                    "0.2.0",
                    Some(json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.5.0.2/16"}})),
                ),
                entry(
                    "net3",
                    "1.0.0",
                    Some(json!({"cniVersion": "1.0.0", "interfaces": [{"name": "net3"}]})),
                ),
                entry("net4", "1.0.0", None),
            ],
            from_upstream: false,
        };
        assert_eq!(
            messages(&record),
            vec![
                "Add eth0 [10.1.0.5/24 fd00::5/64] from default/eth0-net",
                "Add net2 [10.5.0.2/16] from default/net2-net",
                "Add net3 [] from default/net3-net",
            ]
        );
    }
}
