//! Logging setup: a tracing-subscriber from `logLevel`, `logFile` (append) and `logToStderr`.
//! Issue 4 adds rotation, JSON and OTLP here.
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("logLevel {0:?} is not one of panic, error, warn, verbose, info, debug, trace")]
    UnknownLevel(String),
    #[error("opening logFile {path}: {source}")]
    OpenLogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("installing the tracing subscriber: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
}

/// Upstream's level names (`panic` = errors only, `verbose` = info) plus tracing's own.
pub fn level(name: &str) -> Result<LevelFilter, TelemetryError> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "panic" | "error" => LevelFilter::ERROR,
        "warn" | "warning" => LevelFilter::WARN,
        "verbose" | "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => return Err(TelemetryError::UnknownLevel(name.to_owned())),
    })
}

/// The process-wide subscriber. Startup messages before the config is read go to stderr.
pub fn init(level_name: &str, file: Option<&Path>, to_stderr: bool) -> Result<(), TelemetryError> {
    let filter = level(level_name)?;
    let writer = match file {
        Some(path) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| TelemetryError::OpenLogFile {
                    path: path.to_owned(),
                    source,
                })?;
            let to_file = BoxMakeWriter::new(std::sync::Mutex::new(f));
            if to_stderr {
                BoxMakeWriter::new(to_file.and(std::io::stderr))
            } else {
                to_file
            }
        }
        // Without a file the daemon still logs to stderr: a silent daemon is undebuggable, and
        // the container runtime collects stderr anyway.
        None => BoxMakeWriter::new(std::io::stderr),
    };
    tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_writer(writer)
        .with_ansi(false)
        .finish()
        .try_init()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_and_tracing_level_names() {
        let cases = [
            ("panic", LevelFilter::ERROR),
            ("error", LevelFilter::ERROR),
            ("verbose", LevelFilter::INFO),
            ("debug", LevelFilter::DEBUG),
            ("WARN", LevelFilter::WARN),
            ("info", LevelFilter::INFO),
            ("trace", LevelFilter::TRACE),
        ];
        for (name, want) in cases {
            assert_eq!(level(name).unwrap(), want, "{name}");
        }
        assert!(level("loud").unwrap_err().to_string().contains("loud"));
    }

    #[test]
    fn unopenable_log_file_is_named() {
        let err = init(
            "info",
            Some(Path::new("/nonexistent-dir/x/daemon.log")),
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x/daemon.log"));
    }
}
