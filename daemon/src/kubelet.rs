//! The device IDs the kubelet assigned to a pod, per device-plugin resource: from the
//! PodResources gRPC API when its socket exists, else from the device manager's checkpoint file
//! (upstream `pkg/kubeletclient` and `pkg/checkpoint`). Planning hands them out to the NADs
//! annotated `k8s.v1.cni.cncf.io/resourceName`.
mod checkpoint;
mod podresources;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::Config;
use crate::source::PodInfo;

/// Upstream's dial and call timeout for the PodResources API.
const KUBELET_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the pod's devices could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("connecting to the kubelet PodResources socket {path}: {reason}")]
    Connect { path: PathBuf, reason: String },
    #[error("kubelet PodResources List on {path}: {source}")]
    List {
        path: PathBuf,
        source: Box<tonic::Status>,
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

    /// The sorted device ids of `resource` (empty when the pod has none).
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

/// Where the kubelet's view of a pod's devices is read.
#[derive(Debug, Clone)]
pub struct Kubelet {
    socket: PathBuf,
    checkpoint: PathBuf,
    timeout: Duration,
}

impl Kubelet {
    pub fn from_config(config: &Config) -> Self {
        Self {
            socket: config.kubelet_pod_resources_socket.clone(),
            checkpoint: config.kubelet_checkpoint_file.clone(),
            timeout: KUBELET_TIMEOUT,
        }
    }

    /// The pod's devices: the PodResources API when its socket exists (as upstream decides),
    /// else the checkpoint file (matched by pod UID).
    pub async fn pod_resources(&self, pod: &PodInfo) -> Result<ResourceMap, KubeletError> {
        let map = if tokio::fs::try_exists(&self.socket).await.unwrap_or(false) {
            podresources::pod_devices(&self.socket, pod, self.timeout).await?
        } else {
            checkpoint::pod_devices(&self.checkpoint, &pod.uid).await?
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
