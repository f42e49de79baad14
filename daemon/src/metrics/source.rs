//! A [`ClusterSource`] wrapper that times and counts every pod/NAD lookup and network-status
//! write, so both sources (Kubernetes and standalone files) are measured the same way without
//! either knowing about metrics. Each call is also a span (`pod.lookup`, `nad.lookup`,
//! `network_status.patch`) under the request's trace.
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tracing::Instrument;

use super::Metrics;
use crate::source::{ClusterSource, EventType, NadInfo, PodInfo, SourceError};

/// `inner` with its calls recorded under `source` (`kubernetes`, `files`).
pub struct MeteredSource {
    inner: Arc<dyn ClusterSource>,
    source: &'static str,
    metrics: Metrics,
}

impl MeteredSource {
    pub fn new(inner: Arc<dyn ClusterSource>, source: &'static str, metrics: Metrics) -> Self {
        Self {
            inner,
            source,
            metrics,
        }
    }

    fn lookup<T>(&self, kind: &str, started: Instant, r: &Result<Option<T>, SourceError>) {
        let outcome = match r {
            Ok(Some(_)) => "found",
            Ok(None) => "not_found",
            Err(_) => "error",
        };
        self.metrics
            .kube_lookup(kind, self.source, outcome, started.elapsed());
    }
}

#[async_trait]
impl ClusterSource for MeteredSource {
    fn sync(&self) -> tokio::sync::watch::Receiver<crate::source::SyncState> {
        self.inner.sync()
    }

    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, SourceError> {
        let started = Instant::now();
        let span = tracing::info_span!("pod.lookup", pod.namespace = %namespace, pod.name = %name, source = self.source);
        let r = self.inner.pod(namespace, name).instrument(span).await;
        self.lookup("pod", started, &r);
        r
    }

    async fn nad(&self, namespace: &str, name: &str) -> Result<Option<NadInfo>, SourceError> {
        let started = Instant::now();
        let span = tracing::info_span!("nad.lookup", nad.namespace = %namespace, nad.name = %name, source = self.source);
        let r = self.inner.nad(namespace, name).instrument(span).await;
        self.lookup("nad", started, &r);
        r
    }

    async fn set_network_status(
        &self,
        pod: &PodInfo,
        status_json: &str,
    ) -> Result<bool, SourceError> {
        let started = Instant::now();
        let span = tracing::info_span!("network_status.patch", pod.namespace = %pod.namespace, pod.name = %pod.name, source = self.source);
        let r = self
            .inner
            .set_network_status(pod, status_json)
            .instrument(span)
            .await;
        let outcome = match &r {
            Ok(true) => "written",
            Ok(false) => "pod_gone",
            Err(_) => "error",
        };
        self.metrics.status_patch(outcome, started.elapsed());
        r
    }

    async fn record_event(&self, pod: &PodInfo, kind: EventType, reason: &str, message: &str) {
        self.inner.record_event(pod, kind, reason, message).await;
    }
}
