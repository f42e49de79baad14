//! Conflist semantics against fake bash plugins, and one run of the real bridge + host-local.
use std::process::Command as Proc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Map, json};

use super::*;
use crate::engine::fakeplugin::{ECHO_RESULT, FakePlugins};

const AT: Attachment<'static> = Attachment {
    container_id: "c1",
    netns: "/run/netns/x",
};

fn delegate(config: Value, caps: Value) -> Delegate {
    Delegate {
        name: "default/net".into(),
        ifname: "net1".into(),
        config: config.try_into().unwrap(),
        capability_args: caps.as_object().cloned().unwrap_or_else(Map::new),
        cni_args: "IgnoreUnknown=true;K8S_POD_NAME=p".into(),
        is_default: false,
        default_route: None,
    }
}

fn chain(version: &str) -> Value {
    json!({"cniVersion": version, "name": "chain", "plugins": [
        {"type": "one", "capabilities": {"mac": true, "ips": false}},
        {"type": "two", "capabilities": {"portMappings": true}},
        {"type": "three"}
    ]})
}

fn fakes() -> FakePlugins {
    let f = FakePlugins::new();
    for p in ["one", "two", "three"] {
        f.add(p, ECHO_RESULT);
    }
    f
}

#[tokio::test]
async fn add_chains_prev_result_and_filters_runtime_config() {
    let f = fakes();
    let caps = json!({"mac": "02:00:00:00:00:01", "ips": ["10.1.1.1/24"], "portMappings": [{"hostPort": 80}]});
    let d = delegate(chain("1.0.0"), caps);
    let result = add(&f.executor(), &d, &AT).await.unwrap();
    assert_eq!(result["by"], "three");
    let calls = f.calls();
    let order: Vec<_> = calls.iter().map(|c| c.plugin.as_str()).collect();
    assert_eq!(order, ["one", "two", "three"]);
    for c in &calls {
        assert_eq!((c.command.as_str(), c.ifname.as_str()), ("ADD", "net1"));
        assert_eq!(c.cni_args, "IgnoreUnknown=true;K8S_POD_NAME=p");
        assert_eq!(
            (c.stdin["name"].as_str(), c.stdin["cniVersion"].as_str()),
            (Some("chain"), Some("1.0.0"))
        );
    }
    assert_eq!(
        calls[0].stdin["runtimeConfig"],
        json!({"mac": "02:00:00:00:00:01"})
    );
    assert_eq!(
        calls[1].stdin["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 80}]})
    );
    assert!(calls[2].stdin.get("runtimeConfig").is_none());
    assert!(calls[0].stdin.get("prevResult").is_none());
    assert_eq!(calls[1].stdin["prevResult"]["by"], "one");
    assert_eq!(calls[2].stdin["prevResult"]["by"], "two");
}

#[tokio::test]
async fn del_runs_in_reverse_with_cached_result_and_survives_failures() {
    let f = FakePlugins::new();
    f.add("one", "true")
        .add("two", r#"echo '{"code":11,"msg":"busy"}'; exit 1"#)
        .add("three", "true");
    let d = delegate(chain("0.4.0"), json!({}));
    let cached = json!({"cniVersion": "0.4.0", "ips": []});
    let err = del(&f.executor(), &d, &AT, Some(&cached))
        .await
        .unwrap_err();
    assert!(
        matches!(err.exec_error(), Some(ExecError::Plugin { .. })),
        "{err}"
    );
    let calls = f.calls();
    let order: Vec<_> = calls.iter().map(|c| c.plugin.as_str()).collect();
    assert_eq!(order, ["three", "two", "one"]);
    assert!(
        calls
            .iter()
            .all(|c| c.command == "DEL" && c.stdin["prevResult"] == cached)
    );
    // Before 0.4.0 there is no prevResult on DEL.
    let f = fakes();
    del(
        &f.executor(),
        &delegate(chain("0.3.1"), json!({})),
        &AT,
        Some(&cached),
    )
    .await
    .unwrap();
    assert!(
        f.calls()
            .iter()
            .all(|c| c.stdin.get("prevResult").is_none())
    );
}

#[tokio::test]
async fn version_gates_for_check_status_gc() {
    let f = fakes();
    let x = f.executor();
    let cached = json!({"cniVersion": "1.0.0"});
    assert!(matches!(
        check(&x, &delegate(chain("0.3.1"), json!({})), &AT, Some(&cached)).await,
        Err(ConflistError::CheckUnsupported(_))
    ));
    let mut disabled = chain("1.0.0");
    disabled["disableCheck"] = json!(true);
    check(&x, &delegate(disabled, json!({})), &AT, Some(&cached))
        .await
        .unwrap();
    status(&x, &delegate(chain("1.0.0"), json!({})))
        .await
        .unwrap();
    gc(&x, &delegate(chain("1.0.0"), json!({})), &[])
        .await
        .unwrap();
    assert!(f.calls().is_empty(), "nothing may run: {:?}", f.calls());

    check(&x, &delegate(chain("1.0.0"), json!({})), &AT, Some(&cached))
        .await
        .unwrap();
    status(&x, &delegate(chain("1.1.0"), json!({})))
        .await
        .unwrap();
    let valid = [ValidAttachment {
        container_id: "c9".into(),
        ifname: "eth0".into(),
    }];
    gc(&x, &delegate(chain("1.1.0"), json!({})), &valid)
        .await
        .unwrap();
    let calls = f.calls();
    let cmds: Vec<_> = calls.iter().map(|c| c.command.as_str()).collect();
    assert_eq!(
        cmds,
        [
            "CHECK", "CHECK", "CHECK", "STATUS", "STATUS", "STATUS", "GC", "GC", "GC"
        ]
    );
    assert!(calls[..3].iter().all(|c| c.stdin["prevResult"] == cached));
    assert_eq!(
        calls[6].stdin["cni.dev/valid-attachments"],
        json!([{"containerID": "c9", "ifname": "eth0"}])
    );
    assert_eq!(calls[3].ifname, "-", "STATUS has no CNI_IFNAME");
}

#[tokio::test]
async fn single_conf_keeps_its_own_fields_and_bad_configs_are_refused() {
    let f = fakes();
    let conf = json!({"cniVersion": "0.3.1", "name": "solo", "type": "one", "capabilities": {"ips": true}});
    let d = delegate(conf, json!({"ips": ["10.2.0.2/24"], "mac": "x"}));
    add(&f.executor(), &d, &AT).await.unwrap();
    let c = &f.calls()[0];
    assert_eq!(c.stdin["name"], "solo");
    assert_eq!(c.stdin["cniVersion"], "0.3.1", "never up-converted");
    assert_eq!(c.stdin["runtimeConfig"], json!({"ips": ["10.2.0.2/24"]}));
    // A config that cannot run cannot become a delegate: the typed model refuses it.
    for bad in [
        json!({"cniVersion": "1.0.0", "name": "n", "plugins": []}),
        json!({"name": "n"}),
        json!([1]),
    ] {
        let r = crate::engine::netconf::NetConf::from_value(bad.clone());
        assert!(r.is_err(), "{bad}");
    }
}

/// A network namespace of this test's own, removed even when the test fails.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "mrs-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        assert!(
            Proc::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap()
                .success()
        );
        Netns(name)
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Proc::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A host link this test created (the bridge), removed even when the test fails.
struct Link(String);

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Proc::new("ip").args(["link", "del", &self.0]).status();
    }
}

#[tokio::test]
async fn real_bridge_and_host_local_add_then_del() {
    let ns = Netns::new("br");
    let bridge = Link(format!("mrsbr{}", std::process::id() % 100_000));
    let data = tempfile::tempdir().unwrap();
    let conf = json!({"cniVersion": "1.0.0", "name": "mrs-test", "plugins": [{
        "type": "bridge", "bridge": bridge.0, "isGateway": false, "ipMasq": false,
        "ipam": {"type": "host-local", "dataDir": data.path(),
                 "ranges": [[{"subnet": "127.201.0.0/24", "rangeStart": "127.201.0.10", "rangeEnd": "127.201.0.20"}]]}
    }]});
    let mut d = delegate(conf, json!({}));
    d.ifname = "net1".into();
    let mut cfg = crate::config::Config {
        bin_dir: "/usr/lib/cni".into(),
        ..Default::default()
    };
    cfg.delegate_timeout_seconds = 30;
    let x = Executor::new(
        &cfg,
        std::sync::Arc::new(crate::engine::admission::Admission::new(
            2,
            std::time::Duration::from_secs(30),
        )),
    );
    let path = ns.path();
    let at = Attachment {
        container_id: "mrs-real-1",
        netns: &path,
    };
    let result = add(&x, &d, &at).await.unwrap();
    assert_eq!(result["ips"][0]["address"], "127.201.0.10/24");

    let out = Proc::new("ip")
        .args(["-n", &ns.0, "-j", "addr", "show", "dev", "net1"])
        .output()
        .unwrap();
    let addrs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = addrs[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["local"] == "127.201.0.10" && a["prefixlen"] == 24);
    assert!(found, "{addrs}");

    del(&x, &d, &at, Some(&result)).await.unwrap();
    let leases: Vec<_> = std::fs::read_dir(data.path().join("mrs-test"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert!(leases.is_empty(), "leases left: {leases:?}");
    let out = Proc::new("ip")
        .args(["-n", &ns.0, "link", "show", "net1"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "net1 still exists after DEL");
}
