//! The daemon process assembled: the cluster source chosen from the config, the engine, the
//! socket and the gRPC server, and the order they start and stop in.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::task::AbortHandle;

use crate::autoconf::{AutoconfError, ConfigWriter};
use crate::config::Config;
use crate::engine::cache::Cache;
use crate::engine::{Engine, EngineError};
use crate::http_api::HttpApi;
use crate::kubelet::{DeviceSource, Kubelet};
use crate::layers::{self, Layers};
use crate::metrics::listener::{self, ListenerError};
use crate::metrics::{EntryCount, MeteredSource, Metrics};
use crate::server::{self, ServerError};
use crate::service::CniService;
use crate::socket::{self, SocketError, SocketFile};
use crate::source::ClusterSource;
use crate::source::files::FileSource;
use crate::source::kube::dra::KubeletWithDra;
use crate::source::kube::{KubeSettings, KubeSource, KubeSourceError};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("connecting to the Kubernetes API (set clusterStateDir for standalone mode): {0}")]
    KubeSource(#[from] KubeSourceError),
    #[error("building the engine: {0}")]
    Engine(#[from] EngineError),
    #[error("daemon socket: {0}")]
    Socket(#[from] SocketError),
    #[error("gRPC server: {0}")]
    Server(#[from] ServerError),
    #[error("metrics listener: {0}")]
    Metrics(#[from] ListenerError),
    #[error("multus CNI config: {0}")]
    Autoconf(#[from] AutoconfError),
}

impl AppError {
    /// The process exit code: upstream's for the CNI config manager, 3 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Autoconf(e) => e.exit_code(),
            _ => 3,
        }
    }
}

/// A daemon ready to serve: everything bound, nothing accepted yet.
pub struct App {
    engine: Arc<Engine>,
    listener: UnixListener,
    socket: SocketFile,
    grace: Duration,
    layers: Layers,
    http: HttpApi,
    metrics_task: Option<AbortHandle>,
    background: Vec<AbortHandle>,
    config_writer: Option<Arc<ConfigWriter>>,
}

impl App {
    /// Builds every part in dependency order; fails before binding when the source or engine
    /// cannot be built, so no socket ever answers for a daemon that cannot work.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        let config = Arc::new(config);
        let metrics = Metrics::new(cache_entries(Cache::new(config.cni_dir.clone())));
        let (source, devices) = sources(&config, &metrics).await?;
        let engine = Arc::new(
            Engine::new(Arc::clone(&config), source, devices)?.with_metrics(metrics.clone()),
        );
        let add_deadline = config.request_timeouts.add;
        if config.cluster_state_dir.is_none() && config.cache_sync_timeout_seconds >= add_deadline {
            tracing::warn!(
                cache_sync_timeout_seconds = config.cache_sync_timeout_seconds,
                add_deadline_seconds = add_deadline,
                "cacheSyncTimeoutSeconds is not below requestTimeouts.add: an ADD waiting for the caches ends at its deadline instead"
            );
        }
        let readiness = engine.readiness();
        // The indicator file's inotify watch and the startup sync's log line; both end with
        // the process (or at `run`'s end).
        let mut background: Vec<AbortHandle> = readiness.watch().into_iter().collect();
        background
            .push(tokio::spawn(async move { readiness.log_startup_sync().await }).abort_handle());
        background.push(crate::heap::spawn(crate::heap::QUIET));
        if config.reconcile_interval_seconds > 0 {
            let every = Duration::from_secs(config.reconcile_interval_seconds);
            tracing::info!(
                interval_seconds = every.as_secs(),
                collect = config.reconcile_collect,
                "stale-state reconcile enabled"
            );
            let run = crate::engine::reconcile::every(
                Arc::clone(&engine),
                every,
                config.reconcile_collect,
            );
            background.push(tokio::spawn(run).abort_handle());
        }
        let metrics_task = match config.metrics_port {
            Some(port) => {
                let l = listener::bind(config.metrics_bind_address, port).await?;
                // The bound address, not the configured one: `::` may have fallen back to IPv4.
                let bound = l.local_addr().ok();
                tracing::info!(address = ?bound, "metrics at /metrics");
                Some(tokio::spawn(listener::serve(l, metrics.clone())).abort_handle())
            }
            None => None,
        };
        let http = HttpApi::new(Arc::clone(&engine), &config, metrics.clone());
        let layers = layers::stack(&config, metrics);
        let (listener, socket) = socket::bind(&config.socket_path())?;
        tracing::info!(
            socket = %socket.path().display(),
            cni_dir = %config.cni_dir.display(),
            bin_dir = %config.bin_dir.display(),
            conf_dir = %config.conf_dir.display(),
            chroot_dir = ?config.chroot_dir,
            "multus-daemon listening"
        );
        Ok(Self {
            engine,
            listener,
            socket,
            grace: server::SHUTDOWN_GRACE,
            layers,
            http,
            metrics_task,
            background,
            config_writer: None,
        })
    }

    /// Keeps the multus CNI config (`multusConfigFile`) while serving.
    pub fn with_config_writer(mut self, writer: Option<ConfigWriter>) -> Self {
        self.config_writer = writer.map(Arc::new);
        self
    }

    /// Serves until `shutdown` resolves, drains, then removes the socket file. The multus CNI
    /// config is written once the server runs (upstream writes it after its API answers) and
    /// is kept at exit unless `cleanupConfigOnExit` (upstream deletes it, leaving pods created
    /// during a restart without their networks).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
        let Self {
            engine,
            listener,
            socket,
            grace,
            layers,
            http,
            metrics_task,
            background,
            config_writer,
        } = self;
        let cni = CniService::new(engine);
        let serving = server::serve(cni, http, listener, layers, shutdown, grace);
        let result = match &config_writer {
            None => serving.await.map_err(AppError::from),
            Some(writer) => {
                tokio::pin!(serving);
                // Biased: the server is polled first, so its accept loop runs before the config
                // that sends the runtime to it exists. The writer only returns when its first
                // generation failed (upstream exits then too).
                tokio::select! {
                    biased;
                    result = &mut serving => result.map_err(AppError::from),
                    e = Arc::clone(writer).run() => Err(AppError::from(e)),
                }
            }
        };
        if let Some(writer) = &config_writer {
            writer.on_exit();
        }
        drop(socket);
        if let Some(task) = metrics_task {
            task.abort();
        }
        for task in background {
            task.abort();
        }
        tracing::info!("multus-daemon stopped");
        result
    }
}

/// The cache gauge counts what DEL would find: the records `Cache::list` returns.
pub fn cache_entries(cache: Cache) -> EntryCount {
    Box::new(move || cache.list().ok().map(|ids| ids.len()))
}

/// The cluster source, measured: standalone mode when `clusterStateDir` is set, else the
/// Kubernetes API; and the devices: the kubelet's, plus DRA claims' with the Kubernetes API.
async fn sources(
    config: &Config,
    metrics: &Metrics,
) -> Result<(Arc<dyn ClusterSource>, Arc<dyn DeviceSource>), AppError> {
    let (inner, kind, devices) = inner_source(config).await?;
    let source = Arc::new(MeteredSource::new(inner, kind, metrics.clone()));
    Ok((source, devices))
}

type Sources = (Arc<dyn ClusterSource>, &'static str, Arc<dyn DeviceSource>);

async fn inner_source(config: &Config) -> Result<Sources, AppError> {
    let kubelet = Arc::new(Kubelet::from_config(config));
    if let Some(dir) = &config.cluster_state_dir {
        tracing::info!(
            source = "files",
            cluster_state_dir = %dir.display(),
            network_status_dir = ?config.network_status_dir,
            "standalone mode: pods and NADs from manifests"
        );
        let files = FileSource::new(dir.clone(), config.network_status_dir.clone());
        return Ok((Arc::new(files), "files", kubelet));
    }
    let settings = KubeSettings::from_config(config);
    tracing::info!(
        source = "kubernetes",
        kubeconfig = ?settings.kubeconfig,
        node = ?settings.node_name,
        "pods and NADs from the Kubernetes API"
    );
    let kube = KubeSource::connect(settings).await?;
    let devices = Arc::new(KubeletWithDra::new(kubelet, kube.dra()));
    Ok((Arc::new(kube), "kubernetes", devices))
}

/// `multus-daemon --reconcile-once [--collect]`: one reconcile over this node's `cniDir` and
/// device-info copies, each stale entry printed as a line on stdout, then the counts. Needs no
/// cluster connection; collection runs the delegates' DEL as GC does. Returns whether every
/// collection succeeded.
pub async fn reconcile_once(config: Config, collect: bool) -> Result<bool, AppError> {
    let config = Arc::new(config);
    let devices = Arc::new(Kubelet::from_config(&config));
    let engine = Engine::new(
        Arc::clone(&config),
        Arc::new(crate::source::offline::Offline),
        devices,
    )?;
    let report = engine
        .reconcile(collect, |stale, outcome| {
            let done = match outcome {
                crate::engine::reconcile::Outcome::Reported => "reported".to_owned(),
                crate::engine::reconcile::Outcome::Collected => "collected".to_owned(),
                crate::engine::reconcile::Outcome::Failed(e) => format!("not collected: {e}"),
            };
            println!(
                "{kind}\t{path}\tcontainer={cid}\t{reason}\t{done}",
                kind = stale.kind.label(),
                path = stale.path.display(),
                cid = stale.container_id.as_deref().unwrap_or("-"),
                reason = stale.reason,
            );
        })
        .await?;
    println!("{}", report.summary());
    Ok(report.failed == 0)
}
