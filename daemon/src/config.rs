//! The daemon configuration: every key of upstream Multus' daemon-config.json (and of the Multus
//! configuration reference, since the daemon config overrides the shim's), typed, with
//! upstream's defaults, plus the few keys of multus-rs' own (marked "multus-rs").
//!
//! Loading (file, then `MULTUS_`-prefixed environment, then flags) lives in `load`; this file is
//! the shape and the defaults only.
pub mod duration;
pub mod value;

use std::net::IpAddr;
use std::path::PathBuf;

use multus_common::constants;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use value::{GoDuration, LogFormat, LogLevel};
use value::{empty_duration_is_none, empty_is_none, ip_address};

/// The daemon configuration. Unknown keys are kept in `extra` (they pass into generated configs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Config {
    // === daemon keys (docs/thick-plugin.md) ===
    /// Directory that points to the host root; delegates are exec'd chrooted into it.
    #[serde(deserialize_with = "empty_is_none")]
    pub chroot_dir: Option<PathBuf>,
    /// Directory of `multus.sock`.
    pub socket_dir: PathBuf,
    /// Port of the Prometheus metrics listener; no listener when unset.
    pub metrics_port: Option<u16>,
    /// Upstream's pprof switch: accepted, there is no Go profiler to serve.
    pub enable_pprof: Option<bool>,
    /// Upstream's cap on concurrently accepted connections (must be > 0 when set).
    pub connection_limit: Option<u32>,
    /// Log file; none means no file.
    #[serde(deserialize_with = "empty_is_none")]
    pub log_file: Option<PathBuf>,
    /// `panic`, `error`, `verbose`, `debug` (upstream) or `warn`, `info`, `trace`.
    pub log_level: LogLevel,
    /// Echo logs to stderr.
    pub log_to_stderr: bool,
    /// Rotation of `logFile` (upstream's lumberjack options).
    pub log_options: Option<LogOptions>,
    /// Per-node client certificate instead of the service account token.
    pub per_node_certificate: Option<PerNodeCertificate>,

    // === auto-config keys (pkg/server/config) ===
    /// `auto` generates `00-multus.conf`; otherwise a file copied into `cniConfigDir`.
    pub multus_config_file: String,
    /// Where the generated `00-multus.conf` goes.
    pub cni_config_dir: PathBuf,
    /// Directory searched for the primary CNI config in auto mode.
    #[serde(deserialize_with = "empty_is_none")]
    pub multus_autoconfig_dir: Option<PathBuf>,
    /// File name of the primary CNI config (auto-discovered when unset).
    #[serde(deserialize_with = "empty_is_none")]
    #[serde(rename = "multusMasterCNI")]
    pub multus_master_cni: Option<String>,
    /// The multus config's own `cniVersion`.
    #[serde(deserialize_with = "empty_is_none")]
    pub cni_version: Option<String>,
    /// Rewrite the primary config with `cniVersion` (testing only, as upstream).
    #[serde(rename = "forceCNIVersion")]
    pub force_cni_version: bool,
    /// Generated config takes the primary config's `name`.
    pub override_network_name: bool,
    /// ADD/STATUS/GC wait for this file to exist.
    #[serde(deserialize_with = "empty_is_none")]
    #[serde(rename = "readinessindicatorfile")]
    pub readiness_indicator_file: Option<PathBuf>,
    /// multus-rs: remove the multus CNI config this daemon wrote when it stops (upstream always
    /// does). Off by default, so pods created while the daemon restarts are retried (code 11)
    /// instead of silently getting only the primary network.
    pub cleanup_config_on_exit: bool,

    // === request-time keys (pkg/types NetConf) ===
    /// Directory of network config files (NADs with an empty spec, network names).
    pub conf_dir: PathBuf,
    /// Cache directory: one record per container.
    pub cni_dir: PathBuf,
    /// Directory of delegate plugin binaries.
    pub bin_dir: PathBuf,
    /// The cluster-wide default network: NAD name, network name in `confDir`, file or directory.
    #[serde(deserialize_with = "empty_is_none")]
    pub cluster_network: Option<String>,
    /// Networks attached to every pod outside `systemNamespaces`.
    pub default_networks: Vec<String>,
    /// Inline delegate configs; the first is the cluster network. Only used without `clusterNetwork`.
    pub delegates: Vec<Value>,
    /// Namespace of `clusterNetwork`/`defaultNetworks` NADs.
    pub multus_namespace: String,
    /// Namespaces that get no `defaultNetworks`.
    pub system_namespaces: Vec<String>,
    /// Pods may only use NADs of their own namespace or of `globalNamespaces`.
    pub namespace_isolation: bool,
    /// Comma-separated namespaces whose NADs every pod may use (default `default`).
    #[serde(deserialize_with = "empty_is_none")]
    pub global_namespaces: Option<String>,
    /// Keep the cache record when a DEL failed.
    pub retry_delete_on_error: bool,
    /// Extra passthru chain appended after the networks.
    #[serde(deserialize_with = "empty_is_none")]
    #[serde(rename = "auxiliaryCNIChainName")]
    pub auxiliary_cni_chain_name: Option<String>,
    /// Kubeconfig file; in-cluster service account when unset.
    #[serde(deserialize_with = "empty_is_none")]
    pub kubeconfig: Option<PathBuf>,

    // === multus-rs ===
    /// Standalone mode: a directory of Pod and NetworkAttachmentDefinition manifests that stands
    /// in for the Kubernetes API.
    #[serde(deserialize_with = "empty_is_none")]
    pub cluster_state_dir: Option<PathBuf>,
    /// Standalone mode: where each pod's network-status annotation is written as
    /// `<namespace>.<pod>.json`; unset means logged only.
    #[serde(deserialize_with = "empty_is_none")]
    pub network_status_dir: Option<PathBuf>,
    /// How many delegate plugins may run at once on this node.
    pub delegate_concurrency: u32,
    /// How long a request may wait for a delegate slot before it fails with code 11.
    pub admission_timeout_seconds: u64,
    /// How long an ADD waits for the pod and NAD caches' first listing (after a daemon start)
    /// before it fails with code 11; health is NOT_SERVING until they have synced.
    pub cache_sync_timeout_seconds: u64,
    /// How often the stale-state reconcile runs (records of containers whose network namespace
    /// is gone and that the runtime no longer knows); 0, the default, never.
    pub reconcile_interval_seconds: u64,
    /// The reconcile also collects what it finds (tears stale records down as GC does, removes
    /// the other files); off, the default, it only reports.
    pub reconcile_collect: bool,
    /// How long one delegate plugin may run before it is killed.
    pub delegate_timeout_seconds: u64,
    /// How long one Kubernetes API call may take (pod/NAD GET, network-status PATCH).
    pub kube_api_timeout_seconds: u64,
    /// How long one lookup or status write may keep retrying transient API errors (409, 429 with
    /// its Retry-After, 5xx, timeouts) before it fails; upstream hard-codes 2.5 s.
    pub kube_api_retry_seconds: u64,
    /// Peer uids allowed to call the socket (CNI RPCs, health, reflection); root by default.
    pub allowed_uids: Vec<u32>,
    /// Peer gids allowed to call the socket, in addition to `allowedUids`.
    pub allowed_gids: Vec<u32>,
    /// Per-verb request deadlines in seconds; a shorter client `grpc-timeout` wins.
    pub request_timeouts: RequestTimeouts,
    /// Address the `metricsPort` listener binds. `::` (dual stack: IPv6 with IPV6_V6ONLY off, so
    /// IPv4 too; `0.0.0.0` when the kernel has no IPv6) like upstream's `:port`, because
    /// Prometheus scrapes the pod IP of the hostNetwork DaemonSet, which may be either family;
    /// `0.0.0.0` is IPv4 only; set `127.0.0.1` to keep the metrics on the node.
    #[serde(deserialize_with = "ip_address")]
    pub metrics_bind_address: IpAddr,
    /// OTLP/gRPC endpoint for traces (e.g. `http://collector:4317`); unset: the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, and nothing is exported when neither is set.
    #[serde(deserialize_with = "empty_is_none")]
    pub otlp_endpoint: Option<String>,
    /// `text` (upstream's look) or `json` (one object per line, span fields included).
    pub log_format: LogFormat,
    /// Capabilities kept at start besides the daemon's and the usual delegates' (e.g.
    /// `CAP_NET_BIND_SERVICE` for an exotic delegate); everything else is dropped.
    pub keep_capabilities: Vec<String>,
    /// The kubelet's PodResources API socket, asked for the device IDs of NADs annotated
    /// `k8s.v1.cni.cncf.io/resourceName` (upstream's fixed path).
    pub kubelet_pod_resources_socket: PathBuf,
    /// The kubelet's device-manager checkpoint, read instead when that socket is absent.
    pub kubelet_checkpoint_file: PathBuf,
    /// Base of the device-info files: device plugins write `dp/`, the daemon fills `cni/` for
    /// the delegates (upstream's fixed path).
    pub device_info_dir: PathBuf,

    /// Keys this build does not know: kept, and passed into generated configs.
    #[serde(flatten)]
    pub extra: Map<String, Value>,

    /// What loading replaced with a default instead of failing (logged once logging is up).
    #[serde(skip)]
    pub warnings: Vec<ConfigWarning>,
}

/// A key whose value loading ignored, as upstream ignores it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub key: &'static str,
    pub reason: String,
}

/// Rotation of the log file (upstream `logOptions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LogOptions {
    /// Days to keep rotated files.
    pub max_age: u32,
    /// Megabytes before a file is rotated.
    pub max_size: u32,
    /// Rotated files to keep.
    pub max_backups: u32,
    /// Gzip rotated files.
    pub compress: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            max_age: 5,
            max_size: 100,
            max_backups: 5,
            compress: true,
        }
    }
}

/// Per-verb request deadlines, in seconds (multus-rs `requestTimeouts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestTimeouts {
    pub add: u64,
    pub del: u64,
    pub check: u64,
    pub status: u64,
    pub gc: u64,
}

impl Default for RequestTimeouts {
    fn default() -> Self {
        Self {
            add: 60,
            del: 60,
            check: 30,
            status: 10,
            gc: 60,
        }
    }
}

/// Upstream `perNodeCertificate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PerNodeCertificate {
    pub enabled: bool,
    #[serde(deserialize_with = "empty_is_none")]
    pub bootstrap_kubeconfig: Option<PathBuf>,
    #[serde(deserialize_with = "empty_is_none")]
    pub cert_dir: Option<PathBuf>,
    /// Go duration, e.g. `10m`.
    #[serde(deserialize_with = "empty_duration_is_none")]
    pub cert_duration: Option<GoDuration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            chroot_dir: None,
            socket_dir: constants::DEFAULT_SOCKET_DIR.into(),
            metrics_port: None,
            enable_pprof: None,
            connection_limit: None,
            log_file: None,
            log_level: LogLevel::Panic,
            log_to_stderr: false,
            log_options: None,
            per_node_certificate: None,
            multus_config_file: "auto".into(),
            cni_config_dir: "/etc/cni/net.d".into(),
            multus_autoconfig_dir: None,
            multus_master_cni: None,
            cni_version: None,
            force_cni_version: false,
            override_network_name: false,
            readiness_indicator_file: None,
            cleanup_config_on_exit: false,
            conf_dir: constants::DEFAULT_CONF_DIR.into(),
            cni_dir: constants::DEFAULT_CNI_DIR.into(),
            bin_dir: constants::DEFAULT_BIN_DIR.into(),
            cluster_network: None,
            default_networks: Vec::new(),
            delegates: Vec::new(),
            multus_namespace: "kube-system".into(),
            system_namespaces: vec!["kube-system".into()],
            namespace_isolation: false,
            global_namespaces: None,
            retry_delete_on_error: false,
            auxiliary_cni_chain_name: None,
            kubeconfig: None,
            cluster_state_dir: None,
            network_status_dir: None,
            delegate_concurrency: 8,
            admission_timeout_seconds: 30,
            cache_sync_timeout_seconds: 20,
            reconcile_interval_seconds: 0,
            reconcile_collect: false,
            delegate_timeout_seconds: 60,
            kube_api_timeout_seconds: 10,
            kube_api_retry_seconds: 30,
            allowed_uids: vec![0],
            allowed_gids: Vec::new(),
            request_timeouts: RequestTimeouts::default(),
            metrics_bind_address: value::DEFAULT_METRICS_BIND_ADDRESS,
            otlp_endpoint: None,
            log_format: LogFormat::Text,
            keep_capabilities: Vec::new(),
            kubelet_pod_resources_socket: "/var/lib/kubelet/pod-resources/kubelet.sock".into(),
            kubelet_checkpoint_file: "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint"
                .into(),
            device_info_dir: "/var/run/k8s.cni.cncf.io/devinfo".into(),
            extra: Map::new(),
            warnings: Vec::new(),
        }
    }
}

impl Config {
    /// `globalNamespaces` as a list (upstream: comma-split, trimmed; `default` when unset).
    pub fn global_namespace_list(&self) -> Vec<String> {
        match &self.global_namespaces {
            Some(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            None => vec!["default".into()],
        }
    }

    /// The socket the daemon serves on: `<socketDir>/multus.sock`.
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir.join(constants::SOCKET_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_upstreams() {
        let c = Config::default();
        assert_eq!(c.socket_path(), PathBuf::from("/run/multus/multus.sock"));
        assert_eq!(c.cni_dir, PathBuf::from("/var/lib/cni/multus"));
        assert_eq!(c.global_namespace_list(), vec!["default".to_string()]);
    }

    #[test]
    fn unknown_keys_are_kept_and_spellings_match_upstream() {
        let c: Config = serde_json::from_value(serde_json::json!({
            "readinessindicatorfile": "/x", "multusMasterCNI": "10-a.conf",
            "auxiliaryCNIChainName": "aux", "someFutureKey": 1,
            "globalNamespaces": " a, b ,"
        }))
        .expect("config");
        assert_eq!(c.readiness_indicator_file, Some(PathBuf::from("/x")));
        assert_eq!(c.multus_master_cni.as_deref(), Some("10-a.conf"));
        assert_eq!(c.auxiliary_cni_chain_name.as_deref(), Some("aux"));
        assert_eq!(c.extra.get("someFutureKey"), Some(&serde_json::json!(1)));
        assert_eq!(
            c.global_namespace_list(),
            vec!["a".to_string(), "b".to_string()]
        );
    }
}
