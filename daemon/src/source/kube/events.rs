//! Pod events (Normal or Warning) as core/v1 Events, shaped like client-go's recorder (upstream
//! Multus' way): name `<pod>.<hex nanoseconds>`, source component `multus`, count 1. One POST,
//! bounded by the per-call timeout and never retried: an event is informational, so a failure is
//! only logged.
//!
//! Recording never waits for the API server: [`Recorder::record`] puts the event on a bounded
//! queue and returns; one task posts the queue's events one at a time (as client-go's broadcaster
//! does per sink), so a node adds at most one event request in flight to the API server's load
//! however many pods start at once. A full queue drops the event (client-go's queue holds 1000
//! and drops too): a slow or unreachable API server costs no memory beyond the queue and never
//! slows an ADD.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::kube::Client;
use ::kube::api::{Api, PostParams};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::source::{EventType, PodInfo};

/// The component name upstream's recorder reports.
pub const COMPONENT: &str = "multus";

/// Events queued for posting at most (client-go's `maxQueuedEvents`).
pub const QUEUE: usize = 1000;

/// The bounded event queue and the task posting it; the task stops when this is dropped.
#[derive(Debug)]
pub struct Recorder {
    queue: mpsc::Sender<Event>,
    dropped: AtomicU64,
    poster: JoinHandle<()>,
}

impl Recorder {
    /// Starts the posting task (inside a tokio runtime); each POST is bounded by `timeout`.
    pub fn start(client: Client, timeout: Duration) -> Self {
        Self::with_capacity(client, timeout, QUEUE)
    }

    fn with_capacity(client: Client, timeout: Duration, capacity: usize) -> Self {
        let (queue, mut events) = mpsc::channel::<Event>(capacity);
        let poster = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                post(client.clone(), event, timeout).await;
            }
        });
        Self {
            queue,
            dropped: AtomicU64::new(0),
            poster,
        }
    }

    /// Queues `event` for posting, without waiting; a full queue drops it (logged on the first
    /// drop and every 100th after it).
    pub fn record(&self, event: Event) {
        let Err(refused) = self.queue.try_send(event) else {
            return;
        };
        let event = match refused {
            mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => e,
        };
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if dropped % 100 == 1 {
            tracing::warn!(pod.namespace = ?event.metadata.namespace, pod.name = ?event.involved_object.name,
                event.reason = ?event.reason, dropped, queue = self.queue.max_capacity(),
                "event queue full (the API server is slow or unreachable); event dropped");
        }
    }

    /// Events dropped so far because the queue was full.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.poster.abort();
    }
}

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
    use std::sync::Arc;

    use http_body_util::BodyExt;
    use tokio::sync::Semaphore;

    use super::*;

    /// A client whose API server hands each request body to `seen`, then answers only once
    /// `answers` gives it a permit (an event POST echoes the event back, as the API server does).
    fn held_client(seen: mpsc::UnboundedSender<Event>, answers: Arc<Semaphore>) -> Client {
        let service = tower::service_fn(move |req: http::Request<::kube::client::Body>| {
            let (seen, answers) = (seen.clone(), answers.clone());
            async move {
                let body = req.into_body().collect().await?.to_bytes();
                let event: Event = serde_json::from_slice(&body)?;
                let _ = seen.send(event);
                answers.acquire().await?.forget();
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    http::Response::builder()
                        .status(201)
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(body))?,
                )
            }
        });
        Client::new(service, "default")
    }

    fn pod() -> PodInfo {
        PodInfo {
            namespace: "app".into(),
            name: "web".into(),
            uid: "uid-1".into(),
            ..PodInfo::default()
        }
    }

    #[tokio::test]
    async fn recording_never_waits_for_the_api_server_and_a_full_queue_drops() {
        let (seen_tx, mut seen) = mpsc::unbounded_channel();
        let answers = Arc::new(Semaphore::new(0));
        let recorder = Recorder::with_capacity(
            held_client(seen_tx, answers.clone()),
            Duration::from_secs(600),
            4,
        );
        let ev = |i: usize| event(&pod(), EventType::Normal, &format!("R{i}"), "m", None);
        // `record` is not async: it cannot wait for the POST, which the server holds unanswered.
        recorder.record(ev(0));
        let first = seen.recv().await.expect("the first event is posted");
        assert_eq!(first.reason.as_deref(), Some("R0"));
        // R0 is in flight and unanswered: 4 more fill the queue, the 2 after them are dropped.
        for i in 1..=6 {
            recorder.record(ev(i));
        }
        assert_eq!(recorder.dropped(), 2);
        answers.add_permits(5);
        for i in 1..=4 {
            let posted = seen.recv().await.expect("queued events are posted");
            assert_eq!(
                posted.reason,
                Some(format!("R{i}")),
                "one at a time, in order"
            );
        }
        // Room again once the queue drained.
        recorder.record(ev(7));
        let posted = seen.recv().await.expect("a later event is posted");
        assert_eq!(posted.reason.as_deref(), Some("R7"));
        assert_eq!(recorder.dropped(), 2);
    }

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
