use std::collections::HashMap;

use super::wire::{ShimRequest, k8s_args, target};
use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn a_go_shim_request_decodes_env_and_base64_config() {
    // What upstream's Go shim marshals: env map, []byte config as base64, no attributes.
    let body = r#"{"env":{"CNI_COMMAND":"ADD","CNI_CONTAINERID":"c1","CNI_NETNS":"/run/netns/x","CNI_IFNAME":"eth0","CNI_ARGS":"K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"},"config":"eyJjbmlWZXJzaW9uIjoiMC4zLjEifQ=="}"#;
    let req: ShimRequest = serde_json::from_str(body).unwrap();
    assert_eq!(
        req.config.as_deref(),
        Some(&br#"{"cniVersion":"0.3.1"}"#[..])
    );
    let call = cni_call(&req).unwrap();
    assert_eq!(call.command, Command::Add);
    assert_eq!(call.container_id, "c1");
    assert_eq!(call.args.get("K8S_POD_NAME"), Some("p"));
    assert_eq!(stdin_version(&call.config), "0.3.1");
}

#[test]
fn extraction_errors_keep_upstreams_words() {
    let cases = [
        (
            env(&[]),
            "could not extract the CNI command args: unexpected or missing CNI_COMMAND",
        ),
        (
            env(&[("CNI_COMMAND", "ADD"), ("CNI_NETNS", "n"), ("CNI_ARGS", "")]),
            "could not extract the CNI command args: missing CNI_CONTAINERID",
        ),
        (
            env(&[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_NETNS", "n"),
                ("CNI_ARGS", "K8S_POD_NAME=p;"),
            ]),
            "could not extract the kubernetes runtime args: invalid CNI_ARG ''",
        ),
        (
            env(&[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c"),
                ("CNI_NETNS", "n"),
                ("CNI_ARGS", "K8S_POD_NAME=p"),
            ]),
            "could not extract the kubernetes runtime args: missing K8S_POD_NAMESPACE",
        ),
        (env(&[("CNI_COMMAND", "FOO")]), "unknown cmd type: FOO"),
    ];
    for (env, want) in cases {
        let req = ShimRequest {
            env,
            ..Default::default()
        };
        assert_eq!(cni_call(&req).unwrap_err(), want);
    }
}

#[test]
fn ifname_defaults_to_eth0_and_status_needs_no_container() {
    let t = target(&env(&[
        ("CNI_CONTAINERID", "c"),
        ("CNI_NETNS", ""),
        ("CNI_ARGS", ""),
    ]))
    .unwrap();
    assert_eq!(t.ifname, "eth0");
    let req = ShimRequest {
        env: env(&[("CNI_COMMAND", "STATUS")]),
        config: Some(b"{}".to_vec()),
        ..Default::default()
    };
    assert_eq!(cni_call(&req).unwrap().command, Command::Status);
    assert!(k8s_args(&env(&[("CNI_ARGS", "a=b=c")])).is_err());
}

#[test]
fn delegate_attributes_become_the_selection() {
    let body = r#"{"env":{"CNI_COMMAND":"ADD","CNI_CONTAINERID":"c1","CNI_NETNS":"/n","CNI_IFNAME":"net1","CNI_ARGS":"K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_UID=u"},"config":"eyJuYW1lIjoibSIsInR5cGUiOiJtYWN2bGFuIn0=","interfaceAttributes":{"ips":["10.1.1.5/24"],"mac":"02:00:00:00:00:01","cni-args":null}}"#;
    let req: ShimRequest = serde_json::from_str(body).unwrap();
    let call = hotplug_call(&req).unwrap().unwrap();
    assert_eq!(call.ifname, "net1");
    let HotplugNetwork::Config { config, selection } = call.network else {
        panic!("not a config");
    };
    assert_eq!(config["type"], "macvlan");
    assert_eq!(selection.ips, vec!["10.1.1.5/24".to_owned()]);
    assert_eq!(selection.mac, "02:00:00:00:00:01");
    let gc = ShimRequest {
        env: env(&[("CNI_COMMAND", "GC")]),
        ..Default::default()
    };
    assert!(
        hotplug_call(&gc)
            .unwrap_err()
            .starts_with("unknown cmd type: GC")
    );
}

#[test]
fn only_grpc_content_types_go_to_tonic() {
    let req = |ct: &str| {
        Request::builder()
            .header("content-type", ct)
            .body(())
            .unwrap()
    };
    assert!(is_grpc(&req("application/grpc")));
    assert!(is_grpc(&req("application/grpc+proto")));
    assert!(!is_grpc(&req("application/json")));
    assert!(!is_grpc(&Request::new(())));
}

#[test]
fn cni_errors_are_400_json_without_empty_details() {
    let resp = cni_failure(&CniError::new(7, "bad"));
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()["content-type"], "application/json");
}
