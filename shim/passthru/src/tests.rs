#![allow(clippy::unwrap_used)]
use super::*;

fn env(command: &str) -> Env {
    Env {
        command: Some(command.into()),
        container_id: Some("c0ffee".into()),
        netns: Some("/var/run/netns/x".into()),
        ifname: Some("eth0".into()),
        path: Some("/opt/cni/bin".into()),
    }
}

fn invoke(env: &Env, conf: &Value) -> Outcome {
    let bytes = conf.to_string().into_bytes();
    run(env, || Ok(bytes))
}

fn stdout_json(out: Outcome) -> Value {
    match out {
        Outcome::Stdout(s) => serde_json::from_str(&s).unwrap(),
        other => panic!("not a success: {other:?}"),
    }
}

fn error_code(out: Outcome) -> u32 {
    match out {
        Outcome::Error(e, _) => e.code,
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn add_without_prev_result_is_upstreams_empty_result_in_the_conf_version() {
    for v in SUPPORTED {
        let out = invoke(
            &env("ADD"),
            &json!({"cniVersion": v, "name": "aux", "type": "passthru"}),
        );
        assert_eq!(stdout_json(out), json!({"cniVersion": v, "dns": {}}), "{v}");
    }
}

#[test]
fn add_passes_prev_result_through_in_the_conf_version() {
    let prev = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/x"}],
        "ips": [{"address": "10.1.0.5/24", "interface": 0}]
    });
    let conf =
        json!({"cniVersion": "0.4.0", "name": "aux", "type": "passthru", "prevResult": prev});
    let got = stdout_json(invoke(&env("ADD"), &conf));
    assert_eq!(got["cniVersion"], "0.4.0");
    assert_eq!(got["ips"][0]["address"], "10.1.0.5/24");
    assert_eq!(got["ips"][0]["version"], "4");
    assert_eq!(got["interfaces"], prev["interfaces"]);
}

#[test]
fn del_check_gc_status_succeed_silently() {
    let conf = json!({"cniVersion": "1.1.0", "name": "aux", "type": "passthru"});
    for verb in ["DEL", "CHECK", "GC", "STATUS"] {
        assert_eq!(
            invoke(&env(verb), &conf),
            Outcome::Stdout(String::new()),
            "{verb}"
        );
    }
    // DEL needs no netns; GC and STATUS no container.
    let mut bare = Env {
        command: Some("DEL".into()),
        container_id: Some("c".into()),
        ifname: Some("eth0".into()),
        path: Some("/p".into()),
        ..Env::default()
    };
    assert_eq!(invoke(&bare, &conf), Outcome::Stdout(String::new()));
    bare.command = Some("GC".into());
    bare.container_id = None;
    bare.ifname = None;
    assert_eq!(invoke(&bare, &conf), Outcome::Stdout(String::new()));
}

#[test]
fn version_answers_upstreams_list_without_reading_stdin() {
    let out = run(&env("VERSION"), || panic!("VERSION must not read stdin"));
    assert_eq!(
        stdout_json(out),
        json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
}

#[test]
fn skel_checks_come_first() {
    let ok = json!({"cniVersion": "1.0.0", "name": "aux", "type": "passthru"});
    let mut no_netns = env("ADD");
    no_netns.netns = None;
    no_netns.path = None;
    match invoke(&no_netns, &ok) {
        Outcome::Error(e, _) => {
            assert_eq!(e.code, code::INVALID_ENV);
            assert_eq!(e.msg, "required env variables [CNI_NETNS,CNI_PATH] missing");
        }
        other => panic!("{other:?}"),
    }
    let mut bad_id = env("ADD");
    bad_id.container_id = Some("../etc".into());
    assert_eq!(error_code(invoke(&bad_id, &ok)), code::INVALID_ENV);
    let mut bad_if = env("ADD");
    bad_if.ifname = Some("a/b".into());
    assert_eq!(error_code(invoke(&bad_if, &ok)), code::INVALID_ENV);
    assert_eq!(
        error_code(run(&env("ADD"), || Ok(b"{not json".to_vec()))),
        code::DECODE_FAILURE
    );
    assert_eq!(
        error_code(invoke(&env("ADD"), &json!({"cniVersion": "1.0.0"}))),
        code::INVALID_NETWORK_CONFIG
    );
    assert_eq!(
        error_code(invoke(
            &env("ADD"),
            &json!({"cniVersion": "1.0.0", "name": "a b"})
        )),
        code::INVALID_NETWORK_CONFIG
    );
    assert_eq!(error_code(invoke(&env("BOGUS"), &ok)), code::INVALID_ENV);
}

#[test]
fn versions_upstream_refuses_are_refused() {
    // No cniVersion reads as 0.1.0, which upstream's passthru does not support.
    for conf in [
        json!({"name": "aux"}),
        json!({"cniVersion": "0.2.0", "name": "aux"}),
        json!({"cniVersion": "9.9.9", "name": "aux"}),
    ] {
        match invoke(&env("ADD"), &conf) {
            Outcome::Error(e, _) => {
                assert_eq!(e.code, code::INCOMPATIBLE_VERSION, "{conf}");
                assert_eq!(e.msg, "incompatible CNI versions");
            }
            other => panic!("{conf}: {other:?}"),
        }
    }
    let old = json!({"cniVersion": "0.3.1", "name": "aux"});
    match invoke(&env("CHECK"), &old) {
        Outcome::Error(e, v) => {
            assert_eq!(e.msg, "config version does not allow CHECK");
            assert_eq!(v, "0.3.1", "the error is in the conf's version");
        }
        other => panic!("{other:?}"),
    }
    let v100 = json!({"cniVersion": "1.0.0", "name": "aux"});
    assert_eq!(
        error_code(invoke(&env("STATUS"), &v100)),
        code::INCOMPATIBLE_VERSION
    );
}

#[test]
fn no_command_prints_the_about_text() {
    match run(&Env::default(), || panic!("no stdin read")) {
        Outcome::About(text) => {
            assert!(text.starts_with(ABOUT), "{text}");
            assert!(text.contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"));
        }
        other => panic!("{other:?}"),
    }
}
