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
mod slices;
mod version;

use std::sync::Arc;
use std::time::Duration;

use ::kube::Client;
use ::kube::api::Api;
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::{Mutex, OnceCell};
use tokio::time::Instant;

use super::retry::{Budget, found, with_retries};
use crate::kubelet::{DeviceSource, KubeletError, ResourceMap};
use crate::source::{PodInfo, SourceError};
pub use slices::NodeSlices;
pub use version::{
    Allocated, ApiVersion, DEVICE_ID_ATTR, DeviceAttrs, RESOURCE_NAME_ATTR, SliceDevices,
};

/// Upstream's bound on the whole DRA lookup of one pod.
pub const DRA_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause before discovery is asked again after a failure, doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

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

/// The claims a pod's status names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodClaims {
    pub node: Option<String>,
    /// `status.resourceClaimStatuses[].resourceClaimName` (entries without one are skipped).
    pub claims: Vec<String>,
    /// `status.extendedResourceClaimStatus`.
    pub extended: Option<ExtendedClaim>,
}

/// The claim the scheduler made for a pod's extended resources, and which request of it stands
/// for which resource name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtendedClaim {
    pub claim: String,
    /// `(requestName, resourceName)`.
    pub mappings: Vec<(String, String)>,
}

impl PodClaims {
    pub fn from_pod(pod: &Pod) -> Self {
        let status = pod.status.as_ref();
        let claims = status
            .and_then(|s| s.resource_claim_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| {
                if c.resource_claim_name.is_none() {
                    tracing::warn!(claim = %c.name, "resource claim status without resourceClaimName; skipped");
                }
                c.resource_claim_name.clone()
            })
            .collect();
        let extended = status
            .and_then(|s| s.extended_resource_claim_status.as_ref())
            .map(|e| ExtendedClaim {
                claim: e.resource_claim_name.clone(),
                mappings: e
                    .request_mappings
                    .iter()
                    .map(|m| (m.request_name.clone(), m.resource_name.clone()))
                    .collect(),
            });
        Self {
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            claims,
            extended,
        }
    }

    fn is_empty(&self) -> bool {
        self.claims.is_empty() && self.extended.is_none()
    }
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

/// The Kubernetes API behind [`DraApi`].
pub struct KubeDraApi {
    client: Client,
    budget: Budget,
    discovered: Mutex<Discovery>,
}

#[derive(Debug, Default)]
enum Discovery {
    #[default]
    Unknown,
    Served(ApiVersion),
    Failed {
        retry_at: Instant,
        failures: u32,
        reason: String,
        not_served: bool,
    },
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

fn retry_pause(failures: u32) -> Duration {
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
        let failures = match &*state {
            Discovery::Served(v) => return Ok(*v),
            Discovery::Failed {
                retry_at,
                failures,
                reason,
                not_served,
            } => {
                let now = Instant::now();
                if now < *retry_at {
                    return Err(if *not_served {
                        DraError::NotServed {
                            pod: format!("{}/{}", pod.namespace, pod.name),
                        }
                    } else {
                        DraError::Discovery {
                            reason: reason.clone(),
                            retry_in: *retry_at - now,
                        }
                    });
                }
                *failures
            }
            Discovery::Unknown => 0,
        };
        let failures = failures.saturating_add(1);
        let pause = retry_pause(failures);
        let (reason, not_served) = match version::discover(&self.client, self.budget).await {
            Ok(Some(v)) => {
                tracing::info!(api_version = v.as_str(), "resource.k8s.io version chosen");
                *state = Discovery::Served(v);
                return Ok(v);
            }
            Ok(None) => ("not served".to_owned(), true),
            Err(e) => (e.to_string(), false),
        };
        tracing::warn!(reason = %reason, retry_in_ms = pause.as_millis() as u64, "resource.k8s.io discovery failed");
        *state = Discovery::Failed {
            retry_at: Instant::now() + pause,
            failures,
            reason: reason.clone(),
            not_served,
        };
        Err(if not_served {
            DraError::NotServed {
                pod: format!("{}/{}", pod.namespace, pod.name),
            }
        } else {
            DraError::Discovery {
                reason,
                retry_in: pause,
            }
        })
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
    pub async fn pod_devices(&self, pod: &PodInfo) -> Result<Vec<(String, Vec<String>)>, DraError> {
        let name = format!("{}/{}", pod.namespace, pod.name);
        tokio::time::timeout(DRA_TIMEOUT, self.lookup(pod))
            .await
            .unwrap_or(Err(DraError::Timeout { pod: name }))
    }

    async fn lookup(&self, pod: &PodInfo) -> Result<Vec<(String, Vec<String>)>, DraError> {
        let Some(claims) = self.api.pod_claims(pod).await? else {
            tracing::info!(pod.namespace = %pod.namespace, pod.name = %pod.name, "pod gone or replaced; no DRA devices");
            return Ok(Vec::new());
        };
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let version = self.api.version(pod).await?;
        let slices = self.slices(version, pod, claims.node.as_deref()).await?;
        let mut allocations = Vec::with_capacity(claims.claims.len());
        for claim in &claims.claims {
            allocations.push(self.allocation(version, &pod.namespace, claim).await?);
        }
        let extended = match &claims.extended {
            Some(ext) => Some(self.allocation(version, &pod.namespace, &ext.claim).await?),
            None => None,
        };
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

/// A claim's devices published for CNI; the others are skipped with a warning (upstream).
fn claim_devices(
    slices: &NodeSlices,
    claim: &str,
    allocated: &[Allocated],
) -> Vec<(String, Vec<String>)> {
    let mut pairs = Vec::new();
    for a in allocated {
        let attrs = slices.device(&a.driver, &a.pool, &a.device);
        match attrs {
            Some(DeviceAttrs {
                device_id: Some(id),
                resource_name: Some(resource),
            }) if !id.is_empty() && !resource.is_empty() => {
                tracing::debug!(claim, device = %a.device, device.id = %id, resource = %resource, "DRA device mapped");
                pairs.push((resource, vec![id]));
            }
            Some(_) => {
                tracing::warn!(claim, driver = %a.driver, pool = %a.pool, device = %a.device,
                    "DRA device without k8s.cni.cncf.io/deviceID or resourceName; skipped (not published for CNI)");
            }
            None => {
                tracing::warn!(claim, driver = %a.driver, pool = %a.pool, device = %a.device,
                    "DRA device not in any ResourceSlice of the node; skipped");
            }
        }
    }
    if pairs.is_empty() && !allocated.is_empty() {
        tracing::warn!(
            claim,
            "no allocated device of the claim is published for CNI; claim skipped"
        );
    }
    pairs
}

/// The extended-resource claim's devices, strictly: every mapped request must be allocated and
/// every device must name the mapping's resource.
fn extended_devices(
    slices: &NodeSlices,
    ext: &ExtendedClaim,
    allocated: &[Allocated],
) -> Result<Vec<(String, Vec<String>)>, DraError> {
    let mut pairs = Vec::new();
    for (request, mapping) in &ext.mappings {
        let results: Vec<&Allocated> = allocated.iter().filter(|a| a.request == *request).collect();
        if results.is_empty() {
            return Err(DraError::RequestNotFound {
                request: request.clone(),
                claim: ext.claim.clone(),
            });
        }
        for a in results {
            let attrs = slices
                .device(&a.driver, &a.pool, &a.device)
                .filter(|d| d.device_id.as_deref().is_some_and(|id| !id.is_empty()))
                .ok_or_else(|| DraError::DeviceNotInAnySlice {
                    device: a.device.clone(),
                    driver: a.driver.clone(),
                    pool: a.pool.clone(),
                })?;
            let found = attrs.resource_name.unwrap_or_default();
            if found.is_empty() {
                return Err(DraError::MissingResourceName {
                    device: a.device.clone(),
                    mapping: mapping.clone(),
                });
            }
            if found != *mapping {
                return Err(DraError::ResourceNameMismatch {
                    device: a.device.clone(),
                    found,
                    request: request.clone(),
                    mapping: mapping.clone(),
                });
            }
            pairs.push((mapping.clone(), attrs.device_id.into_iter().collect()));
        }
    }
    Ok(pairs)
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
