//! Which networks a pod gets, in order: the cluster network (or the default-network
//! annotation's), `defaultNetworks`, then the `k8s.v1.cni.cncf.io/networks` annotation's NADs.
use std::path::PathBuf;

use super::effective::Effective;
use super::{PlanError, RESOURCE_NAME_ANNOTATION};
use crate::config::Config;
use crate::engine::netconf::{self, NetConf, NetconfError};
use crate::engine::selection::{self, NetworkSelection};
use crate::source::{ClusterSource, EventType, NadInfo, PodInfo};

/// The reason of upstream's Warning event for a selected NAD that does not exist.
pub const NO_NETWORK_FOUND: &str = "NoNetworkFound";

/// A network chosen for the pod, before interface naming.
pub(super) struct Pending {
    pub(super) name: String,
    pub(super) config: NetConf,
    pub(super) selection: Option<NetworkSelection>,
    pub(super) is_default: bool,
    /// The NAD's `k8s.v1.cni.cncf.io/resourceName`, if any.
    pub(super) resource: Option<String>,
    /// The device of that resource given to this network (set by `devices::assign`).
    pub(super) device_id: Option<String>,
}

impl Pending {
    pub(super) fn new(
        resolved: Resolved,
        selection: Option<NetworkSelection>,
        is_default: bool,
    ) -> Self {
        Self {
            name: resolved.name,
            config: resolved.config,
            selection,
            is_default,
            resource: resolved.resource,
            device_id: None,
        }
    }
}

/// A network's delegate name and config, and its NAD's device resource.
pub(super) struct Resolved {
    pub(super) name: String,
    pub(super) config: NetConf,
    pub(super) resource: Option<String>,
}

impl Resolved {
    fn file(name: String, config: NetConf) -> Self {
        Self {
            name,
            config,
            resource: None,
        }
    }
}

/// The cluster network (or what the default-network annotation puts in its place), first.
pub(super) async fn cluster_networks(
    config: &Config,
    eff: &Effective,
    source: &dyn ClusterSource,
    pod: &PodInfo,
) -> Result<Vec<Pending>, PlanError> {
    let mut out = Vec::new();
    if let Some(value) = &eff.cluster_network {
        let resolved = resolve_value(config, source, value, "clusterNetwork").await?;
        out.push(Pending::new(resolved, None, true));
    } else {
        for (index, inline) in eff.delegates.iter().enumerate() {
            let net = netconf::from_inline(index, inline).map_err(|source| PlanError::Netconf {
                context: "LoadNetConf".into(),
                source,
            })?;
            let name = net.name().unwrap_or_default().to_owned();
            out.push(Pending::new(Resolved::file(name, net), None, index == 0));
        }
    }
    let annotation = pod
        .annotations
        .get(selection::DEFAULT_NETWORK_ANNOTATION)
        .filter(|a| !a.trim().is_empty());
    if let (Some(annotation), Some(first)) = (annotation, out.first_mut()) {
        // Upstream applies no namespace isolation to this annotation (§9.20), so an isolated
        // pod could pick any namespace's NAD as its primary network. We check it like the
        // others, also allowing multusNamespace, where the annotation's names resolve.
        let sel = selection::parse_default(annotation, &config.multus_namespace)
            .map_err(|e| default_annotation_error(e, annotation))?;
        check_isolation(config, eff, pod, &sel, Some(&config.multus_namespace))?;
        let resolved = nad_delegate(config, source, pod, &sel)
            .await
            .map_err(|e| PlanError::DefaultNetworkDelegate(Box::new(e)))?;
        *first = Pending::new(resolved, Some(sel), true);
    }
    Ok(out)
}

/// Upstream's `tryLoadK8sPodDefaultNetwork` wording for a bad default-network annotation.
fn default_annotation_error(e: selection::SelectionError, annotation: &str) -> PlanError {
    PlanError::DefaultNetworkAnnotation(match e {
        selection::SelectionError::MoreThanOneDefault => {
            format!("more than one default network is specified: {annotation}")
        }
        other => format!("failed to parse CRD object: {other}"),
    })
}

/// The networks of the pod's `k8s.v1.cni.cncf.io/networks` annotation.
pub(super) async fn annotation_networks(
    config: &Config,
    eff: &Effective,
    source: &dyn ClusterSource,
    pod: &PodInfo,
) -> Result<Vec<Pending>, PlanError> {
    let Some(annotation) = pod
        .annotations
        .get(selection::NETWORKS_ANNOTATION)
        .filter(|a| !a.trim().is_empty())
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for sel in selection::parse(annotation, &pod.namespace)? {
        check_isolation(config, eff, pod, &sel, None)?;
        let resolved = nad_delegate(config, source, pod, &sel)
            .await
            .map_err(|e| PlanError::NetworkDelegate(Box::new(e)))?;
        out.push(Pending::new(resolved, Some(sel), false));
    }
    Ok(out)
}

/// With `namespaceIsolation`, a pod may only use NADs of its own namespace, of
/// `globalNamespaces`, or of `also_allowed`.
pub(super) fn check_isolation(
    config: &Config,
    eff: &Effective,
    pod: &PodInfo,
    sel: &NetworkSelection,
    also_allowed: Option<&str>,
) -> Result<(), PlanError> {
    let target = &sel.namespace;
    if !eff.namespace_isolation
        || *target == pod.namespace
        || also_allowed == Some(target.as_str())
        || config.global_namespace_list().contains(target)
    {
        return Ok(());
    }
    Err(PlanError::NamespaceIsolation {
        pod_namespace: pod.namespace.clone(),
        target_namespace: target.clone(),
    })
}

/// Runs a config load (files of confDir, a path) off the async workers.
async fn load(
    f: impl FnOnce() -> Result<NetConf, NetconfError> + Send + 'static,
) -> Result<Result<NetConf, NetconfError>, PlanError> {
    crate::engine::blocking(f)
        .await
        .map_err(|source| PlanError::Task {
            what: "netconf",
            source,
        })
}

/// A NAD's config: its spec's, parsed in place (no file is read: no blocking task to wait
/// for), or the confDir file a NAD without a config names, loaded off the async workers.
async fn load_nad(
    config: &Config,
    nad: &NadInfo,
) -> Result<Result<NetConf, NetconfError>, PlanError> {
    if !nad.config.trim().is_empty() {
        return Ok(netconf::from_nad(nad, &config.conf_dir));
    }
    let (nad, conf_dir) = (nad.clone(), config.conf_dir.clone());
    load(move || netconf::from_nad(&nad, &conf_dir)).await
}

/// A selected NAD's delegate name and config (with the selection's `cni-args` merged in). A
/// missing NAD is upstream's Warning event `NoNetworkFound` on `pod` (then the error).
pub(super) async fn nad_delegate(
    config: &Config,
    source: &dyn ClusterSource,
    pod: &PodInfo,
    sel: &NetworkSelection,
) -> Result<Resolved, PlanError> {
    let Some(nad) = lookup_nad(source, &sel.namespace, &sel.name).await? else {
        let message = super::nad_not_found(&sel.namespace, &sel.name);
        source
            .record_event(pod, EventType::Warning, NO_NETWORK_FOUND, &message)
            .await;
        return Err(PlanError::NadNotFound {
            namespace: sel.namespace.clone(),
            name: sel.name.clone(),
        });
    };
    let name = format!("{}/{}", nad.namespace, nad.name);
    let mut net = load_nad(config, &nad)
        .await?
        .map_err(|source| PlanError::Netconf {
            context: format!("getKubernetesDelegate {name}"),
            source,
        })?;
    if let Some(args) = &sel.cni_args {
        netconf::inject_cni_args(&mut net, args);
    }
    Ok(Resolved {
        name,
        config: net,
        resource: resource_name(&nad),
    })
}

fn resource_name(nad: &NadInfo) -> Option<String> {
    nad.annotations
        .get(RESOURCE_NAME_ANNOTATION)
        .filter(|r| !r.is_empty())
        .cloned()
}

async fn lookup_nad(
    source: &dyn ClusterSource,
    namespace: &str,
    name: &str,
) -> Result<Option<NadInfo>, PlanError> {
    let what = format!("network-attachment-definition {namespace}/{name}");
    source
        .nad(namespace, name)
        .await
        .map_err(|source| PlanError::Source { what, source })
}

/// A `clusterNetwork`/`defaultNetworks` value: a path when it contains '/', else a NAD in
/// `multusNamespace`, else a network name in `confDir`. Unlike upstream, the cause is kept.
pub(super) async fn resolve_value(
    config: &Config,
    source: &dyn ClusterSource,
    value: &str,
    key: &str,
) -> Result<Resolved, PlanError> {
    let ns = &config.multus_namespace;
    let context = || format!("GetDefaultNetworks: failed to get {key} {value} in namespace {ns}");
    let from_file = |r: Result<NetConf, NetconfError>| {
        let net = r.map_err(|source| PlanError::Netconf {
            context: context(),
            source,
        })?;
        let name = net.name().unwrap_or(value);
        Ok(Resolved::file(name.to_owned(), net))
    };
    if value.contains('/') {
        let path = PathBuf::from(value);
        return from_file(load(move || netconf::from_path(&path)).await?);
    }
    let found =
        lookup_nad(source, ns, value)
            .await
            .map_err(|source| PlanError::ClusterNetwork {
                context: context(),
                source: Box::new(source),
            })?;
    match found {
        Some(nad) => {
            let net = load_nad(config, &nad)
                .await?
                .map_err(|source| PlanError::Netconf {
                    context: context(),
                    source,
                })?;
            Ok(Resolved {
                name: format!("{}/{}", nad.namespace, nad.name),
                config: net,
                resource: resource_name(&nad),
            })
        }
        None => {
            let (network, conf_dir) = (value.to_owned(), config.conf_dir.clone());
            from_file(load(move || netconf::from_conf_dir(&network, &conf_dir)).await?)
        }
    }
}
