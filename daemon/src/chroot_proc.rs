//! Startup check for `chrootDir`: a delegate run chrooted sees the chroot's `/proc`, and the
//! reference plugins open their own network namespace through it
//! (`/proc/<getpid()>/task/<gettid()>/ns/net`). When that `/proc` belongs to another PID
//! namespace (the host's, mounted at `/hostroot`, while the daemon container has its own PID
//! namespace) the plugin's pid is not there and every ADD fails with "Failed to open current
//! namespace". Checked once at start, so the daemon refuses to run instead of failing every pod.
use std::path::{Path, PathBuf};

/// Why the chroot's `/proc` cannot serve delegates.
#[derive(Debug, thiserror::Error)]
pub enum ChrootProcError {
    #[error(
        "chrootDir {root}: cannot read {link} ({source}): delegates run in the chroot open their \
         own /proc/<pid>/ns there; mount the host's / (with its /proc) at chrootDir and run the \
         daemon in the host PID namespace (Kubernetes: hostPID: true), or unset chrootDir"
    )]
    Unreadable {
        root: PathBuf,
        link: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "chrootDir {root}: {link} points to {target:?}, not a pid: the chroot's /proc is not a \
         procfs; mount the host's / (with its /proc) at chrootDir, or unset chrootDir"
    )]
    NotProcfs {
        root: PathBuf,
        link: PathBuf,
        target: String,
    },
    #[error(
        "chrootDir {root}: {link} is pid {seen} but this daemon is pid {own}: the chroot's /proc \
         belongs to another PID namespace (the host's), so a delegate cannot find its own \
         /proc/<pid>/ns/net and every ADD would fail with \"Failed to open current namespace\"; \
         run the daemon in the host PID namespace (Kubernetes: hostPID: true, as the chart and \
         upstream's thick DaemonSet do), or unset chrootDir"
    )]
    OtherPidNamespace {
        root: PathBuf,
        link: PathBuf,
        seen: u32,
        own: u32,
    },
}

/// Checks that `<root>/proc/self` is this process, i.e. the chroot's `/proc` is a procfs of the
/// daemon's own PID namespace (what a delegate's `getpid()` is relative to).
pub fn check(root: &Path) -> Result<(), ChrootProcError> {
    let link = root.join("proc/self");
    // readlink, not stat: /proc/self is the pid as that procfs's namespace numbers this process
    // (ENOENT when the process is not visible in it at all).
    let target = std::fs::read_link(&link).map_err(|source| ChrootProcError::Unreadable {
        root: root.to_owned(),
        link: link.clone(),
        source,
    })?;
    let target = target.to_string_lossy().into_owned();
    let seen: u32 = target.parse().map_err(|_| ChrootProcError::NotProcfs {
        root: root.to_owned(),
        link: link.clone(),
        target: target.clone(),
    })?;
    let own = std::process::id();
    if seen != own {
        return Err(ChrootProcError::OtherPidNamespace {
            root: root.to_owned(),
            link,
            seen,
            own,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A fake chroot whose `proc/self` links to `target`.
    fn root_with_self(target: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("proc")).unwrap();
        std::os::unix::fs::symlink(target, dir.path().join("proc/self")).unwrap();
        dir
    }

    #[test]
    fn the_real_root_shows_this_process() {
        // The test runs in the PID namespace its /proc belongs to (as the daemon must).
        check(Path::new("/")).unwrap();
    }

    #[test]
    fn another_pid_names_the_fix() {
        let own = std::process::id();
        let root = root_with_self(&(own + 1).to_string());
        let err = check(root.path()).unwrap_err();
        assert!(
            matches!(err, ChrootProcError::OtherPidNamespace { seen, .. } if seen == own + 1),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("hostPID: true"), "{text}");
        assert!(
            text.contains(&format!("this daemon is pid {own}")),
            "{text}"
        );
    }

    #[test]
    fn no_proc_or_no_procfs_is_an_error() {
        let empty = tempfile::tempdir().unwrap();
        let err = check(empty.path()).unwrap_err();
        assert!(matches!(err, ChrootProcError::Unreadable { .. }), "{err}");
        assert!(err.to_string().contains("hostPID: true"), "{err}");
        let root = root_with_self("not-a-pid");
        let err = check(root.path()).unwrap_err();
        assert!(matches!(err, ChrootProcError::NotProcfs { .. }), "{err}");
    }

    #[test]
    fn own_pid_passes() {
        let root = root_with_self(&std::process::id().to_string());
        check(root.path()).unwrap();
    }
}
