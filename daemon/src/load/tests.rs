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
    assert_eq!(c.log_level, "debug");
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
    assert_eq!(c.log_level, "verbose");
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
            .map(|p| p.map(|p| p.display().to_string()))
            .map_err(|_| ());
        assert_eq!(got, want.map(|p| p.map(str::to_owned)), "{args:?}");
    }
}
