//! `multusConfigFile` with the real daemon: `auto` generates `00-multus.conf` from the primary
//! CNI config (a bridge conflist), the shim attaches a pod with that file as its stdin, changes
//! to the primary are followed, a broken primary keeps the last good file, SIGTERM keeps it
//! unless `cleanupConfigOnExit`, and a path is copied and followed.
#![allow(clippy::unwrap_used)]

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use multus_e2e::{
    ip,
    netns::Netns,
    scenario::{Cluster, bridge_conflist, host_local, nad, pod},
    shim::{Invocation, k8s_args},
};
use serde_json::{Map, Value, json};

/// How long a change may take to reach the file (the daemon settles bursts within 2 s).
const FOLLOW: Duration = Duration::from_secs(10);

/// Auto mode over the layout's `net.d/` (which holds the cluster's `10-cluster.conflist`).
fn auto_mode(config: &mut Map<String, Value>, extra: Value) {
    let net_d = config["socketDir"]
        .as_str()
        .map(|s| Path::new(s).with_file_name("net.d"))
        .unwrap();
    config.remove("clusterNetwork");
    for (k, v) in [
        ("multusConfigFile", json!("auto")),
        ("multusAutoconfigDir", json!(net_d)),
        ("cniConfigDir", json!(net_d)),
        ("cniVersion", json!("1.0.0")),
        // Passed through to 00-multus.conf so the shim finds this test's socket.
        ("daemonSocketDir", config["socketDir"].clone()),
    ] {
        config.insert(k.into(), v);
    }
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        config.insert(k, v);
    }
}

fn generated(cluster: &Cluster) -> PathBuf {
    cluster.layout.dir("net.d").join("00-multus.conf")
}

/// Waits until `path` holds content for which `ok` is true; its content then.
fn wait_for(cluster: &Cluster, path: &Path, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + FOLLOW;
    loop {
        let now = fs::read_to_string(path).unwrap_or_default();
        if ok(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{} never showed {what} within {FOLLOW:?}; it holds {now:?}\n{}",
            path.display(),
            cluster.daemon.log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_log(cluster: &Cluster, needle: &str, count: usize) {
    let deadline = Instant::now() + FOLLOW;
    while cluster.daemon.log_text().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "the daemon never logged {needle:?} {count} times:\n{}",
            cluster.daemon.log_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn v4_of(ns: &Netns, ifname: &str) -> Vec<String> {
    ip::addresses(ns.name())
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == ifname)
        .map(|(_, a)| a.into_iter().filter(|a| !a.contains(':')).collect())
        .unwrap_or_default()
}

#[test]
fn d1_auto_generates_from_the_primary_and_the_shim_attaches_with_it() {
    let cluster = Cluster::start(|c| auto_mode(c, json!({}))).unwrap();
    let out = generated(&cluster);
    let bytes = wait_for(&cluster, &out, "a config", |s| !s.is_empty());
    let l = &cluster.layout;
    let want = format!(
        r#"{{"binDir":"/usr/lib/cni","cniVersion":"1.0.0","logLevel":"debug","logToStderr":true,"name":"multus-cni-network","clusterNetwork":"{}","type":"multus-shim","cniDir":"{}","daemonSocketDir":"{}"}}"#,
        l.dir("net.d").join("10-cluster.conflist").display(),
        l.dir("cni").display(),
        l.dir("sock").display()
    );
    assert_eq!(bytes, want);
    let mode = fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "upstream's mode");

    l.put_manifest(
        "nad.json",
        &nad(
            "default",
            "ptp-net",
            &json!({"cniVersion": "1.0.0", "name": "ptp-net", "type": "ptp", "ipam": host_local(l, "10.89.0.0/24")}),
        ),
    )
    .unwrap();
    l.put_manifest("pod.json", &pod("default", "gen", "uid-gen", "ptp-net"))
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    // What a runtime does: the file it found in its conf dir, as the shim's stdin.
    let add = Invocation::new(
        "ADD",
        "a0c0f001",
        &pod_ns.path(),
        k8s_args("default", "gen", "uid-gen", "a0c0f001"),
        fs::read(&out).unwrap(),
    );
    let res = add.run().unwrap();
    assert!(
        res.success(),
        "ADD failed: {res:?}\n{}",
        cluster.daemon.log_text()
    );
    assert!(v4_of(&pod_ns, "eth0")[0].starts_with("10.88.0."));
    assert!(v4_of(&pod_ns, "net1")[0].starts_with("10.89.0."));
    let del = add.with_command("DEL").run().unwrap();
    assert!(del.success(), "DEL failed: {del:?}");
    assert!(cluster.layout.leases().unwrap().is_empty());
}

#[test]
fn d1_primary_changes_are_followed_a_broken_primary_keeps_the_file_and_sigterm_keeps_it() {
    let mut cluster = Cluster::start(|c| auto_mode(c, json!({}))).unwrap();
    let out = generated(&cluster);
    let net_d = cluster.layout.dir("net.d");
    wait_for(&cluster, &out, "a config", |s| !s.is_empty());

    // The primary gains portmap: its capability reaches the runtime's config.
    let mut conflist = bridge_conflist(&cluster.layout, &cluster.bridge, "10.88.0.0/24");
    conflist["plugins"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
    fs::write(net_d.join("10-cluster.conflist"), conflist.to_string()).unwrap();
    wait_for(&cluster, &out, "portMappings", |s| {
        s.starts_with(r#"{"binDir":"/usr/lib/cni","capabilities":{"portMappings":true},"cniVersion":"1.0.0","#)
    });

    // A lower-sorting primary appears: the runtime would pick it, so multus follows.
    let other = bridge_conflist(&cluster.layout, "mrsbrother", "10.87.0.0/24");
    fs::write(net_d.join("05-other.conflist"), other.to_string()).unwrap();
    let switched = wait_for(&cluster, &out, "05-other.conflist", |s| {
        s.contains("05-other.conflist")
    });
    assert!(!switched.contains("capabilities"), "{switched}");

    // The primary breaks (half-written): the last good file stays, and the log says why.
    fs::write(net_d.join("05-other.conflist"), "{\"cniVersion\": ").unwrap();
    wait_for_log(&cluster, "keeping the last good multus CNI config", 1);
    assert_eq!(fs::read_to_string(&out).unwrap(), switched);
    // Removed: the next in order is taken again.
    fs::remove_file(net_d.join("05-other.conflist")).unwrap();
    let back = wait_for(&cluster, &out, "10-cluster.conflist", |s| {
        s.contains("10-cluster.conflist")
    });

    let status = cluster.daemon.stop().unwrap().unwrap();
    assert!(status.success(), "{status}\n{}", cluster.daemon.log_text());
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        back,
        "SIGTERM keeps the file"
    );
}

#[test]
fn d1_cleanup_config_on_exit_removes_the_file() {
    let mut cluster =
        Cluster::start(|c| auto_mode(c, json!({"cleanupConfigOnExit": true}))).unwrap();
    let out = generated(&cluster);
    wait_for(&cluster, &out, "a config", |s| !s.is_empty());
    let status = cluster.daemon.stop().unwrap().unwrap();
    assert!(status.success(), "{status}");
    assert!(
        !out.exists(),
        "cleanupConfigOnExit asks for upstream's delete"
    );
}

#[test]
fn d1_a_refused_primary_exits_2_as_upstream() {
    // A primary whose cniVersion is below 0.4.0 under a 1.0.0 multus: upstream's exit 2. The
    // daemon attaches nothing here, so it runs without a node namespace.
    let layout = multus_e2e::daemon::Layout::new().unwrap();
    let net_d = layout.dir("net.d");
    fs::write(
        net_d.join("10-old.conf"),
        json!({"cniVersion": "0.3.1", "name": "old", "type": "bridge"}).to_string(),
    )
    .unwrap();
    let mut config = layout.config("unused");
    auto_mode(&mut config, json!({}));
    let file = layout.dir("conf").join("daemon.json");
    fs::write(&file, Value::Object(config).to_string()).unwrap();
    let mut child = std::process::Command::new(multus_e2e::bins::daemon().unwrap())
        .arg("--config")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + FOLLOW;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not exit on a refused primary");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains("failed to load the primary CNI configuration as a multus delegate with error 'delegate cni version is 0.3.1 while top level cni version is 1.0.0'"),
        "{log}"
    );
    assert!(!net_d.join("00-multus.conf").exists());
}

#[test]
fn d1_a_multus_config_file_path_is_copied_and_followed() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("00-multus.conf");
    let shim_conf = |v: &str| {
        json!({"cniVersion": v, "name": "multus-cni-network", "type": "multus-shim"}).to_string()
    };
    fs::write(&src, shim_conf("1.0.0")).unwrap();
    let cluster = Cluster::start(|c| {
        let net_d = Path::new(c["socketDir"].as_str().unwrap()).with_file_name("net.d");
        c.insert("multusConfigFile".into(), json!(src));
        c.insert("cniConfigDir".into(), json!(net_d));
    })
    .unwrap();
    let copy = generated(&cluster);
    wait_for(&cluster, &copy, "the copy", |s| s == shim_conf("1.0.0"));
    fs::write(&src, shim_conf("1.1.0")).unwrap();
    wait_for(&cluster, &copy, "the new copy", |s| s == shim_conf("1.1.0"));
    // An empty source (a writer that truncates first) is never copied.
    fs::write(&src, "").unwrap();
    wait_for_log(&cluster, "keeping the last good multus CNI config", 1);
    assert_eq!(fs::read_to_string(&copy).unwrap(), shim_conf("1.1.0"));
}

#[test]
fn d1_upstream_configmap_with_flannel_portmap_gives_upstreams_bytes() {
    // upstream's shipped daemon-config (deployments/multus-daemonset-thick.yml), its /host paths
    // pointed at test dirs (its chrootDir /hostroot at this host's /), standalone so no API
    // server is needed; the primary is kube-flannel's cni-conf.json (flannel + portmap).
    let layout = multus_e2e::daemon::Layout::new().unwrap();
    let net_d = layout.dir("net.d");
    let flannel = json!({
        "name": "cbr0", "cniVersion": "0.3.1",
        "plugins": [
            {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    });
    fs::write(net_d.join("10-flannel.conflist"), flannel.to_string()).unwrap();
    let config = json!({
        "chrootDir": "/", "cniVersion": "0.3.1", "logLevel": "verbose",
        "logToStderr": true, "cniConfigDir": net_d, "multusAutoconfigDir": net_d,
        "multusConfigFile": "auto", "socketDir": format!("{}/", layout.dir("sock").display()),
        "clusterStateDir": layout.dir("state")
    });
    let node = Netns::new("mrsnode").unwrap();
    let daemon =
        multus_e2e::daemon::Daemon::start(&node, &layout, config.as_object().unwrap()).unwrap();
    let out = net_d.join("00-multus.conf");
    let deadline = Instant::now() + FOLLOW;
    while fs::read(&out).map_or(true, |b| b.is_empty()) {
        assert!(Instant::now() < deadline, "{}", daemon.log_text());
        thread::sleep(Duration::from_millis(50));
    }
    let want = format!(
        r#"{{"capabilities":{{"portMappings":true}},"cniVersion":"0.3.1","logLevel":"verbose","logToStderr":true,"name":"multus-cni-network","clusterNetwork":"{}/10-flannel.conflist","type":"multus-shim"}}"#,
        net_d.display()
    );
    assert_eq!(fs::read_to_string(&out).unwrap(), want);
}
