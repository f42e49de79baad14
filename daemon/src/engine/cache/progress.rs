//! An ADD's progress: `<cniDir>/multus-rs/progress/<containerId>`, one JSON line appended per
//! delegate that succeeded (and per result the default routes rewrote), read over the record by
//! [`super::Cache::read`]: the record says what was planned, the journal what was done.
//!
//! Why not rewrite the record after each delegate: a rename over an existing file on ext4
//! (`auto_da_alloc`) allocates and starts writing the new file's blocks inside the rename, 0.3 to
//! 1.4 ms on the machines measured, once per delegate; removing that file later costs DEL about
//! 0.6 ms more. An append is one small write (about 10 us). It is as durable as those rewrites
//! were: neither is fsynced, the planned record is (see `engine::cache`).
//!
//! A later line for the same delegate wins (a result the default routes rewrote). Every full
//! write of the record removes the journal after its rename: the record is written from memory,
//! which holds every line appended. A crash between the two leaves lines that say what the
//! record already says; applying them again changes nothing.
use std::borrow::Cow;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CacheError, Record, State, read_file, remove_file};

/// The journals' directory under our records' directory (a directory, so nothing that lists
/// records or reconciles them mistakes a journal for a record).
pub const PROGRESS_DIR: &str = "progress";

/// One delegate that succeeded: its place in the record, what it was (so a line can never be
/// applied to another record's delegate) and its result.
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    index: usize,
    #[serde(borrow)]
    network: Cow<'a, str>,
    #[serde(borrow)]
    ifname: Cow<'a, str>,
    result: Value,
}

pub fn path(own_dir: &Path, container_id: &str) -> PathBuf {
    own_dir.join(PROGRESS_DIR).join(container_id)
}

/// Journal lines, each that a record's delegate was added, with its result.
#[derive(Debug)]
pub struct Progress(Vec<u8>);

impl Progress {
    /// The lines for the record's delegates at `indexes` (their results as they are now).
    pub fn of(record: &Record, indexes: &[usize]) -> Result<Self, CacheError> {
        let mut bytes = Vec::new();
        for &index in indexes {
            let entry = record.delegates.get(index);
            let line = Line {
                index,
                network: Cow::Borrowed(entry.map_or("", |e| &e.delegate.name)),
                ifname: Cow::Borrowed(entry.map_or("", |e| &e.delegate.ifname)),
                result: entry.and_then(|e| e.result.clone()).unwrap_or(Value::Null),
            };
            serde_json::to_writer(&mut bytes, &line).map_err(CacheError::Encode)?;
            bytes.push(b'\n');
        }
        Ok(Self(bytes))
    }
}

/// Appends the lines to the container's journal as one write (the directory created 0700, the
/// file 0600, never through a symlink). The directory is created only when the open finds it
/// missing: once per node, not once per delegate.
pub fn append(own_dir: &Path, container_id: &str, line: &Progress) -> Result<(), CacheError> {
    let dir = own_dir.join(PROGRESS_DIR);
    let path = dir.join(container_id);
    let write_err = |source| CacheError::Write {
        path: path.clone(),
        source,
    };
    let open = || {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
            .open(&path)
    };
    let mut file = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|source| CacheError::CreateDir {
                    path: dir.clone(),
                    source,
                })?;
            open()
        }
        opened => opened,
    }
    .map_err(write_err)?;
    file.write_all(&line.0).map_err(write_err)
}

/// Applies the journal of `record`'s container, if any, to it. A line that does not parse or does
/// not match its delegate ends the reading: a crash can tear only the last one.
pub fn apply(own_dir: &Path, record: &mut Record) -> Result<(), CacheError> {
    let Some(bytes) = read_file(&path(own_dir, &record.container_id))? else {
        return Ok(());
    };
    // Only complete lines: the bytes after the last newline are a torn append.
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let Some(line) = line.strip_suffix(b"\n") else {
            break;
        };
        let Ok(line) = serde_json::from_slice::<Line<'_>>(line) else {
            break;
        };
        let Some(entry) = record.delegates.get_mut(line.index) else {
            break;
        };
        if entry.delegate.name != line.network || entry.delegate.ifname != line.ifname {
            break;
        }
        entry.state = State::Added;
        entry.result = Some(line.result).filter(|r| !r.is_null());
    }
    Ok(())
}

/// Removes the container's journal; a missing one is fine.
pub fn remove(own_dir: &Path, container_id: &str) -> Result<(), CacheError> {
    remove_file(&path(own_dir, container_id))
}
