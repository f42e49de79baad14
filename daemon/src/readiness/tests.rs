#![allow(clippy::unwrap_used)]
use std::time::Duration;

use super::*;

/// Waits (bounded) until the watched state is `want`.
async fn until(r: &Readiness, want: bool) {
    let mut rx = r.indicator().unwrap().subscribe();
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|p| *p == want))
        .await
        .unwrap_or_else(|_| panic!("the watch never saw present={want}"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_indicator_file_is_followed_both_ways_also_under_a_directory_made_later() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a").join("b");
    let file = dir.join("ready");
    let r = Readiness::new(
        watch::channel(SyncState::SYNCED).1,
        Some(&file),
        Duration::from_secs(1),
    );
    let task = r.watch().unwrap();
    assert!(!r.serving());
    assert_eq!(r.missing_indicator().await, Some(file.as_path()));

    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&file, b"").unwrap();
    until(&r, true).await;
    assert!(r.serving());
    assert_eq!(r.missing_indicator().await, None);

    std::fs::remove_file(&file).unwrap();
    until(&r, false).await;
    assert!(!r.serving());

    // Its directory removed and made again: the watch moves with it.
    std::fs::remove_dir_all(root.path().join("a")).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".ready.tmp"), b"").unwrap();
    std::fs::rename(dir.join(".ready.tmp"), &file).unwrap();
    until(&r, true).await;
    task.abort();
}

#[tokio::test]
async fn a_request_checks_the_disk_when_the_watch_has_not_seen_the_file() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("ready");
    // Never watched: only the requests' own checks move the state.
    let r = Readiness::new(
        watch::channel(SyncState::SYNCED).1,
        Some(&file),
        Duration::from_secs(1),
    );
    assert!(r.missing_indicator().await.is_some());
    std::fs::write(&file, b"").unwrap();
    assert_eq!(r.missing_indicator().await, None);
    assert!(r.serving(), "the request's check is what health sees next");
}

#[tokio::test(start_paused = true)]
async fn add_waits_for_the_caches_then_names_what_has_not_synced() {
    let (tx, rx) = watch::channel(SyncState::PENDING);
    let r = Readiness::new(rx, None, Duration::from_secs(20));
    assert!(!r.serving());
    tx.send_modify(|s| s.nads = true);
    let pending = r.wait_synced().await.unwrap_err();
    assert_eq!(pending.pending(), "the pod cache");

    let r = std::sync::Arc::new(r);
    let waiting = tokio::spawn({
        let r = std::sync::Arc::clone(&r);
        async move { r.wait_synced().await }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    tx.send_modify(|s| s.pods = true);
    waiting.await.unwrap().unwrap();
    assert!(r.serving());
}

#[tokio::test]
async fn a_source_without_caches_is_serving_at_once() {
    let r = Readiness::new(
        watch::channel(SyncState::SYNCED).1,
        None,
        Duration::from_secs(1),
    );
    assert!(r.serving());
    r.wait_synced().await.unwrap();
}
