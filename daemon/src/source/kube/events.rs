//! Pod events (Normal or Warning) as core/v1 Events, shaped like client-go's recorder (upstream
//! Multus' way): name `<pod>.<hex nanoseconds>`, source component `multus`, count 1. One POST,
//! bounded by the per-call timeout and never retried: an event is informational, so a failure is
//! only logged.
use std::time::Duration;

use ::kube::Client;
use ::kube::api::{Api, PostParams};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::source::{EventType, PodInfo};

/// The component name upstream's recorder reports.
pub const COMPONENT: &str = "multus";

/// An event of `kind` about `pod`.
pub fn event(
    pod: &PodInfo,
    kind: EventType,
    reason: &str,
    message: &str,
    node: Option<&str>,
) -> Event {
    let now = Timestamp::now();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", pod.name, now.as_nanosecond())),
            namespace: Some(pod.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
            ..ObjectReference::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(kind.as_str().into()),
        source: Some(EventSource {
            component: Some(COMPONENT.into()),
            host: node.map(str::to_owned),
        }),
        reporting_component: Some(COMPONENT.into()),
        reporting_instance: node.map(str::to_owned),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    }
}

/// Posts `event` in its namespace within `timeout`; logs instead of failing.
pub async fn post(client: Client, event: Event, timeout: Duration) {
    let namespace = event.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Event> = Api::namespaced(client, &namespace);
    let reason = event.reason.clone().unwrap_or_default();
    let pod = event.involved_object.name.clone().unwrap_or_default();
    match tokio::time::timeout(timeout, api.create(&PostParams::default(), &event)).await {
        Ok(Ok(_)) => {
            tracing::debug!(pod.namespace = %namespace, pod.name = %pod, event.reason = %reason, "event posted");
        }
        Ok(Err(error)) => {
            tracing::warn!(pod.namespace = %namespace, pod.name = %pod, event.reason = %reason, error = %error, "posting event failed");
        }
        Err(_) => {
            tracing::warn!(pod.namespace = %namespace, pod.name = %pod, event.reason = %reason,
                timeout_ms = timeout.as_millis() as u64, "posting event timed out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_the_pod_and_upstreams_component() {
        let pod = PodInfo {
            namespace: "app".into(),
            name: "web".into(),
            uid: "uid-1".into(),
            ..PodInfo::default()
        };
        let e = event(
            &pod,
            EventType::Normal,
            "AddedInterface",
            "Add net1 [10.1.0.2/24] from app/sec",
            Some("node-a"),
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v["involvedObject"],
            serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "namespace": "app", "name": "web", "uid": "uid-1"})
        );
        assert_eq!(v["type"], "Normal");
        assert_eq!(v["reason"], "AddedInterface");
        assert_eq!(v["message"], "Add net1 [10.1.0.2/24] from app/sec");
        assert_eq!(
            v["source"],
            serde_json::json!({"component": "multus", "host": "node-a"})
        );
        assert_eq!(v["metadata"]["namespace"], "app");
        assert!(v["metadata"]["name"].as_str().unwrap().starts_with("web."));
        assert_eq!(v["count"], 1);
        let warning = event(&pod, EventType::Warning, "NoNetworkFound", "m", None);
        assert_eq!(serde_json::to_value(&warning).unwrap()["type"], "Warning");
    }
}
