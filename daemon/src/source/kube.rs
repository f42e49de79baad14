//! The Kubernetes source: pods from ONE node-scoped, metadata-only watch into our own compact
//! cache (`pods`; live GET when a pod is not cached yet), NADs from a cluster-wide reflector
//! (live GET on a miss), network-status as a single JSON merge patch of one annotation (or upstream's get + update of `pods/status` when
//! RBAC refuses the patch, see `status`). Every API call is bounded by a per-call timeout and a
//! retry budget (see `retry`).
//!
//! API calls and the RBAC each needs (nothing more):
//! * `pods`: `list`, `watch` (the node's pods, `spec.nodeName=<node>`), `get` (cache miss),
//!   `patch` (the network-status annotation). Upstream's ClusterRole works too: without `patch`,
//!   `get` on `pods` and `update` on `pods/status` write the annotation instead.
//! * `k8s.cni.cncf.io` `network-attachment-definitions`: `list`, `watch` (cache), `get` (miss).
//! * `events` (core/v1): `create` (Normal AddedInterface and Warning NoNetworkFound events on
//!   the pod, best effort).
//! * `resource.k8s.io` `resourceclaims`: `get`; `resourceslices`: `list`, `watch` (the node's,
//!   `spec.nodeName=<node>`): a pod's devices from DRA claims (see `dra`).
//! * with `perNodeCertificate` only: `certificates.k8s.io` `certificatesigningrequests`:
//!   `create`, `get` (the bootstrap user, and the `system:multus` group for renewals); the
//!   approval itself is a separate approver's (as upstream's `cert-approver`).
//!
//! Why NADs are cached cluster-wide: upstream does the same (MC#1214, to cut API calls); the
//! cache is bounded by the cluster's NAD count (small next to pods), every ADD with secondary
//! networks reads one or more NADs, and a watch costs the API server less than a GET per ADD.
//! A miss still does a live GET, so a NAD created a moment before its first pod is found.
pub mod certificate;
pub mod dra;
mod events;
mod nad;
mod pods;
mod retry;
mod retry_after;
mod status;

use std::path::PathBuf;
use std::time::Duration;

use ::kube::api::Api;
use ::kube::config::{InClusterError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use ::kube::core::PartialObjectMeta;
use ::kube::runtime::reflector::{self, ObjectRef, Store};
use ::kube::runtime::{WatchStreamExt, watcher};
use ::kube::{Client, client::ClientBuilder};
use async_trait::async_trait;
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use tokio::task::JoinHandle;
use tower::util::AndThenLayer;

pub use nad::{NadSpec, NetworkAttachmentDefinition};
pub use retry::Budget;
use retry::{found, with_retries};
use status::StatusWriter;

use super::{ClusterSource, EventType, NadInfo, PodInfo, SourceError, SyncState};
use crate::config::Config;
use certificate::{Active, CertSettings, CertificateError, PerNodeOptions};

/// The annotation the daemon writes after a successful ADD.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// The node whose pods are cached (upstream's variable).
pub const NODE_NAME_ENV: &str = "MULTUS_NODE_NAME";

/// How to reach the API server and how patient to be with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeSettings {
    /// Kubeconfig file; the in-cluster service account when `None`.
    pub kubeconfig: Option<PathBuf>,
    /// Only this node's pods are cached; all pods when `None` (as upstream without the variable).
    pub node_name: Option<String>,
    pub budget: Budget,
    /// `perNodeCertificate` when enabled: the client authenticates with a per-node certificate.
    pub per_node_certificate: Option<PerNodeOptions>,
}

impl KubeSettings {
    /// The daemon's settings: the `kubeconfig` key, else `KUBECONFIG` (its first path), else in
    /// cluster; the node from `MULTUS_NODE_NAME`.
    pub fn from_config(config: &Config) -> Self {
        let env_kubeconfig = std::env::var_os("KUBECONFIG")
            .and_then(|v| std::env::split_paths(&v).find(|p| !p.as_os_str().is_empty()));
        Self {
            kubeconfig: config.kubeconfig.clone().or(env_kubeconfig),
            node_name: std::env::var(NODE_NAME_ENV).ok().filter(|n| !n.is_empty()),
            budget: Budget {
                per_call: Duration::from_secs(config.kube_api_timeout_seconds.max(1)),
                total: Duration::from_secs(config.kube_api_retry_seconds),
            },
            per_node_certificate: PerNodeOptions::from_config(config.per_node_certificate.as_ref()),
        }
    }
}

/// Setting up the Kubernetes client failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("reading kubeconfig {path}: {source}")]
    ReadKubeconfig {
        path: PathBuf,
        source: KubeconfigError,
    },
    #[error("loading kubeconfig {path}: {source}")]
    LoadKubeconfig {
        path: PathBuf,
        source: KubeconfigError,
    },
    #[error("in-cluster configuration (no kubeconfig given): {0}")]
    InCluster(#[from] InClusterError),
    #[error("creating the Kubernetes client: {0}")]
    CreateClient(#[source] ::kube::Error),
    #[error("per-node certificate: {0}")]
    PerNodeCertificate(#[from] CertificateError),
}

/// Pods and NADs from the Kubernetes API.
pub struct KubeSource {
    client: Client,
    pods: pods::PodCache,
    nads: Store<NetworkAttachmentDefinition>,
    budget: Budget,
    /// Reported as the events' source host.
    node_name: Option<String>,
    reflectors: Vec<JoinHandle<()>>,
    /// The per-node identity in use, when `perNodeCertificate` is enabled.
    certificate: Option<tokio::sync::watch::Receiver<Active>>,
    /// Merge patch, or upstream's update of `pods/status` once RBAC refused a patch.
    status: StatusWriter,
    /// Pod events, posted in the background from a bounded queue.
    events: events::Recorder,
    /// Which cache has listed everything once (set by the tasks `with_client` starts).
    sync: tokio::sync::watch::Receiver<SyncState>,
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        for task in &self.reflectors {
            task.abort();
        }
    }
}

impl KubeSource {
    /// Builds the client and starts the reflectors (they fill in the background; ADD waits for
    /// their first listing, see `sync`, and a miss after it is a live GET). Must be called
    /// inside a tokio runtime.
    pub async fn connect(settings: KubeSettings) -> Result<Self, KubeSourceError> {
        if let Some(opts) = &settings.per_node_certificate {
            // Checked before anything else so a missing key is the startup error.
            let cert = CertSettings::resolve(opts, settings.node_name.as_deref())?;
            let per_node = certificate::connect(cert, settings.budget.per_call).await?;
            let mut source = Self::with_client(
                per_node.client,
                settings.node_name.as_deref(),
                settings.budget,
            );
            source.reflectors.push(per_node.task);
            source.certificate = Some(per_node.current);
            return Ok(source);
        }
        let config = client_config(settings.kubeconfig.as_ref()).await?;
        let client = build_client(config, settings.budget.per_call)
            .map_err(KubeSourceError::CreateClient)?;
        Ok(Self::with_client(
            client,
            settings.node_name.as_deref(),
            settings.budget,
        ))
    }

    /// The per-node client certificate in use (`perNodeCertificate`), if any.
    pub fn client_certificate(&self) -> Option<certificate::Identity> {
        self.certificate
            .as_ref()
            .map(|current| current.borrow().identity.clone())
    }

    /// Starts the reflectors on an existing client.
    pub fn with_client(client: Client, node_name: Option<&str>, budget: Budget) -> Self {
        let pod_config = match node_name {
            Some(node) => watcher::Config::default().fields(&format!("spec.nodeName={node}")),
            None => {
                tracing::warn!(
                    env = NODE_NAME_ENV,
                    "node name not set: caching every pod of the cluster"
                );
                watcher::Config::default()
            }
        };
        let pods = pods::PodCache::default();
        // A metadata-only watch: spec and status never cross the wire.
        let pod_stream = watcher(
            Api::<PartialObjectMeta<Pod>>::all(client.clone()),
            pod_config,
        )
        .default_backoff()
        .map_ok({
            let pods = pods.clone();
            move |event| pods.apply(event)
        });
        let (nads, nad_writer) = reflector::store();
        let nad_stream = watcher(
            Api::<NetworkAttachmentDefinition>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(NetworkAttachmentDefinition::strip)
        .reflect(nad_writer);
        let (sync_tx, sync) = tokio::sync::watch::channel(SyncState::PENDING);
        let reflectors = vec![
            tokio::spawn(drive(pod_stream, "pods")),
            tokio::spawn(drive(nad_stream, "network-attachment-definitions")),
            tokio::spawn({
                let (pods, sync_tx) = (pods.clone(), sync_tx.clone());
                async move {
                    pods.wait_ready().await;
                    sync_tx.send_modify(|s| s.pods = true);
                }
            }),
            tokio::spawn(follow_sync(nads.clone(), sync_tx, |s| s.nads = true)),
        ];
        let events = events::Recorder::start(client.clone(), budget.per_call);
        Self {
            client,
            pods,
            nads,
            budget,
            node_name: node_name.map(str::to_owned),
            reflectors,
            certificate: None,
            status: StatusWriter::default(),
            events,
            sync,
        }
    }

    /// Waits until both caches hold a complete first listing; false when `within` passed first.
    pub async fn wait_synced(&self, within: Duration) -> bool {
        let both = async {
            self.pods.wait_ready().await;
            self.nads.wait_until_ready().await.is_ok()
        };
        tokio::time::timeout(within, both).await.unwrap_or(false)
    }

    /// The DRA device lookup over this source's client (it owns the node's ResourceSlice
    /// watch, started on the first pod with claims).
    pub fn dra(&self) -> dra::Dra {
        let api = dra::KubeDraApi::new(self.client.clone(), self.budget);
        dra::Dra::new(std::sync::Arc::new(api), self.node_name.clone())
    }

    /// Pods in the cache (for metrics and tests).
    pub fn cached_pods(&self) -> usize {
        self.pods.count()
    }

    /// NADs in the cache (for metrics and tests).
    pub fn cached_nads(&self) -> usize {
        self.nads.len()
    }

    /// Whether the pod is in the cache (a lookup would need no API call).
    pub fn is_pod_cached(&self, namespace: &str, name: &str) -> bool {
        self.pods.contains(namespace, name)
    }

    async fn live_pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, SourceError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("getting pod {namespace}/{name}");
        let found = found(with_retries(&what, self.budget, || api.get_metadata(name)).await)?;
        Ok(found.and_then(pods::info))
    }

    async fn live_nad(&self, namespace: &str, name: &str) -> Result<Option<NadInfo>, SourceError> {
        let api: Api<NetworkAttachmentDefinition> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("getting network-attachment-definition {namespace}/{name}");
        let found = found(with_retries(&what, self.budget, || api.get(name)).await)?;
        Ok(found.map(|nad| nad.to_info()))
    }
}

/// Marks the store synced once its reflector has listed everything (a store stays ready after
/// that, also through re-lists). No timer: the store wakes this task.
async fn follow_sync<K>(
    store: Store<K>,
    state: tokio::sync::watch::Sender<SyncState>,
    mark: fn(&mut SyncState),
) where
    K: reflector::Lookup + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    if store.wait_until_ready().await.is_ok() {
        state.send_modify(mark);
    }
}

/// Keeps a reflector's stream running; the watcher retries with back-off after every error.
async fn drive<S, T>(stream: S, resource: &'static str)
where
    S: Stream<Item = Result<T, watcher::Error>>,
{
    futures::pin_mut!(stream);
    while let Some(item) = stream.next().await {
        // An event's JSON is parsed and dropped: a relist or a wave of pods is a burst too.
        crate::heap::touched();
        if let Err(error) = item {
            tracing::warn!(resource, error = %error, "watch failed; retrying with back-off");
        }
    }
}

/// A client without kube's own retries (ours are bounded by the budget; kube's may wait up to
/// 1000 s) that keeps `Retry-After` in error statuses.
fn build_client(mut config: ::kube::Config, per_call: Duration) -> Result<Client, ::kube::Error> {
    config.default_retry = false;
    config.connect_timeout = Some(per_call);
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&AndThenLayer::new(retry_after::carry))
        .build())
}

async fn client_config(kubeconfig: Option<&PathBuf>) -> Result<::kube::Config, KubeSourceError> {
    let Some(path) = kubeconfig else {
        return Ok(::kube::Config::incluster()?);
    };
    let file = Kubeconfig::read_from(path).map_err(|source| KubeSourceError::ReadKubeconfig {
        path: path.clone(),
        source,
    })?;
    ::kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|source| KubeSourceError::LoadKubeconfig {
            path: path.clone(),
            source,
        })
}

#[async_trait]
impl ClusterSource for KubeSource {
    fn sync(&self) -> tokio::sync::watch::Receiver<SyncState> {
        self.sync.clone()
    }

    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, SourceError> {
        if let Some(pod) = self.pods.get(namespace, name) {
            tracing::debug!(
                pod.namespace = namespace,
                pod.name = name,
                lookup = "cache",
                "pod found"
            );
            return Ok(Some(pod));
        }
        let found = self.live_pod(namespace, name).await?;
        tracing::debug!(
            pod.namespace = namespace,
            pod.name = name,
            lookup = "live",
            found = found.is_some(),
            "pod looked up"
        );
        Ok(found)
    }

    async fn nad(&self, namespace: &str, name: &str) -> Result<Option<NadInfo>, SourceError> {
        if let Some(nad) = self.nads.get(&ObjectRef::new(name).within(namespace)) {
            return Ok(Some(nad.to_info()));
        }
        self.live_nad(namespace, name).await
    }

    async fn record_event(&self, pod: &PodInfo, kind: EventType, reason: &str, message: &str) {
        let event = events::event(pod, kind, reason, message, self.node_name.as_deref());
        self.events.record(event);
    }

    async fn set_network_status(
        &self,
        pod: &PodInfo,
        status_json: &str,
    ) -> Result<bool, SourceError> {
        // As upstream: never write the status of a pod that replaced ours under the same name.
        let written = match self.pod(&pod.namespace, &pod.name).await? {
            Some(current) => {
                status::check_not_replaced(pod, &current.uid, &current.annotations)?;
                self.status
                    .write(&self.client, self.budget, pod, status_json)
                    .await?
            }
            None => false,
        };
        if !written {
            tracing::info!(pod.namespace = %pod.namespace, pod.name = %pod.name, "pod gone; network-status not written");
        }
        Ok(written)
    }
}
