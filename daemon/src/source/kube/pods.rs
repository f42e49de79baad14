//! Pod metadata as the daemon keeps it: the node's pods are watched metadata-only
//! (`PartialObjectMeta`, so spec and status never cross the wire) and trimmed further before they
//! enter the cache, so memory stays flat with thousands of pods per node.
use ::kube::core::PartialObjectMeta;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::source::PodInfo;

/// kubectl's copy of the whole applied manifest: often the largest annotation, never read here.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Keeps name, namespace, uid, resourceVersion and the annotations (the networks selections,
/// `kubernetes.io/config.source` of static pods, ...); drops the rest.
pub fn strip(pod: &mut PartialObjectMeta<Pod>) {
    let m = std::mem::take(&mut pod.metadata);
    let mut annotations = m.annotations;
    if let Some(a) = annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    pod.metadata = ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        annotations,
        ..ObjectMeta::default()
    };
}

pub fn to_info(pod: &PartialObjectMeta<Pod>) -> PodInfo {
    let m = &pod.metadata;
    PodInfo {
        namespace: m.namespace.clone().unwrap_or_default(),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        annotations: m.annotations.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_keeps_identity_and_annotations_only() {
        let mut pod: PartialObjectMeta<Pod> = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "labels": {"app": "x"},
                "annotations": {
                    "k8s.v1.cni.cncf.io/networks": "macvlan",
                    "kubernetes.io/config.source": "file",
                    LAST_APPLIED: "{\"huge\":true}"
                },
                "managedFields": [{"manager": "kubelet", "operation": "Update"}],
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "x"}]
            }
        }))
        .unwrap();
        strip(&mut pod);
        let m = &pod.metadata;
        assert!(m.managed_fields.is_none() && m.labels.is_none() && m.owner_references.is_none());
        assert_eq!(m.resource_version.as_deref(), Some("7"));
        let info = to_info(&pod);
        assert_eq!(
            (
                info.namespace.as_str(),
                info.name.as_str(),
                info.uid.as_str()
            ),
            ("ns", "p", "u1")
        );
        assert_eq!(info.annotations.len(), 2);
        assert_eq!(info.annotations["kubernetes.io/config.source"], "file");
    }
}
