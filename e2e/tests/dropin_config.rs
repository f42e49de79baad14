//! Daemon configs that upstream Multus accepts run our daemon too (drop-in item D-7).
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use multus_e2e::{daemon::Daemon, daemon::Layout, netns::Netns};
use serde_json::json;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The daemon's overall health status, asked over its socket as a kubelet probe would.
fn health(socket: &Path) -> ServingStatus {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = multus_proto::channel::unix(socket, Duration::from_secs(5))
            .await
            .unwrap();
        let reply = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .unwrap();
        ServingStatus::try_from(reply.into_inner().status).unwrap()
    })
}

/// D-7: at `logLevel: error` (and `panic`, `warn`) the daemon used to exit 0 at once, because
/// the shutdown signal was awaited inside a `tracing::info!` field that is not evaluated when
/// info is off. Every level upstream accepts must serve until SIGTERM, then exit 0; so must
/// `""` (the default) and a name upstream does not know (ignored with a warning).
#[test]
fn d7_every_upstream_log_level_serves() {
    let node = Netns::new("mrsd7l").unwrap();
    for level in [
        "panic", "error", "warn", "warning", "info", "verbose", "debug",
    ] {
        let layout = Layout::new().unwrap();
        let mut config = layout.config("cluster");
        config.insert("logLevel".into(), json!(level));
        let mut daemon = Daemon::start(&node, &layout, &config).unwrap();
        assert_eq!(
            health(&daemon.socket()),
            ServingStatus::Serving,
            "logLevel {level}"
        );
        // Still serving a moment later: the early exit happened right after binding.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            health(&daemon.socket()),
            ServingStatus::Serving,
            "logLevel {level}"
        );
        if level == "loud" {
            assert!(
                daemon.log_text().contains("cannot set logging level"),
                "{}",
                daemon.log_text()
            );
        }
        let status = daemon.stop().unwrap().expect("the daemon was running");
        assert!(
            status.success(),
            "logLevel {level}: SIGTERM exit {status}\n{}",
            daemon.log_text()
        );
    }
}
