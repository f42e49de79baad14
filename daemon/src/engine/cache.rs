//! The per-container record under `cniDir`: everything DEL, CHECK and GC need, so they never ask
//! the cluster. File `<cniDir>/<containerId>` (upstream's location), JSON with `schemaVersion`,
//! written atomically (temp file, fsync, rename, fsync dir; dir 0700, file 0600).
//!
//! Reading also understands upstream Go Multus' scratch format (a JSON array of DelegateNetConf,
//! behaviour ref §4.11), so DEL works for pods created before a node switched to multus-rs.
//!
//! A file that is neither is moved aside to `<file>.corrupt` and reported as [`Loaded::Corrupt`]:
//! nothing in it can be trusted to tear anything down, and keeping it in place would make every
//! retry of the DEL fail the same way (upstream MC#948 loops). The caller logs it and DEL
//! succeeds; the `.corrupt` file stays for an operator.
mod upstream;

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use multus_common::CniArgs;
use multus_common::validate::{self, InvalidName};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Delegate;

/// The record layout this build writes.
pub const SCHEMA_VERSION: u32 = 1;
const CORRUPT_SUFFIX: &str = ".corrupt";

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
    #[error("syncing cache dir {path}: {source}")]
    SyncDir {
        path: PathBuf,
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

    /// `<cniDir>/<containerId>`, refusing ids that could name anything else.
    pub fn path(&self, container_id: &str) -> Result<PathBuf, CacheError> {
        validate::id("container id", container_id)?;
        Ok(self.dir.join(container_id))
    }

    /// Replaces the container's record atomically.
    pub fn write(&self, record: &Record) -> Result<(), CacheError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = self.path(&record.container_id)?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| CacheError::CreateDir {
                path: self.dir.clone(),
                source,
            })?;
        let bytes = serde_json::to_vec(record).map_err(CacheError::Encode)?;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        // A leading '.' is not a valid container id, so list() never mistakes a temp file.
        let tmp = self.dir.join(format!(
            ".{}.tmp-{}-{seq}",
            record.container_id,
            std::process::id()
        ));
        let written = write_synced(&tmp, &bytes).and_then(|()| {
            std::fs::rename(&tmp, &path).map_err(|source| CacheError::Rename {
                from: tmp.clone(),
                to: path.clone(),
                source,
            })
        });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| CacheError::SyncDir {
                path: self.dir.clone(),
                source,
            })
    }

    /// Reads the container's record. `ifname` and `args` are the DEL request's, needed only to
    /// rebuild delegates from upstream's format.
    pub fn read(
        &self,
        container_id: &str,
        ifname: &str,
        args: &CniArgs,
    ) -> Result<Loaded, CacheError> {
        let path = self.path(container_id)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
            Err(source) => return Err(CacheError::Read { path, source }),
        };
        if let Some(record) = parse_own(&bytes) {
            return Ok(Loaded::Found(record));
        }
        if let Some(record) = upstream::parse(&bytes, &self.dir, container_id, ifname, args) {
            return Ok(Loaded::Found(record));
        }
        let aside = path.with_file_name(format!("{container_id}{CORRUPT_SUFFIX}"));
        std::fs::rename(&path, &aside).map_err(|source| CacheError::Rename {
            from: path.clone(),
            to: aside.clone(),
            source,
        })?;
        tracing::warn!(container.id = %container_id, moved_to = %aside.display(), "cache record unreadable; moved aside");
        Ok(Loaded::Corrupt(aside))
    }

    /// Removes the container's record; a missing one is fine.
    pub fn remove(&self, container_id: &str) -> Result<(), CacheError> {
        let path = self.path(container_id)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CacheError::Remove { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// The container ids that have a record (temp, quarantined and foreign files are skipped).
    pub fn list(&self) -> Result<Vec<String>, CacheError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CacheError::List {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.ends_with(CORRUPT_SUFFIX) && validate::id("container id", n).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let err = |source| CacheError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

fn parse_own(bytes: &[u8]) -> Option<Record> {
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let version = value.get("schemaVersion")?.as_u64()?;
    if version > u64::from(SCHEMA_VERSION) {
        // Written by a newer multus-rs (downgrade): fields are only ever added, so read on.
        tracing::warn!(schema.version = version, "cache record from a newer schema");
    }
    serde_json::from_value(value).ok()
}

#[cfg(test)]
mod tests;
