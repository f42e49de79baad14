//! The tower layers around every gRPC request on the daemon socket, composed in [`stack`],
//! outermost first: `auth` (who may call), `trace` (one span and one metrics sample per RPC),
//! `timeout` (the one per-verb deadline). Delegate admission (per-container lock, bounded delegate
//! slots) stays inside the engine, where the container id is known; its queue wait is measured
//! there and surfaces as the `admission.wait` span and the `multus_rs_queue_wait` histogram.
pub mod auth;
pub mod timeout;
pub mod trace;

use std::future::Future;
use std::pin::Pin;

use multus_common::Command;
use tower::layer::util::{Identity, Stack};

use crate::config::Config;
use crate::metrics::Metrics;

pub use auth::{AuthLayer, AuthPolicy};
pub use timeout::{Deadlines, TimeoutLayer};
pub use trace::TraceLayer;

/// The response future of every layer here (requests are few and slow next to a box).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// gRPC method path prefix of the CNI service.
const CNI_PATH: &str = "/multus.cni.v1.Cni/";

/// The CNI verb a request path calls; `None` for health, reflection and unknown paths.
pub fn verb(path: &str) -> Option<Command> {
    Some(match path.strip_prefix(CNI_PATH)? {
        "Add" => Command::Add,
        "Del" => Command::Del,
        "Check" => Command::Check,
        "Status" => Command::Status,
        "Gc" => Command::Gc,
        // Hot-plug: one delegate, bounded and counted like its verb.
        "AddDelegate" => Command::Add,
        "DelDelegate" => Command::Del,
        "CheckDelegate" => Command::Check,
        _ => return None,
    })
}

/// The layer stack, outermost first.
pub type Layers = Stack<TimeoutLayer, Stack<TraceLayer, Stack<AuthLayer, Identity>>>;

/// Builds the stack from the config: auth first so a refused caller costs nothing and is
/// never traced as a CNI request; trace outside timeout so an expired request is still one
/// span and one sample with its code 11; timeout innermost so it bounds only the work.
pub fn stack(config: &Config, metrics: Metrics) -> Layers {
    tower::ServiceBuilder::new()
        .layer(AuthLayer::new(
            AuthPolicy::from_config(config),
            metrics.clone(),
        ))
        .layer(TraceLayer::new(metrics))
        .layer(TimeoutLayer::new(Deadlines::from_config(config)))
        .into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_verbs() {
        let cases = [
            ("/multus.cni.v1.Cni/Add", Some(Command::Add)),
            ("/multus.cni.v1.Cni/Gc", Some(Command::Gc)),
            ("/multus.cni.v1.Cni/AddDelegate", Some(Command::Add)),
            ("/multus.cni.v1.Cni/Nope", None),
            ("/grpc.health.v1.Health/Check", None),
        ];
        for (path, want) in cases {
            assert_eq!(verb(path), want, "{path}");
        }
    }
}
