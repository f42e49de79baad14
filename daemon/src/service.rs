//! The gRPC `multus.cni.v1.Cni` service: request → validation → [`CniCall`] → engine → response.
//! Every failure leaves through [`to_status`], the one place that picks the CNI error code.
use std::sync::Arc;

use bytes::Bytes;
use multus_common::constants::MAX_CONFIG_BYTES;
use multus_common::validate;
use multus_common::{CniArgs, CniError, Command, code};
use multus_proto::PROTOCOL_VERSION;
use multus_proto::v1::cni_server::Cni;
use multus_proto::v1::{CniRequest, CniResponse, DelegateRequest, DelegateResponse};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::engine::{CniCall, CniCode, Engine, EngineError, HotplugCall, HotplugNetwork};

/// The CNI service over one shared [`Engine`].
pub struct CniService {
    engine: Arc<Engine>,
}

impl CniService {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    async fn serve(
        &self,
        command: Command,
        request: Request<CniRequest>,
    ) -> Result<Response<CniResponse>, Status> {
        let call = to_call(command, request.into_inner()).map_err(|e| to_status(&e))?;
        crate::layers::trace::record_call(&call);
        let id = call.container_id.clone();
        match run(&self.engine, call).await {
            Ok(result) => Ok(Response::new(CniResponse { result })),
            Err(e) => {
                tracing::warn!(cni.command = %command, container.id = %id, error = %e, "request failed");
                Err(to_status(&e))
            }
        }
    }

    async fn serve_hotplug(
        &self,
        command: Command,
        request: Request<DelegateRequest>,
    ) -> Result<Response<DelegateResponse>, Status> {
        let call = to_hotplug(command, request.into_inner()).map_err(|e| to_status(&e))?;
        record_hotplug(&call);
        let id = call.container_id.clone();
        match self.engine.hotplug(call).await {
            Ok(result) => Ok(Response::new(DelegateResponse {
                result: result
                    .map(|r| r.to_string().into_bytes())
                    .unwrap_or_default(),
            })),
            Err(e) => {
                tracing::warn!(cni.command = %command, container.id = %id, error = %e, "hot-plug request failed");
                Err(to_status(&e))
            }
        }
    }
}

/// One CNI verb on the engine, for the gRPC service and the HTTP API alike.
pub(crate) async fn run(engine: &Arc<Engine>, call: CniCall) -> Result<Vec<u8>, EngineError> {
    match call.command {
        Command::Add => add_detached(engine, call).await,
        Command::Del => engine.del(call).await.map(|()| Vec::new()),
        Command::Check => engine.check(call).await.map(|()| Vec::new()),
        Command::Status => engine.status(call).await.map(|()| Vec::new()),
        Command::Gc => engine.gc(call).await.map(|()| Vec::new()),
        Command::Version => Err(EngineError::Internal(
            "VERSION is answered by the shim".into(),
        )),
    }
}

/// ADD in its own task, so a request dropped at its deadline (layers/timeout) still rolls
/// back: dropping this future cancels the token, and the task kills the running delegate,
/// DELs what was attached and only then releases the container lock.
async fn add_detached(engine: &Arc<Engine>, call: CniCall) -> Result<Vec<u8>, EngineError> {
    let cancel = CancellationToken::new();
    let _cancel_on_drop = cancel.clone().drop_guard();
    let engine = Arc::clone(engine);
    let task = async move { engine.add_cancellable(call, cancel).await };
    tokio::spawn(task.instrument(tracing::Span::current()))
        .await
        .map_err(|source| EngineError::Task {
            what: "ADD",
            source,
        })?
}

/// Fills the current span with a hot-plug request's container, interface and pod.
pub(crate) fn record_hotplug(call: &HotplugCall) {
    crate::layers::trace::record_call(&CniCall {
        command: call.command,
        container_id: call.container_id.clone(),
        netns: call.netns.clone(),
        ifname: call.ifname.clone(),
        args: call.args.clone(),
        config: Vec::new(),
    });
}

/// Checks a gRPC hot-plug request and turns it into the engine's call.
fn to_hotplug(command: Command, req: DelegateRequest) -> Result<HotplugCall, EngineError> {
    if req.protocol_version > PROTOCOL_VERSION {
        return Err(EngineError::ProtocolTooNew {
            requested: req.protocol_version,
            supported: PROTOCOL_VERSION,
        });
    }
    validate::id("container id", &req.container_id)?;
    if !req.ifname.is_empty() {
        validate::ifname(&req.ifname)?;
    }
    let network = match (req.network.trim().is_empty(), req.config.is_empty()) {
        (false, true) => HotplugNetwork::Selection(req.network),
        (true, false) => HotplugNetwork::Config {
            config: serde_json::from_slice(&req.config)
                .map_err(|e| EngineError::DecodeConfig(e.to_string()))?,
            selection: Box::default(),
        },
        _ => {
            return Err(EngineError::InvalidConfig(
                "exactly one of network (a selection element) and config must be set".into(),
            ));
        }
    };
    Ok(HotplugCall {
        command,
        container_id: req.container_id,
        netns: req.netns,
        ifname: req.ifname,
        args: CniArgs::parse(&req.cni_args_raw).map_err(EngineError::InvalidArgs)?,
        network,
    })
}

/// Checks the request and turns it into the engine's call.
pub(crate) fn to_call(command: Command, req: CniRequest) -> Result<CniCall, EngineError> {
    if req.protocol_version > PROTOCOL_VERSION {
        return Err(EngineError::ProtocolTooNew {
            requested: req.protocol_version,
            supported: PROTOCOL_VERSION,
        });
    }
    if command.is_per_container() {
        validate::id("container id", &req.container_id)?;
        validate::ifname(&req.ifname)?;
    }
    // The shim refuses a larger stdin itself; this holds for every other gRPC client.
    if req.config.len() > MAX_CONFIG_BYTES {
        return Err(EngineError::DecodeConfig(format!(
            "the config is {} bytes, larger than the {MAX_CONFIG_BYTES}-byte limit",
            req.config.len()
        )));
    }
    let args = if req.cni_args.is_empty() {
        CniArgs::parse(&req.cni_args_raw).map_err(EngineError::InvalidArgs)?
    } else {
        CniArgs::from_pairs(req.cni_args_raw, req.cni_args)
    };
    Ok(CniCall {
        command,
        container_id: req.container_id,
        netns: req.netns,
        ifname: req.ifname,
        args,
        config: req.config,
    })
}

/// The CNI error for an error: its code, message, and the plugin's details if any.
pub(crate) fn cni_error(e: &(impl CniCode + std::fmt::Display)) -> CniError {
    let details = e.cni_details().unwrap_or_default().to_owned();
    CniError::new(e.cni_code(), e.to_string()).with_details(details)
}

/// The gRPC status for an engine error, with the CNI error in its details.
pub fn to_status(e: &EngineError) -> Status {
    let cni = cni_error(e);
    let grpc = grpc_code(cni.code);
    Status::with_details(grpc, cni.msg.clone(), Bytes::from(cni.to_wire()))
}

/// As [`to_status`], for any error with a CNI code, under the given gRPC code.
pub fn status_with(e: &(impl CniCode + std::fmt::Display), grpc: tonic::Code) -> Status {
    let cni = cni_error(e);
    Status::with_details(grpc, cni.msg.clone(), Bytes::from(cni.to_wire()))
}

fn grpc_code(cni: u32) -> tonic::Code {
    match cni {
        code::INCOMPATIBLE_VERSION
        | code::UNSUPPORTED_FIELD
        | code::INVALID_ENV
        | code::DECODE_FAILURE
        | code::INVALID_NETWORK_CONFIG => tonic::Code::InvalidArgument,
        code::UNKNOWN_CONTAINER => tonic::Code::NotFound,
        code::TRY_AGAIN_LATER | code::PLUGIN_NOT_AVAILABLE | code::LIMITED_CONNECTIVITY => {
            tonic::Code::Unavailable
        }
        _ => tonic::Code::Internal,
    }
}

#[tonic::async_trait]
impl Cni for CniService {
    async fn add(&self, request: Request<CniRequest>) -> Result<Response<CniResponse>, Status> {
        self.serve(Command::Add, request).await
    }
    async fn del(&self, request: Request<CniRequest>) -> Result<Response<CniResponse>, Status> {
        self.serve(Command::Del, request).await
    }
    async fn check(&self, request: Request<CniRequest>) -> Result<Response<CniResponse>, Status> {
        self.serve(Command::Check, request).await
    }
    async fn status(&self, request: Request<CniRequest>) -> Result<Response<CniResponse>, Status> {
        self.serve(Command::Status, request).await
    }
    async fn gc(&self, request: Request<CniRequest>) -> Result<Response<CniResponse>, Status> {
        self.serve(Command::Gc, request).await
    }
    async fn add_delegate(
        &self,
        request: Request<DelegateRequest>,
    ) -> Result<Response<DelegateResponse>, Status> {
        self.serve_hotplug(Command::Add, request).await
    }
    async fn del_delegate(
        &self,
        request: Request<DelegateRequest>,
    ) -> Result<Response<DelegateResponse>, Status> {
        self.serve_hotplug(Command::Del, request).await
    }
    async fn check_delegate(
        &self,
        request: Request<DelegateRequest>,
    ) -> Result<Response<DelegateResponse>, Status> {
        self.serve_hotplug(Command::Check, request).await
    }
}

#[cfg(test)]
mod tests;
