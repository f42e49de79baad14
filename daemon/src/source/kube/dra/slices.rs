//! The node's ResourceSlices, WATCHED (one list + watch with `spec.nodeName=<node>`, never a
//! request per ADD) and kept reduced to each device's two Multus attributes. Bounded by the
//! devices the node's drivers publish. A relist (after a watch error or expiry) is buffered and
//! swapped in whole at its end, so a lookup never sees a half-listed node.
//!
//! When the watch fails after a listing (upstream's ClusterRole grants `list` but no `watch`;
//! kube's watcher then retries the watch forever and never lists again), a lookup that misses a
//! device asks for one relist and waits for it, so a slice published since is still found: one
//! list per such ADD, none while the watch works.
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ::kube::Client;
use ::kube::runtime::watcher;
use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::version::{ApiVersion, DeviceAttrs, SliceDevices, SliceEvents};

/// Where the watch stands, as lookups see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// A complete listing arrived (later errors keep the last complete view usable).
    pub synced: bool,
    /// The last watch error since the last complete listing.
    pub error: Option<String>,
    /// Complete listings so far.
    pub listings: u64,
}

/// Slices by name: the current view, and the relist being buffered.
#[derive(Debug, Default)]
struct Index {
    live: HashMap<String, SliceDevices>,
    relist: Option<HashMap<String, SliceDevices>>,
}

impl Index {
    fn apply(&mut self, event: watcher::Event<SliceDevices>) -> bool {
        match event {
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply(s) => {
                self.relist
                    .get_or_insert_with(HashMap::new)
                    .insert(s.name.clone(), s);
            }
            watcher::Event::InitDone => {
                self.live = self.relist.take().unwrap_or_default();
                return true;
            }
            watcher::Event::Apply(s) => {
                self.live.insert(s.name.clone(), s);
            }
            watcher::Event::Delete(s) => {
                self.live.remove(&s.name);
            }
        }
        false
    }

    fn device(&self, driver: &str, pool: &str, device: &str) -> Option<DeviceAttrs> {
        self.live
            .values()
            .filter(|s| s.driver == driver && s.pool == pool)
            .flat_map(|s| s.devices.iter())
            .find(|(name, _)| name == device)
            .map(|(_, attrs)| attrs.clone())
    }
}

/// Pause before a stream that ended is started again.
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Starts (again) the node's list + watch.
pub type Events = Box<dyn Fn() -> SliceEvents + Send + Sync>;

/// One node's slices, kept current by a background watch (stopped when this is dropped).
pub struct NodeSlices {
    node: String,
    index: Arc<RwLock<Index>>,
    progress: watch::Receiver<Progress>,
    relist: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for NodeSlices {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NodeSlices {
    /// Starts watching `node`'s slices at `version`. Needs a tokio runtime.
    pub fn watch(client: Client, version: ApiVersion, node: &str) -> Self {
        let fields = format!("spec.nodeName={node}");
        tracing::info!(
            node,
            api_version = version.as_str(),
            "watching the node's ResourceSlices"
        );
        Self::from_events(
            node,
            Box::new(move || version.watch_slices(client.clone(), &fields)),
        )
    }

    /// Follows the streams `events` makes (the watch, or a test's streams).
    pub fn from_events(node: &str, events: Events) -> Self {
        let index = Arc::new(RwLock::new(Index::default()));
        let (tx, progress) = watch::channel(Progress::default());
        let relist = Arc::new(Notify::new());
        let follower = Follower {
            index: Arc::clone(&index),
            progress: tx,
            relist: Arc::clone(&relist),
            node: node.to_owned(),
        };
        let task = tokio::spawn(follower.run(events));
        Self {
            node: node.to_owned(),
            index,
            progress,
            relist,
            task,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Where the watch stands.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Waits (at most `within`) for a complete listing. Returns early with the watch's error
    /// when it failed before its first listing (RBAC, API down), so an ADD does not sit out the
    /// whole timeout for an answer that is already known.
    pub async fn ready(&self, within: Duration) -> Result<(), String> {
        let mut progress = self.progress.clone();
        let wait = progress.wait_for(|p| p.synced || p.error.is_some());
        match tokio::time::timeout(within, wait).await {
            Ok(Ok(p)) if p.synced => Ok(()),
            Ok(Ok(p)) => Err(p.error.clone().unwrap_or_default()),
            Ok(Err(_)) => Err("the ResourceSlice watch stopped".to_owned()),
            Err(_) => Err(format!("no complete listing within {within:?}")),
        }
    }

    /// The attributes of a device of `driver`'s `pool`, if a slice of the node publishes it.
    pub fn device(&self, driver: &str, pool: &str, device: &str) -> Option<DeviceAttrs> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .device(driver, pool, device)
    }

    /// When the watch has failed since its last listing, relists once and waits (at most
    /// `within`) for it: the caller missed a device, which may have been published since. A
    /// relist that does not come in time leaves the view as it was (the caller then skips the
    /// device, as any device not published).
    pub async fn relist_if_failing(&self, within: Duration) {
        let seen = self.progress.borrow().clone();
        if seen.error.is_none() {
            return;
        }
        tracing::info!(node = %self.node, error = ?seen.error, "device not in the node's ResourceSlices and the watch failed; relisting");
        let mut progress = self.progress.clone();
        self.relist.notify_one();
        let relisted = progress.wait_for(|p| p.listings > seen.listings);
        if tokio::time::timeout(within, relisted).await.is_err() {
            tracing::warn!(node = %self.node, "ResourceSlice relist did not complete in time");
        }
    }
}

/// The background side: applies the watch's events, and restarts it when a lookup asks for a
/// relist while it is failing.
struct Follower {
    index: Arc<RwLock<Index>>,
    progress: watch::Sender<Progress>,
    relist: Arc<Notify>,
    node: String,
}

impl Follower {
    async fn run(self, events: Events) {
        loop {
            let mut stream = events();
            loop {
                let failing = self.progress.borrow().error.is_some();
                tokio::select! {
                    item = stream.next() => match item {
                        Some(Ok(event)) => self.apply(event),
                        Some(Err(error)) => self.failed(&error),
                        None => {
                            // kube's watcher never ends; a stream that does is restarted, paced.
                            tokio::time::sleep(RESTART_PAUSE).await;
                            break;
                        }
                    },
                    () = self.relist.notified(), if failing => break,
                }
            }
        }
    }

    fn apply(&self, event: watcher::Event<SliceDevices>) {
        let mut index = self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if index.apply(event) {
            let slices = index.live.len();
            drop(index);
            tracing::debug!(node = %self.node, slices, "ResourceSlices listed");
            self.progress.send_modify(|p| {
                p.synced = true;
                p.error = None;
                p.listings += 1;
            });
        }
    }

    fn failed(&self, error: &watcher::Error) {
        tracing::warn!(node = %self.node, error = %error, "ResourceSlice watch failed; retrying with back-off");
        let reason = error.to_string();
        self.progress.send_modify(|p| p.error = Some(reason));
    }
}
