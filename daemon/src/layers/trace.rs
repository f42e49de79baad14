//! Trace: one `cni.rpc` span per CNI request (verb, container id, pod, ifname, netns, result
//! code, duration), a child of the runtime's W3C `traceparent` when the shim sent one, and one
//! request sample in the metrics. Inside auth (refused callers are not CNI requests) and outside
//! timeout (an expired request is still one span with its code 11).
//!
//! The request body is only decoded by the service, so the span starts with the path's verb and
//! the service fills in the call's fields with [`record_call`].
use std::future::Future;
use std::task::{Context, Poll};
use std::time::Instant;

use multus_common::{CniError, Command, code};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::BoxFuture;
use crate::engine::CniCall;
use crate::metrics::Metrics;

const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";

/// Fills the current `cni.rpc` span with what the request body says.
pub fn record_call(call: &CniCall) {
    let span = tracing::Span::current();
    span.record("container.id", call.container_id.as_str());
    span.record("ifname", call.ifname.as_str());
    span.record("netns", call.netns.as_str());
    for (field, key) in [
        ("pod.namespace", "K8S_POD_NAMESPACE"),
        ("pod.name", "K8S_POD_NAME"),
        ("pod.uid", "K8S_POD_UID"),
    ] {
        if let Some(v) = call.args.get(key) {
            span.record(field, v);
        }
    }
}

/// The CNI code of a response: 0 for success (grpc-status only in trailers), else the code in
/// the status details, else 999 for a gRPC failure without one (refused, unimplemented...).
pub fn cni_code(headers: &http::HeaderMap) -> (u32, tonic::Code) {
    match tonic::Status::from_header_map(headers) {
        None => (0, tonic::Code::Ok),
        Some(s) if s.code() == tonic::Code::Ok => (0, tonic::Code::Ok),
        Some(s) => {
            let cni = CniError::from_wire(s.details())
                .filter(|e| e.code != 0)
                .map_or(code::INTERNAL, |e| e.code);
            (cni, s.code())
        }
    }
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

pub(crate) fn rpc_span(verb: Command, headers: &http::HeaderMap) -> tracing::Span {
    let span = tracing::info_span!("cni.rpc", otel.name = %format!("CNI {verb}"), otel.kind = "server",
        otel.status_code = Empty, cni.command = %verb, container.id = Empty, pod.namespace = Empty,
        pod.name = Empty, pod.uid = Empty, ifname = Empty, netns = Empty, cni.code = Empty,
        grpc.code = Empty, duration_ms = Empty);
    if headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&Headers(headers));
        // Fails only when no OpenTelemetry layer is installed: then there is nothing to link.
        let _ = span.set_parent(parent);
    }
    span
}

/// The handler upstream's counter files a gRPC path under: hot-plug RPCs as `/delegate`.
fn handler(path: &str) -> &'static str {
    if path.ends_with("Delegate") {
        "/delegate"
    } else {
        "/cni"
    }
}

/// One CNI request outside gRPC (the HTTP API), already inside its [`rpc_span`]: the same
/// in-flight gauge, span fields, sample and log line as [`Trace`] gives a gRPC one.
pub(crate) async fn observe<T>(
    metrics: &Metrics,
    handler: &str,
    verb: Command,
    work: impl Future<Output = Result<T, CniError>>,
) -> Result<T, CniError> {
    let _in_flight = metrics.in_flight();
    let started = Instant::now();
    let r = work.await;
    let elapsed = started.elapsed();
    let cni = r.as_ref().err().map_or(0, |e| e.code);
    request_done(
        &tracing::Span::current(),
        metrics,
        handler,
        verb,
        cni,
        elapsed,
    );
    r
}

/// Records a finished request's outcome on its span, in the request metrics and in the log line
/// that carries the request's fields: the same for gRPC and the HTTP API.
fn request_done(
    span: &tracing::Span,
    metrics: &Metrics,
    handler: &str,
    verb: Command,
    cni: u32,
    elapsed: std::time::Duration,
) {
    span.record("cni.code", cni);
    span.record("duration_ms", elapsed.as_millis() as u64);
    span.record("otel.status_code", if cni == 0 { "ok" } else { "error" });
    metrics.request_on(handler, verb.as_str(), cni, elapsed);
    tracing::info!(
        cni.code = cni,
        duration_ms = elapsed.as_millis() as u64,
        "request done"
    );
}

/// Wraps a service with [`Trace`].
#[derive(Debug, Clone)]
pub struct TraceLayer {
    metrics: Metrics,
}

impl TraceLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

// === impl Trace ===

/// Spans and samples every CNI request; counts health checks under upstream's `/healthz`.
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, R> Service<http::Request<B>> for Trace<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let metrics = self.metrics.clone();
        let Some(verb) = super::verb(req.uri().path()) else {
            let health = req.uri().path() == HEALTH_CHECK;
            let work = self.inner.call(req);
            return Box::pin(async move {
                let r = work.await;
                if health && let Ok(resp) = &r {
                    let ok = cni_code(resp.headers()).1 == tonic::Code::Ok;
                    metrics.upstream_request("/healthz", if ok { "200" } else { "503" }, "get");
                }
                r
            });
        };
        let span = rpc_span(verb, req.headers());
        let handler = handler(req.uri().path());
        let work = self.inner.call(req);
        let in_span = span.clone();
        Box::pin(
            async move {
                let _in_flight = metrics.in_flight();
                let started = Instant::now();
                let r = work.await;
                let elapsed = started.elapsed();
                let (cni, grpc) = match &r {
                    Ok(resp) => cni_code(resp.headers()),
                    Err(_) => (code::INTERNAL, tonic::Code::Internal),
                };
                span.record("grpc.code", tracing::field::debug(grpc));
                request_done(&span, &metrics, handler, verb, cni, elapsed);
                r
            }
            .instrument(in_span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_from_response_headers() {
        let ok = http::HeaderMap::new();
        assert_eq!(cni_code(&ok), (0, tonic::Code::Ok));
        let with_cni =
            crate::layers::timeout::expired(Command::Add, std::time::Duration::from_secs(1));
        let resp: http::Response<()> = with_cni.into_http();
        assert_eq!(
            cni_code(resp.headers()),
            (11, tonic::Code::DeadlineExceeded)
        );
        let bare: http::Response<()> = tonic::Status::permission_denied("no").into_http();
        assert_eq!(
            cni_code(bare.headers()),
            (999, tonic::Code::PermissionDenied)
        );
    }

    #[tokio::test]
    async fn each_cni_request_is_one_sample_with_its_code() {
        let inner = tower::service_fn(|req: http::Request<()>| async move {
            let resp = if req.uri().path().ends_with("Del") {
                crate::layers::timeout::expired(Command::Del, std::time::Duration::from_secs(1))
                    .into_http()
            } else {
                http::Response::new(())
            };
            Ok::<_, std::convert::Infallible>(resp)
        });
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new(crate::app::cache_entries(crate::engine::cache::Cache::new(
            dir.path(),
        )));
        let mut svc = TraceLayer::new(metrics.clone()).layer(inner);
        for path in [
            "/multus.cni.v1.Cni/Add",
            "/multus.cni.v1.Cni/Del",
            HEALTH_CHECK,
        ] {
            let req = http::Request::builder()
                .uri(path)
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .body(())
                .unwrap();
            svc.call(req).await.unwrap();
        }
        let text = metrics.encode().unwrap();
        for want in [
            "multus_rs_requests_total{verb=\"ADD\",code=\"0\"} 1",
            "multus_rs_requests_total{verb=\"DEL\",code=\"11\"} 1",
            "multus_server_request_total{handler=\"/healthz\",code=\"200\",method=\"get\"} 1",
            "multus_rs_requests_in_flight 0",
        ] {
            assert!(text.contains(want), "{want} not in\n{text}");
        }
    }
}
