#![allow(clippy::unwrap_used)]
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{Value, json};

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// A writer planned from `daemon_config` exactly as the daemon plans it (file, load, plan).
fn writer(dir: &Path, daemon_config: &Value) -> Arc<ConfigWriter> {
    let file = dir.join("daemon-config.json");
    fs::write(&file, daemon_config.to_string()).unwrap();
    let config = load::load(&file, Vec::new()).unwrap();
    Arc::new(
        ConfigWriter::plan(&file, &config, Vec::new())
            .unwrap()
            .unwrap(),
    )
}

fn text(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

const MYCNI: &str = r#"
{
  "cniVersion": "0.4.0",
  "name": "mycni-name",
  "type": "mycni",
  "ipam": {},
  "dns": {}
}
"#;

/// upstream's manager_test.go daemon-config, for a primary `name` in `dir`.
fn manager_test_config(dir: &Path, name: &str) -> Value {
    json!({
        "name": dir.join(name), "cniVersion": "0.4.0",
        "multusAutoconfigDir": dir, "multusMasterCNI": name,
        "cniConfigDir": dir, "forceCNIVersion": false
    })
}

#[tokio::test]
async fn d1_bytes_match_upstream_manager_test() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("00-mycni.conf"), MYCNI).unwrap();
    let w = writer(d, &manager_test_config(d, "00-mycni.conf"));
    w.first().await.unwrap();
    let want = format!(
        "{{\"cniVersion\":\"0.4.0\",\"name\":\"multus-cni-network\",\"clusterNetwork\":\"{}/00-mycni.conf\",\"type\":\"multus-shim\"}}",
        d.display()
    );
    let out = d.join("00-multus.conf");
    assert_eq!(text(&out), want);
    // upstream's UserRWPermission.
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn d1_override_network_name_takes_the_primarys_name_and_is_emitted_last() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("00-mycni.conf"), MYCNI).unwrap();
    let mut config = manager_test_config(d, "00-mycni.conf");
    config["overrideNetworkName"] = json!(true);
    let w = writer(d, &config);
    w.first().await.unwrap();
    let want = format!(
        "{{\"cniVersion\":\"0.4.0\",\"name\":\"mycni-name\",\"clusterNetwork\":\"{}/00-mycni.conf\",\"type\":\"multus-shim\",\"overrideNetworkName\":true}}",
        d.display()
    );
    assert_eq!(text(&d.join("00-multus.conf")), want);
}

#[tokio::test]
async fn d1_version_mismatch_fails_with_upstreams_text_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("00-mycni.conf"), MYCNI.replace("0.4.0", "0.3.1")).unwrap();
    let w = writer(d, &manager_test_config(d, "00-mycni.conf"));
    let err = w.first().await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to create the configuration manager for the primary CNI plugin: failed to load the primary CNI configuration as a multus delegate with error 'delegate cni version is 0.3.1 while top level cni version is 0.4.0'"
    );
    assert_eq!(err.exit_code(), 2);
    assert!(!d.join("00-multus.conf").exists());
}

/// kube-flannel's cni-conf.json: flannel + portmap with portMappings.
fn flannel_conflist() -> Value {
    json!({
        "name": "cbr0", "cniVersion": "0.3.1",
        "plugins": [
            {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
}

/// upstream's shipped ConfigMap (deployments/multus-daemonset-thick.yml).
fn shipped_daemon_config() -> Value {
    json!({
        "chrootDir": "/hostroot", "cniVersion": "0.3.1", "logLevel": "verbose",
        "logToStderr": true, "cniConfigDir": "/host/etc/cni/net.d",
        "multusAutoconfigDir": "/host/etc/cni/net.d", "multusConfigFile": "auto",
        "socketDir": "/host/run/multus/"
    })
}

const FLANNEL_BYTES: &str = r#"{"capabilities":{"portMappings":true},"cniVersion":"0.3.1","logLevel":"verbose","logToStderr":true,"name":"multus-cni-network","clusterNetwork":"/host/etc/cni/net.d/10-flannel.conflist","type":"multus-shim"}"#;

#[test]
fn d1_bytes_match_upstream_flannel_portmap() {
    let base = ShimConf::from_daemon_config(&obj(shipped_daemon_config())).unwrap();
    let path = primary::join(Path::new("/host/etc/cni/net.d"), "10-flannel.conflist");
    let bytes = render(&base, &path, &flannel_conflist()).unwrap();
    assert_eq!(String::from_utf8(bytes).unwrap(), FLANNEL_BYTES);
}

#[tokio::test]
async fn d1_flannel_portmap_through_the_daemon_config_file() {
    // The shipped ConfigMap with its paths pointed at a test dir: discovery, not multusMasterCNI.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(
        d.join("10-flannel.conflist"),
        flannel_conflist().to_string(),
    )
    .unwrap();
    fs::write(d.join("99-other.conf"), MYCNI).unwrap();
    let mut config = shipped_daemon_config();
    // A trailing slash, as in the shipped socketDir: Go's Join cleans it away.
    config["cniConfigDir"] = json!(format!("{}/", d.display()));
    config["multusAutoconfigDir"] = json!(format!("{}/", d.display()));
    let w = writer(d, &config);
    w.first().await.unwrap();
    let want = FLANNEL_BYTES.replace("/host/etc/cni/net.d", &d.display().to_string());
    assert_eq!(text(&d.join("00-multus.conf")), want);
}

#[test]
fn keys_fold_case_later_duplicates_win_and_name_is_forced() {
    let raw = obj(json!({
        "CNIVERSION": "0.4.0", "cniVersion": "1.0.0", "Type": "other-shim",
        "name": "mine", "LOGLEVEL": "debug", "binDir": "/opt/cni/bin",
        "daemonSocketDir": "/run/multus", "socketDir": "/elsewhere",
        "NamespaceIsolation": true, "globalNamespaces": "a,b", "cniDir": "/var/lib/cni/multus",
        "auxiliaryCNIChainName": "aux", "multusNamespace": "kube-system",
        "delegates": [{"type": "x"}], "readinessindicatorfile": "/r", "confDir": "/c"
    }));
    let base = ShimConf::from_daemon_config(&raw).unwrap();
    let out =
        String::from_utf8(render(&base, "/p/10-a.conf", &json!({"cniVersion": "1.0.0"})).unwrap())
            .unwrap();
    assert_eq!(
        out,
        r#"{"binDir":"/opt/cni/bin","cniVersion":"1.0.0","logLevel":"debug","name":"multus-cni-network","clusterNetwork":"/p/10-a.conf","namespaceIsolation":true,"globalNamespaces":"a,b","type":"other-shim","cniDir":"/var/lib/cni/multus","auxiliaryCNIChainName":"aux","daemonSocketDir":"/run/multus"}"#
    );
}

#[test]
fn capabilities_merge_into_the_daemon_configs_and_false_survives() {
    let raw =
        obj(json!({"cniVersion": "1.0.0", "capabilities": {"zeta": true, "bandwidth": false}}));
    let base = ShimConf::from_daemon_config(&raw).unwrap();
    let primary = json!({
        "cniVersion": "1.0.0", "capabilities": {"ignored": true},
        "plugins": [
            {"type": "a", "capabilities": {"portMappings": true, "ips": false}},
            {"type": "b", "capabilities": {"bandwidth": true}},
            {"type": "c"}
        ]
    });
    let out = String::from_utf8(render(&base, "/p", &primary).unwrap()).unwrap();
    assert!(
        out.starts_with(r#"{"capabilities":{"bandwidth":true,"portMappings":true,"zeta":true},"#),
        "{out}"
    );
    let single = json!({"cniVersion": "1.0.0", "capabilities": {"mac": true}, "plugins": []});
    let out = String::from_utf8(render(&base, "/p", &single).unwrap()).unwrap();
    assert!(
        out.starts_with(r#"{"capabilities":{"bandwidth":false,"mac":true,"zeta":true},"#),
        "{out}"
    );
}

#[test]
fn malformed_capabilities_are_errors_not_panics() {
    let base = ShimConf::from_daemon_config(&obj(json!({"cniVersion": "0.3.1"}))).unwrap();
    let cases = [
        (json!({"plugins": {"a": 1}}), LoadError::PluginsNotAList),
        (json!({"plugins": null}), LoadError::PluginsNotAList),
        (
            json!({"plugins": [{"capabilities": {"portMappings": "yes"}}]}),
            LoadError::CapabilityNotBool("portMappings".into()),
        ),
        (json!(["not", "an", "object"]), LoadError::NotAnObject),
    ];
    for (primary, want) in cases {
        assert_eq!(
            render(&base, "/p", &primary),
            Err(GenerateError::Load(want))
        );
    }
}

#[test]
fn log_options_keep_explicit_zeroes_in_upstreams_order() {
    let raw = obj(json!({"cniVersion": "0.3.1", "logFile": "/var/log/m.log",
        "logOptions": {"compress": false, "maxAge": 0, "MaxBackups": 3}}));
    let base = ShimConf::from_daemon_config(&raw).unwrap();
    let out = String::from_utf8(render(&base, "/p", &json!({})).unwrap()).unwrap();
    assert_eq!(
        out,
        r#"{"cniVersion":"0.3.1","logFile":"/var/log/m.log","logOptions":{"maxAge":0,"maxBackups":3,"compress":false},"name":"multus-cni-network","clusterNetwork":"/p","type":"multus-shim"}"#
    );
}

#[test]
fn strings_are_escaped_as_go_does() {
    let raw =
        obj(json!({"cniVersion": "0.3.1", "logFile": "/l/<a>&b\u{2028}\u{2029}\"\\\n\u{1}é"}));
    let base = ShimConf::from_daemon_config(&raw).unwrap();
    let out = String::from_utf8(base.marshal()).unwrap();
    assert!(
        out.contains(r#""logFile":"/l/\u003ca\u003e\u0026b\u2028\u2029\"\\\n\u0001é""#),
        "{out}"
    );
    assert!(!out.ends_with('\n'));
}

#[test]
fn wrong_types_fail_like_gos_unmarshal() {
    let err = ShimConf::from_daemon_config(&obj(json!({"type": 5}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to unmarshall the daemon configuration: json: cannot unmarshal number into Go struct field MultusConf.type of type string"
    );
    assert!(ShimConf::from_daemon_config(&obj(json!({"capabilities": []}))).is_err());
    assert!(ShimConf::from_daemon_config(&obj(json!({"logOptions": {"maxAge": 1.5}}))).is_err());
    // null leaves upstream's value as it was.
    let c =
        ShimConf::from_daemon_config(&obj(json!({"type": null, "capabilities": null}))).unwrap();
    assert_eq!(c.plugin_type, "multus-shim");
}

#[test]
fn version_check_matches_upstream() {
    let v = |top: &str, primary: Value| primary::check_version(top, &primary);
    assert_eq!(v("", json!({})), Err(LoadError::TopVersion));
    assert_eq!(v("1.0", json!({})), Err(LoadError::TopVersion));
    // Below 0.4.0 nothing about the primary is checked.
    assert_eq!(v("0.3.1", json!("anything")), Ok(()));
    assert_eq!(
        v("1.0.0", json!({"cniVersion": 1})),
        Err(LoadError::DelegateVersion)
    );
    assert_eq!(v("1.0.0", json!({})), Err(LoadError::DelegateVersion));
    assert_eq!(
        v("1.0.0", json!({"cniVersion": "1.0"})),
        Err(LoadError::DelegateSemver(
            "No Major.Minor.Patch elements found".into()
        ))
    );
    assert_eq!(
        v("1.0.0", json!({"cniVersion": "01.0.0"})),
        Err(LoadError::DelegateSemver(
            "Major number must not contain leading zeroes \"01\"".into()
        ))
    );
    assert_eq!(
        v("1.0.0", json!({"cniVersion": "0.4.0-rc1"}))
            .unwrap_err()
            .to_string(),
        "delegate cni version is 0.4.0-rc1 while top level cni version is 1.0.0"
    );
    assert_eq!(v("0.4.0", json!({"cniVersion": "1.1.0+build.1"})), Ok(()));
}

#[test]
fn network_name_errors() {
    assert_eq!(primary::network_name(&json!({})), Err(NameError::Missing));
    assert_eq!(
        primary::network_name(&json!({"name": 1})),
        Err(NameError::NotAString)
    );
    assert!(matches!(
        primary::network_name(&json!({"name": ""})),
        Err(NameError::Empty(_))
    ));
}

#[test]
fn join_is_gos_filepath_join() {
    let j = |d: &str, n: &str| primary::join(Path::new(d), n);
    assert_eq!(
        j("/host/etc/cni/net.d/", "10-a.conf"),
        "/host/etc/cni/net.d/10-a.conf"
    );
    assert_eq!(
        j("/etc/cni//net.d", "/abs/x.conf"),
        "/etc/cni/net.d/abs/x.conf"
    );
    assert_eq!(j("/etc/cni/net.d", "../x.conf"), "/etc/cni/x.conf");
}

#[test]
fn primary_is_the_first_sorted_conf_or_conflist_not_00_multus() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(primary::first_candidate(d).unwrap(), None);
    for f in [
        "00-multus.conf",
        "00-multus.conflist",
        "05-a.json",
        "zz.conf",
        "20-b.conflist",
        "10-c.conf.bak",
    ] {
        fs::write(d.join(f), "{}").unwrap();
    }
    assert_eq!(
        primary::first_candidate(d).unwrap().as_deref(),
        Some("20-b.conflist")
    );
    fs::write(d.join("15-c.conf"), "{}").unwrap();
    assert_eq!(
        primary::first_candidate(d).unwrap().as_deref(),
        Some("15-c.conf")
    );
    assert!(primary::first_candidate(&d.join("missing")).is_err());
}

#[tokio::test(start_paused = true)]
async fn waiting_for_a_primary_gives_up_after_120_tries() {
    let dir = tempfile::tempdir().unwrap();
    let start = tokio::time::Instant::now();
    let err = wait_for_primary(dir.path()).await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(120));
    assert_eq!(
        err.to_string(),
        format!(
            "failed to create the configuration manager for the primary CNI plugin: failed to find the cluster master CNI plugin: could not find a plugin configuration in {}",
            dir.path().display()
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_primary_that_appears_while_waiting_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let late = d.join("10-late.conf");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(4500)).await;
        fs::write(late, "{}").unwrap();
    });
    let start = tokio::time::Instant::now();
    assert_eq!(wait_for_primary(&d).await.unwrap(), "10-late.conf");
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

/// A writer in auto mode over `dir` (discovery), cniVersion 1.0.0, first file written.
async fn auto_writer(dir: &Path) -> Arc<ConfigWriter> {
    let w = writer(
        dir,
        &json!({
            "cniVersion": "1.0.0", "multusAutoconfigDir": dir, "cniConfigDir": dir
        }),
    );
    w.first().await.unwrap();
    w
}

fn primary_conf(name: &str, caps: Value) -> String {
    json!({"cniVersion": "1.0.0", "name": name, "type": "bridge", "capabilities": caps}).to_string()
}

#[tokio::test]
async fn refresh_follows_changes_keeps_the_last_good_file_and_switches_to_a_lower_primary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("00-multus.conf");
    fs::write(d.join("50-b.conf"), primary_conf("b", json!({}))).unwrap();
    let w = auto_writer(d).await;
    assert!(text(&out).contains("50-b.conf"));
    assert!(!text(&out).contains("capabilities"));

    fs::write(
        d.join("50-b.conf"),
        primary_conf("b", json!({"portMappings": true})),
    )
    .unwrap();
    w.refresh_now().unwrap();
    assert!(text(&out).starts_with(r#"{"capabilities":{"portMappings":true}"#));

    // A capability the primary drops is dropped (upstream keeps it until a restart).
    fs::write(d.join("50-b.conf"), primary_conf("b", json!({}))).unwrap();
    w.refresh_now().unwrap();
    assert!(!text(&out).contains("capabilities"));
    let good = text(&out);

    fs::write(d.join("50-b.conf"), "{ half written").unwrap();
    let reason = w.refresh_now().unwrap_err();
    assert!(
        reason.contains("failed to unmarshall primary CNI config"),
        "{reason}"
    );
    assert_eq!(text(&out), good);

    fs::write(d.join("50-b.conf"), "").unwrap();
    assert!(w.refresh_now().is_err());
    assert_eq!(text(&out), good);

    fs::write(
        d.join("10-a.conflist"),
        primary_conf("a", json!({"bandwidth": true})),
    )
    .unwrap();
    w.refresh_now().unwrap();
    assert!(text(&out).contains("10-a.conflist"));
    assert!(text(&out).contains("bandwidth"));

    fs::remove_file(d.join("10-a.conflist")).unwrap();
    fs::remove_file(d.join("50-b.conf")).unwrap();
    let reason = w.refresh_now().unwrap_err();
    assert!(reason.contains("no primary CNI config"), "{reason}");
    assert!(
        text(&out).contains("10-a.conflist"),
        "the last good file stays"
    );
    // No temp files are left beside it.
    let names: Vec<_> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[tokio::test]
async fn exit_keeps_the_file_unless_cleanup_is_asked_and_only_removes_our_own() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("10-a.conf"), primary_conf("a", json!({}))).unwrap();
    let out = d.join("00-multus.conf");
    let keep = auto_writer(d).await;
    keep.on_exit();
    assert!(out.exists());

    let cleanup = json!({
        "cniVersion": "1.0.0", "multusAutoconfigDir": d, "cniConfigDir": d,
        "cleanupConfigOnExit": true
    });
    let w = writer(d, &cleanup);
    w.first().await.unwrap();
    w.on_exit();
    assert!(!out.exists(), "cleanupConfigOnExit removes our own file");

    let w = writer(d, &cleanup);
    w.first().await.unwrap();
    fs::write(&out, "{\"written\":\"by someone else\"}").unwrap();
    w.on_exit();
    assert!(
        out.exists(),
        "a file this daemon did not write is left alone"
    );
}

#[tokio::test]
async fn a_removed_file_is_not_recreated_until_the_primary_changes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("10-a.conf"), primary_conf("a", json!({}))).unwrap();
    let out = d.join("00-multus.conf");
    let w = auto_writer(d).await;
    fs::remove_file(&out).unwrap();
    w.refresh_now().unwrap();
    assert!(!out.exists(), "an operator's removal is respected");
    fs::write(d.join("10-a.conf"), primary_conf("a", json!({"mac": true}))).unwrap();
    w.refresh_now().unwrap();
    assert!(text(&out).contains("mac"));
}

#[tokio::test]
async fn the_output_as_primary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(d.join("00-multus.conf"), primary_conf("a", json!({}))).unwrap();
    let w = writer(
        d,
        &json!({
            "cniVersion": "1.0.0", "multusAutoconfigDir": d, "cniConfigDir": d,
            "multusMasterCNI": "00-multus.conf"
        }),
    );
    let err = w.first().await.unwrap_err();
    assert!(
        err.to_string().contains("to prevent recursive config load"),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
}

#[tokio::test]
async fn a_path_is_copied_atomically_and_a_bad_source_keeps_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("src")).unwrap();
    fs::create_dir(d.join("net.d")).unwrap();
    let src = d.join("src/05-mine.conf");
    fs::write(
        &src,
        r#"{"cniVersion":"1.0.0","name":"m","type":"multus-shim"}"#,
    )
    .unwrap();
    let w = writer(
        d,
        &json!({"multusConfigFile": src, "cniConfigDir": d.join("net.d")}),
    );
    assert_eq!(w.output(), d.join("net.d/05-mine.conf"));
    w.first().await.unwrap();
    let copy = d.join("net.d/05-mine.conf");
    assert_eq!(text(&copy), text(&src));
    assert_eq!(
        fs::metadata(&copy).unwrap().permissions().mode() & 0o777,
        0o644
    );
    fs::write(&src, "").unwrap();
    assert!(w.refresh_now().unwrap_err().contains("not valid JSON"));
    assert!(text(&copy).contains("multus-shim"));
}

#[test]
fn auto_without_an_autoconfig_dir_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.json");
    fs::write(&file, "{}").unwrap();
    let config = load::load(&file, Vec::new()).unwrap();
    assert!(
        ConfigWriter::plan(&file, &config, Vec::new())
            .unwrap()
            .is_none()
    );
}

#[test]
fn an_empty_multus_config_file_is_auto_and_a_path_without_a_file_copies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = writer(
        d,
        &json!({"multusConfigFile": "", "multusAutoconfigDir": d, "cniConfigDir": d}),
    );
    assert!(matches!(w.source, Source::Generate(_)));
    let file = d.join("d.json");
    fs::write(&file, r#"{"multusConfigFile": "/"}"#).unwrap();
    let config = load::load(&file, Vec::new()).unwrap();
    assert!(
        ConfigWriter::plan(&file, &config, Vec::new())
            .unwrap()
            .is_none()
    );
}

#[test]
fn environment_overrides_reach_the_generated_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.json");
    fs::write(
        &file,
        r#"{"cniVersion": "0.3.1", "multusAutoconfigDir": "/x"}"#,
    )
    .unwrap();
    let env = vec![("MULTUS_CNI_VERSION".to_string(), "1.0.0".to_string())];
    let config = load::load(&file, env.clone()).unwrap();
    let w = ConfigWriter::plan(&file, &config, env).unwrap().unwrap();
    let Source::Generate(g) = &w.source else {
        panic!("auto mode")
    };
    assert_eq!(g.base.cni_version, "1.0.0");
}

#[test]
fn put_refuses_empty_and_skips_identical_content() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("00-multus.conf");
    assert!(put(&p, b"", 0o600).is_err());
    assert!(!p.exists());
    assert_eq!(put(&p, b"{}", 0o600).unwrap(), Outcome::Written);
    assert_eq!(put(&p, b"{}", 0o600).unwrap(), Outcome::Unchanged);
    // A wrong mode is fixed even when the bytes are the same.
    assert_eq!(put(&p, b"{}", 0o644).unwrap(), Outcome::Written);
    assert_eq!(
        fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[test]
fn force_cni_version_rewrites_the_primary_sorted_and_compact() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("10-a.conf");
    fs::write(
        &p,
        r#"{"type": "bridge", "cniVersion": "0.3.1", "b": {"z": 1, "a": "<"}}"#,
    )
    .unwrap();
    force_version(&p.to_string_lossy(), "1.1.1").unwrap();
    assert_eq!(
        text(&p),
        r#"{"b":{"a":"\u003c","z":1},"cniVersion":"1.1.1","type":"bridge"}"#
    );
}
