//! Planning an ADD: from the request, the pod and its NADs to the ordered list of delegates, with
//! interface names, CNI_ARGS and capability args. Every refusal happens here, before anything
//! touches the node.
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use multus_common::constants::k8s_args;
use multus_common::validate::{self, InvalidName};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::netconf::{self, NetconfError};
use super::selection::{self, NetworkSelection, SelectionError};
use super::{CniCall, Delegate, runtime};
use crate::config::Config;
use crate::source::{ClusterSource, NadInfo, PodInfo, SourceError};

/// Pod annotation set by the kubelet on static pods (`api` for pods from the API server).
const CONFIG_SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
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
    Netconf { context: String, source: NetconfError },
    /// Code 7: nothing is attached when one selected NAD is missing.
    #[error("cannot find a network-attachment-definition ({name}) in namespace ({namespace}): {namespace}/{name} not found")]
    NadNotFound { namespace: String, name: String },
    /// Code 7.
    #[error(
        "GetNetworkDelegates: namespace isolation enabled, annotation violates permission, pod is in namespace {pod_namespace} but refers to target namespace {target_namespace}"
    )]
    NamespaceIsolation { pod_namespace: String, target_namespace: String },
    /// Code 7.
    #[error("network {network}: invalid interface name: {source}")]
    InvalidIfname { network: String, source: InvalidName },
    /// Code 7: two networks would get the same interface.
    #[error("interface name {ifname} is requested by both {first} and {second}")]
    DuplicateIfname { ifname: String, first: String, second: String },
    /// Code 7.
    #[error("multus does not support ECMP for default-route")]
    Ecmp,
    /// Code 7: the kubelet device lookup of `k8s.v1.cni.cncf.io/resourceName` is not built yet.
    #[error(
        "network {network}: device lookup for resource {resource} is not supported yet; set deviceID in the network selection"
    )]
    DeviceLookupUnsupported { network: String, resource: String },
    /// Code 7: a configured feature multus-rs does not implement yet.
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
}

/// The keys of the shim's stdin config that planning reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct StdinConf {
    cni_version: String,
    cluster_network: Option<String>,
    default_networks: Vec<String>,
    delegates: Vec<Value>,
    namespace_isolation: bool,
    runtime_config: Option<Value>,
}

/// The multus config in force for this request: the daemon's, with the shim's stdin filling what
/// the daemon leaves unset (upstream overlays daemon keys onto stdin, daemon wins). Keys with a
/// built-in default (namespaces, directories) always come from the daemon; isolation is on when
/// either side asks for it.
struct Effective {
    cluster_network: Option<String>,
    default_networks: Vec<String>,
    delegates: Vec<Value>,
    namespace_isolation: bool,
    runtime: Map<String, Value>,
    result_version: String,
}

/// The daemon's list when it has one, else the shim's.
fn or_stdin<T: Clone>(daemon: &[T], stdin: Vec<T>) -> Vec<T> {
    if daemon.is_empty() { stdin } else { daemon.to_vec() }
}

fn effective(config: &Config, stdin: &[u8]) -> Result<Effective, PlanError> {
    let raw: Value = serde_json::from_slice(stdin).map_err(|e| PlanError::DecodeConfig(e.to_string()))?;
    if !raw.is_object() {
        return Err(PlanError::DecodeConfig("not a JSON object".into()));
    }
    let conf = StdinConf::deserialize(&raw).map_err(|e| PlanError::DecodeConfig(e.to_string()))?;
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    Ok(Effective {
        cluster_network: non_empty(&config.cluster_network).or(non_empty(&conf.cluster_network)),
        default_networks: or_stdin(&config.default_networks, conf.default_networks),
        delegates: or_stdin(&config.delegates, conf.delegates),
        namespace_isolation: config.namespace_isolation || conf.namespace_isolation,
        runtime: conf.runtime_config.and_then(|v| v.as_object().cloned()).unwrap_or_default(),
        result_version: conf.cni_version,
    })
}

/// A network chosen for the pod, before interface naming.
struct Pending {
    name: String,
    config: Value,
    selection: Option<NetworkSelection>,
    is_default: bool,
}

/// Plans an ADD: see the module doc and the steps below.
pub async fn plan(config: &Config, source: &dyn ClusterSource, call: &CniCall) -> Result<Planned, PlanError> {
    let eff = effective(config, &call.config)?;
    if eff.cluster_network.is_none() && eff.delegates.is_empty() {
        return Err(PlanError::NoClusterNetwork);
    }
    let namespace = call.args.get(k8s_args::POD_NAMESPACE).ok_or(PlanError::MissingArg(k8s_args::POD_NAMESPACE))?;
    let name = call.args.get(k8s_args::POD_NAME).ok_or(PlanError::MissingArg(k8s_args::POD_NAME))?;
    let what = format!("pod {namespace}/{name}");
    let Some(pod) = source.pod(namespace, name).await.map_err(|source| PlanError::Source { what, source })? else {
        tracing::info!(pod.namespace = %namespace, pod.name = %name, "pod not found; nothing to attach");
        return Ok(Planned::PodGone);
    };
    check_uid(&pod, call.args.get(k8s_args::POD_UID))?;
    if config.auxiliary_cni_chain_name.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(PlanError::Unsupported("auxiliaryCNIChainName"));
    }
    let mut pending = cluster_networks(config, &eff, source, &pod).await?;
    if eff.cluster_network.is_some() && !config.system_namespaces.contains(&pod.namespace) {
        for value in &eff.default_networks {
            let (name, net) = resolve_value(config, source, value, "defaultNetwork").await?;
            pending.push(Pending { name, config: net, selection: None, is_default: false });
        }
    }
    pending.extend(annotation_networks(config, &eff, source, &pod).await?);
    let delegates = build_delegates(pending, &eff, call, &pod)?;
    tracing::info!(pod.namespace = %pod.namespace, pod.name = %pod.name, delegates = delegates.len(), "planned ADD");
    Ok(Planned::Plan(Plan { pod: Some(pod), delegates, result_version: eff.result_version }))
}

/// Upstream §4.2: a UID from the runtime that differs from the pod's is refused unless the pod
/// is static (the kubelet's mirror pod has another UID).
fn check_uid(pod: &PodInfo, expected: Option<&str>) -> Result<(), PlanError> {
    let Some(expected) = expected else { return Ok(()) };
    let is_static = pod.annotations.get(CONFIG_SOURCE_ANNOTATION).is_some_and(|s| s != "api");
    if expected == pod.uid || is_static {
        return Ok(());
    }
    Err(PlanError::UidMismatch { expected: expected.to_owned(), actual: pod.uid.clone() })
}

/// The cluster network (or what the default-network annotation puts in its place), first.
async fn cluster_networks(
    config: &Config,
    eff: &Effective,
    source: &dyn ClusterSource,
    pod: &PodInfo,
) -> Result<Vec<Pending>, PlanError> {
    let mut out = Vec::new();
    if let Some(value) = &eff.cluster_network {
        let (name, net) = resolve_value(config, source, value, "clusterNetwork").await?;
        out.push(Pending { name, config: net, selection: None, is_default: true });
    } else {
        for (index, inline) in eff.delegates.iter().enumerate() {
            let net = netconf::from_inline(index, inline)
                .map_err(|source| PlanError::Netconf { context: "LoadNetConf".into(), source })?;
            let name = net.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            out.push(Pending { name, config: net, selection: None, is_default: index == 0 });
        }
    }
    let annotation = pod.annotations.get(selection::DEFAULT_NETWORK_ANNOTATION).filter(|a| !a.trim().is_empty());
    if let (Some(annotation), Some(first)) = (annotation, out.first_mut()) {
        // Upstream applies no namespace isolation to this annotation (§9.20); the cluster
        // network is the admin's to choose, so we keep that: it is resolved in multusNamespace.
        let sel = selection::parse_default(annotation, &config.multus_namespace)?;
        let (name, net) = nad_delegate(config, source, &sel).await?;
        *first = Pending { name, config: net, selection: Some(sel), is_default: true };
    }
    Ok(out)
}

/// The networks of the pod's `k8s.v1.cni.cncf.io/networks` annotation.
async fn annotation_networks(
    config: &Config,
    eff: &Effective,
    source: &dyn ClusterSource,
    pod: &PodInfo,
) -> Result<Vec<Pending>, PlanError> {
    let Some(annotation) = pod.annotations.get(selection::NETWORKS_ANNOTATION).filter(|a| !a.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    let globals = config.global_namespace_list();
    let mut out = Vec::new();
    for sel in selection::parse(annotation, &pod.namespace)? {
        if eff.namespace_isolation && sel.namespace != pod.namespace && !globals.contains(&sel.namespace) {
            return Err(PlanError::NamespaceIsolation {
                pod_namespace: pod.namespace.clone(),
                target_namespace: sel.namespace.clone(),
            });
        }
        let (name, net) = nad_delegate(config, source, &sel).await?;
        out.push(Pending { name, config: net, selection: Some(sel), is_default: false });
    }
    Ok(out)
}

/// A selected NAD's delegate name and config (with the selection's `cni-args` merged in).
async fn nad_delegate(
    config: &Config,
    source: &dyn ClusterSource,
    sel: &NetworkSelection,
) -> Result<(String, Value), PlanError> {
    let nad = lookup_nad(source, &sel.namespace, &sel.name)
        .await?
        .ok_or_else(|| PlanError::NadNotFound { namespace: sel.namespace.clone(), name: sel.name.clone() })?;
    let name = format!("{}/{}", nad.namespace, nad.name);
    if let Some(resource) = nad.annotations.get(RESOURCE_NAME_ANNOTATION).filter(|_| sel.device_id.is_empty()) {
        return Err(PlanError::DeviceLookupUnsupported { network: name, resource: resource.clone() });
    }
    let mut net = netconf::from_nad(&nad, &config.conf_dir)
        .map_err(|source| PlanError::Netconf { context: format!("getKubernetesDelegate {name}"), source })?;
    if let Some(args) = &sel.cni_args {
        netconf::inject_cni_args(&mut net, args);
    }
    Ok((name, net))
}

async fn lookup_nad(source: &dyn ClusterSource, namespace: &str, name: &str) -> Result<Option<NadInfo>, PlanError> {
    let what = format!("network-attachment-definition {namespace}/{name}");
    source.nad(namespace, name).await.map_err(|source| PlanError::Source { what, source })
}

/// A `clusterNetwork`/`defaultNetworks` value: a path when it contains '/', else a NAD in
/// `multusNamespace`, else a network name in `confDir`. Unlike upstream, the cause is kept.
async fn resolve_value(
    config: &Config,
    source: &dyn ClusterSource,
    value: &str,
    key: &str,
) -> Result<(String, Value), PlanError> {
    let ns = &config.multus_namespace;
    let context = || format!("GetDefaultNetworks: failed to get {key} {value} in namespace {ns}");
    let from_file = |r: Result<Value, NetconfError>| {
        let net = r.map_err(|source| PlanError::Netconf { context: context(), source })?;
        Ok((net.get("name").and_then(Value::as_str).unwrap_or(value).to_owned(), net))
    };
    if value.contains('/') {
        return from_file(netconf::from_path(Path::new(value)));
    }
    match lookup_nad(source, ns, value).await? {
        Some(nad) => {
            let net = netconf::from_nad(&nad, &config.conf_dir)
                .map_err(|source| PlanError::Netconf { context: context(), source })?;
            Ok((format!("{}/{}", nad.namespace, nad.name), net))
        }
        None => from_file(netconf::from_conf_dir(value, &config.conf_dir)),
    }
}

/// Names interfaces (requested > CNI_IFNAME for the cluster network > `net<index>`), refuses
/// invalid or duplicate names and ECMP default routes, and fills in each delegate's args.
fn build_delegates(
    pending: Vec<Pending>,
    eff: &Effective,
    call: &CniCall,
    pod: &PodInfo,
) -> Result<Vec<Delegate>, PlanError> {
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(pending.len());
    for (index, mut p) in pending.into_iter().enumerate() {
        let requested = p.selection.as_ref().map(|s| s.interface.clone()).filter(|s| !s.is_empty());
        let ifname = match requested {
            Some(i) => i,
            None if p.is_default => call.ifname.clone(),
            None => format!("net{index}"),
        };
        validate::ifname(&ifname).map_err(|source| PlanError::InvalidIfname { network: p.name.clone(), source })?;
        if let Some(first) = seen.insert(ifname.clone(), p.name.clone()) {
            return Err(PlanError::DuplicateIfname { ifname, first, second: p.name });
        }
        if p.config.get("plugins").is_some() && p.config.get("cniVersion").is_none() && !eff.result_version.is_empty() {
            if let Some(obj) = p.config.as_object_mut() {
                obj.insert("cniVersion".into(), eff.result_version.clone().into());
            }
        }
        let selection = p.selection.take();
        let sel = selection.clone().unwrap_or_default();
        let capability_args = if p.is_default {
            runtime::cluster_capabilities(&eff.runtime, selection.as_ref())
        } else {
            let devinfo = runtime::device_info_file(&p.name, &call.container_id, &ifname);
            runtime::secondary_capabilities(&eff.runtime, &sel, Some(devinfo))
        };
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
    Ok(out)
}

/// More than one requested default-route gateway per address family is refused.
fn check_ecmp(delegates: &[Delegate]) -> Result<(), PlanError> {
    let gateways = delegates.iter().filter_map(|d| d.default_route.as_ref()).flatten();
    let (v4, v6) = gateways.fold((0, 0), |(v4, v6), gw| match gw {
        IpAddr::V4(_) => (v4 + 1, v6),
        IpAddr::V6(_) => (v4, v6 + 1),
    });
    if v4 > 1 || v6 > 1 { Err(PlanError::Ecmp) } else { Ok(()) }
}


#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use multus_common::{CniArgs, Command};
    use serde_json::json;

    /// An in-memory source: the trait's contract over two vectors.
    #[derive(Default)]
    struct Mem {
        pods: Vec<PodInfo>,
        nads: Vec<NadInfo>,
        down: bool,
    }

    #[async_trait]
    impl ClusterSource for Mem {
        async fn pod(&self, ns: &str, name: &str) -> Result<Option<PodInfo>, SourceError> {
            if self.down {
                return Err(SourceError::Unavailable { what: "api".into(), reason: "down".into() });
            }
            Ok(self.pods.iter().find(|p| p.namespace == ns && p.name == name).cloned())
        }
        async fn nad(&self, ns: &str, name: &str) -> Result<Option<NadInfo>, SourceError> {
            Ok(self.nads.iter().find(|n| n.namespace == ns && n.name == name).cloned())
        }
        async fn set_network_status(&self, _: &PodInfo, _: &str) -> Result<bool, SourceError> {
            Ok(true)
        }
    }

    fn nad(ns: &str, name: &str, plugin: &str) -> NadInfo {
        let config = json!({"cniVersion": "0.3.1", "type": plugin}).to_string();
        NadInfo { namespace: ns.into(), name: name.into(), config, ..Default::default() }
    }

    fn pod(annotations: &[(&str, &str)]) -> PodInfo {
        PodInfo {
            namespace: "app".into(),
            name: "web".into(),
            uid: "uid-1".into(),
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn source(p: PodInfo) -> Mem {
        let nads = vec![
            nad("kube-system", "cluster", "flannel"),
            nad("kube-system", "extra", "bridge"),
            nad("kube-system", "alt", "calico"),
            nad("app", "mv", "macvlan"),
            nad("other", "ipv", "ipvlan"),
            nad("default", "glob", "host-device"),
        ];
        Mem { pods: vec![p], nads, down: false }
    }

    fn call(args: &str, stdin: Value) -> CniCall {
        CniCall {
            command: Command::Add,
            container_id: "cid".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: CniArgs::parse(args).unwrap(),
            cni_path: String::new(),
            config: stdin.to_string().into_bytes(),
        }
    }

    const ARGS: &str = "K8S_POD_NAMESPACE=app;K8S_POD_NAME=web;K8S_POD_UID=uid-1";

    fn stdin() -> Value {
        json!({"cniVersion": "1.0.0", "name": "multus", "type": "multus-shim", "clusterNetwork": "cluster",
               "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}})
    }

    async fn run(config: &Config, src: &Mem, args: &str, stdin: Value) -> Result<Planned, PlanError> {
        plan(config, src, &call(args, stdin)).await
    }

    async fn delegates(config: &Config, p: PodInfo) -> Result<Vec<Delegate>, PlanError> {
        match run(config, &source(p), ARGS, stdin()).await? {
            Planned::Plan(plan) => Ok(plan.delegates),
            Planned::PodGone => panic!("pod is there"),
        }
    }

    fn summary(ds: &[Delegate]) -> Vec<(String, String, bool)> {
        ds.iter().map(|d| (d.name.clone(), d.ifname.clone(), d.is_default)).collect()
    }

    fn s(name: &str, ifname: &str, default: bool) -> (String, String, bool) {
        (name.into(), ifname.into(), default)
    }

    #[tokio::test]
    async fn order_and_interface_names() {
        let config = Config { default_networks: vec!["extra".into()], ..Config::default() };
        let p = pod(&[(selection::NETWORKS_ANNOTATION, "mv, default/glob@gl0, other/ipv")]);
        let ds = delegates(&config, p).await.unwrap();
        let want = vec![
            s("kube-system/cluster", "eth0", true),
            s("kube-system/extra", "net1", false),
            s("app/mv", "net2", false),
            s("default/glob", "gl0", false),
            s("other/ipv", "net4", false),
        ];
        assert_eq!(summary(&ds), want);
        assert_eq!(ds[0].capability_args["portMappings"][0]["hostPort"], 8080);
        assert!(!ds[2].capability_args.contains_key("portMappings"));
        assert_eq!(ds[2].cni_args, "IgnoreUnknown=true;K8S_POD_NAMESPACE=app;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=;K8S_POD_UID=uid-1");
    }

    #[tokio::test]
    async fn system_namespaces_get_no_default_networks() {
        let config = Config {
            default_networks: vec!["extra".into()],
            system_namespaces: vec!["app".into()],
            ..Config::default()
        };
        assert_eq!(summary(&delegates(&config, pod(&[])).await.unwrap()), vec![s("kube-system/cluster", "eth0", true)]);
    }

    #[tokio::test]
    async fn default_network_annotation_replaces_cluster_network() {
        let p = pod(&[(selection::DEFAULT_NETWORK_ANNOTATION, "alt"), (selection::NETWORKS_ANNOTATION, "mv")]);
        let ds = delegates(&Config::default(), p).await.unwrap();
        assert_eq!(summary(&ds), vec![s("kube-system/alt", "eth0", true), s("app/mv", "net1", false)]);
        assert_eq!(ds[0].config["type"], "calico");
        let p = pod(&[(selection::DEFAULT_NETWORK_ANNOTATION, "alt,cluster")]);
        let err = delegates(&Config::default(), p).await.unwrap_err();
        assert_eq!(err.to_string(), "more than one default network is specified");
    }

    #[tokio::test]
    async fn selection_requests_reach_the_delegate() {
        let ann = r#"[{"name":"mv","interface":"ext0","ips":["10.1.1.5/24"],"mac":"c2:b0:57:49:47:f1",
            "cni-args":{"k":"v"},"default-route":["10.1.1.1"]}]"#;
        let ds = delegates(&Config::default(), pod(&[(selection::NETWORKS_ANNOTATION, ann)])).await.unwrap();
        let d = &ds[1];
        assert_eq!(d.ifname, "ext0");
        assert_eq!(d.config["args"]["cni"]["k"], "v");
        assert_eq!(d.capability_args["ips"], json!(["10.1.1.5/24"]));
        assert!(d.cni_args.ends_with(";MAC=c2:b0:57:49:47:f1;IP=10.1.1.5/24"), "{}", d.cni_args);
        assert_eq!(d.default_route, Some(vec!["10.1.1.1".parse().unwrap()]));
    }

    #[tokio::test]
    async fn refusals() {
        let isolated = Config { namespace_isolation: true, ..Config::default() };
        let cases: Vec<(Config, &str, &str)> = vec![
            (isolated.clone(), "other/ipv", "pod is in namespace app but refers to target namespace other"),
            (Config::default(), "absent", "cannot find a network-attachment-definition (absent) in namespace (app): app/absent"),
            (Config::default(), "mv@eth0", "interface name eth0 is requested by both kube-system/cluster and app/mv"),
            (Config::default(), "mv@a:b", "network app/mv: invalid interface name"),
            (Config::default(), "Bad", "mismatch @ 'Bad'"),
            (
                Config::default(),
                r#"[{"name":"mv","default-route":["10.0.0.1"]},{"name":"glob","namespace":"default","default-route":["10.0.0.2"]}]"#,
                "multus does not support ECMP for default-route",
            ),
            (Config { auxiliary_cni_chain_name: Some("aux".into()), ..Config::default() }, "mv", "auxiliaryCNIChainName"),
        ];
        for (config, ann, want) in cases {
            let err = delegates(&config, pod(&[(selection::NETWORKS_ANNOTATION, ann)])).await.unwrap_err();
            assert!(err.to_string().contains(want), "{ann}: {err}");
        }
        assert!(delegates(&isolated, pod(&[(selection::NETWORKS_ANNOTATION, "mv,default/glob")])).await.is_ok());
    }

    #[tokio::test]
    async fn request_level_errors() {
        let config = Config::default();
        let src = source(pod(&[]));
        let missing = run(&config, &src, "K8S_POD_NAME=web", stdin()).await.unwrap_err();
        assert!(matches!(missing, PlanError::MissingArg("K8S_POD_NAMESPACE")));
        let bad = plan(&config, &src, &CniCall { config: b"{x".to_vec(), ..call(ARGS, stdin()) }).await;
        assert!(matches!(bad, Err(PlanError::DecodeConfig(_))));
        let none = run(&config, &src, ARGS, json!({"cniVersion": "1.0.0"})).await.unwrap_err();
        assert!(matches!(none, PlanError::NoClusterNetwork));
        let gone = run(&config, &src, "K8S_POD_NAMESPACE=app;K8S_POD_NAME=nope", stdin()).await.unwrap();
        assert!(matches!(gone, Planned::PodGone));
        let down = Mem { down: true, ..source(pod(&[])) };
        let err = run(&config, &down, ARGS, stdin()).await.unwrap_err();
        assert!(matches!(err, PlanError::Source { source: SourceError::Unavailable { .. }, .. }));
    }

    #[tokio::test]
    async fn uid_mismatch_unless_static() {
        let config = Config::default();
        let args = "K8S_POD_NAMESPACE=app;K8S_POD_NAME=web;K8S_POD_UID=other";
        let err = run(&config, &source(pod(&[])), args, stdin()).await.unwrap_err();
        assert_eq!(err.to_string(), r#"expected pod UID "other" but got "uid-1" from Kube API"#);
        let static_pod = pod(&[(CONFIG_SOURCE_ANNOTATION, "file")]);
        assert!(run(&config, &source(static_pod), args, stdin()).await.is_ok());
    }

    #[tokio::test]
    async fn daemon_config_wins_and_stdin_fills_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let list = json!({"name": "filenet", "plugins": [{"type": "ptp"}]});
        std::fs::write(dir.path().join("10-file.conflist"), list.to_string()).unwrap();
        let config = Config {
            cluster_network: Some("filenet".into()),
            conf_dir: dir.path().into(),
            ..Config::default()
        };
        let Planned::Plan(plan) = run(&config, &source(pod(&[])), ARGS, stdin()).await.unwrap() else {
            panic!("planned")
        };
        assert_eq!(summary(&plan.delegates), vec![s("filenet", "eth0", true)]);
        assert_eq!(plan.delegates[0].config["cniVersion"], "1.0.0");
        assert_eq!(plan.result_version, "1.0.0");
        let path = dir.path().join("10-file.conflist").display().to_string();
        let inline = json!({"cniVersion": "0.4.0", "delegates": [{"name": "a", "type": "bridge"}, {"name": "b", "type": "ptp"}]});
        let Planned::Plan(plan) = run(&Config::default(), &source(pod(&[])), ARGS, inline).await.unwrap() else {
            panic!("planned")
        };
        assert_eq!(summary(&plan.delegates), vec![s("a", "eth0", true), s("b", "net1", false)]);
        let by_path = json!({"cniVersion": "0.4.0", "clusterNetwork": path});
        let Planned::Plan(plan) = run(&Config::default(), &source(pod(&[])), ARGS, by_path).await.unwrap() else {
            panic!("planned")
        };
        assert_eq!(plan.delegates[0].name, "filenet");
    }
}
