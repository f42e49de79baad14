//! Finding stale state on disk, one directory entry at a time (`read_dir` streams; nothing is
//! listed into memory), each verdict sent on at once over a bounded channel.
//!
//! A container's state is stale when its network namespace is gone and the runtime no longer
//! knows it: it is not in the runtime's last GC valid list, and, when that list is older than
//! the file, the namespace alone decides. A namespace that cannot be judged (no path recorded,
//! a directory the daemon cannot see, not an nsfs mount) never makes anything stale by itself.
//! Files that only make sense beside a record (libcni results, device-info copies, quarantined
//! records) follow that record while it exists; without one, nothing else would ever remove them.
use std::collections::HashSet;
use std::fs::{DirEntry, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use multus_common::validate;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{Kind, Stale};
use crate::engine::cache::{OWN_DIR, PROGRESS_DIR, RESULTS_DIR, Remembered};

/// A file written this recently may belong to a request in flight (a device-info copy comes just
/// before its record, a temp file lives for one write): never stale yet.
pub const GRACE: Duration = Duration::from_secs(600);
/// Larger files are not ours (a record is a few KiB): they are left alone.
const MAX_READ: u64 = 4 << 20;
const CORRUPT_SUFFIX: &str = ".corrupt";

/// Where to look.
#[derive(Debug, Clone)]
pub struct Paths {
    pub cni_dir: PathBuf,
    /// `<deviceInfoDir>/cni`
    pub device_info: PathBuf,
}

/// What the scan saw of the rest (for the summary line).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// Containers whose namespace exists or the runtime listed.
    pub live: u64,
    /// Containers that cannot be judged (kept).
    pub undecided: u64,
}

/// Whether a network namespace still exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Netns {
    Alive,
    Gone,
    Unknown,
}

fn netns_state(path: &str) -> Netns {
    if path.is_empty() {
        return Netns::Unknown;
    }
    let p = Path::new(path);
    match nix::sys::statfs::statfs(p) {
        Ok(fs) if fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC => Netns::Alive,
        // A plain file where the runtime's bind mount was, or a mount this daemon's mount
        // namespace does not receive: not evidence enough to tear anything down.
        Ok(_) => Netns::Unknown,
        // Gone only from a directory the daemon can see: a netns directory that is not mounted
        // into the daemon's container would otherwise make every pod look gone.
        Err(nix::errno::Errno::ENOENT) if p.parent().is_some_and(Path::is_dir) => Netns::Gone,
        Err(_) => Netns::Unknown,
    }
}

/// What the runtime's last valid list says of a container whose state was last written at
/// `written`: `Some(true)` listed, `Some(false)` unlisted although the list came later,
/// `None` no list or a list older than the file.
fn runtime_knows(valid: Option<&Remembered>, id: &str, written: SystemTime) -> Option<bool> {
    let v = valid?;
    if v.ids.contains(id) {
        return Some(true);
    }
    (written < v.received).then_some(false)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Stale(&'static str),
    Live,
    Undecided,
}

fn verdict(netns: Netns, known: Option<bool>) -> Verdict {
    match (netns, known) {
        (_, Some(true)) | (Netns::Alive, _) => Verdict::Live,
        (Netns::Gone, Some(false)) => {
            Verdict::Stale("network namespace gone; not in the runtime's last GC list")
        }
        (Netns::Gone, None) => Verdict::Stale("network namespace gone"),
        (Netns::Unknown, Some(false)) => Verdict::Stale("not in the runtime's last GC list"),
        (Netns::Unknown, None) => Verdict::Undecided,
    }
}

/// Streams every stale entry into `tx`; returns what was kept. Stops early when the receiver
/// is gone.
pub fn scan(paths: &Paths, valid: Option<&Remembered>, tx: &mpsc::Sender<Stale>) -> Kept {
    let mut s = Scanner {
        paths,
        valid,
        tx,
        kept: Kept::default(),
        now: SystemTime::now(),
    };
    // Our records first: collecting one also removes its scratch copy, libcni results and
    // device-info files, which the later passes then no longer see.
    let own = paths.cni_dir.join(OWN_DIR);
    // Each pass runs only while the receiver is there.
    let _ = s.each(&own, |s, e| s.own_dir_entry(e))
        && s.each(&own.join(PROGRESS_DIR), |s, e| s.progress(e))
        && s.each(&paths.cni_dir, |s, e| s.cni_dir_entry(e))
        && s.each(&paths.cni_dir.join(RESULTS_DIR), |s, e| s.result(e))
        && s.each(&paths.device_info, |s, e| s.device_info(e));
    s.kept
}

struct Scanner<'a> {
    paths: &'a Paths,
    valid: Option<&'a Remembered>,
    tx: &'a mpsc::Sender<Stale>,
    kept: Kept,
    now: SystemTime,
}

/// The part of any record (ours, or a previous build's at upstream's place) a verdict needs.
#[derive(Deserialize)]
struct WithNetns {
    #[serde(rename = "schemaVersion")]
    _schema_version: u32,
    #[serde(default)]
    netns: String,
}

/// libcni's cache entry: its container and namespace.
#[derive(Deserialize)]
struct LibcniEntry {
    #[serde(rename = "containerId")]
    container_id: String,
    #[serde(default)]
    netns: String,
}

fn read_small(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_READ).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

fn modified(meta: &Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// `.<name>.tmp-<pid>-<n>`: a temp file of `atomic_file` (only those are ours to remove).
fn is_temp(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    let Some((_, tail)) = rest.rsplit_once(".tmp-") else {
        return false;
    };
    let mut parts = tail.split('-');
    let digits =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
}

/// The container ids a device-info copy's name may carry (`<network>-<cid>_<ifname>`; network
/// names and ids may hold `-` and `_` themselves, so every split is a candidate).
fn device_info_candidates(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('-').flat_map(move |(dash, _)| {
        let rest = &name[dash + 1..];
        rest.match_indices('_')
            .map(move |(us, _)| &rest[..us])
            .filter(|cid| validate::id("container id", cid).is_ok())
    })
}

impl Scanner<'_> {
    /// Calls `f` on each entry of `dir` (a missing directory has none); false once the
    /// receiver is gone.
    fn each(&mut self, dir: &Path, mut f: impl FnMut(&mut Self, &DirEntry) -> bool) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return true;
        };
        for entry in entries.flatten() {
            if !f(self, &entry) {
                return false;
            }
        }
        true
    }

    fn send(
        &mut self,
        kind: Kind,
        path: PathBuf,
        container_id: Option<&str>,
        reason: &'static str,
    ) -> bool {
        let stale = Stale {
            kind,
            path,
            container_id: container_id.map(str::to_owned),
            reason,
        };
        self.tx.blocking_send(stale).is_ok()
    }

    fn keep(&mut self, live: bool) -> bool {
        if live {
            self.kept.live += 1;
        } else {
            self.kept.undecided += 1;
        }
        true
    }

    fn old_enough(&self, meta: &Metadata) -> bool {
        self.now
            .duration_since(modified(meta))
            .is_ok_and(|age| age >= GRACE)
    }

    /// Whether a record (ours or at upstream's place) exists for the container.
    fn has_record(&self, id: &str) -> bool {
        let cni = &self.paths.cni_dir;
        cni.join(OWN_DIR).join(id).is_file() || cni.join(id).is_file()
    }

    /// Regular files only: directories, links and sockets are never ours to judge.
    fn file_meta(entry: &DirEntry) -> Option<(String, Metadata)> {
        let meta = entry.metadata().ok().filter(Metadata::is_file)?;
        Some((entry.file_name().into_string().ok()?, meta))
    }

    /// A regular file named as a container's record: its name and metadata. Anything else
    /// (judged here when it is a temp or side file) answers whether the walk goes on.
    fn record_file(&mut self, entry: &DirEntry) -> Result<(String, Metadata), bool> {
        let Some((name, meta)) = Self::file_meta(entry) else {
            return Err(true);
        };
        if let Some(go_on) = self.side_file(entry, &name, &meta) {
            return Err(go_on);
        }
        if validate::id("container id", &name).is_err() {
            return Err(true);
        }
        Ok((name, meta))
    }

    fn own_dir_entry(&mut self, entry: &DirEntry) -> bool {
        let (name, meta) = match self.record_file(entry) {
            Ok(found) => found,
            Err(go_on) => return go_on,
        };
        let netns = read_small(&entry.path())
            .and_then(|b| serde_json::from_slice::<WithNetns>(&b).ok())
            .map(|r| r.netns);
        // Unreadable: the next DEL or GC quarantines it; until then it is not judged.
        let Some(netns) = netns else {
            return self.keep(false);
        };
        self.container(Kind::Own, entry.path(), &name, &netns, &meta)
    }

    fn cni_dir_entry(&mut self, entry: &DirEntry) -> bool {
        let (name, meta) = match self.record_file(entry) {
            Ok(found) => found,
            Err(go_on) => return go_on,
        };
        // Written beside our record: it goes with it.
        if self.paths.cni_dir.join(OWN_DIR).join(&name).is_file() {
            return true;
        }
        // The previous build's record names its namespace; upstream's scratch format does not.
        let netns = read_small(&entry.path())
            .and_then(|b| serde_json::from_slice::<WithNetns>(&b).ok())
            .map(|r| r.netns)
            .unwrap_or_default();
        self.container(Kind::Scratch, entry.path(), &name, &netns, &meta)
    }

    fn container(
        &mut self,
        kind: Kind,
        path: PathBuf,
        id: &str,
        netns: &str,
        meta: &Metadata,
    ) -> bool {
        let known = runtime_knows(self.valid, id, modified(meta));
        match verdict(netns_state(netns), known) {
            Verdict::Stale(reason) => self.send(kind, path, Some(id), reason),
            Verdict::Live => self.keep(true),
            Verdict::Undecided => self.keep(false),
        }
    }

    /// Quarantined records and temp files, in either directory: `None` when `name` is neither,
    /// else whether to go on.
    fn side_file(&mut self, entry: &DirEntry, name: &str, meta: &Metadata) -> Option<bool> {
        if is_temp(name) {
            return Some(self.temp(entry, meta));
        }
        let id = name
            .strip_suffix(CORRUPT_SUFFIX)
            .filter(|id| validate::id("container id", id).is_ok())?;
        // Its DEL already ran (quarantining is how it ended); kept a while for an operator, and
        // while the runtime still lists the container or a newer record exists for it.
        let listed = self.valid.is_some_and(|v| v.ids.contains(id));
        if listed || self.has_record(id) || !self.old_enough(meta) {
            return Some(true);
        }
        Some(self.send(
            Kind::Corrupt,
            entry.path(),
            Some(id),
            "quarantined record of a container torn down",
        ))
    }

    /// An ADD's progress journal: removed with its record, so one without a record is only
    /// what a crash (or a hand) left.
    fn progress(&mut self, entry: &DirEntry) -> bool {
        let Some((name, meta)) = Self::file_meta(entry) else {
            return true;
        };
        if self.has_record(&name) || !self.old_enough(&meta) {
            return true;
        }
        self.send(
            Kind::Temp,
            entry.path(),
            None,
            "progress journal of a record that is gone",
        )
    }

    fn temp(&mut self, entry: &DirEntry, meta: &Metadata) -> bool {
        if !self.old_enough(meta) {
            return true;
        }
        self.send(
            Kind::Temp,
            entry.path(),
            None,
            "temp file of an interrupted write",
        )
    }

    fn result(&mut self, entry: &DirEntry) -> bool {
        let Some((name, meta)) = Self::file_meta(entry) else {
            return true;
        };
        // Our libcni results are written through temp files too.
        if is_temp(&name) {
            return self.temp(entry, &meta);
        }
        let Some(cached) =
            read_small(&entry.path()).and_then(|b| serde_json::from_slice::<LibcniEntry>(&b).ok())
        else {
            return true;
        };
        let id = cached.container_id;
        if validate::id("container id", &id).is_err() || self.has_record(&id) {
            return true;
        }
        self.container(Kind::LibcniResult, entry.path(), &id, &cached.netns, &meta)
    }

    fn device_info(&mut self, entry: &DirEntry) -> bool {
        let Some((name, meta)) = Self::file_meta(entry) else {
            return true;
        };
        let candidates: HashSet<&str> = device_info_candidates(&name).collect();
        if candidates.is_empty() || candidates.iter().any(|id| self.has_record(id)) {
            return true;
        }
        if candidates
            .iter()
            .any(|id| self.valid.is_some_and(|v| v.ids.contains(*id)))
        {
            return self.keep(true);
        }
        if !self.old_enough(&meta) {
            return true;
        }
        let id = candidates.iter().next().copied();
        let id = if candidates.len() == 1 { id } else { None };
        self.send(
            Kind::DeviceInfo,
            entry.path(),
            id,
            "no record names its container",
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn temp_names_are_only_atomic_file_s() {
        assert!(is_temp(".4b0e.tmp-12-0"));
        assert!(is_temp("..gc-valid-containers.json.tmp-1-22"));
        assert!(!is_temp(".gc-valid-containers.json"));
        assert!(!is_temp("4b0e.tmp-12-0"));
        assert!(!is_temp(".x.tmp-12"));
        assert!(!is_temp(".x.tmp-a-1"));
    }

    #[test]
    fn device_info_names_give_every_split_as_a_candidate() {
        let c: Vec<&str> = device_info_candidates("ns-sriov-net-4b0e_net1").collect();
        assert!(c.contains(&"4b0e"), "{c:?}");
        assert!(c.contains(&"sriov-net-4b0e"), "{c:?}");
        assert_eq!(device_info_candidates("nodash").count(), 0);
    }

    #[test]
    fn verdicts_need_a_gone_namespace_or_the_runtime_s_word() {
        assert_eq!(verdict(Netns::Alive, Some(false)), Verdict::Live);
        assert_eq!(verdict(Netns::Gone, Some(true)), Verdict::Live);
        assert!(matches!(verdict(Netns::Gone, None), Verdict::Stale(_)));
        assert!(matches!(
            verdict(Netns::Unknown, Some(false)),
            Verdict::Stale(_)
        ));
        assert_eq!(verdict(Netns::Unknown, None), Verdict::Undecided);
    }

    #[test]
    fn a_namespace_is_gone_only_from_a_directory_that_exists() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("cni-1");
        assert_eq!(netns_state(&missing.to_string_lossy()), Netns::Gone);
        let unseen = dir.path().join("absent").join("cni-1");
        assert_eq!(netns_state(&unseen.to_string_lossy()), Netns::Unknown);
        std::fs::write(&missing, b"").unwrap();
        assert_eq!(netns_state(&missing.to_string_lossy()), Netns::Unknown);
        assert_eq!(netns_state("/proc/self/ns/net"), Netns::Alive);
        assert_eq!(netns_state(""), Netns::Unknown);
    }
}
