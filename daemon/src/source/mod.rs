//! Where pods and NetworkAttachmentDefinitions come from: one trait, implemented by the
//! file-backed standalone source (`files`) and by the Kubernetes API (`kube`), so the engine and
//! every test run the same code whichever is behind it.
pub mod files;
pub mod kube;
#[cfg(test)]
pub(crate) mod memory;
pub mod offline;

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::watch;

/// What the daemon needs to know of a pod (nothing more is kept, so caches stay small).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub annotations: BTreeMap<String, String>,
}

/// Pod annotation set by the kubelet on static pods (`api` for pods from the API server).
pub const CONFIG_SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";

impl PodInfo {
    /// A static pod (its mirror pod's UID is not the one the kubelet gives the runtime), as
    /// upstream's `IsStaticPod`.
    pub fn is_static(annotations: &BTreeMap<String, String>) -> bool {
        annotations
            .get(CONFIG_SOURCE_ANNOTATION)
            .is_some_and(|s| s != "api")
    }
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

/// A core/v1 Event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Informational (e.g. `AddedInterface`).
    Normal,
    /// Something the pod's owner should look at (e.g. `NoNetworkFound`).
    Warning,
}

impl EventType {
    /// The `type` field as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
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
    /// network-status was not written: the pod under this name now has another UID than the
    /// one the ADD is for (it was deleted and re-created meanwhile). Upstream's words.
    #[error(
        "SetNetworkStatus: expected pod {namespace}/{name} UID {expected:?} but got {actual:?} from Kube API"
    )]
    Replaced {
        namespace: String,
        name: String,
        expected: String,
        actual: String,
    },
}

/// Which of a source's caches hold a complete first listing. A lookup before that would be a
/// live API call (or a wrong "not found"), so ADD waits for it and health reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncState {
    pub pods: bool,
    pub nads: bool,
}

impl SyncState {
    /// A source without caches (standalone files, tests): synced from the start.
    pub const SYNCED: Self = Self {
        pods: true,
        nads: true,
    };
    pub const PENDING: Self = Self {
        pods: false,
        nads: false,
    };

    pub fn is_synced(&self) -> bool {
        self.pods && self.nads
    }

    /// What has not synced, in words for an error message or a log line.
    pub fn pending(&self) -> &'static str {
        match (self.pods, self.nads) {
            (false, false) => "the pod cache and the NetworkAttachmentDefinition cache",
            (false, true) => "the pod cache",
            (true, false) => "the NetworkAttachmentDefinition cache",
            (true, true) => "nothing",
        }
    }
}

/// Pods and NADs, looked up by namespace and name.
#[async_trait]
pub trait ClusterSource: Send + Sync + 'static {
    /// Follows the sync of the source's caches. The default is a source without caches, synced
    /// from the start.
    fn sync(&self) -> watch::Receiver<SyncState> {
        watch::channel(SyncState::SYNCED).1
    }
    /// The pod, or `None` when it does not exist.
    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, SourceError>;
    /// The NAD, or `None` when it does not exist.
    async fn nad(&self, namespace: &str, name: &str) -> Result<Option<NadInfo>, SourceError>;
    /// Writes the `k8s.v1.cni.cncf.io/network-status` annotation of the pod. `Ok(false)` when
    /// the pod no longer exists (not an error for the caller to fail on);
    /// [`SourceError::Replaced`] when a pod of another UID has its name now (as upstream, the
    /// ADD fails).
    async fn set_network_status(
        &self,
        pod: &PodInfo,
        status_json: &str,
    ) -> Result<bool, SourceError>;
    /// Records an event of `kind` about the pod (e.g. Normal `AddedInterface`, Warning
    /// `NoNetworkFound`). Best effort: an implementation never waits for the API server here (it
    /// queues the event, bounded, and posts it in the background) and only logs a failure,
    /// never returns one.
    async fn record_event(&self, _pod: &PodInfo, _kind: EventType, _reason: &str, _message: &str) {}
}
