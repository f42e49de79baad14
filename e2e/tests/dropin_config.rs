//! Daemon configs that upstream Multus accepts run our daemon too (drop-in item D-7).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use multus_e2e::probe::{ServingStatus, health};
use multus_e2e::{daemon::Daemon, daemon::Layout, netns::Netns};
use serde_json::json;

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
