//! The NetworkAttachmentDefinition resource (`k8s.cni.cncf.io/v1`) as a small typed struct: only
//! `metadata` and `spec.config` are read, so no CRD schema crate or derive is needed.
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::source::NadInfo;

/// A NetworkAttachmentDefinition as served by the API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkAttachmentDefinition {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NadSpec,
}

/// `spec` of a NetworkAttachmentDefinition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NadSpec {
    /// The CNI config JSON, possibly empty (then it comes from `confDir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

impl k8s_openapi::Resource for NetworkAttachmentDefinition {
    const API_VERSION: &'static str = "k8s.cni.cncf.io/v1";
    const GROUP: &'static str = "k8s.cni.cncf.io";
    const KIND: &'static str = "NetworkAttachmentDefinition";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "network-attachment-definitions";
    type Scope = NamespaceResourceScope;
}

impl k8s_openapi::Metadata for NetworkAttachmentDefinition {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl NetworkAttachmentDefinition {
    /// Drops what the daemon never reads, so the cluster-wide cache holds names, annotations
    /// and configs only.
    pub fn strip(&mut self) {
        let m = &mut self.metadata;
        m.managed_fields = None;
        m.labels = None;
        m.owner_references = None;
        m.finalizers = None;
        if let Some(a) = m.annotations.as_mut() {
            a.remove(super::pods::LAST_APPLIED);
        }
    }

    pub fn to_info(&self) -> NadInfo {
        let m = &self.metadata;
        NadInfo {
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            annotations: m.annotations.clone().unwrap_or_default(),
            config: self.spec.config.clone().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_served_nad_and_keeps_only_what_is_read() {
        let mut nad: NetworkAttachmentDefinition = serde_json::from_value(serde_json::json!({
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "m", "namespace": "ns", "labels": {"a": "b"},
                         "annotations": {"k8s.v1.cni.cncf.io/resourceName": "r"},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"config": "{\"type\":\"macvlan\"}"}
        }))
        .unwrap();
        nad.strip();
        assert!(nad.metadata.managed_fields.is_none() && nad.metadata.labels.is_none());
        let info = nad.to_info();
        assert_eq!((info.namespace.as_str(), info.name.as_str()), ("ns", "m"));
        assert_eq!(info.config, r#"{"type":"macvlan"}"#);
        assert_eq!(
            info.annotations
                .get("k8s.v1.cni.cncf.io/resourceName")
                .map(String::as_str),
            Some("r")
        );
    }

    #[test]
    fn a_nad_without_spec_has_an_empty_config() {
        let nad: NetworkAttachmentDefinition =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "m"}})).unwrap();
        assert_eq!(nad.to_info().config, "");
    }
}
