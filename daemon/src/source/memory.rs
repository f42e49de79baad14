//! The in-memory `ClusterSource` the unit tests share: the trait's contract over two vectors,
//! with switches for an API that is down or refuses status writes, and what was written.
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use super::{ClusterSource, EventType, NadInfo, PodInfo, SourceError};

#[derive(Debug, Default)]
pub struct MemSource {
    pub pods: Vec<PodInfo>,
    pub nads: Vec<NadInfo>,
    /// Every lookup fails (DEL must not need the source).
    pub down: AtomicBool,
    /// Every network-status write fails.
    pub status_fails: bool,
    /// The pod was replaced by one with this UID before network-status is written.
    pub replaced_by: Option<String>,
    /// Every network-status written, in order.
    pub statuses: Mutex<Vec<String>>,
    /// `(reason, message)` of every recorded event.
    pub events: Mutex<Vec<(String, String)>>,
    /// `(type, reason)` of every recorded event, in the same order.
    pub event_types: Mutex<Vec<(EventType, String)>>,
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
    async fn set_network_status(&self, pod: &PodInfo, status: &str) -> Result<bool, SourceError> {
        if self.status_fails {
            return Err(unavailable());
        }
        if let Some(uid) = &self.replaced_by {
            return Err(SourceError::Replaced {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                expected: pod.uid.clone(),
                actual: uid.clone(),
            });
        }
        if let Ok(mut s) = self.statuses.lock() {
            s.push(status.to_owned());
        }
        Ok(true)
    }
    async fn record_event(&self, _: &PodInfo, kind: EventType, reason: &str, message: &str) {
        if let Ok(mut e) = self.events.lock() {
            e.push((reason.to_owned(), message.to_owned()));
        }
        if let Ok(mut t) = self.event_types.lock() {
            t.push((kind, reason.to_owned()));
        }
    }
}
