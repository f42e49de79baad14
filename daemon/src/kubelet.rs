//! The device IDs the kubelet assigned to a pod, per device-plugin resource, behind
//! [`DeviceSource`] (injected into the engine like `ClusterSource`): [`Kubelet`] reads the
//! PodResources gRPC API ([`PodResourcesApi`]) when its socket exists, else the device
//! manager's checkpoint file ([`CheckpointFile`]), as upstream `pkg/kubeletclient` and
//! `pkg/checkpoint`. Planning hands the IDs out to the NADs annotated
//! `k8s.v1.cni.cncf.io/resourceName`. No transport type leaves this module.
mod checkpoint;
mod podresources;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::Config;
use crate::source::PodInfo;

/// Where a pod's devices come from.
#[async_trait]
pub trait DeviceSource: Send + Sync + 'static {
    /// The pod's device IDs per resource (empty when it has none).
    async fn pod_devices(&self, pod: &PodInfo) -> Result<ResourceMap, KubeletError>;
}

/// Upstream's dial and call timeout for the PodResources API.
const KUBELET_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the pod's devices could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("connecting to the kubelet PodResources socket {path}: {reason}")]
    Connect { path: PathBuf, reason: String },
    /// The kubelet answered List with an error (its gRPC code and message).
    #[error("kubelet PodResources List on {path}: {code}: {message}")]
    List {
        path: PathBuf,
        code: String,
        message: String,
    },
    #[error("reading the kubelet checkpoint {path}: {source}")]
    ReadCheckpoint {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing the kubelet checkpoint {path}: {source}")]
    ParseCheckpoint {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// The pod's DRA claims could not be mapped (upstream's "failed to get resourceMap from DRA
    /// client").
    #[error("DRA: {0}")]
    Dra(Box<crate::source::kube::dra::DraError>),
}

/// A pod's device IDs per resource name, each list sorted (upstream's order), handed out one by
/// one with [`ResourceMap::take`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResourceMap {
    devices: BTreeMap<String, Vec<String>>,
    taken: BTreeMap<String, usize>,
}

impl ResourceMap {
    /// Collects `(resource, device ids)` pairs; a resource seen in several containers gets the
    /// ids of all of them.
    pub fn from_pairs<I, S>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (String, S)>,
        S: IntoIterator<Item = String>,
    {
        let mut devices: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (resource, ids) in pairs {
            devices.entry(resource).or_default().extend(ids);
        }
        for ids in devices.values_mut() {
            ids.sort();
        }
        Self {
            devices,
            taken: BTreeMap::new(),
        }
    }

    /// Adds more `(resource, device ids)` pairs (a pod's DRA devices after its device-plugin
    /// ones); every list is sorted again, as upstream sorts after both.
    pub fn merge<I, S>(&mut self, pairs: I)
    where
        I: IntoIterator<Item = (String, S)>,
        S: IntoIterator<Item = String>,
    {
        for (resource, ids) in pairs {
            let list = self.devices.entry(resource).or_default();
            list.extend(ids);
            list.sort();
        }
    }

    /// The sorted device ids of `resource` (empty when the pod has none).
    #[cfg(test)]
    pub fn devices(&self, resource: &str) -> &[String] {
        self.devices.get(resource).map_or(&[], Vec::as_slice)
    }

    /// The next device of `resource` not handed out yet, if any.
    pub fn take(&mut self, resource: &str) -> Option<String> {
        let next = self.taken.entry(resource.to_owned()).or_default();
        let id = self.devices.get(resource)?.get(*next)?.clone();
        *next += 1;
        Some(id)
    }
}

/// The kubelet's PodResources v1 API on its unix socket (`Get`, else `List`).
#[derive(Debug, Clone)]
pub struct PodResourcesApi {
    socket: PathBuf,
    timeout: Duration,
}

#[async_trait]
impl DeviceSource for PodResourcesApi {
    async fn pod_devices(&self, pod: &PodInfo) -> Result<ResourceMap, KubeletError> {
        podresources::pod_devices(&self.socket, pod, self.timeout).await
    }
}

/// The device manager's checkpoint file, matched by pod UID.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
}

#[async_trait]
impl DeviceSource for CheckpointFile {
    async fn pod_devices(&self, pod: &PodInfo) -> Result<ResourceMap, KubeletError> {
        checkpoint::pod_devices(&self.path, &pod.uid).await
    }
}

/// The kubelet's view of a pod's devices: the PodResources API when its socket exists (as
/// upstream decides, on every lookup: the kubelet recreates it when it restarts), else the
/// checkpoint file.
#[derive(Debug, Clone)]
pub struct Kubelet {
    api: PodResourcesApi,
    checkpoint: CheckpointFile,
}

impl Kubelet {
    pub fn from_config(config: &Config) -> Self {
        Self {
            api: PodResourcesApi {
                socket: config.kubelet_pod_resources_socket.clone(),
                timeout: KUBELET_TIMEOUT,
            },
            checkpoint: CheckpointFile {
                path: config.kubelet_checkpoint_file.clone(),
            },
        }
    }
}

#[async_trait]
impl DeviceSource for Kubelet {
    async fn pod_devices(&self, pod: &PodInfo) -> Result<ResourceMap, KubeletError> {
        let map = if tokio::fs::try_exists(&self.api.socket)
            .await
            .unwrap_or(false)
        {
            self.api.pod_devices(pod).await?
        } else {
            self.checkpoint.pod_devices(pod).await?
        };
        tracing::debug!(pod.namespace = %pod.namespace, pod.name = %pod.name,
            resources = map.devices.len(), "kubelet devices looked up");
        Ok(map)
    }
}

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;
