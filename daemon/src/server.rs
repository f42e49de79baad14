//! The server on the daemon socket, composed in ONE function: the `Cni` service, gRPC health
//! and reflection (v1 and v1alpha), upstream's HTTP API beside them (HTTP/1.1 and HTTP/2 told
//! apart per connection, gRPC by its content type), the tower layer stack, and bounded graceful
//! shutdown.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use multus_proto::v1::cni_server::{Cni, CniServer};
use tokio::net::UnixListener;

use crate::http_api::{HttpApi, SplitLayer};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use tokio_stream::wrappers::UnixListenerStream;

/// How long in-flight requests may run on after a shutdown signal (upstream waits 10 s too).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The server failed to start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("building the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("serving gRPC on the daemon socket: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Serves `cni` behind `layers` on `listener` until `shutdown` resolves, then stops accepting,
/// lets in-flight requests finish for at most `grace`, and returns. Health follows `readiness`
/// (SERVING once the caches have synced and the indicator file exists) and turns NOT_SERVING
/// at the signal, so watchers on open connections see the drain.
pub async fn serve<T: Cni>(
    cni: T,
    http: HttpApi,
    listener: UnixListener,
    layers: crate::layers::Layers,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<(), ServerError> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(multus_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    // Older grpcurl releases speak only v1alpha.
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    // The reporter starts with "" SERVING: set the real state before the first connection.
    set_health::<T>(&health, http.readiness().serving()).await;
    let following = tokio::spawn(follow_readiness::<T>(
        health.clone(),
        http.readiness(),
        http.metrics(),
    ));

    // Outermost, the split: non-gRPC requests go to the HTTP API, which applies the same auth
    // policy itself (its refusals are HTTP 403, not gRPC statuses). Then `layers`
    // (crate::layers::stack): auth, trace, timeout, outermost first; they wrap the whole
    // router, so health and reflection are behind auth too.
    let draining = http.draining();
    let stack = tower::ServiceBuilder::new()
        .layer(SplitLayer::new(http))
        .layer(layers)
        .into_inner();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .accept_http1(true)
        .layer(stack)
        .add_service(CniServer::new(cni))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            let _ = stop_rx.await;
        });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return Ok(result?),
        () = shutdown => {}
    }
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "draining: no new connections, finishing in-flight requests"
    );
    draining.store(true, std::sync::atomic::Ordering::Relaxed);
    following.abort();
    // Awaited, so a health update it was making cannot land after the NOT_SERVING below.
    let _ = following.await;
    health.set_not_serving::<CniServer<T>>().await;
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let _ = stop_tx.send(());
    match tokio::time::timeout(grace, server).await {
        Ok(result) => Ok(result?),
        Err(_) => {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "grace period over: abandoning in-flight requests"
            );
            Ok(())
        }
    }
}

/// Keeps gRPC health (the `Cni` service and the server as a whole) and the readiness metrics on
/// what `readiness` says, woken by its changes only.
async fn follow_readiness<T: Cni>(
    health: tonic_health::server::HealthReporter,
    readiness: Arc<Readiness>,
    metrics: Metrics,
) {
    let mut changes = readiness.changes();
    let mut last = None;
    loop {
        let serving = readiness.serving();
        metrics.readiness(&readiness);
        if last != Some(serving) {
            set_health::<T>(&health, serving).await;
            tracing::info!(serving, synced = readiness.synced().is_synced(), "health");
            last = Some(serving);
        }
        changes.changed().await;
    }
}

async fn set_health<T: Cni>(health: &tonic_health::server::HealthReporter, serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    health.set_service_status("", status).await;
    if serving {
        health.set_serving::<CniServer<T>>().await;
    } else {
        health.set_not_serving::<CniServer<T>>().await;
    }
}
