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
    Bench, check, daemon_pid,
    kube::{kube_node, put_pods},
    procstat::{MIB, cpu_time, rss},
    report::{Section, Table},
    standalone,
};
use crate::{apiserver::nad_json, netns::Netns, scenario::pod};

/// Concurrent workers of the leak check (each its own pod namespace).
const WORKERS: usize = 4;
/// "Flat": RSS may grow this much from the 10 % mark to the end of the cycles.
const FLAT_MIB: f64 = 1.0;

pub fn run(b: &Bench, s: &mut Section) -> Result<()> {
    b.stage("4. memory: idle");
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
    let idle = rss(pid)? as f64 / MIB;
    s.target("daemon RSS idle (standalone, ready)", idle, "MiB", 8.0);

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
    let marks = cycle(b, &cluster, pid, cycles)?;
    let at = |frac: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let want = (cycles as f64 * frac) as usize;
        marks
            .iter()
            .find(|(c, _)| *c >= want)
            .map_or(0.0, |(_, r)| *r)
    };
    let growth = at(1.0) - at(0.1);
    s.figure(
        &format!("daemon RSS after {cycles} ADD/DEL cycles"),
        at(1.0),
        "MiB",
    );
    s.target(
        &format!(
            "daemon RSS growth from cycle {} to {cycles} (flat)",
            cycles / 10
        ),
        growth,
        "MiB",
        FLAT_MIB,
    );
    s.tables.push(Table {
        title: format!("Daemon RSS along the cycles ({WORKERS} concurrent workers)"),
        header: vec!["cycles done".into(), "RSS MiB".into()],
        rows: marks
            .iter()
            .map(|(c, r)| vec![c.to_string(), format!("{r:.2}")])
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

/// `cycles` ADD+DELs by `WORKERS` threads; RSS at every tenth.
fn cycle(
    b: &Bench,
    cluster: &crate::scenario::Cluster,
    pid: u32,
    cycles: usize,
) -> Result<Vec<(usize, f64)>> {
    let done = AtomicUsize::new(0);
    let marks = std::sync::Mutex::new(vec![(0, rss(pid)? as f64 / MIB)]);
    let step = (cycles / 10).max(1);
    thread::scope(|sc| -> Result<()> {
        let mut handles = Vec::new();
        for w in 0..WORKERS {
            let (done, marks) = (&done, &marks);
            handles.push(sc.spawn(move || -> Result<()> {
                let ns = Netns::new("mrsbw")?;
                loop {
                    let n = done.fetch_add(1, Ordering::Relaxed);
                    if n >= cycles {
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
                        let r = rss(pid)? as f64 / MIB;
                        marks
                            .lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .push((n + 1, r));
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
    m.sort_by_key(|(c, _)| *c);
    Ok(m)
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
