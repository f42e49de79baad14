//! Engine flows end to end over fake bash plugins and an in-memory cluster source.
use std::sync::atomic::Ordering;

use multus_common::{CniArgs, Command};
use serde_json::{Value, json};

use super::cache::{Loaded, State};
use super::fakeplugin::{ECHO_RESULT, FakePlugins, empty_netns, private_netns};
use super::*;
use crate::source::{NadInfo, PodInfo};

mod default_route;
mod devices;
mod ifname_check;
mod stale_state;
mod upstream_words;

use crate::source::memory::MemSource as Mem;

fn mem() -> Mem {
    let pod = PodInfo {
        namespace: "app".into(),
        name: "web".into(),
        uid: "uid-1".into(),
        annotations: [(
            "k8s.v1.cni.cncf.io/networks".to_owned(),
            "sec1,sec2".to_owned(),
        )]
        .into(),
    };
    let nad = |name: &str, plugin: &str| NadInfo {
        namespace: "app".into(),
        name: name.into(),
        config: json!({"cniVersion": "1.0.0", "name": name, "type": plugin}).to_string(),
        ..Default::default()
    };
    Mem {
        pods: vec![pod],
        nads: vec![nad("sec1", "second"), nad("sec2", "third")],
        ..Default::default()
    }
}

struct Fixture {
    plugins: FakePlugins,
    cni_dir: tempfile::TempDir,
    source: Arc<Mem>,
    engine: Engine,
}

fn fixture(source: Mem, tweak: impl FnOnce(&mut Config)) -> Fixture {
    let plugins = FakePlugins::new();
    for p in ["first", "second", "third"] {
        plugins.add(p, ECHO_RESULT);
    }
    let cni_dir = tempfile::tempdir().unwrap();
    let mut config = plugins.config();
    config.cni_dir = cni_dir.path().to_owned();
    config.delegates = vec![json!({"cniVersion": "1.0.0", "name": "cluster", "type": "first"})];
    tweak(&mut config);
    let source = Arc::new(source);
    let devices = Arc::new(crate::kubelet::Kubelet::from_config(&config));
    let engine = Engine::new(Arc::new(config), source.clone(), devices).unwrap();
    Fixture {
        plugins,
        cni_dir,
        source,
        engine,
    }
}

fn call(command: Command, id: &str) -> CniCall {
    CniCall {
        command,
        container_id: id.into(),
        netns: empty_netns(),
        ifname: "eth0".into(),
        args: CniArgs::parse("K8S_POD_NAMESPACE=app;K8S_POD_NAME=web;K8S_POD_UID=uid-1").unwrap(),
        config: json!({"cniVersion": "0.3.1", "name": "multus-cni-network", "type": "multus-shim"})
            .to_string()
            .into_bytes(),
    }
}

fn order(f: &Fixture) -> Vec<String> {
    f.plugins
        .calls()
        .iter()
        .map(|c| format!("{} {} {}", c.command, c.plugin, c.ifname))
        .collect()
}

/// The DEL calls the fake plugins saw, in order.
fn dels(f: &Fixture) -> Vec<String> {
    order(f)
        .into_iter()
        .filter(|c| c.starts_with("DEL"))
        .collect()
}

fn record(f: &Fixture, id: &str) -> Option<cache::Record> {
    match Cache::new(f.cni_dir.path())
        .read(id, "eth0", &CniArgs::default())
        .unwrap()
    {
        Loaded::Found(r) => Some(r),
        _ => None,
    }
}

#[tokio::test]
async fn add_runs_every_delegate_records_it_and_returns_the_cluster_result() {
    let f = fixture(mem(), |_| {});
    let out = f.engine.add(call(Command::Add, "c1")).await.unwrap();
    let result: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(result["cniVersion"], "0.3.1");
    assert_eq!(result["by"], "first");
    assert_eq!(
        result["ips"][0]["version"], "4",
        "converted to the runtime's version"
    );
    assert_eq!(
        order(&f),
        ["ADD first eth0", "ADD second net1", "ADD third net2"]
    );
    let rec = record(&f, "c1").unwrap();
    assert!(
        rec.delegates
            .iter()
            .all(|e| e.state == State::Added && e.result.is_some())
    );
    assert_eq!(rec.pod.as_ref().map(|p| p.uid.as_str()), Some("uid-1"));
    let statuses = f.source.statuses.lock().unwrap().clone();
    assert_eq!(statuses.len(), 1);
    let status: Value = serde_json::from_str(&statuses[0]).unwrap();
    assert_eq!(status.as_array().map(Vec::len), Some(3));
    assert_eq!(status[1]["name"], "app/sec1");
}

#[tokio::test]
async fn record_exists_before_the_first_plugin_runs() {
    let f = fixture(mem(), |_| {});
    // Ours, and upstream's scratch record beside it (D-6: Go Multus could DEL from here on).
    let check = format!(
        "grep -q '\"state\":\"planned\"' {dir}/multus-rs/c1 || exit 7\n\
         grep -q '\"Bytes\"' {dir}/c1 || exit 8\n{ECHO_RESULT}",
        dir = f.cni_dir.path().display()
    );
    f.plugins.add("first", &check);
    f.engine.add(call(Command::Add, "c1")).await.unwrap();
}

#[tokio::test]
async fn failed_delegate_rolls_back_in_reverse_and_drops_the_record() {
    let f = fixture(mem(), |_| {});
    f.plugins.add(
        "third",
        r#"[ "$CNI_COMMAND" = ADD ] && { echo '{"code":107,"msg":"no"}'; exit 1; }; true"#,
    );
    let err = f.engine.add(call(Command::Add, "c1")).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            r#"error configuring pod [app/web] networking: [app/web/uid-1:sec2]: error adding container to network "sec2": delegate "app/sec2" (plugin third, net2): "#
        ),
        "D-11: upstream's wording first: {text}"
    );
    assert_eq!(err.cni_code(), 107);
    let EngineError::ConfiguringPod {
        source: delegate, ..
    } = &err
    else {
        panic!("{err}")
    };
    let EngineError::AddDelegate { source: inner, .. } = delegate.as_ref() else {
        panic!("{err}")
    };
    match inner.as_ref() {
        EngineError::Delegate {
            name,
            plugin,
            ifname,
            ..
        } => {
            assert_eq!(
                (name.as_str(), plugin.as_str(), ifname.as_str()),
                ("app/sec2", "third", "net2")
            )
        }
        other => panic!("{other}"),
    }
    let expected = [
        "ADD first eth0",
        "ADD second net1",
        "ADD third net2",
        "DEL third net2",
        "DEL second net1",
        "DEL first eth0",
    ];
    assert_eq!(order(&f), expected);
    assert!(record(&f, "c1").is_none());
    assert!(f.source.statuses.lock().unwrap().is_empty());
}

#[tokio::test]
async fn network_status_failure_rolls_back_everything() {
    let f = fixture(
        Mem {
            status_fails: true,
            ..mem()
        },
        |_| {},
    );
    let err = f.engine.add(call(Command::Add, "c1")).await.unwrap_err();
    assert!(
        matches!(err.cause(), EngineError::NetworkStatus { .. }),
        "{err}"
    );
    let dels = dels(&f);
    assert_eq!(
        dels,
        ["DEL third net2", "DEL second net1", "DEL first eth0"]
    );
    assert!(record(&f, "c1").is_none());
}

#[tokio::test]
async fn del_needs_only_the_record_and_is_idempotent() {
    let f = fixture(mem(), |_| {});
    f.engine.add(call(Command::Add, "c1")).await.unwrap();
    f.source.down.store(true, Ordering::SeqCst);
    let mut del = call(Command::Del, "c1");
    del.netns = String::new();
    f.engine.del(del.clone()).await.unwrap();
    let calls = f.plugins.calls();
    let dels: Vec<_> = calls.iter().filter(|c| c.command == "DEL").collect();
    let names: Vec<_> = dels.iter().map(|c| c.plugin.as_str()).collect();
    assert_eq!(names, ["third", "second", "first"]);
    assert_eq!(
        dels[2].stdin["prevResult"]["by"], "first",
        "cached result passed on DEL"
    );
    assert!(record(&f, "c1").is_none());
    f.engine.del(del).await.unwrap();
    f.engine
        .del(call(Command::Del, "never-added"))
        .await
        .unwrap();
}

#[tokio::test]
async fn del_failure_is_reported_and_retry_delete_on_error_keeps_the_record() {
    for retry in [false, true] {
        let f = fixture(mem(), |c| c.retry_delete_on_error = retry);
        f.engine.add(call(Command::Add, "c1")).await.unwrap();
        f.plugins
            .add("second", r#"echo '{"code":11,"msg":"busy"}'; exit 1"#);
        let err = f.engine.del(call(Command::Del, "c1")).await.unwrap_err();
        assert!(matches!(err, EngineError::Delegate { .. }), "{err}");
        let dels = dels(&f);
        assert_eq!(dels.len(), 3, "every delegate is tried: {dels:?}");
        assert_eq!(record(&f, "c1").is_some(), retry);
    }
}

#[tokio::test]
async fn check_unknown_container_and_recorded_delegates() {
    let f = fixture(mem(), |_| {});
    let err = f
        .engine
        .check(call(Command::Check, "nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::UnknownContainer(_)), "{err}");
    f.engine.add(call(Command::Add, "c1")).await.unwrap();
    f.engine.check(call(Command::Check, "c1")).await.unwrap();
    let checks: Vec<_> = order(&f)
        .into_iter()
        .filter(|c| c.starts_with("CHECK"))
        .collect();
    assert_eq!(
        checks,
        ["CHECK first eth0", "CHECK second net1", "CHECK third net2"]
    );
}

#[tokio::test]
async fn pod_gone_gives_the_placeholder_result_and_runs_nothing() {
    let f = fixture(
        Mem {
            pods: vec![],
            ..mem()
        },
        |_| {},
    );
    let out = f.engine.add(call(Command::Add, "c1")).await.unwrap();
    let result: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(result["ips"][0]["address"], "0.0.0.0/0");
    assert_eq!(result["interfaces"][0]["name"], "eth0");
    assert!(f.plugins.calls().is_empty());
    assert!(record(&f, "c1").is_none());
}

#[tokio::test]
async fn gc_tears_down_containers_not_in_valid_attachments() {
    let f = fixture(mem(), |c| c.delegates[0]["cniVersion"] = json!("1.1.0"));
    f.engine.add(call(Command::Add, "keep")).await.unwrap();
    f.engine.add(call(Command::Add, "stale")).await.unwrap();
    let mut gc = call(Command::Gc, "");
    gc.config = json!({"cniVersion": "1.1.0", "name": "multus", "type": "multus-shim",
        "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]})
    .to_string()
    .into_bytes();
    f.engine.gc(gc).await.unwrap();
    assert!(record(&f, "keep").is_some());
    assert!(record(&f, "stale").is_none());
    let calls = f.plugins.calls();
    let dels: Vec<_> = calls
        .iter()
        .filter(|c| c.command == "DEL")
        .map(|c| c.plugin.as_str())
        .collect();
    assert_eq!(dels, ["third", "second", "first"]);
    let gcs: Vec<_> = calls.iter().filter(|c| c.command == "GC").collect();
    assert_eq!(gcs.len(), 1, "only the 1.1.0 network gets GC");
    assert_eq!(
        gcs[0].stdin["cni.dev/valid-attachments"],
        json!([{"containerID": "keep", "ifname": "eth0"}])
    );
    let mut bad = call(Command::Gc, "");
    bad.config =
        br#"{"cniVersion":"1.1.0","cni.dev/valid-attachments":{"containerID":"keep"}}"#.to_vec();
    assert!(matches!(
        f.engine.gc(bad).await,
        Err(EngineError::InvalidConfig(_))
    ));
}

/// D-16: libcni sends `null` when the runtime passes no list, and upstream's GC succeeds
/// without reading it; with no list nothing can be told stale, so nothing is collected.
#[tokio::test]
async fn d16_gc_without_valid_attachments() {
    let f = fixture(mem(), |c| c.delegates[0]["cniVersion"] = json!("1.1.0"));
    f.engine.add(call(Command::Add, "c1")).await.unwrap();
    let before = f.plugins.calls().len();
    for config in [
        json!({"cniVersion": "1.1.0", "name": "multus", "type": "multus-shim"}),
        json!({"cniVersion": "1.1.0", "name": "multus", "type": "multus-shim",
            "cni.dev/valid-attachments": null}),
    ] {
        let mut gc = call(Command::Gc, "");
        gc.config = config.to_string().into_bytes();
        f.engine.gc(gc).await.unwrap();
    }
    assert!(record(&f, "c1").is_some(), "nothing collected");
    assert_eq!(f.plugins.calls().len(), before, "no DEL, no delegate GC");
    // An empty list is the runtime saying nothing is live: that one collects.
    let mut gc = call(Command::Gc, "");
    gc.config = json!({"cniVersion": "1.1.0", "name": "multus", "type": "multus-shim",
        "cni.dev/valid-attachments": []})
    .to_string()
    .into_bytes();
    f.engine.gc(gc).await.unwrap();
    assert!(record(&f, "c1").is_none());
}

#[tokio::test]
async fn status_checks_readiness_then_the_cluster_network() {
    let ready = tempfile::tempdir().unwrap();
    let flag = ready.path().join("ready");
    let f = fixture(mem(), |c| {
        c.readiness_indicator_file = Some(flag.clone());
        c.delegates[0]["cniVersion"] = json!("1.1.0");
    });
    let err = f
        .engine
        .status(call(Command::Status, ""))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Unavailable(_)), "{err}");
    std::fs::write(&flag, b"").unwrap();
    f.engine.status(call(Command::Status, "")).await.unwrap();
    assert_eq!(order(&f), ["STATUS first -"]);
    f.plugins.add(
        "first",
        r#"echo '{"code":50,"msg":"datastore not ready"}'; exit 1"#,
    );
    match f
        .engine
        .status(call(Command::Status, ""))
        .await
        .unwrap_err()
    {
        EngineError::Delegate { source, .. } => {
            assert!(
                matches!(source.exec_error(), Some(exec::ExecError::Plugin { error, .. }) if error.code == 50)
            )
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn add_and_hotplug_add_wait_for_the_readiness_file_del_does_not() {
    let ready = tempfile::tempdir().unwrap();
    let flag = ready.path().join("ready");
    let f = fixture(mem(), |c| c.readiness_indicator_file = Some(flag.clone()));
    let err = f.engine.add(call(Command::Add, "c1")).await.unwrap_err();
    assert!(matches!(err.cause(), EngineError::NotReady(_)), "{err}");
    assert_eq!(err.cni_code(), 11);
    assert!(
        err.to_string().contains(&flag.display().to_string()),
        "{err}"
    );
    assert!(f.plugins.calls().is_empty(), "a delegate ran");
    std::fs::write(&flag, b"").unwrap();
    f.engine.add(call(Command::Add, "c1")).await.unwrap();

    std::fs::remove_file(&flag).unwrap();
    // Only a watch notices a removal; without one the state is what was last seen. The daemon
    // always runs the watch (`Readiness::watch`), so follow it here too.
    let _watch = f.engine.readiness().watch();
    let mut present = f.engine.readiness().indicator().unwrap().subscribe();
    tokio::time::timeout(Duration::from_secs(5), present.wait_for(|p| !*p))
        .await
        .unwrap()
        .unwrap();
    let add = call(Command::Add, "c1");
    let hotplug = HotplugCall {
        command: Command::Add,
        container_id: "c1".into(),
        netns: add.netns.clone(),
        ifname: "net9".into(),
        args: add.args.clone(),
        network: HotplugNetwork::Selection("sec1@net9".into()),
    };
    let err = f.engine.hotplug(hotplug).await.unwrap_err();
    assert!(matches!(err.cause(), EngineError::NotReady(_)), "{err}");
    f.engine.del(call(Command::Del, "c1")).await.unwrap();
    assert!(record(&f, "c1").is_none());
}

#[tokio::test]
async fn second_add_tears_down_what_the_first_left() {
    let f = fixture(mem(), |_| {});
    f.engine.add(call(Command::Add, "c1")).await.unwrap();
    f.engine.add(call(Command::Add, "c1")).await.unwrap();
    let cmds: Vec<_> = order(&f).iter().map(|c| c[..3].to_owned()).collect();
    assert_eq!(
        cmds,
        [
            "ADD", "ADD", "ADD", "DEL", "DEL", "DEL", "ADD", "ADD", "ADD"
        ]
    );
    assert!(record(&f, "c1").is_some());
}

#[tokio::test]
async fn failed_rollback_keeps_the_record_for_del() {
    let f = fixture(mem(), |_| {});
    f.plugins
        .add("third", r#"echo '{"code":107,"msg":"no"}'; exit 1"#);
    f.plugins.add(
        "first",
        &format!("[ \"$CNI_COMMAND\" = DEL ] && exit 1\n{ECHO_RESULT}"),
    );
    assert!(f.engine.add(call(Command::Add, "c1")).await.is_err());
    let rec = record(&f, "c1").expect("record kept after a failed rollback");
    assert_eq!(rec.delegates[0].state, State::Added);
    assert_eq!(rec.delegates[2].state, State::Planned);
}

/// D-4: the auxiliary chain runs last, passthru first in it, on `net<position>`, is recorded,
/// adds nothing to network-status (passthru's result is empty) and is torn down first on DEL.
#[tokio::test]
async fn d4_auxiliary_chain_runs_last_and_is_torn_down_first() {
    let conf_dir = tempfile::tempdir().unwrap();
    let cluster = conf_dir.path().join("10-cluster.conflist");
    let conflist =
        json!({"cniVersion": "1.0.0", "name": "cluster", "plugins": [{"type": "first"}]});
    std::fs::write(&cluster, conflist.to_string()).unwrap();
    std::fs::create_dir(conf_dir.path().join("aux")).unwrap();
    std::fs::write(
        conf_dir.path().join("aux/10-chained.conf"),
        r#"{"type": "chained"}"#,
    )
    .unwrap();
    let f = fixture(mem(), |c| {
        c.delegates.clear();
        c.cluster_network = Some(cluster.display().to_string());
        c.auxiliary_cni_chain_name = Some("aux".into());
    });
    // Upstream's passthru: an empty result in the config's version; the chained plugin hands
    // its prevResult on.
    f.plugins.add(
        "passthru",
        r#"if [ "$CNI_COMMAND" = ADD ]; then printf '{"cniVersion":"0.3.1","interfaces":[],"ips":[],"routes":[],"dns":{}}'; fi"#,
    );
    f.plugins.add(
        "chained",
        r#"if [ "$CNI_COMMAND" = ADD ]; then printf '{"cniVersion":"0.3.1","interfaces":[],"ips":[],"dns":{}}'; fi"#,
    );
    f.engine.add(call(Command::Add, "c1")).await.unwrap();
    assert_eq!(
        order(&f),
        [
            "ADD first eth0",
            "ADD second net1",
            "ADD third net2",
            "ADD passthru net3",
            "ADD chained net3"
        ]
    );
    let calls = f.plugins.calls();
    assert_eq!(calls[3].stdin["name"], "aux");
    assert_eq!(
        calls[3].stdin["cniVersion"], "0.3.1",
        "the multus config's version"
    );
    assert_eq!(calls[4].stdin["prevResult"]["interfaces"], json!([]));
    let rec = record(&f, "c1").unwrap();
    assert_eq!(
        rec.delegates.last().map(|e| e.delegate.name.as_str()),
        Some("aux")
    );
    let statuses = f.source.statuses.lock().unwrap().clone();
    let status: Value = serde_json::from_str(&statuses[0]).unwrap();
    assert_eq!(
        status.as_array().map(Vec::len),
        Some(3),
        "no entry for the chain"
    );

    f.engine.del(call(Command::Del, "c1")).await.unwrap();
    assert_eq!(
        dels(&f),
        [
            "DEL chained net3",
            "DEL passthru net3",
            "DEL third net2",
            "DEL second net1",
            "DEL first eth0"
        ]
    );
    assert!(record(&f, "c1").is_none());
}
