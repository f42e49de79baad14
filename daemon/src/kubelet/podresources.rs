//! Client of the kubelet's PodResources v1 API on its unix socket: `Get` for the one pod when
//! the kubelet serves it, else `List` filtered by name and namespace (what upstream always does).
use std::path::Path;
use std::time::Duration;

use multus_proto::podresources::v1::pod_resources_lister_client::PodResourcesListerClient;
use multus_proto::podresources::v1::{
    GetPodResourcesRequest, ListPodResourcesRequest, PodResources,
};
use tonic::transport::Channel;

use super::{KubeletError, ResourceMap};
use crate::source::PodInfo;

/// Upstream's cap on a PodResources answer (List returns every pod of the node).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

pub(super) async fn pod_devices(
    socket: &Path,
    pod: &PodInfo,
    timeout: Duration,
) -> Result<ResourceMap, KubeletError> {
    let channel = connect(socket, timeout).await?;
    let mut client = PodResourcesListerClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let get = GetPodResourcesRequest {
        pod_name: pod.name.clone(),
        pod_namespace: pod.namespace.clone(),
    };
    // Kubelets before 1.34 answer Get with Unimplemented, or with a plain error while its
    // feature gate is off; List is the same data for every pod, so any Get failure falls back.
    match client.get(get).await {
        Ok(resp) => return Ok(to_map(resp.into_inner().pod_resources.iter())),
        Err(status) => tracing::debug!(socket = %socket.display(), code = ?status.code(),
            error = %status.message(), "PodResources Get unavailable; using List"),
    }
    let list = client
        .list(ListPodResourcesRequest {})
        .await
        .map_err(|status| KubeletError::List {
            path: socket.to_owned(),
            code: format!("{:?}", status.code()),
            message: status.message().to_owned(),
        })?
        .into_inner();
    let ours = list
        .pod_resources
        .iter()
        .filter(|p| p.name == pod.name && p.namespace == pod.namespace);
    Ok(to_map(ours))
}

/// Every device of every container of the given pods.
fn to_map<'a>(pods: impl Iterator<Item = &'a PodResources>) -> ResourceMap {
    ResourceMap::from_pairs(
        pods.flat_map(|p| &p.containers)
            .flat_map(|c| &c.devices)
            .map(|d| (d.resource_name.clone(), d.device_ids.clone())),
    )
}

/// A channel over the socket, with the connect and every call bounded by `timeout`.
async fn connect(socket: &Path, timeout: Duration) -> Result<Channel, KubeletError> {
    let connecting = multus_proto::channel::unix(socket, timeout);
    let failed = |reason: String| KubeletError::Connect {
        path: socket.to_owned(),
        reason,
    };
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(failed(format!("timed out after {timeout:?}"))),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Ok(Ok(channel)) => Ok(channel),
    }
}
