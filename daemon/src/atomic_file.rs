//! The one way the daemon and `install_multus` replace a file: a temporary file in the same
//! directory, written, fsynced, renamed over the target, the directory fsynced, with exactly the
//! given mode. A reader sees the old bytes or the new ones, never half, also after a crash.
use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `bytes`, mode `mode` whatever the umask. The temporary file is
/// dot-named (`.<name>.tmp-<pid>-<n>`, never a container id or a CNI config name) and removed
/// when anything fails.
///
/// Not the `atomic-write-file` crate: it renames while its descriptor is still open for
/// writing, so an exec of a just-installed shim in that window fails with ETXTBSY.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = temp_path(dir, path)?;
    let written = write_synced(&temp, bytes, mode).and_then(|()| fs::rename(&temp, path));
    if let Err(e) = written {
        // Best effort: the error that matters is the write's.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // The rename is durable only once the directory entry is.
    fs::File::open(dir)?.sync_all()
}

fn temp_path(dir: &Path, path: &Path) -> io::Result<PathBuf> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(".tmp-{}-{seq}", std::process::id()));
    Ok(dir.join(temp))
}

/// Writes and syncs a new file; it is closed on return, so nothing holds it open for writing
/// when it is renamed into place (an exec of it would fail with ETXTBSY).
fn write_synced(temp: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    // A stale temp file of a killed earlier process with our pid would make create_new fail.
    let _ = fs::remove_file(temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(temp)?;
    file.write_all(bytes)?;
    // The umask may have narrowed the creation mode.
    file.set_permissions(Permissions::from_mode(mode))?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn replaces_with_the_exact_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        write(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode_of(&path), 0o600);
        // A mode the usual umask (022) would narrow.
        write(&path, b"newer", 0o775).unwrap();
        assert_eq!(mode_of(&path), 0o775);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("record")]);
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("record");
        assert!(write(&path, b"x", 0o600).is_err());
        assert!(!path.exists());
    }
}
