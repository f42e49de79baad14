//! The multus CNI config the runtime reads (`<cniConfigDir>/00-multus.conf`), kept by the
//! daemon as upstream's `multusConfigFile` asks: `auto` generates it from the primary CNI config
//! (byte for byte what upstream's generator writes), a path copies that file. Better than
//! upstream, on purpose: written atomically and never empty, followed when the primary changes,
//! is replaced or removed, or a lower-sorting primary appears; a primary that stops loading
//! keeps the last good file; and SIGTERM leaves the file unless `cleanupConfigOnExit` is set
//! (pods created while the daemon restarts get code 11 and are retried instead of silently
//! getting only the primary network).
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::Config;
use crate::load;

mod generate;
mod goversion;
mod primary;
mod shimconf;

/// Go's HTML-safe JSON escaping, also used for the network-status annotation.
pub(crate) use shimconf::go_html_escape;
mod watch;
mod write;

pub use generate::{GenerateError, render};
pub use primary::{LoadError, NameError};
pub use shimconf::{DecodeError, ShimConf};
pub use write::{Outcome, put};

/// upstream's `multusConfigFileName`.
pub const GENERATED_FILE: &str = "00-multus.conf";
/// upstream's `UserRWPermission` for the generated file.
const GENERATED_MODE: u32 = 0o600;
/// A copied file gets what upstream's `os.Create` gives under the usual umask.
const COPIED_MODE: u32 = 0o644;
/// upstream's `findMasterPlugin`: 120 tries, 1 s apart.
const PRIMARY_TRIES: u32 = 120;
const PRIMARY_PAUSE: Duration = Duration::from_secs(1);

/// Why the daemon could not prepare or keep its CNI config.
#[derive(Debug, thiserror::Error)]
pub enum AutoconfError {
    #[error("reading daemon config {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: load::LoadError,
    },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(
        "failed to create the configuration manager for the primary CNI plugin: failed to find the cluster master CNI plugin: {0}"
    )]
    NoPrimary(String),
    #[error(
        "failed to create the configuration manager for the primary CNI plugin: cannot specify {0} to prevent recursive config load"
    )]
    Recursive(String),
    #[error("failed to create the configuration manager for the primary CNI plugin: {0}")]
    Generate(#[from] GenerateError),
    #[error("multus CNI config task failed: {0}")]
    Task(String),
    #[error(
        "failed to start config manager: failed to persist the multus configuration: {path}: {source}"
    )]
    Persist {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl AutoconfError {
    /// upstream's exit codes: 1 for the daemon-config, 2 for the manager, 3 for persisting.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ReadConfig { .. } | Self::Decode(_) => 1,
            Self::Persist { .. } => 3,
            _ => 2,
        }
    }
}

/// Generation inputs (`multusConfigFile: auto`).
#[derive(Debug)]
struct Generator {
    base: ShimConf,
    autoconfig_dir: PathBuf,
    master: Option<String>,
    force_version: bool,
}

/// What the daemon keeps in `cniConfigDir`.
#[derive(Debug)]
enum Source {
    Generate(Box<Generator>),
    Copy(PathBuf),
}

/// The daemon's multus CNI config: what it writes, where, and what it last wrote.
#[derive(Debug)]
pub struct ConfigWriter {
    source: Source,
    output: PathBuf,
    cleanup_on_exit: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The bytes last put in place (or found already in place) by this daemon.
    written: Option<Vec<u8>>,
    primary: Option<String>,
    /// Why the last refresh kept the file, so a lasting failure is logged once, not every resync.
    failure: Option<String>,
}

/// The daemon-config file as written plus the `MULTUS_` environment, as JSON entries in order
/// (the environment last, so it wins as in `load`).
fn raw_daemon_config(
    path: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Map<String, Value>, AutoconfError> {
    let read_err = |source| AutoconfError::ReadConfig {
        path: path.to_owned(),
        source,
    };
    let mut raw = load::read_object(path).map_err(read_err)?;
    for (k, v) in load::env_overrides(vars, &load::known_keys()) {
        raw.remove(&k);
        raw.insert(k, v);
    }
    Ok(raw)
}

impl ConfigWriter {
    /// What `config` asks for; `None` when the daemon writes no CNI config. `config_path` is
    /// read again as raw JSON because upstream's generator decodes the file itself: which keys
    /// are present (not their typed defaults) decides what reaches `00-multus.conf`.
    pub fn plan(
        config_path: &Path,
        config: &Config,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Option<Self>, AutoconfError> {
        // An empty string means unset, as everywhere in upstream's config: upstream's default.
        let auto = matches!(config.multus_config_file.as_str(), "auto" | "");
        let (source, output) = if auto {
            let Some(dir) = non_empty(config.multus_autoconfig_dir.as_deref()) else {
                // Upstream exits 2 here (it lists ""); a daemon-config that never asked for
                // generation keeps working, and the operator is told.
                tracing::warn!(
                    key = "multusAutoconfigDir",
                    "multusConfigFile is auto but multusAutoconfigDir is unset: 00-multus.conf is not generated"
                );
                return Ok(None);
            };
            let base = ShimConf::from_daemon_config(&raw_daemon_config(config_path, vars)?)?;
            if base.cni_version.is_empty() {
                tracing::error!(
                    "the CNI version is a mandatory parameter when the '-multus-config-file=auto' option is used"
                );
            }
            let generator = Generator {
                base,
                autoconfig_dir: dir.to_owned(),
                master: config.multus_master_cni.clone().filter(|m| !m.is_empty()),
                force_version: config.force_cni_version,
            };
            (
                Source::Generate(Box::new(generator)),
                config.cni_config_dir.join(GENERATED_FILE),
            )
        } else {
            let src = PathBuf::from(&config.multus_config_file);
            let Some(name) = src.file_name() else {
                tracing::warn!(key = "multusConfigFile", path = %src.display(), "multusConfigFile names no file: nothing is copied");
                return Ok(None);
            };
            let output = config.cni_config_dir.join(name);
            (Source::Copy(src), output)
        };
        Ok(Some(Self {
            source,
            output,
            cleanup_on_exit: config.cleanup_config_on_exit,
            state: Mutex::default(),
        }))
    }

    /// The file this daemon keeps.
    pub fn output(&self) -> &Path {
        &self.output
    }

    /// Writes the config, then follows its inputs until cancelled (the daemon drops this
    /// future at shutdown). Returns only when the first generation fails, as upstream exits.
    pub async fn run(self: Arc<Self>) -> AutoconfError {
        // Watch before the first write, so a change made while it is being written is seen.
        let mut watch = watch::DirWatch::new(self.watched_dir(), self.ignore());
        if let Err(e) = self.first().await {
            return e;
        }
        loop {
            watch.changed().await;
            self.refresh().await;
        }
    }

    /// At shutdown: upstream deletes the file; we keep it unless asked, and then only when it
    /// still holds what we wrote (a newer daemon may already have replaced it).
    pub fn on_exit(&self) {
        if !self.cleanup_on_exit {
            tracing::info!(file = %self.output.display(), "keeping the multus CNI config (cleanupConfigOnExit is false)");
            return;
        }
        let written = self.lock().written.clone();
        let current = std::fs::read(&self.output).ok();
        if written.is_none() || current != written {
            tracing::info!(file = %self.output.display(), "not removing the multus CNI config: it is not the one this daemon wrote");
            return;
        }
        match std::fs::remove_file(&self.output) {
            Ok(()) => {
                tracing::info!(file = %self.output.display(), "removed the multus CNI config (cleanupConfigOnExit)")
            }
            Err(e) => {
                tracing::warn!(file = %self.output.display(), error = %e, "could not remove the multus CNI config")
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn watched_dir(&self) -> PathBuf {
        match &self.source {
            Source::Generate(g) => match &g.master {
                Some(m) => parent_of(&primary::join(&g.autoconfig_dir, m)),
                None => g.autoconfig_dir.clone(),
            },
            Source::Copy(src) => parent_of(&src.to_string_lossy()),
        }
    }

    /// Events on our own output (and its temp files) are no reason to look again.
    fn ignore(&self) -> Arc<watch::Ignore> {
        let output = self.output.clone();
        let dir = parent_of(&output.to_string_lossy());
        let name = output.file_name().unwrap_or_default().to_string_lossy();
        let temp = format!(".{name}.");
        Arc::new(move |p: &Path| {
            p == output
                || (p.parent() == Some(dir.as_path())
                    && p.file_name()
                        .is_some_and(|f| f.to_string_lossy().starts_with(&temp)))
        })
    }

    /// The first write: auto mode waits for a primary and fails as upstream does; a copy that
    /// fails is logged and retried on the next change, as upstream only logs it.
    async fn first(self: &Arc<Self>) -> Result<(), AutoconfError> {
        let Source::Generate(g) = &self.source else {
            self.refresh().await;
            return Ok(());
        };
        let name = match &g.master {
            Some(m) => m.clone(),
            None => wait_for_primary(&g.autoconfig_dir).await?,
        };
        let primary = primary::join(&g.autoconfig_dir, &name);
        let recursive = format!("{}/{GENERATED_FILE}", g.autoconfig_dir.display());
        if name == recursive || Path::new(&primary) == self.output {
            return Err(AutoconfError::Recursive(recursive));
        }
        let written = self.blocking(move |w| {
            let bytes = w.generate(&primary)?;
            w.put(&bytes).map_err(|source| AutoconfError::Persist {
                path: w.output.clone(),
                source,
            })
        });
        written
            .await
            .unwrap_or_else(|e| Err(AutoconfError::Task(e.to_string())))
    }

    /// Regenerates (or copies) and writes when the bytes changed; any failure keeps the file.
    async fn refresh(self: &Arc<Self>) {
        let outcome = match self.blocking(|w| w.refresh_now()).await {
            Ok(outcome) => outcome,
            Err(e) => Err(format!("the refresh task failed: {e}")),
        };
        let mut state = self.lock();
        match outcome {
            Ok(()) => {
                if state.failure.take().is_some() {
                    tracing::info!(file = %self.output.display(), "multus CNI config inputs load again");
                }
            }
            Err(reason) if state.failure.as_deref() == Some(&reason) => {
                tracing::debug!(file = %self.output.display(), %reason, "still keeping the last good multus CNI config");
            }
            Err(reason) => {
                tracing::warn!(file = %self.output.display(), %reason, "keeping the last good multus CNI config");
                state.failure = Some(reason);
            }
        }
    }

    fn refresh_now(&self) -> Result<(), String> {
        let bytes = match &self.source {
            Source::Generate(g) => {
                let name = match &g.master {
                    Some(m) => m.clone(),
                    None => primary::first_candidate(&g.autoconfig_dir)
                        .map_err(|e| format!("listing {}: {e}", g.autoconfig_dir.display()))?
                        .ok_or_else(|| {
                            format!("no primary CNI config in {}", g.autoconfig_dir.display())
                        })?,
                };
                self.generate(&primary::join(&g.autoconfig_dir, &name))
                    .map_err(|e| e.to_string())?
            }
            Source::Copy(src) => copy_source(src)?,
        };
        // Unchanged inputs leave the file alone, even when someone removed it: that is how an
        // operator takes a node off multus before uninstalling (NOTES.txt).
        if self.lock().written.as_deref() == Some(&bytes[..]) {
            return Ok(());
        }
        self.put(&bytes)
            .map_err(|e| format!("writing {}: {e}", self.output.display()))
    }

    /// One generation from the primary at `path` (auto mode only).
    fn generate(&self, path: &str) -> Result<Vec<u8>, GenerateError> {
        let Source::Generate(g) = &self.source else {
            return Ok(Vec::new());
        };
        if g.force_version {
            force_version(path, &g.base.cni_version)?;
        }
        let data = primary::read(path)?;
        let bytes = render(&g.base, path, &data)?;
        let mut state = self.lock();
        if state.primary.as_deref() != Some(path) {
            tracing::info!(primary = path, previous = ?state.primary, "primary CNI config selected");
            state.primary = Some(path.to_owned());
        }
        Ok(bytes)
    }

    fn put(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mode = match self.source {
            Source::Generate(_) => GENERATED_MODE,
            Source::Copy(_) => COPIED_MODE,
        };
        let outcome = put(&self.output, bytes, mode)?;
        let mut state = self.lock();
        if outcome == Outcome::Written {
            let content = String::from_utf8_lossy(bytes);
            tracing::info!(file = %self.output.display(), primary = ?state.primary, %content, "multus CNI config written");
        }
        state.written = Some(bytes.to_vec());
        Ok(())
    }

    /// Runs file work on the blocking pool, off the async threads.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Self) -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&me)).await
    }
}

fn non_empty(p: Option<&Path>) -> Option<&Path> {
    p.filter(|p| !p.as_os_str().is_empty())
}

fn parent_of(path: &str) -> PathBuf {
    Path::new(path)
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// upstream's `getPrimaryCNIPluginName`: up to 120 looks, 1 s apart; a listing error is final.
async fn wait_for_primary(dir: &Path) -> Result<String, AutoconfError> {
    for attempt in 1..=PRIMARY_TRIES {
        let found = primary::first_candidate(dir).map_err(|e| {
            AutoconfError::NoPrimary(format!(
                "error when listing the CNI plugin configurations: {e}"
            ))
        })?;
        if let Some(name) = found {
            return Ok(name);
        }
        if attempt == 1 {
            tracing::info!(dir = %dir.display(), tries = PRIMARY_TRIES, "waiting for the primary CNI config");
        }
        tokio::time::sleep(PRIMARY_PAUSE).await;
    }
    Err(AutoconfError::NoPrimary(format!(
        "could not find a plugin configuration in {}",
        dir.display()
    )))
}

/// A file to copy must be a JSON object: an empty or half-written source is not copied.
fn copy_source(src: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(src).map_err(|e| format!("reading {}: {e}", src.display()))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(_)) => Ok(bytes),
        Ok(_) => Err(format!("{} is not a JSON object", src.display())),
        Err(e) => Err(format!("{} is not valid JSON: {e}", src.display())),
    }
}

/// `forceCNIVersion` (testing only, as upstream): the primary rewritten with multus's
/// `cniVersion`, keys sorted and compact as Go marshals a map; atomically, its mode kept.
fn force_version(path: &str, version: &str) -> Result<(), LoadError> {
    let mut data = primary::read(path)?;
    let Some(map) = data.as_object_mut() else {
        return Err(LoadError::NotAnObject);
    };
    if map.get("cniVersion").and_then(Value::as_str) == Some(version) {
        return Ok(());
    }
    map.insert("cniVersion".into(), Value::String(version.to_owned()));
    sort_keys(&mut data);
    let access = |detail| LoadError::Access {
        path: path.to_owned(),
        detail,
    };
    let json = serde_json::to_string(&data).map_err(|e| access(e.to_string()))?;
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777)
    };
    put(
        Path::new(path),
        shimconf::go_html_escape(&json).as_bytes(),
        mode,
    )
    .map_err(|e| access(format!("couldn't update cluster network config: {e}")))?;
    tracing::info!(
        primary = path,
        cni_version = version,
        "forceCNIVersion: primary CNI config rewritten"
    );
    Ok(())
}

fn sort_keys(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.sort_keys();
            map.values_mut().for_each(sort_keys);
        }
        Value::Array(list) => list.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
