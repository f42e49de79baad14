//! The embedded default: a standalone `multus-daemon` over the file-backed cluster state in
//! `e2e/demo/`, attaching three real networks to a real network namespace through the real
//! `multus-shim`, then detaching them and checking nothing is left.
#![allow(clippy::print_stdout)]
#![forbid(unsafe_code)]

use std::{fs, path::Path};

use anyhow::{Context, Result, bail, ensure};
use multus_e2e::{
    bins,
    daemon::{Daemon, Layout},
    ip,
    netns::Netns,
    shim::{Invocation, k8s_args, multus_conf},
};

fn main() -> Result<()> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "the demo creates network namespaces: run it as root"
    );
    ensure!(
        Path::new("/usr/lib/cni/bridge").exists(),
        "reference CNI plugins missing: run `e2e/run demo`"
    );
    let demo = bins::workspace_root().join("e2e/demo");

    let node = Netns::new("demonode")?;
    let pod_ns = Netns::new("demopod")?;
    let layout = Layout::new()?;
    step("node namespace, pod namespace and a veth parent for macvlan");
    ip::ip(&[
        "-n",
        node.name(),
        "link",
        "add",
        "demo-parent",
        "type",
        "veth",
        "peer",
        "name",
        "demo-peer",
    ])?;
    for end in ["demo-parent", "demo-peer"] {
        ip::ip(&["-n", node.name(), "link", "set", end, "up"])?;
    }
    println!(
        "  node={} pod={} state={}",
        node.name(),
        pod_ns.name(),
        layout.dir("state").display()
    );

    let ipam = layout.dir("ipam").to_string_lossy().into_owned();
    let conflist = layout.dir("net.d").join("10-cluster.conflist");
    copy_with(&demo.join("net.d/10-cluster.conflist"), &conflist, &ipam)?;
    for f in ["nads.yaml", "pod.yaml"] {
        copy_with(
            &demo.join("cluster").join(f),
            &layout.dir("state").join(f),
            &ipam,
        )?;
    }

    step("start multus-daemon in standalone mode (clusterStateDir = the manifests above)");
    let mut config = layout.config(&conflist.to_string_lossy());
    config.insert("logLevel".into(), "verbose".into());
    let mut daemon = Daemon::start(&node, &layout, &config)?;
    println!("  listening on {}", daemon.socket().display());

    let cid = "demo0000000000000001";
    let args = k8s_args(
        "default",
        "demo",
        "6f1c2a7e-0000-4000-8000-00000000demo",
        cid,
    );
    let add = Invocation::new(
        "ADD",
        cid,
        &pod_ns.path(),
        args,
        multus_conf("1.0.0", daemon.socket_dir()),
    );

    step("CNI ADD through multus-shim");
    let out = add.run()?;
    if !out.success() {
        bail!(
            "ADD failed: {}{}\n{}",
            out.stdout,
            out.stderr,
            daemon.log_text()
        );
    }
    println!("{}", serde_json::to_string_pretty(&out.json())?);
    step(&format!(
        "interfaces in the pod (ip -n {} -br addr)",
        pod_ns.name()
    ));
    print!("{}", ip::ip(&["-n", pod_ns.name(), "-br", "addr"])?);
    step("k8s.v1.cni.cncf.io/network-status");
    let status = layout
        .network_status("default", "demo")?
        .context("no network-status written")?;
    println!("{}", serde_json::to_string_pretty(&status)?);

    step("CNI DEL through multus-shim");
    let del = add.with_command("DEL").run()?;
    ensure!(del.success(), "DEL failed: {}{}", del.stdout, del.stderr);
    let left = ip::links(pod_ns.name())?;
    let leases = layout.leases()?;
    println!("  interfaces left in the pod: {left:?}; host-local leases left: {leases:?}");
    ensure!(
        left.is_empty() && leases.is_empty(),
        "DEL left something behind"
    );

    step("stop the daemon (SIGTERM) and clean up");
    let status = daemon.stop()?;
    println!(
        "  daemon exited: {status:?}; socket removed: {}",
        !daemon.socket().exists()
    );
    println!("\ndemo OK");
    Ok(())
}

fn step(what: &str) {
    println!("\n== {what}");
}

/// Copies a demo file, pointing host-local's dataDir at this run's temporary directory.
fn copy_with(from: &Path, to: &Path, ipam_dir: &str) -> Result<()> {
    let text = fs::read_to_string(from).with_context(|| format!("reading {}", from.display()))?;
    fs::write(to, text.replace("@IPAM_DIR@", ipam_dir))?;
    Ok(())
}
