//! Logging setup: a tracing-subscriber from `logLevel`, `logFile` (append, rotated per
//! `logOptions`), `logToStderr` and `logFormat` (text or JSON, the request's span fields on every
//! line), plus the OpenTelemetry export layer when an OTLP endpoint is configured.
pub mod rotate;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogFormat, LogLevel, LogOptions};
use crate::otel::{self, OtelGuard, OtelSettings};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("opening logFile {path}: {source}")]
    OpenLogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("installing the tracing subscriber: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
    #[error("OpenTelemetry: {0}")]
    Otel(#[from] otel::OtelError),
}

/// Keeps the OTLP exporter alive; dropping it flushes what is queued (bounded).
#[derive(Debug)]
pub struct Telemetry {
    _otel: Option<OtelGuard>,
}

/// What each `logLevel` lets through (`panic` has no level of its own: errors only).
pub fn level(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Panic | LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warning => LevelFilter::WARN,
        LogLevel::Verbose => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// The subscriber from the whole config: format, rotation and (when an endpoint is configured,
/// by key or `OTEL_EXPORTER_OTLP_ENDPOINT`) OTLP export. Must run inside the tokio runtime.
pub fn init_from(config: &Config) -> Result<Telemetry, TelemetryError> {
    let otel = OtelSettings::resolve(config.otlp_endpoint.as_deref(), |k| std::env::var(k).ok());
    install(config, otel.as_ref())
}

type BoxLayer = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;

fn install(config: &Config, otel: Option<&OtelSettings>) -> Result<Telemetry, TelemetryError> {
    let filter = level(config.log_level);
    let writer = writer(
        config.log_file.as_deref(),
        config.log_options.as_ref(),
        config.log_to_stderr,
    )?;
    let fmt: BoxLayer = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    let mut layers = vec![fmt];
    let mut guard = None;
    if let Some(settings) = otel {
        let (layer, g) = otel::layer(settings)?;
        // Spans are exported whatever logLevel says (its default, panic, would hide them all);
        // the log layer's own filter still decides what is printed. Only the daemon's own
        // spans: the HTTP/2 and Kubernetes client internals would drown the request tree.
        let ours = tracing_subscriber::filter::Targets::new()
            .with_target("multus_daemon", tracing::Level::INFO);
        layers.push(layer.with_filter(ours).boxed());
        guard = Some(g);
    }
    tracing_subscriber::registry().with(layers).try_init()?;
    if let Some(s) = otel {
        tracing::info!(endpoint = %s.endpoint, service.name = %s.service_name, "exporting traces over OTLP");
    }
    Ok(Telemetry { _otel: guard })
}

fn writer(
    file: Option<&Path>,
    rotation: Option<&LogOptions>,
    to_stderr: bool,
) -> Result<BoxMakeWriter, TelemetryError> {
    let Some(path) = file else {
        // Without a file the daemon still logs to stderr: a silent daemon is undebuggable, and
        // the container runtime collects stderr anyway.
        return Ok(BoxMakeWriter::new(std::io::stderr));
    };
    let open_err = |source| TelemetryError::OpenLogFile {
        path: path.to_owned(),
        source,
    };
    let to_file = match rotation {
        Some(options) => BoxMakeWriter::new(std::sync::Mutex::new(
            rotate::RotatingFile::open(path, options.into()).map_err(open_err)?,
        )),
        None => BoxMakeWriter::new(std::sync::Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(open_err)?,
        )),
    };
    Ok(if to_stderr {
        BoxMakeWriter::new(to_file.and(std::io::stderr))
    } else {
        to_file
    })
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
            ("warning", LevelFilter::WARN),
            ("info", LevelFilter::INFO),
            ("trace", LevelFilter::TRACE),
            ("", LevelFilter::ERROR),
        ];
        for (name, want) in cases {
            let parsed = LogLevel::from_name(name).unwrap();
            assert_eq!(level(parsed), want, "{name}");
        }
        assert_eq!(LogLevel::from_name("loud"), None);
    }

    #[test]
    fn unopenable_log_file_is_named() {
        let config = Config {
            log_file: Some("/nonexistent-dir/x/daemon.log".into()),
            ..Config::default()
        };
        let err = install(&config, None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x/daemon.log"));
    }
}
