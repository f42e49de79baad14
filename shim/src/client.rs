//! The one RPC to multus-daemon over `<daemonSocketDir>/multus.sock`, and the one place a gRPC
//! status without our details becomes a CNI error code.
use std::io;
use std::path::Path;
use std::time::Duration;

use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use multus_common::{CniError, Command, code};
use multus_proto::v1::{CniRequest, cni_client::CniClient};
use tokio::net::UnixStream;
use tonic::codegen::http::{Request, Uri};

/// The `:authority` of every call: never dialled (the bytes go down the unix stream).
const ORIGIN: &str = multus_proto::channel::PLACEHOLDER;

/// The shim's transport: hyper's HTTP/2 connection over the one unix stream, no tonic
/// `Channel` (its buffer task, reconnect and balancing machinery serve long-lived clients, not
/// one call: with the static VERSION answer, 87,936 bytes off the shipped shim).
type Sender = http2::SendRequest<tonic::body::Body>;

/// How long reaching the daemon may take before the runtime is told to try again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends `request` for `cmd` and returns the response's result bytes (empty except for ADD).
pub fn call(
    cmd: Command,
    socket: &Path,
    request: CniRequest,
    timeout: Duration,
) -> Result<Vec<u8>, CniError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!("starting the shim's runtime: {e}"),
            )
        })?;
    runtime.block_on(async {
        let sender = connect(socket).await?;
        let service = tower::service_fn(move |req: Request<tonic::body::Body>| {
            let mut sender = sender.clone();
            async move { sender.send_request(req).await }
        });
        let origin = Uri::from_static(ORIGIN);
        let mut client = CniClient::with_origin(service, origin);
        let trace = traceparent(&request);
        let mut req = tonic::Request::new(request);
        req.set_timeout(timeout);
        if let Some(tp) = trace {
            req.metadata_mut().insert("traceparent", tp);
        }
        let response = match cmd {
            Command::Add => client.add(req).await,
            Command::Del => client.del(req).await,
            Command::Check => client.check(req).await,
            Command::Status => client.status(req).await,
            Command::Gc => client.gc(req).await,
            Command::Version => {
                return Err(CniError::new(
                    code::INTERNAL,
                    "VERSION is answered by the shim",
                ));
            }
        };
        response.map(|r| r.into_inner().result).map_err(|status| {
            foreign_server(&status, socket).unwrap_or_else(|| to_cni_error(status))
        })
    })
}

/// A peer on the socket that breaks HTTP/2 (tonic's "h2 protocol error"), e.g. upstream's Go
/// daemon, which serves HTTP/1.1 only and answers the preface with a 400: retryable, as a
/// multus-rs daemon replaces it when the DaemonSet rolls over, and said in so many words.
fn foreign_server(status: &tonic::Status, socket: &Path) -> Option<CniError> {
    let protocol_error = CniError::from_wire(status.details())
        .filter(|e| e.code != 0)
        .is_none()
        && status.code() == tonic::Code::Internal
        && status.message().starts_with("h2 protocol error");
    protocol_error.then(|| {
        CniError::new(
            code::TRY_AGAIN_LATER,
            format!(
                "the server on {} does not speak multus-rs gRPC (an upstream Multus daemon still running there?): {}",
                socket.display(),
                status.message()
            ),
        )
    })
}

/// The runtime's W3C trace context, so the daemon's spans join the runtime's trace: CNI_ARGS
/// `TRACEPARENT` first, then the `TRACEPARENT` environment variable (OpenTelemetry's
/// environment carrier). A value that is not a valid header is left out, never an error.
fn traceparent(request: &CniRequest) -> Option<tonic::metadata::AsciiMetadataValue> {
    let value = request
        .cni_args
        .get("TRACEPARENT")
        .cloned()
        .or_else(|| std::env::var("TRACEPARENT").ok())?;
    value.trim().parse().ok()
}

/// Connects the unix socket ourselves (so a missing, refused or slow socket gets its own
/// message), then lets hyper run HTTP/2 over that one stream (its connection task spawned on the
/// runtime, ended when the runtime is dropped after the call).
async fn connect(socket: &Path) -> Result<Sender, CniError> {
    let shown = socket.display();
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(socket)).await {
        Err(_) => {
            let msg = format!(
                "timed out after {CONNECT_TIMEOUT:?} connecting to multus-daemon socket {shown}"
            );
            return Err(CniError::new(code::TRY_AGAIN_LATER, msg));
        }
        Ok(Err(e)) => return Err(connect_error(socket, &e)),
        Ok(Ok(stream)) => stream,
    };
    let handshake = http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(stream));
    let failed = |e: &dyn std::fmt::Display| {
        let msg = format!("HTTP/2 handshake with multus-daemon on {shown} failed: {e}");
        CniError::new(code::TRY_AGAIN_LATER, msg)
    };
    let (sender, connection) = match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Err(_) => return Err(failed(&format_args!("timed out after {CONNECT_TIMEOUT:?}"))),
        Ok(Err(e)) => return Err(failed(&e)),
        Ok(Ok(pair)) => pair,
    };
    // A connection error also fails the call in flight, which reports it: nothing to do here.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn connect_error(socket: &Path, e: &io::Error) -> CniError {
    let shown = socket.display();
    let msg = match e.kind() {
        io::ErrorKind::NotFound => {
            format!(
                "multus-daemon socket {shown} does not exist: is multus-daemon running on this node?"
            )
        }
        io::ErrorKind::ConnectionRefused => {
            format!(
                "connection refused on multus-daemon socket {shown}: is multus-daemon running on this node?"
            )
        }
        _ => format!("connecting to multus-daemon socket {shown}: {e}"),
    };
    CniError::new(code::TRY_AGAIN_LATER, msg)
}

/// The only place a gRPC status becomes a CNI error. The daemon's own errors travel in the
/// details and are returned unchanged; anything else is a transport or protocol failure.
pub fn to_cni_error(status: tonic::Status) -> CniError {
    if let Some(err) = CniError::from_wire(status.details()).filter(|e| e.code != 0) {
        return err;
    }
    let grpc = status.code();
    let cni_code = match grpc {
        // The daemon is restarting, overloaded or slow: the runtime should retry.
        tonic::Code::Unavailable
        | tonic::Code::DeadlineExceeded
        | tonic::Code::Cancelled
        | tonic::Code::ResourceExhausted
        // No details: not the daemon's answer but the transport's (the connection broke
        // mid-call, e.g. the daemon was killed or restarted).
        | tonic::Code::Unknown => code::TRY_AGAIN_LATER,
        // An older daemon without this verb: the runtime asked for something it cannot do
        // (the spec's "unsupported" for a verb is code 4, as for an unknown CNI_COMMAND).
        tonic::Code::Unimplemented => code::INVALID_ENV,
        _ => code::INTERNAL,
    };
    let msg = format!("multus-daemon answered gRPC {grpc:?}: {}", status.message());
    CniError::new(cni_code, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_comes_from_cni_args() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut req = CniRequest::default();
        req.cni_args.insert("TRACEPARENT".into(), tp.into());
        assert_eq!(traceparent(&req).unwrap().to_str().unwrap(), tp);
        req.cni_args
            .insert("TRACEPARENT".into(), "bad\nvalue".into());
        assert!(traceparent(&req).is_none());
    }

    #[test]
    fn statuses_map_to_one_code_each() {
        let cases = [
            (tonic::Code::Unavailable, code::TRY_AGAIN_LATER),
            (tonic::Code::DeadlineExceeded, code::TRY_AGAIN_LATER),
            (tonic::Code::Cancelled, code::TRY_AGAIN_LATER),
            (tonic::Code::Unknown, code::TRY_AGAIN_LATER),
            (tonic::Code::Unimplemented, code::INVALID_ENV),
            (tonic::Code::Internal, code::INTERNAL),
            (tonic::Code::PermissionDenied, code::INTERNAL),
        ];
        for (grpc, want) in cases {
            let e = to_cni_error(tonic::Status::new(grpc, "boom"));
            assert_eq!(e.code, want, "{grpc:?}");
            assert!(
                e.msg.contains("boom") && e.msg.contains(&format!("{grpc:?}")),
                "{}",
                e.msg
            );
        }
    }

    #[test]
    fn a_peer_breaking_http2_is_a_retryable_foreign_server() {
        let socket = Path::new("/run/multus/multus.sock");
        let e = foreign_server(
            &tonic::Status::internal("h2 protocol error: http2 error"),
            socket,
        )
        .unwrap();
        assert_eq!(e.code, code::TRY_AGAIN_LATER);
        assert!(e.msg.contains("/run/multus/multus.sock") && e.msg.contains("does not speak"));
        assert!(foreign_server(&tonic::Status::internal("boom"), socket).is_none());
    }

    #[test]
    fn daemon_errors_in_details_are_kept() {
        let inner = CniError::new(7, "no such NAD").with_details("ns/x");
        let status = tonic::Status::with_details(
            tonic::Code::FailedPrecondition,
            "x",
            inner.to_wire().into(),
        );
        assert_eq!(to_cni_error(status), inner);
    }

    #[test]
    fn missing_socket_is_code_11_naming_it() {
        let path = Path::new("/nonexistent-multus-test/multus.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(connect(path)).unwrap_err();
        assert_eq!(err.code, code::TRY_AGAIN_LATER);
        assert!(
            err.msg.contains("does not exist")
                && err.msg.contains("/nonexistent-multus-test/multus.sock")
        );
    }
}
