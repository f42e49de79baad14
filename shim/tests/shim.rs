//! Runs the built multus-shim binary with crafted env and stdin, alone and against a tiny Cni
//! service on a tempdir unix socket.
// Test helpers (not only #[test] fns) unwrap: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use multus_common::CniError;
use multus_proto::v1::cni_server::{Cni, CniServer};
use multus_proto::v1::{CniRequest, CniResponse};
use serde_json::{Value, json};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

const SHIM: &str = env!("CARGO_BIN_EXE_multus-shim");

fn shim(env: &[(&str, &str)], stdin: &str) -> Output {
    let mut child = Command::new(SHIM)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A plugin may exit without reading stdin (VERSION does): like Go's exec in libcni, a
    // runtime ignores the broken pipe and judges the plugin by its output and exit status.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    child.wait_with_output().unwrap()
}

fn add_env(cid: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", "/var/run/netns/test"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
        ("CNI_ARGS", "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"),
    ]
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn conf(dir: &Path, version: &str) -> String {
    json!({"cniVersion": version, "name": "multus", "type": "multus-shim", "daemonSocketDir": dir})
        .to_string()
}

#[test]
fn version_is_answered_locally() {
    let out = shim(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"1.1.0"}"#);
    assert!(out.status.success());
    let v = stdout_json(&out);
    assert_eq!(v["cniVersion"], "1.1.0");
    assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 7);
}

#[test]
fn no_command_prints_about_and_flag_prints_version() {
    let out = shim(&[], "");
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CNI protocol versions supported: 0.1.0")
    );
    let out = Command::new(SHIM).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("multus-shim version "));
}

#[test]
fn env_and_stdin_errors_carry_skels_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = conf(dir.path(), "1.0.0");
    // (env, stdin, expected code, text the message must contain)
    type Case<'a> = (Vec<(&'a str, &'a str)>, String, u64, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![("CNI_COMMAND", "ADD")],
            good.clone(),
            4,
            "CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH",
        ),
        (vec![("CNI_COMMAND", "FROB")], good.clone(), 4, "FROB"),
        (add_env("c1"), "not json".into(), 6, "unmarshall"),
        (
            add_env("c1"),
            r#"{"cniVersion":"1.0.0"}"#.into(),
            7,
            "missing network name",
        ),
        (add_env("c1"), conf(dir.path(), "7.0.0"), 1, "incompatible"),
        (
            vec![("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/x")],
            good.clone(),
            1,
            "STATUS",
        ),
    ];
    for (env, stdin, want, text) in cases {
        let out = shim(&env, &stdin);
        assert_eq!(out.status.code(), Some(1), "{env:?}");
        let v = stdout_json(&out);
        assert_eq!(v["code"], want, "{env:?} {v}");
        assert!(v["msg"].as_str().unwrap().contains(text), "{v}");
        assert!(!out.stderr.is_empty());
    }
}

#[test]
fn no_daemon_is_code_11_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let out = shim(&add_env("c1"), &conf(dir.path(), "0.3.1"));
    let v = stdout_json(&out);
    assert_eq!(v["code"], 11);
    assert_eq!(v["cniVersion"], "0.3.1");
    assert!(v["msg"].as_str().unwrap().contains("does not exist"), "{v}");
    // A socket file nobody listens on: refused.
    drop(std::os::unix::net::UnixListener::bind(dir.path().join("multus.sock")).unwrap());
    let v = stdout_json(&shim(&add_env("c1"), &conf(dir.path(), "0.3.1")));
    assert_eq!(v["code"], 11);
    assert!(v["msg"].as_str().unwrap().contains("refused"), "{v}");
}

/// Answers ADD with what it received; container `fail` gets a CNI error in the details.
struct Echo;

#[tonic::async_trait]
impl Cni for Echo {
    async fn add(&self, req: Request<CniRequest>) -> Result<Response<CniResponse>, Status> {
        let r = req.into_inner();
        if r.container_id == "fail" {
            let err = CniError::new(7, "network \"x\" not found").with_details("ns/x");
            return Err(Status::with_details(
                tonic::Code::FailedPrecondition,
                "ignored",
                err.to_wire().into(),
            ));
        }
        // An older or foreign daemon answering ADD without a CNI result.
        match r.container_id.as_str() {
            "empty" => return Ok(Response::new(CniResponse::default())),
            "garbled" => {
                return Ok(Response::new(CniResponse {
                    result: b"\x00\x01 not a result".to_vec(),
                }));
            }
            "array" => {
                return Ok(Response::new(CniResponse {
                    result: b"[1,2]".to_vec(),
                }));
            }
            _ => {}
        }
        let result = json!({
            "cniVersion": "1.0.0", "protocol": r.protocol_version, "cid": r.container_id, "netns": r.netns,
            "ifname": r.ifname, "argsRaw": r.cni_args_raw, "pod": r.cni_args.get("K8S_POD_NAME"),
            "path": r.cni_path, "config": String::from_utf8_lossy(&r.config),
        });
        Ok(Response::new(CniResponse {
            result: result.to_string().into_bytes(),
        }))
    }
    async fn del(&self, _: Request<CniRequest>) -> Result<Response<CniResponse>, Status> {
        Ok(Response::new(CniResponse::default()))
    }
    async fn check(&self, _: Request<CniRequest>) -> Result<Response<CniResponse>, Status> {
        Err(Status::unavailable("draining"))
    }
    async fn status(&self, _: Request<CniRequest>) -> Result<Response<CniResponse>, Status> {
        Err(Status::unimplemented("no STATUS here"))
    }
    async fn gc(&self, _: Request<CniRequest>) -> Result<Response<CniResponse>, Status> {
        Ok(Response::new(CniResponse::default()))
    }
}

/// Serves `Echo` on `<dir>/multus.sock` until dropped.
fn serve(dir: &Path) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener =
        rt.block_on(async { tokio::net::UnixListener::bind(dir.join("multus.sock")).unwrap() });
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(CniServer::new(Echo))
            .serve_with_incoming(UnixListenerStream::new(listener)),
    );
    rt
}

#[test]
fn results_and_daemon_errors_are_printed_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let _rt = serve(dir.path());
    let stdin = conf(dir.path(), "1.0.0");

    let out = shim(&add_env("c1"), &stdin);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout_json(&out);
    assert_eq!(v["protocol"], multus_proto::PROTOCOL_VERSION);
    assert_eq!(
        (v["cid"].as_str(), v["ifname"].as_str()),
        (Some("c1"), Some("eth0"))
    );
    assert_eq!(v["netns"], "/var/run/netns/test");
    assert_eq!(v["argsRaw"], "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p");
    assert_eq!(v["pod"], "p");
    assert_eq!(v["path"], "/opt/cni/bin");
    assert_eq!(v["config"], stdin.as_str());

    let out = shim(&add_env("fail"), &stdin);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout_json(&out),
        json!({"cniVersion": "1.0.0", "code": 7, "msg": "network \"x\" not found", "details": "ns/x"})
    );

    let mut del = add_env("c1");
    del[0].1 = "DEL";
    let out = shim(&del, &stdin);
    assert!(out.status.success() && out.stdout.is_empty());

    let mut check = add_env("c1");
    check[0].1 = "CHECK";
    assert_eq!(stdout_json(&shim(&check, &stdin))["code"], 11);

    let status_conf = conf(dir.path(), "1.1.0");
    let out = shim(
        &[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/x")],
        &status_conf,
    );
    let v = stdout_json(&out);
    assert_eq!(v["code"], 4);
    assert!(v["msg"].as_str().unwrap().contains("no STATUS here"));
    assert!(
        shim(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")], &status_conf)
            .status
            .success()
    );
}

#[test]
fn an_add_answer_that_is_not_a_cni_result_is_an_error_never_printed_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let _rt = serve(dir.path());
    let stdin = conf(dir.path(), "0.4.0");
    for cid in ["empty", "garbled", "array"] {
        let out = shim(&add_env(cid), &stdin);
        assert_eq!(out.status.code(), Some(1), "{cid}");
        let v = stdout_json(&out);
        assert_eq!(v["code"], 999, "{cid}: {v}");
        assert_eq!(v["cniVersion"], "0.4.0");
        let msg = v["msg"].as_str().unwrap();
        assert!(
            msg.contains("without a CNI result") && msg.contains("upgrade multus-daemon"),
            "{cid}: {msg}"
        );
    }
    // DEL answers nothing, and that is right.
    let mut del = add_env("empty");
    del[0].1 = "DEL";
    let out = shim(&del, &stdin);
    assert!(out.status.success() && out.stdout.is_empty());
}
