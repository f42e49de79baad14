//! The daemon's unix socket: `<socketDir>` 0700, `multus.sock` 0600, a stale socket replaced, a
//! live one never stolen, and the file removed again when the daemon stops.
//!
//! Two daemons starting at once must not both decide the old socket is stale (the second would
//! unlink the first one's fresh socket and leave it serving nobody): the socket is only touched
//! under an exclusive `flock` on `multus.sock.lock` beside it, held for the daemon's life and
//! released by the kernel when it dies, however it dies. Neither the directory, the lock file nor
//! the socket path is followed when it is a symlink.
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};

use tokio::net::UnixListener;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("creating socket directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("securing socket directory {path} (owner root, mode 0700): {source}")]
    SecureDir { path: PathBuf, source: io::Error },
    #[error("{path} exists and is not a socket: refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("another multus-daemon is serving on {path}: refusing to take its socket")]
    InUse { path: PathBuf },
    #[error("{path} is a symlink: refusing to follow it (socketDir must be a real directory)")]
    SymlinkDir { path: PathBuf },
    #[error("opening the socket lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("probing existing socket {path}: {source}")]
    Probe { path: PathBuf, source: io::Error },
    #[error("removing stale socket {path}: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("binding {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("setting mode 0600 on {path}: {source}")]
    Chmod { path: PathBuf, source: io::Error },
}

/// A bound socket; dropping it removes the socket file if it is still the one we bound.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    identity: (u64, u64),
    /// Held until the socket file is removed (fields drop in order).
    _lock: Flock<fs::File>,
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Only our own inode: a newer daemon may already have replaced a socket we thought stale.
        let ours =
            fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours && let Err(e) = fs::remove_file(&self.path) {
            tracing::warn!(socket = %self.path.display(), error = %e, "could not remove the socket file");
        }
    }
}

/// Creates `dir` if needed and makes it root-owned (our uid) with mode 0700, fixing an existing one.
pub fn prepare_dir(dir: &Path) -> Result<(), SocketError> {
    // chown and chmod below follow symlinks: a socketDir pointing elsewhere would make the daemon
    // lock down whatever it points at.
    if fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(SocketError::SymlinkDir {
            path: dir.to_owned(),
        });
    }
    fs::create_dir_all(dir).map_err(|source| SocketError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let secure = |source: io::Error| SocketError::SecureDir {
        path: dir.to_owned(),
        source,
    };
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    nix::unistd::chown(dir, Some(uid), Some(gid)).map_err(|e| secure(e.into()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(secure)
}

/// Removes `path` if it is a socket nobody answers on; refuses when a daemon is answering.
fn clear_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SocketError::Probe {
                path: path.to_owned(),
                source,
            });
        }
        Ok(meta) => meta,
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_owned(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "replacing stale socket");
            fs::remove_file(path).map_err(|source| SocketError::RemoveStale {
                path: path.to_owned(),
                source,
            })
        }
        Err(source) => Err(SocketError::Probe {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Prepares the directory and binds `path` (mode 0600). Must run inside a tokio runtime.
pub fn bind(path: &Path) -> Result<(UnixListener, SocketFile), SocketError> {
    if let Some(dir) = path.parent() {
        prepare_dir(dir)?;
    }
    let lock = lock(path)?;
    clear_stale(path)?;
    let listener = UnixListener::bind(path).map_err(|source| SocketError::Bind {
        path: path.to_owned(),
        source,
    })?;
    let chmod = |source| SocketError::Chmod {
        path: path.to_owned(),
        source,
    };
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(chmod)?;
    let meta = fs::symlink_metadata(path).map_err(chmod)?;
    Ok((
        listener,
        SocketFile {
            path: path.to_owned(),
            identity: (meta.dev(), meta.ino()),
            _lock: lock,
        },
    ))
}

/// Takes the exclusive lock `<path>.lock` (created 0600, never through a symlink) without
/// waiting: held by another process means another daemon owns the socket.
fn lock(path: &Path) -> Result<Flock<fs::File>, SocketError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
        .open(&lock_path)
        .map_err(|source| SocketError::Lock {
            path: lock_path.clone(),
            source,
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        nix::errno::Errno::EWOULDBLOCK => SocketError::InUse {
            path: path.to_owned(),
        },
        other => SocketError::Lock {
            path: lock_path,
            source: other.into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn modes_stale_replacement_and_removal() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("multus.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());

        let (_listener, file) = bind(&path).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        drop(file);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn live_socket_and_non_sockets_are_never_taken() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("multus.sock");
        let (_listener, _file) = bind(&path).unwrap();
        let err = bind(&path).unwrap_err();
        assert!(matches!(err, SocketError::InUse { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert!(path.exists());

        let plain = tmp.path().join("plain");
        fs::write(&plain, "x").unwrap();
        assert!(matches!(bind(&plain), Err(SocketError::NotASocket { .. })));
        assert!(plain.exists());
    }

    #[tokio::test]
    async fn a_held_lock_refuses_even_a_stale_looking_socket_and_death_releases_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("multus.sock");
        let (listener, file) = bind(&path).unwrap();
        // The first daemon's listener is gone but it still runs (its lock held): the socket
        // looks stale, and must still not be taken.
        drop(listener);
        let err = bind(&path).unwrap_err();
        assert!(matches!(err, SocketError::InUse { .. }), "{err}");
        assert!(path.exists());
        drop(file);
        assert!(bind(&path).is_ok());
    }

    #[tokio::test]
    async fn symlinked_dir_lock_and_socket_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
        let link = tmp.path().join("run");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = bind(&link.join("multus.sock")).unwrap_err();
        assert!(matches!(err, SocketError::SymlinkDir { .. }), "{err}");
        assert_eq!(mode(&target), 0o755, "the symlink's target was changed");

        let dir = tmp.path().join("sock");
        fs::create_dir(&dir).unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("multus.sock.lock")).unwrap();
        assert!(matches!(
            bind(&dir.join("multus.sock")),
            Err(SocketError::Lock { .. })
        ));
        fs::remove_file(dir.join("multus.sock.lock")).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("multus.sock")).unwrap();
        assert!(matches!(
            bind(&dir.join("multus.sock")),
            Err(SocketError::NotASocket { .. })
        ));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
    }
}
