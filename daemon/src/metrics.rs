//! Prometheus metrics: one [`Metrics`] handle (cheap to clone) that the layers, the engine and
//! the source wrapper record into, upstream Multus' four metric names kept for existing
//! dashboards, and the `metricsPort` listener (`listener`) serving the registry.
mod collectors;
pub mod listener;
mod source;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

pub use source::MeteredSource;

/// Labels: the CNI verb and the CNI result code (`0` for success).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    verb: String,
}

/// Which wait: the per-container lock or a node-wide delegate slot.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCommandOutcome {
    plugin: String,
    command: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCommand {
    plugin: String,
    command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginOutcome {
    plugin: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    kind: String,
    source: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindSource {
    kind: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UidLabels {
    uid: String,
}

/// Upstream's promhttp labels (`handler` "/cni", `code` "200"/"400", `method` "post").
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamRequest {
    handler: String,
    code: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabels {
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: String,
}

/// What a stale-state reconcile found: `own` record, upstream `scratch` record, `libcni_result`,
/// `device_info` copy, quarantined `corrupt` record, leftover `temp` file.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 1 ms .. ~33 s: CNI requests and plugin execs live in this range (p90 sandbox setup over 10 s
/// is what runtimes complain about, so the top buckets must resolve it).
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

#[derive(Debug)]
struct Families {
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<VerbLabels>,
    in_flight: Gauge,
    queue_wait: Histograms<QueueLabels>,
    delegate_execs: Family<PluginCommandOutcome, Counter>,
    delegate_duration: Histograms<PluginCommand>,
    kube_lookups: Family<LookupLabels, Counter>,
    kube_lookup_duration: Histograms<KindSource>,
    status_patches: Family<OutcomeLabels, Counter>,
    status_patch_duration: Histogram,
    auth_rejections: Family<UidLabels, Counter>,
    up_requests: Family<UpstreamRequest, Counter>,
    up_lookups: Family<PluginOutcome, Counter>,
    up_execs: Family<PluginCommandOutcome, Counter>,
    up_exec_duration: Histograms<PluginCommand>,
    readiness_file: Family<PathLabels, Gauge>,
    cache_synced: Family<CacheLabels, Gauge>,
    stale: Family<KindLabels, Gauge>,
    stale_collected: Family<KindLabels, Counter>,
    reconciles: Family<OutcomeLabels, Counter>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    f: Families,
}

/// The daemon's metrics; clones share one registry. [`Metrics::noop`] records nothing.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Option<Arc<Inner>>,
}

/// Counts the cache records on disk at scrape time; `None` when they cannot be listed.
pub type EntryCount = Box<dyn Fn() -> Option<usize> + Send + Sync>;

/// Decrements the in-flight gauge when the request ends, however it ends (also when dropped
/// by a timeout or a client that went away).
#[derive(Debug)]
pub struct InFlight(Option<Gauge>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

impl Metrics {
    /// A registry with every family; `cache_entries` is asked on each scrape for the cache
    /// gauge (a closure, so metrics need not know the engine's cache).
    pub fn new(cache_entries: EntryCount) -> Self {
        let f = Families {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_buckets),
            in_flight: Gauge::default(),
            queue_wait: Family::new_with_constructor(latency_buckets),
            delegate_execs: Family::default(),
            delegate_duration: Family::new_with_constructor(latency_buckets),
            kube_lookups: Family::default(),
            kube_lookup_duration: Family::new_with_constructor(latency_buckets),
            status_patches: Family::default(),
            status_patch_duration: latency_buckets(),
            auth_rejections: Family::default(),
            up_requests: Family::default(),
            up_lookups: Family::default(),
            up_execs: Family::default(),
            up_exec_duration: Family::new_with_constructor(latency_buckets),
            readiness_file: Family::default(),
            cache_synced: Family::default(),
            stale: Family::default(),
            stale_collected: Family::default(),
            reconciles: Family::default(),
        };
        let mut registry = Registry::default();
        register(&mut registry, &f);
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register("multus_rs_build_info", "The running multus-rs build", build);
        registry.register_collector(Box::new(collectors::Process));
        registry.register_collector(Box::new(collectors::CacheEntries::new(cache_entries)));
        Self {
            inner: Some(Arc::new(Inner { registry, f })),
        }
    }

    /// Records nothing: for an engine or layer built without a metrics registry.
    pub fn noop() -> Self {
        Self { inner: None }
    }

    fn f(&self) -> Option<&Families> {
        self.inner.as_deref().map(|i| &i.f)
    }

    /// Counts a request in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        let g = self.f().map(|f| f.in_flight.clone());
        if let Some(g) = &g {
            g.inc();
        }
        InFlight(g)
    }

    /// A finished CNI request: `cni_code` 0 for success.
    pub fn request(&self, verb: &str, cni_code: u32, duration: Duration) {
        self.request_on("/cni", verb, cni_code, duration);
    }

    /// A finished CNI request that upstream would have served on `handler` (`/cni` or the
    /// hot-plug `/delegate`).
    pub fn request_on(&self, handler: &str, verb: &str, cni_code: u32, duration: Duration) {
        let Some(f) = self.f() else { return };
        f.requests
            .get_or_create(&RequestLabels {
                verb: verb.to_owned(),
                code: cni_code.to_string(),
            })
            .inc();
        f.request_duration
            .get_or_create(&VerbLabels {
                verb: verb.to_owned(),
            })
            .observe(duration.as_secs_f64());
        // Upstream answered CNI failures with HTTP 400.
        let code = if cni_code == 0 { "200" } else { "400" };
        self.upstream_request(handler, code, "post");
    }

    /// A request upstream's promhttp would have counted (`/cni`, `/healthz`).
    pub fn upstream_request(&self, handler: &str, code: &str, method: &str) {
        let Some(f) = self.f() else { return };
        f.up_requests
            .get_or_create(&UpstreamRequest {
                handler: handler.to_owned(),
                code: code.to_owned(),
                method: method.to_owned(),
            })
            .inc();
    }

    /// Time spent waiting for admission: `queue` is `container` or `delegate`.
    pub fn queue_wait(&self, queue: &str, waited: Duration) {
        let Some(f) = self.f() else { return };
        f.queue_wait
            .get_or_create(&QueueLabels {
                queue: queue.to_owned(),
            })
            .observe(waited.as_secs_f64());
    }

    /// Looking a plugin binary up in `binDir` (upstream's lookup metric).
    pub fn plugin_lookup(&self, plugin: &str, found: bool) {
        let outcome = if found { "success" } else { "failure" };
        let Some(f) = self.f() else { return };
        f.up_lookups
            .get_or_create(&PluginOutcome {
                plugin: plugin.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// One delegate exec. `outcome`: `success`, `error` (CNI error or non-zero exit),
    /// `timeout`, `signaled` or `spawn_error`; upstream's counter gets success/failure.
    pub fn delegate_exec(&self, plugin: &str, command: &str, outcome: &str, duration: Duration) {
        let Some(f) = self.f() else { return };
        let labels = |outcome: &str| PluginCommandOutcome {
            plugin: plugin.to_owned(),
            command: command.to_owned(),
            outcome: outcome.to_owned(),
        };
        f.delegate_execs.get_or_create(&labels(outcome)).inc();
        let upstream = if outcome == "success" {
            "success"
        } else {
            "failure"
        };
        f.up_execs.get_or_create(&labels(upstream)).inc();
        let pc = PluginCommand {
            plugin: plugin.to_owned(),
            command: command.to_owned(),
        };
        f.delegate_duration
            .get_or_create(&pc)
            .observe(duration.as_secs_f64());
        f.up_exec_duration
            .get_or_create(&pc)
            .observe(duration.as_secs_f64());
    }

    /// A pod or NAD lookup: `kind` pod/nad, `source` kubernetes/files, `outcome`
    /// found/not_found/error.
    pub fn kube_lookup(&self, kind: &str, source: &str, outcome: &str, duration: Duration) {
        let Some(f) = self.f() else { return };
        f.kube_lookups
            .get_or_create(&LookupLabels {
                kind: kind.to_owned(),
                source: source.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        f.kube_lookup_duration
            .get_or_create(&KindSource {
                kind: kind.to_owned(),
                source: source.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    /// A network-status write: `outcome` written/pod_gone/error.
    pub fn status_patch(&self, outcome: &str, duration: Duration) {
        let Some(f) = self.f() else { return };
        f.status_patches
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
        f.status_patch_duration.observe(duration.as_secs_f64());
    }

    /// A caller refused by the auth layer.
    pub fn auth_rejected(&self, uid: Option<u32>) {
        let uid = uid.map_or_else(|| "unknown".to_owned(), |u| u.to_string());
        let Some(f) = self.f() else { return };
        f.auth_rejections.get_or_create(&UidLabels { uid }).inc();
    }

    /// The node's readiness as gauges: `multus_rs_cache_synced{cache}` and, when configured,
    /// `multus_rs_readiness_indicator_file{path}` (1 present, 0 missing).
    pub fn readiness(&self, r: &crate::readiness::Readiness) {
        let Some(f) = self.f() else { return };
        let synced = r.synced();
        for (cache, done) in [("pods", synced.pods), ("nads", synced.nads)] {
            f.cache_synced
                .get_or_create(&CacheLabels {
                    cache: cache.to_owned(),
                })
                .set(i64::from(done));
        }
        if let Some(i) = r.indicator() {
            f.readiness_file
                .get_or_create(&PathLabels {
                    path: i.path().display().to_string(),
                })
                .set(i64::from(i.present()));
        }
    }

    /// The outcome of one reconcile: what it found stale per kind (the gauge is replaced, so a
    /// kind found no more drops to 0) and what it collected.
    pub fn reconciled(&self, found: &[(&str, u64)], collected: &[(&str, u64)], ok: bool) {
        let Some(f) = self.f() else { return };
        let label = |kind: &str| KindLabels {
            kind: kind.to_owned(),
        };
        for (kind, n) in found {
            f.stale
                .get_or_create(&label(kind))
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        for (kind, n) in collected {
            f.stale_collected.get_or_create(&label(kind)).inc_by(*n);
        }
        let outcome = if ok { "success" } else { "error" };
        f.reconciles
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        if let Some(inner) = &self.inner {
            prometheus_client::encoding::text::encode(&mut out, &inner.registry)?;
        }
        Ok(out)
    }
}

fn register(r: &mut Registry, f: &Families) {
    let s = Unit::Seconds;
    r.register(
        "multus_rs_requests",
        "CNI requests by verb and CNI result code (0 = success)",
        f.requests.clone(),
    );
    r.register_with_unit(
        "multus_rs_request_duration",
        "CNI request latency by verb",
        s.clone(),
        f.request_duration.clone(),
    );
    r.register(
        "multus_rs_requests_in_flight",
        "CNI requests being served",
        f.in_flight.clone(),
    );
    r.register_with_unit(
        "multus_rs_queue_wait",
        "Wait for the container lock or a delegate slot",
        s.clone(),
        f.queue_wait.clone(),
    );
    r.register(
        "multus_rs_delegate_executions",
        "Delegate plugin execs by plugin type, command and outcome",
        f.delegate_execs.clone(),
    );
    r.register_with_unit(
        "multus_rs_delegate_duration",
        "Delegate plugin exec time",
        s.clone(),
        f.delegate_duration.clone(),
    );
    r.register(
        "multus_rs_kube_lookups",
        "Pod and NAD lookups by kind, source and outcome",
        f.kube_lookups.clone(),
    );
    r.register_with_unit(
        "multus_rs_kube_lookup_duration",
        "Pod and NAD lookup latency",
        s.clone(),
        f.kube_lookup_duration.clone(),
    );
    r.register(
        "multus_rs_network_status_patches",
        "network-status annotation writes by outcome",
        f.status_patches.clone(),
    );
    r.register_with_unit(
        "multus_rs_network_status_patch_duration",
        "network-status write latency, retries included",
        s.clone(),
        f.status_patch_duration.clone(),
    );
    r.register(
        "multus_rs_auth_rejections",
        "Socket callers refused by peer uid",
        f.auth_rejections.clone(),
    );
    r.register(
        "multus_rs_readiness_indicator_file",
        "Whether the readiness indicator file exists (1) or not (0); ADD fails with code 11 while it is missing",
        f.readiness_file.clone(),
    );
    r.register(
        "multus_rs_cache_synced",
        "Whether the pod and NAD caches have synced (1); health is NOT_SERVING until both have",
        f.cache_synced.clone(),
    );
    r.register(
        "multus_rs_stale_entries",
        "Stale state the last reconcile found by kind (records of containers that are gone)",
        f.stale.clone(),
    );
    r.register(
        "multus_rs_stale_collected",
        "Stale state removed by reconciles, by kind",
        f.stale_collected.clone(),
    );
    r.register(
        "multus_rs_reconciles",
        "Stale-state reconciles run, by outcome",
        f.reconciles.clone(),
    );
    // Upstream Multus' names, so existing dashboards keep working.
    r.register(
        "multus_server_request",
        "Requests by handler, code and method (upstream name)",
        f.up_requests.clone(),
    );
    r.register(
        "multus_cni_plugin_lookup",
        "Plugin binary lookups (upstream name)",
        f.up_lookups.clone(),
    );
    r.register(
        "multus_cni_plugin_execution",
        "Plugin execs (upstream name)",
        f.up_execs.clone(),
    );
    r.register_with_unit(
        "multus_cni_plugin_execution_duration",
        "Plugin exec time (upstream name)",
        s,
        f.up_exec_duration.clone(),
    );
}

#[cfg(test)]
mod tests;
