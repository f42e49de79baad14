//! Upstream Multus' HTTP API (`pkg/server/server.go`) on the daemon socket, beside gRPC: `POST
//! /cni` (what upstream's Go `multus-shim` sends, so a node mid-rollout keeps working), `POST
//! /delegate` (hot-plug, as multus-dynamic-networks-controller calls it), `GET|POST /healthz` and
//! `/readyz`. The connection protocol (HTTP/1.1 or HTTP/2) is detected by the server per
//! connection; [`SplitLayer`] sends requests with a gRPC content type on to tonic's router and
//! every other request here.
//!
//! The same peer-credential policy as gRPC, the same engine and the same spans and metrics (a
//! `cni.rpc` span and one `multus_rs_requests_total` sample per CNI request, upstream's
//! `multus_server_request_total` per handler).
mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use multus_common::{CniError, Command, code};
use multus_proto::v1::CniRequest;
use serde_json::{Value, json};
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::Instrument;

use self::wire::{ShimRequest, k8s_args};
use crate::config::Config;
use crate::engine::{CniCall, Engine, HotplugCall, HotplugNetwork};
use crate::layers::auth::{self, AuthPolicy};
use crate::layers::{BoxFuture, Deadlines, timeout, trace};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::service;

/// The largest request body read (upstream reads without a bound; a CNI config is a few KiB).
const MAX_BODY: usize = 4 << 20;

/// The HTTP API over the shared engine.
pub struct HttpApi {
    engine: Arc<Engine>,
    policy: AuthPolicy,
    metrics: Metrics,
    deadlines: Deadlines,
    draining: Arc<AtomicBool>,
}

impl HttpApi {
    pub fn new(engine: Arc<Engine>, config: &Config, metrics: Metrics) -> Self {
        Self {
            engine,
            policy: AuthPolicy::from_config(config),
            metrics,
            deadlines: Deadlines::from_config(config),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Set at the shutdown signal: `/readyz` answers 500 from then on, as upstream's does.
    pub fn draining(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.draining)
    }

    /// What `/readyz` and gRPC health both answer from.
    pub fn readiness(&self) -> Arc<Readiness> {
        self.engine.readiness()
    }

    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// `/readyz`: 200 while gRPC health is SERVING (caches synced, indicator file present, not
    /// draining), else 500 as upstream answers during its drain.
    fn ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && self.engine.readiness().serving()
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let peer = auth::peer(&req);
        if !self.policy.allows(peer) {
            tracing::warn!(peer.uid = ?peer.map(|p| p.uid), peer.gid = ?peer.map(|p| p.gid),
                http.path = %req.uri().path(), "caller refused: not in allowedUids/allowedGids");
            self.metrics.auth_rejected(peer.map(|p| p.uid));
            return text(StatusCode::FORBIDDEN, &self.policy.refusal_message(peer));
        }
        let method = req.method().clone();
        let handler = match req.uri().path() {
            p @ ("/cni" | "/delegate" | "/healthz" | "/readyz") => p.to_owned(),
            _ => "NotFound".to_owned(),
        };
        let probe = matches!(handler.as_str(), "/healthz" | "/readyz");
        let allowed = match handler.as_str() {
            "NotFound" => true,
            _ if probe => method == Method::GET || method == Method::POST,
            _ => method == Method::POST,
        };
        let resp = if !allowed {
            text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
        } else {
            match handler.as_str() {
                "/healthz" => empty(StatusCode::OK),
                "/readyz" if !self.ready() => empty(StatusCode::INTERNAL_SERVER_ERROR),
                "/readyz" => empty(StatusCode::OK),
                "/cni" => return self.cni(req).await,
                "/delegate" => return self.delegate(req).await,
                _ => empty(StatusCode::NOT_FOUND),
            }
        };
        self.count(&handler, &resp, &method);
        resp
    }

    /// Upstream's per-handler counter, for answers that are not a CNI request's.
    fn count(&self, handler: &str, resp: &Response<Body>, method: &Method) {
        self.metrics.upstream_request(
            handler,
            resp.status().as_str(),
            &method.as_str().to_ascii_lowercase(),
        );
    }

    async fn read(&self, req: Request<Body>) -> Result<(http::HeaderMap, ShimRequest), String> {
        let (parts, body) = req.into_parts();
        let bytes = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the request body: {e}"))?
            .to_bytes();
        let shim = serde_json::from_slice::<ShimRequest>(&bytes).map_err(|e| e.to_string())?;
        Ok((parts.headers, shim))
    }

    /// `POST /cni`: one CNI request in upstream's shim shape.
    async fn cni(&self, req: Request<Body>) -> Response<Body> {
        let refused = |msg: String| {
            self.metrics.upstream_request("/cni", "400", "post");
            text(StatusCode::BAD_REQUEST, &msg)
        };
        let (headers, shim) = match self.read(req).await {
            Ok(r) => r,
            Err(msg) => return refused(msg),
        };
        let call = match cni_call(&shim) {
            Ok(call) => call,
            Err(msg) => return refused(msg),
        };
        let verb = call.command;
        let version = stdin_version(&call.config);
        let engine = Arc::clone(&self.engine);
        let work = async move {
            trace::record_call(&call);
            service::run(&engine, call)
                .await
                .map_err(|e| service::cni_error(&e))
        };
        let outcome = self.observed("/cni", verb, &headers, work).await;
        match outcome {
            Ok(result) if verb == Command::Add => add_response(&result, &version),
            Ok(_) => empty(StatusCode::OK),
            Err(e) => cni_failure(&e),
        }
    }

    /// `POST /delegate`: hot-plug of the delegate config in the body on a running pod.
    async fn delegate(&self, req: Request<Body>) -> Response<Body> {
        let refused = |msg: String| {
            self.metrics.upstream_request("/delegate", "400", "post");
            text(StatusCode::BAD_REQUEST, &msg)
        };
        let (headers, shim) = match self.read(req).await {
            Ok(r) => r,
            Err(msg) => return refused(msg),
        };
        let call = match hotplug_call(&shim) {
            Ok(Ok(call)) => call,
            Ok(Err(cni)) => {
                self.metrics.upstream_request("/delegate", "400", "post");
                return cni_failure(&cni);
            }
            Err(msg) => return refused(msg),
        };
        let verb = call.command;
        let engine = Arc::clone(&self.engine);
        let work = async move {
            service::record_hotplug(&call);
            engine
                .hotplug(call)
                .await
                .map_err(|e| service::cni_error(&e))
        };
        match self.observed("/delegate", verb, &headers, work).await {
            Ok(Some(result)) => json_ok(&json!({ "Result": result })),
            Ok(None) => empty(StatusCode::OK),
            Err(e) => cni_failure(&e),
        }
    }

    /// Runs `work` bounded by the verb's deadline, in a `cni.rpc` span, counted once.
    async fn observed<T>(
        &self,
        handler: &str,
        verb: Command,
        headers: &http::HeaderMap,
        work: impl Future<Output = Result<T, CniError>>,
    ) -> Result<T, CniError> {
        let deadline = self
            .deadlines
            .effective(verb, None)
            .unwrap_or(Duration::MAX);
        let bounded = async move {
            match tokio::time::timeout(deadline, work).await {
                Ok(r) => r,
                Err(_) => Err(expired(verb, deadline)),
            }
        };
        let span = trace::rpc_span(verb, headers);
        trace::observe(&self.metrics, handler, verb, bounded)
            .instrument(span)
            .await
    }
}

fn expired(verb: Command, after: Duration) -> CniError {
    let status = timeout::expired(verb, after);
    CniError::from_wire(status.details())
        .unwrap_or_else(|| CniError::new(code::TRY_AGAIN_LATER, status.message()))
}

/// The engine's call for a `/cni` request, with upstream's extraction errors.
fn cni_call(shim: &ShimRequest) -> Result<CniCall, String> {
    let env = &shim.env;
    let command = env
        .get("CNI_COMMAND")
        .ok_or("could not extract the CNI command args: unexpected or missing CNI_COMMAND")?;
    let verb = parse_command(command)?;
    let config = shim.config.clone().unwrap_or_default();
    let request = if matches!(verb, Command::Status | Command::Gc) {
        CniRequest {
            protocol_version: 1,
            cni_path: env.get("CNI_PATH").cloned().unwrap_or_default(),
            config,
            ..Default::default()
        }
    } else {
        let target = wire::target(env)
            .map_err(|e| format!("could not extract the CNI command args: {e}"))?;
        k8s_args(env).map_err(|e| format!("could not extract the kubernetes runtime args: {e}"))?;
        CniRequest {
            protocol_version: 1,
            container_id: target.container_id,
            netns: target.netns,
            ifname: target.ifname,
            cni_args_raw: target.cni_args,
            cni_args: HashMap::new(),
            cni_path: env.get("CNI_PATH").cloned().unwrap_or_default(),
            config,
        }
    };
    service::to_call(verb, request).map_err(|e| service::cni_error(&e).msg)
}

/// The engine's hot-plug call for a `/delegate` request; the inner error is a CNI error (bad
/// delegate config), the outer one upstream's extraction text.
fn hotplug_call(shim: &ShimRequest) -> Result<Result<HotplugCall, CniError>, String> {
    let env = &shim.env;
    let command = env
        .get("CNI_COMMAND")
        .ok_or("could not extract the CNI command args: unexpected or missing CNI_COMMAND")?;
    let verb = parse_command(command)?;
    if !matches!(verb, Command::Add | Command::Del | Command::Check) {
        return Err(format!(
            "unknown cmd type: {command} (multus-rs hot-plugs ADD, DEL and CHECK)"
        ));
    }
    let target =
        wire::target(env).map_err(|e| format!("could not extract the CNI command args: {e}"))?;
    k8s_args(env).map_err(|e| format!("could not extract the kubernetes runtime args: {e}"))?;
    let config: Value = match serde_json::from_slice(shim.config.as_deref().unwrap_or_default()) {
        Ok(v) => v,
        Err(e) => {
            return Ok(Err(CniError::new(
                code::DECODE_FAILURE,
                format!("failed to decode the delegate's network config: {e}"),
            )));
        }
    };
    let args = match multus_common::CniArgs::parse(&target.cni_args) {
        Ok(a) => a,
        Err(e) => return Err(format!("invalid CNI_ARGS: {e}")),
    };
    Ok(Ok(HotplugCall {
        command: verb,
        container_id: target.container_id,
        netns: target.netns,
        ifname: target.ifname,
        args,
        network: HotplugNetwork::Config {
            config,
            selection: Box::new(shim.selection()),
        },
    }))
}

fn parse_command(command: &str) -> Result<Command, String> {
    match command {
        "ADD" => Ok(Command::Add),
        "DEL" => Ok(Command::Del),
        "CHECK" => Ok(Command::Check),
        "STATUS" => Ok(Command::Status),
        "GC" => Ok(Command::Gc),
        other => Err(format!("unknown cmd type: {other}")),
    }
}

fn stdin_version(config: &[u8]) -> String {
    serde_json::from_slice::<Value>(config)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Upstream answers ADD with `{"Result": <result in cniVersion 1.0.0>}`; its shim converts it
/// down to the config's version.
fn add_response(result: &[u8], version: &str) -> Response<Body> {
    let converted = serde_json::from_slice::<Value>(result)
        .map_err(|e| e.to_string())
        .and_then(|v| {
            multus_common::result::convert(&v, version, "1.0.0").map_err(|e| e.to_string())
        });
    match converted {
        Ok(r) => json_ok(&json!({ "Result": r })),
        Err(e) => cni_failure(&CniError::new(
            code::INTERNAL,
            format!("failed to generate the CNI result: {e}"),
        )),
    }
}

/// A CNI error as upstream's `writeCNIErrorResponse` writes a `*types.Error`: 400, JSON.
fn cni_failure(e: &CniError) -> Response<Body> {
    let mut obj = json!({ "code": e.code, "msg": e.msg });
    if !e.details.is_empty() {
        obj["details"] = e.details.clone().into();
    }
    respond(
        StatusCode::BAD_REQUEST,
        Some("application/json"),
        obj.to_string(),
    )
}

fn json_ok(v: &Value) -> Response<Body> {
    respond(StatusCode::OK, Some("application/json"), v.to_string())
}

/// Go's `http.Error`: the message and a newline, as plain text.
fn text(status: StatusCode, msg: &str) -> Response<Body> {
    respond(
        status,
        Some("text/plain; charset=utf-8"),
        format!("{msg}\n"),
    )
}

fn empty(status: StatusCode) -> Response<Body> {
    respond(status, None, String::new())
}

fn respond(status: StatusCode, content_type: Option<&str>, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::new(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    if let Some(ct) = content_type
        && let Ok(v) = http::HeaderValue::from_str(ct)
    {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

/// Whether a request is gRPC (its content type is `application/grpc` or `application/grpc+…`).
fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// Routes gRPC requests to the inner service and everything else to the [`HttpApi`].
#[derive(Clone)]
pub struct SplitLayer {
    api: Arc<HttpApi>,
}

impl SplitLayer {
    pub fn new(api: HttpApi) -> Self {
        Self { api: Arc::new(api) }
    }
}

impl<S> Layer<S> for SplitLayer {
    type Service = Split<S>;

    fn layer(&self, inner: S) -> Split<S> {
        Split {
            inner,
            api: Arc::clone(&self.api),
        }
    }
}

/// See [`SplitLayer`].
#[derive(Clone)]
pub struct Split<S> {
    inner: S,
    api: Arc<HttpApi>,
}

impl<S> Service<Request<Body>> for Split<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if is_grpc(&req) {
            return Box::pin(self.inner.call(req));
        }
        let api = Arc::clone(&self.api);
        Box::pin(async move { Ok(api.handle(req).await) })
    }
}

#[cfg(test)]
mod tests;
