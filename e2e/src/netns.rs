//! Network namespaces and links owned by a test, removed when the guard drops.
use anyhow::Result;

use crate::ip::ip;

/// A named network namespace (`/var/run/netns/<name>`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a fresh namespace with a unique name and its loopback up.
    pub fn new(prefix: &str) -> Result<Self> {
        let name = crate::unique(prefix);
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path a runtime passes as CNI_NETNS.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// Runs `f` on a thread inside this namespace (a network namespace is per thread: the caller
    /// stays where it is, and the sockets `f` opens stay in here).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(|| -> Result<T> {
                let fd = std::fs::File::open(&path)?;
                nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the thread in {path} panicked"))?
        })
    }

    /// Creates a veth pair inside this namespace, both ends up; returns their names.
    pub fn veth_pair(&self, prefix: &str) -> Result<(String, String)> {
        let (a, b) = (
            crate::unique(&format!("{prefix}a")),
            crate::unique(&format!("{prefix}b")),
        );
        ip(&[
            "-n", &self.name, "link", "add", &a, "type", "veth", "peer", "name", &b,
        ])?;
        ip(&["-n", &self.name, "link", "set", &a, "up"])?;
        ip(&["-n", &self.name, "link", "set", &b, "up"])?;
        Ok((a, b))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also deletes every link still inside it (veths, bridges).
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("cleanup: {e}");
        }
    }
}
