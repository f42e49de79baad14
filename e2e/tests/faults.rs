//! Faults through the real shim and daemon (issue 12): the daemon SIGKILLed in the middle of an
//! ADD and restarted, a record truncated or corrupted, a delegate that hangs with a forked
//! grandchild, and a full `cniDir`. After each, the runtime's DEL (or the refusal itself) leaves
//! no interface, no lease and no record behind.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::time::{Duration, Instant};

use multus_e2e::probe::*;
use multus_e2e::{
    daemon::Layout,
    netns::Netns,
    plugin::{PluginDir, is_dead},
    scenario::{Cluster, host_local, nad, pod},
};
use serde_json::{Value, json};

/// The record of `cid` as the daemon wrote it.
fn record(cluster: &Cluster, cid: &str) -> Value {
    cluster.layout.record(cid).unwrap()
}

/// The delegates the ADD's progress journal says were added (`cni/multus-rs/progress/<cid>`,
/// one JSON line each, read over the record by DEL).
fn journaled(cluster: &Cluster, cid: &str) -> Vec<u64> {
    let path = cluster
        .layout
        .dir("cni")
        .join("multus-rs")
        .join("progress")
        .join(cid);
    fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["index"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn states(record: &Value) -> Vec<String> {
    record["delegates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap().to_owned())
        .collect()
}

/// Nothing of any pod is left: no link in `pod_ns`, no lease, no record (a quarantined
/// `.corrupt` file and the test's own dot-files are not records).
fn assert_clean(cluster: &Cluster, pod_ns: &Netns) {
    assert_eq!(attached(pod_ns), Vec::<String>::new());
    assert_eq!(cluster.layout.leases().unwrap(), Vec::<String>::new());
    let records: Vec<_> = cluster
        .layout
        .cache_records()
        .unwrap()
        .into_iter()
        .filter(|r| !r.ends_with(".corrupt") && !r.starts_with('.'))
        .collect();
    assert_eq!(records, Vec::<String>::new());
    let progress = cluster.layout.dir("cni").join("multus-rs").join("progress");
    let journals: Vec<_> = fs::read_dir(&progress)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(
        journals,
        Vec::<std::ffi::OsString>::new(),
        "progress journals left"
    );
}

fn ptp_nad_on(cluster: &Cluster, name: &str, subnet: &str) {
    let config = json!({"cniVersion": "1.0.0", "name": name, "type": "ptp", "ipam": host_local(&cluster.layout, subnet)});
    cluster
        .layout
        .put_manifest(&format!("nad-{name}.json"), &nad("default", name, &config))
        .unwrap();
}

#[test]
fn daemon_sigkilled_mid_add_then_restarted_del_removes_every_interface_and_lease() {
    let plugins = PluginDir::new().unwrap();
    let blocking = plugins.blocking("blockvlan", "macvlan").unwrap();
    let bin_dir = plugins.bin_dir();
    let mut cluster = Cluster::start(|c| {
        c.insert("binDir".into(), json!(bin_dir));
    })
    .unwrap();
    let l = &cluster.layout;
    let (parent, _) = cluster.node.veth_pair("mrsmv").unwrap();
    let (dev, _) = cluster.node.veth_pair("mrshd").unwrap();
    ptp_nad_on(&cluster, "ptp-net", "10.89.0.0/24");
    let block = json!({"cniVersion": "1.0.0", "name": "block-net", "type": "blockvlan", "master": parent, "mode": "bridge", "ipam": host_local(l, "10.90.0.0/24")});
    l.put_manifest("nad-block.json", &nad("default", "block-net", &block))
        .unwrap();
    let hostdev = json!({"cniVersion": "1.0.0", "name": "hostdev-net", "type": "host-device", "device": dev, "ipam": host_local(l, "10.91.0.0/24")});
    l.put_manifest("nad-hd.json", &nad("default", "hostdev-net", &hostdev))
        .unwrap();
    l.put_manifest(
        "pod.json",
        &pod(
            "default",
            "crash",
            "uid-crash",
            "ptp-net, block-net, hostdev-net",
        ),
    )
    .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("fa017001", &pod_ns, "default", "crash", "uid-crash");
    let shim = {
        let add = add.clone();
        std::thread::spawn(move || add.run().unwrap())
    };
    wait_for("the second network's plugin to attach and block", || {
        blocking.reached.exists()
    });
    // The record was written before the first delegate ran, and each one that finished was
    // journaled beside it before the next one started: the cluster network and ptp-net are
    // added, block-net is running, hostdev-net never ran.
    let before = record(&cluster, "fa017001");
    assert_eq!(
        states(&before),
        ["added", "added", "planned", "planned"],
        "{before}"
    );
    assert_eq!(journaled(&cluster, "fa017001"), [0, 1]);
    cluster.daemon.kill().unwrap();
    let out = shim.join().unwrap();
    assert_eq!(
        out.cni_code(),
        Some(11),
        "the runtime is told to retry: {out:?}"
    );
    // The orphaned plugin finishes its ADD after the daemon died (its result is never recorded).
    blocking.release().unwrap();
    wait_for("eth0, net1 and net2 in the pod", || {
        attached(&pod_ns).len() == 3
    });
    assert_eq!(cluster.layout.leases().unwrap().len(), 3);

    let mut config = cluster.layout.config(
        &cluster
            .layout
            .dir("net.d")
            .join("10-cluster.conflist")
            .to_string_lossy(),
    );
    config.insert("binDir".into(), json!(plugins.bin_dir()));
    cluster.restart(&config).unwrap();
    let del = add.with_command("DEL").run().unwrap();
    assert!(del.success(), "{del:?}\n{}", cluster.daemon.log_text());
    assert_clean(&cluster, &pod_ns);
    // The host-device end went back to the node; the macvlan parent is still there.
    let node_links = attached(&cluster.node);
    assert!(node_links.contains(&dev), "{node_links:?}");
    assert!(node_links.contains(&parent), "{node_links:?}");
}

#[test]
fn truncated_record_del_tears_down_from_the_copy_beside_it_and_quarantines_it() {
    let cluster = Cluster::start(|_| {}).unwrap();
    ptp_nad(&cluster);
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "cut", "uid-cut", "ptp-net"))
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("fa017002", &pod_ns, "default", "cut", "uid-cut");
    assert!(add.run().unwrap().success());
    let own = cluster.layout.dir("cni").join("multus-rs").join("fa017002");
    let bytes = fs::read(&own).unwrap();
    // Power lost half-way through a (non-atomic) write.
    fs::write(&own, &bytes[..bytes.len() / 2]).unwrap();

    let del = add.with_command("DEL").run().unwrap();
    assert!(del.success(), "{del:?}");
    assert_clean(&cluster, &pod_ns);
    let quarantined = own.with_file_name("fa017002.corrupt");
    assert_eq!(fs::read(&quarantined).unwrap(), &bytes[..bytes.len() / 2]);
    let log = cluster.daemon.log_text();
    assert!(
        log.contains("cache record unreadable; moved aside"),
        "{log}"
    );
    // A second DEL (the runtime retries) is a no-op.
    assert!(add.with_command("DEL").run().unwrap().success());
}

#[test]
fn both_records_corrupt_del_releases_what_libcni_results_name_and_reports_it() {
    let cluster = Cluster::start(|_| {}).unwrap();
    ptp_nad(&cluster);
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "garb", "uid-garb", "ptp-net"))
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("fa017003", &pod_ns, "default", "garb", "uid-garb");
    assert!(add.run().unwrap().success());
    assert_eq!(cluster.layout.leases().unwrap().len(), 2);
    let cni = cluster.layout.dir("cni");
    fs::write(cni.join("multus-rs").join("fa017003"), b"\0\0\0garbage").unwrap();
    fs::write(cni.join("fa017003"), b"[{\"Conf\":").unwrap();

    let del = add.with_command("DEL").run().unwrap();
    assert!(del.success(), "{del:?}\n{}", cluster.daemon.log_text());
    assert_clean(&cluster, &pod_ns);
    assert!(cni.join("multus-rs").join("fa017003.corrupt").exists());
    assert!(cni.join("fa017003.corrupt").exists());
    let results: Vec<_> = fs::read_dir(cni.join("results"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(results.is_empty(), "{results:?}");
    let log = cluster.daemon.log_text();
    assert!(
        log.contains("record unreadable; tearing down from libcni's result cache"),
        "{log}"
    );
}

#[test]
fn hung_delegate_and_its_grandchild_are_killed_at_the_deadline_and_rolled_back() {
    let plugins = PluginDir::new().unwrap();
    let grandchild = plugins.hanging_with_grandchild("hangs").unwrap();
    let bin_dir = plugins.bin_dir();
    let cluster = Cluster::start(|c| {
        c.insert("binDir".into(), json!(bin_dir));
        c.insert("delegateTimeoutSeconds".into(), json!(2));
    })
    .unwrap();
    ptp_nad(&cluster);
    let hang = json!({"cniVersion": "1.0.0", "name": "hang-net", "type": "hangs"});
    cluster
        .layout
        .put_manifest("nad-hang.json", &nad("default", "hang-net", &hang))
        .unwrap();
    cluster
        .layout
        .put_manifest(
            "pod.json",
            &pod("default", "hung", "uid-hung", "ptp-net, hang-net"),
        )
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let started = Instant::now();
    let out = cluster
        .invocation("fa017004", &pod_ns, "default", "hung", "uid-hung")
        .run()
        .unwrap();
    let took = started.elapsed();
    assert!(!out.success(), "{out:?}");
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains("\"hangs\" did not finish within 2s and was killed"),
        "{out:?}"
    );
    assert!(took < Duration::from_secs(10), "ADD took {took:?}");
    let pid: i32 = fs::read_to_string(&grandchild)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for("the grandchild to be killed with its process group", || {
        is_dead(pid)
    });
    assert_clean(&cluster, &pod_ns);
}

/// A small tmpfs mounted over a directory; unmounted (lazily) on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Self {
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at.to_owned())
    }

    /// Fills it with one file until the kernel says no space is left.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let filler = self.0.join(".filler");
        let mut f = fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // The last partial page.
        while f.write(&[0u8; 1]).is_ok_and(|n| n == 1) {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn full_cni_dir_refuses_add_before_attaching_anything() {
    let layout = Layout::new().unwrap();
    // Mounted before the daemon starts: it runs in its own mount namespace (ip netns exec).
    let tmpfs = Tmpfs::mount(&layout.dir("cni"), "256k");
    let cluster = Cluster::start_on(Netns::new("mrsnode").unwrap(), layout, &[], |_| {}).unwrap();
    ptp_nad(&cluster);
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "full", "uid-full", "ptp-net"))
        .unwrap();
    let filler = tmpfs.fill();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("fa017005", &pod_ns, "default", "full", "uid-full");
    let out = add.run().unwrap();
    assert!(!out.success(), "{out:?}");
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_owned();
    assert!(
        msg.contains("No space left on device") && msg.contains("nothing was attached"),
        "{out:?}"
    );
    assert_eq!(out.cni_code(), Some(11), "{out:?}");
    assert_clean(&cluster, &pod_ns);
    let left: Vec<_> = fs::read_dir(cluster.layout.dir("cni"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".filler" && n != "multus-rs" && n != "results")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Space again: the runtime's retry works, and its DEL cleans up.
    fs::remove_file(filler).unwrap();
    let out = add.run().unwrap();
    assert!(out.success(), "{out:?}\n{}", cluster.daemon.log_text());
    assert!(add.with_command("DEL").run().unwrap().success());
    assert_clean(&cluster, &pod_ns);
    drop(tmpfs);
}
