//! Standalone mode's source: a directory (`clusterStateDir`) of Kubernetes manifests, YAML or
//! JSON, holding Pod and NetworkAttachmentDefinition objects, standing in for the API server.
//!
//! Standalone mode is for demos, tests and edge nodes without an API server, so edits take
//! effect at the next lookup. What each file held is kept (bounded in file count and size), and
//! a lookup parses only what changed since. An inotify watch on the directory, drained by the
//! lookup itself (`watch.rs`), says what changed; while it says nothing and no manifest is a
//! symlink, a lookup costs a `read(2)` and a `stat(2)` and runs on the caller's thread. Without a
//! watch, and for symlinked manifests (an edit of the target reaches no watch on the
//! directory), each file's inode, size and times decide, except for files changed within
//! [`RACY`] of their parse, which a same-size rewrite in the same clock tick could hide.
//! Network-status goes to `<networkStatusDir>/<ns>.<pod>.json`.
mod watch;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{ClusterSource, EventType, NadInfo, PodInfo, SourceError};
use watch::{Changes, DirWatch};

/// Files read per lookup at most; more are ignored (and logged).
const MAX_FILES: usize = 4096;
/// Larger manifest files are skipped (and logged).
const MAX_FILE_BYTES: u64 = 4 << 20;
/// API group of NetworkAttachmentDefinitions.
const NAD_GROUP: &str = "k8s.cni.cncf.io/";
/// Without a watch's word, a file's parse is reused only when the file was older than this
/// when parsed: file times advance in clock ticks (milliseconds, seconds on some file systems),
/// so a rewrite of the same size within one tick changes nothing a stat shows.
const RACY: Duration = Duration::from_secs(2);

/// Pods and NADs from a directory of manifests.
#[derive(Debug, Clone)]
pub struct FileSource {
    inner: Arc<Dirs>,
}

#[derive(Debug)]
struct Dirs {
    state_dir: PathBuf,
    status_dir: Option<PathBuf>,
    /// What the files held at the last lookup, and the watch on the directory.
    index: Mutex<Index>,
    /// [`RACY`]; shorter in tests.
    racy: Duration,
}

/// Each manifest file as last parsed, all of them merged, and what changed since.
#[derive(Debug, Default)]
struct Index {
    /// `None` until the first lookup, and while no watch can be made (the directory is
    /// missing, the inotify limits are reached).
    watch: Option<DirWatch>,
    /// What the watch reported that no lookup has read yet.
    pending: Changes,
    files: BTreeMap<PathBuf, Parsed>,
    /// Every file's objects merged in name order (a later file wins a shared name).
    state: Arc<State>,
    /// A manifest in the last listing is a symlink: its target may change unseen by the watch.
    links: bool,
}

/// One file's objects and the stamp they were read under.
#[derive(Debug)]
struct Parsed {
    stamp: Stamp,
    /// The file was older than the racy window when parsed: a later change shows in a stat.
    settled: bool,
    /// In the file's order (a later one replaces an earlier one of the same name). A list, not
    /// maps: most files hold one object, and a map's first node is about 1.6 KiB.
    objects: Vec<Object>,
}

/// A pod or a NAD (present but malformed: the reason) of a manifest, by (namespace, name).
#[derive(Debug)]
enum Object {
    Pod((String, String), PodInfo),
    Nad((String, String), Result<NadInfo, String>),
}

/// One manifest file as a stat sees it: any write, rename or replace changes one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    /// The directory entry is a symlink (the rest describes its target).
    link: bool,
    ino: u64,
    len: u64,
    mtime: SystemTime,
    ctime: SystemTime,
}

impl Stamp {
    fn of(path: PathBuf, link: bool, m: &fs::Metadata) -> Self {
        // std has no ctime as a SystemTime; times before 1970 read as 1970 (never racy).
        let ctime = Duration::new(
            m.ctime().max(0).unsigned_abs(),
            m.ctime_nsec().clamp(0, 999_999_999) as u32,
        );
        Self {
            path,
            link,
            ino: m.ino(),
            len: m.len(),
            mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            ctime: SystemTime::UNIX_EPOCH + ctime,
        }
    }

    /// Changed within `racy` of `now` (or later): a same-size rewrite may not show yet.
    fn is_racy(&self, now: SystemTime, racy: Duration) -> bool {
        let Some(cutoff) = now.checked_sub(racy) else {
            return true;
        };
        self.mtime >= cutoff || self.ctime >= cutoff
    }
}

/// Pods and NADs by (namespace, name), every file's merged. A NAD that is present but
/// malformed is kept as an error, so looking it up fails with the reason instead of "not found".
#[derive(Debug, Default)]
struct State {
    pods: BTreeMap<(String, String), PodInfo>,
    nads: BTreeMap<(String, String), Result<NadInfo, String>>,
}

impl FileSource {
    pub fn new(state_dir: impl Into<PathBuf>, status_dir: Option<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Dirs {
                state_dir: state_dir.into(),
                status_dir,
                index: Mutex::default(),
                racy: RACY,
            }),
        }
    }

    async fn state(&self) -> Result<Arc<State>, SourceError> {
        // The usual case, nothing changed: a read(2) and a stat(2) here, no blocking-pool hop.
        if let Some(state) = self.inner.unchanged() {
            return Ok(state);
        }
        let dirs = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || dirs.state())
            .await
            .map_err(|e| SourceError::Unavailable {
                what: "clusterStateDir scan".into(),
                reason: e.to_string(),
            })?
    }
}

#[async_trait]
impl ClusterSource for FileSource {
    async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodInfo>, SourceError> {
        Ok(self
            .state()
            .await?
            .pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned())
    }

    async fn nad(&self, namespace: &str, name: &str) -> Result<Option<NadInfo>, SourceError> {
        match self
            .state()
            .await?
            .nads
            .get(&(namespace.to_owned(), name.to_owned()))
        {
            None => Ok(None),
            Some(Ok(nad)) => Ok(Some(nad.clone())),
            Some(Err(reason)) => Err(SourceError::Invalid {
                what: format!("network-attachment-definition {namespace}/{name}"),
                reason: reason.clone(),
            }),
        }
    }

    /// Standalone mode has nowhere to post events: they go to the log.
    async fn record_event(&self, pod: &PodInfo, kind: EventType, reason: &str, message: &str) {
        tracing::info!(pod.namespace = %pod.namespace, pod.name = %pod.name, event.type = kind.as_str(),
            event.reason = %reason, event.message = %message, "pod event");
    }

    async fn set_network_status(
        &self,
        pod: &PodInfo,
        status_json: &str,
    ) -> Result<bool, SourceError> {
        let key = (pod.namespace.clone(), pod.name.clone());
        if !self.state().await?.pods.contains_key(&key) {
            return Ok(false);
        }
        let Some(dir) = self.inner.status_dir.clone() else {
            tracing::info!(pod.namespace = %pod.namespace, pod.name = %pod.name, network_status = %status_json, "network-status");
            return Ok(true);
        };
        let what = format!("network-status of pod {}/{}", pod.namespace, pod.name);
        for part in [&pod.namespace, &pod.name] {
            multus_common::validate::id("pod namespace or name", part).map_err(|e| {
                SourceError::Invalid {
                    what: what.clone(),
                    reason: e.to_string(),
                }
            })?;
        }
        let file = dir.join(format!("{}.{}.json", pod.namespace, pod.name));
        let body = status_json.to_owned();
        tokio::task::spawn_blocking(move || write_atomically(&file, body.as_bytes()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|reason| SourceError::Unavailable { what, reason })?;
        Ok(true)
    }
}

/// Creates the directory, then replaces the status atomically (readers never see half of one).
/// Not fsynced: it stands in for a pod annotation, which no node makes durable, and after a
/// power cut the pods it describes are gone too; its two fsyncs were a millisecond of each ADD.
fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::atomic_file::replace_in_dir(file, bytes, 0o644, |dir| fs::create_dir_all(dir))
}

impl Dirs {
    /// The last merged state when the watch reports no change and no manifest is a symlink;
    /// `None` when files must be looked at (or another lookup is reading them).
    fn unchanged(&self) -> Option<Arc<State>> {
        self.index.try_lock().ok()?.current(&self.state_dir)
    }

    /// The directory's pods and NADs, parsing only the files that changed since the last lookup.
    fn state(&self) -> Result<Arc<State>, SourceError> {
        // One lookup reads at a time: the others wait for its parse instead of repeating it.
        let mut index = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = index.current(&self.state_dir) {
            return Ok(state);
        }
        let now = SystemTime::now();
        let stamps = listing(&self.state_dir)?;
        index.refresh(stamps, now, self.racy);
        Ok(Arc::clone(&index.state))
    }
}

impl Index {
    /// Adds what the watch saw since the last poll to `pending`; makes a watch when there is
    /// none (what happened before it is unknown: every file counts as changed).
    fn poll(&mut self, dir: &Path) {
        if let Some(watch) = &self.watch {
            match watch.changes(dir) {
                Ok(changes) => return self.pending.add(changes),
                Err(watch::Lost) => self.watch = None,
            }
        }
        match DirWatch::new(dir) {
            Ok(watch) => {
                self.watch = Some(watch);
                self.pending = Changes::All;
            }
            // Lookups go on with a stat of every file (a missing directory fails in `listing`).
            Err(error) => {
                tracing::debug!(dir = %dir.display(), %error, "no inotify watch on clusterStateDir")
            }
        }
    }

    /// After a [`poll`](Self::poll): the merged state, when the watch reports no change and no
    /// manifest is a symlink. A new watch reports everything changed until a refresh reads the
    /// files under it, so "no change" always means since a read under this watch.
    fn current(&mut self, dir: &Path) -> Option<Arc<State>> {
        self.poll(dir);
        (self.watch.is_some() && !self.links && self.pending == Changes::None)
            .then(|| Arc::clone(&self.state))
    }

    /// Takes `stamps` (the directory as listed after `now`) as the file set: a file is parsed
    /// again unless its stamp is the same and, for a plain file under the watch, no event named
    /// it, or otherwise it was settled when parsed. Merges again when any file changed.
    fn refresh(&mut self, stamps: Vec<Stamp>, now: SystemTime, racy: Duration) {
        let changes = self
            .watch
            .is_some()
            .then(|| std::mem::take(&mut self.pending));
        let mut old = std::mem::take(&mut self.files);
        let mut changed = false;
        for stamp in stamps {
            let named = |c: &Changes| stamp.path.file_name().is_none_or(|n| c.touches(n));
            let reusable = |p: &Parsed| {
                p.stamp == stamp
                    && match &changes {
                        Some(c) if !stamp.link => !named(c),
                        _ => p.settled,
                    }
            };
            let parsed = match old.remove(&stamp.path) {
                Some(p) if reusable(&p) => p,
                _ => {
                    changed = true;
                    Parsed::read(stamp, now, racy)
                }
            };
            self.files.insert(parsed.stamp.path.clone(), parsed);
        }
        changed |= !old.is_empty();
        self.links = self.files.values().any(|p| p.stamp.link);
        if changed {
            self.state = Arc::new(merge(self.files.values()));
        }
    }
}

impl Parsed {
    fn read(stamp: Stamp, now: SystemTime, racy: Duration) -> Self {
        let mut objects = Vec::new();
        match read_objects(&stamp.path, stamp.len) {
            Ok(found) => found
                .into_iter()
                .for_each(|o| add_object(&mut objects, &stamp.path, o)),
            Err(reason) => {
                tracing::warn!(file = %stamp.path.display(), %reason, "skipping unreadable manifest")
            }
        }
        Self {
            settled: !stamp.is_racy(now, racy),
            stamp,
            objects,
        }
    }
}

/// The files' objects in name order, a later object replacing an earlier one of its name.
fn merge<'a>(files: impl Iterator<Item = &'a Parsed>) -> State {
    let mut state = State::default();
    for object in files.flat_map(|f| &f.objects) {
        match object {
            Object::Pod(key, pod) => {
                state.pods.insert(key.clone(), pod.clone());
            }
            Object::Nad(key, nad) => {
                state.nads.insert(key.clone(), nad.clone());
            }
        }
    }
    state
}

/// The manifest files of `dir` in name order, at most [`MAX_FILES`], each as a stat sees it.
fn listing(dir: &Path) -> Result<Vec<Stamp>, SourceError> {
    let unavailable = |e: std::io::Error| SourceError::Unavailable {
        what: format!("clusterStateDir {}", dir.display()),
        reason: e.to_string(),
    };
    let mut files: Vec<(PathBuf, bool)> = fs::read_dir(dir)
        .map_err(unavailable)?
        .filter_map(|e| {
            let e = e.ok()?;
            // The entry's own type (from the directory, no extra syscall on most file systems).
            let link = e.file_type().is_ok_and(|t| t.is_symlink());
            Some((e.path(), link))
        })
        .filter(|(p, _)| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    if files.len() > MAX_FILES {
        tracing::warn!(dir = %dir.display(), files = files.len(), max = MAX_FILES, "too many manifests; reading the first");
        files.truncate(MAX_FILES);
    }
    // A file gone between the listing and its stat is simply not there.
    Ok(files
        .into_iter()
        .filter_map(|(path, link)| {
            let m = fs::metadata(&path).ok()?;
            Some(Stamp::of(path, link, &m))
        })
        .collect())
}

/// Every document of a file of `len` bytes; JSON files hold one document, YAML files any number.
fn read_objects(file: &Path, len: u64) -> Result<Vec<Value>, String> {
    if len > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    let text = fs::read_to_string(file).map_err(|e| e.to_string())?;
    if file.extension().is_some_and(|e| e == "json") {
        return serde_json::from_str(&text)
            .map(|v| vec![v])
            .map_err(|e| e.to_string());
    }
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).map_err(|e| e.to_string()))
        .filter(|r| !matches!(r, Ok(Value::Null)))
        .collect()
}

fn add_object(objects: &mut Vec<Object>, file: &Path, obj: Value) {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let meta = obj.get("metadata");
    let text = |v: Option<&Value>, k: &str| {
        v.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let name = text(meta, "name");
    let namespace = Some(text(meta, "namespace"))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    match kind {
        "List" => {
            let items = obj
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            items
                .into_iter()
                .for_each(|item| add_object(objects, file, item));
        }
        _ if name.is_empty() && matches!(kind, "Pod" | "NetworkAttachmentDefinition") => {
            tracing::warn!(file = %file.display(), kind, "skipping object without metadata.name");
        }
        "Pod" => {
            let uid = Some(text(meta, "uid"))
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| derived_uid(&namespace, &name));
            let annotations = annotations(meta);
            let pod = PodInfo {
                namespace: namespace.clone(),
                name: name.clone(),
                uid,
                annotations,
            };
            objects.push(Object::Pod((namespace, name), pod));
        }
        "NetworkAttachmentDefinition" if text(Some(&obj), "apiVersion").starts_with(NAD_GROUP) => {
            let nad = match obj.get("spec").and_then(|s| s.get("config")) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(format!(
                    "{}: spec.config must be a string of JSON",
                    file.display()
                )),
            }
            .map(|config| NadInfo {
                namespace: namespace.clone(),
                name: name.clone(),
                annotations: annotations(meta),
                config,
            });
            objects.push(Object::Nad((namespace, name), nad));
        }
        _ => tracing::debug!(file = %file.display(), kind, "ignoring object"),
    }
}

/// `metadata.annotations`; YAML scalars that are not strings (`true`, `3`) are kept as text.
fn annotations(meta: Option<&Value>) -> BTreeMap<String, String> {
    let Some(map) = meta
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    else {
        return BTreeMap::new();
    };
    map.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            )
        })
        .collect()
}

/// A UID for a pod manifest that has none: stable for a namespace/name (two FNV-1a hashes laid
/// out as a UUID), so ADD and the cache agree across restarts. Not unique across pod
/// re-creations, which standalone mode has no notion of anyway.
pub fn derived_uid(namespace: &str, name: &str) -> String {
    let fnv = |seed: u64| {
        format!("{namespace}/{name}").bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    };
    let (a, b) = (fnv(0xcbf2_9ce4_8422_2325), fnv(0x8422_2325_cbf2_9ce4));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFESTS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: app
  uid: 1234-abcd
  annotations:
    k8s.v1.cni.cncf.io/networks: mv@net5
    flag: true
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  name: mv
  namespace: app
spec:
  config: '{"cniVersion":"0.3.1","type":"macvlan"}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: from-dir, namespace: app}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: broken, namespace: app}
spec:
  config: {type: macvlan}
"#;

    fn fixture() -> (tempfile::TempDir, FileSource) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("10-app.yaml"), MANIFESTS).unwrap();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"kind": "Pod", "metadata": {"name": "solo"}},
            {"kind": "Pod", "metadata": {"namespace": "x"}},
            {"apiVersion": "other.io/v1", "kind": "NetworkAttachmentDefinition", "metadata": {"name": "foreign"}}
        ]});
        fs::write(dir.path().join("20-list.json"), list.to_string()).unwrap();
        fs::write(dir.path().join("30-bad.yaml"), "kind: [unclosed").unwrap();
        fs::write(dir.path().join("notes.txt"), "kind: Pod").unwrap();
        let status = dir.path().join("status");
        let src = FileSource::new(dir.path(), Some(status));
        (dir, src)
    }

    #[tokio::test]
    async fn pods_and_nads_from_yaml_json_and_lists() {
        let (_dir, src) = fixture();
        let pod = src.pod("app", "web").await.unwrap().unwrap();
        assert_eq!(pod.uid, "1234-abcd");
        assert_eq!(pod.annotations["k8s.v1.cni.cncf.io/networks"], "mv@net5");
        assert_eq!(pod.annotations["flag"], "true");
        let solo = src.pod("default", "solo").await.unwrap().unwrap();
        assert_eq!(solo.uid, derived_uid("default", "solo"));
        assert!(src.pod("app", "nope").await.unwrap().is_none());
        let nad = src.nad("app", "mv").await.unwrap().unwrap();
        assert_eq!(nad.config, r#"{"cniVersion":"0.3.1","type":"macvlan"}"#);
        assert_eq!(
            src.nad("app", "from-dir").await.unwrap().unwrap().config,
            ""
        );
        assert!(matches!(
            src.nad("app", "broken").await,
            Err(SourceError::Invalid { .. })
        ));
        assert!(src.nad("default", "foreign").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn edits_are_seen_on_the_next_lookup() {
        let (dir, src) = fixture();
        assert!(src.pod("app", "late").await.unwrap().is_none());
        fs::write(
            dir.path().join("40-late.yml"),
            "kind: Pod\nmetadata: {name: late, namespace: app}\n",
        )
        .unwrap();
        assert!(src.pod("app", "late").await.unwrap().is_some());
    }

    /// A source whose racy window is `racy`.
    fn with_racy(dir: &Path, racy: Duration) -> FileSource {
        FileSource {
            inner: Arc::new(Dirs {
                state_dir: dir.to_owned(),
                status_dir: None,
                index: Mutex::default(),
                racy,
            }),
        }
    }

    fn pod_yaml(uid: &str) -> String {
        format!("kind: Pod\nmetadata: {{name: p, uid: {uid}}}\n")
    }

    /// One ADD looks the directory up several times: unchanged files are parsed once, even
    /// files written just now, and every write is seen at the next lookup, even a same-size
    /// rewrite in the same clock tick (the watch names the file).
    #[tokio::test]
    async fn an_unchanged_directory_is_parsed_once() {
        let (dir, _) = fixture();
        let src = with_racy(dir.path(), Duration::from_secs(3600));
        let first = src.state().await.unwrap();
        assert!(Arc::ptr_eq(&first, &src.state().await.unwrap()));
        assert!(src.inner.unchanged().is_some(), "no listing needed");
        fs::write(dir.path().join("50-p.yaml.new"), pod_yaml("uid-b")).unwrap();
        fs::write(dir.path().join("50-p.yaml"), pod_yaml("uid-a")).unwrap();
        assert_eq!(src.pod("default", "p").await.unwrap().unwrap().uid, "uid-a");
        let second = src.state().await.unwrap();
        assert!(Arc::ptr_eq(&second, &src.state().await.unwrap()));
        fs::rename(
            dir.path().join("50-p.yaml.new"),
            dir.path().join("50-p.yaml"),
        )
        .unwrap();
        assert_eq!(src.pod("default", "p").await.unwrap().unwrap().uid, "uid-b");
        for uid in ["uid-c", "uid-d"] {
            fs::write(dir.path().join("50-p.yaml"), pod_yaml(uid)).unwrap();
            assert_eq!(src.pod("default", "p").await.unwrap().unwrap().uid, uid);
        }
        fs::remove_file(dir.path().join("50-p.yaml")).unwrap();
        assert!(src.pod("default", "p").await.unwrap().is_none());
        assert!(src.pod("app", "web").await.unwrap().is_some());
    }

    /// Of two files naming one pod the later in name order wins, and the earlier one's comes
    /// back when the later goes.
    #[tokio::test]
    async fn a_later_file_wins_a_shared_name() {
        let (dir, src) = fixture();
        fs::write(dir.path().join("60-p.yaml"), pod_yaml("uid-60")).unwrap();
        fs::write(dir.path().join("70-p.yaml"), pod_yaml("uid-70")).unwrap();
        assert_eq!(
            src.pod("default", "p").await.unwrap().unwrap().uid,
            "uid-70"
        );
        fs::remove_file(dir.path().join("70-p.yaml")).unwrap();
        assert_eq!(
            src.pod("default", "p").await.unwrap().unwrap().uid,
            "uid-60"
        );
    }

    /// An edit of a symlinked manifest's target outside the directory reaches no watch on it:
    /// such files are looked at on every lookup, and parsed again while racy.
    #[tokio::test]
    async fn a_symlinked_manifests_target_is_followed() {
        let (dir, src) = fixture();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("p.yaml");
        fs::write(&target, pod_yaml("uid-a")).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("80-p.yaml")).unwrap();
        assert_eq!(src.pod("default", "p").await.unwrap().unwrap().uid, "uid-a");
        assert!(
            src.inner.unchanged().is_none(),
            "a symlink is listed every time"
        );
        fs::write(&target, pod_yaml("uid-b")).unwrap();
        assert_eq!(src.pod("default", "p").await.unwrap().unwrap().uid, "uid-b");
    }

    /// A directory missing at the first lookup, then made, then replaced, is found by each
    /// lookup. Without a watch a file's stamp and the racy window decide, as for symlinks.
    #[tokio::test]
    async fn without_a_watch_stamps_decide() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("state");
        let src = with_racy(&dir, Duration::ZERO);
        assert!(src.pod("default", "p").await.is_err());
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("p.yaml"), pod_yaml("uid-a")).unwrap();
        assert_eq!(src.pod("default", "p").await.unwrap().unwrap().uid, "uid-a");
        // The directory is watched from the lookup above on; it is lost and made again here.
        fs::rename(&dir, parent.path().join("old")).unwrap();
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("p.yaml"), pod_yaml("uid-b")).unwrap();
        assert_eq!(src.pod("default", "p").await.unwrap().unwrap().uid, "uid-b");
        let mut index = Index::default();
        let stamps = listing(&dir).unwrap();
        index.refresh(stamps.clone(), SystemTime::now(), Duration::ZERO);
        let first = Arc::clone(&index.state);
        index.refresh(stamps.clone(), SystemTime::now(), Duration::ZERO);
        assert!(
            Arc::ptr_eq(&first, &index.state),
            "settled and unchanged: reused"
        );
        let mut racy = Index::default();
        racy.refresh(stamps.clone(), SystemTime::now(), Duration::from_secs(3600));
        let parsed = Arc::clone(&racy.state);
        racy.refresh(stamps, SystemTime::now(), Duration::ZERO);
        assert!(
            !Arc::ptr_eq(&parsed, &racy.state),
            "racy when parsed: read again"
        );
    }

    #[test]
    fn only_files_older_than_the_racy_window_may_be_reused() {
        let now = SystemTime::now();
        let at = |ago: Duration| now - ago;
        let stamp = |mtime, ctime| Stamp {
            path: PathBuf::from("p.yaml"),
            link: false,
            ino: 1,
            len: 1,
            mtime,
            ctime,
        };
        let old = at(Duration::from_secs(10));
        let recent = at(Duration::from_millis(500));
        assert!(!stamp(old, old).is_racy(now, RACY));
        assert!(stamp(recent, old).is_racy(now, RACY));
        assert!(stamp(old, recent).is_racy(now, RACY));
        assert!(!stamp(recent, recent).is_racy(now, Duration::ZERO));
    }

    #[tokio::test]
    async fn network_status_is_written_atomically_or_reported_gone() {
        let (dir, src) = fixture();
        let pod = src.pod("app", "web").await.unwrap().unwrap();
        assert!(src.set_network_status(&pod, "[]").await.unwrap());
        let written = fs::read_to_string(dir.path().join("status/app.web.json")).unwrap();
        assert_eq!(written, "[]");
        let leftovers = fs::read_dir(dir.path().join("status")).unwrap().count();
        assert_eq!(leftovers, 1);
        let gone = PodInfo {
            namespace: "app".into(),
            name: "gone".into(),
            ..Default::default()
        };
        assert!(!src.set_network_status(&gone, "[]").await.unwrap());
        let logged = FileSource::new(dir.path(), None);
        assert!(logged.set_network_status(&pod, "[]").await.unwrap());
    }

    #[tokio::test]
    async fn missing_directory_is_unavailable() {
        let src = FileSource::new("/nonexistent/multus-rs-state", None);
        assert!(matches!(
            src.pod("a", "b").await,
            Err(SourceError::Unavailable { .. })
        ));
    }

    #[test]
    fn derived_uids_are_stable_and_distinct() {
        let a = derived_uid("ns", "a");
        assert_eq!(a, derived_uid("ns", "a"));
        assert_ne!(a, derived_uid("ns", "b"));
        assert_eq!(a.len(), 36);
    }
}
