//! On-demand benchmark (not part of the test suite): the shim's size, its VERSION exec time next
//! to a Go reference plugin's, and a pod's ADD+DEL through shim → daemon → delegates next to the
//! same delegates exec'd directly the way a runtime would. Rounds alternate between the two
//! sides so machine noise hits both alike; the report gives medians and their ratio. Last, a
//! real containerd's `RunPodSandbox` (CRI v1) with multus as its CNI config next to a containerd
//! calling the same bridge conflist itself.
//!
//! `cargo run --release -p multus-e2e --bin bench [-- ROUNDS]` (as root).
#![allow(clippy::print_stdout)]
#![forbid(unsafe_code)]

use std::{
    collections::HashMap,
    fs,
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use multus_e2e::{
    CNI_BIN_DIR, bins,
    containerd::{CniSetup, Containerd},
    daemon::Layout,
    netns::Netns,
    scenario::{Cluster, bridge_conflist, host_local, nad, pod},
};
use serde_json::{Value, json};

fn main() -> Result<()> {
    ensure!(nix::unistd::Uid::effective().is_root(), "run as root");
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    bins::use_release();
    let shim = bins::shim()?;
    println!(
        "multus-shim (release) size: {} bytes",
        fs::metadata(&shim)?.len()
    );
    println!(
        "bridge plugin (Go, Debian) size: {} bytes",
        fs::metadata(format!("{CNI_BIN_DIR}/bridge"))?.len()
    );

    let (ours, go) = version_execs(&shim, rounds * 10)?;
    report("VERSION exec: multus-shim vs Go bridge plugin", &ours, &go);

    let (via_shim, direct) = add_del(rounds)?;
    report(
        "ADD+DEL of bridge(+tuning) and ptp: via shim+daemon vs plugins exec'd directly",
        &via_shim,
        &direct,
    );

    let (with_multus, without) = run_pod_sandbox(rounds)?;
    report(
        "containerd RunPodSandbox (cluster network bridge+tuning): with multus vs bridge conflist called by containerd",
        &with_multus,
        &without,
    );
    Ok(())
}

/// Alternating `RunPodSandbox` calls on two containerds, each in a node namespace of its own:
/// one whose CNI config is multus (shim -> daemon -> the cluster conflist), one calling the
/// cluster conflist itself. Only RunPodSandbox is timed; each sandbox is stopped and removed
/// before the next round.
fn run_pod_sandbox(rounds: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let layout = Layout::new()?;
    let multus_node = Netns::new("mrscm")?;
    let with = Containerd::start_in(&CniSetup::multus(&layout.dir("sock"))?, Some(&multus_node))?;
    let cluster = Cluster::start_on(multus_node, layout, &[], |_| {})?;
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "bench", "uid-bench", ""))?;

    let direct_layout = Layout::new()?;
    let direct_node = Netns::new("mrscd")?;
    let conflist = bridge_conflist(&direct_layout, &multus_e2e::unique("mrscb"), "10.88.0.0/24");
    let plugins = ["bridge", "host-local", "tuning"];
    let without = Containerd::start_in(&CniSetup::direct(&conflist, &plugins), Some(&direct_node))?;

    let (mut with_times, mut without_times) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for (containerd, times) in [(&with, &mut with_times), (&without, &mut without_times)] {
            let config =
                containerd.sandbox_config("default", "bench", "uid-bench", &HashMap::new());
            let start = Instant::now();
            let id = containerd
                .run_pod_sandbox(config)
                .map_err(|e| anyhow::anyhow!("RunPodSandbox: {}", e.message()))?;
            times.push(start.elapsed());
            containerd.stop_pod_sandbox(&id)?;
            containerd.remove_pod_sandbox(&id)?;
        }
    }
    // containerd first: its sandboxes' DELs need the daemon.
    drop((with, without));
    drop(cluster);
    drop(direct_node);
    Ok((with_times, without_times))
}

/// Alternating VERSION execs of the shim and of a Go plugin.
fn version_execs(shim: &std::path::Path, n: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let go = format!("{CNI_BIN_DIR}/bridge");
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..n {
        a.push(time_exec(
            shim.as_os_str(),
            &[("CNI_COMMAND", "VERSION")],
            b"{}",
        )?);
        b.push(time_exec(
            go.as_ref(),
            &[("CNI_COMMAND", "VERSION")],
            b"{}",
        )?);
    }
    Ok((a, b))
}

fn time_exec(bin: &std::ffi::OsStr, env: &[(&str, &str)], stdin: &[u8]) -> Result<Duration> {
    let start = Instant::now();
    let out = run(bin, env, stdin)?;
    let took = start.elapsed();
    ensure!(
        out.status.success(),
        "{bin:?} failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(took)
}

fn run(bin: &std::ffi::OsStr, env: &[(&str, &str)], stdin: &[u8]) -> Result<std::process::Output> {
    let mut child = Command::new(bin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {bin:?}"))?;
    if let Some(mut s) = child.stdin.take() {
        // VERSION exits without reading stdin; a runtime ignores the broken pipe.
        match s.write_all(stdin) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
    }
    Ok(child.wait_with_output()?)
}

/// Alternating pod attaches: through the shim (daemon in a node namespace) and directly (the
/// same plugin configs exec'd from this process inside a second node namespace).
fn add_del(rounds: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let cluster = Cluster::start(|_| {})?;
    let ptp = json!({"cniVersion": "0.4.0", "name": "ptp-net", "type": "ptp", "ipam": host_local(&cluster.layout, "10.89.0.0/24")});
    cluster
        .layout
        .put_manifest("nad.json", &nad("default", "ptp-net", &ptp))?;
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "bench", "uid-bench", "ptp-net"))?;
    let conflist: Value = serde_json::from_slice(&fs::read(
        cluster.layout.dir("net.d").join("10-cluster.conflist"),
    )?)?;
    let direct_node = Netns::new("mrsbnode")?;
    let (mut shim_times, mut direct_times) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let pod_ns = Netns::new("mrsbpod")?;
        let inv = cluster.invocation(
            &format!("bench{i:08}"),
            &pod_ns,
            "default",
            "bench",
            "uid-bench",
        );
        let start = Instant::now();
        let add = inv.run()?;
        let del = inv.with_command("DEL").run()?;
        shim_times.push(start.elapsed());
        ensure!(
            add.success() && del.success(),
            "shim ADD/DEL failed: {add:?} {del:?}"
        );
        drop(pod_ns);

        let pod_ns = Netns::new("mrsbpod")?;
        let start = Instant::now();
        direct(
            &direct_node,
            &pod_ns,
            &format!("direct{i:08}"),
            &conflist,
            &ptp,
        )?;
        direct_times.push(start.elapsed());
    }
    Ok((shim_times, direct_times))
}

/// What a runtime does without multus: the cluster conflist on eth0 (chained with prevResult),
/// the ptp config on net1, then DEL of both in reverse with the cached results.
fn direct(node: &Netns, pod_ns: &Netns, cid: &str, conflist: &Value, ptp: &Value) -> Result<()> {
    let plugins = conflist["plugins"].as_array().cloned().unwrap_or_default();
    let mut prev: Option<Value> = None;
    for p in &plugins {
        prev = Some(exec_in(
            node,
            pod_ns,
            cid,
            "eth0",
            "ADD",
            &inject(p, conflist, prev.as_ref()),
        )?);
    }
    let ptp_result = exec_in(node, pod_ns, cid, "net1", "ADD", ptp)?;
    exec_in(
        node,
        pod_ns,
        cid,
        "net1",
        "DEL",
        &with_prev(ptp, &ptp_result),
    )?;
    for p in plugins.iter().rev() {
        exec_in(
            node,
            pod_ns,
            cid,
            "eth0",
            "DEL",
            &inject(p, conflist, prev.as_ref()),
        )?;
    }
    Ok(())
}

fn inject(plugin: &Value, list: &Value, prev: Option<&Value>) -> Value {
    let mut p = plugin.clone();
    p["name"] = list["name"].clone();
    p["cniVersion"] = list["cniVersion"].clone();
    match prev {
        Some(r) => with_prev(&p, r),
        None => p,
    }
}

fn with_prev(conf: &Value, result: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = result.clone();
    c
}

/// Execs one plugin inside the node namespace (like a runtime on that node would).
fn exec_in(
    node: &Netns,
    pod_ns: &Netns,
    cid: &str,
    ifname: &str,
    cmd: &str,
    conf: &Value,
) -> Result<Value> {
    let ty = conf["type"].as_str().unwrap_or_default();
    let netns = pod_ns.path();
    let env = [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", ifname),
        ("CNI_PATH", CNI_BIN_DIR),
    ];
    let out = Command::new("ip")
        .args(["netns", "exec", node.name()])
        .arg(format!("{CNI_BIN_DIR}/{ty}"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            if let Some(mut s) = c.stdin.take() {
                s.write_all(conf.to_string().as_bytes())?;
            }
            c.wait_with_output()
        })?;
    ensure!(
        out.status.success(),
        "{ty} {cmd} failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

fn report(what: &str, ours: &[Duration], theirs: &[Duration]) {
    let (a, b) = (median(ours), median(theirs));
    println!("\n{what} ({} rounds each, alternating)", ours.len());
    println!(
        "  ours:   median {:>8.2} ms  p90 {:>8.2} ms",
        ms(a),
        ms(p90(ours))
    );
    println!(
        "  theirs: median {:>8.2} ms  p90 {:>8.2} ms",
        ms(b),
        ms(p90(theirs))
    );
    println!(
        "  ratio ours/theirs (medians): {:.2}",
        a.as_secs_f64() / b.as_secs_f64().max(f64::EPSILON)
    );
}

fn sorted(v: &[Duration]) -> Vec<Duration> {
    let mut s = v.to_vec();
    s.sort();
    s
}

fn median(v: &[Duration]) -> Duration {
    sorted(v).get(v.len() / 2).copied().unwrap_or_default()
}

fn p90(v: &[Duration]) -> Duration {
    sorted(v).get(v.len() * 9 / 10).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
