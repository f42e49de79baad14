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
    for dir in [
        cache.dir().to_owned(),
        cache.dir().join(OWN_DIR),
        cache.dir().join(RESULTS_DIR),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    assert_eq!(mode(&cache.path("abc123").unwrap()), 0o600);
    assert_eq!(mode(&cache.upstream_path("abc123").unwrap()), 0o600);
    let names = |dir: &Path| -> Vec<String> {
        let mut n: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(cache.dir()),
        ["abc123", OWN_DIR, RESULTS_DIR],
        "temp files left behind"
    );
    assert_eq!(names(&cache.dir().join(OWN_DIR)), ["abc123"]);
    // Both delegates are added in `second`: libcni's result file of each whose network name
    // can be a file name (CNI's rule); "ns/macvlan" cannot, and nothing is written for it.
    assert_eq!(
        names(&cache.dir().join(RESULTS_DIR)),
        ["cluster-abc123-eth0"]
    );
    // Config key order is kept byte for byte (what the plugin got is what DEL gets).
    let text = std::fs::read_to_string(cache.path("abc123").unwrap()).unwrap();
    assert!(text.contains(r#""type":"bridge","z":1,"a":2"#), "{text}");
    assert!(text.contains(r#""schemaVersion":1"#));
    assert_eq!(cache.list().unwrap(), ["abc123"]);
    cache.remove(&second).unwrap();
    cache.remove(&second).unwrap();
    assert!(matches!(
        cache.read("abc123", "eth0", &CniArgs::default()).unwrap(),
        Loaded::Missing
    ));
    assert_eq!(
        names(cache.dir()),
        [OWN_DIR, RESULTS_DIR],
        "nothing stale after remove"
    );
    assert!(names(&cache.dir().join(OWN_DIR)).is_empty());
    assert!(names(&cache.dir().join(RESULTS_DIR)).is_empty());
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

/// Issue 12: a record naming another container (copied or planted by hand) is not acted on:
/// reading it as ours would make this container's DEL tear down that one's delegates.
#[test]
fn a_record_of_another_container_is_not_ours() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    cache.write(&record("owner1")).unwrap();
    let own = tmp.path().join(OWN_DIR);
    std::fs::copy(own.join("owner1"), own.join("intruder")).unwrap();
    match cache.read("intruder", "eth0", &CniArgs::default()).unwrap() {
        Loaded::Corrupt(p) => assert_eq!(p, own.join("intruder.corrupt")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        cache.read("owner1", "eth0", &CniArgs::default()).unwrap(),
        Loaded::Found(r) if r.container_id == "owner1"
    ));
}

#[test]
fn symlinks_and_fifos_in_the_cache_are_never_followed_read_or_written_through() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path().join("cni"));
    let outside = tmp.path().join("outside");
    std::fs::write(&outside, br#"{"schemaVersion":1}"#).unwrap();
    let own = cache.path("s1").unwrap();
    std::fs::create_dir_all(own.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&outside, &own).unwrap();
    // Read: the link is quarantined as itself, its target untouched.
    match cache.read("s1", "eth0", &CniArgs::default()).unwrap() {
        Loaded::Corrupt(p) => assert!(p.symlink_metadata().unwrap().is_symlink(), "{p:?}"),
        other => panic!("{other:?}"),
    }
    // Write: the record and the scratch copy replace links, never write through them.
    let upstream = cache.upstream_path("s2").unwrap();
    std::os::unix::fs::symlink(&outside, cache.path("s2").unwrap()).unwrap();
    std::os::unix::fs::symlink(&outside, &upstream).unwrap();
    cache.write(&record("s2")).unwrap();
    assert!(!upstream.symlink_metadata().unwrap().is_symlink());
    assert_eq!(std::fs::read(&outside).unwrap(), br#"{"schemaVersion":1}"#);
    // A FIFO in a record's place does not block the reader.
    let fifo = cache.path("s3").unwrap();
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    assert!(matches!(
        cache.read("s3", "eth0", &CniArgs::default()).unwrap(),
        Loaded::Corrupt(_)
    ));
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
    // Rewritten at our place, byte for byte; upstream's place now has upstream's format.
    assert_eq!(
        std::fs::read_to_string(cache.path("c1").unwrap()).unwrap(),
        old
    );
    let scratch: Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("c1")).unwrap()).unwrap();
    assert_eq!(scratch.as_array().map(Vec::len), Some(2));
}

/// Upstream's Go types as its DEL decodes `<cniDir>/<containerId>` (`pkg/types/types.go`
/// DelegateNetConf, CNI's `types.NetConf` and `types.NetConfList`, v4.3): typed fields fail the
/// decode on a type mismatch, as Go's `json.Unmarshal` does.
mod go {
    use std::collections::HashMap;

    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct NetConf {
        #[serde(rename = "cniVersion")]
        pub cni_version: String,
        pub name: String,
        #[serde(rename = "type")]
        pub plugin_type: String,
        pub capabilities: Option<HashMap<String, bool>>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    pub struct NetConfList {
        #[serde(rename = "cniVersion")]
        pub cni_version: String,
        pub name: String,
        #[serde(rename = "disableCheck")]
        pub disable_check: bool,
        #[serde(rename = "disableGC")]
        pub disable_gc: bool,
        pub plugins: Option<Vec<NetConf>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub struct DelegateNetConf {
        #[serde(default)]
        pub conf: NetConf,
        #[serde(default)]
        pub conf_list: NetConfList,
        #[serde(default)]
        pub name: String,
        #[serde(rename = "ifnameRequest", default)]
        pub ifname_request: String,
        #[serde(rename = "macRequest", default)]
        pub mac_request: String,
        #[serde(rename = "infinibandGUIDRequest", default)]
        pub infiniband_guid_request: String,
        #[serde(rename = "ipRequest", default)]
        pub ip_request: Option<Vec<String>>,
        #[serde(rename = "default-route", default)]
        pub gateway_request: Option<Vec<std::net::IpAddr>>,
        #[serde(rename = "IsFilterV4Gateway", default)]
        pub is_filter_v4_gateway: bool,
        #[serde(rename = "IsFilterV6Gateway", default)]
        pub is_filter_v6_gateway: bool,
        #[serde(rename = "deviceID", default)]
        pub device_id: String,
        #[serde(rename = "resourceName", default)]
        pub resource_name: String,
        /// Go `[]byte`.
        #[serde(default)]
        pub bytes: String,
    }
}

fn d6_record() -> Record {
    let mut rec = record("d6cid");
    // A conflist master with plugin options of every JSON type, and a secondary with requests.
    rec.delegates[0].delegate.name = "cbr0".into();
    rec.delegates[0].delegate.config = json!({"cniVersion": "1.0.0", "name": "cbr0",
        "disableCheck": "true", "plugins": [
            {"type": "bridge", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/16"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}]})
    .try_into()
    .unwrap();
    rec.delegates[0].delegate.capability_args =
        json!({"portMappings": [{"hostPort": 80, "containerPort": 8080}]})
            .as_object()
            .cloned()
            .unwrap();
    rec.delegates[1].delegate.name = "default/sriov".into();
    rec.delegates[1].delegate.ifname = "sriov1".into();
    rec.delegates[1].delegate.config =
        json!({"type": "sriov", "cniVersion": "0.3.1", "name": "sriov-net",
        "capabilities": {"ips": "yes"}, "dns": ["not", "a", "DNS"], "deviceID": "0000:03:02.1"})
        .try_into()
        .unwrap();
    rec.delegates[1].delegate.capability_args =
        json!({"mac": "c2:b0:57:49:47:f1", "ips": ["10.2.0.5/24"],
        "deviceID": "0000:03:02.1", "CNIDeviceInfoFile": "/x"})
        .as_object()
        .cloned()
        .unwrap();
    rec.delegates[1].delegate.default_route = Some(vec!["10.2.0.1".parse().unwrap()]);
    rec.delegates[1].state = State::Added;
    rec.delegates[1].result =
        Some(json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.2.0.5/24"}]}));
    rec
}

/// What Go Multus v4.3's CmdDel does with the file: decode `[]*DelegateNetConf`, conflist when
/// `ConfList.Plugins` is set, the interface from `getIfname`, the config from `Bytes` as libcni
/// parses it (`ConfListFromBytes` / `ConfFromBytes`), and the requests of the non-master ones.
#[test]
fn d6_scratch_record_decodes_as_upstreams_delegate_netconf_list() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    let rec = d6_record();
    cache.write(&rec).unwrap();
    let bytes = std::fs::read(tmp.path().join("d6cid")).unwrap();
    let list: Vec<go::DelegateNetConf> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(list.len(), 2);
    for (idx, (d, entry)) in list.iter().zip(&rec.delegates).enumerate() {
        let ours = &entry.delegate;
        let conflist = d.conf_list.plugins.as_ref().is_some_and(|p| !p.is_empty());
        assert_eq!(conflist, ours.config.is_list(), "ConfListPlugin of {idx}");
        let ifname = if !d.ifname_request.is_empty() {
            d.ifname_request.clone()
        } else if idx == 0 {
            "eth0".to_owned()
        } else {
            format!("net{idx}")
        };
        assert_eq!(ifname, ours.ifname);
        assert_eq!(d.name, ours.name);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&d.bytes)
            .unwrap();
        let config: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(
            config,
            ours.config.to_value(),
            "Bytes are the config run at ADD"
        );
        if conflist {
            // CmdDel rewrites Bytes lossily from ConfList when its cniVersion is empty.
            assert_eq!(d.conf_list.cni_version, "1.0.0");
            assert!(
                config["name"].is_string()
                    && config["plugins"].as_array().is_some_and(|p| !p.is_empty())
            );
            assert_eq!(
                d.conf_list.plugins.as_ref().unwrap()[1].plugin_type,
                "portmap"
            );
        } else {
            assert_eq!(d.conf.plugin_type, "sriov");
            assert!(config["type"].as_str().is_some_and(|t| !t.is_empty()));
        }
    }
    let sriov = &list[1];
    assert_eq!(sriov.mac_request, "c2:b0:57:49:47:f1");
    assert_eq!(
        sriov.ip_request.as_deref(),
        Some(&["10.2.0.5/24".to_owned()][..])
    );
    assert_eq!(sriov.device_id, "0000:03:02.1");
    assert_eq!(sriov.gateway_request.as_ref().map(Vec::len), Some(1));
    assert!(
        !sriov.is_filter_v4_gateway
            && !sriov.is_filter_v6_gateway
            && sriov.resource_name.is_empty()
    );
    assert!(list[0].mac_request.is_empty() && list[0].infiniband_guid_request.is_empty());
}

/// libcni's result cache as its `AddNetworkList` leaves it (`cachedInfo`, `cniCacheV1`): what
/// upstream's DEL reads as prevResult and upstream's GC as the valid attachments.
#[test]
fn d6_libcni_result_cache_is_written_for_added_delegates_and_removed_with_the_record() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    let rec = d6_record();
    cache.write(&rec).unwrap();
    let read = |name: &str| -> Value {
        serde_json::from_slice(&std::fs::read(tmp.path().join("results").join(name)).unwrap())
            .unwrap()
    };
    let master = read("cbr0-d6cid-eth0");
    assert_eq!(master["kind"], "cniCacheV1");
    assert_eq!(
        (master["containerId"].as_str(), master["ifName"].as_str()),
        (Some("d6cid"), Some("eth0"))
    );
    assert_eq!(master["networkName"], "cbr0");
    assert_eq!(master["netns"], "/run/netns/x");
    assert_eq!(master["cniArgs"], json!([["IgnoreUnknown", "true"]]));
    assert_eq!(master["capabilityArgs"]["portMappings"][0]["hostPort"], 80);
    assert_eq!(master["result"], json!({"cniVersion": "1.0.0"}));
    let config = base64::engine::general_purpose::STANDARD
        .decode(master["config"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&config).unwrap(),
        rec.delegates[0].delegate.config.to_value()
    );
    assert_eq!(
        read("sriov-net-d6cid-sriov1")["result"]["ips"][0]["address"],
        "10.2.0.5/24"
    );
    // Our reader of upstream's records finds it too (the way forward again).
    std::fs::remove_file(cache.path("d6cid").unwrap()).unwrap();
    let Loaded::Found(back) = cache.read("d6cid", "eth0", &CniArgs::default()).unwrap() else {
        panic!("not read")
    };
    assert!(back.from_upstream);
    assert_eq!(back.delegates[1].delegate.ifname, "sriov1");
    assert_eq!(back.delegates[1].result, rec.delegates[1].result);
    cache.remove(&rec).unwrap();
    assert_eq!(
        std::fs::read_dir(tmp.path().join("results"))
            .unwrap()
            .count(),
        0
    );
    assert!(!tmp.path().join("d6cid").exists());
}

/// A record at `<cniDir>/<cid>` in our own format (the previous multus-rs build) is still read;
/// a corrupt own record falls back to the scratch copy beside it.
#[test]
fn d6_previous_builds_record_and_scratch_fallback_still_del() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    let rec = record("old1");
    std::fs::write(tmp.path().join("old1"), serde_json::to_vec(&rec).unwrap()).unwrap();
    let Loaded::Found(back) = cache.read("old1", "eth0", &CniArgs::default()).unwrap() else {
        panic!("not read")
    };
    assert_eq!(back, rec);
    assert_eq!(cache.list().unwrap(), ["old1"]);
    cache.write(&d6_record()).unwrap();
    std::fs::write(cache.path("d6cid").unwrap(), b"{\"schemaVersion\":1,").unwrap();
    let Loaded::Found(back) = cache.read("d6cid", "eth0", &CniArgs::default()).unwrap() else {
        panic!("no fallback")
    };
    assert!(back.from_upstream);
    assert!(tmp.path().join(OWN_DIR).join("d6cid.corrupt").exists());
    assert_eq!(cache.list().unwrap(), ["d6cid", "old1"]);
}

/// The files beside our record are rewritten only when their content changes since the last
/// write of the same ADD (a record is rewritten after every delegate), known without reading
/// them back.
#[test]
fn d6_unchanged_scratch_and_result_files_are_not_rewritten() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    let mut rec = d6_record();
    let mut written = Written::default();
    cache.write_tracked(&rec, &mut written).unwrap();
    let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
    let scratch = tmp.path().join("d6cid");
    let master = tmp.path().join("results/cbr0-d6cid-eth0");
    let (scratch_ino, master_ino) = (inode(&scratch), inode(&master));
    rec.delegates[1].result = Some(json!({"cniVersion": "0.3.1", "ips": []}));
    cache.write_tracked(&rec, &mut written).unwrap();
    assert_eq!(inode(&scratch), scratch_ino, "scratch record rewritten");
    assert_eq!(inode(&master), master_ino, "unchanged result rewritten");
    let sriov = tmp.path().join("results/sriov-net-d6cid-sriov1");
    let back: Value = serde_json::from_slice(&std::fs::read(sriov).unwrap()).unwrap();
    assert_eq!(back["result"]["ips"], json!([]), "changed result rewritten");
    // Without the memo everything is written again (what another writer may have changed).
    cache.write(&rec).unwrap();
    assert_ne!(
        inode(&scratch),
        scratch_ino,
        "an untracked write rewrites the scratch record"
    );
}

/// `sync` makes the record as last written durable; for a container without a record it is an
/// error (an ADD waiting on it must not believe a record is safe that is not there).
#[test]
fn sync_of_a_written_record_succeeds_and_of_a_missing_one_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    cache.write(&record("sync1")).unwrap();
    cache.sync("sync1").unwrap();
    let err = cache.sync("nosuch").unwrap_err();
    assert!(matches!(err, CacheError::Sync { .. }), "{err}");
    assert!(err.to_string().contains("nosuch"), "{err}");
}

/// Issue 12, fuzzing the cache record decoder. The libFuzzer targets (`e2e/fuzz`) cannot link
/// the daemon's dependency tree cheaply, so this one is a seeded mutation run here: a real
/// record of ours and one of upstream's scratch format, each cut, bit-flipped, spliced and
/// duplicated thousands of times, read back at both places a record is looked for. Any input
/// must read as Found (naming this container), Corrupt (moved aside) or Missing, never panic.
#[test]
fn mutated_records_never_panic() {
    use rand::{Rng, SeedableRng};
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    cache.write(&record("seed1")).unwrap();
    let own = std::fs::read(tmp.path().join(OWN_DIR).join("seed1")).unwrap();
    let upstream = std::fs::read(tmp.path().join("seed1")).unwrap();
    let args = CniArgs::parse("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_UID=u").unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let (mut found, mut corrupt) = (0, 0);
    for i in 0..3000 {
        let seed = if i % 2 == 0 { &own } else { &upstream };
        let mut bytes = seed.clone();
        for _ in 0..rng.random_range(1..6) {
            mutate(&mut rng, &mut bytes, seed);
        }
        let id = format!("m{i}");
        let place = if rng.random_bool(0.5) {
            tmp.path().join(OWN_DIR).join(&id)
        } else {
            tmp.path().join(&id)
        };
        // Keep the container id the seed names, so some mutants are still ours.
        let text = String::from_utf8_lossy(&bytes).replace("seed1", &id);
        std::fs::write(&place, text.as_bytes()).unwrap();
        match cache.read(&id, "eth0", &args).unwrap() {
            Loaded::Found(r) => {
                found += 1;
                assert_eq!(r.container_id, id, "{text}");
            }
            Loaded::Corrupt(_) => corrupt += 1,
            Loaded::Missing => panic!("{id} was written"),
        }
    }
    assert!(found > 0 && corrupt > 0, "found {found}, corrupt {corrupt}");
}

/// One random edit: truncate, flip a bit, insert a structural byte, or splice in a seed slice.
fn mutate(rng: &mut impl rand::Rng, bytes: &mut Vec<u8>, seed: &[u8]) {
    if bytes.is_empty() {
        bytes.extend_from_slice(b"{}");
    }
    let at = rng.random_range(0..bytes.len());
    match rng.random_range(0..4) {
        0 => bytes.truncate(at),
        1 => bytes[at] ^= 1 << rng.random_range(0..8),
        2 => {
            let tokens = b"{}[]\",:0-.e\\ntfu";
            bytes.insert(at, tokens[rng.random_range(0..tokens.len())]);
        }
        _ => {
            let from = rng.random_range(0..seed.len());
            let len = rng.random_range(0..64).min(seed.len() - from);
            let piece = seed[from..from + len].to_vec();
            bytes.splice(at..at, piece);
        }
    }
}

fn read_own(cache: &Cache, id: &str) -> Record {
    match cache.read(id, "eth0", &CniArgs::default()).unwrap() {
        Loaded::Found(r) => r,
        other => panic!("{other:?}"),
    }
}

fn planned(id: &str) -> Record {
    let mut rec = record(id);
    for entry in &mut rec.delegates {
        entry.state = State::Planned;
        entry.result = None;
    }
    rec
}

fn journal(cache: &Cache, id: &str) -> PathBuf {
    cache.dir().join(OWN_DIR).join(PROGRESS_DIR).join(id)
}

/// A planned record on disk, then its first delegate journaled as added with `result`.
fn first_journaled(id: &str, result: Option<Value>) -> (tempfile::TempDir, Cache, Record) {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    let mut rec = planned(id);
    cache.write(&rec).unwrap();
    rec.delegates[0].state = State::Added;
    rec.delegates[0].result = result;
    cache
        .append_progress(id, &Progress::of(&rec, &[0]).unwrap())
        .unwrap();
    (tmp, cache, rec)
}

#[test]
fn progress_is_appended_beside_the_planned_record_and_read_over_it() {
    let result = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}]});
    let (_tmp, cache, rec) = first_journaled("pj1", Some(result));
    // The record itself is not rewritten; reading applies the journal.
    let on_disk: Record =
        serde_json::from_slice(&std::fs::read(cache.path("pj1").unwrap()).unwrap()).unwrap();
    assert_eq!(on_disk, planned("pj1"));
    assert_eq!(read_own(&cache, "pj1"), rec);
    let mode = std::fs::metadata(journal(&cache, "pj1"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Listing sees records only, not the journal's directory.
    assert_eq!(cache.list().unwrap(), ["pj1"]);
}

#[test]
fn a_full_write_of_the_record_removes_its_journal_and_remove_takes_both() {
    let (_tmp, cache, rec) = first_journaled("pj2", None);
    cache.write_record(&rec).unwrap();
    assert!(!journal(&cache, "pj2").exists());
    assert_eq!(read_own(&cache, "pj2"), rec);
    cache
        .append_progress("pj2", &Progress::of(&rec, &[1]).unwrap())
        .unwrap();
    cache.remove(&rec).unwrap();
    assert!(!journal(&cache, "pj2").exists());
    assert!(matches!(
        cache.read("pj2", "eth0", &CniArgs::default()).unwrap(),
        Loaded::Missing
    ));
}

#[test]
fn a_torn_or_foreign_journal_line_ends_the_reading() {
    let (_tmp, cache, rec) = first_journaled("pj3", Some(json!({"cniVersion": "1.0.0"})));
    // A crash in the middle of the second append: no newline at the end.
    let mut added = rec.clone();
    added.delegates[1].state = State::Added;
    let second = serde_json::to_vec(
        &json!({"index": 1, "network": "ns/macvlan", "ifname": "net1", "result": null}),
    )
    .unwrap();
    let path = journal(&cache, "pj3");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&second);
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(read_own(&cache, "pj3"), rec, "a torn line is not applied");
    // Once complete, it is applied.
    bytes.push(b'\n');
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(read_own(&cache, "pj3"), added);
    // A line naming another delegate at that place (a journal of another record) stops it.
    let foreign = json!({"index": 0, "network": "other", "ifname": "eth0", "result": null});
    let mut bytes = serde_json::to_vec(&foreign).unwrap();
    bytes.push(b'\n');
    bytes.extend_from_slice(&std::fs::read(&path).unwrap());
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(read_own(&cache, "pj3"), planned("pj3"));
}

#[test]
fn journal_appends_never_follow_a_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = Cache::new(tmp.path());
    let rec = planned("pj4");
    cache.write(&rec).unwrap();
    let target = tmp.path().join("elsewhere");
    std::fs::write(&target, b"keep").unwrap();
    std::fs::create_dir_all(journal(&cache, "pj4").parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&target, journal(&cache, "pj4")).unwrap();
    let err = cache
        .append_progress("pj4", &Progress::of(&rec, &[0]).unwrap())
        .unwrap_err();
    assert!(matches!(err, CacheError::Write { .. }), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    assert!(matches!(
        cache.append_progress("../x", &Progress::of(&rec, &[0]).unwrap()),
        Err(CacheError::InvalidId(_))
    ));
}
