//! The stale-state reconcile: finds what DEL never cleaned under `cniDir` (our records, records
//! at upstream's place, libcni results, quarantined `.corrupt` records, our temp files) and under
//! `<deviceInfoDir>/cni` (device-info copies), reports it as a metric and one log line, and
//! collects it only when asked: a record is torn down as GC tears one down (each delegate's DEL,
//! so IPAM leases are released, then the files), anything else is removed.
//!
//! Runs every `reconcileIntervalSeconds` (off by default; `reconcileCollect` to collect) and
//! once from `multus-daemon --reconcile-once [--collect]`. Memory stays flat with any number
//! of files: the scan streams each directory and hands every stale entry on through a small
//! bounded channel (see `scan`).
pub mod scan;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Engine, EngineError};

/// What kind of stale state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<cniDir>/multus-rs/<cid>`
    Own,
    /// `<cniDir>/<cid>` with no record of ours beside it (Go Multus', or a previous build's).
    Scratch,
    /// `<cniDir>/results/<net>-<cid>-<ifname>` of no record.
    LibcniResult,
    /// `<deviceInfoDir>/cni/<net>-<cid>_<ifname>` of no record.
    DeviceInfo,
    /// `<cid>.corrupt`, a record moved aside as unreadable.
    Corrupt,
    /// `.<name>.tmp-<pid>-<n>` left by an interrupted atomic write.
    Temp,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Own,
        Kind::Scratch,
        Kind::LibcniResult,
        Kind::DeviceInfo,
        Kind::Corrupt,
        Kind::Temp,
    ];

    /// The metric label and report word.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Own => "own",
            Kind::Scratch => "scratch",
            Kind::LibcniResult => "libcni_result",
            Kind::DeviceInfo => "device_info",
            Kind::Corrupt => "corrupt",
            Kind::Temp => "temp",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// A record, collected by tearing its delegates down.
    fn is_record(self) -> bool {
        matches!(self, Kind::Own | Kind::Scratch)
    }
}

/// One stale entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub kind: Kind,
    pub path: PathBuf,
    pub container_id: Option<String>,
    pub reason: &'static str,
}

/// What happened to one stale entry.
#[derive(Debug)]
pub enum Outcome {
    /// Reported only (collection not asked).
    Reported,
    Collected,
    /// Collection failed; the entry (or part of it) is still there.
    Failed(EngineError),
}

/// The counts of one reconcile.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub found: [u64; 6],
    pub collected: [u64; 6],
    pub failed: u64,
    pub kept: scan::Kept,
    pub collect: bool,
}

impl Report {
    pub fn found(&self, kind: Kind) -> u64 {
        self.found[kind.index()]
    }

    #[cfg(test)]
    pub fn collected(&self, kind: Kind) -> u64 {
        self.collected[kind.index()]
    }

    pub fn total_found(&self) -> u64 {
        self.found.iter().sum()
    }

    fn pairs(counts: &[u64; 6]) -> Vec<(&'static str, u64)> {
        Kind::ALL
            .iter()
            .map(|k| (k.label(), counts[k.index()]))
            .collect()
    }

    /// One line with every count, for the operator's terminal.
    pub fn summary(&self) -> String {
        let join = |counts: &[u64; 6]| {
            Self::pairs(counts)
                .iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "stale: {} (collected: {}) failed={} live={} undecided={} collect={}",
            join(&self.found),
            join(&self.collected),
            self.failed,
            self.kept.live,
            self.kept.undecided,
            self.collect
        )
    }
}

/// How many stale entries may wait between the scan and their collection.
const QUEUE: usize = 64;

impl Engine {
    /// Finds stale state, collects it when `collect`, and calls `seen` for each stale entry
    /// with what became of it. Records the metrics and logs one line with the counts.
    pub async fn reconcile(
        &self,
        collect: bool,
        mut seen: impl FnMut(&Stale, &Outcome),
    ) -> Result<Report, EngineError> {
        let valid = self.blocking(|c| c.remembered_valid()).await?;
        let paths = scan::Paths {
            cni_dir: self.config.cni_dir.clone(),
            device_info: self.config.device_info_dir.join("cni"),
        };
        let (tx, mut rx) = mpsc::channel(QUEUE);
        // Spawned now (not on first poll): it feeds the loop below.
        let scanning = tokio::task::spawn_blocking(move || scan::scan(&paths, valid.as_ref(), &tx));
        let mut report = Report {
            collect,
            ..Report::default()
        };
        while let Some(stale) = rx.recv().await {
            report.found[stale.kind.index()] += 1;
            let outcome = if collect {
                match self.collect_entry(&stale).await {
                    Ok(()) => {
                        report.collected[stale.kind.index()] += 1;
                        Outcome::Collected
                    }
                    Err(e) => {
                        report.failed += 1;
                        Outcome::Failed(e)
                    }
                }
            } else {
                Outcome::Reported
            };
            seen(&stale, &outcome);
        }
        let scanned = scanning.await;
        let ok = scanned.is_ok() && report.failed == 0;
        self.metrics.reconciled(
            &Report::pairs(&report.found),
            &Report::pairs(&report.collected),
            ok,
        );
        report.kept = scanned.map_err(|source| EngineError::Task {
            what: "reconcile scan",
            source,
        })?;
        let f = |k: Kind| report.found(k);
        tracing::info!(
            found = report.total_found(),
            own = f(Kind::Own),
            scratch = f(Kind::Scratch),
            libcni_result = f(Kind::LibcniResult),
            device_info = f(Kind::DeviceInfo),
            corrupt = f(Kind::Corrupt),
            temp = f(Kind::Temp),
            collected = report.collected.iter().sum::<u64>(),
            failed = report.failed,
            live = report.kept.live,
            undecided = report.kept.undecided,
            collect,
            "reconcile: stale state"
        );
        Ok(report)
    }

    async fn collect_entry(&self, stale: &Stale) -> Result<(), EngineError> {
        match (&stale.container_id, stale.kind.is_record()) {
            (Some(id), true) => {
                let mut errors = Vec::new();
                super::node::collect(self, id, &mut errors).await;
                EngineError::from_all(errors)
            }
            _ => {
                let path = stale.path.clone();
                self.blocking_io("reconcile removal", move || remove(&path))
                    .await?
            }
        }
    }
}

fn remove(path: &std::path::Path) -> Result<(), EngineError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(EngineError::Internal(format!(
            "removing {}: {e}",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Reconciles every `interval` (the first run one interval after start) until aborted; one
/// log line per run, the stale entries themselves at debug.
pub async fn every(engine: std::sync::Arc<Engine>, interval: Duration, collect: bool) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // A run longer than the interval (a huge backlog being collected) is not followed by a burst.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let run = engine.reconcile(collect, |stale, outcome| {
            tracing::debug!(kind = stale.kind.label(), path = %stale.path.display(), container.id = ?stale.container_id, reason = stale.reason, outcome = ?outcome, "stale state");
        });
        if let Err(e) = run.await {
            tracing::warn!(error = %e, "reconcile failed");
        }
    }
}
