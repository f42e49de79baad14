//! Pod metadata as the daemon keeps it: the node's pods are watched metadata-only
//! (`PartialObjectMeta`, so spec and status never cross the wire) and each one is reduced to its
//! identity and the few annotations the daemon reads before it enters the cache, so memory stays
//! flat with thousands of pods per node whatever else their owners annotate.
//!
//! The cache is our own map, not kube's reflector `Store`: the store keys each pod by an
//! `ObjectRef` (96 bytes inline plus its own copies of the name and namespace) and keeps the value
//! behind an `Arc`, about 0.3 KiB a pod on top of the pod itself. Here a pod is one boxed
//! `namespace/name` key, its UID and the annotations it has of the three read, about 0.2 KiB in
//! all. The watch events are applied the way the reflector applies them (a relist fills a second
//! map that replaces the first when the listing is complete).
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use ::kube::core::PartialObjectMeta;
use ::kube::runtime::watcher;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::engine::selection::{DEFAULT_NETWORK_ANNOTATION, NETWORKS_ANNOTATION};
use crate::source::{CONFIG_SOURCE_ANNOTATION, PodInfo};

/// The pod annotations anything in the daemon reads (the network selections, and whether the
/// pod is a static pod's mirror). A new reader of a pod annotation adds its key here, or the
/// cache drops it.
pub const READ_ANNOTATIONS: [&str; 3] = [
    NETWORKS_ANNOTATION,
    DEFAULT_NETWORK_ANNOTATION,
    CONFIG_SOURCE_ANNOTATION,
];

/// kubectl's copy of the whole applied manifest: often the largest annotation, never read here.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A pod's UID and read annotations; its namespace and name are the map's key. An annotation is
/// kept as its index in [`READ_ANNOTATIONS`] and its value (no copy of the key per pod).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    uid: Box<str>,
    annotations: Box<[(u8, Box<str>)]>,
}

/// `namespace/name`: neither may contain a slash, so the key splits back unambiguously.
fn key(namespace: &str, name: &str) -> Box<str> {
    let mut key = String::with_capacity(namespace.len() + 1 + name.len());
    key.push_str(namespace);
    key.push('/');
    key.push_str(name);
    key.into_boxed_str()
}

/// The cache's key and entry for a pod; `None` for an object without a name (nothing could
/// look it up).
fn reduce(meta: ObjectMeta) -> Option<(Box<str>, Entry)> {
    let name = meta.name?;
    let annotations = meta
        .annotations
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| {
            let index = READ_ANNOTATIONS.iter().position(|read| *read == k)?;
            Some((u8::try_from(index).ok()?, v.into_boxed_str()))
        })
        .collect();
    let entry = Entry {
        uid: meta.uid.unwrap_or_default().into_boxed_str(),
        annotations,
    };
    Some((
        key(meta.namespace.as_deref().unwrap_or_default(), &name),
        entry,
    ))
}

impl Entry {
    fn info(&self, key: &str) -> PodInfo {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        PodInfo {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: self.uid.to_string(),
            annotations: self
                .annotations
                .iter()
                .filter_map(|(index, value)| {
                    let key = READ_ANNOTATIONS.get(usize::from(*index))?;
                    Some(((*key).to_owned(), value.to_string()))
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }
}

/// A pod fetched live (a cache miss), reduced as the cache would keep it.
pub fn info(pod: PartialObjectMeta<Pod>) -> Option<PodInfo> {
    let (key, entry) = reduce(pod.metadata)?;
    Some(entry.info(&key))
}

#[derive(Default)]
struct Maps {
    live: HashMap<Box<str>, Entry>,
    /// The listing in progress after `Init`, swapped in at `InitDone`: pods deleted while the
    /// watch was down are gone from the cache then, and until then lookups see the old listing.
    relist: Option<HashMap<Box<str>, Entry>>,
}

struct Shared {
    maps: RwLock<Maps>,
    /// True once the first listing is complete; it stays true through relists.
    ready: tokio::sync::watch::Sender<bool>,
}

/// The node's pods, filled by one watch (see [`PodCache::apply`]); cheap to clone.
#[derive(Clone)]
pub struct PodCache {
    shared: Arc<Shared>,
}

impl Default for PodCache {
    fn default() -> Self {
        Self {
            shared: Arc::new(Shared {
                maps: RwLock::default(),
                ready: tokio::sync::watch::Sender::new(false),
            }),
        }
    }
}

impl PodCache {
    /// Applies one watch event (the cache's only writer is the watch task). Each pod is reduced
    /// before the lock is taken, so lookups never wait for its parsing.
    pub fn apply(&self, event: watcher::Event<PartialObjectMeta<Pod>>) {
        use watcher::Event;
        let reduced = |pod: PartialObjectMeta<Pod>| reduce(pod.metadata);
        match event {
            Event::Apply(pod) => {
                if let Some((key, entry)) = reduced(pod) {
                    self.write().live.insert(key, entry);
                }
            }
            Event::Delete(pod) => {
                if let Some(name) = pod.metadata.name.as_deref() {
                    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
                    let key = key(namespace, name);
                    self.write().live.remove(&key);
                }
            }
            Event::Init => self.write().relist = Some(HashMap::new()),
            Event::InitApply(pod) => {
                if let Some((key, entry)) = reduced(pod) {
                    let mut maps = self.write();
                    maps.relist.get_or_insert_default().insert(key, entry);
                }
            }
            Event::InitDone => {
                let previous = {
                    let mut maps = self.write();
                    let listed = maps.relist.take().unwrap_or_default();
                    std::mem::replace(&mut maps.live, listed)
                };
                // Freed after the lock: dropping thousands of pods takes a while.
                drop(previous);
                self.shared.ready.send_replace(true);
            }
        }
    }

    /// A panic elsewhere cannot leave a half-written map: every write is one insert, remove or
    /// swap. So a poisoned lock is taken as it is.
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.shared
            .maps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.shared
            .maps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached pod, if any.
    pub fn get(&self, namespace: &str, name: &str) -> Option<PodInfo> {
        let key = key(namespace, name);
        let maps = self.read();
        maps.live.get(&key).map(|entry| entry.info(&key))
    }

    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        let maps = self.read();
        maps.live.contains_key(&key(namespace, name))
    }

    pub fn count(&self) -> usize {
        let maps = self.read();
        maps.live.len()
    }

    /// Returns once the first listing is complete (at once after that).
    pub async fn wait_ready(&self) {
        let mut ready = self.shared.ready.subscribe();
        // The sender lives in `shared`, which `self` holds: the wait cannot see it closed.
        let _ = ready.wait_for(|ready| *ready).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served_named(
        namespace: &str,
        name: &str,
        annotations: serde_json::Value,
    ) -> PartialObjectMeta<Pod> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {
                "name": name, "namespace": namespace, "uid": format!("uid-{name}"),
                "resourceVersion": "7",
                "labels": {"app": "x"},
                "annotations": annotations,
                "managedFields": [{"manager": "kubelet", "operation": "Update"}],
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "x"}]
            }
        }))
        .unwrap()
    }

    fn served(annotations: serde_json::Value) -> PartialObjectMeta<Pod> {
        served_named("ns", "p", annotations)
    }

    fn listed(cache: &PodCache, pods: &[(&str, &str)]) {
        cache.apply(watcher::Event::Init);
        for (namespace, name) in pods {
            let pod = served_named(namespace, name, serde_json::json!({}));
            cache.apply(watcher::Event::InitApply(pod));
        }
        cache.apply(watcher::Event::InitDone);
    }

    #[test]
    fn keeps_identity_and_the_annotations_the_daemon_reads() {
        let info = info(served(serde_json::json!({
            "k8s.v1.cni.cncf.io/networks": "macvlan",
            "v1.multus-cni.io/default-network": "kube-system/calico",
            "kubernetes.io/config.source": "file",
            "k8s.v1.cni.cncf.io/network-status": "[{\"name\":\"cbr0\"}]",
            "sidecar.istio.io/status": "{\"big\":true}",
            LAST_APPLIED: "{\"huge\":true}"
        })))
        .unwrap();
        assert_eq!(
            (
                info.namespace.as_str(),
                info.name.as_str(),
                info.uid.as_str()
            ),
            ("ns", "p", "uid-p")
        );
        let kept: Vec<(&str, &str)> = info
            .annotations
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            kept,
            [
                ("k8s.v1.cni.cncf.io/networks", "macvlan"),
                ("kubernetes.io/config.source", "file"),
                ("v1.multus-cni.io/default-network", "kube-system/calico"),
            ]
        );
        assert!(PodInfo::is_static(&info.annotations));
    }

    #[test]
    fn a_pod_without_annotations_has_none() {
        let info = info(served(serde_json::Value::Null)).unwrap();
        assert!(info.annotations.is_empty());
        assert_eq!(info.uid, "uid-p");
    }

    #[test]
    fn lookups_are_by_namespace_and_name() {
        let cache = PodCache::default();
        cache.apply(watcher::Event::Apply(served_named(
            "ns1",
            "a",
            serde_json::json!({"k8s.v1.cni.cncf.io/networks": "m"}),
        )));
        let found = cache.get("ns1", "a").unwrap();
        assert_eq!(
            (found.namespace.as_str(), found.name.as_str()),
            ("ns1", "a")
        );
        assert_eq!(found.annotations["k8s.v1.cni.cncf.io/networks"], "m");
        assert!(cache.get("ns2", "a").is_none() && cache.get("ns1", "b").is_none());
        // Another pod with the same name replaces the first (a new UID, as after a recreate).
        let mut again = served_named("ns1", "a", serde_json::json!({}));
        again.metadata.uid = Some("second".into());
        cache.apply(watcher::Event::Apply(again));
        assert_eq!(cache.count(), 1);
        assert_eq!(cache.get("ns1", "a").unwrap().uid, "second");
        assert!(cache.get("ns1", "a").unwrap().annotations.is_empty());
        cache.apply(watcher::Event::Delete(served_named(
            "ns1",
            "a",
            serde_json::json!({}),
        )));
        assert!(!cache.contains("ns1", "a"));
    }

    #[test]
    fn a_relist_replaces_the_cache_only_when_complete() {
        let cache = PodCache::default();
        listed(&cache, &[("ns", "old"), ("ns", "kept")]);
        cache.apply(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(served_named(
            "ns",
            "kept",
            serde_json::json!({}),
        )));
        // Until the listing is complete, lookups see the previous one.
        assert!(cache.contains("ns", "old") && !cache.contains("ns", "new"));
        cache.apply(watcher::Event::InitApply(served_named(
            "ns",
            "new",
            serde_json::json!({}),
        )));
        cache.apply(watcher::Event::InitDone);
        assert!(
            !cache.contains("ns", "old"),
            "deleted while the watch was down"
        );
        assert!(cache.contains("ns", "kept") && cache.contains("ns", "new"));
        assert_eq!(cache.count(), 2);
    }

    #[test]
    fn an_object_without_a_name_is_not_cached() {
        let cache = PodCache::default();
        let mut nameless = served(serde_json::json!({}));
        nameless.metadata.name = None;
        cache.apply(watcher::Event::Apply(nameless.clone()));
        cache.apply(watcher::Event::Delete(nameless));
        assert_eq!(cache.count(), 0);
    }

    #[tokio::test]
    async fn ready_after_the_first_listing_and_through_relists() {
        let cache = PodCache::default();
        let waiting = tokio::spawn({
            let cache = cache.clone();
            async move { cache.wait_ready().await }
        });
        cache.apply(watcher::Event::Init);
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "ready before the listing was complete"
        );
        cache.apply(watcher::Event::InitDone);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("ready after InitDone")
            .unwrap();
        cache.apply(watcher::Event::Init);
        tokio::time::timeout(std::time::Duration::from_secs(5), cache.wait_ready())
            .await
            .expect("still ready during a relist");
    }
}
