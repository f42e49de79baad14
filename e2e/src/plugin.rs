//! Wrapper plugins for the fault and load tests: bash scripts in a test-owned bin dir, each named
//! like a CNI plugin, that run a real reference plugin and add one fault (block mid-ADD, hang
//! with a forked grandchild, fail at random with a seeded probability).
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempfile::TempDir;

/// What a script answers to VERSION (the daemon asks before choosing a config version).
const VERSION_REPLY: &str =
    r#"{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}"#;

/// A directory of wrapper plugins; removed on drop.
#[derive(Debug)]
pub struct PluginDir {
    dir: TempDir,
}

impl PluginDir {
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("multus-e2e-bin-")
            .tempdir()?;
        // The daemon runs as root, but the scripts must stay readable through the chmod.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A daemon `binDir`: these wrappers first, then the reference plugins.
    pub fn bin_dir(&self) -> String {
        format!("{}:{}", self.path().display(), crate::CNI_BIN_DIR)
    }

    /// A file in this directory's scratch area (markers, fifos, pid files).
    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(format!("_{name}"))
    }

    fn write(&self, name: &str, body: &str) -> Result<PathBuf> {
        let path = self.path().join(name);
        let script = format!(
            "#!/bin/bash\nif [ \"$CNI_COMMAND\" = VERSION ]; then echo '{VERSION_REPLY}'; exit 0; fi\n{body}"
        );
        fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
        Ok(path)
    }

    /// `name` runs the reference plugin `real` for every verb; an ADD runs it (so the interface
    /// and the lease exist), writes the container id to [`Blocking::reached`], then blocks until
    /// a line is written to [`Blocking::fifo`], and only then prints the result.
    pub fn blocking(&self, name: &str, real: &str) -> Result<Blocking> {
        let fifo = self.file(&format!("{name}.fifo"));
        let reached = self.file(&format!("{name}.reached"));
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .context("mkfifo")?;
        let body = format!(
            "real={bin}/{real}\nif [ \"$CNI_COMMAND\" = ADD ]; then\n  out=$(\"$real\"); rc=$?\n  echo \"$CNI_CONTAINERID\" > {reached}\n  read -r _ < {fifo}\n  printf '%s' \"$out\"; exit $rc\nfi\nexec \"$real\"\n",
            bin = crate::CNI_BIN_DIR,
            reached = reached.display(),
            fifo = fifo.display(),
        );
        self.write(name, &body)?;
        Ok(Blocking { fifo, reached })
    }

    /// `name`'s ADD forks a grandchild (`sleep`, holding the plugin's stdout open) whose pid it
    /// writes to the returned file, then hangs itself; every other verb succeeds at once.
    pub fn hanging_with_grandchild(&self, name: &str) -> Result<PathBuf> {
        let pid_file = self.file(&format!("{name}.grandchild"));
        let body = format!(
            "if [ \"$CNI_COMMAND\" = ADD ]; then\n  sleep 3600 &\n  echo $! > {pid}.tmp && mv {pid}.tmp {pid}\n  sleep 3600\nfi\nexit 0\n",
            pid = pid_file.display(),
        );
        self.write(name, &body)?;
        Ok(pid_file)
    }

    /// `name` runs the reference plugin `real`; an ADD fails with probability `percent`/100,
    /// decided by `seed` and the container id (so a run is repeatable): half of the failures
    /// before `real` ran, half after it attached (what a rollback must undo). Every failure
    /// prints a CNI error object (code 11) and appends a line to [`PluginDir::file`]`("<name>.failures")`.
    pub fn flaky(&self, name: &str, real: &str, seed: u32, percent: u32) -> Result<()> {
        let log = self.file(&format!("{name}.failures"));
        let body = format!(
            "real={bin}/{real}\n\
             [ \"$CNI_COMMAND\" = ADD ] || exec \"$real\"\n\
             h=$(printf '%s' \"{seed}-$CNI_CONTAINERID-$CNI_IFNAME\" | cksum | cut -d' ' -f1)\n\
             roll=$(( h % 100 )); when=$(( (h / 100) % 2 ))\n\
             fail() {{ echo \"$CNI_CONTAINERID $1\" >> {log}; printf '{{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"injected failure (%s)\"}}' \"$1\"; exit 1; }}\n\
             if [ $roll -lt {percent} ] && [ $when = 0 ]; then fail before; fi\n\
             out=$(\"$real\"); rc=$?\n\
             if [ $rc = 0 ] && [ $roll -lt {percent} ]; then fail after; fi\n\
             printf '%s' \"$out\"; exit $rc\n",
            bin = crate::CNI_BIN_DIR,
            log = log.display(),
        );
        self.write(name, &body)?;
        Ok(())
    }
}

/// The handles of a [`PluginDir::blocking`] plugin.
#[derive(Debug)]
pub struct Blocking {
    pub fifo: PathBuf,
    pub reached: PathBuf,
}

impl Blocking {
    /// Lets the blocked ADD go on; `false` when no plugin is waiting (never blocks).
    pub fn release(&self) -> Result<bool> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let opened = fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&self.fifo);
        match opened {
            Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => Ok(false),
            Err(e) => Err(e).context("opening the fifo"),
            Ok(mut f) => {
                f.write_all(b"go\n").context("writing the fifo")?;
                Ok(true)
            }
        }
    }
}

/// Whether process `pid` is gone or a zombie (dead, waiting for a reaper that may never come:
/// a container's pid 1 may not reap orphans).
pub fn is_dead(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "<pid> (<comm>) <state> ...": comm may hold spaces, the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}
