//! Section 3: a burst of N pods ADDed at once by N concurrent shims, then DELed at once: wall
//! time, per-pod latency, failures (a code 11 "try again later" is retried, as a kubelet would,
//! and counted apart), the daemon's peak RSS (its own: VmHWM after a reset, and sampled; its
//! children, the delegates, apart), its CPU time per pod, and whether its RSS comes back down.
use std::{
    sync::{Barrier, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::Result;

use super::{
    Bench, daemon_pid,
    procstat::{MIB, Resident, RssSampler, cpu_time, peak_rss, reset_peak, resident, rss},
    report::{Section, Table},
    standalone,
    stats::Series,
};
use crate::{
    netns::Netns,
    scenario::{bridge_conflist, pod},
    shim::Invocation,
};

/// RSS the daemon must be back under within a minute of the burst.
const SETTLED_MIB: f64 = 12.0;

#[derive(Default)]
struct Outcome {
    times: Vec<Duration>,
    errors: Vec<String>,
    retried: usize,
    wall: Duration,
}

/// Every invocation at once (released together by a barrier); code 11 retried up to 5 times.
fn burst(invs: &[Invocation]) -> Outcome {
    let barrier = Barrier::new(invs.len() + 1);
    let out = Mutex::new(Outcome::default());
    thread::scope(|s| {
        for inv in invs {
            let (barrier, out) = (&barrier, &out);
            s.spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let mut retries = 0;
                let result = loop {
                    match inv.run() {
                        Ok(o) if o.cni_code() == Some(11) && retries < 5 => {
                            retries += 1;
                            thread::sleep(Duration::from_millis(200));
                        }
                        other => break other,
                    }
                };
                let took = start.elapsed();
                let mut o = out
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                o.times.push(took);
                o.retried += retries;
                match result {
                    Ok(r) if r.success() => {}
                    Ok(r) => o.errors.push(format!(
                        "{}: {:?} {}",
                        inv.container_id,
                        r.code,
                        r.stdout.trim()
                    )),
                    Err(e) => o.errors.push(format!("{}: {e}", inv.container_id)),
                }
            });
        }
        barrier.wait();
    });
    let mut o = out
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Every thread starts its clock as the barrier opens: the slowest pod is the wall time.
    o.wall = o.times.iter().copied().max().unwrap_or_default();
    o
}

pub fn run(b: &Bench, s: &mut Section) -> Result<()> {
    let n = b.opts.burst;
    b.stage("3. burst: setting up");
    // As in section 4: the binary's pages in RSS are what a start from disk maps.
    super::evict_daemon_binary()?;
    let cluster = standalone(
        "mrsbu",
        |l| bridge_conflist(l, &crate::unique("mrsbr"), "10.88.0.0/16"),
        |_| {},
    )?;
    let pid = daemon_pid(&cluster)?;
    for i in 0..n {
        cluster.layout.put_manifest(
            &format!("pod-{i}.json"),
            &pod(
                "default",
                &format!("burst-{i}"),
                &format!("uid-burst-{i}"),
                "",
            ),
        )?;
    }
    let namespaces: Vec<Netns> = (0..n).map(|_| Netns::new("mrsbn")).collect::<Result<_>>()?;
    let adds: Vec<Invocation> = namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            cluster.invocation(
                &format!("burst{i:06}"),
                ns,
                "default",
                &format!("burst-{i}"),
                &format!("uid-burst-{i}"),
            )
        })
        .collect();
    let dels: Vec<Invocation> = adds.iter().map(|i| i.with_command("DEL")).collect();
    thread::sleep(Duration::from_secs(1));
    let before = rss(pid)?;
    reset_peak(pid)?;
    let cpu0 = cpu_time(pid)?;
    let sampler = RssSampler::start(pid);

    b.stage(&format!("3. burst: {n} concurrent ADDs"));
    let add = burst(&adds);
    b.bar.inc(n as u64);
    b.stage(&format!("3. burst: {n} concurrent DELs"));
    let del = burst(&dels);
    b.bar.inc(n as u64);
    let cpu = cpu_time(pid)?.saturating_sub(cpu0);
    let peak = peak_rss(pid)?;
    let (sampled, children) = sampler.finish();

    b.stage("3. burst: RSS afterwards");
    let settled = settle(b, pid)?;

    s.series(Series::new(format!("burst ADD ({n} at once)"), &add.times));
    s.series(Series::new(format!("burst DEL ({n} at once)"), &del.times));
    #[allow(clippy::cast_precision_loss)]
    let failed = (add.errors.len() + del.errors.len()) as f64;
    s.figure("burst ADD wall time", add.wall.as_secs_f64(), "s");
    s.figure("burst DEL wall time", del.wall.as_secs_f64(), "s");
    s.target(
        "burst: failed pods (after retries of code 11)",
        failed,
        "",
        0.0,
    );
    s.figure(
        "burst: code 11 retries",
        (add.retried + del.retried) as f64,
        "",
    );
    s.figure("daemon RSS before the burst", before as f64 / MIB, "MiB");
    s.target(
        "daemon peak RSS during the burst (VmHWM, children excluded)",
        peak as f64 / MIB,
        "MiB",
        30.0,
    );
    s.figure(
        "daemon peak RSS, sampled every 10 ms",
        sampled as f64 / MIB,
        "MiB",
    );
    s.figure(
        "delegates' summed RSS, peak sample (reported apart)",
        children as f64 / MIB,
        "MiB",
    );
    #[allow(clippy::cast_precision_loss)]
    let per_pod = cpu.as_secs_f64() * 1000.0 / n as f64;
    s.target(
        "daemon CPU time per attach (ADD + DEL of a pod, utime + stime)",
        per_pod,
        "ms",
        1.0,
    );
    let (after, back) = settled;
    s.figure(
        "daemon RSS at the end of the watch",
        after.last().map_or(0.0, |(_, r)| r.rss),
        "MiB",
    );
    s.figure(
        "of which anonymous (heap, stacks; the rest is the binary's mapped pages)",
        after.last().map_or(0.0, |(_, r)| r.anon),
        "MiB",
    );
    s.target(
        "time until the daemon's RSS is back under 12 MiB after the burst",
        back.map_or(f64::INFINITY, |d| d.as_secs_f64()),
        "s",
        60.0,
    );
    s.tables.push(Table {
        title: "Daemon RSS after the burst".into(),
        header: vec![
            "seconds after the DELs".into(),
            "RSS MiB".into(),
            "of which anonymous MiB".into(),
        ],
        rows: after
            .iter()
            .map(|(t, r)| {
                vec![
                    format!("{t:.0}"),
                    format!("{:.1}", r.rss),
                    format!("{:.1}", r.anon),
                ]
            })
            .collect(),
    });
    for e in add.errors.iter().chain(&del.errors).take(5) {
        s.note(format!("failure: `{e}`"));
    }
    s.note(format!(
        "{n} pods, each in its own fresh namespace, with the cluster network only (bridge + \
         host-local + tuning); the daemon runs with the default delegateConcurrency. A shim \
         answered with code 11 is retried after 200 ms (up to 5 times), as the kubelet retries a \
         sandbox. The CPU time is the daemon's own (its CPU-time clock, `clock_getcpuclockid(3)`: \
         utime + stime to the nanosecond, its delegates excluded) over both bursts, divided by {n}."
    ));
    Ok(())
}

/// RSS samples: (seconds since the DELs ended, the resident set then).
type Samples = Vec<(f64, Resident)>;

/// RSS every second for the settle window; the samples and when it first was under 12 MiB.
fn settle(b: &Bench, pid: u32) -> Result<(Samples, Option<Duration>)> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut back = None;
    while start.elapsed() <= b.opts.settle_window() {
        let r = resident(pid)?;
        out.push((start.elapsed().as_secs_f64(), r));
        if back.is_none() && r.rss <= SETTLED_MIB {
            back = Some(start.elapsed());
        }
        b.step();
        thread::sleep(Duration::from_secs(1));
    }
    Ok((out, back))
}
