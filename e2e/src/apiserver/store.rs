//! The stand-in's object store: pods, NADs, ResourceClaims and ResourceSlices as JSON, one resourceVersion counter for both (as
//! etcd's revision), and an event log so a watch can resume from any resourceVersion it saw.
use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio::sync::broadcast;

/// The resources the stand-in stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Pod,
    Nad,
    /// `resource.k8s.io` (the version the test serves, see `ApiServer::serve_dra`).
    ResourceClaim,
    /// `resource.k8s.io`, cluster-scoped.
    ResourceSlice,
}

impl Kind {
    /// The apiVersion stored; DRA objects keep the one the test gave (its version's shape).
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Pod => "v1",
            Kind::Nad => "k8s.cni.cncf.io/v1",
            Kind::ResourceClaim | Kind::ResourceSlice => "resource.k8s.io/v1",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Kind::Pod => "Pod",
            Kind::Nad => "NetworkAttachmentDefinition",
            Kind::ResourceClaim => "ResourceClaim",
            Kind::ResourceSlice => "ResourceSlice",
        }
    }

    /// Whether objects live in a namespace (slices do not).
    pub fn namespaced(self) -> bool {
        self != Kind::ResourceSlice
    }

    fn is_dra(self) -> bool {
        matches!(self, Kind::ResourceClaim | Kind::ResourceSlice)
    }
}

/// One change, as a watch sends it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub kind: Kind,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub kind_of_change: &'static str,
    pub object: Value,
}

type Key = (Kind, String, String);

/// Past this many changes the oldest are forgotten, and a watch from before them gets 410 Gone.
const LOG_LIMIT: usize = 100_000;

pub struct Store {
    rv: u64,
    uid_counter: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<Change>,
    tx: broadcast::Sender<Change>,
}

impl Store {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(16_384);
        Self {
            rv: 1,
            uid_counter: 0,
            objects: BTreeMap::new(),
            log: Vec::new(),
            tx,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .get(&(kind, ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Objects of `kind`, in `ns` when given, in key order.
    pub fn list(&self, kind: Kind, ns: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((k, n, _), _)| *k == kind && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Creates or replaces the object (uid and resourceVersion filled in); `announce` false
    /// stores it without a watch event (a watch that lags behind the store).
    pub fn put(&mut self, kind: Kind, mut object: Value, announce: bool) -> Value {
        let ns = if kind.namespaced() {
            str_at(&object, "/metadata/namespace")
                .unwrap_or("default")
                .to_owned()
        } else {
            String::new()
        };
        let name = str_at(&object, "/metadata/name")
            .unwrap_or_default()
            .to_owned();
        let key = (kind, ns.clone(), name);
        let existed = self.objects.get(&key);
        let uid = existed
            .and_then(|o| str_at(o, "/metadata/uid"))
            .map(str::to_owned);
        let change = if existed.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.rv += 1;
        if let Some(obj) = object.as_object_mut() {
            if !(kind.is_dra() && obj.contains_key("apiVersion")) {
                obj.insert("apiVersion".into(), json!(kind.api_version()));
            }
            obj.insert("kind".into(), json!(kind.kind()));
            let meta = obj.entry("metadata").or_insert_with(|| json!({}));
            if kind.namespaced() {
                meta["namespace"] = json!(ns);
            }
            meta["resourceVersion"] = json!(self.rv.to_string());
            if meta.get("uid").and_then(Value::as_str).is_none() {
                self.uid_counter += 1;
                meta["uid"] = json!(uid.unwrap_or_else(|| format!(
                    "00000000-0000-4000-8000-{:012x}",
                    self.uid_counter
                )));
            }
        }
        self.objects.insert(key, object.clone());
        if announce {
            self.record(kind, change, object.clone());
        }
        object
    }

    /// Removes the object; the DELETED event carries it with a new resourceVersion.
    pub fn delete(&mut self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        let mut object = self
            .objects
            .remove(&(kind, ns.to_owned(), name.to_owned()))?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(kind, "DELETED", object.clone());
        Some(object)
    }

    fn record(&mut self, kind: Kind, kind_of_change: &'static str, object: Value) {
        let change = Change {
            rv: self.rv,
            kind,
            kind_of_change,
            object,
        };
        if self.log.len() >= LOG_LIMIT {
            self.log.drain(..LOG_LIMIT / 2);
        }
        self.log.push(change.clone());
        // No receiver is fine: nobody is watching.
        let _ = self.tx.send(change);
    }

    /// Changes of `kind` after `rv` and a receiver for the later ones, taken together so that
    /// none falls between; `None` when `rv` is older than the log (410 Gone).
    pub fn watch_from(
        &self,
        kind: Kind,
        rv: u64,
    ) -> Option<(Vec<Change>, broadcast::Receiver<Change>)> {
        let oldest = self.log.first().map_or(self.rv, |c| c.rv - 1);
        if rv < oldest {
            return None;
        }
        let backlog = self
            .log
            .iter()
            .filter(|c| c.kind == kind && c.rv > rv)
            .cloned()
            .collect();
        Some((backlog, self.tx.subscribe()))
    }

    /// The current objects as ADDED changes (a watch without resourceVersion starts with them).
    pub fn snapshot(&self, kind: Kind) -> (Vec<Change>, broadcast::Receiver<Change>) {
        let added = self
            .list(kind, None)
            .into_iter()
            .map(|object| Change {
                rv: self.rv,
                kind,
                kind_of_change: "ADDED",
                object,
            })
            .collect();
        (added, self.tx.subscribe())
    }
}

pub fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"d": "e"}}),
                json!({"a": {"b": "c", "d": "e"}}),
            ),
            (json!({"a": [1]}), json!({"a": [2]}), json!({"a": [2]})),
        ];
        for (mut target, patch, want) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, want);
        }
    }

    #[test]
    fn watch_resumes_after_a_resource_version_and_expires_when_compacted() {
        let mut s = Store::new();
        let a = s.put(
            Kind::Pod,
            json!({"metadata": {"name": "a", "namespace": "n"}}),
            true,
        );
        let rv_a: u64 = str_at(&a, "/metadata/resourceVersion")
            .unwrap()
            .parse()
            .unwrap();
        s.put(
            Kind::Pod,
            json!({"metadata": {"name": "b", "namespace": "n"}}),
            true,
        );
        let (backlog, _) = s.watch_from(Kind::Pod, rv_a).unwrap();
        assert_eq!(backlog.len(), 1);
        assert_eq!(str_at(&backlog[0].object, "/metadata/name"), Some("b"));
        assert!(s.watch_from(Kind::Pod, 0).is_none());
    }
}
