//! The daemon binary's startup: a bad config value stops it with exit 1 naming the key before
//! it talks to anything.
#![allow(clippy::unwrap_used)]

use std::io::ErrorKind;
use std::net::TcpListener;
use std::process::Command;

/// A wrong `metricsBindAddress` used to be found only when the metrics listener was bound,
/// after the Kubernetes client had started, and exited 3. It is a config error now: exit 1,
/// the key named, and not one connection made to the API server the kubeconfig names.
#[test]
fn bad_metrics_bind_address_is_exit_1_before_any_client_connects() {
    let dir = tempfile::tempdir().unwrap();
    let api = TcpListener::bind("127.0.0.1:0").unwrap();
    api.set_nonblocking(true).unwrap();
    let port = api.local_addr().unwrap().port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let config = dir.path().join("daemon-config.json");
    let body = serde_json::json!({
        "socketDir": dir.path(), "cniDir": dir.path().join("cni"),
        "kubeconfig": kubeconfig, "metricsPort": 0, "metricsBindAddress": "not-an-ip",
        "logToStderr": true, "logLevel": "debug",
    });
    std::fs::write(&config, body.to_string()).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_multus-daemon"))
        .arg("-config")
        .arg(&config)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("metricsBindAddress"), "{stderr}");
    assert!(stderr.contains("not-an-ip"), "{stderr}");
    match api.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the daemon connected to the API server: {other:?}\n{stderr}"),
    }
}
