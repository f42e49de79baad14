//! Service tests: request validation, the CNI code of every kind of engine error, and a real
//! request through the trait to an engine over a fake plugin.
use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::config::Config;
use crate::engine::admission::AdmissionError;
use crate::engine::conflist::ConflistError;
use crate::engine::exec::ExecError;
use crate::engine::fakeplugin::{ECHO_RESULT, FakePlugins};
use crate::engine::plan::PlanError;
use crate::source::PodInfo;
use crate::source::SourceError;
use crate::source::memory::MemSource;

fn request(protocol_version: u32, id: &str, ifname: &str) -> CniRequest {
    CniRequest {
        protocol_version,
        container_id: id.into(),
        netns: "/run/netns/x".into(),
        ifname: ifname.into(),
        cni_args_raw: "K8S_POD_NAMESPACE=app;K8S_POD_NAME=web".into(),
        cni_args: HashMap::new(),
        cni_path: String::new(),
        config: json!({"cniVersion": "1.0.0", "name": "multus", "type": "multus-shim"})
            .to_string()
            .into_bytes(),
    }
}

fn decoded(s: &Status) -> CniError {
    CniError::from_wire(s.details()).expect("CNI error in details")
}

#[test]
fn requests_are_validated() {
    let ok = to_call(Command::Add, request(0, "c1", "eth0")).unwrap();
    assert_eq!(ok.args.get("K8S_POD_NAME"), Some("web"));
    assert!(to_call(Command::Add, request(PROTOCOL_VERSION, "c1", "eth0")).is_ok());
    let cases = [
        (
            request(PROTOCOL_VERSION + 1, "c1", "eth0"),
            Command::Add,
            code::TRY_AGAIN_LATER,
            tonic::Code::Unavailable,
        ),
        (
            request(1, "../etc", "eth0"),
            Command::Add,
            code::INVALID_ENV,
            tonic::Code::InvalidArgument,
        ),
        (
            request(1, "c1", "a/b"),
            Command::Del,
            code::INVALID_ENV,
            tonic::Code::InvalidArgument,
        ),
        (
            request(1, "", "eth0"),
            Command::Check,
            code::INVALID_ENV,
            tonic::Code::InvalidArgument,
        ),
    ];
    for (req, command, want, grpc) in cases {
        let status = to_status(&to_call(command, req).unwrap_err());
        assert_eq!(
            (decoded(&status).code, status.code()),
            (want, grpc),
            "{}",
            status.message()
        );
    }
    let too_new = to_status(&to_call(Command::Add, request(7, "c1", "eth0")).unwrap_err());
    assert!(
        too_new.message().contains('7')
            && too_new.message().contains(&PROTOCOL_VERSION.to_string())
    );
    // STATUS and GC carry no container.
    assert!(to_call(Command::Gc, request(1, "", "")).is_ok());
    let mut bad_args = request(1, "c1", "eth0");
    bad_args.cni_args_raw = "junk".into();
    assert_eq!(
        decoded(&to_status(&to_call(Command::Add, bad_args).unwrap_err())).code,
        code::INVALID_ENV
    );
}

/// Issue 12: a config past the documented limit is a decode error naming the limit, from any
/// gRPC client (the shim refuses it before sending).
#[test]
fn oversized_config_is_code_6() {
    let mut big = request(1, "c1", "eth0");
    big.config = vec![b' '; MAX_CONFIG_BYTES + 1];
    let err = decoded(&to_status(&to_call(Command::Add, big).unwrap_err()));
    assert_eq!(err.code, code::DECODE_FAILURE);
    assert!(
        err.msg.contains(&MAX_CONFIG_BYTES.to_string()),
        "{}",
        err.msg
    );
}

fn delegate_error(source: ConflistError) -> EngineError {
    EngineError::Delegate {
        name: "default/macvlan-net".into(),
        plugin: "macvlan".into(),
        ifname: "net1".into(),
        source: Box::new(source),
    }
}

fn exec_error(source: ExecError) -> EngineError {
    delegate_error(ConflistError::Exec {
        plugin: "macvlan".into(),
        network: "m".into(),
        command: "ADD",
        source: Box::new(source),
    })
}

#[test]
fn every_error_kind_gets_its_code() {
    let unavailable = || SourceError::Unavailable {
        what: "pod".into(),
        reason: "timeout".into(),
    };
    let plugin_err = CniError::new(107, "no addresses").with_details("pool empty");
    let cases: Vec<(EngineError, u32, tonic::Code)> = vec![
        (
            EngineError::DecodeConfig("x".into()),
            6,
            tonic::Code::InvalidArgument,
        ),
        (
            EngineError::Plan(PlanError::DecodeConfig("x".into())),
            6,
            tonic::Code::InvalidArgument,
        ),
        (
            EngineError::Plan(PlanError::NadNotFound {
                namespace: "a".into(),
                name: "b".into(),
            }),
            7,
            tonic::Code::InvalidArgument,
        ),
        (
            EngineError::Plan(PlanError::MissingArg("K8S_POD_NAME")),
            4,
            tonic::Code::InvalidArgument,
        ),
        (
            EngineError::Plan(PlanError::Source {
                what: "pod".into(),
                source: unavailable(),
            }),
            11,
            tonic::Code::Unavailable,
        ),
        (
            EngineError::Admission(AdmissionError::NoDelegateSlot {
                limit: 2,
                waited_ms: 5,
            }),
            11,
            tonic::Code::Unavailable,
        ),
        (
            EngineError::UnknownContainer("c".into()),
            3,
            tonic::Code::NotFound,
        ),
        (
            EngineError::Unavailable("not ready".into()),
            50,
            tonic::Code::Unavailable,
        ),
        (
            exec_error(ExecError::Plugin {
                plugin: "macvlan".into(),
                error: plugin_err.clone(),
            }),
            107,
            tonic::Code::Internal,
        ),
        (
            exec_error(ExecError::NotFound {
                plugin: "macvlan".into(),
                bin_dir: "/opt/cni/bin".into(),
            }),
            7,
            tonic::Code::InvalidArgument,
        ),
        (
            exec_error(ExecError::Timeout {
                plugin: "macvlan".into(),
                seconds: 60,
            }),
            999,
            tonic::Code::Internal,
        ),
        (
            delegate_error(ConflistError::CheckUnsupported("0.3.1".into())),
            1,
            tonic::Code::InvalidArgument,
        ),
        (
            EngineError::NetworkStatus {
                pod: "a/b".into(),
                source: unavailable(),
            },
            11,
            tonic::Code::Unavailable,
        ),
        (
            EngineError::Internal("x".into()),
            999,
            tonic::Code::Internal,
        ),
        (
            EngineError::Several(
                vec![
                    EngineError::UnknownContainer("c".into()),
                    EngineError::Internal("y".into()),
                ]
                .into(),
            ),
            3,
            tonic::Code::NotFound,
        ),
    ];
    for (err, want, grpc) in cases {
        let status = to_status(&err);
        let cni = decoded(&status);
        assert_eq!((cni.code, status.code()), (want, grpc), "{err}");
        assert_eq!(cni.msg, err.to_string());
    }
    let status = to_status(&exec_error(ExecError::Plugin {
        plugin: "macvlan".into(),
        error: plugin_err,
    }));
    assert!(
        status
            .message()
            .starts_with("delegate \"default/macvlan-net\" (plugin macvlan, net1): "),
        "{}",
        status.message()
    );
    assert_eq!(decoded(&status).details, "pool empty");
}

/// The pod `request` names, with no annotations.
fn one_pod() -> MemSource {
    MemSource {
        pods: vec![PodInfo {
            namespace: "app".into(),
            name: "web".into(),
            uid: "u".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn add_and_del_through_the_service() {
    let plugins = FakePlugins::new();
    plugins.add("first", ECHO_RESULT);
    let cni_dir = tempfile::tempdir().unwrap();
    let config = Config {
        cni_dir: cni_dir.path().to_owned(),
        delegates: vec![json!({"cniVersion": "1.0.0", "name": "cluster", "type": "first"})],
        ..plugins.config()
    };
    let devices = Arc::new(crate::kubelet::Kubelet::from_config(&config));
    let engine = Arc::new(Engine::new(Arc::new(config), Arc::new(one_pod()), devices).unwrap());
    let svc = CniService::new(engine);
    let mut req = request(1, "c1", "eth0");
    // ADD's validateIfName pre-check needs a namespace that exists.
    req.netns = crate::engine::fakeplugin::empty_netns();
    req.config = json!({"cniVersion": "0.4.0", "name": "multus", "type": "multus-shim"})
        .to_string()
        .into_bytes();
    let result = svc
        .add(Request::new(req.clone()))
        .await
        .unwrap()
        .into_inner()
        .result;
    let v: serde_json::Value = serde_json::from_slice(&result).unwrap();
    assert_eq!(v["cniVersion"], "0.4.0");
    assert!(cni_dir.path().join("c1").exists());
    assert!(
        svc.del(Request::new(req.clone()))
            .await
            .unwrap()
            .into_inner()
            .result
            .is_empty()
    );
    assert!(!cni_dir.path().join("c1").exists());
    let status = svc.check(Request::new(req)).await.unwrap_err();
    assert_eq!(
        (status.code(), decoded(&status).code),
        (tonic::Code::NotFound, code::UNKNOWN_CONTAINER)
    );
}
