//! Where pods and NetworkAttachmentDefinitions come from: one trait, implemented by the
//! file-backed standalone source (`files`) and by the Kubernetes API (`kube`), so the engine and
//! every test run the same code whichever is behind it.
pub mod files;
pub mod kube;
#[cfg(test)]
pub(crate) mod memory;

use std::collections::BTreeMap;

use async_trait::async_trait;

/// What the daemon needs to know of a pod (nothing more is kept, so caches stay small).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub annotations: BTreeMap<String, String>,
}

/// A NetworkAttachmentDefinition (`k8s.cni.cncf.io/v1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NadInfo {
    pub namespace: String,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    /// `spec.config`, possibly empty (then the config comes from `confDir`).
    pub config: String,
}

/// A lookup or write against the pod/NAD source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source could not be reached or answered with an error; worth retrying later.
    #[error("{what}: {reason}")]
    Unavailable { what: String, reason: String },
    /// The source answered with something that is not a valid object.
    #[error("{what}: invalid object: {reason}")]
    Invalid { what: String, reason: String },
}

/// Pods and NADs, looked up by namespace and name.
#[async_trait]
pub trait ClusterSource: Send + Sync + 'static {
    /// The pod, or `None` when it does not exist.
    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, SourceError>;
    /// The NAD, or `None` when it does not exist.
    async fn nad(&self, namespace: &str, name: &str) -> Result<Option<NadInfo>, SourceError>;
    /// Writes the `k8s.v1.cni.cncf.io/network-status` annotation of the pod. `Ok(false)` when
    /// the pod no longer exists (not an error for the caller to fail on).
    async fn set_network_status(
        &self,
        pod: &PodInfo,
        status_json: &str,
    ) -> Result<bool, SourceError>;
    /// Records a Normal event about the pod (e.g. `AddedInterface`). Best effort: an
    /// implementation bounds the time it takes and only logs a failure, never returns one.
    async fn record_event(&self, _pod: &PodInfo, _reason: &str, _message: &str) {}
}
