//! OpenTelemetry export: the tracing spans (`cni.rpc` and its children) sent over OTLP/gRPC to
//! the endpoint of `otlpEndpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT`. No endpoint, no layer: nothing
//! is built and spans cost what they cost without OpenTelemetry.
//!
//! The batch processor exports from its own thread with a bounded queue, so a collector that is
//! down or slow only drops spans; requests never wait for it.
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetryLayer;

/// The standard variables (OpenTelemetry SDK specification).
pub const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const ENV_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// `service.name` when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "multus-daemon";
/// How long one export may take before the batch gives up on it.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the final flush at exit may take.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// The exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("building the OTLP span exporter for {endpoint}: {source}")]
    BuildExporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
}

/// Where and as whom to export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelSettings {
    pub endpoint: String,
    pub service_name: String,
}

impl OtelSettings {
    /// The config key wins over the environment; `None` when neither names an endpoint.
    pub fn resolve(configured: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let endpoint = configured
            .map(str::to_owned)
            .or_else(|| env(ENV_ENDPOINT))
            .filter(|e| !e.trim().is_empty())?;
        let service_name = env(ENV_SERVICE_NAME)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        Some(Self {
            endpoint,
            service_name,
        })
    }
}

/// Flushes what is queued when dropped (at daemon exit), bounded by a short timeout.
#[derive(Debug)]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            tracing::debug!(error = %e, "OTLP exporter shutdown");
        }
    }
}

/// The tracing layer exporting to `settings.endpoint`. Must be called inside a tokio runtime
/// (the gRPC channel's worker task runs on it).
pub fn layer<S>(
    settings: &OtelSettings,
) -> Result<(OpenTelemetryLayer<S, SdkTracer>, OtelGuard), OtelError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(settings.endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|source| OtelError::BuildExporter {
            endpoint: settings.endpoint.clone(),
            source,
        })?;
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("multus-daemon");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok((layer, OtelGuard { provider }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_key_then_env_then_nothing() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let none: &[(&str, &str)] = &[];
        let both: &[(&str, &str)] = &[
            (ENV_ENDPOINT, "http://env:4317"),
            (ENV_SERVICE_NAME, "node-a"),
        ];
        assert_eq!(OtelSettings::resolve(None, env(none)), None);
        assert_eq!(OtelSettings::resolve(Some(" "), env(none)), None);
        let from_key = OtelSettings::resolve(Some("http://key:4317"), env(both)).unwrap();
        assert_eq!(from_key.endpoint, "http://key:4317");
        assert_eq!(from_key.service_name, "node-a");
        let from_env = OtelSettings::resolve(None, env(both)).unwrap();
        assert_eq!(from_env.endpoint, "http://env:4317");
        let default_name = OtelSettings::resolve(Some("http://k:1"), env(none)).unwrap();
        assert_eq!(default_name.service_name, DEFAULT_SERVICE_NAME);
    }
}
