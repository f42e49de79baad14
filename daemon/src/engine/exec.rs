//! Runs ONE delegate plugin exactly as a container runtime does (CNI spec 1.1, "Plugin
//! execution"): the daemon's environment as libcni passes it (minus a deny list, `PATH` completed;
//! see `environment`) with the CNI_* parameters, config on stdin, result or error JSON on stdout,
//! bounded by `delegateTimeoutSeconds`.
//!
//! `chrootDir`: the child chroots itself in a `pre_exec` hook (chroot(2) + chdir("/"), both
//! async-signal-safe) rather than exec'ing `/usr/sbin/chroot`, because the daemon image is
//! distroless and has no chroot binary, and because it keeps one code path for exit-status and
//! error decoding. The plugin is looked up inside the chroot (upstream looks it up in the daemon's
//! filesystem and then execs it in the chroot, §9.10), so a plugin only on the host is found.
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multus_common::constants::env;
use multus_common::{CniError, Command, code};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::Instrument;

use super::admission::{Admission, AdmissionError};
use super::error::CniCode;
use crate::config::Config;
use crate::metrics::Metrics;

mod chroot_path;
mod environment;

/// The most a plugin may print on stdout: a CNI result is a few KiB; a plugin writing more is
/// broken, and is stopped there rather than growing the daemon's memory.
pub const MAX_STDOUT_BYTES: usize = 1 << 20;
/// How much of a plugin's stderr is kept for the error message (the rest is read and dropped).
pub const MAX_STDERR_BYTES: usize = 4 << 10;
/// How long stdout and stderr may stay open once the plugin exited: longer means a process it
/// started holds them (libcni would wait for that process until its deadline).
const PIPE_GRACE: Duration = Duration::from_secs(1);

/// The CNI parameters of one exec (everything but the config, which goes on stdin).
#[derive(Debug, Clone, Copy)]
pub struct ExecEnv<'a> {
    pub command: Command,
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    pub cni_args: &'a str,
}

/// A plugin could not be run or reported a failure. [`CniCode`]: the plugin's own code when it
/// gave one; 7 for a plugin that cannot be found; 11 when no slot was free; else 999.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("plugin type {0:?} must be a file name, not a path")]
    InvalidType(String),
    #[error("failed to find plugin {plugin:?} in path {bin_dir:?}")]
    NotFound { plugin: String, bin_dir: String },
    #[error("plugin {plugin:?} at {path} is not executable")]
    NotExecutable { plugin: String, path: PathBuf },
    #[error(
        "plugin {plugin:?} printed more than {MAX_STDOUT_BYTES} bytes on stdout and was killed"
    )]
    OutputTooLarge { plugin: String },
    #[error(
        "plugin {plugin:?} exited ({status}) but its stdout or stderr stayed open: a process it started still holds them"
    )]
    PipesHeld { plugin: String, status: ExitStatus },
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error("failed to start plugin {plugin:?}: {source}")]
    Spawn {
        plugin: String,
        source: std::io::Error,
    },
    #[error("I/O with plugin {plugin:?}: {source}")]
    Io {
        plugin: String,
        source: std::io::Error,
    },
    #[error("plugin {plugin:?} did not finish within {seconds}s and was killed")]
    Timeout { plugin: String, seconds: u64 },
    /// The plugin's own CNI error object (its code is kept).
    #[error("plugin {plugin:?} failed: {error}")]
    Plugin { plugin: String, error: CniError },
    #[error("plugin {plugin:?} exited with status {code}: {stderr}")]
    Failed {
        plugin: String,
        code: i32,
        stderr: String,
    },
    #[error("plugin {plugin:?} was killed by signal {signal}: {stderr}")]
    Signaled {
        plugin: String,
        signal: i32,
        stderr: String,
    },
}

impl CniCode for ExecError {
    fn cni_code(&self) -> u32 {
        match self {
            ExecError::Plugin { error, .. } => error.code,
            ExecError::Admission(a) => a.cni_code(),
            ExecError::InvalidType(_)
            | ExecError::NotFound { .. }
            | ExecError::NotExecutable { .. } => code::INVALID_NETWORK_CONFIG,
            ExecError::OutputTooLarge { .. }
            | ExecError::PipesHeld { .. }
            | ExecError::Spawn { .. }
            | ExecError::Io { .. }
            | ExecError::Timeout { .. }
            | ExecError::Failed { .. }
            | ExecError::Signaled { .. } => code::INTERNAL,
        }
    }

    fn cni_details(&self) -> Option<&str> {
        match self {
            ExecError::Plugin { error, .. } => Some(&error.details),
            _ => None,
        }
    }
}

/// Runs plugins from `binDir`, optionally chrooted, one admission slot per exec.
#[derive(Debug, Clone)]
pub struct Executor {
    bin_dir: String,
    chroot: Option<PathBuf>,
    timeout: Duration,
    /// The daemon's environment as every plugin gets it, before the request's CNI_*.
    base_env: Arc<[(OsString, OsString)]>,
    admission: Arc<Admission>,
    metrics: Metrics,
}

impl Executor {
    pub fn new(config: &Config, admission: Arc<Admission>) -> Self {
        Self {
            bin_dir: config.bin_dir.to_string_lossy().into_owned(),
            chroot: config.chroot_dir.clone(),
            timeout: Duration::from_secs(config.delegate_timeout_seconds.max(1)),
            // Read once: the daemon never changes its own environment.
            base_env: environment::base(std::env::vars_os()).into(),
            admission,
            metrics: Metrics::noop(),
        }
    }

    /// Records lookups, delegate-slot waits and execs into `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Plugins get `vars` (minus the deny list, `PATH` completed) instead of the daemon's own
    /// environment (tests, and embedders that run plugins for another process).
    #[cfg(test)]
    pub fn with_daemon_env(mut self, vars: impl IntoIterator<Item = (OsString, OsString)>) -> Self {
        self.base_env = environment::base(vars).into();
        self
    }

    /// Overrides the exec timeout (tests and callers with a tighter deadline).
    #[cfg(test)]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `<dir>/<type>` for the first `:`-separated dir of `binDir` holding a regular file.
    #[cfg(test)]
    pub fn find(&self, plugin: &str) -> Result<PathBuf, ExecError> {
        find_in(&self.bin_dir, self.chroot.as_deref(), plugin)
    }

    /// Runs `plugin` with `stdin` as its config; returns its stdout on exit 0.
    pub async fn run(
        &self,
        plugin: &str,
        env: &ExecEnv<'_>,
        stdin: &[u8],
    ) -> Result<Vec<u8>, ExecError> {
        // On the worker, not the blocking pool: a few stat(2)s of a local binDir cost
        // microseconds, the same thread does the (longer) posix_spawn(2) right after, and a
        // blocking-pool hop per plugin cost a thread wake-up (and a thread start when the
        // pool was idle) in CPU and in the delegate's latency.
        let found = find_in(&self.bin_dir, self.chroot.as_deref(), plugin);
        self.metrics.plugin_lookup(plugin, found.is_ok());
        let path = found?;
        let (_permit, waited) = self.admission.delegate_slot().await?;
        let span = tracing::info_span!("plugin_exec", plugin = %plugin, cni.command = %env.command,
            container.id = %env.container_id, ifname = %env.ifname, queue_wait_ms = waited.as_millis() as u64,
            exit.code = tracing::field::Empty, duration_ms = tracing::field::Empty);
        let started = Instant::now();
        let outcome = self
            .spawn_and_wait(plugin, &path, env, stdin)
            .instrument(span.clone())
            .await;
        span.record("duration_ms", started.elapsed().as_millis() as u64);
        match &outcome {
            Ok((status, _, _)) => {
                span.record("exit.code", status.code().unwrap_or(-1));
                tracing::debug!(parent: &span, "plugin finished");
            }
            Err(e) => tracing::warn!(parent: &span, error = %e, "plugin did not finish"),
        }
        let decoded =
            outcome.and_then(|(status, stdout, stderr)| decode(plugin, status, stdout, &stderr));
        self.metrics.queue_wait("delegate", waited);
        self.metrics.delegate_exec(
            plugin,
            env.command.as_str(),
            exec_outcome(&decoded),
            started.elapsed(),
        );
        decoded
    }

    async fn spawn_and_wait(
        &self,
        plugin: &str,
        path: &Path,
        env: &ExecEnv<'_>,
        stdin: &[u8],
    ) -> Result<(ExitStatus, Vec<u8>, Vec<u8>), ExecError> {
        let mut cmd = tokio::process::Command::new(path);
        // As libcni: the caller's environment, then the request's parameters over it.
        cmd.env_clear()
            .envs(self.base_env.iter().map(|(k, v)| (k, v)))
            .env(env::COMMAND, env.command.as_str())
            .env(env::CONTAINERID, env.container_id)
            .env(env::NETNS, env.netns)
            .env(env::IFNAME, env.ifname)
            .env(env::ARGS, env.cni_args)
            .env(env::PATH, &self.bin_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a deadline or a cancelled request kills whatever the
            // plugin forked too (a grandchild holding its stdout would otherwise outlive it).
            .process_group(0)
            .kill_on_drop(true);
        if let Some(root) = &self.chroot {
            let root = CString::new(root.as_os_str().as_bytes()).map_err(|e| ExecError::Spawn {
                plugin: plugin.to_owned(),
                source: std::io::Error::other(e),
            })?;
            chroot_child(&mut cmd, root);
        }
        let spawn_err = |source| ExecError::Spawn {
            plugin: plugin.to_owned(),
            source,
        };
        let io_err = |source| ExecError::Io {
            plugin: plugin.to_owned(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let mut group = ProcessGroup::of(&child);
        let (Some(mut child_in), Some(mut child_out), Some(mut child_err)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(io_err(std::io::Error::other("child pipes missing")));
        };
        let work = async {
            let write = async {
                // A plugin may exit without reading stdin (e.g. on a usage error): not our failure.
                let r = child_in.write_all(stdin).await;
                drop(child_in);
                match r {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                    other => other,
                }
            };
            let pipes = async {
                tokio::try_join!(
                    write,
                    read_stdout(&mut child_out),
                    read_capped(&mut child_err, MAX_STDERR_BYTES)
                )
            };
            tokio::pin!(pipes);
            // Whichever ends first: the pipes (the usual case), or the plugin itself while a
            // process it started still holds a pipe open.
            let first = tokio::select! {
                r = &mut pipes => Ok(r),
                s = child.wait() => Err(s),
            };
            let (status, out, err) = match first {
                Ok(pipes) => {
                    let ((), out, err) = pipes.map_err(|e| pipe_error(plugin, e))?;
                    (child.wait().await.map_err(io_err)?, out, err)
                }
                Err(status) => {
                    let status = status.map_err(io_err)?;
                    let Ok(pipes) = tokio::time::timeout(PIPE_GRACE, &mut pipes).await else {
                        return Err(ExecError::PipesHeld {
                            plugin: plugin.to_owned(),
                            status,
                        });
                    };
                    let ((), out, err) = pipes.map_err(|e| pipe_error(plugin, e))?;
                    (status, out, err)
                }
            };
            Ok((status, out, err))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => {
                // The plugin finished and its pipes closed: whatever it left running on purpose
                // is not ours to kill. When it did not finish cleanly (a child still holding its
                // stdout, output past the cap) the group is killed like a timed-out one.
                if r.is_ok() {
                    group.disarm();
                }
                r
            }
            // Dropping `work` drops the child (kill_on_drop kills and reaps it); `group` kills
            // the rest of its process group on the way out, as it does when this future is
            // dropped at a request's deadline.
            Err(_) => Err(ExecError::Timeout {
                plugin: plugin.to_owned(),
                seconds: self.timeout.as_secs(),
            }),
        }
    }
}

/// The process group of a running plugin (it leads its own, see `process_group(0)`): SIGKILLed
/// as a whole when dropped armed. The leader is not reaped before this drops (its `Child` is
/// dropped after, or was never waited for), so its pid cannot name another group yet; when it was
/// reaped (it exited while a child held its stdout), that child keeps the group alive, and the
/// kernel does not reuse a pid while a group of that id exists.
struct ProcessGroup(Option<nix::unistd::Pid>);

impl ProcessGroup {
    fn of(child: &tokio::process::Child) -> Self {
        Self(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(nix::unistd::Pid::from_raw),
        )
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            // ESRCH: everything in it has exited already.
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Marks stdout past [`MAX_STDOUT_BYTES`] apart from a real I/O error.
const TOO_LARGE: &str = "plugin stdout too large";

/// All of stdout, or an error as soon as it passes [`MAX_STDOUT_BYTES`].
async fn read_stdout(out: &mut (impl tokio::io::AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let limit = u64::try_from(MAX_STDOUT_BYTES).unwrap_or(u64::MAX);
    out.take(limit + 1).read_to_end(&mut buf).await?;
    if buf.len() > MAX_STDOUT_BYTES {
        return Err(std::io::Error::other(TOO_LARGE));
    }
    Ok(buf)
}

/// Reads to EOF (so the writer never blocks) and keeps the first `cap` bytes.
async fn read_capped(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    cap: usize,
) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = from.read(&mut chunk).await?;
        if n == 0 {
            return Ok(kept);
        }
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
}

fn pipe_error(plugin: &str, e: std::io::Error) -> ExecError {
    if e.kind() == std::io::ErrorKind::Other && e.to_string() == TOO_LARGE {
        ExecError::OutputTooLarge {
            plugin: plugin.to_owned(),
        }
    } else {
        ExecError::Io {
            plugin: plugin.to_owned(),
            source: e,
        }
    }
}

fn find_in(bin_dir: &str, chroot: Option<&Path>, plugin: &str) -> Result<PathBuf, ExecError> {
    use std::os::unix::fs::PermissionsExt;
    if plugin.is_empty() || plugin.contains('/') || plugin == "." || plugin == ".." {
        return Err(ExecError::InvalidType(plugin.to_owned()));
    }
    let mut not_executable = None;
    for dir in bin_dir.split(':').filter(|d| !d.is_empty()) {
        let path = Path::new(dir).join(plugin);
        let meta = match chroot {
            Some(root) => chroot_path::metadata_in(root, &path),
            None => std::fs::metadata(&path).ok(),
        };
        let Some(meta) = meta else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        // As a shell's PATH lookup: a file nobody may execute is skipped, and named if no
        // later dir has an executable one.
        if meta.permissions().mode() & 0o111 == 0 {
            not_executable.get_or_insert(path);
            continue;
        }
        return Ok(path);
    }
    Err(match not_executable {
        Some(path) => ExecError::NotExecutable {
            plugin: plugin.to_owned(),
            path,
        },
        None => ExecError::NotFound {
            plugin: plugin.to_owned(),
            bin_dir: bin_dir.to_owned(),
        },
    })
}

/// The `outcome` label of an exec for the metrics.
fn exec_outcome(r: &Result<Vec<u8>, ExecError>) -> &'static str {
    match r {
        Ok(_) => "success",
        Err(ExecError::Timeout { .. }) => "timeout",
        Err(ExecError::Signaled { .. }) => "signaled",
        Err(ExecError::Spawn { .. } | ExecError::Io { .. }) => "spawn_error",
        Err(_) => "error",
    }
}

#[allow(unsafe_code)]
fn chroot_child(cmd: &mut tokio::process::Command, root: CString) {
    // SAFETY: the hook runs in the forked child before exec and only calls chroot(2) and
    // chdir(2), which are async-signal-safe; it allocates nothing (both paths are C strings
    // already, so nix passes them through) and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::chroot(root.as_c_str())?;
            nix::unistd::chdir(c"/")?;
            Ok(())
        });
    }
}

/// stdout as a CNI error object: a JSON object with a numeric `code` and a `msg`, which no
/// result has.
fn error_object(stdout: &[u8]) -> Option<CniError> {
    let v: serde_json::Value = serde_json::from_slice(stdout).ok()?;
    let obj = v.as_object()?;
    (obj.get("code")?.is_u64() && obj.get("msg")?.is_string())
        .then(|| serde_json::from_value(v).ok())
        .flatten()
}

/// Exit 0 → stdout (unless it is an error object); otherwise the plugin's CNI error JSON if it printed one, else a plain error.
fn decode(
    plugin: &str,
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: &[u8],
) -> Result<Vec<u8>, ExecError> {
    if status.success() {
        // The spec says a failing plugin exits non-zero; one that prints an error object and
        // exits 0 still failed, and its result would be read as an empty success otherwise.
        if let Some(error) = error_object(&stdout) {
            return Err(ExecError::Plugin {
                plugin: plugin.to_owned(),
                error,
            });
        }
        return Ok(stdout);
    }
    let stderr_text = String::from_utf8_lossy(stderr).trim().to_owned();
    if let Some(signal) = status.signal() {
        return Err(ExecError::Signaled {
            plugin: plugin.to_owned(),
            signal,
            stderr: stderr_text,
        });
    }
    if let Ok(error) = serde_json::from_slice::<CniError>(&stdout) {
        return Err(ExecError::Plugin {
            plugin: plugin.to_owned(),
            error,
        });
    }
    Err(ExecError::Failed {
        plugin: plugin.to_owned(),
        code: status.code().unwrap_or(-1),
        stderr: stderr_text,
    })
}

#[cfg(test)]
mod tests;
