//! Whether this node can attach networks now: the source's pod and NAD caches have synced (so a
//! reboot's burst of ADDs is served from memory, not by live GETs), and the readiness indicator
//! file (`readinessindicatorfile`, upstream's key) exists. gRPC health, `/readyz`, the ADD and
//! STATUS gates and the metrics all read it from here, so they never disagree.
//!
//! Nothing here polls: the caches' state is pushed by the source (`ClusterSource::sync`), the
//! file's by inotify (`indicator`).
pub mod indicator;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

pub use indicator::Indicator;

use crate::source::SyncState;

/// The node's readiness, shared by the engine, the server and the HTTP API.
#[derive(Debug)]
pub struct Readiness {
    sync: watch::Receiver<SyncState>,
    indicator: Option<Arc<Indicator>>,
    /// How long an ADD waits for the caches (`cacheSyncTimeoutSeconds`).
    sync_timeout: Duration,
}

/// A change of any input of [`Readiness::serving`].
pub struct Changes {
    sync: watch::Receiver<SyncState>,
    indicator: Option<watch::Receiver<bool>>,
}

impl Changes {
    /// Resolves at the next change. Once every sender is gone nothing can change: it pends.
    pub async fn changed(&mut self) {
        let indicator = async {
            let open = match &mut self.indicator {
                Some(rx) => rx.changed().await.is_ok(),
                None => false,
            };
            if !open {
                std::future::pending::<()>().await;
            }
        };
        let sync = async {
            if self.sync.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = sync => {}
            () = indicator => {}
        }
    }
}

impl Readiness {
    /// Readiness over the source's cache sync and, when configured, the indicator file (its
    /// state is read now; [`Readiness::watch`] follows it).
    pub fn new(
        sync: watch::Receiver<SyncState>,
        indicator_file: Option<&Path>,
        sync_timeout: Duration,
    ) -> Self {
        Self {
            sync,
            indicator: indicator_file.map(|p| Arc::new(Indicator::new(p.to_owned()))),
            sync_timeout,
        }
    }

    /// Starts following the indicator file with inotify; `None` when none is configured.
    /// Must be called inside a tokio runtime; the task stops when the handle is aborted.
    pub fn watch(&self) -> Option<tokio::task::AbortHandle> {
        let indicator = Arc::clone(self.indicator.as_ref()?);
        Some(tokio::spawn(indicator::follow(indicator)).abort_handle())
    }

    /// The caches' state now.
    pub fn synced(&self) -> SyncState {
        *self.sync.borrow()
    }

    pub fn indicator(&self) -> Option<&Indicator> {
        self.indicator.as_deref()
    }

    /// SERVING for health: caches synced and the indicator file (if any) present, as last seen.
    pub fn serving(&self) -> bool {
        self.synced().is_synced() && self.indicator.as_ref().is_none_or(|i| i.present())
    }

    pub fn changes(&self) -> Changes {
        Changes {
            sync: self.sync.clone(),
            indicator: self.indicator.as_ref().map(|i| i.subscribe()),
        }
    }

    /// The indicator file's path when it is configured and missing (checked on disk when the
    /// watch says missing, so a lagging event never fails a request that could proceed).
    pub async fn missing_indicator(&self) -> Option<&Path> {
        let indicator = self.indicator.as_deref()?;
        (!indicator.confirm().await).then(|| indicator.path())
    }

    /// Waits up to `cacheSyncTimeoutSeconds` for the caches; the state that was still pending
    /// when the time ran out.
    pub async fn wait_synced(&self) -> Result<(), SyncState> {
        let mut rx = self.sync.clone();
        let wait = rx.wait_for(SyncState::is_synced);
        match tokio::time::timeout(self.sync_timeout, wait).await {
            // A closed channel keeps its last value: synced or not, it will not change.
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) | Err(_) => match self.synced() {
                s if s.is_synced() => Ok(()),
                s => Err(s),
            },
        }
    }

    pub fn sync_timeout(&self) -> Duration {
        self.sync_timeout
    }

    /// Logs how the startup sync went: when it finished, or, past `cacheSyncTimeoutSeconds`,
    /// a warning saying what is pending (health stays NOT_SERVING), then when it finished.
    pub async fn log_startup_sync(&self) {
        let started = Instant::now();
        let mut rx = self.sync.clone();
        if rx.borrow().is_synced() {
            return;
        }
        tracing::info!(
            timeout_seconds = self.sync_timeout.as_secs(),
            "waiting for the pod and NAD caches to sync; health is NOT_SERVING until then"
        );
        let within = tokio::time::timeout(self.sync_timeout, rx.wait_for(SyncState::is_synced));
        if within.await.is_err() {
            let pending = self.synced().pending();
            tracing::warn!(
                pending,
                waited_seconds = self.sync_timeout.as_secs(),
                "caches not synced in time: health stays NOT_SERVING and ADDs fail with code 11 until they are"
            );
            if rx.wait_for(SyncState::is_synced).await.is_err() {
                return;
            }
        }
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "pod and NAD caches synced"
        );
    }
}
