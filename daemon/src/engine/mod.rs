//! The delegate-invocation engine: no gRPC and no Kubernetes types in its signatures.
//!
//! `plan` turns a request (pod, selections, NADs) into ordered delegates; `exec` runs one plugin
//! per the CNI spec; `conflist` chains plugins; `cache` keeps what DEL needs; `admission` bounds
//! concurrency; `netstatus` builds the network-status annotation. [`Engine`] puts them together
//! per verb: `add`, `del` (and CHECK, also cache-driven) and `node` (STATUS and GC).

mod add;
pub mod admission;
pub mod cache;
pub mod call;
pub mod conflist;
mod del;
pub mod delegate;
pub mod error;
pub mod events;
pub mod exec;
#[cfg(test)]
pub(crate) mod fakeplugin;
pub mod gateway;
mod hotplug;
pub mod netconf;
pub mod netstatus;
mod node;
pub mod plan;
pub mod reconcile;
pub mod runtime;
pub mod selection;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use multus_common::CniArgs;
use multus_common::args::ArgsError;
use multus_common::code;
use multus_common::result::ResultError;
use multus_common::validate::InvalidName;

pub use call::CniCall;
pub use delegate::Delegate;
pub use error::{CniCode, Several};
pub use hotplug::HotplugCall;
pub use plan::HotplugNetwork;

use self::admission::{Admission, AdmissionError};
use self::cache::{Cache, CacheError};
use self::conflist::ConflistError;
use self::exec::Executor;
use self::plan::{PlanError, UpstreamStep};
use crate::config::Config;
use crate::kubelet::DeviceSource;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::source::{ClusterSource, SourceError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Why a verb failed; [`CniCode`] gives its CNI code (noted on each variant).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A container id or interface name from the runtime is not valid (code 4).
    #[error("{0}")]
    InvalidName(#[from] InvalidName),
    /// CNI_ARGS could not be split into pairs (code 4).
    #[error("invalid CNI_ARGS: {0}")]
    InvalidArgs(#[source] ArgsError),
    /// The shim speaks a newer protocol than this daemon (code 11: retry once it is upgraded).
    #[error(
        "the shim speaks protocol version {requested}, this daemon only up to {supported}; retry after the daemon is upgraded"
    )]
    ProtocolTooNew { requested: u32, supported: u32 },
    /// The shim's stdin config is not JSON (code 6).
    #[error("failed to decode the network config: {0}")]
    DecodeConfig(String),
    /// The request's config lacks or mangles something the verb needs (code 7).
    #[error("invalid network config: {0}")]
    InvalidConfig(String),
    /// Planning refused the ADD (its code).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Waited too long for the container lock or a delegate slot (code 11).
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    /// Reading or writing the cache record failed (code 999).
    #[error("cache: {0}")]
    Cache(#[from] CacheError),
    /// ADD could not record its plan before the first plugin, so it ran none (code 11 when
    /// `cniDir` is out of space or quota: the runtime retries once space is freed; else the
    /// cause's).
    #[error(
        "the attachment could not be recorded before its first plugin ran, so nothing was attached: {0}"
    )]
    NotRecorded(Box<EngineError>),
    /// A delegate failed (its plugin's code); `plugin` is the plugin type that failed (or the
    /// first one).
    #[error("delegate {name:?} (plugin {plugin}, {ifname}): {source}")]
    Delegate {
        name: String,
        plugin: String,
        ifname: String,
        source: Box<ConflistError>,
    },
    /// A delegate of an ADD failed (or its pre-check refused it): upstream's `cmdPluginErr`
    /// wording first (`[ns/pod/uid:net]: error adding container to network "net": `), then our
    /// detail. Code and details are the cause's.
    #[error(
        "[{namespace}/{pod}/{uid}:{network}]: error adding container to network {network:?}: {source}"
    )]
    AddDelegate {
        namespace: String,
        pod: String,
        uid: String,
        network: String,
        source: Box<EngineError>,
    },
    /// Any failed ADD of a pod, as upstream's server words it (`error configuring pod [ns/pod]
    /// networking: `), before the cause. Code and details are the cause's.
    #[error("error configuring pod [{namespace}/{pod}] networking: {source}")]
    ConfiguringPod {
        namespace: String,
        pod: String,
        source: Box<EngineError>,
    },
    /// An ADD step failed, in upstream's `cmdErr` wording (`Multus: [ns/pod/uid]: <step>`)
    /// before the cause (`pod_ref` is `[ns/pod/uid]: ` or empty, `step` ends in `: ` or is
    /// empty). Code and details are the cause's.
    #[error("Multus: {pod_ref}{step}{source}")]
    Step {
        pod_ref: String,
        step: String,
        source: Box<EngineError>,
    },
    /// Upstream's `validateIfName` pre-check refused the ADD before any plugin ran: the pod's
    /// netns cannot be entered, or an interface a delegate would create already exists in it
    /// (code 4: the runtime's CNI_NETNS/CNI_IFNAME do not fit the sandbox). `plugin` is the
    /// config's `type` as upstream prints it (empty for a conflist).
    #[error(
        "DelegateAdd: cannot set {plugin:?} interface name to {ifname:?}: validateIfName: {reason}"
    )]
    IfnameCheck {
        plugin: String,
        ifname: String,
        reason: String,
    },
    /// Writing network-status failed (code 11 when the source is unavailable, else 999).
    #[error("pod {pod}: setting network-status: {source}")]
    NetworkStatus { pod: String, source: SourceError },
    /// `default-route` could not be applied inside the pod's namespace (rolled back like a
    /// delegate failure; code 999).
    #[error("default-route: {0}")]
    DefaultRoute(Box<gateway::GatewayError>),
    /// The result could not be given in the runtime's cniVersion (code 1 for unknown versions,
    /// else 999).
    #[error("converting the result of {name:?} to cniVersion {version:?}: {source}")]
    ConvertResult {
        name: String,
        version: String,
        source: ResultError,
    },
    /// CHECK for a container nothing is recorded for (code 3).
    #[error("container {0}: nothing recorded for it (unknown container)")]
    UnknownContainer(String),
    /// ADD before the readiness indicator file exists (code 11).
    #[error("readiness indicator file {0} does not exist yet")]
    NotReady(String),
    /// ADD while the pod and NAD caches have not synced, past `cacheSyncTimeoutSeconds` (code 11).
    #[error(
        "{pending} not synced with the Kubernetes API yet (waited {waited_seconds} s); try again later"
    )]
    NotSynced {
        pending: &'static str,
        waited_seconds: u64,
    },
    /// STATUS: the node cannot attach networks now (code 50).
    #[error("{0}")]
    Unavailable(String),
    /// DEL tried every delegate; these failed (the first one's code).
    #[error("errors: {0}")]
    Several(Several<EngineError>),
    /// The request was dropped at its deadline (layers/timeout); what ran was rolled back
    /// (code 11).
    #[error("container {0}: ADD cancelled at its deadline; attached delegates were rolled back")]
    Cancelled(String),
    /// A blocking or detached task of the engine died (code 999).
    #[error("internal error: {what} task: {source}")]
    Task {
        what: &'static str,
        source: tokio::task::JoinError,
    },
    /// Code 999.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CniCode for EngineError {
    fn cni_code(&self) -> u32 {
        match self {
            EngineError::InvalidName(_)
            | EngineError::InvalidArgs(_)
            | EngineError::IfnameCheck { .. } => code::INVALID_ENV,
            EngineError::DecodeConfig(_) => code::DECODE_FAILURE,
            EngineError::InvalidConfig(_) => code::INVALID_NETWORK_CONFIG,
            EngineError::Plan(p) => p.cni_code(),
            EngineError::Admission(a) => a.cni_code(),
            EngineError::ProtocolTooNew { .. }
            | EngineError::Cancelled(_)
            | EngineError::NotReady(_)
            | EngineError::NotSynced { .. } => code::TRY_AGAIN_LATER,
            EngineError::Delegate { source, .. } => source.cni_code(),
            EngineError::AddDelegate { source, .. }
            | EngineError::ConfiguringPod { source, .. }
            | EngineError::Step { source, .. } => source.cni_code(),
            EngineError::NetworkStatus {
                source: SourceError::Replaced { .. },
                ..
            } => code::INVALID_NETWORK_CONFIG,
            EngineError::NetworkStatus {
                source: SourceError::Unavailable { .. },
                ..
            } => code::TRY_AGAIN_LATER,
            EngineError::ConvertResult { source, .. } => source.cni_code(),
            EngineError::UnknownContainer(_) => code::UNKNOWN_CONTAINER,
            EngineError::Unavailable(_) => code::PLUGIN_NOT_AVAILABLE,
            EngineError::Several(all) => all.cni_code(),
            EngineError::NotRecorded(cause) => match cause.as_ref() {
                EngineError::Cache(c) if c.is_out_of_space() => code::TRY_AGAIN_LATER,
                other => other.cni_code(),
            },
            EngineError::NetworkStatus { .. }
            | EngineError::Cache(_)
            | EngineError::DefaultRoute(_)
            | EngineError::Task { .. }
            | EngineError::Internal(_) => code::INTERNAL,
        }
    }

    fn cni_details(&self) -> Option<&str> {
        match self {
            EngineError::Delegate { source, .. } => source.cni_details(),
            EngineError::AddDelegate { source, .. }
            | EngineError::ConfiguringPod { source, .. }
            | EngineError::Step { source, .. } => source.cni_details(),
            EngineError::Several(all) => all.cni_details(),
            _ => None,
        }
    }
}

impl EngineError {
    /// `Ok` for no errors, the error itself for one, [`EngineError::Several`] for more.
    fn from_all(errors: Vec<EngineError>) -> Result<(), EngineError> {
        Several::collect(errors, EngineError::Several)
    }

    /// `self`, a failure of delegate `d` during ADD, in upstream's `cmdPluginErr` and server
    /// wording (pod namespace, name and UID from the runtime's CNI_ARGS, as upstream).
    fn in_add(self, call: &CniCall, d: &Delegate) -> Self {
        let arg = |k: &str| call.args.get(k).unwrap_or_default().to_owned();
        EngineError::AddDelegate {
            namespace: arg(multus_common::constants::k8s_args::POD_NAMESPACE),
            pod: arg(multus_common::constants::k8s_args::POD_NAME),
            uid: arg(multus_common::constants::k8s_args::POD_UID),
            network: d.network_name().to_owned(),
            source: Box::new(self),
        }
    }

    /// A failed ADD in upstream's words: its server's `error configuring pod [ns/pod]
    /// networking: `, then (for a step upstream's `CmdAdd` names) its `cmdErr` prefix and step,
    /// then our detail. Without the pod's namespace and name upstream refuses before any of its
    /// wrappers, and so do we.
    fn in_upstream_words(self, args: &CniArgs) -> Self {
        use multus_common::constants::k8s_args;
        if args.get(k8s_args::POD_NAMESPACE).is_none() || args.get(k8s_args::POD_NAME).is_none() {
            return self;
        }
        let stepped = match self.upstream_step() {
            Some(step) => EngineError::Step {
                pod_ref: if step.names_pod {
                    let arg = |k: &str| args.get(k).unwrap_or_default();
                    let (ns, pod) = (arg(k8s_args::POD_NAMESPACE), arg(k8s_args::POD_NAME));
                    format!("[{ns}/{pod}/{}]: ", arg(k8s_args::POD_UID))
                } else {
                    String::new()
                },
                step: step.text.into_owned(),
                source: Box::new(self),
            },
            None => self,
        };
        stepped.configuring_pod(args)
    }

    /// Upstream's server's `error configuring pod [ns/pod] networking: ` before `self` (also
    /// what its `/delegate` ADD puts before a failed delegate); `self` when the request does
    /// not name the pod.
    fn configuring_pod(self, args: &CniArgs) -> Self {
        use multus_common::constants::k8s_args;
        match (
            args.get(k8s_args::POD_NAMESPACE),
            args.get(k8s_args::POD_NAME),
        ) {
            (Some(namespace), Some(pod)) => EngineError::ConfiguringPod {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
                source: Box::new(self),
            },
            _ => self,
        }
    }

    /// The failure under upstream's wrappers ([`EngineError::ConfiguringPod`],
    /// [`EngineError::Step`]).
    #[cfg(test)]
    pub(crate) fn cause(&self) -> &EngineError {
        match self {
            EngineError::ConfiguringPod { source, .. } | EngineError::Step { source, .. } => {
                source.cause()
            }
            other => other,
        }
    }

    /// Upstream's `CmdAdd` step for this failure, if upstream has one.
    fn upstream_step(&self) -> Option<UpstreamStep> {
        match self {
            EngineError::Plan(p) => p.upstream_step(),
            EngineError::NotReady(path) => Some(UpstreamStep {
                names_pod: true,
                text: format!(
                    "have you checked that your default network is ready? still waiting for readinessindicatorfile @ {path}. pollimmediate error: "
                )
                .into(),
            }),
            EngineError::Cache(_) => Some(plan::pod_step("error saving the delegates: ")),
            EngineError::DefaultRoute(_) => Some(plan::pod_step("")),
            EngineError::NetworkStatus { .. } => {
                Some(plan::pod_step("error setting the networks status: "))
            }
            _ => None,
        }
    }

    fn delegate(d: &Delegate, source: ConflistError) -> Self {
        let plugin = match source.first() {
            ConflistError::Exec { plugin, .. } | ConflistError::InvalidResult { plugin, .. } => {
                plugin.clone()
            }
            _ => d.config.first_type().to_owned(),
        };
        EngineError::Delegate {
            name: d.name.clone(),
            plugin,
            ifname: d.ifname.clone(),
            source: Box::new(source),
        }
    }
}

/// The engine: one per daemon, shared by every request.
pub struct Engine {
    config: Arc<Config>,
    source: Arc<dyn ClusterSource>,
    devices: Arc<dyn DeviceSource>,
    admission: Arc<Admission>,
    exec: Executor,
    cache: Cache,
    metrics: Metrics,
    readiness: Arc<Readiness>,
}

impl Engine {
    /// An engine over the cluster `source` (pods, NADs) and `devices` (pods' device-plugin
    /// devices).
    pub fn new(
        config: Arc<Config>,
        source: Arc<dyn ClusterSource>,
        devices: Arc<dyn DeviceSource>,
    ) -> Result<Self, EngineError> {
        let admission = Arc::new(Admission::new(
            usize::try_from(config.delegate_concurrency).unwrap_or(usize::MAX),
            Duration::from_secs(config.admission_timeout_seconds),
        ));
        let exec = Executor::new(&config, admission.clone());
        let cache = Cache::new(config.cni_dir.clone());
        let readiness = Arc::new(Readiness::new(
            source.sync(),
            config.readiness_indicator_file.as_deref(),
            Duration::from_secs(config.cache_sync_timeout_seconds),
        ));
        Ok(Self {
            config,
            source,
            readiness,
            devices,
            admission,
            exec,
            cache,
            metrics: Metrics::noop(),
        })
    }

    /// The node's readiness (caches synced, indicator file), for health and `/readyz`.
    pub fn readiness(&self) -> Arc<Readiness> {
        Arc::clone(&self.readiness)
    }

    /// Records queue waits and delegate execs into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.exec = self.exec.with_metrics(metrics.clone());
        self.metrics = metrics;
        self
    }

    /// ADD that stops when `cancel` fires (its request was dropped at the deadline): no new
    /// delegate starts, the running one is killed, and everything attached is rolled back
    /// before this returns [`EngineError::Cancelled`].
    pub async fn add_cancellable(
        &self,
        call: CniCall,
        cancel: CancellationToken,
    ) -> Result<Vec<u8>, EngineError> {
        // Counted for the heap trim after a burst (STATUS allocates next to nothing).
        let _busy = crate::heap::busy();
        add::add(self, call, &cancel).await
    }

    /// CNI ADD: returns the cluster network's result in the runtime's cniVersion.
    #[cfg(test)]
    pub async fn add(&self, call: CniCall) -> Result<Vec<u8>, EngineError> {
        add::add(self, call, &CancellationToken::new()).await
    }

    /// CNI DEL: tears down everything recorded for the container (idempotent).
    pub async fn del(&self, call: CniCall) -> Result<(), EngineError> {
        let _busy = crate::heap::busy();
        del::del(self, call).await
    }

    /// CNI CHECK: CHECK on every recorded delegate.
    pub async fn check(&self, call: CniCall) -> Result<(), EngineError> {
        let _busy = crate::heap::busy();
        del::check(self, call).await
    }

    /// Hot-plug: ADD, DEL or CHECK of one delegate on a running pod, kept in its record;
    /// ADD returns the delegate's result in cniVersion 1.0.0.
    pub async fn hotplug(
        &self,
        call: HotplugCall,
    ) -> Result<Option<serde_json::Value>, EngineError> {
        let _busy = crate::heap::busy();
        hotplug::hotplug(self, call).await
    }

    /// CNI STATUS: readiness, then the cluster network's own STATUS.
    pub async fn status(&self, call: CniCall) -> Result<(), EngineError> {
        node::status(self, call).await
    }

    /// CNI GC: tears down records of containers not in `cni.dev/valid-attachments`, then GC.
    pub async fn gc(&self, call: CniCall) -> Result<(), EngineError> {
        let _busy = crate::heap::busy();
        node::gc(self, call).await
    }

    /// Runs blocking cache I/O off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Cache) -> Result<T, CacheError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let cache = self.cache.clone();
        self.blocking_io("cache", move || f(&cache))
            .await?
            .map_err(EngineError::from)
    }

    /// Starts making the container's record, as last written, durable (see `cache`): the fsyncs
    /// run on a blocking thread while the caller goes on; [`RecordSync::wait`] joins them.
    fn sync_record(&self, container_id: &str) -> RecordSync {
        let (cache, id) = (self.cache.clone(), container_id.to_owned());
        RecordSync(tokio::task::spawn_blocking(move || cache.sync(&id)))
    }

    /// Runs other blocking file I/O (device-info files) off the async workers.
    async fn blocking_io<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        blocking(f)
            .await
            .map_err(|source| EngineError::Task { what, source })
    }
}

/// A record's fsyncs under way. Dropped unjoined (an ADD that failed first), they finish on
/// their own: syncing a record that a rollback removes meanwhile only fails unseen.
struct RecordSync(tokio::task::JoinHandle<Result<(), CacheError>>);

impl RecordSync {
    /// Waits for the fsyncs; the span is what the caller paid for them beyond its own work.
    async fn wait(self) -> Result<(), EngineError> {
        self.0
            .instrument(tracing::info_span!("cache.sync"))
            .await
            .map_err(|source| EngineError::Task {
                what: "cache sync",
                source,
            })?
            .map_err(EngineError::from)
    }
}

/// What must hold before an ADD (also a hot-plug ADD) plans anything: the readiness indicator
/// file exists (else code 11 at once), and the pod and NAD caches have synced (waited for up to
/// `cacheSyncTimeoutSeconds`, then code 11 naming what has not). Checked before the container
/// lock, so a DEL of the same container never waits behind it.
async fn ready_for_add(e: &Engine, cancel: &CancellationToken) -> Result<(), EngineError> {
    if let Some(path) = e.readiness.missing_indicator().await {
        return Err(EngineError::NotReady(path.display().to_string()));
    }
    if e.readiness.synced().is_synced() {
        return Ok(());
    }
    let waited = std::time::Instant::now();
    let outcome = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(EngineError::Cancelled(String::new())),
        r = e.readiness.wait_synced() => r,
    };
    tracing::debug!(
        waited_ms = waited.elapsed().as_millis() as u64,
        synced = outcome.is_ok(),
        "ADD waited for the caches to sync"
    );
    outcome.map_err(|pending| EngineError::NotSynced {
        pending: pending.pending(),
        waited_seconds: e.readiness.sync_timeout().as_secs(),
    })
}

/// The one way the engine touches files from async code: on tokio's blocking pool, never on an
/// async worker (a slow disk or NFS confDir must not stall every other request).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(f).await
}
