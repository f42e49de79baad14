//! The per-container record under `cniDir`: everything DEL, CHECK and GC need, so they never ask
//! the cluster. File `<cniDir>/multus-rs/<containerId>`, JSON with `schemaVersion`, replaced
//! atomically (temp file, rename; dirs 0700, files 0600).
//!
//! Durability: a rewrite is atomic against a crash of the daemon (the page cache outlives it),
//! and [`Cache::sync`] makes the record durable against a power cut. ADD writes the planned
//! record before the first delegate runs, syncs it *while* the delegates run, and waits for that
//! sync before it answers: the fsyncs cost no latency unless they outlast the delegates. The
//! record is not rewritten after that: each delegate that succeeded is appended, with its
//! result, to the container's journal beside it ([`progress`], [`Cache::append_progress`]), and
//! reading applies the journal over the record. So the record says what was planned, the journal
//! what was done. The appends are not synced: if power goes, the durable planned record still
//! names every delegate, which is all a DEL needs (their results only serve CHECK and DEL's
//! `prevResult`, and the plugins' own state, host-local's leases for one, is not fsynced either).
//! A later full write of the record (a hot-plug) folds the journal in and removes it.
//!
//! Beside it, for the way back to Go Multus (D-6), an ADD's first and last writes (not the
//! progress between delegates) also leave what upstream's DEL and GC read, where they read it:
//! `<cniDir>/<containerId>` in upstream's scratch format (a JSON array of DelegateNetConf) and
//! libcni's result cache `<cniDir>/results/<net>-<cid>-<if>`
//! for each delegate that was added. Our own record is authoritative; the others are only
//! written from it and removed with it.
//!
//! Reading looks at our own record first, then at `<cniDir>/<containerId>`: a record of the
//! previous multus-rs build (which kept its own format there) or upstream's scratch format
//! (behaviour ref §4.11), so DEL works for pods created before a node switched to multus-rs.
//!
//! A file that is neither, or a record naming another container, is moved aside to `<file>.corrupt` and reported as [`Loaded::Corrupt`]:
//! nothing in it can be trusted to tear anything down, and keeping it in place would make every
//! retry of the DEL fail the same way (upstream MC#948 loops). The caller logs it and DEL
//! succeeds; the `.corrupt` file stays for an operator.
mod progress;
mod upstream;
mod valid;

pub use progress::{PROGRESS_DIR, Progress};
pub use valid::Remembered;

use std::collections::HashMap;
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use multus_common::CniArgs;
use multus_common::validate::{self, InvalidName};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Delegate;

/// The record layout this build writes.
pub const SCHEMA_VERSION: u32 = 1;
const CORRUPT_SUFFIX: &str = ".corrupt";
/// Our records' directory under `cniDir`: upstream reads only `<cniDir>/<containerId>` and
/// `<cniDir>/results/`, so it never mistakes one of ours for its own.
pub const OWN_DIR: &str = "multus-rs";
/// libcni's result cache directory under its cache dir (upstream passes `cniDir`).
pub const RESULTS_DIR: &str = "results";

/// A cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid container id: {0}")]
    InvalidId(#[from] InvalidName),
    #[error("creating cache dir {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding cache record: {0}")]
    Encode(serde_json::Error),
    #[error("syncing cache file {path} to disk: {source}")]
    Sync {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing cache file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("renaming {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error("reading cache file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("removing cache file {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("listing cache dir {path}: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl CacheError {
    /// The file system holding the cache is full (or the quota spent): worth a retry later.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            CacheError::Write { source, .. }
            | CacheError::Sync { source, .. }
            | CacheError::CreateDir { source, .. } => {
                matches!(
                    source.raw_os_error(),
                    Some(nix::libc::ENOSPC | nix::libc::EDQUOT)
                )
            }
            _ => false,
        }
    }
}

/// How far a delegate got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    /// Planned, ADD not (known to be) finished: DEL must still tear it down.
    Planned,
    Added,
}

/// One delegate of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub delegate: Delegate,
    pub state: State,
    /// The delegate's ADD result in its own `cniVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// The pod a record belongs to (for logs and GC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// What multus-rs knows about one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub schema_version: u32,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    /// The `cniVersion` of the runtime's config at ADD.
    #[serde(default)]
    pub result_version: String,
    pub delegates: Vec<Entry>,
    /// Read from upstream Go Multus' scratch format (never written).
    #[serde(skip)]
    pub from_upstream: bool,
}

/// The outcome of reading a container's record.
#[derive(Debug)]
pub enum Loaded {
    Missing,
    Found(Record),
    /// Unreadable; moved to the given path.
    Corrupt(PathBuf),
}

/// What earlier writes of one container's record left beside it (the scratch record and the
/// libcni result files, by content), so that the next write skips the unchanged ones without
/// reading them back. One ADD keeps one; it dies with the ADD.
#[derive(Debug, Default)]
pub struct Written {
    scratch: Option<Vec<u8>>,
    results: HashMap<String, Vec<u8>>,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<cniDir>/multus-rs/<containerId>` (our record), refusing ids that could name anything else.
    pub fn path(&self, container_id: &str) -> Result<PathBuf, CacheError> {
        validate::id("container id", container_id)?;
        Ok(self.dir.join(OWN_DIR).join(container_id))
    }

    /// `<cniDir>/<containerId>`: upstream's scratch record (and the previous build's own).
    pub fn upstream_path(&self, container_id: &str) -> Result<PathBuf, CacheError> {
        validate::id("container id", container_id)?;
        Ok(self.dir.join(container_id))
    }

    /// Replaces the container's record atomically, then everything upstream reads beside it.
    pub fn write(&self, record: &Record) -> Result<(), CacheError> {
        self.write_tracked(record, &mut Written::default())
    }

    /// Replaces the container's record atomically, then what upstream reads beside it (D-6):
    /// the scratch record and the libcni result of every added delegate, each only when it
    /// differs from what `written` says an earlier write of this record left.
    pub fn write_tracked(&self, record: &Record, written: &mut Written) -> Result<(), CacheError> {
        self.write_record(record)?;
        self.write_beside(record, written)
    }

    /// What upstream reads beside the record (D-6), each file only when it differs from what
    /// `written` says an earlier write of this record left: the ADD's last write, once every
    /// result is in the journal.
    pub fn write_beside(&self, record: &Record, written: &mut Written) -> Result<(), CacheError> {
        let scratch = upstream::encode(record).map_err(CacheError::Encode)?;
        if written.scratch.as_ref() != Some(&scratch) {
            write_atomic(&self.upstream_path(&record.container_id)?, &scratch)?;
            written.scratch = Some(scratch);
        }
        for (name, bytes) in upstream::libcni_results(record).map_err(CacheError::Encode)? {
            if written.results.get(&name) != Some(&bytes) {
                write_atomic(&self.dir.join(RESULTS_DIR).join(&name), &bytes)?;
                written.results.insert(name, bytes);
            }
        }
        Ok(())
    }

    /// Replaces the container's record alone, then removes its progress journal (the record is
    /// written from memory, read with the journal applied, so it holds everything the journal
    /// said).
    fn write_record(&self, record: &Record) -> Result<(), CacheError> {
        let path = self.path(&record.container_id)?;
        let bytes = serde_json::to_vec(record).map_err(CacheError::Encode)?;
        write_atomic(&path, &bytes)?;
        progress::remove(&self.own_dir(), &record.container_id)
    }

    /// Records that delegates were added ([`Progress::of`] the record in memory): an ADD's
    /// progress, each delegate on disk before the next one starts (`del::teardown` relies on it).
    /// One append to the journal, no rewrite of the record (a rename over an existing file costs
    /// ext4 0.3-0.6 ms, see [`progress`]); what upstream reads beside the record waits for the
    /// ADD's last write ([`Cache::write_beside`]): only a node switched back to Go Multus after a
    /// crash in the middle of an ADD would miss it.
    pub fn append_progress(&self, container_id: &str, line: &Progress) -> Result<(), CacheError> {
        validate::id("container id", container_id)?;
        progress::append(&self.own_dir(), container_id, line)
    }

    fn own_dir(&self) -> PathBuf {
        self.dir.join(OWN_DIR)
    }

    /// Makes the container's record, as last written, durable (file, then its directory, then
    /// `cniDir`, which holds the directory). What upstream reads beside it is not synced: it is
    /// only for a node switched back to Go Multus, which never synced its own either.
    pub fn sync(&self, container_id: &str) -> Result<(), CacheError> {
        let path = self.path(container_id)?;
        let synced = crate::atomic_file::sync(&path)
            .and_then(|()| std::fs::File::open(&self.dir)?.sync_all());
        synced.map_err(|source| CacheError::Sync { path, source })
    }

    /// Reads the container's record. `ifname` and `args` are the DEL request's, needed only to
    /// rebuild delegates from upstream's format.
    pub fn read(
        &self,
        container_id: &str,
        ifname: &str,
        args: &CniArgs,
    ) -> Result<Loaded, CacheError> {
        let own = self.path(container_id)?;
        let own_corrupt = match read_file(&own)? {
            None => None,
            Some(bytes) => match parse_own(&bytes, container_id) {
                Some(mut record) => {
                    progress::apply(&self.own_dir(), &mut record)?;
                    return Ok(Loaded::Found(record));
                }
                None => Some(quarantine(&own, container_id)?),
            },
        };
        // Our record is gone or unreadable: what sits at upstream's place (the previous build's
        // record, Go Multus' own, or the copy we wrote for it) is the next best thing.
        let legacy = self.upstream_path(container_id)?;
        let corrupt = match read_file(&legacy)? {
            None => match own_corrupt {
                None => return Ok(Loaded::Missing),
                Some(aside) => aside,
            },
            Some(bytes) => {
                if let Some(record) = parse_own(&bytes, container_id) {
                    return Ok(Loaded::Found(record));
                }
                if let Some(record) = upstream::parse(&bytes, &self.dir, container_id, ifname, args)
                {
                    return Ok(Loaded::Found(record));
                }
                quarantine(&legacy, container_id)?
            }
        };
        // Nothing readable says what was planned; libcni's result files still say what was
        // added (power loss can truncate a file whose rename was not yet durable).
        match upstream::from_libcni_results(&self.dir, container_id, ifname) {
            Some(record) => {
                tracing::warn!(container.id = %container_id, quarantined = %corrupt.display(),
                    delegates = record.delegates.len(),
                    "record unreadable; tearing down from libcni's result cache");
                Ok(Loaded::Found(record))
            }
            None => Ok(Loaded::Corrupt(corrupt)),
        }
    }

    /// Removes the container's record and everything written beside it; missing files are fine.
    /// Our record goes last, so a crash half-way leaves it for the retried DEL.
    pub fn remove(&self, record: &Record) -> Result<(), CacheError> {
        let id = &record.container_id;
        let own = self.path(id)?;
        progress::remove(&self.own_dir(), id)?;
        for name in upstream::libcni_result_names(record) {
            remove_file(&self.dir.join(RESULTS_DIR).join(name))?;
        }
        remove_file(&self.upstream_path(id)?)?;
        remove_file(&own)
    }

    /// The container ids that have a record, ours or upstream's (temp, quarantined and foreign
    /// files are skipped).
    pub fn list(&self) -> Result<Vec<String>, CacheError> {
        let mut ids = list_ids(&self.dir.join(OWN_DIR))?;
        ids.extend(list_ids(&self.dir)?);
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

/// The record ids among the regular files of `dir` (none when it does not exist).
fn list_ids(dir: &Path) -> Result<Vec<String>, CacheError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CacheError::List {
                path: dir.to_owned(),
                source,
            });
        }
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.ends_with(CORRUPT_SUFFIX) && validate::id("container id", n).is_ok())
        .collect())
}

/// The file's bytes, `None` when it does not exist. Never through a symlink and never blocking
/// on a FIFO: either is read as no bytes, which no reader takes for a record (so it is
/// quarantined by renaming the link itself, and a write replaces the link, not its target).
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, CacheError> {
    use nix::fcntl::OFlag;
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let read_err = |source| CacheError::Read {
        path: path.to_owned(),
        source,
    };
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path);
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => return Ok(Some(Vec::new())),
        Err(source) => return Err(read_err(source)),
    };
    let kind = file.metadata().map_err(read_err)?.file_type();
    if kind.is_fifo() || kind.is_socket() || kind.is_char_device() || kind.is_block_device() {
        return Ok(Some(Vec::new()));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(read_err)?;
    Ok(Some(bytes))
}

/// Moves an unreadable record to `<file>.corrupt` beside it.
fn quarantine(path: &Path, container_id: &str) -> Result<PathBuf, CacheError> {
    let aside = path.with_file_name(format!("{container_id}{CORRUPT_SUFFIX}"));
    std::fs::rename(path, &aside).map_err(|source| CacheError::Rename {
        from: path.to_owned(),
        to: aside.clone(),
        source,
    })?;
    tracing::warn!(container.id = %container_id, moved_to = %aside.display(), "cache record unreadable; moved aside");
    Ok(aside)
}

fn remove_file(path: &Path) -> Result<(), CacheError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CacheError::Remove {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Replaces `path` through `atomic_file` (its temp name starts with a dot, never a valid container
/// id, so `list` never mistakes one), mode 0600, not yet durable; the directory is created 0700.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    // Set only when the directory had to be made and could not be: the error is then that.
    let mut failed_dir = None;
    let written = crate::atomic_file::replace_in_dir(path, bytes, 0o600, |dir| {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .inspect_err(|_| failed_dir = Some(dir.to_owned()))
    });
    written.map_err(|source| match failed_dir {
        Some(dir) => CacheError::CreateDir { path: dir, source },
        None => CacheError::Write {
            path: path.to_owned(),
            source,
        },
    })
}

/// Our record of `container_id`, if `bytes` are one. A record naming another container is not
/// ours to act on (copied or planted by hand): DEL would run that container's delegates here.
fn parse_own(bytes: &[u8], container_id: &str) -> Option<Record> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    if value.get("containerId")?.as_str()? != container_id {
        tracing::warn!(container.id = %container_id, "cache record names another container");
        return None;
    }
    let version = value.get("schemaVersion")?.as_u64()?;
    if version > u64::from(SCHEMA_VERSION) {
        // Written by a newer multus-rs (downgrade): fields are only ever added, so read on.
        tracing::warn!(schema.version = version, "cache record from a newer schema");
    }
    serde_json::from_value(value).ok()
}

#[cfg(test)]
mod tests;
