//! Whether a plugin path names a file *as a process chrooted in `root` sees it*: symlinks are
//! followed with absolute targets (and `..`) kept inside `root`, component by component, as the
//! kernel resolves them after chroot(2). Joining `root` and the path and asking the daemon's
//! filesystem is not the same: a plugin that is a symlink to `/usr/lib/cni/bridge`, or a binDir
//! that is one (`/opt/cni/bin -> /usr/lib/cni`, common on Debian nodes), would resolve in the
//! daemon's container, where the target is missing, and the plugin would be reported absent
//! although the chrooted exec finds it.
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up, as the kernel's ELOOP limit.
const MAX_LINKS: usize = 40;

/// The metadata of what `path` (absolute, as the chrooted plugin sees it) names inside `root`,
/// symlinks followed; `None` when nothing is there or the links loop.
pub(super) fn metadata_in(root: &Path, path: &Path) -> Option<std::fs::Metadata> {
    resolve(root, path).and_then(|p| std::fs::metadata(root.join(p)).ok())
}

/// `path` (absolute, as the chrooted plugin sees it) is a regular file inside `root`.
#[cfg(test)]
fn is_file_in(root: &Path, path: &Path) -> bool {
    metadata_in(root, path).is_some_and(|m| m.is_file())
}

/// One step of a path still to resolve.
enum Part {
    Root,
    Parent,
    Name(OsString),
}

/// Pushes `path`'s parts so that popping yields them in order.
fn push(pending: &mut Vec<Part>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::RootDir | Component::Prefix(_) => pending.push(Part::Root),
            Component::ParentDir => pending.push(Part::Parent),
            Component::Normal(n) => pending.push(Part::Name(n.to_owned())),
            Component::CurDir => {}
        }
    }
}

/// `path` with every symlink resolved inside `root`, relative to `root`; `None` on a loop.
fn resolve(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut pending = Vec::new();
    push(&mut pending, path);
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part {
            Part::Root => resolved = PathBuf::new(),
            // `..` never leaves the root, as in a chroot.
            Part::Parent => {
                resolved.pop();
            }
            Part::Name(name) => {
                let candidate = resolved.join(&name);
                match std::fs::read_link(root.join(&candidate)) {
                    Ok(target) => {
                        links += 1;
                        if links > MAX_LINKS {
                            return None;
                        }
                        // A relative target continues from the link's directory (`resolved`),
                        // an absolute one from the root.
                        push(&mut pending, &target);
                    }
                    Err(_) => resolved = candidate,
                }
            }
        }
    }
    Some(resolved)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root_not_in_the_daemons_filesystem() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/lib/cni")).unwrap();
        std::fs::write(r.join("usr/lib/cni/bridge"), b"").unwrap();
        std::fs::create_dir_all(r.join("opt/cni/bin")).unwrap();
        // An absolute link: outside the root it names a path this machine may not have.
        symlink("/usr/lib/cni/bridge", r.join("opt/cni/bin/bridge")).unwrap();
        assert!(is_file_in(r, Path::new("/opt/cni/bin/bridge")));
        // A binDir that is itself a link (absolute), and a relative link with `..`.
        symlink("/usr/lib/cni", r.join("opt/linked")).unwrap();
        assert!(is_file_in(r, Path::new("/opt/linked/bridge")));
        symlink("../../usr/lib/cni/bridge", r.join("opt/cni/rel")).unwrap();
        assert!(is_file_in(r, Path::new("/opt/cni/rel")));
        // `..` past the root stays at the root.
        symlink("/../../../usr/lib/cni/bridge", r.join("opt/up")).unwrap();
        assert!(is_file_in(r, Path::new("/opt/up")));
        // Missing, a directory, and a loop are not plugins.
        assert!(!is_file_in(r, Path::new("/opt/cni/bin/ptp")));
        assert!(!is_file_in(r, Path::new("/usr/lib/cni")));
        symlink("/opt/loop", r.join("opt/loop")).unwrap();
        assert!(!is_file_in(r, Path::new("/opt/loop")));
    }
}
