//! The stale-state reconcile over real records written by ADD: a live pod's record is never
//! touched, a stale one is reported, then collected (its delegates DELed, its files gone), and
//! the leftovers no record owns (quarantined records, temp files, device-info copies, libcni
//! results) are found and removed, each only past its grace.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;
use crate::engine::reconcile::{Kind, Outcome, Stale};

/// Points the container's record at a namespace that no longer exists (its directory does).
fn orphan(f: &Fixture, id: &str) {
    let path = f.cni_dir.path().join("multus-rs").join(id);
    let mut record: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    record["netns"] = json!(f.cni_dir.path().join("netns-gone").display().to_string());
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
}

/// Makes a file look written an hour ago (past every grace).
fn age(path: &Path) {
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();
}

fn put(path: &Path, bytes: &[u8], aged: bool) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    if aged {
        age(path);
    }
    path.to_owned()
}

/// Every file under `dir` with its bytes, sorted.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

async fn run(f: &Fixture, collect: bool) -> (crate::engine::reconcile::Report, Vec<Stale>) {
    let mut seen = Vec::new();
    let report = f
        .engine
        .reconcile(collect, |s, o| {
            assert_eq!(matches!(o, Outcome::Collected), collect, "{s:?}: {o:?}");
            seen.push(s.clone());
        })
        .await
        .unwrap();
    (report, seen)
}

#[tokio::test]
async fn a_live_pod_s_record_stays_and_a_stale_one_is_reported_then_collected() {
    let f = fixture(mem(), |_| {});
    f.engine.add(call(Command::Add, "live1")).await.unwrap();
    f.engine.add(call(Command::Add, "gone1")).await.unwrap();
    orphan(&f, "gone1");
    let live_files = |f: &Fixture| -> Vec<_> {
        files(f.cni_dir.path())
            .into_iter()
            .filter(|(p, _)| p.to_string_lossy().contains("live1"))
            .collect()
    };
    let live_before = live_files(&f);
    assert!(
        live_before.len() >= 2,
        "record and scratch copy: {live_before:?}"
    );
    let everything = files(f.cni_dir.path());
    let adds = f.plugins.calls().len();

    let (report, seen) = run(&f, false).await;
    assert_eq!(report.found(Kind::Own), 1, "{}", report.summary());
    assert_eq!(report.total_found(), 1, "{}", report.summary());
    assert_eq!(report.kept.live, 1);
    assert_eq!(seen[0].container_id.as_deref(), Some("gone1"));
    assert!(
        seen[0].reason.contains("namespace gone"),
        "{}",
        seen[0].reason
    );
    assert_eq!(
        files(f.cni_dir.path()),
        everything,
        "reporting changed files"
    );
    assert_eq!(f.plugins.calls().len(), adds, "reporting ran a plugin");

    let (report, _) = run(&f, true).await;
    assert_eq!(report.collected(Kind::Own), 1, "{}", report.summary());
    assert_eq!(report.failed, 0);
    assert!(record(&f, "gone1").is_none());
    assert!(
        files(f.cni_dir.path())
            .iter()
            .all(|(p, _)| !p.to_string_lossy().contains("gone1")),
        "scratch copy or libcni result of gone1 left"
    );
    assert_eq!(
        dels(&f),
        ["DEL third net2", "DEL second net1", "DEL first eth0"]
    );
    assert_eq!(live_files(&f), live_before, "the live pod's files changed");

    let (report, _) = run(&f, true).await;
    assert_eq!(report.total_found(), 0, "{}", report.summary());
}

#[tokio::test]
async fn quarantined_temp_device_info_and_orphan_results_go_only_past_their_grace() {
    let devinfo = tempfile::tempdir().unwrap();
    let f = fixture(mem(), |c| c.device_info_dir = devinfo.path().to_owned());
    f.engine.add(call(Command::Add, "live1")).await.unwrap();
    let cni = f.cni_dir.path();
    let own = cni.join("multus-rs");
    let dev = devinfo.path().join("cni");
    let gone = cni.join("netns-gone").display().to_string();
    let result =
        json!({"kind": "cniCacheV1", "containerId": "dead4", "netns": gone, "ifName": "eth0"});
    let stale = [
        put(&own.join(".dead0.tmp-99-1"), b"{", true),
        // A progress journal whose record is gone.
        put(&own.join("progress").join("dead6"), b"{}\n", true),
        put(
            &cni.join("results").join(".net-dead5-eth0.tmp-99-3"),
            b"{",
            true,
        ),
        put(&cni.join("dead1.corrupt"), b"not json", true),
        put(&dev.join("default-sriov-dead2_net1"), b"{}", true),
        put(
            &cni.join("results").join("net-dead4-eth0"),
            result.to_string().as_bytes(),
            false,
        ),
    ];
    let kept = [
        put(&own.join(".fresh.tmp-99-2"), b"{", false),
        put(&own.join("progress").join("dead7"), b"{}\n", false),
        put(&cni.join("live1.corrupt"), b"not json", true),
        put(&dev.join("default-sriov-live1_net1"), b"{}", true),
        put(&dev.join("default-sriov-dead3_net1"), b"{}", false),
        put(&dev.join("nodash"), b"{}", true),
    ];

    // The live pod's own journal, however old, goes with its record.
    let live_journal = own.join("progress").join("live1");
    age(&live_journal);

    let (report, seen) = run(&f, false).await;
    let kinds: Vec<_> = Kind::ALL.iter().map(|k| report.found(*k)).collect();
    // own, scratch, libcni_result, device_info, corrupt, temp
    assert_eq!(kinds, [0, 0, 1, 1, 1, 3], "{}\n{seen:?}", report.summary());
    let mut paths: Vec<_> = seen.iter().map(|s| s.path.clone()).collect();
    paths.sort();
    let mut want = stale.to_vec();
    want.sort();
    assert_eq!(paths, want);
    assert!(
        stale.iter().chain(&kept).all(|p| p.exists()),
        "reporting removed a file"
    );

    let (report, _) = run(&f, true).await;
    assert_eq!(
        report.collected.iter().sum::<u64>(),
        6,
        "{}",
        report.summary()
    );
    assert!(stale.iter().all(|p| !p.exists()));
    assert!(kept.iter().all(|p| p.exists()));
    assert!(live_journal.exists());
    assert!(record(&f, "live1").is_some());
}

#[tokio::test]
async fn the_runtime_s_last_gc_list_keeps_what_it_named_and_condemns_what_it_forgot() {
    let f = fixture(mem(), |_| {});
    f.engine.add(call(Command::Add, "listed1")).await.unwrap();
    orphan(&f, "listed1");
    // Go Multus' scratch format names no namespace: only the runtime's list can judge it.
    let upstream = json!([{"Name": "cluster", "Bytes": "", "Conf": {"cniVersion": "1.0.0", "name": "cluster", "type": "first"}}]);
    let scratch = put(
        &f.cni_dir.path().join("forgot1"),
        upstream.to_string().as_bytes(),
        true,
    );
    let (report, _) = run(&f, false).await;
    assert_eq!(
        report.found(Kind::Own),
        1,
        "no list yet: the namespace decides"
    );
    assert_eq!(report.found(Kind::Scratch), 0, "{}", report.summary());

    let mut gc = call(Command::Gc, "");
    gc.config = json!({"cniVersion": "1.1.0", "name": "multus", "type": "multus-shim",
        "cni.dev/valid-attachments": [{"containerID": "listed1", "ifname": "eth0"}]})
    .to_string()
    .into_bytes();
    // The GC itself collects the scratch record (not in the list); put it back, written
    // before the list came.
    f.engine.gc(gc).await.unwrap();
    assert!(record(&f, "listed1").is_some());
    put(&scratch, upstream.to_string().as_bytes(), true);

    let (report, seen) = run(&f, false).await;
    assert_eq!(report.found(Kind::Own), 0, "listed by the runtime: kept");
    assert_eq!(report.found(Kind::Scratch), 1, "{}", report.summary());
    assert_eq!(seen[0].container_id.as_deref(), Some("forgot1"));
    assert!(seen[0].reason.contains("GC list"), "{}", seen[0].reason);
}
