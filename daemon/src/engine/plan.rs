//! Planning an ADD: from the request, the pod and its NADs to the ordered list of delegates, with
//! interface names, CNI_ARGS and capability args. Every refusal happens here, before anything
//! touches the node.
mod auxiliary;
mod devices;
mod effective;
mod hotplug;
mod networks;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use multus_common::code;
use multus_common::constants::k8s_args;
use multus_common::validate::{self, InvalidName};

pub use self::devices::{DeviceInfoCopy, copy_device_info};
use self::effective::{Effective, effective};
pub use self::hotplug::{HotplugNetwork, delegate as hotplug_delegate, ifname as hotplug_ifname};
use self::networks::{Pending, annotation_networks, cluster_networks, resolve_value};
use super::error::CniCode;
use super::netconf::{NetConf, NetconfError};
use super::selection::SelectionError;
use super::{CniCall, Delegate, runtime};
use crate::config::Config;
use crate::kubelet::{DeviceSource, KubeletError};
use crate::source::{ClusterSource, PodInfo, SourceError};

/// NAD annotation asking for a device of a device-plugin resource.
const RESOURCE_NAME_ANNOTATION: &str = "k8s.v1.cni.cncf.io/resourceName";

/// The outcome of planning.
#[derive(Debug)]
pub enum Planned {
    /// The pod does not exist (any more): upstream answers ADD with a synthetic empty result.
    PodGone,
    Plan(Plan),
}

/// What ADD will do, in order.
#[derive(Debug)]
pub struct Plan {
    pub pod: Option<PodInfo>,
    pub delegates: Vec<Delegate>,
    /// The `cniVersion` the runtime asked in (the shim's stdin config).
    pub result_version: String,
    /// Device plugins' device-info files to copy before the first delegate runs.
    pub device_info: Vec<DeviceInfoCopy>,
}

/// Why an ADD was refused. The CNI code for each is noted on the variant.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Code 6: the shim's stdin is not a multus config.
    #[error("failed to decode the multus network config: {0}")]
    DecodeConfig(String),
    /// Code 7.
    #[error("LoadNetConf: at least one delegate/clusterNetwork must be specified")]
    NoClusterNetwork,
    /// Code 4.
    #[error("missing {0}")]
    MissingArg(&'static str),
    /// Code 11 for `SourceError::Unavailable`, 7 for `SourceError::Invalid`.
    #[error("looking up {what}: {source}")]
    Source { what: String, source: SourceError },
    /// Code 7.
    #[error("expected pod UID {expected:?} but got {actual:?} from Kube API")]
    UidMismatch { expected: String, actual: String },
    /// Code 7: a networks or default-network annotation is malformed.
    #[error(transparent)]
    Selection(#[from] SelectionError),
    /// Code 7: a network's config could not be found or is not runnable.
    #[error("{context}: {source}")]
    Netconf {
        context: String,
        source: NetconfError,
    },
    /// Code 7: nothing is attached when one selected NAD is missing (upstream's text, with the
    /// API's NotFound message).
    #[error("getKubernetesDelegate: {}", nad_not_found(namespace, name))]
    NadNotFound { namespace: String, name: String },
    /// A NAD of the networks annotation could not be made a delegate (the cause's code).
    #[error("GetNetworkDelegates: failed getting the delegate: {0}")]
    NetworkDelegate(Box<PlanError>),
    /// The default-network annotation's NAD could not be made a delegate (the cause's code).
    #[error("tryLoadK8sPodDefaultNetwork: failed getting the delegate: {0}")]
    DefaultNetworkDelegate(Box<PlanError>),
    /// Code 7: the default-network annotation is malformed or names more than one network.
    #[error("tryLoadK8sPodDefaultNetwork: {0}")]
    DefaultNetworkAnnotation(String),
    /// Code 7.
    #[error(
        "GetNetworkDelegates: namespace isolation enabled, annotation violates permission, pod is in namespace {pod_namespace} but refers to target namespace {target_namespace}"
    )]
    NamespaceIsolation {
        pod_namespace: String,
        target_namespace: String,
    },
    /// Code 7.
    #[error("network {network}: invalid interface name: {source}")]
    InvalidIfname {
        network: String,
        source: InvalidName,
    },
    /// Code 7: two networks would get the same interface.
    #[error("interface name {ifname} is requested by both {first} and {second}")]
    DuplicateIfname {
        ifname: String,
        first: String,
        second: String,
    },
    /// Code 7.
    #[error("multus does not support ECMP for default-route")]
    Ecmp,
    /// Code 7: the device source could not tell the pod's devices (a NAD has a resourceName).
    #[error("getKubernetesDelegate: failed to get resourceMap: {source}")]
    Devices { source: KubeletError },
    /// The `clusterNetwork`/`defaultNetworks` NAD could not be looked up (the cause's code).
    #[error("{context}: {source}")]
    ClusterNetwork {
        context: String,
        source: Box<PlanError>,
    },
    /// Code 7: upstream's wording.
    #[error("auxiliary chain used but ClusterNetwork must be a path, and it is not a path: {0}")]
    AuxiliaryChainNeedsPath(String),
    /// Code 7: a configured feature multus-rs does not implement yet.
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
    /// Code 999: the blocking task reading configs died.
    #[error("internal error: {what} task: {source}")]
    Task {
        what: &'static str,
        source: tokio::task::JoinError,
    },
}

impl CniCode for PlanError {
    fn cni_code(&self) -> u32 {
        match self {
            PlanError::DecodeConfig(_) => code::DECODE_FAILURE,
            PlanError::MissingArg(_) => code::INVALID_ENV,
            PlanError::Source { source, .. } => source.cni_code(),
            PlanError::NetworkDelegate(inner)
            | PlanError::DefaultNetworkDelegate(inner)
            | PlanError::ClusterNetwork { source: inner, .. } => inner.cni_code(),
            PlanError::NoClusterNetwork
            | PlanError::UidMismatch { .. }
            | PlanError::Selection(_)
            | PlanError::Netconf { .. }
            | PlanError::NadNotFound { .. }
            | PlanError::DefaultNetworkAnnotation(_)
            | PlanError::NamespaceIsolation { .. }
            | PlanError::InvalidIfname { .. }
            | PlanError::DuplicateIfname { .. }
            | PlanError::Ecmp
            | PlanError::Devices { .. }
            | PlanError::AuxiliaryChainNeedsPath(_)
            | PlanError::Unsupported(_) => code::INVALID_NETWORK_CONFIG,
            PlanError::Task { .. } => code::INTERNAL,
        }
    }
}

/// Where upstream's `CmdAdd` was when it failed: the text its `cmdErr` puts after `Multus: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamStep {
    /// Whether upstream names the pod (`[ns/pod/uid]: `): not before it has the k8s args.
    pub names_pod: bool,
    /// Ends in `: `, or is empty.
    pub text: Cow<'static, str>,
}

const LOADING_NETCONF: UpstreamStep = UpstreamStep {
    names_pod: false,
    text: Cow::Borrowed("error loading netconf: "),
};

/// `cmdErr` with the pod and the step `text`.
pub const fn pod_step(text: &'static str) -> UpstreamStep {
    UpstreamStep {
        names_pod: true,
        text: Cow::Borrowed(text),
    }
}

const POD_NETWORKS: &str = "error loading k8s delegates k8s args: TryLoadPodDelegates: error in getting k8s network for pod: ";
const POD_DEFAULT_NETWORK: &str = "error loading k8s delegates k8s args: TryLoadPodDelegates: error in loading K8s cluster default network from pod annotation: ";

impl PlanError {
    /// Upstream's `CmdAdd` step for this refusal (`multus.go`: `cmdErr(k8sArgs, "<step>: %v")`),
    /// so an ADD error reads as upstream's up to our detail; `None` for refusals upstream
    /// makes before its wrappers (missing k8s args) or does not have.
    pub fn upstream_step(&self) -> Option<UpstreamStep> {
        Some(match self {
            PlanError::MissingArg(_) | PlanError::Unsupported(_) | PlanError::Task { .. } => {
                return None;
            }
            PlanError::DecodeConfig(_) | PlanError::NoClusterNetwork => LOADING_NETCONF,
            // Inline `delegates` are checked by upstream's LoadNetConf (our context says so).
            PlanError::Netconf { context, .. } if context.starts_with("LoadNetConf") => {
                LOADING_NETCONF
            }
            PlanError::Source { .. } => pod_step("error waiting for pod: "),
            PlanError::Netconf { .. } | PlanError::ClusterNetwork { .. } => {
                pod_step("failed to get clusterNetwork/defaultNetworks: ")
            }
            PlanError::DefaultNetworkDelegate(_) | PlanError::DefaultNetworkAnnotation(_) => {
                pod_step(POD_DEFAULT_NETWORK)
            }
            PlanError::NetworkDelegate(_)
            | PlanError::NadNotFound { .. }
            | PlanError::NamespaceIsolation { .. } => pod_step(POD_NETWORKS),
            // Upstream finds the devices while it gets each NAD's delegate.
            PlanError::Devices { .. } => pod_step(
                "error loading k8s delegates k8s args: TryLoadPodDelegates: error in getting k8s network for pod: GetNetworkDelegates: failed getting the delegate: ",
            ),
            // TryLoadPodDelegates returns a parse error and the ECMP check unwrapped.
            PlanError::Selection(_) | PlanError::Ecmp => {
                pod_step("error loading k8s delegates k8s args: ")
            }
            PlanError::UidMismatch { .. }
            | PlanError::AuxiliaryChainNeedsPath(_)
            | PlanError::InvalidIfname { .. }
            | PlanError::DuplicateIfname { .. } => pod_step(""),
        })
    }
}

/// Upstream's `NoNetworkFound` text (the Warning event's message, and the error after
/// `getKubernetesDelegate: `).
pub fn nad_not_found(namespace: &str, name: &str) -> String {
    format!(
        "cannot find a network-attachment-definition ({name}) in namespace ({namespace}): network-attachment-definitions.k8s.cni.cncf.io {name:?} not found"
    )
}

/// Plans an ADD: see the module doc and the steps below.
pub async fn plan(
    config: &Config,
    source: &dyn ClusterSource,
    devices: &dyn DeviceSource,
    call: &CniCall,
) -> Result<Planned, PlanError> {
    let eff = effective(config, &call.config)?;
    if eff.cluster_network.is_none() && eff.delegates.is_empty() {
        return Err(PlanError::NoClusterNetwork);
    }
    let namespace = call
        .args
        .get(k8s_args::POD_NAMESPACE)
        .ok_or(PlanError::MissingArg(k8s_args::POD_NAMESPACE))?;
    let name = call
        .args
        .get(k8s_args::POD_NAME)
        .ok_or(PlanError::MissingArg(k8s_args::POD_NAME))?;
    let what = format!("pod {namespace}/{name}");
    let Some(pod) = source
        .pod(namespace, name)
        .await
        .map_err(|source| PlanError::Source { what, source })?
    else {
        tracing::info!(pod.namespace = %namespace, pod.name = %name, "pod not found; nothing to attach");
        return Ok(Planned::PodGone);
    };
    check_uid(&pod, call.args.get(k8s_args::POD_UID))?;
    let mut pending = cluster_networks(config, &eff, source, &pod).await?;
    if eff.cluster_network.is_some() && !config.system_namespaces.contains(&pod.namespace) {
        for value in &eff.default_networks {
            let resolved = resolve_value(config, source, value, "defaultNetwork").await?;
            pending.push(Pending::new(resolved, None, false));
        }
    }
    pending.extend(annotation_networks(config, &eff, source, &pod).await?);
    self::devices::assign(devices, &pod, &mut pending).await?;
    pending.extend(auxiliary::chain(&eff).await?);
    let (delegates, device_info) =
        build_delegates(pending, &eff, call, &pod, &config.device_info_dir)?;
    tracing::info!(pod.namespace = %pod.namespace, pod.name = %pod.name, delegates = delegates.len(), "planned ADD");
    Ok(Planned::Plan(Plan {
        pod: Some(pod),
        delegates,
        result_version: eff.result_version,
        device_info,
    }))
}

/// The cluster network's name and config without a pod, for STATUS and GC: `clusterNetwork`,
/// else the first inline delegate; `None` when neither is configured. (Added by the engine's
/// author for STATUS; the default-network annotation cannot apply without a pod.)
pub async fn cluster_network(
    config: &Config,
    source: &dyn ClusterSource,
    stdin: &[u8],
) -> Result<Option<(String, NetConf)>, PlanError> {
    let eff = effective(config, stdin)?;
    let mut nets = cluster_networks(config, &eff, source, &PodInfo::default()).await?;
    if nets.is_empty() {
        return Ok(None);
    }
    let mut first = nets.swap_remove(0);
    first.config.default_list_version(&eff.result_version);
    Ok(Some((first.name, first.config)))
}

/// Upstream §4.2: a UID from the runtime that differs from the pod's is refused unless the pod
/// is static (the kubelet's mirror pod has another UID).
fn check_uid(pod: &PodInfo, expected: Option<&str>) -> Result<(), PlanError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    if expected == pod.uid || PodInfo::is_static(&pod.annotations) {
        return Ok(());
    }
    Err(PlanError::UidMismatch {
        expected: expected.to_owned(),
        actual: pod.uid.clone(),
    })
}

/// Names interfaces (requested > CNI_IFNAME for the cluster network > `net<index>`), refuses
/// invalid or duplicate names and ECMP default routes, and fills in each delegate's args (and
/// device). Also returns the device-info files to copy.
fn build_delegates(
    pending: Vec<Pending>,
    eff: &Effective,
    call: &CniCall,
    pod: &PodInfo,
    device_info_dir: &Path,
) -> Result<(Vec<Delegate>, Vec<DeviceInfoCopy>), PlanError> {
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(pending.len());
    let mut copies = Vec::new();
    for (index, mut p) in pending.into_iter().enumerate() {
        let requested = p
            .selection
            .as_ref()
            .map(|s| s.interface.clone())
            .filter(|s| !s.is_empty());
        let ifname = match requested {
            Some(i) => i,
            None if p.is_default => call.ifname.clone(),
            None => format!("net{index}"),
        };
        validate::ifname(&ifname).map_err(|source| PlanError::InvalidIfname {
            network: p.name.clone(),
            source,
        })?;
        if let Some(first) = seen.insert(ifname.clone(), p.name.clone()) {
            return Err(PlanError::DuplicateIfname {
                ifname,
                first,
                second: p.name,
            });
        }
        p.config.default_list_version(&eff.result_version);
        let sel = p.selection.take().unwrap_or_default();
        let mut capability_args = if p.is_default {
            runtime::cluster_capabilities(&eff.runtime)
        } else {
            let devinfo =
                runtime::device_info_file(device_info_dir, &p.name, &call.container_id, &ifname);
            runtime::secondary_capabilities(&eff.runtime, &sel, Some(devinfo))
        };
        // The kubelet's device wins over the selection's `deviceID`, as upstream. The cluster
        // network gets its device in its config only (`deviceID`/`pciBusID`): upstream adds
        // nothing to the master's runtimeConfig and copies no device-info file for it (D-13).
        let container_id = &call.container_id;
        let mut master_caps = serde_json::Map::new();
        let caps = if p.is_default {
            &mut master_caps
        } else {
            &mut capability_args
        };
        let copy = devices::apply(&mut p, caps, device_info_dir, container_id, &ifname);
        copies.extend(copy.filter(|_| !p.is_default));
        out.push(Delegate {
            cni_args: runtime::cni_args(&call.args, &pod.uid, &sel.mac, &sel.ips),
            name: p.name,
            ifname,
            config: p.config,
            capability_args,
            is_default: p.is_default,
            default_route: sel.default_route,
        });
    }
    check_ecmp(&out)?;
    Ok((out, copies))
}

/// More than one requested default-route gateway per address family is refused.
fn check_ecmp(delegates: &[Delegate]) -> Result<(), PlanError> {
    let gateways = delegates
        .iter()
        .filter_map(|d| d.default_route.as_ref())
        .flatten();
    let (v4, v6) = gateways.fold((0, 0), |(v4, v6), gw| match gw {
        IpAddr::V4(_) => (v4 + 1, v6),
        IpAddr::V6(_) => (v4, v6 + 1),
    });
    if v4 > 1 || v6 > 1 {
        Err(PlanError::Ecmp)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
