//! The in-memory `ClusterSource` the unit tests share: the trait's contract over two vectors,
//! with switches for an API that is down or refuses status writes, and what was written.
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::{ClusterSource, NadInfo, PodInfo, SourceError};

#[derive(Debug, Default)]
pub struct MemSource {
    pub pods: Vec<PodInfo>,
    pub nads: Vec<NadInfo>,
    /// Every lookup fails (DEL must not need the source).
    pub down: AtomicBool,
    /// Every network-status write fails.
    pub status_fails: bool,
    /// Every network-status written, in order.
    pub statuses: Mutex<Vec<String>>,
    /// `(reason, message)` of every recorded event.
    pub events: Mutex<Vec<(String, String)>>,
}

fn unavailable() -> SourceError {
    SourceError::Unavailable {
        what: "api".into(),
        reason: "down".into(),
    }
}

impl MemSource {
    fn check_up(&self) -> Result<(), SourceError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(unavailable());
        }
        Ok(())
    }
}

#[async_trait]
impl ClusterSource for MemSource {
    async fn pod(&self, ns: &str, name: &str) -> Result<Option<PodInfo>, SourceError> {
        self.check_up()?;
        Ok(self
            .pods
            .iter()
            .find(|p| p.namespace == ns && p.name == name)
            .cloned())
    }
    async fn nad(&self, ns: &str, name: &str) -> Result<Option<NadInfo>, SourceError> {
        self.check_up()?;
        Ok(self
            .nads
            .iter()
            .find(|n| n.namespace == ns && n.name == name)
            .cloned())
    }
    async fn set_network_status(&self, _: &PodInfo, status: &str) -> Result<bool, SourceError> {
        if self.status_fails {
            return Err(unavailable());
        }
        if let Ok(mut s) = self.statuses.lock() {
            s.push(status.to_owned());
        }
        Ok(true)
    }
    async fn record_event(&self, _: &PodInfo, reason: &str, message: &str) {
        if let Ok(mut e) = self.events.lock() {
            e.push((reason.to_owned(), message.to_owned()));
        }
    }
}
