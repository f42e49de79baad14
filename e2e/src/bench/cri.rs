//! Section 2, containerd: `RunPodSandbox` and `StopPodSandbox` (CRI v1, as the kubelet calls
//! them) on two real containerds, each in a node namespace of its own: one whose CNI config is
//! multus (shim → daemon → the cluster conflist), one calling the same conflist itself. The
//! sides alternate which goes first; each sandbox is removed before the next round.
use std::{collections::HashMap, time::Instant};

use anyhow::{Result, anyhow};
use serde_json::json;

use super::{Bench, quiet_config, report::Section, stats::Series};
use crate::{
    containerd::{CniSetup, Containerd},
    daemon::{Daemon, Layout},
    netns::Netns,
    scenario::{Cluster, bridge_conflist, pod},
};

#[derive(Default)]
struct Times {
    run: Vec<std::time::Duration>,
    stop: Vec<std::time::Duration>,
}

fn round(c: &Containerd, t: &mut Times) -> Result<()> {
    let config = c.sandbox_config("default", "bench", "uid-bench", &HashMap::new());
    let start = Instant::now();
    let id = c
        .run_pod_sandbox(config)
        .map_err(|e| anyhow!("RunPodSandbox: {}", e.message()))?;
    t.run.push(start.elapsed());
    let start = Instant::now();
    c.stop_pod_sandbox(&id)?;
    t.stop.push(start.elapsed());
    c.remove_pod_sandbox(&id)?;
    Ok(())
}

pub fn run(b: &Bench, s: &mut Section) -> Result<()> {
    b.stage("2. containerd RunPodSandbox / StopPodSandbox");
    let layout = Layout::new()?;
    let node = Netns::new("mrsbc")?;
    let with = Containerd::start_in(&CniSetup::multus(&layout.dir("sock"))?, Some(&node))?;
    let conflist_path = layout.dir("net.d").join("10-cluster.conflist");
    std::fs::write(
        &conflist_path,
        bridge_conflist(&layout, &crate::unique("mrsbr"), "10.88.0.0/16").to_string(),
    )?;
    let daemon = Daemon::start(
        &node,
        &layout,
        &quiet_config(&layout, &conflist_path.to_string_lossy()),
    )?;
    let cluster = Cluster {
        daemon,
        layout,
        node,
        bridge: String::new(),
    };
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "bench", "uid-bench", ""))?;

    let direct_layout = Layout::new()?;
    let direct_node = Netns::new("mrsbe")?;
    let conflist = bridge_conflist(&direct_layout, &crate::unique("mrsbr"), "10.88.0.0/16");
    let without = Containerd::start_in(
        &CniSetup::direct(&conflist, &["bridge", "host-local", "tuning"]),
        Some(&direct_node),
    )?;

    let (mut a, mut bb) = (Times::default(), Times::default());
    for i in 0..b.opts.rounds() {
        if i % 2 == 0 {
            round(&with, &mut a)?;
            round(&without, &mut bb)?;
        } else {
            round(&without, &mut bb)?;
            round(&with, &mut a)?;
        }
        b.step();
    }
    // containerd first: its sandboxes' DELs need the daemon.
    drop((with, without));
    drop(cluster);
    drop(direct_node);

    let ra = s.series(Series::new("RunPodSandbox with multus", &a.run));
    let rb = s.series(Series::new("RunPodSandbox without multus", &bb.run));
    let sa = s.series(Series::new("StopPodSandbox with multus", &a.stop));
    let sb = s.series(Series::new("StopPodSandbox without multus", &bb.stop));
    let run = s.compare("containerd RunPodSandbox", &ra, &rb);
    let stop = s.compare("containerd StopPodSandbox", &sa, &sb);
    s.target(
        "containerd RunPodSandbox with / without multus, median",
        run.ratio_p50,
        "×",
        1.1,
    );
    s.figure(
        "containerd StopPodSandbox with / without multus, median",
        stop.ratio_p50,
        "×",
    );
    s.figure(
        "containerd RunPodSandbox overhead, median",
        run.overhead_p50_ms,
        "ms",
    );
    s.note(format!(
        "Both containerds run the same cluster network (bridge + host-local + tuning, {}) on \
         eth0 and containerd's own loopback; with multus, containerd execs multus-shim from \
         00-multus.conf and the daemon runs the conflist. The pod has no networks annotation.",
        json!("10.88.0.0/16")
    ));
    Ok(())
}
