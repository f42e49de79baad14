//! Upstream's mapping of a pod's claims to resource names: the claims its status names, then
//! each allocated device through the node's slices (`k8s.cni.cncf.io/deviceID` is the device ID,
//! `k8s.cni.cncf.io/resourceName` the key a NAD's `resourceName` matches).
use k8s_openapi::api::core::v1::Pod;

use super::DraError;
use super::slices::NodeSlices;
use super::version::{Allocated, DeviceAttrs};

/// `(resourceName, deviceIDs)`, as the kubelet's map is built from.
pub type Pairs = Vec<(String, Vec<String>)>;

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

    pub fn is_empty(&self) -> bool {
        self.claims.is_empty() && self.extended.is_none()
    }
}

/// A claim's devices published for CNI; the others are skipped with a warning (upstream).
pub fn claim_devices(slices: &NodeSlices, claim: &str, allocated: &[Allocated]) -> Pairs {
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
pub fn extended_devices(
    slices: &NodeSlices,
    ext: &ExtendedClaim,
    allocated: &[Allocated],
) -> Result<Pairs, DraError> {
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
