//! The Kubernetes API behind [`DraApi`]: the pod (full, for its status), the served
//! `resource.k8s.io` version (discovered once; a failure is asked again only after a back-off
//! of 1 s doubling to 60 s, so a cluster without DRA costs one request per back-off, not one per
//! ADD), claims at that version, and the node's slice watch.
use std::time::Duration;

use ::kube::Client;
use ::kube::api::Api;
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::claims::PodClaims;
use super::version::{self, ApiVersion};
use super::{DraApi, DraError, NodeSlices};
use crate::source::PodInfo;
use crate::source::kube::retry::{Budget, found, with_retries};

/// Pause before discovery is asked again after a failure, doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
pub(super) const MAX_RETRY: Duration = Duration::from_secs(60);

/// The Kubernetes API behind [`DraApi`].
pub struct KubeDraApi {
    client: Client,
    budget: Budget,
    discovered: Mutex<Discovery>,
}

/// What discovery found so far.
#[derive(Debug, Default)]
enum Discovery {
    #[default]
    Unknown,
    Served(ApiVersion),
    Failed {
        retry_at: Instant,
        failures: u32,
        /// `None`: the group is not served; else why asking failed.
        reason: Option<String>,
    },
}

impl Discovery {
    /// The answer without asking: the version, or the failure while its back-off runs.
    fn known(&self, pod: &PodInfo) -> Option<Result<ApiVersion, DraError>> {
        match self {
            Discovery::Unknown => None,
            Discovery::Served(v) => Some(Ok(*v)),
            Discovery::Failed {
                retry_at, reason, ..
            } => {
                let retry_in = retry_at.checked_duration_since(Instant::now())?;
                Some(Err(failure(pod, reason.clone(), retry_in)))
            }
        }
    }

    fn failures(&self) -> u32 {
        match self {
            Discovery::Failed { failures, .. } => *failures,
            _ => 0,
        }
    }
}

fn failure(pod: &PodInfo, reason: Option<String>, retry_in: Duration) -> DraError {
    match reason {
        None => DraError::NotServed {
            pod: format!("{}/{}", pod.namespace, pod.name),
        },
        Some(reason) => DraError::Discovery { reason, retry_in },
    }
}

impl KubeDraApi {
    pub fn new(client: Client, budget: Budget) -> Self {
        Self {
            client,
            budget,
            discovered: Mutex::new(Discovery::Unknown),
        }
    }
}

pub(super) fn retry_pause(failures: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(MAX_RETRY)
}

#[async_trait]
impl DraApi for KubeDraApi {
    async fn pod_claims(&self, pod: &PodInfo) -> Result<Option<PodClaims>, DraError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let what = format!(
            "getting pod {}/{} for its resource claims",
            pod.namespace, pod.name
        );
        let found = found(with_retries(&what, self.budget, || api.get(&pod.name)).await)?;
        Ok(found
            .filter(|p| p.metadata.uid.as_deref() == Some(pod.uid.as_str()) || pod.uid.is_empty())
            .map(|p| PodClaims::from_pod(&p)))
    }

    async fn version(&self, pod: &PodInfo) -> Result<ApiVersion, DraError> {
        // Held across the discovery: concurrent ADDs wait for one answer instead of asking too.
        let mut state = self.discovered.lock().await;
        if let Some(known) = state.known(pod) {
            return known;
        }
        let failures = state.failures().saturating_add(1);
        let reason = match version::discover(&self.client, self.budget).await {
            Ok(Some(v)) => {
                tracing::info!(api_version = v.as_str(), "resource.k8s.io version chosen");
                *state = Discovery::Served(v);
                return Ok(v);
            }
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        };
        let pause = retry_pause(failures);
        tracing::warn!(
            reason = reason.as_deref().unwrap_or("not served"),
            retry_in_ms = pause.as_millis() as u64,
            "resource.k8s.io discovery failed"
        );
        *state = Discovery::Failed {
            retry_at: Instant::now() + pause,
            failures,
            reason: reason.clone(),
        };
        Err(failure(pod, reason, pause))
    }

    async fn claim(
        &self,
        version: ApiVersion,
        namespace: &str,
        name: &str,
    ) -> Result<Option<version::Allocation>, DraError> {
        Ok(version
            .claim(&self.client, self.budget, namespace, name)
            .await?)
    }

    fn watch_slices(&self, version: ApiVersion, node: &str) -> NodeSlices {
        NodeSlices::watch(self.client.clone(), version, node)
    }
}
