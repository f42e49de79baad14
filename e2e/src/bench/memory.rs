//! Section 4: the daemon's memory and idle CPU. RSS at rest; idle CPU over a window (no polling:
//! it must stay 0); RSS along 10,000 ADD/DEL cycles (flat, or it leaks); and in Kubernetes mode,
//! RSS with 1,000 then 10,000 pods of this node and 500 NADs delivered through the stand-in's
//! watches (the node pod cache and the NAD cache).
use std::{
    sync::atomic::{AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::json;

use super::{
    Bench, check, daemon_pid, evict_daemon_binary,
    kube::{kube_node, put_pods},
    procstat::{MIB, Resident, cpu_time, resident, rss},
    report::{Section, Table},
    standalone,
};
use crate::{apiserver::nad_json, netns::Netns, scenario::pod};

/// Concurrent workers of the leak check (each its own pod namespace).
const WORKERS: usize = 4;
/// "Flat": RSS may grow this much from the 10 % mark to the end of the cycles.
const FLAT_MIB: f64 = 1.0;
/// A pause longer than the daemon's quiet period before it trims its heap (3 s,
/// `daemon/src/heap.rs`): a sample after it is what the daemon keeps, a leak included, and not
/// what the requests in flight and the allocator's free lists held at that moment.
const REST: Duration = Duration::from_secs(4);

pub fn run(b: &Bench, s: &mut Section) -> Result<()> {
    b.stage("4. memory: idle");
    // As after a node's boot: the daemon's binary comes from disk, not from whatever the page
    // cache kept of its build or copy (the kernel maps a whole cached folio at the first touch,
    // so the binary's share of RSS depended on how the file had last been written).
    evict_daemon_binary()?;
    // The cheapest delegate there is, so the cycles measure the daemon and not the plugins.
    let cluster = standalone(
        "mrsbm",
        |_| json!({"cniVersion": "1.0.0", "name": "cluster", "plugins": [{"type": "loopback"}]}),
        |_| {},
    )?;
    let pid = daemon_pid(&cluster)?;
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "cycle", "uid-cycle", ""))?;
    thread::sleep(Duration::from_secs(2));
    b.step();
    let idle = resident(pid)?;
    s.target(
        "daemon RSS idle (standalone, ready, binary read cold)",
        idle.rss,
        "MiB",
        8.0,
    );
    s.figure(
        "of which anonymous (heap, stacks, relocated data; the rest is the binary's mapped pages)",
        idle.anon,
        "MiB",
    );

    let window = b.opts.idle_window();
    let cpu0 = cpu_time(pid)?;
    for _ in 0..window.as_secs() {
        thread::sleep(Duration::from_secs(1));
        b.step();
    }
    let idle_cpu = cpu_time(pid)?.saturating_sub(cpu0);
    s.target(
        &format!("daemon CPU time while idle for {} s", window.as_secs()),
        idle_cpu.as_secs_f64() * 1000.0,
        "ms",
        0.0,
    );

    b.stage("4. memory: ADD/DEL cycles");
    let cycles = b.opts.cycles();
    let warm = (cycles / 10).max(1);
    let mut marks = cycle(b, &cluster, pid, 0..warm, cycles)?;
    let rest_warm = rested(pid, warm)?;
    marks.push(rest_warm);
    marks.extend(cycle(b, &cluster, pid, warm..cycles, cycles)?);
    let busy_end = marks.last().map_or(0.0, |m| m.resident.rss);
    let busy_warm = marks
        .iter()
        .find(|m| !m.at_rest && m.cycles >= warm)
        .map_or(0.0, |m| m.resident.rss);
    let rest_end = rested(pid, cycles)?;
    marks.push(rest_end);
    s.figure(
        &format!("daemon RSS after {cycles} ADD/DEL cycles, at rest"),
        rest_end.resident.rss,
        "MiB",
    );
    s.target(
        &format!("daemon RSS growth from cycle {warm} to {cycles}, at rest (flat)"),
        rest_end.resident.rss - rest_warm.resident.rss,
        "MiB",
        FLAT_MIB,
    );
    s.figure(
        &format!("of which anonymous (heap), from cycle {warm} to {cycles}, at rest"),
        rest_end.resident.anon - rest_warm.resident.anon,
        "MiB",
    );
    s.figure(
        &format!("daemon RSS growth from cycle {warm} to {cycles}, while cycling"),
        busy_end - busy_warm,
        "MiB",
    );
    s.tables.push(Table {
        title: format!("Daemon RSS along the cycles ({WORKERS} concurrent workers)"),
        header: vec![
            "cycles done".into(),
            "sampled".into(),
            "RSS MiB".into(),
            "of which anonymous MiB".into(),
        ],
        rows: marks
            .iter()
            .map(|m| {
                vec![
                    m.cycles.to_string(),
                    if m.at_rest {
                        "at rest"
                    } else {
                        "while cycling"
                    }
                    .into(),
                    format!("{:.2}", m.resident.rss),
                    format!("{:.2}", m.resident.anon),
                ]
            })
            .collect(),
    });
    drop(cluster);

    kube_memory(b, s)?;
    s.note(
        "The cycles use a cluster network of one loopback plugin (the cheapest delegate there is), \
         so their cost is the shim's and the daemon's; each cycle is a shim ADD then DEL of a new \
         container id. The Kubernetes-mode daemon starts with an empty API server; the pods \
         (shaped as the API serves them: spec, status, managedFields) and NADs then arrive \
         through its watches.",
    );
    Ok(())
}

/// One RSS sample of the cycles, MiB.
#[derive(Debug, Clone, Copy)]
struct Mark {
    cycles: usize,
    /// Taken after [`REST`] without requests (the daemon has trimmed its heap), not mid-cycle.
    at_rest: bool,
    resident: Resident,
}

impl Mark {
    fn now(pid: u32, cycles: usize, at_rest: bool) -> Result<Self> {
        Ok(Self {
            cycles,
            at_rest,
            resident: resident(pid)?,
        })
    }
}

/// The ADD+DELs numbered `range` by `WORKERS` threads; a sample at every tenth of `total`
/// (and one before the first cycle).
fn cycle(
    b: &Bench,
    cluster: &crate::scenario::Cluster,
    pid: u32,
    range: std::ops::Range<usize>,
    total: usize,
) -> Result<Vec<Mark>> {
    let done = AtomicUsize::new(range.start);
    let first = if range.start == 0 {
        vec![Mark::now(pid, 0, false)?]
    } else {
        Vec::new()
    };
    let marks = std::sync::Mutex::new(first);
    let step = (total / 10).max(1);
    thread::scope(|sc| -> Result<()> {
        let mut handles = Vec::new();
        for w in 0..WORKERS {
            let (done, marks, end) = (&done, &marks, range.end);
            handles.push(sc.spawn(move || -> Result<()> {
                let ns = Netns::new("mrsbw")?;
                loop {
                    let n = done.fetch_add(1, Ordering::Relaxed);
                    if n >= end {
                        return Ok(());
                    }
                    let inv = cluster.invocation(
                        &format!("cycle{w}x{n:07}"),
                        &ns,
                        "default",
                        "cycle",
                        "uid-cycle",
                    );
                    check("cycle ADD", &inv.run()?, cluster)?;
                    check("cycle DEL", &inv.with_command("DEL").run()?, cluster)?;
                    b.step();
                    if (n + 1) % step == 0 {
                        let m = Mark::now(pid, n + 1, false)?;
                        marks
                            .lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .push(m);
                    }
                }
            }));
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a cycle worker panicked"))??;
        }
        Ok(())
    })?;
    let mut m = marks
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    m.sort_by_key(|m| m.cycles);
    Ok(m)
}

/// The sample after `cycles` once the daemon has been left alone for [`REST`] and its RSS
/// stopped moving: what it keeps, without what the last requests had in flight.
fn rested(pid: u32, cycles: usize) -> Result<Mark> {
    thread::sleep(REST);
    settled_rss(pid)?;
    Mark::now(pid, cycles, true)
}

/// Waits until RSS stops moving (unchanged over a second; at most 20 s) and returns it, MiB.
fn settled_rss(pid: u32) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = rss(pid)?;
    loop {
        thread::sleep(Duration::from_secs(1));
        let now = rss(pid)?;
        if now == last || Instant::now() > deadline {
            return Ok(now as f64 / MIB);
        }
        last = now;
    }
}

fn kube_memory(b: &Bench, s: &mut Section) -> Result<()> {
    b.stage("4. memory: Kubernetes mode, 1,000 / 10,000 pods and 500 NADs");
    evict_daemon_binary()?;
    let (k, _) = kube_node(|_| {}, false, |_| {})?;
    let pid = k.daemon.pid().context("daemon not running")?;
    let empty = settled_rss(pid)?;
    s.figure(
        "daemon RSS idle (Kubernetes mode, empty cluster, watching)",
        empty,
        "MiB",
    );
    for i in 0..500 {
        let ns = format!("ns-{}", i % 50);
        let config = json!({"cniVersion": "1.0.0", "type": "macvlan", "master": "eth0", "ipam": {"type": "host-local", "subnet": format!("10.{}.{}.0/24", 100 + i / 250, i % 250)}});
        k.api
            .put_nad(nad_json(&ns, &format!("nad-{i}"), &config.to_string()));
    }
    put_pods(&k.api, 0..1000, "ptp-a");
    let r1000 = settled_rss(pid)?;
    s.figure(
        "daemon RSS with 1,000 pods on the node and 500 NADs",
        r1000,
        "MiB",
    );
    put_pods(&k.api, 1000..10_000, "ptp-a");
    let r10000 = settled_rss(pid)?;
    s.target(
        "daemon RSS with 10,000 pods on the node and 500 NADs",
        r10000,
        "MiB",
        20.0,
    );
    b.step();
    Ok(())
}
