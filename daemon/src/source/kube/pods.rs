//! Pod metadata as the daemon keeps it: the node's pods are watched metadata-only
//! (`PartialObjectMeta`, so spec and status never cross the wire) and each one is turned into a
//! `CachedPod` before it enters the cache: identity and the few annotations the daemon reads, so
//! memory stays flat with thousands of pods per node whatever else their owners annotate.
use std::borrow::Cow;
use std::collections::BTreeMap;

use ::kube::core::PartialObjectMeta;
use ::kube::runtime::reflector::Lookup;
use ::kube::runtime::watcher;
use k8s_openapi::api::core::v1::Pod;

use crate::engine::selection::{DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION};
use crate::source::{CONFIG_SOURCE_ANNOTATION, PodInfo};

/// The pod annotations anything in the daemon reads (the network selections, and whether the
/// pod is a static pod's mirror). A new reader of a pod annotation adds its key here, or the
/// cache drops it.
pub const READ_ANNOTATIONS: [&str; 3] = [
    NETWORKS_ANNOTATION,
    DEFAULT_NETWORK_ANNOTATION,
    CONFIG_SOURCE_ANNOTATION,
];

/// kubectl's copy of the whole applied manifest: often the largest annotation, never read here.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One pod in the cache. Boxed strings and a boxed slice (no spare capacity, no B-tree node of
/// eleven slots for one annotation): about 0.3 KiB a pod, against 1.5 KiB for the trimmed
/// `ObjectMeta` it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedPod {
    namespace: Box<str>,
    name: Box<str>,
    uid: Box<str>,
    annotations: Box<[(Box<str>, Box<str>)]>,
}

impl From<PartialObjectMeta<Pod>> for CachedPod {
    fn from(pod: PartialObjectMeta<Pod>) -> Self {
        let m = pod.metadata;
        let annotations = m
            .annotations
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| READ_ANNOTATIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
            .collect();
        Self {
            namespace: m.namespace.unwrap_or_default().into_boxed_str(),
            name: m.name.unwrap_or_default().into_boxed_str(),
            uid: m.uid.unwrap_or_default().into_boxed_str(),
            annotations,
        }
    }
}

impl CachedPod {
    pub fn to_info(&self) -> PodInfo {
        PodInfo {
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            uid: self.uid.to_string(),
            annotations: self
                .annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }
}

/// The store's key is the namespace and name (as for `Pod`); no resourceVersion or uid is kept
/// in the key, nothing reads them from it.
impl Lookup for CachedPod {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }

    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }

    fn namespace(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.namespace))
    }

    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }

    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

/// A watch event on the metadata-only pod stream, as the cache takes it.
pub fn event(e: watcher::Event<PartialObjectMeta<Pod>>) -> watcher::Event<CachedPod> {
    use watcher::Event;
    match e {
        Event::Apply(p) => Event::Apply(p.into()),
        Event::Delete(p) => Event::Delete(p.into()),
        Event::Init => Event::Init,
        Event::InitApply(p) => Event::InitApply(p.into()),
        Event::InitDone => Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(annotations: serde_json::Value) -> PartialObjectMeta<Pod> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {
                "name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "labels": {"app": "x"},
                "annotations": annotations,
                "managedFields": [{"manager": "kubelet", "operation": "Update"}],
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "x"}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn keeps_identity_and_the_annotations_the_daemon_reads() {
        let pod = CachedPod::from(served(serde_json::json!({
            "k8s.v1.cni.cncf.io/networks": "macvlan",
            "v1.multus-cni.io/default-network": "kube-system/calico",
            "kubernetes.io/config.source": "file",
            "k8s.v1.cni.cncf.io/network-status": "[{\"name\":\"cbr0\"}]",
            "sidecar.istio.io/status": "{\"big\":true}",
            LAST_APPLIED: "{\"huge\":true}"
        })));
        let info = pod.to_info();
        assert_eq!(
            (
                info.namespace.as_str(),
                info.name.as_str(),
                info.uid.as_str()
            ),
            ("ns", "p", "u1")
        );
        let kept: Vec<(&str, &str)> = info
            .annotations
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                ("k8s.v1.cni.cncf.io/networks", "macvlan"),
                ("kubernetes.io/config.source", "file"),
                ("v1.multus-cni.io/default-network", "kube-system/calico"),
            ]
        );
        assert!(PodInfo::is_static(&info.annotations));
    }

    #[test]
    fn a_pod_without_annotations_has_none() {
        let info = CachedPod::from(served(serde_json::Value::Null)).to_info();
        assert!(info.annotations.is_empty());
        assert_eq!(info.uid, "u1");
    }

    #[test]
    fn the_cache_key_is_namespace_and_name() {
        let pod = CachedPod::from(served(serde_json::json!({})));
        let key = pod.to_object_ref(());
        assert_eq!(
            key,
            ::kube::runtime::reflector::ObjectRef::new("p").within("ns")
        );
        assert!(key.extra.resource_version.is_none() && key.extra.uid.is_none());
    }

    #[test]
    fn events_keep_their_kind() {
        let pod = || served(serde_json::json!({"k8s.v1.cni.cncf.io/networks": "a"}));
        assert!(
            matches!(event(watcher::Event::Apply(pod())), watcher::Event::Apply(p) if p.name.as_ref() == "p")
        );
        assert!(matches!(
            event(watcher::Event::Delete(pod())),
            watcher::Event::Delete(_)
        ));
        assert!(matches!(
            event(watcher::Event::InitApply(pod())),
            watcher::Event::InitApply(_)
        ));
        assert!(matches!(event(watcher::Event::Init), watcher::Event::Init));
        assert!(matches!(
            event(watcher::Event::InitDone),
            watcher::Event::InitDone
        ));
    }
}
