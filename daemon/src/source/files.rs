//! Standalone mode's source: a directory (`clusterStateDir`) of Kubernetes manifests, YAML or
//! JSON, holding Pod and NetworkAttachmentDefinition objects, standing in for the API server.
//!
//! Standalone mode is for demos, tests and edge nodes without an API server, so every lookup
//! looks at the directory again (bounded in file count and size): edits take effect at once. What
//! it parsed last is reused while the listing and each file's inode, size and times are the same
//! (one ADD looks up its pod, each NAD and the pod again for network-status), except for files
//! changed within [`RACY`] of that parse, which a same-size rewrite in the same clock tick could
//! hide. Network-status goes to `<networkStatusDir>/<ns>.<pod>.json`.
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{ClusterSource, EventType, NadInfo, PodInfo, SourceError};

/// Files read per lookup at most; more are ignored (and logged).
const MAX_FILES: usize = 4096;
/// Larger manifest files are skipped (and logged).
const MAX_FILE_BYTES: u64 = 4 << 20;
/// API group of NetworkAttachmentDefinitions.
const NAD_GROUP: &str = "k8s.cni.cncf.io/";
/// A parse is reused only when every file it read is older than this: file times advance in
/// clock ticks (milliseconds), so a rewrite of the same size within one tick changes nothing a
/// stat shows.
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
    /// The last parse that may be reused, with what the files looked like then.
    last: Mutex<Option<(Vec<Stamp>, Arc<State>)>>,
    /// [`RACY`]; shorter in tests.
    racy: Duration,
}

/// One manifest file as a stat sees it: any write, rename or replace changes one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    ino: u64,
    len: u64,
    mtime: SystemTime,
    ctime: SystemTime,
}

impl Stamp {
    fn of(path: PathBuf, m: &fs::Metadata) -> Self {
        // std has no ctime as a SystemTime; times before 1970 read as 1970 (never racy).
        let ctime = Duration::new(
            m.ctime().max(0).unsigned_abs(),
            m.ctime_nsec().clamp(0, 999_999_999) as u32,
        );
        Self {
            path,
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

/// What one scan of the directory found. A NAD that is present but malformed is kept as an
/// error, so looking it up fails with the reason instead of "not found".
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
                last: Mutex::new(None),
                racy: RACY,
            }),
        }
    }

    async fn state(&self) -> Result<Arc<State>, SourceError> {
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
    fs::create_dir_all(file.parent().unwrap_or(Path::new(".")))?;
    crate::atomic_file::replace(file, bytes, 0o644)
}

impl Dirs {
    /// The directory's pods and NADs: the last parse while no file changed, else a new one.
    fn state(&self) -> Result<Arc<State>, SourceError> {
        let now = SystemTime::now();
        let stamps = listing(&self.state_dir)?;
        if let Ok(last) = self.last.lock()
            && let Some((seen, state)) = last.as_ref()
            && *seen == stamps
        {
            return Ok(Arc::clone(state));
        }
        let state = Arc::new(scan(&stamps));
        if !stamps.iter().any(|s| s.is_racy(now, self.racy))
            && let Ok(mut last) = self.last.lock()
        {
            *last = Some((stamps, Arc::clone(&state)));
        }
        Ok(state)
    }
}

/// The manifest files of `dir` in name order, at most [`MAX_FILES`], each as a stat sees it.
fn listing(dir: &Path) -> Result<Vec<Stamp>, SourceError> {
    let unavailable = |e: std::io::Error| SourceError::Unavailable {
        what: format!("clusterStateDir {}", dir.display()),
        reason: e.to_string(),
    };
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(unavailable)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
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
        .filter_map(|path| {
            let m = fs::metadata(&path).ok()?;
            Some(Stamp::of(path, &m))
        })
        .collect())
}

fn scan(stamps: &[Stamp]) -> State {
    let mut state = State::default();
    for Stamp {
        path: file, len, ..
    } in stamps
    {
        match read_objects(file, *len) {
            Ok(objects) => objects
                .into_iter()
                .for_each(|o| add_object(&mut state, file, o)),
            Err(reason) => {
                tracing::warn!(file = %file.display(), %reason, "skipping unreadable manifest")
            }
        }
    }
    state
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

fn add_object(state: &mut State, file: &Path, obj: Value) {
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
                .for_each(|item| add_object(state, file, item));
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
            state.pods.insert((namespace, name), pod);
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
            state.nads.insert((namespace, name), nad);
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

    /// One ADD looks the directory up several times: unchanged files are parsed once, and
    /// any change a stat shows (here a same-size replace) is parsed again.
    #[tokio::test]
    async fn an_unchanged_directory_is_parsed_once() {
        let (dir, src) = fixture();
        let settled = FileSource {
            inner: Arc::new(Dirs {
                state_dir: dir.path().to_owned(),
                status_dir: None,
                last: Mutex::new(None),
                racy: Duration::ZERO,
            }),
        };
        let first = settled.state().await.unwrap();
        assert!(Arc::ptr_eq(&first, &settled.state().await.unwrap()));
        let pod = |uid: &str| format!("kind: Pod\nmetadata: {{name: p, uid: {uid}}}\n");
        fs::write(dir.path().join("50-p.yaml.new"), pod("uid-b")).unwrap();
        fs::write(dir.path().join("50-p.yaml"), pod("uid-a")).unwrap();
        assert_eq!(
            settled.pod("default", "p").await.unwrap().unwrap().uid,
            "uid-a"
        );
        fs::rename(
            dir.path().join("50-p.yaml.new"),
            dir.path().join("50-p.yaml"),
        )
        .unwrap();
        assert_eq!(
            settled.pod("default", "p").await.unwrap().unwrap().uid,
            "uid-b"
        );
        // Within the racy window even an in-place rewrite of the same size is seen.
        fs::write(dir.path().join("50-p.yaml"), pod("uid-c")).unwrap();
        assert_eq!(src.pod("default", "p").await.unwrap().unwrap().uid, "uid-c");
        fs::write(dir.path().join("50-p.yaml"), pod("uid-d")).unwrap();
        assert_eq!(src.pod("default", "p").await.unwrap().unwrap().uid, "uid-d");
    }

    #[test]
    fn only_files_older_than_the_racy_window_may_be_reused() {
        let now = SystemTime::now();
        let at = |ago: Duration| now - ago;
        let stamp = |mtime, ctime| Stamp {
            path: PathBuf::from("p.yaml"),
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
