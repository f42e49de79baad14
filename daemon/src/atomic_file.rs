//! The one way the daemon and `install_multus` replace a file: a temporary file in the same
//! directory, written, renamed over the target, with exactly the given mode. A reader sees the
//! old bytes or the new ones, never half, also after the process crashes.
//!
//! [`write`] also makes the new bytes durable before it returns (the temp file fsynced before
//! the rename, the directory after it): for configs and binaries, written rarely, which must
//! survive a power cut whole. [`replace`] skips both fsyncs and [`sync`] makes a replaced file
//! durable later: for the per-container cache records, rewritten after every delegate, whose
//! durability the ADD waits for once, in parallel with the delegates (see `engine::cache`).
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
    put(path, bytes, mode, Durable::Yes)?;
    // The rename is durable only once the directory entry is.
    sync_dir(path)
}

/// As [`write`], without either fsync: atomic against a crash of the process (the page cache
/// survives it), not yet against a power cut. [`sync`] makes it durable.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    put(path, bytes, mode, Durable::No)
}

/// [`replace`] into a directory that `make_dir` creates when it is missing: made only when the
/// write finds it gone, since it is there for every write but the first (a `mkdir` and a
/// `stat` saved on each of an ADD's writes).
pub fn replace_in_dir(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    make_dir: impl FnOnce(&Path) -> io::Result<()>,
) -> io::Result<()> {
    match replace(path, bytes, mode) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            make_dir(path.parent().unwrap_or(Path::new(".")))?;
            replace(path, bytes, mode)
        }
        other => other,
    }
}

/// Makes what [`replace`] left at `path` durable: the file's data, then its directory entry.
pub fn sync(path: &Path) -> io::Result<()> {
    fs::File::open(path)?.sync_all()?;
    sync_dir(path)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Durable {
    Yes,
    No,
}

fn put(path: &Path, bytes: &[u8], mode: u32, durable: Durable) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = temp_path(dir, path)?;
    let written = write_new(&temp, bytes, mode, durable).and_then(|()| fs::rename(&temp, path));
    if let Err(e) = written {
        // Best effort: the error that matters is the write's.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(())
}

fn sync_dir(path: &Path) -> io::Result<()> {
    fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
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

/// Writes a new file (and syncs it when asked); it is closed on return, so nothing holds it open
/// for writing when it is renamed into place (an exec of it would fail with ETXTBSY).
fn write_new(temp: &Path, bytes: &[u8], mode: u32, durable: Durable) -> io::Result<()> {
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(temp)
    };
    let mut file = match create() {
        // A stale temp file of a killed earlier process with our pid: removed only when met
        // (not before every write: a syscall on each of an ADD's several writes).
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(temp)?;
            create()?
        }
        other => other?,
    };
    file.write_all(bytes)?;
    // The umask may have narrowed the creation mode.
    file.set_permissions(Permissions::from_mode(mode))?;
    match durable {
        Durable::Yes => file.sync_all(),
        Durable::No => Ok(()),
    }
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
    fn replace_then_sync_leaves_the_bytes_and_mode_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        replace(&path, b"first", 0o600).unwrap();
        replace(&path, b"second", 0o600).unwrap();
        sync(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Nothing to make durable is an error the caller sees, not a silent success.
        assert!(sync(&dir.path().join("absent")).is_err());
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("record");
        assert!(write(&path, b"x", 0o600).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn replace_in_dir_makes_the_directory_only_when_it_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("record");
        let mut made = Vec::new();
        replace_in_dir(&path, b"first", 0o600, |d| {
            made.push(d.to_owned());
            std::fs::create_dir_all(d)
        })
        .unwrap();
        assert_eq!(made, vec![dir.path().join("a").join("b")]);
        replace_in_dir(&path, b"second", 0o600, |_| panic!("the directory exists")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        // The maker's own error is what the caller gets, and nothing is written.
        let elsewhere = dir.path().join("c").join("record");
        let refused = replace_in_dir(&elsewhere, b"x", 0o600, |_| {
            Err(io::Error::from(io::ErrorKind::PermissionDenied))
        });
        assert_eq!(refused.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        assert!(!dir.path().join("c").exists());
    }

    #[test]
    fn a_stale_temp_file_of_the_same_name_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join(".record.tmp-1-1");
        std::fs::write(&temp, "left by a killed process").unwrap();
        write_new(&temp, b"new", 0o600, Durable::No).unwrap();
        assert_eq!(std::fs::read(&temp).unwrap(), b"new");
        assert_eq!(mode_of(&temp), 0o600);
    }
}
