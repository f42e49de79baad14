//! The runtime's last `cni.dev/valid-attachments` (CNI GC), remembered beside our records as
//! `<cniDir>/multus-rs/.gc-valid-containers.json`, so a reconcile (also `--reconcile-once` in
//! another process, or after a restart) can tell a container the runtime still knows from one it
//! forgot. The name starts with a dot: never a container id, so `Cache::list` skips it.
use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Cache, CacheError, OWN_DIR, read_file, remove_file, write_atomic};

const FILE: &str = ".gc-valid-containers.json";
/// More ids than any node runs: a list past it is not remembered (and an older one is
/// dropped), so reading it back stays bounded.
pub const MAX_REMEMBERED: usize = 100_000;

/// The container ids of the runtime's last valid list and when it was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub received: SystemTime,
    pub ids: HashSet<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnDisk {
    /// Seconds since the Unix epoch.
    received_at: u64,
    container_ids: Vec<String>,
}

impl Cache {
    fn valid_path(&self) -> std::path::PathBuf {
        self.dir.join(OWN_DIR).join(FILE)
    }

    /// Remembers the runtime's valid containers (written atomically). A list longer than
    /// [`MAX_REMEMBERED`] is not kept, and the previous one is removed.
    pub fn remember_valid<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Result<(), CacheError> {
        let mut ids: Vec<String> = ids.map(str::to_owned).collect();
        ids.sort();
        ids.dedup();
        if ids.len() > MAX_REMEMBERED {
            tracing::warn!(
                containers = ids.len(),
                max = MAX_REMEMBERED,
                "GC valid list too long to remember"
            );
            return remove_file(&self.valid_path());
        }
        let received_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let bytes = serde_json::to_vec(&OnDisk {
            received_at,
            container_ids: ids,
        })
        .map_err(CacheError::Encode)?;
        write_atomic(&self.valid_path(), &bytes)
    }

    /// The remembered list; `None` when the runtime never sent one (or it is unreadable or too
    /// long, which the caller treats the same: the runtime's view is unknown).
    pub fn remembered_valid(&self) -> Result<Option<Remembered>, CacheError> {
        let Some(bytes) = read_file(&self.valid_path())? else {
            return Ok(None);
        };
        let Ok(disk) = serde_json::from_slice::<OnDisk>(&bytes) else {
            tracing::warn!(path = %self.valid_path().display(), "remembered GC valid list unreadable; ignored");
            return Ok(None);
        };
        if disk.container_ids.len() > MAX_REMEMBERED {
            return Ok(None);
        }
        Ok(Some(Remembered {
            received: UNIX_EPOCH + Duration::from_secs(disk.received_at),
            ids: disk.container_ids.into_iter().collect(),
        }))
    }
}
