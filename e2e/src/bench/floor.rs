//! Section 2a, second part: the daemon's own cost per request. The pod has one network, a
//! cluster network whose only plugin is loopback (a few milliseconds of Go start-up), so what
//! shim and daemon add is not lost in bridge's and macvlan's tens of milliseconds and their
//! noise. Each round, in a fresh namespace: ADD, DEL and STATUS through the shim, the daemon's
//! CPU time (utime + stime) read around each; loopback's ADD and DEL exec'd directly (as
//! libcni does, from a node thread); the shim's VERSION, which makes no call. STATUS minus
//! VERSION is the round trip to the daemon with nothing to do at the far end.
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use super::{
    Bench, check,
    direct::{Direct, Network},
    nodethread::NodeThread,
    procstat::cpu_time,
    report::Section,
    standalone,
    stats::Series,
};
use crate::{
    daemon::Layout,
    netns::Netns,
    scenario::{Cluster, pod},
    shim::{Invocation, multus_conf},
};

/// Rounds of the floor per round of the attach comparison: loopback's few milliseconds vary by
/// more than the daemon adds, so the medians need a few hundred rounds.
pub const ROUNDS_PER_ATTACH_ROUND: usize = 5;

/// The cluster network: loopback alone.
fn noop_conflist() -> Value {
    json!({"cniVersion": "1.0.0", "name": "cluster", "plugins": [{"type": "loopback"}]})
}

/// What one verb cost: its times, and the daemon's CPU time summed over them.
#[derive(Default)]
struct Verb {
    times: Vec<Duration>,
    cpu: Duration,
}

impl Verb {
    /// Runs `inv`, timing it, and adds the daemon's CPU time around it; returns its output.
    fn run(&mut self, inv: &Invocation, pid: u32) -> Result<crate::shim::Output> {
        let cpu0 = cpu_time(pid)?;
        let start = Instant::now();
        let out = inv.run()?;
        self.times.push(start.elapsed());
        self.cpu += cpu_time(pid)?.saturating_sub(cpu0);
        Ok(out)
    }

    fn cpu_ms_each(&self) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / self.times.len().max(1) as f64
    }
}

#[derive(Default)]
struct Floor {
    add: Verb,
    del: Verb,
    status: Verb,
    version: Vec<Duration>,
    direct_add: Vec<Duration>,
    direct_del: Vec<Duration>,
}

pub fn run(b: &Bench, s: &mut Section, rounds: usize) -> Result<()> {
    b.stage("2a. the daemon's own cost (loopback only)");
    let cluster = standalone("mrsbf", |_| noop_conflist(), |_| {})?;
    let p = super::attach::PodRef {
        namespace: "default".into(),
        name: "floor".into(),
        uid: "uid-floor".into(),
    };
    cluster
        .layout
        .put_manifest("pod.json", &pod(&p.namespace, &p.name, &p.uid, ""))?;
    std::thread::sleep(super::attach::MANIFESTS_SETTLE);
    let direct_ns = Netns::new("mrsbg")?;
    let direct_layout = Layout::new()?;
    let direct = Direct::new(
        NodeThread::start(&direct_ns)?,
        vec![Network::list("eth0", noop_conflist())],
        direct_layout.dir("cni").join("results"),
    )?;
    let pid = super::daemon_pid(&cluster)?;
    let mut f = Floor::default();
    for i in 0..rounds {
        round(
            &cluster,
            &direct,
            pid,
            &p,
            &format!("benchfloor{i:06}"),
            &mut f,
        )?;
        b.step();
    }
    report(s, &f);
    Ok(())
}

/// One round of every series.
fn round(
    cluster: &Cluster,
    direct: &Direct,
    pid: u32,
    p: &super::attach::PodRef,
    cid: &str,
    f: &mut Floor,
) -> Result<()> {
    let pod_ns = Netns::new("mrsbh")?;
    // The runtime's ADD, with a config of CNI 1.1.0: STATUS needs it, the other verbs take it.
    let add = Invocation {
        stdin: multus_conf("1.1.0", cluster.daemon.socket_dir()),
        ..cluster.invocation(cid, &pod_ns, &p.namespace, &p.name, &p.uid)
    };
    let out = f.add.run(&add, pid)?;
    check("floor ADD", &out, cluster)?;
    // A pod the daemon could not find gets a placeholder result and runs nothing: the round
    // must have run loopback, or it measured nothing.
    let ifname = out.json()["interfaces"][0]["name"].clone();
    ensure!(
        ifname == "lo",
        "floor ADD did not run loopback: {}",
        out.stdout
    );
    let out = f.del.run(&add.with_command("DEL"), pid)?;
    check("floor DEL", &out, cluster)?;
    let out = f.status.run(&add.with_command("STATUS"), pid)?;
    check("floor STATUS", &out, cluster)?;
    let start = Instant::now();
    let out = add.with_command("VERSION").run()?;
    f.version.push(start.elapsed());
    check("floor VERSION", &out, cluster)?;
    let direct_ns = Netns::new("mrsbi")?;
    f.direct_add.push(direct.add(cid, &direct_ns.path())?);
    f.direct_del.push(direct.del(cid, &direct_ns.path())?);
    Ok(())
}

fn report(s: &mut Section, f: &Floor) {
    let pairs = [
        ("ADD", &f.add.times, &f.direct_add),
        ("DEL", &f.del.times, &f.direct_del),
    ];
    for (verb, via, direct) in pairs {
        let a = s.series(Series::new(
            format!("loopback {verb} via shim → daemon"),
            via,
        ));
        let b = s.series(Series::new(format!("loopback {verb} direct"), direct));
        let c = s.compare(&format!("loopback {verb}"), &a, &b);
        s.figure(
            &format!("shim + daemon overhead on a loopback-only {verb}, median"),
            c.overhead_p50_ms,
            "ms",
        );
    }
    let status = s.series(Series::new("STATUS via shim → daemon", &f.status.times));
    let version = s.series(Series::new("shim VERSION (no call)", &f.version));
    let c = s.compare("STATUS round trip", &status, &version);
    s.figure(
        "round trip to the daemon (STATUS − VERSION), median",
        c.overhead_p50_ms,
        "ms",
    );
    for (verb, v) in [("ADD", &f.add), ("DEL", &f.del), ("STATUS", &f.status)] {
        s.figure(
            &format!("daemon CPU time per {verb} (loopback only)"),
            v.cpu_ms_each(),
            "ms",
        );
    }
    s.note(format!(
        "The daemon's own cost: a pod whose only network is a cluster network of loopback alone, \
         {} rounds of ADD, DEL, STATUS (cniVersion 1.1.0) through the shim and VERSION, and of \
         loopback's ADD and DEL exec'd directly. The daemon's CPU time is read from its CPU-time \
         clock (`clock_getcpuclockid(3)`, every thread, its delegates excluded) around each call \
         and averaged over the rounds.",
        f.version.len()
    ));
}
