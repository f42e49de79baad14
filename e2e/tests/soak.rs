//! Load (issue 12): many pods ADDed and DELeted concurrently through the real shim and daemon,
//! with delegate failures injected at random (a wrapper around the ptp plugin failing with a
//! seeded probability, half of the failures after the plugin attached). Afterwards: no stray
//! link in any pod or node namespace, no lease, no record, and the daemon's RSS and open fds
//! grew no further than the bounds below. The RSS/fd curve is printed.
//!
//! Size and mix are parameters (defaults keep it about a minute on 2 cores):
//! `MULTUS_SOAK_CYCLES` (attach cycles, default 320), `MULTUS_SOAK_PARALLEL` (at once, 32),
//! `MULTUS_SOAK_FAIL_PERCENT` (10), `MULTUS_SOAK_SEED` (12). The full size:
//! `MULTUS_SOAK_CYCLES=2000 cargo nextest run -p multus-e2e --test soak --no-capture`.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multus_e2e::probe::attached;
use multus_e2e::{
    netns::Netns,
    plugin::PluginDir,
    scenario::{Cluster, host_local, nad, pod},
};
use serde_json::json;

/// RSS may grow this much over its level after the warm-up (allocator arenas and caches settle
/// in the first cycles; a per-request leak of even 1 KiB over the run would pass it only at
/// sizes far above the default).
const RSS_BOUND_KIB: u64 = 16 * 1024;
/// Open fds may exceed the warm-up level by this much at the end (idle connections closing).
const FD_BOUND: usize = 8;

fn param(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    cycles: usize,
    rss_kib: u64,
    fds: usize,
}

fn sample(pid: u32, started: Instant, cycles: usize) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some(Sample {
        at: started.elapsed(),
        cycles,
        rss_kib,
        fds,
    })
}

#[test]
fn concurrent_add_del_with_injected_failures_leaves_nothing_and_does_not_grow() {
    let cycles = param("MULTUS_SOAK_CYCLES", 320);
    let parallel = param("MULTUS_SOAK_PARALLEL", 32).max(1);
    let percent = param("MULTUS_SOAK_FAIL_PERCENT", 10);
    let seed = param("MULTUS_SOAK_SEED", 12);
    let plugins = PluginDir::new().unwrap();
    plugins
        .flaky(
            "flakyptp",
            "ptp",
            u32::try_from(seed).unwrap(),
            u32::try_from(percent).unwrap(),
        )
        .unwrap();
    let bin_dir = plugins.bin_dir();
    let cluster = Cluster::start(|c| {
        c.insert("binDir".into(), json!(bin_dir));
        // Per-request debug lines would make the log the biggest thing the soak writes.
        c.insert("logLevel".into(), json!("info"));
    })
    .unwrap();
    let l = &cluster.layout;
    let flaky = json!({"cniVersion": "1.0.0", "name": "flaky-net", "type": "flakyptp", "ipam": host_local(l, "10.89.0.0/24")});
    l.put_manifest("nad-flaky.json", &nad("default", "flaky-net", &flaky))
        .unwrap();
    for w in 0..parallel {
        l.put_manifest(
            &format!("pod-{w}.json"),
            &pod(
                "default",
                &format!("soak-{w}"),
                &format!("uid-soak-{w}"),
                "flaky-net",
            ),
        )
        .unwrap();
    }
    let pod_nss: Vec<Netns> = (0..parallel)
        .map(|_| Netns::new("mrssoak").unwrap())
        .collect();
    let node_links_before = attached(&cluster.node);
    let pid = cluster.daemon.pid().unwrap();

    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let injected = AtomicUsize::new(0);
    let unexpected = Mutex::new(Vec::<String>::new());
    let finished = Arc::new(AtomicBool::new(false));
    let samples = Mutex::new(Vec::<Sample>::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !finished.load(Ordering::Relaxed) {
                if let Some(x) = sample(pid, started, done.load(Ordering::Relaxed)) {
                    samples.lock().unwrap().push(x);
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        let workers: Vec<_> = (0..parallel)
            .map(|w| {
                let (cluster, pod_ns) = (&cluster, &pod_nss[w]);
                let (next, done, injected, unexpected) = (&next, &done, &injected, &unexpected);
                s.spawn(move || {
                    let name = format!("soak-{w}");
                    let uid = format!("uid-{name}");
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= cycles {
                            break;
                        }
                        let cid = format!("50a4{i:08x}");
                        let add = cluster.invocation(&cid, pod_ns, "default", &name, &uid);
                        let out = add.run().unwrap();
                        if !out.success() {
                            let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
                            if out.cni_code() == Some(11) && msg.contains("injected failure") {
                                injected.fetch_add(1, Ordering::Relaxed);
                            } else {
                                unexpected
                                    .lock()
                                    .unwrap()
                                    .push(format!("ADD {cid}: {out:?}"));
                            }
                            let left = attached(pod_ns);
                            if !left.is_empty() {
                                unexpected
                                    .lock()
                                    .unwrap()
                                    .push(format!("ADD {cid} failed and left {left:?} attached"));
                            }
                        }
                        // The runtime DELs after a failed ADD too.
                        let del = add.with_command("DEL").run().unwrap();
                        if !del.success() {
                            unexpected
                                .lock()
                                .unwrap()
                                .push(format!("DEL {cid}: {del:?}"));
                        }
                        let left = attached(pod_ns);
                        if !left.is_empty() {
                            unexpected
                                .lock()
                                .unwrap()
                                .push(format!("DEL {cid} left {left:?}"));
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        // Let idle connections and finished tasks wind down before the last samples.
        std::thread::sleep(Duration::from_secs(2));
        finished.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed();
    let samples = samples.into_inner().unwrap();
    let end = sample(pid, started, cycles).unwrap();

    eprintln!(
        "soak: {cycles} cycles, {parallel} at once, {percent}% failure rate (seed {seed}): {} injected ADD failures, {elapsed:?} ({:.1} cycles/s)",
        injected.load(Ordering::Relaxed),
        cycles as f64 / elapsed.as_secs_f64()
    );
    eprintln!("soak curve (t, cycles done, daemon RSS KiB, daemon open fds):");
    let step = (samples.len() / 40).max(1);
    for x in samples.iter().step_by(step).chain(std::iter::once(&end)) {
        eprintln!(
            "  {:>6.1}s {:>6} {:>8} {:>5}",
            x.at.as_secs_f64(),
            x.cycles,
            x.rss_kib,
            x.fds
        );
    }

    let unexpected = unexpected.into_inner().unwrap();
    assert!(
        unexpected.is_empty(),
        "{} unexpected outcomes, first: {:#?}\n{}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)],
        cluster.daemon.log_text()
    );
    if percent > 0 && cycles >= 100 {
        assert!(
            injected.load(Ordering::Relaxed) > 0,
            "no failure was injected"
        );
    }
    for ns in &pod_nss {
        assert_eq!(attached(ns), Vec::<String>::new(), "{}", ns.name());
    }
    // The cluster network's bridge is made by the first ADD and kept (bridge's DEL keeps it).
    let mut expected_node_links = node_links_before;
    expected_node_links.push(cluster.bridge.clone());
    expected_node_links.sort();
    let mut node_links = attached(&cluster.node);
    node_links.sort();
    assert_eq!(
        node_links, expected_node_links,
        "links left in the node namespace (host ends of veths)"
    );
    assert_eq!(cluster.layout.leases().unwrap(), Vec::<String>::new());
    assert_eq!(
        cluster.layout.cache_records().unwrap(),
        Vec::<String>::new()
    );

    // The warm-up level: the first sample taken after a tenth of the cycles.
    let warm = samples
        .iter()
        .find(|x| x.cycles >= cycles / 10)
        .copied()
        .unwrap_or(end);
    assert!(
        end.rss_kib <= warm.rss_kib + RSS_BOUND_KIB,
        "daemon RSS grew from {} KiB (after warm-up) to {} KiB; bound +{RSS_BOUND_KIB} KiB",
        warm.rss_kib,
        end.rss_kib
    );
    assert!(
        end.fds <= warm.fds + FD_BOUND,
        "daemon fds grew from {} (after warm-up) to {}; bound +{FD_BOUND}",
        warm.fds,
        end.fds
    );
}
