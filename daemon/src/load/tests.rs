//! Precedence, case-insensitivity, type errors and unknown keys of the config loader.
use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn environment_overrides_file_overrides_defaults() {
    let file = obj(json!({"socketDir": "/file", "logLevel": "debug", "cniDir": "/cache"}));
    let c = from_layers(
        file,
        env(&[("MULTUS_SOCKET_DIR", "/env"), ("OTHER_SOCKET_DIR", "/no")]),
    )
    .unwrap();
    assert_eq!(c.socket_dir, PathBuf::from("/env"));
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.cni_dir, PathBuf::from("/cache"));
    assert_eq!(c.bin_dir, Config::default().bin_dir);
}

#[test]
fn every_key_can_be_set_from_the_environment() {
    let c = from_layers(
        Map::new(),
        env(&[
            ("MULTUS_METRICS_PORT", "9091"),
            ("MULTUS_LOG_TO_STDERR", "true"),
            ("MULTUS_MULTUS_MASTER_CNI", "10-flannel.conflist"),
            ("MULTUS_READINESSINDICATORFILE", "/ready"),
            ("MULTUS_CNI_VERSION", "1.0"),
            ("MULTUS_DEFAULT_NETWORKS", r#"["a","b"]"#),
            ("MULTUS_NODE_NAME", "node-1"),
            ("MULTUS_DELEGATE_CONCURRENCY", "3"),
        ]),
    )
    .unwrap();
    assert_eq!(c.metrics_port, Some(9091));
    assert!(c.log_to_stderr);
    assert_eq!(c.multus_master_cni.as_deref(), Some("10-flannel.conflist"));
    assert_eq!(c.readiness_indicator_file, Some(PathBuf::from("/ready")));
    // A string key keeps a value that also reads as a JSON number.
    assert_eq!(c.cni_version.as_deref(), Some("1.0"));
    assert_eq!(c.default_networks, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(c.delegate_concurrency, 3);
    assert!(c.extra.is_empty(), "{:?}", c.extra);
}

#[test]
fn file_keys_match_case_insensitively_exact_spelling_first() {
    let file = obj(json!({
        "SOCKETDIR": "/upper", "LogLevel": "verbose", "multusmastercni": "x.conf",
        "cniDir": "/exact", "CNIDIR": "/folded",
    }));
    let c = from_layers(file, Vec::new()).unwrap();
    assert_eq!(c.socket_dir, PathBuf::from("/upper"));
    assert_eq!(c.log_level, LogLevel::Verbose);
    assert_eq!(c.multus_master_cni.as_deref(), Some("x.conf"));
    assert_eq!(c.cni_dir, PathBuf::from("/exact"));
    assert!(c.extra.is_empty(), "{:?}", c.extra);
}

#[test]
fn unknown_keys_are_kept() {
    let file =
        obj(json!({"someFutureKey": {"a": 1}, "type": "multus", "name": "multus-cni-network"}));
    let c = from_layers(file, Vec::new()).unwrap();
    assert_eq!(c.extra.get("someFutureKey"), Some(&json!({"a": 1})));
    assert_eq!(c.extra.get("name"), Some(&json!("multus-cni-network")));
}

#[test]
fn wrong_types_name_the_key() {
    let cases = [
        (json!({"metricsPort": "abc"}), "metricsPort"),
        (json!({"logToStderr": "yes"}), "logToStderr"),
        (json!({"defaultNetworks": 5}), "defaultNetworks"),
        (json!({"connectionLimit": 0}), "connectionLimit"),
        (
            json!({"metricsBindAddress": "not-an-ip"}),
            "metricsBindAddress",
        ),
        (json!({"logFormat": "xml"}), "logFormat"),
        (json!({"logLevel": 3}), "logLevel"),
        (
            json!({"perNodeCertificate": {"enabled": true, "certDuration": "ten"}}),
            "perNodeCertificate.certDuration",
        ),
    ];
    for (file, key) in cases {
        let err = from_layers(obj(file.clone()), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{file}: {err}");
    }
    let err = from_layers(Map::new(), env(&[("MULTUS_METRICS_PORT", "high")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("metricsPort"), "{err}");
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.json");
    assert!(
        load(&missing, Vec::new())
            .unwrap_err()
            .to_string()
            .contains("none.json")
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "[1]").unwrap();
    assert!(matches!(
        load(&bad, Vec::new()),
        Err(LoadError::NotAnObject { .. })
    ));
    let good = dir.path().join("daemon-config.json");
    std::fs::write(
        &good,
        r#"{"chrootDir": "/hostroot", "socketDir": "/run/m"}"#,
    )
    .unwrap();
    let c = load(&good, Vec::new()).unwrap();
    assert_eq!(c.chroot_dir, Some(PathBuf::from("/hostroot")));
}

#[test]
fn unimplemented_keys_are_listed_once_each() {
    let c = from_layers(
        obj(json!({"multusConfigFile": "/x.conf", "enablePprof": true, "metricsPort": 9091})),
        Vec::new(),
    )
    .unwrap();
    let keys: Vec<_> = unimplemented_keys(&c).into_iter().map(|(k, _)| k).collect();
    // multusConfigFile (auto or a path) is implemented by autoconf.
    assert_eq!(keys, vec!["enablePprof"]);
}

#[test]
fn flags_in_go_spellings() {
    let parse = |args: &[&str]| parse_flags(args.iter().map(|s| s.to_string()));
    // (argv, the config path or None for -version; Err for a usage error)
    type Case<'a> = (&'a [&'a str], Result<Option<&'a str>, ()>);
    let cases: &[Case<'_>] = &[
        (&[], Ok(Some("/etc/cni/net.d/multus.d/daemon-config.json"))),
        (&["-config", "/a"], Ok(Some("/a"))),
        (&["--config", "/b"], Ok(Some("/b"))),
        (&["-config=/c"], Ok(Some("/c"))),
        (&["--config=/d"], Ok(Some("/d"))),
        (&["-version"], Ok(None)),
        (&["--version"], Ok(None)),
        (&["-config"], Err(())),
        (&["-bogus"], Err(())),
        // Go's flag accepts strconv.ParseBool spellings after `=` (D-17).
        (&["-version=1"], Ok(None)),
        (&["-version=true"], Ok(None)),
        (&["--version=True"], Ok(None)),
        (&["-version=false", "-config", "/e"], Ok(Some("/e"))),
        (&["-version=yes"], Err(())),
        // Every flag is parsed before -version acts, and parsing stops at the first non-flag.
        (&["-version", "-bogus"], Err(())),
        (&["-config", "/f", "stray", "-bogus"], Ok(Some("/f"))),
        (
            &["--", "-bogus"],
            Ok(Some("/etc/cni/net.d/multus.d/daemon-config.json")),
        ),
    ];
    for (args, want) in cases {
        let got = parse(args)
            .map(|p| p.map(|p| p.config.display().to_string()))
            .map_err(|_| ());
        assert_eq!(got, want.map(|p| p.map(str::to_owned)), "{args:?}");
    }
}

#[test]
fn reconcile_once_and_collect_flags() {
    let parse = |args: &[&str]| parse_flags(args.iter().map(|s| s.to_string()));
    let once = parse(&["-reconcile-once", "-config", "/a"])
        .unwrap()
        .unwrap();
    assert!(once.reconcile_once && !once.collect);
    assert_eq!(once.config, PathBuf::from("/a"));
    let both = parse(&["--reconcile-once", "--collect"]).unwrap().unwrap();
    assert!(both.reconcile_once && both.collect);
    let off = parse(&["-reconcile-once=false"]).unwrap().unwrap();
    assert!(!off.reconcile_once);
    assert!(parse(&[]).unwrap().is_some_and(|f| !f.reconcile_once));
    // Collecting is only ever asked for together with the one-shot run.
    assert!(parse(&["-collect"]).is_err());
    assert!(parse(&["-reconcile-once=maybe"]).is_err());
}

#[test]
fn typed_values_are_parsed_when_loaded() {
    let file = obj(json!({
        "metricsBindAddress": "::1", "logFormat": "JSON", "logLevel": "Warning",
        "perNodeCertificate": {"enabled": true, "certDuration": "1h30m"},
    }));
    let c = from_layers(file, Vec::new()).unwrap();
    assert_eq!(c.metrics_bind_address, std::net::Ipv6Addr::LOCALHOST);
    assert_eq!(c.log_format, crate::config::LogFormat::Json);
    assert_eq!(c.log_level, LogLevel::Warning);
    let cert = c.per_node_certificate.unwrap();
    assert_eq!(
        cert.cert_duration.map(|d| d.0),
        Some(std::time::Duration::from_secs(5400))
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

/// D-7: upstream reads `""` as unset for its path and name keys (`readinessindicatorfile: ""`
/// is "disabled" in its docs); we used to keep `Some("")`, which failed every ADD and exec.
#[test]
fn d7_empty_strings_mean_unset() {
    let file = obj(json!({
        "readinessindicatorfile": "", "chrootDir": "", "logLevel": "", "logFile": "",
        "kubeconfig": "", "clusterNetwork": "", "globalNamespaces": "", "cniVersion": "",
        "multusAutoconfigDir": "", "multusMasterCNI": "", "auxiliaryCNIChainName": "",
        "confDir": "", "cniDir": "", "binDir": "", "multusNamespace": "", "logFormat": "",
        "metricsBindAddress": "", "otlpEndpoint": "",
        "perNodeCertificate": {"bootstrapKubeconfig": "", "certDir": "", "certDuration": ""},
    }));
    let c = from_layers(file, Vec::new()).unwrap();
    let d = Config::default();
    assert_eq!(c.readiness_indicator_file, None);
    assert_eq!(c.chroot_dir, None);
    assert_eq!(c.log_file, None);
    assert_eq!(c.kubeconfig, None);
    assert_eq!(c.cluster_network, None);
    assert_eq!(c.global_namespace_list(), vec!["default".to_string()]);
    assert_eq!(c.cni_version, None);
    assert_eq!(c.multus_autoconfig_dir, None);
    assert_eq!(c.multus_master_cni, None);
    assert_eq!(c.auxiliary_cni_chain_name, None);
    assert_eq!(c.otlp_endpoint, None);
    let cert = c.per_node_certificate.clone().unwrap();
    assert_eq!(
        (cert.bootstrap_kubeconfig, cert.cert_dir, cert.cert_duration),
        (None, None, None)
    );
    assert_eq!(c.log_level, d.log_level);
    assert_eq!(c.log_format, d.log_format);
    assert_eq!(c.metrics_bind_address, d.metrics_bind_address);
    assert_eq!(
        (&c.conf_dir, &c.cni_dir, &c.bin_dir, &c.multus_namespace),
        (&d.conf_dir, &d.cni_dir, &d.bin_dir, &d.multus_namespace)
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // The same from the environment.
    let c = from_layers(Map::new(), env(&[("MULTUS_CHROOT_DIR", "")])).unwrap();
    assert_eq!(c.chroot_dir, None);
}

/// D-7: upstream prints "cannot set logging level" and keeps its default; we exited 1.
#[test]
fn d7_unknown_log_level_warns_and_uses_the_default() {
    for (file, vars) in [
        (obj(json!({"logLevel": "loud"})), Vec::new()),
        (Map::new(), env(&[("MULTUS_LOG_LEVEL", "loud")])),
    ] {
        let c = from_layers(file, vars).unwrap();
        assert_eq!(c.log_level, LogLevel::Panic);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert_eq!(c.warnings[0].key, "logLevel");
        assert!(c.warnings[0].reason.contains("loud"), "{:?}", c.warnings);
    }
}

/// D-7: a thin-era `kubeconfig` naming a file that is gone warns and falls back to in-cluster
/// credentials (the thick daemon upstream ignores the key); an existing file is still used.
#[test]
fn d7_missing_kubeconfig_warns_and_uses_in_cluster_credentials() {
    let stale = "/etc/cni/net.d/multus.d/multus.kubeconfig-that-does-not-exist";
    let c = from_layers(obj(json!({"kubeconfig": stale})), Vec::new()).unwrap();
    assert_eq!(c.kubeconfig, None);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert_eq!(c.warnings[0].key, "kubeconfig");
    assert!(c.warnings[0].reason.contains(stale), "{:?}", c.warnings);

    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("kubeconfig");
    std::fs::write(&real, "apiVersion: v1").unwrap();
    let c = from_layers(obj(json!({"kubeconfig": real})), Vec::new()).unwrap();
    assert_eq!(c.kubeconfig, Some(real));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}
