//! The Helm chart against the daemon: every daemon-config key documented in values.yaml with the
//! daemon's default (so the two cannot drift apart), and `helm lint` on every value set.
//!
//! The rule for `daemonConfig` in values.yaml:
//! * every key of `Config::default()` is present, spelled as the daemon spells it, with the
//!   daemon's default; an optional key whose default is unset is present as `null` (absent is
//!   not allowed: a key nobody wrote down is a key nobody documented);
//! * except the few keys the chart deliberately sets differently (`CHART_CHOICES`), whose comment
//!   must say "daemon default:";
//! * and the keys rendered from other sections of values.yaml (`RENDERED_ELSEWHERE`), which must
//!   not be in `daemonConfig` and must default to the daemon's default where they are;
//! * and nothing else: a key the daemon does not know is a typo or a removed key.
// Test helpers (not only #[test] fns) unwrap: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use multus_daemon::config::Config;
use serde_json::{Map, Value, json};

/// Keys the chart sets on purpose to something else than the daemon's default, and why.
fn chart_choices() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "chrootDir",
            json!("/hostroot"),
            "delegates run in the host root the chart mounts there",
        ),
        (
            "logLevel",
            json!("verbose"),
            "upstream's DaemonSet level; panic shows nothing useful",
        ),
        (
            "logToStderr",
            json!(true),
            "kubectl logs must show the daemon's logs",
        ),
    ]
}

/// Daemon keys rendered into daemon-config.json from another part of values.yaml.
const RENDERED_ELSEWHERE: &[(&str, &[&str])] = &[
    ("metricsPort", &["metrics", "port"]),
    ("metricsBindAddress", &["metrics", "bindAddress"]),
    ("otlpEndpoint", &["otlp", "endpoint"]),
];

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/multus-rs")
}

fn values_text() -> String {
    fs::read_to_string(chart_dir().join("values.yaml")).unwrap()
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str::<Value>(text).unwrap()
}

fn lookup<'a>(root: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(root, |v, k| v.as_object()?.get(*k))
}

fn daemon_defaults() -> Map<String, Value> {
    match serde_json::to_value(Config::default()).unwrap() {
        Value::Object(m) => m,
        other => panic!("Config serialises as {other}"),
    }
}

/// True when one of the comment lines right above `  key:` in values.yaml says "daemon default:".
fn documents_daemon_default(text: &str, key: &str) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    let Some(at) = lines
        .iter()
        .position(|l| l.starts_with(&format!("  {key}:")))
    else {
        return false;
    };
    lines[..at]
        .iter()
        .rev()
        .take_while(|l| l.trim_start().starts_with('#'))
        .any(|l| l.contains("daemon default:"))
}

fn problems(values: &Value, text: &str) -> Vec<String> {
    let defaults = daemon_defaults();
    let chart = lookup(values, &["daemonConfig"])
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let choices = chart_choices();
    let mut out = Vec::new();
    for (key, default) in &defaults {
        if let Some((_, path)) = RENDERED_ELSEWHERE.iter().find(|(k, _)| k == key) {
            if chart.contains_key(key) {
                out.push(format!(
                    "{key}: set under {} instead of daemonConfig",
                    path.join(".")
                ));
            }
            match lookup(values, path) {
                Some(v) if v == default => {}
                Some(v) => out.push(format!("{}: {v}, daemon default {default}", path.join("."))),
                None => out.push(format!(
                    "{key}: {} missing from values.yaml",
                    path.join(".")
                )),
            }
            continue;
        }
        let Some(value) = chart.get(key) else {
            out.push(format!(
                "daemonConfig.{key} missing (daemon default {default})"
            ));
            continue;
        };
        match choices.iter().find(|(k, _, _)| k == key) {
            Some((_, chosen, why)) => {
                if value != chosen {
                    out.push(format!(
                        "daemonConfig.{key}: {value}, expected the chart choice {chosen} ({why})"
                    ));
                }
                if chosen == default {
                    out.push(format!("daemonConfig.{key}: chart choice equals the daemon default, drop it from chart_choices"));
                }
                if !documents_daemon_default(text, key) {
                    out.push(format!(
                        "daemonConfig.{key}: chart choice without a 'daemon default:' comment"
                    ));
                }
            }
            None if value != default => out.push(format!(
                "daemonConfig.{key}: {value}, daemon default {default}"
            )),
            None => {}
        }
    }
    out.extend(
        chart
            .keys()
            .filter(|k| !defaults.contains_key(*k))
            .map(|k| format!("daemonConfig.{k}: not a daemon key")),
    );
    out
}

#[test]
fn values_document_every_daemon_key_with_its_default() {
    let text = values_text();
    let found = problems(&yaml(&text), &text);
    assert!(
        found.is_empty(),
        "values.yaml and daemon/src/config.rs disagree:\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn the_check_catches_drift() {
    let text = values_text();
    let mut values = yaml(&text);
    let chart = values["daemonConfig"].as_object_mut().unwrap();
    chart.remove("cniDir");
    chart.insert("delegateConcurrency".into(), json!(9));
    chart.insert("logToStderr".into(), json!(false));
    chart.insert("socketDirr".into(), json!("/run/multus"));
    values["metrics"]["port"] = json!(9091);
    let found = problems(&values, &text);
    for needle in [
        "cniDir missing",
        "delegateConcurrency: 9",
        "logToStderr: false",
        "socketDirr: not a daemon key",
        "metrics.port: 9091",
    ] {
        assert!(
            found.iter().any(|p| p.contains(needle)),
            "{needle:?} not reported in {found:#?}"
        );
    }
}

/// Helm's `-f` semantics: maps merge key by key, anything else replaces.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn value_sets() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = fs::read_dir(chart_dir().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut sets = vec![("values.yaml".to_owned(), yaml(&values_text()))];
    for file in files {
        let mut merged = yaml(&values_text());
        let over = yaml(&fs::read_to_string(&file).unwrap());
        if !over.is_null() {
            merge(&mut merged, &over);
        }
        sets.push((
            format!("ci/{}", file.file_name().unwrap().to_string_lossy()),
            merged,
        ));
    }
    assert!(
        sets.len() >= 3,
        "ci/ holds the value files exercising the options"
    );
    sets
}

#[test]
fn every_value_set_is_a_config_the_daemon_accepts() {
    for (name, values) in value_sets() {
        let cfg: Config = serde_json::from_value(values["daemonConfig"].clone())
            .unwrap_or_else(|e| panic!("{name}: daemonConfig is not a daemon config: {e}"));
        assert!(cfg.delegate_concurrency >= 1, "{name}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `HELM_LINT`, or `../shared/tools/helm-lint` relative to the repository root as CI lays it out
/// (for a git worktree elsewhere: relative to the main checkout, found from the common git dir).
/// Missing, the test fails naming the paths tried: a lint that did not run never passes.
fn helm_lint_tool() -> PathBuf {
    if let Some(tool) = std::env::var_os("HELM_LINT") {
        return PathBuf::from(tool);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|p| p.canonicalize().ok())
        .expect("the repository root");
    let main_checkout = Command::new("git")
        .args(["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .current_dir(&repo)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            dir.parent().map(Path::to_path_buf)
        });
    let tried: Vec<PathBuf> = [Some(repo), main_checkout]
        .into_iter()
        .flatten()
        .filter_map(|root| Some(root.parent()?.join("shared/tools/helm-lint")))
        .collect();
    match tried.iter().find(|tool| tool.is_file()) {
        Some(tool) => tool.clone(),
        None => panic!(
            "helm-lint not found at {tried:?} (CI has it at ../shared/tools/helm-lint beside the clone; set HELM_LINT to use another path)"
        ),
    }
}

/// Lints the chart with `values` as its values.yaml (the tool takes no `-f`). Helm's lint mode
/// turns a template's `fail` into a log line, so those lines count as failures here.
fn lint(tool: &Path, values: &Value) -> (bool, String) {
    lint_asserting(tool, values, "")
}

/// As [`lint`], with `asserts` added to the chart copy as one more template. The tool cannot
/// render, so assertions on the rendered manifests are template code: `$ds` is the rendered
/// DaemonSet (templates are named by their path in Helm's template set), and an assertion that
/// does not hold calls `fail`, which fails the lint.
fn lint_asserting(tool: &Path, values: &Value, asserts: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("multus-rs");
    copy_dir(&chart_dir(), &chart);
    if !asserts.is_empty() {
        let probe = format!(
            "{{{{- $ds := include (print $.Template.BasePath \"/daemonset.yaml\") . | fromYaml }}}}\n{asserts}\n"
        );
        fs::write(chart.join("templates/zz-test-asserts.yaml"), probe).unwrap();
    }
    fs::write(
        chart.join("values.yaml"),
        serde_yaml_ng::to_string(values).unwrap(),
    )
    .unwrap();
    let out = Command::new(tool).arg(&chart).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && !text.contains("funcMap fail"), text)
}

#[test]
fn helm_lint_passes_for_every_value_set() {
    let tool = helm_lint_tool();
    for (name, values) in value_sets() {
        let (ok, output) = lint(&tool, &values);
        println!(
            "ran {} charts/multus-rs with {name}: {}",
            tool.display(),
            output.lines().last().unwrap_or("")
        );
        assert!(ok, "helm lint failed with {name}:\n{output}");
    }
}

#[test]
fn helm_lint_run_sees_template_failures() {
    let tool = helm_lint_tool();
    let bad = [
        // Issue 14: chrooted delegates see the host's /proc, so they need the host PID namespace.
        json!({"hostPID": false}),
        json!({"daemonConfig": {"delegateConcurrency": 0}}),
        json!({"daemonConfig": {"binDir": "/usr/libexec/cni"}}),
        json!({"serviceMonitor": {"enabled": true}}),
        // A static 00-multus.conf names no primary without clusterNetwork.
        json!({"multusConf": {"static": true}}),
    ];
    for over in bad {
        let mut values = yaml(&values_text());
        merge(&mut values, &over);
        let (ok, output) = lint(&tool, &values);
        assert!(!ok, "lint accepted {over}:\n{output}");
    }
}

/// The pod spec of the rendered DaemonSet, and its daemon container's added capabilities.
const SPEC: &str = "{{- $spec := $ds.spec.template.spec }}\n\
    {{- $caps := (index $spec.containers 0).securityContext.capabilities.add }}";

#[test]
fn issue14_default_renders_host_pid_with_sys_ptrace_and_chroot_off_allows_it_off() {
    let tool = helm_lint_tool();
    let defaults = yaml(&values_text());
    let host_pid = format!(
        "{SPEC}\n{{{{- if ne (toString $spec.hostPID) \"true\" }}}}{{{{ fail \"hostPID\" }}}}{{{{ end }}}}\n\
         {{{{- if not (has \"SYS_PTRACE\" $caps) }}}}{{{{ fail \"SYS_PTRACE\" }}}}{{{{ end }}}}\n\
         {{{{- if ne (len $caps) (len (uniq $caps)) }}}}{{{{ fail \"duplicate cap\" }}}}{{{{ end }}}}"
    );
    let (ok, output) = lint_asserting(&tool, &defaults, &host_pid);
    assert!(ok, "defaults: hostPID true and SYS_PTRACE added:\n{output}");
    // The assertion mechanism itself can fail: the opposite claim is refused.
    let (ok, _) = lint_asserting(
        &tool,
        &defaults,
        &format!(
            "{SPEC}\n{{{{- if eq (toString $spec.hostPID) \"true\" }}}}{{{{ fail \"hostPID\" }}}}{{{{ end }}}}"
        ),
    );
    assert!(!ok, "an assertion that does not hold must fail the lint");
    // SYS_PTRACE listed already (ci/all-options) is not added twice.
    let mut listed = defaults.clone();
    merge(
        &mut listed,
        &json!({"securityContext": {"capabilities": ["NET_ADMIN", "SYS_ADMIN", "SYS_CHROOT", "NET_RAW", "SYS_PTRACE"]}}),
    );
    let (ok, output) = lint_asserting(&tool, &listed, &host_pid);
    assert!(ok, "SYS_PTRACE listed:\n{output}");
    // Without a chroot the host PID namespace may be off, and then no SYS_PTRACE is added.
    let mut no_chroot = defaults;
    merge(
        &mut no_chroot,
        &json!({"daemonConfig": {"chrootDir": null}, "hostPID": false, "securityContext": {"privileged": false}}),
    );
    let (ok, output) = lint_asserting(
        &tool,
        &no_chroot,
        &format!(
            "{SPEC}\n{{{{- if ne (toString $spec.hostPID) \"false\" }}}}{{{{ fail \"hostPID\" }}}}{{{{ end }}}}\n\
             {{{{- if has \"SYS_PTRACE\" $caps }}}}{{{{ fail \"SYS_PTRACE\" }}}}{{{{ end }}}}"
        ),
    );
    assert!(ok, "no chroot, hostPID false:\n{output}");
}
