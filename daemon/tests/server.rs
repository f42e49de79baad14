//! The daemon process in-process on a tempdir socket: gRPC health and reflection (v1 and
//! v1alpha), a live socket never taken by a second daemon, a stale one replaced, and a graceful
//! stop that removes the socket file.
// Test helpers (not only #[test] fns) unwrap: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use multus_daemon::app::{App, AppError};
use multus_daemon::config::Config;
use multus_daemon::socket::SocketError;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const CNI_SERVICE: &str = "multus.cni.v1.Cni";

/// A standalone-mode config with everything under `dir`.
fn config(dir: &Path) -> Config {
    std::fs::create_dir_all(dir.join("state")).unwrap();
    Config {
        socket_dir: dir.join("run"),
        cluster_state_dir: Some(dir.join("state")),
        cni_dir: dir.join("cache"),
        conf_dir: dir.join("net.d"),
        ..Config::default()
    }
}

/// Builds and runs the daemon; send on the returned sender to stop it.
async fn start(config: Config) -> (oneshot::Sender<()>, JoinHandle<Result<(), AppError>>) {
    let app = App::build(config).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    (stop, task)
}

async fn channel(socket: PathBuf) -> Channel {
    multus_proto::channel::unix(&socket, Duration::from_secs(10))
        .await
        .unwrap()
}

async fn health(channel: Channel, service: &str) -> ServingStatus {
    let request = HealthCheckRequest {
        service: service.into(),
    };
    let status = HealthClient::new(channel)
        .check(request)
        .await
        .unwrap()
        .into_inner()
        .status;
    ServingStatus::try_from(status).unwrap()
}

/// Lists services through one reflection version (the two are the same shape in two packages).
macro_rules! list_services {
    ($pb:path, $channel:expr) => {{
        use pb::server_reflection_request::MessageRequest;
        use pb::server_reflection_response::MessageResponse;
        use $pb as pb;
        let request = pb::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut client = pb::server_reflection_client::ServerReflectionClient::new($channel);
        let mut answers = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        match answers
            .message()
            .await
            .unwrap()
            .and_then(|m| m.message_response)
        {
            Some(MessageResponse::ListServicesResponse(list)) => list
                .service
                .into_iter()
                .map(|s| s.name)
                .collect::<Vec<String>>(),
            other => panic!("unexpected reflection answer {other:?}"),
        }
    }};
}

#[tokio::test]
async fn health_reflection_live_socket_and_graceful_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());
    let socket = config.socket_path();
    let (stop, task) = start(config.clone()).await;

    let ch = channel(socket.clone()).await;
    assert_eq!(health(ch.clone(), "").await, ServingStatus::Serving);
    assert_eq!(
        health(ch.clone(), CNI_SERVICE).await,
        ServingStatus::Serving
    );
    let v1 = list_services!(tonic_reflection::pb::v1, ch.clone());
    let v1alpha = list_services!(tonic_reflection::pb::v1alpha, ch.clone());
    for names in [&v1, &v1alpha] {
        assert!(names.iter().any(|n| n == CNI_SERVICE), "{names:?}");
        assert!(
            names.iter().any(|n| n == "grpc.health.v1.Health"),
            "{names:?}"
        );
    }

    // A second daemon on the same live socket is refused and leaves it alone.
    match App::build(config).await {
        Err(AppError::Socket(SocketError::InUse { path })) => assert_eq!(path, socket),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a second daemon took a live socket"),
    }
    assert_eq!(
        health(channel(socket.clone()).await, "").await,
        ServingStatus::Serving
    );

    drop(ch);
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(!socket.exists(), "the socket file outlived the daemon");
}

#[tokio::test]
async fn stale_socket_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let config = config(tmp.path());
    let socket = config.socket_path();
    std::fs::create_dir_all(&config.socket_dir).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());

    let (stop, task) = start(config).await;
    assert_eq!(
        health(channel(socket.clone()).await, CNI_SERVICE).await,
        ServingStatus::Serving
    );
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(!socket.exists());
}

#[test]
fn binary_flags_and_config_errors() {
    let bin = env!("CARGO_BIN_EXE_multus-daemon");
    let out = std::process::Command::new(bin)
        .arg("-version")
        .output()
        .unwrap();
    // Upstream's -version (D-17): its line and exit code 4.
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("multus-daemon: version:"));

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("daemon-config.json");
    std::fs::write(&path, r#"{"metricsPort": "nine"}"#).unwrap();
    let out = std::process::Command::new(bin)
        .arg(format!("-config={}", path.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("metricsPort"));

    let out = std::process::Command::new(bin)
        .arg("-nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
