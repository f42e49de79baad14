//! What each fuzz target runs: the product's own parsers, compiled from the product's own
//! source files (`#[path]`), so the fuzz build needs none of the daemon's heavy dependencies
//! (kube, tonic server, OpenTelemetry), only `multus-common`. Each function takes the fuzzer's
//! bytes, runs the parser, and checks what must hold for any input (no panic, and a few
//! round-trip properties); a violated property panics, which libFuzzer reports as a crash.
#![forbid(unsafe_code)]

// The product's parsers, compiled from its own files. (Top-level `#[path]`s: inside an inline
// `mod` the path would start from a directory that does not exist.)
#[allow(dead_code)]
#[path = "../../../daemon/src/engine/netconf/model.rs"]
pub mod model;
#[allow(dead_code)]
#[path = "../../../daemon/src/engine/selection.rs"]
pub mod selection;
#[allow(dead_code)]
#[path = "../../../shim/src/conf.rs"]
pub mod shim_conf;
#[allow(dead_code)]
#[path = "../../../shim/src/env.rs"]
pub mod shim_env;

use multus_common::{CniArgs, Command};

/// CNI_ARGS: a parse that succeeds gives pairs with non-empty, `=`- and `;`-free keys, and
/// parsing the pairs joined again gives the same pairs.
pub fn cni_args(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(args) = CniArgs::parse(raw) else {
        return;
    };
    let joined: Vec<String> = args.pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for k in args.pairs.keys() {
        assert!(!k.is_empty() && !k.contains(['=', ';']), "key {k:?}");
    }
    if !joined.is_empty() {
        let again = CniArgs::parse(&joined.join(";")).expect("re-parse of parsed pairs");
        assert_eq!(again.pairs, args.pairs);
    }
}

/// Result conversion: any JSON to every supported version; a converted result converts again.
pub fn result_convert(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for target in multus_common::version::SUPPORTED_VERSIONS {
        if let Ok(out) = multus_common::result::convert(&value, "1.0.0", target) {
            assert!(out.is_object(), "{target}: {out}");
            let _ = multus_common::result::convert(&out, target, "1.0.0");
        }
    }
}

/// The shim's stdin: parse, then the version gate of every verb.
pub fn shim_stdin(data: &[u8]) {
    let _ = shim_conf::error_version(data);
    if let Ok(conf) = shim_conf::ShimConf::parse(data) {
        assert!(!conf.name.is_empty() && !conf.cni_version.is_empty());
        for cmd in [
            Command::Add,
            Command::Del,
            Command::Check,
            Command::Status,
            Command::Gc,
        ] {
            let _ = conf.check_version(cmd);
        }
        let _ = conf.socket_path();
    }
}

/// The shim's environment: the first bytes pick the verb, the rest are `NAME=value` lines.
pub fn shim_env(data: &[u8]) {
    let Some((&verb, rest)) = data.split_first() else {
        return;
    };
    let verbs = [
        Command::Add,
        Command::Del,
        Command::Check,
        Command::Status,
        Command::Gc,
    ];
    let cmd = verbs[usize::from(verb) % verbs.len()];
    let text = String::from_utf8_lossy(rest);
    let vars: std::collections::HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if let Ok(env) = shim_env::CniEnv::read(cmd, |k| vars.get(k).cloned())
        && env.validate(cmd).is_ok()
        && cmd.is_per_container()
    {
        // What validation lets through must never name anything outside a directory.
        assert!(!env.container_id.contains('/') && env.container_id != "..");
        assert!(!env.ifname.contains('/') && env.ifname.len() <= 15);
    }
}

/// The networks annotation in both forms (and as the default-network annotation).
pub fn annotation(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(elements) = selection::parse(text, "default") {
        for e in &elements {
            assert!(!e.namespace.is_empty(), "{e:?}");
        }
    }
    let _ = selection::parse_default(text, "kube-system");
}

/// A NAD's `spec.config` / a conf file: parse; what parses writes back to what parses the same.
pub fn netconf(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(conf) = model::NetConf::from_value(value) {
        let back = conf.to_value();
        let again = model::NetConf::from_value(back.clone()).expect("re-parse");
        assert_eq!(again.to_value(), back);
        let _ = (
            conf.name(),
            conf.cni_version(),
            conf.first_type(),
            conf.is_list(),
        );
    }
}
