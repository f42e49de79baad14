//! Devices from Dynamic Resource Allocation (upstream `pkg/draclient`, §4.6 step 2): for a pod
//! with `status.resourceClaimStatuses` (or `status.extendedResourceClaimStatus`), each
//! ResourceClaim's allocated devices are looked up in the node's ResourceSlices, and a device
//! whose slice entry carries `k8s.cni.cncf.io/deviceID` and `k8s.cni.cncf.io/resourceName` is
//! merged into the same per-resource device map the kubelet fills. A NAD's
//! `k8s.v1.cni.cncf.io/resourceName` then takes its `deviceID`/`pciBusID` from a claim exactly as
//! from a device plugin. Upstream's rules: a claim without allocation fails the ADD; a device
//! not in any slice, or without either attribute, is skipped (a claim may mix a NIC with a
//! GPU); for the extended-resource claim the mapping's resourceName must match the device's,
//! and anything missing fails. The whole lookup is bounded by upstream's 20 s.
//!
//! API calls and their cost:
//! * the pod, full (`get` on `pods`, already granted): only for an ADD with a NAD that names a
//!   resource, because the node's pod cache is metadata-only and claims live in the status.
//! * `resource.k8s.io` discovery: once, the version cached (a failure is retried with back-off,
//!   not on every ADD).
//! * ResourceClaims (`get`): per ADD, one per claim of the pod. No cache is kept: ADD runs once
//!   per sandbox, so a cache keyed by pod would only ever serve retries of a failed ADD.
//! * ResourceSlices (`list`, `watch`): ONE watch for the daemon's node with
//!   `spec.nodeName=<node>`, started on the first pod that has claims (a cluster without DRA
//!   never sees it), never a list per ADD.
mod api;
mod claims;
mod slices;
mod version;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use crate::kubelet::{DeviceSource, KubeletError, ResourceMap};
use crate::source::{PodInfo, SourceError};
pub use api::KubeDraApi;
pub use claims::{ExtendedClaim, PodClaims};
use claims::{Pairs, claim_devices, extended_devices};
pub use slices::NodeSlices;
pub use version::{
    Allocated, ApiVersion, DEVICE_ID_ATTR, DeviceAttrs, RESOURCE_NAME_ATTR, SliceDevices,
};

/// Upstream's bound on the whole DRA lookup of one pod.
pub const DRA_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a pod's DRA devices could not be told.
#[derive(Debug, thiserror::Error)]
pub enum DraError {
    #[error("{0}")]
    Api(#[from] SourceError),
    #[error(
        "pod {pod} has resource claims but the API server serves no resource.k8s.io version the daemon reads (v1, v1beta2, v1beta1)"
    )]
    NotServed { pod: String },
    #[error("resource.k8s.io discovery failed, retried in {retry_in:?}: {reason}")]
    Discovery { reason: String, retry_in: Duration },
    #[error("resource claim {namespace}/{name} not found")]
    ClaimNotFound { namespace: String, name: String },
    /// Upstream's words.
    #[error("claim {name} has no device allocation")]
    NotAllocated { name: String },
    #[error("pod {pod} has resource claims but no spec.nodeName and MULTUS_NODE_NAME is unset")]
    NoNode { pod: String },
    #[error("ResourceSlices of node {node} not available: {reason}")]
    Slices { node: String, reason: String },
    /// Upstream's words (extended-resource claim).
    #[error("request {request} not found in claim {claim}")]
    RequestNotFound { request: String, claim: String },
    #[error(
        "device {device} not found for claim resource {driver}/{pool} in any matching resource slice"
    )]
    DeviceNotInAnySlice {
        device: String,
        driver: String,
        pool: String,
    },
    #[error(
        "device {device} missing required attribute {RESOURCE_NAME_ATTR} (must match NAD k8s.v1.cni.cncf.io/resourceName and extended mapping {mapping:?})"
    )]
    MissingResourceName { device: String, mapping: String },
    #[error(
        "device {device}: {RESOURCE_NAME_ATTR} is {found:?} but extended resource mapping for request {request:?} is {mapping:?}"
    )]
    ResourceNameMismatch {
        device: String,
        found: String,
        request: String,
        mapping: String,
    },
    #[error("pod {pod}: no answer within {DRA_TIMEOUT:?}")]
    Timeout { pod: String },
}

/// Where [`Dra`] looks claims and slices up (the API, or a test's fixed answers).
#[async_trait]
pub trait DraApi: Send + Sync + 'static {
    /// The pod's claims; `None` when the pod is gone.
    async fn pod_claims(&self, pod: &PodInfo) -> Result<Option<PodClaims>, DraError>;
    /// The served version (discovered once).
    async fn version(&self, pod: &PodInfo) -> Result<ApiVersion, DraError>;
    /// A claim's allocation; `None` when the claim does not exist.
    async fn claim(
        &self,
        version: ApiVersion,
        namespace: &str,
        name: &str,
    ) -> Result<Option<version::Allocation>, DraError>;
    /// Starts watching `node`'s slices.
    fn watch_slices(&self, version: ApiVersion, node: &str) -> NodeSlices;
}

/// A pod's DRA devices; one per daemon (it owns the node's slice watch).
pub struct Dra {
    api: Arc<dyn DraApi>,
    /// `MULTUS_NODE_NAME`; else the node of the first pod with claims.
    node_name: Option<String>,
    slices: OnceCell<NodeSlices>,
}

impl Dra {
    pub fn new(api: Arc<dyn DraApi>, node_name: Option<String>) -> Self {
        Self {
            api,
            node_name,
            slices: OnceCell::new(),
        }
    }

    /// The pod's DRA devices as `(resourceName, deviceIDs)` pairs (empty when it has no claims),
    /// within [`DRA_TIMEOUT`].
    pub async fn pod_devices(&self, pod: &PodInfo) -> Result<Pairs, DraError> {
        let name = format!("{}/{}", pod.namespace, pod.name);
        tokio::time::timeout(DRA_TIMEOUT, self.lookup(pod))
            .await
            .unwrap_or(Err(DraError::Timeout { pod: name }))
    }

    async fn lookup(&self, pod: &PodInfo) -> Result<Pairs, DraError> {
        let Some(claims) = self.api.pod_claims(pod).await? else {
            tracing::info!(pod.namespace = %pod.namespace, pod.name = %pod.name, "pod gone or replaced; no DRA devices");
            return Ok(Vec::new());
        };
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let version = self.api.version(pod).await?;
        let slices = self.slices(version, pod, claims.node.as_deref()).await?;
        let (allocations, extended) = self.allocations(version, &pod.namespace, &claims).await?;
        let missing = allocations
            .iter()
            .chain(&extended)
            .flatten()
            .any(|a| slices.device(&a.driver, &a.pool, &a.device).is_none());
        if missing {
            slices.relist_if_failing(DRA_TIMEOUT).await;
        }
        let mut pairs = Vec::new();
        for (claim, allocated) in claims.claims.iter().zip(&allocations) {
            pairs.extend(claim_devices(slices, claim, allocated));
        }
        if let (Some(ext), Some(allocated)) = (&claims.extended, &extended) {
            pairs.extend(extended_devices(slices, ext, allocated)?);
        }
        tracing::debug!(pod.namespace = %pod.namespace, pod.name = %pod.name,
            claims = claims.claims.len(), devices = pairs.len(), "DRA devices looked up");
        Ok(pairs)
    }

    /// The allocation of each claim, then of the extended-resource claim.
    async fn allocations(
        &self,
        version: ApiVersion,
        namespace: &str,
        claims: &PodClaims,
    ) -> Result<(Vec<Vec<Allocated>>, Option<Vec<Allocated>>), DraError> {
        let mut allocations = Vec::with_capacity(claims.claims.len());
        for claim in &claims.claims {
            allocations.push(self.allocation(version, namespace, claim).await?);
        }
        let extended = match &claims.extended {
            Some(ext) => Some(self.allocation(version, namespace, &ext.claim).await?),
            None => None,
        };
        Ok((allocations, extended))
    }

    async fn allocation(
        &self,
        version: ApiVersion,
        namespace: &str,
        claim: &str,
    ) -> Result<Vec<Allocated>, DraError> {
        let found = self.api.claim(version, namespace, claim).await?;
        let allocation = found.ok_or_else(|| DraError::ClaimNotFound {
            namespace: namespace.to_owned(),
            name: claim.to_owned(),
        })?;
        allocation.ok_or_else(|| DraError::NotAllocated {
            name: claim.to_owned(),
        })
    }

    /// The node's slice watch, started on first use, once it has a complete listing.
    async fn slices(
        &self,
        version: ApiVersion,
        pod: &PodInfo,
        pod_node: Option<&str>,
    ) -> Result<&NodeSlices, DraError> {
        let node = self
            .node_name
            .as_deref()
            .or(pod_node)
            .ok_or_else(|| DraError::NoNode {
                pod: format!("{}/{}", pod.namespace, pod.name),
            })?
            .to_owned();
        let slices = self
            .slices
            .get_or_init(|| async { self.api.watch_slices(version, &node) })
            .await;
        if let Some(pod_node) = pod_node.filter(|n| *n != slices.node()) {
            tracing::warn!(
                pod.node = pod_node,
                watched = slices.node(),
                "pod is on another node than the watched ResourceSlices"
            );
        }
        slices
            .ready(DRA_TIMEOUT)
            .await
            .map_err(|reason| DraError::Slices {
                node: slices.node().to_owned(),
                reason,
            })?;
        Ok(slices)
    }
}

/// The kubelet's devices (device plugins) with the pod's DRA devices merged in, sorted per
/// resource as upstream does after both.
pub struct KubeletWithDra {
    kubelet: Arc<dyn DeviceSource>,
    dra: Dra,
}

impl KubeletWithDra {
    pub fn new(kubelet: Arc<dyn DeviceSource>, dra: Dra) -> Self {
        Self { kubelet, dra }
    }
}

#[async_trait]
impl DeviceSource for KubeletWithDra {
    async fn pod_devices(&self, pod: &PodInfo) -> Result<ResourceMap, KubeletError> {
        let mut map = self.kubelet.pod_devices(pod).await?;
        let dra = self
            .dra
            .pod_devices(pod)
            .await
            .map_err(|e| KubeletError::Dra(Box::new(e)))?;
        map.merge(dra);
        Ok(map)
    }
}

#[cfg(test)]
mod tests;
