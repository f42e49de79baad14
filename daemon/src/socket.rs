//! The daemon's unix socket: `<socketDir>` 0700, `multus.sock` 0600, a stale socket replaced, a
//! live one never stolen, and the file removed again when the daemon stops.
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
        },
    ))
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
}
