//! Cache record tests: atomic write and permissions, round trip, upstream format, corruption.
use std::os::unix::fs::PermissionsExt;

use base64::Engine as _;
use serde_json::json;

use super::*;

fn delegate(name: &str, ifname: &str) -> Delegate {
    Delegate {
        name: name.into(),
        ifname: ifname.into(),
        config: json!({"cniVersion": "1.0.0", "name": name, "type": "bridge", "z": 1, "a": 2})
            .try_into()
            .unwrap(),
        capability_args: json!({"mac": "02:00:00:00:00:01"})
            .as_object()
            .cloned()
            .unwrap(),
        cni_args: "IgnoreUnknown=true".into(),
        is_default: ifname == "eth0",
        default_route: None,
    }
}

fn record(id: &str) -> Record {
    Record {
        schema_version: SCHEMA_VERSION,
        container_id: id.into(),
        netns: "/run/netns/x".into(),
        ifname: "eth0".into(),
        pod: Some(PodRef {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
        }),
        result_version: "0.3.1".into(),
        delegates: vec![
            Entry {
                delegate: delegate("cluster", "eth0"),
                state: State::Added,
                result: Some(json!({"cniVersion": "1.0.0"})),
            },
            Entry {
                delegate: delegate("ns/macvlan", "net1"),
                state: State::Planned,
                result: None,
            },
        ],
        from_upstream: false,
    }
}

#[test]
fn write_read_round_trip_with_private_modes_and_no_temp_left() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path().join("multus"));
    let rec = record("abc123");
    cache.write(&rec).unwrap();
    let mut second = rec.clone();
    second.delegates[1].state = State::Added;
    cache.write(&second).unwrap();
    match cache.read("abc123", "eth0", &CniArgs::default()).unwrap() {
        Loaded::Found(r) => assert_eq!(r, second),
        other => panic!("{other:?}"),
    }
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(cache.dir()), 0o700);
    assert_eq!(mode(&cache.path("abc123").unwrap()), 0o600);
    let names: Vec<_> = std::fs::read_dir(cache.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["abc123"], "temp files left behind");
    // Config key order is kept byte for byte (what the plugin got is what DEL gets).
    let text = std::fs::read_to_string(cache.path("abc123").unwrap()).unwrap();
    assert!(text.contains(r#""type":"bridge","z":1,"a":2"#), "{text}");
    assert!(text.contains(r#""schemaVersion":1"#));
    assert_eq!(cache.list().unwrap(), ["abc123"]);
    cache.remove("abc123").unwrap();
    cache.remove("abc123").unwrap();
    assert!(matches!(
        cache.read("abc123", "eth0", &CniArgs::default()).unwrap(),
        Loaded::Missing
    ));
}

#[test]
fn ids_that_escape_the_dir_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    for bad in ["../x", "a/b", "", ".hidden"] {
        assert!(
            matches!(cache.path(bad), Err(CacheError::InvalidId(_))),
            "{bad}"
        );
        let mut rec = record("ok");
        rec.container_id = bad.into();
        assert!(cache.write(&rec).is_err());
    }
}

#[test]
fn corrupt_file_is_moved_aside_and_skipped_by_list() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    // A truncated record, as after a power cut with a non-atomic writer.
    std::fs::write(tmp.path().join("c1"), br#"{"schemaVersion":1,"contai"#).unwrap();
    match cache.read("c1", "eth0", &CniArgs::default()).unwrap() {
        Loaded::Corrupt(p) => assert_eq!(p, tmp.path().join("c1.corrupt")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        cache.read("c1", "eth0", &CniArgs::default()).unwrap(),
        Loaded::Missing
    ));
    std::fs::create_dir(tmp.path().join("results")).unwrap();
    std::fs::write(tmp.path().join(".c2.tmp-1-1"), b"x").unwrap();
    assert!(cache.list().unwrap().is_empty());
}

#[test]
fn reads_upstream_scratch_format() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    let list_conf = json!({"cniVersion": "0.3.1", "name": "cbr0", "plugins": [{"type": "flannel"}, {"type": "portmap"}]});
    let macvlan =
        json!({"cniVersion": "0.3.1", "name": "macvlan-conf", "type": "macvlan", "master": "eth1"});
    let b64 = |v: &Value| base64::engine::general_purpose::STANDARD.encode(v.to_string());
    let upstream = json!([
        {"Conf": {"cniVersion": "0.3.1", "name": "cbr0"}, "ConfList": list_conf, "Name": "", "ifnameRequest": "",
         "macRequest": "", "ipRequest": null, "Bytes": b64(&list_conf)},
        {"Conf": macvlan, "ConfList": {"plugins": null}, "Name": "default/macvlan-conf", "ifnameRequest": "",
         "macRequest": "c2:b0:57:49:47:f1", "ipRequest": ["10.1.1.5/24"], "default-route": ["10.1.1.1"], "Bytes": b64(&macvlan)},
        {"Conf": {"cniVersion": "0.3.1", "name": "x", "type": "ipvlan"}, "Name": "default/x", "ifnameRequest": "ipv1"}
    ]);
    std::fs::write(tmp.path().join("cid1"), upstream.to_string()).unwrap();
    std::fs::create_dir(tmp.path().join("results")).unwrap();
    let cached = json!({"kind": "cniCacheV1", "result": {"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.1.1.5/24"}]}});
    std::fs::write(
        tmp.path().join("results/macvlan-conf-cid1-net1"),
        cached.to_string(),
    )
    .unwrap();
    let args = CniArgs::parse("K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID=u1").unwrap();

    let Loaded::Found(rec) = cache.read("cid1", "eth0", &args).unwrap() else {
        panic!("not read")
    };
    assert!(rec.from_upstream);
    let d: Vec<_> = rec.delegates.iter().map(|e| &e.delegate).collect();
    assert_eq!(
        (d[0].name.as_str(), d[0].ifname.as_str(), d[0].is_default),
        ("cbr0", "eth0", true)
    );
    assert_eq!(d[0].config.to_value(), list_conf);
    assert_eq!(
        (d[1].name.as_str(), d[1].ifname.as_str()),
        ("default/macvlan-conf", "net1")
    );
    assert_eq!(d[1].config.to_value(), macvlan);
    assert_eq!(d[1].capability_args["mac"], "c2:b0:57:49:47:f1");
    assert!(
        d[1].cni_args.contains("K8S_POD_UID=u1") && d[1].cni_args.contains("MAC=c2:b0:57:49:47:f1"),
        "{}",
        d[1].cni_args
    );
    assert_eq!(rec.delegates[1].result, Some(cached["result"].clone()));
    assert_eq!(d[2].ifname, "ipv1");
    assert_eq!(
        d[2].config.to_value()["type"],
        "ipvlan",
        "Conf used when Bytes is absent"
    );
    assert!(rec.delegates.iter().all(|e| e.state == State::Added));
}

#[test]
fn a_record_written_before_typed_configs_reads_and_writes_back_byte_for_byte() {
    // The layout of a record from the build that kept configs as untyped JSON: key order of
    // each config as the NAD gave it (`type` first, `name` injected last).
    let old = concat!(
        r#"{"schemaVersion":1,"containerId":"c1","netns":"/run/netns/x","ifname":"eth0","resultVersion":"1.0.0","delegates":["#,
        r#"{"delegate":{"name":"cluster","ifname":"eth0","config":{"cniVersion":"1.0.0","name":"cluster","plugins":[{"type":"bridge","bridge":"cni0","ipam":{"type":"host-local"}},{"capabilities":{"portMappings":true},"type":"portmap"}]},"capabilityArgs":{},"cniArgs":"IgnoreUnknown=true","isDefault":true},"state":"added","result":{"cniVersion":"1.0.0"}},"#,
        r#"{"delegate":{"name":"ns/mv","ifname":"net1","config":{"type":"macvlan","master":"eth0","cniVersion":"0.3.1","args":{"cni":{"k":"v"}},"name":"mv","deviceID":"0000:03:02.1"},"capabilityArgs":{"CNIDeviceInfoFile":"/x"},"cniArgs":"","isDefault":false,"defaultRoute":["10.1.1.1"]},"state":"planned"}"#,
        r#"]}"#
    );
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    std::fs::write(tmp.path().join("c1"), old).unwrap();
    let Loaded::Found(rec) = cache.read("c1", "eth0", &CniArgs::default()).unwrap() else {
        panic!("not read")
    };
    assert_eq!(rec.delegates[1].delegate.config.first_type(), "macvlan");
    cache.write(&rec).unwrap();
    assert_eq!(std::fs::read_to_string(tmp.path().join("c1")).unwrap(), old);
}
