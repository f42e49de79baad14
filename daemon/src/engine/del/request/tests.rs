//! D-5: the DEL request's runtimeConfig, device-info files and cniVersion for cached records.
use std::path::Path;

use serde_json::json;

use super::*;
use crate::engine::Delegate;
use crate::engine::cache::{Entry, SCHEMA_VERSION, State};

fn delegate(name: &str, ifname: &str, config: Value, caps: Value) -> Entry {
    Entry {
        delegate: Delegate {
            name: name.into(),
            ifname: ifname.into(),
            config: config.try_into().unwrap(),
            capability_args: caps.as_object().cloned().unwrap(),
            cni_args: String::new(),
            is_default: ifname == "eth0",
            default_route: None,
        },
        state: State::Added,
        result: None,
    }
}

fn record(from_upstream: bool) -> Record {
    let cluster = json!({"name": "cbr0", "plugins": [{"type": "bridge"}, {"type": "portmap", "capabilities": {"portMappings": true}}]});
    let sriov = json!({"cniVersion": "0.3.1", "name": "sriov", "type": "sriov"});
    Record {
        schema_version: SCHEMA_VERSION,
        container_id: "cid1".into(),
        netns: String::new(),
        ifname: "eth0".into(),
        pod: None,
        result_version: String::new(),
        delegates: vec![
            delegate("cbr0", "eth0", cluster, json!({})),
            delegate(
                "default/sriov",
                "net1",
                sriov,
                json!({"deviceID": "0000:03:02.1", "mac": "c2:b0:57:49:47:f1"}),
            ),
        ],
        from_upstream,
    }
}

fn stdin() -> Value {
    json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim",
    "runtimeConfig": {
        "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
        "bandwidth": {"ingressRate": 1000},
        "dns": {"servers": ["10.96.0.10"]},
        "mac": ""
    }})
}

#[test]
fn d5_upstream_record_gets_the_requests_runtime_config_as_upstreams_del() {
    let mut rec = record(true);
    apply(&mut rec, &stdin(), Path::new("/run/devinfo"));
    let caps = |i: usize| Value::Object(rec.delegates[i].delegate.capability_args.clone());
    // The master: only the request's known keys (no `dns`, no empty `mac`).
    assert_eq!(
        caps(0),
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
               "bandwidth": {"ingressRate": 1000}})
    );
    // A secondary: the request's keys too (upstream's merge), its requests on top, and the
    // device-info file named as upstream names it.
    assert_eq!(
        caps(1),
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
               "bandwidth": {"ingressRate": 1000}, "deviceID": "0000:03:02.1",
               "mac": "c2:b0:57:49:47:f1",
               "CNIDeviceInfoFile": "/run/devinfo/cni/default-sriov-cid1_net1"})
    );
}

#[test]
fn d5_conflist_without_cni_version_gets_the_multus_configs() {
    let mut rec = record(true);
    apply(&mut rec, &stdin(), Path::new("/d"));
    assert_eq!(rec.delegates[0].delegate.cni_version(), "1.0.0");
    assert_eq!(
        rec.delegates[1].delegate.cni_version(),
        "0.3.1",
        "a single conf keeps its own"
    );
    // Lossless: the conflist's other keys stay as they were, cniVersion appended.
    let text = rec.delegates[0].delegate.config.to_value().to_string();
    assert!(
        text.ends_with(r#""capabilities":{"portMappings":true}}],"cniVersion":"1.0.0"}"#),
        "{text}"
    );
}

#[test]
fn d5_own_record_keeps_what_was_cached_and_fills_only_missing_keys() {
    let mut rec = record(false);
    rec.delegates[0].delegate.capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": 1, "containerPort": 2}]),
    );
    apply(&mut rec, &stdin(), Path::new("/d"));
    let caps = |i: usize| rec.delegates[i].delegate.capability_args.clone();
    assert_eq!(
        caps(0)["portMappings"],
        json!([{"hostPort": 1, "containerPort": 2}]),
        "cached value wins"
    );
    assert_eq!(caps(0)["bandwidth"], json!({"ingressRate": 1000}));
    assert_eq!(caps(0)["dns"], json!({"servers": ["10.96.0.10"]}));
    // The secondary gets pod-wide keys only, as at ADD; no device-info file is invented.
    assert_eq!(
        Value::Object(caps(1)),
        json!({"deviceID": "0000:03:02.1", "mac": "c2:b0:57:49:47:f1",
               "dns": {"servers": ["10.96.0.10"]}})
    );
}

#[test]
fn d5_a_request_without_runtime_config_changes_nothing_but_the_version() {
    let mut rec = record(false);
    let before = rec.clone();
    apply(&mut rec, &json!("not an object"), Path::new("/d"));
    assert_eq!(rec, before);
}
