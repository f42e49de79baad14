//! Tests of the plugin exec contract against fake bash plugins.
use std::time::Duration;

use multus_common::Command;

use super::*;
use crate::engine::fakeplugin::{ECHO_RESULT, FakePlugins};

fn env(command: Command) -> ExecEnv<'static> {
    ExecEnv {
        command,
        container_id: "c1",
        netns: "/run/netns/x",
        ifname: "eth0",
        cni_args: "A=1",
    }
}

#[tokio::test]
async fn passes_env_and_stdin_and_returns_stdout() {
    let f = FakePlugins::new();
    f.add(
        "ok",
        &format!("env | sort > {}/env\n{ECHO_RESULT}", f.dir.path().display()),
    );
    let out = f
        .executor()
        .run("ok", &env(Command::Add), br#"{"x":1}"#)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["interfaces"][0]["name"], "eth0");
    let calls = f.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].stdin, serde_json::json!({"x": 1}));
    let envs = std::fs::read_to_string(f.dir.path().join("env")).unwrap();
    for want in [
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=c1",
        "CNI_NETNS=/run/netns/x",
        "CNI_IFNAME=eth0",
        "CNI_ARGS=A=1",
    ] {
        assert!(envs.lines().any(|l| l == want), "{want} missing in {envs}");
    }
    assert!(
        envs.lines()
            .any(|l| l == format!("CNI_PATH={}", f.dir.path().display()))
    );
    // As libcni: the daemon's environment reaches the plugin, its PATH with the sbin dirs.
    if let Ok(home) = std::env::var("HOME") {
        assert!(envs.lines().any(|l| l == format!("HOME={home}")), "{envs}");
    }
    let path = envs.lines().find_map(|l| l.strip_prefix("PATH=")).unwrap();
    assert!(path.split(':').any(|d| d == "/usr/sbin"), "{path}");
}

/// D-3: the plugin's environment is the daemon's minus the deny list, the request's CNI_* over
/// it, PATH completed with the system dirs.
#[tokio::test]
async fn d3_plugin_env_is_the_daemons_minus_the_deny_list() {
    let f = FakePlugins::new();
    f.add(
        "envdump",
        &format!(
            "env | sort > {}/env
{ECHO_RESULT}",
            f.dir.path().display()
        ),
    );
    let daemon_env = [
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("NO_PROXY", "10.0.0.0/8"),
        ("CNI_NETNS_OVERRIDE", "1"),
        ("CNI_IFNAME", "stale0"),
        ("MULTUS_NODE_NAME", "node-1"),
        ("MULTUS_LOGLEVEL", "debug"),
        ("NOTIFY_SOCKET", "/run/systemd/notify"),
        ("PATH", "/usr/bin:/bin"),
    ]
    .map(|(k, v)| (OsString::from(k), OsString::from(v)));
    let x = f.executor().with_daemon_env(daemon_env);
    x.run("envdump", &env(Command::Add), b"{}").await.unwrap();
    let envs = std::fs::read_to_string(f.dir.path().join("env")).unwrap();
    let lines: Vec<&str> = envs.lines().collect();
    for want in [
        "KUBERNETES_SERVICE_HOST=10.96.0.1",
        "NO_PROXY=10.0.0.0/8",
        "MULTUS_NODE_NAME=node-1",
        "CNI_IFNAME=eth0",
        "PATH=/usr/bin:/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin",
    ] {
        assert!(lines.contains(&want), "{want} missing in {envs}");
    }
    for gone in ["CNI_NETNS_OVERRIDE=", "MULTUS_LOGLEVEL=", "NOTIFY_SOCKET="] {
        assert!(
            !lines.iter().any(|l| l.starts_with(gone)),
            "{gone} in {envs}"
        );
    }
}

#[tokio::test]
async fn decodes_failures() {
    let f = FakePlugins::new();
    f.add(
        "cnierr",
        r#"echo '{"cniVersion":"1.0.0","code":107,"msg":"no leases"}'; exit 1"#,
    );
    f.add("plain", "echo boom >&2; exit 3");
    f.add("killed", "kill -9 $$");
    let x = f.executor();
    let e = env(Command::Add);
    match x.run("cnierr", &e, b"{}").await.unwrap_err() {
        ExecError::Plugin { error, .. } => {
            assert_eq!((error.code, error.msg.as_str()), (107, "no leases"))
        }
        other => panic!("{other}"),
    }
    match x.run("plain", &e, b"{}").await.unwrap_err() {
        ExecError::Failed {
            plugin,
            code,
            stderr,
        } => assert_eq!(
            (plugin.as_str(), code, stderr.as_str()),
            ("plain", 3, "boom")
        ),
        other => panic!("{other}"),
    }
    assert!(matches!(
        x.run("killed", &e, b"{}").await.unwrap_err(),
        ExecError::Signaled { signal: 9, .. }
    ));
}

#[tokio::test]
async fn finds_plugins_in_any_bin_dir_and_refuses_paths() {
    let f = FakePlugins::new();
    f.add("there", "true");
    let mut cfg = f.config();
    cfg.bin_dir = format!("/nonexistent-dir:{}", f.dir.path().display()).into();
    let x = Executor::new(&cfg, Arc::new(Admission::new(1, Duration::from_secs(5))));
    assert!(x.find("there").is_ok());
    assert!(matches!(x.find("../there"), Err(ExecError::InvalidType(_))));
    assert!(matches!(x.find("missing"), Err(ExecError::NotFound { .. })));
    assert!(
        x.run("there", &env(Command::Del), b"{}")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn slow_plugin_is_killed_at_the_timeout() {
    let f = FakePlugins::new();
    f.add(
        "slow",
        &format!("sleep 30; touch {}/finished", f.dir.path().display()),
    );
    let x = f.executor().with_timeout(Duration::from_millis(200));
    let err = x.run("slow", &env(Command::Add), b"{}").await.unwrap_err();
    assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
    assert!(!f.dir.path().join("finished").exists());
}

#[tokio::test]
async fn runs_chrooted_when_chroot_dir_is_set() {
    // A chroot holding only a static-free script would need a shell inside; use the host root
    // as the chroot (what upstream's deployment does with /hostroot) and a bin dir path inside it.
    let f = FakePlugins::new();
    f.add("inroot", "echo -n \"$PWD\"");
    let mut cfg = f.config();
    cfg.chroot_dir = Some("/".into());
    let x = Executor::new(&cfg, Arc::new(Admission::new(1, Duration::from_secs(5))));
    let out = x.run("inroot", &env(Command::Del), b"{}").await.unwrap();
    assert_eq!(out, b"/");
}

/// Issue 12: plugins that break the exec contract are each a clear error, found quickly.
#[tokio::test]
async fn misbehaving_plugins_are_clear_errors() {
    use std::os::unix::fs::PermissionsExt;
    let f = FakePlugins::new();
    f.add(
        "zero-err",
        r#"echo '{"cniVersion":"1.0.0","code":7,"msg":"says no","details":"d"}'"#,
    );
    f.add("flood", "head -c 3000000 /dev/zero | tr '\\0' x");
    f.add(
        "noisy",
        "head -c 3000000 /dev/zero | tr '\\0' x >&2; exit 1",
    );
    f.add("forks", &format!("(sleep 30) &\n{ECHO_RESULT}"));
    f.add("noexec", "true");
    let noexec = f.dir.path().join("noexec");
    std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let x = f.executor();
    let e = env(Command::Add);
    match x.run("zero-err", &e, b"{}").await.unwrap_err() {
        ExecError::Plugin { error, .. } => {
            assert_eq!((error.code, error.details.as_str()), (7, "d"))
        }
        other => panic!("{other}"),
    }
    let err = x.run("flood", &e, b"{}").await.unwrap_err();
    assert!(matches!(err, ExecError::OutputTooLarge { .. }), "{err}");
    match x.run("noisy", &e, b"{}").await.unwrap_err() {
        ExecError::Failed {
            stderr, code: 1, ..
        } => assert_eq!(stderr.len(), MAX_STDERR_BYTES),
        other => panic!("{other}"),
    }
    let started = std::time::Instant::now();
    let err = x.run("forks", &e, b"{}").await.unwrap_err();
    assert!(matches!(err, ExecError::PipesHeld { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let err = x.run("noexec", &e, b"{}").await.unwrap_err();
    assert!(matches!(err, ExecError::NotExecutable { .. }), "{err}");
    assert_eq!(err.cni_code(), code::INVALID_NETWORK_CONFIG);
    assert!(err.to_string().contains("not executable"), "{err}");
}
