//! The kubelet device manager's checkpoint (`kubelet_internal_checkpoint`): the devices of each
//! pod's containers, read when the PodResources socket is absent (upstream `pkg/checkpoint`).
use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{KubeletError, ResourceMap};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Checkpoint {
    data: Data,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Data {
    #[serde(default)]
    pod_device_entries: Option<Vec<Entry>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    #[serde(rename = "PodUID")]
    pod_uid: String,
    resource_name: String,
    #[serde(rename = "DeviceIDs", default)]
    device_ids: Option<DeviceIds>,
}

/// Kubelets since 1.20 key the ids by NUMA node; older ones wrote a plain list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum DeviceIds {
    ByNuma(BTreeMap<String, Option<Vec<String>>>),
    List(Vec<String>),
}

impl DeviceIds {
    fn into_ids(self) -> Vec<String> {
        match self {
            Self::ByNuma(by_node) => by_node.into_values().flatten().flatten().collect(),
            Self::List(ids) => ids,
        }
    }
}

pub(super) async fn pod_devices(path: &Path, pod_uid: &str) -> Result<ResourceMap, KubeletError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| KubeletError::ReadCheckpoint {
            path: path.to_owned(),
            source,
        })?;
    parse(&bytes, pod_uid).map_err(|source| KubeletError::ParseCheckpoint {
        path: path.to_owned(),
        source,
    })
}

/// The devices of the pod with `pod_uid` in a checkpoint's JSON.
fn parse(bytes: &[u8], pod_uid: &str) -> Result<ResourceMap, serde_json::Error> {
    let checkpoint: Checkpoint = serde_json::from_slice(bytes)?;
    let entries = checkpoint.data.pod_device_entries.unwrap_or_default();
    Ok(ResourceMap::from_pairs(
        entries
            .into_iter()
            .filter(|e| e.pod_uid == pod_uid)
            .map(|e| {
                let ids = e.device_ids.map(DeviceIds::into_ids).unwrap_or_default();
                (e.resource_name, ids)
            }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUMA_SHAPE: &str = r#"{"Data":{"PodDeviceEntries":[
        {"PodUID":"uid-a","ContainerName":"c1","ResourceName":"intel.com/sriov","DeviceIDs":{"1":["0000:03:02.1"],"0":["0000:03:02.0"]},"AllocResp":"CgA="},
        {"PodUID":"uid-a","ContainerName":"c2","ResourceName":"intel.com/sriov","DeviceIDs":{"0":["0000:03:01.7"]},"AllocResp":"CgA="},
        {"PodUID":"uid-a","ContainerName":"c2","ResourceName":"example.com/gpu","DeviceIDs":{"-1":null},"AllocResp":"CgA="},
        {"PodUID":"uid-b","ContainerName":"c1","ResourceName":"intel.com/sriov","DeviceIDs":{"0":["0000:03:09.0"]},"AllocResp":"CgA="}
      ],"RegisteredDevices":{"intel.com/sriov":["0000:03:02.0"]}},"Checksum":1234}"#;

    const LIST_SHAPE: &str = r#"{"Data":{"PodDeviceEntries":[
        {"PodUID":"uid-a","ContainerName":"c1","ResourceName":"intel.com/sriov","DeviceIDs":["0000:03:02.1","0000:03:02.0"],"AllocResp":"CgA="},
        {"PodUID":"uid-b","ContainerName":"c1","ResourceName":"intel.com/sriov","DeviceIDs":["0000:03:09.0"],"AllocResp":"CgA="}
      ],"RegisteredDevices":{}},"Checksum":1}"#;

    #[test]
    fn both_device_id_shapes() {
        let cases = [
            (
                NUMA_SHAPE,
                vec!["0000:03:01.7", "0000:03:02.0", "0000:03:02.1"],
            ),
            (LIST_SHAPE, vec!["0000:03:02.0", "0000:03:02.1"]),
        ];
        for (json, want) in cases {
            let map = parse(json.as_bytes(), "uid-a").unwrap();
            assert_eq!(map.devices("intel.com/sriov"), want.as_slice());
            assert!(map.devices("example.com/gpu").is_empty());
        }
    }

    #[test]
    fn other_pods_and_empty_checkpoints() {
        let map = parse(LIST_SHAPE.as_bytes(), "uid-c").unwrap();
        assert_eq!(map, ResourceMap::default());
        let empty = r#"{"Data":{"PodDeviceEntries":null,"RegisteredDevices":null},"Checksum":0}"#;
        assert_eq!(
            parse(empty.as_bytes(), "uid-a").unwrap(),
            ResourceMap::default()
        );
        assert!(parse(b"{\"Data\":", "uid-a").is_err());
    }

    #[tokio::test]
    async fn missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = pod_devices(&dir.path().join("absent"), "uid-a")
            .await
            .unwrap_err();
        assert!(matches!(err, KubeletError::ReadCheckpoint { .. }), "{err}");
    }
}
