//! The shim's own error paths, as a runtime sees them: exit code, CNI error code, no hang.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use multus_e2e::shim::{Invocation, k8s_args, multus_conf};

fn invocation(socket_dir: &std::path::Path) -> Invocation {
    Invocation::new(
        "ADD",
        "c0ffee10",
        "/var/run/netns/none",
        k8s_args("default", "p", "u", "c0ffee10"),
        multus_conf("1.0.0", socket_dir),
    )
}

#[test]
fn no_daemon_is_try_again_later_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = invocation(dir.path()).run().unwrap();
    let took = started.elapsed();
    assert_eq!(out.code, Some(1));
    assert_eq!(out.cni_code(), Some(11), "{out:?}");
    assert!(
        out.json()["msg"].as_str().unwrap().contains("multus.sock"),
        "{out:?}"
    );
    eprintln!("shim without daemon answered in {took:?}");
}

#[test]
fn missing_env_is_code_4() {
    let dir = tempfile::tempdir().unwrap();
    let mut inv = invocation(dir.path());
    inv.env.push(("CNI_CONTAINERID".into(), None));
    inv.env.push(("CNI_IFNAME".into(), None));
    let out = inv.run().unwrap();
    assert_eq!(out.cni_code(), Some(4), "{out:?}");
    let msg = out.json()["msg"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("CNI_CONTAINERID") && msg.contains("CNI_IFNAME"),
        "{msg}"
    );
}

#[test]
fn undecodable_stdin_is_code_6() {
    let dir = tempfile::tempdir().unwrap();
    let mut inv = invocation(dir.path());
    inv.stdin = b"{not json".to_vec();
    let out = inv.run().unwrap();
    assert_eq!(out.cni_code(), Some(6), "{out:?}");
}

#[test]
fn version_is_answered_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let out = invocation(dir.path())
        .with_command("VERSION")
        .run()
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.json()["supportedVersions"].as_array().unwrap().len(), 7);
}
