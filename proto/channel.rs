//! The one way to open a gRPC channel over a unix socket (the daemon's socket, the kubelet's
//! PodResources socket): tonic dials TCP only, so a connector hands it the unix stream.
use std::io;
use std::path::Path;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Error, Uri};

/// Never dialled: the connector decides where the bytes go; it is only the HTTP/2 `:authority`
/// (the shim's own connection uses it too).
pub const PLACEHOLDER: &str = "http://[::1]:50051";

/// A channel that connects to `socket` (and reconnects when the connection drops), with the
/// connect and every call bounded by `timeout`.
pub async fn unix(socket: &Path, timeout: Duration) -> Result<Channel, Error> {
    let path = socket.to_owned();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    });
    Endpoint::from_static(PLACEHOLDER)
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(connector)
        .await
}

/// Like [`unix`], but dialled on first use (and on every reconnect), so a caller can build it
/// before the server is up and poll through it; `call_timeout` bounds every call.
pub fn unix_lazy(socket: &Path, connect_timeout: Duration, call_timeout: Duration) -> Channel {
    let path = socket.to_owned();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    });
    Endpoint::from_static(PLACEHOLDER)
        .connect_timeout(connect_timeout)
        .timeout(call_timeout)
        .connect_with_connector_lazy(connector)
}
