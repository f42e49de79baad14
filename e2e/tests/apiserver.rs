//! The daemon's Kubernetes source (`KubeSource`) against the API server stand-in, through a
//! kubeconfig as in a real cluster: the node-scoped pod cache, live GET fallback, NADs, the
//! network-status merge patch (and upstream's status update under upstream's RBAC), and each
//! injected fault.
// Test helpers (not only #[test] fns) unwrap: a failed setup step is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::Method;
use multus_daemon::source::kube::{Budget, KubeSettings, KubeSource, NETWORK_STATUS_ANNOTATION};
use multus_daemon::source::{ClusterSource, PodInfo, SourceError};
use multus_e2e::apiserver::{
    Action, ApiServer, Fault, Rbac, nad_json, nad_path, pod_json, pod_path, pod_status_path,
};
use serde_json::Value;

const NODE: &str = "node-a";
const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

/// One test at a time: the memory figure of the 1,000-pod test is the process RSS.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn budget(total_ms: u64) -> Budget {
    Budget {
        per_call: Duration::from_millis(500),
        total: Duration::from_millis(total_ms),
    }
}

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn source(server: &ApiServer, budget: Budget) -> KubeSource {
    let settings = KubeSettings {
        kubeconfig: Some(server.kubeconfig_path()),
        node_name: Some(NODE.into()),
        budget,
        per_node_certificate: None,
    };
    let source = KubeSource::connect(settings).await.unwrap();
    assert!(
        source.wait_synced(Duration::from_secs(30)).await,
        "caches synced"
    );
    source
}

/// Polls `done` until true or 30 s passed (a bound for a broken build, not a performance claim).
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..300 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

fn pod_info(server: &ApiServer, ns: &str, name: &str) -> PodInfo {
    let stored = server.pod(ns, name).unwrap();
    PodInfo {
        namespace: ns.into(),
        name: name.into(),
        uid: stored["metadata"]["uid"].as_str().unwrap().into(),
        annotations: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pods_come_from_the_cache_without_an_api_call() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::start().await.unwrap();
    let ann = annotations(&[
        (NETWORKS, "macvlan-conf"),
        ("kubernetes.io/config.source", "api"),
    ]);
    server.put_pod(pod_json("default", "mine", NODE, &ann));
    server.put_pod(pod_json("default", "elsewhere", "node-b", &ann));
    let source = source(&server, budget(5_000)).await;
    assert_eq!(source.cached_pods(), 1, "only this node's pods are cached");
    // Any GET of the pod would now fail: the answer must come from the cache.
    server.inject(Fault::new(
        Method::GET,
        pod_path("default", "mine"),
        Action::Status(500),
    ));
    let pod = source.pod("default", "mine").await.unwrap().unwrap();
    assert_eq!(pod.annotations, ann);
    assert_eq!(
        pod.uid,
        server.pod("default", "mine").unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
    );
    assert_eq!(
        server.requests(&Method::GET, &pod_path("default", "mine")),
        0
    );
    assert!(!source.is_pod_cached("default", "elsewhere"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_not_cached_yet_is_found_by_a_live_get_and_a_missing_one_is_none() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::start().await.unwrap();
    let source = source(&server, budget(5_000)).await;
    server.put_pod_unwatched(pod_json(
        "ns1",
        "fresh",
        NODE,
        &annotations(&[(NETWORKS, "a,b")]),
    ));
    assert!(!source.is_pod_cached("ns1", "fresh"));
    let pod = source.pod("ns1", "fresh").await.unwrap().unwrap();
    assert_eq!(
        pod.annotations.get(NETWORKS).map(String::as_str),
        Some("a,b")
    );
    assert_eq!(server.requests(&Method::GET, &pod_path("ns1", "fresh")), 1);
    assert_eq!(source.pod("ns1", "nobody").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nads_are_found_cached_or_live_and_missing_ones_are_none() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::start().await.unwrap();
    let config = r#"{"cniVersion":"0.3.1","type":"macvlan","master":"eth0"}"#;
    server.put_nad(nad_json("default", "macvlan-conf", config));
    let source = source(&server, budget(5_000)).await;
    assert_eq!(source.cached_nads(), 1);
    let nad = source
        .nad("default", "macvlan-conf")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            nad.namespace.as_str(),
            nad.name.as_str(),
            nad.config.as_str()
        ),
        ("default", "macvlan-conf", config)
    );
    assert_eq!(
        server.requests(&Method::GET, &nad_path("default", "macvlan-conf")),
        0
    );
    assert_eq!(source.nad("default", "absent").await.unwrap(), None);
    assert_eq!(
        server.requests(&Method::GET, &nad_path("default", "absent")),
        1,
        "a miss asks the API once"
    );
    server.put_nad(nad_json("other", "empty", ""));
    assert!(eventually(|| source.cached_nads() == 2).await);
    assert_eq!(
        source.nad("other", "empty").await.unwrap().unwrap().config,
        ""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_status_is_one_merge_patch_of_one_annotation() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::start().await.unwrap();
    server.put_pod(pod_json(
        "default",
        "p",
        NODE,
        &annotations(&[(NETWORKS, "macvlan-conf")]),
    ));
    let source = source(&server, budget(5_000)).await;
    let status = r#"[{"name":"default/macvlan-conf","interface":"net1","ips":["10.1.1.101"],"mac":"c2:11:22:33:44:66","dns":{}}]"#;
    assert!(
        source
            .set_network_status(&pod_info(&server, "default", "p"), status)
            .await
            .unwrap()
    );
    let stored = server.pod("default", "p").unwrap();
    assert_eq!(
        stored["metadata"]["annotations"][NETWORK_STATUS_ANNOTATION],
        Value::from(status)
    );
    assert_eq!(
        stored["metadata"]["annotations"][NETWORKS], "macvlan-conf",
        "other annotations kept"
    );
    assert_eq!(
        stored["spec"]["nodeName"], NODE,
        "the rest of the pod untouched"
    );
    assert_eq!(
        server.requests(&Method::PATCH, &pod_path("default", "p")),
        1
    );
    assert_eq!(
        server.requests_under(&Method::PUT, "/api"),
        0,
        "never a full-object update"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d12_a_conflict_is_retried_a_gone_pod_is_not_written_and_a_replaced_one_is_refused() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::start().await.unwrap();
    server.put_pod(pod_json("default", "p", NODE, &BTreeMap::new()));
    let source = source(&server, budget(5_000)).await;
    let path = pod_path("default", "p");
    server.inject(Fault::new(Method::PATCH, path.clone(), Action::Status(409)).times(2));
    assert!(
        source
            .set_network_status(&pod_info(&server, "default", "p"), "[]")
            .await
            .unwrap()
    );
    assert_eq!(server.requests(&Method::PATCH, &path), 3);
    assert_eq!(
        server.pod("default", "p").unwrap()["metadata"]["annotations"][NETWORK_STATUS_ANNOTATION],
        "[]"
    );

    let gone = PodInfo {
        namespace: "default".into(),
        name: "gone".into(),
        ..PodInfo::default()
    };
    assert!(!source.set_network_status(&gone, "[]").await.unwrap());
    let replaced = PodInfo {
        uid: "an-older-uid".into(),
        ..pod_info(&server, "default", "p")
    };
    // D-12: upstream's refusal, which fails the ADD.
    let err = source
        .set_network_status(&replaced, "[]")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "SetNetworkStatus: expected pod default/p UID \"an-older-uid\" but got {:?} from Kube API",
            pod_info(&server, "default", "p").uid
        )
    );
    assert_eq!(
        server.requests(&Method::PATCH, &path),
        3,
        "nothing written for a replaced pod"
    );
}

/// D-2 under load: concurrent first writes may all meet the 403, but every pod gets its status,
/// and once the daemon switched no write tries the patch again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_concurrent_writes_under_upstream_rbac_switch_once_and_all_land() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::start().await.unwrap();
    server.set_rbac(Rbac::upstream());
    let names: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    for name in &names {
        server.put_pod(pod_json("default", name, NODE, &BTreeMap::new()));
    }
    let source = std::sync::Arc::new(source(&server, budget(10_000)).await);
    let (first, later) = names.split_at(20);
    let write_all = |batch: &[String]| {
        let mut tasks = tokio::task::JoinSet::new();
        for name in batch {
            let (source, pod) = (source.clone(), pod_info(&server, "default", name));
            tasks.spawn(async move {
                let status = format!("[{{\"name\":\"{}\",\"dns\":{{}}}}]", pod.name);
                source.set_network_status(&pod, &status).await
            });
        }
        tasks
    };
    for written in write_all(first).join_all().await {
        assert!(written.unwrap());
    }
    let patches = server.requests_under(&Method::PATCH, "/api/v1/namespaces/default/pods/");
    assert!((1..=20).contains(&patches), "{patches} patches");
    for written in write_all(later).join_all().await {
        assert!(written.unwrap());
    }
    assert_eq!(
        server.requests_under(&Method::PATCH, "/api/v1/namespaces/default/pods/"),
        patches,
        "no patch after the switch"
    );
    for name in &names {
        let stored = server.pod("default", name).unwrap();
        let want = format!("[{{\"name\":\"{name}\",\"dns\":{{}}}}]");
        assert_eq!(
            stored["metadata"]["annotations"][NETWORK_STATUS_ANNOTATION],
            Value::from(want)
        );
        assert_eq!(
            server.requests(&Method::PUT, &pod_status_path("default", name)),
            1
        );
    }
}

/// D-2: a pod that keeps changing under the update is given up after upstream's 5 attempts,
/// as Unavailable (the ADD fails with code 11 and the runtime retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_a_status_update_that_always_conflicts_gives_up_after_five_attempts() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::start().await.unwrap();
    server.set_rbac(Rbac::upstream());
    server.put_pod(pod_json("default", "busy", NODE, &BTreeMap::new()));
    let source = source(&server, budget(5_000)).await;
    let path = pod_status_path("default", "busy");
    server.inject(Fault::new(
        Method::PUT,
        path.clone(),
        Action::ConcurrentWrite,
    ));
    let err = source
        .set_network_status(&pod_info(&server, "default", "busy"), "[]")
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Unavailable { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("409 Conflict"), "{text}");
    assert!(text.contains("the object has been modified"), "{text}");
    assert_eq!(server.requests(&Method::PUT, &path), 5);
}

/// D-2: the update path reads the pod live, and a pod replaced under the same name since the
/// cache saw it (new uid) is not written, as upstream refuses a UID mismatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_the_status_update_does_not_write_a_pod_replaced_since_the_cache_saw_it() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::start().await.unwrap();
    server.set_rbac(Rbac::upstream());
    server.put_pod(pod_json("default", "p", NODE, &BTreeMap::new()));
    let source = source(&server, budget(5_000)).await;
    let ours = pod_info(&server, "default", "p");
    // Replaced behind the watch: the cache still has our uid, a live GET the new one.
    let mut newer = pod_json("default", "p", NODE, &BTreeMap::new());
    newer["metadata"]["uid"] = "a-newer-uid".into();
    server.put_pod_unwatched(newer);
    let err = source.set_network_status(&ours, "[]").await.unwrap_err();
    assert!(
        matches!(&err, SourceError::Replaced { actual, .. } if actual == "a-newer-uid"),
        "not written, upstream's refusal: {err}"
    );
    let path = pod_path("default", "p");
    assert_eq!(server.requests(&Method::PATCH, &path), 1, "refused, then");
    assert_eq!(server.requests(&Method::GET, &path), 1, "the update's read");
    assert_eq!(
        server.requests(&Method::PUT, &pod_status_path("default", "p")),
        0
    );
    assert!(
        server.pod("default", "p").unwrap()["metadata"]
            .get("annotations")
            .and_then(|a| a.get(NETWORK_STATUS_ANNOTATION))
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_until_the_budget_is_spent_are_unavailable() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::start().await.unwrap();
    let source = source(&server, budget(1_000)).await;
    let path = pod_path("default", "flaky");
    server.inject(Fault::new(Method::GET, path.clone(), Action::Status(500)));
    let err = source.pod("default", "flaky").await.unwrap_err();
    assert!(matches!(err, SourceError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("500"), "{err}");
    assert!(
        server.requests(&Method::GET, &path) > 1,
        "retried before giving up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_waits_for_retry_after() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::start().await.unwrap();
    server.put_pod(pod_json("default", "p", NODE, &BTreeMap::new()));
    let source = source(&server, budget(5_000)).await;
    let path = pod_path("default", "p");
    // Retry-After within the budget: one wait, then success.
    server.inject(
        Fault::new(
            Method::PATCH,
            path.clone(),
            Action::TooManyRequests {
                retry_after_seconds: 1,
            },
        )
        .times(1),
    );
    assert!(
        source
            .set_network_status(&pod_info(&server, "default", "p"), "[]")
            .await
            .unwrap()
    );
    assert_eq!(server.requests(&Method::PATCH, &path), 2);
    // Retry-After beyond the budget: no retry at the short back-off, an error at once.
    server.inject(Fault::new(
        Method::PATCH,
        path.clone(),
        Action::TooManyRequests {
            retry_after_seconds: 60,
        },
    ));
    let err = source
        .set_network_status(&pod_info(&server, "default", "p"), "[]")
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Unavailable { .. }), "{err}");
    assert_eq!(
        server.requests(&Method::PATCH, &path),
        3,
        "the server's delay was honoured, not hammered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_times_out_and_is_retried() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::start().await.unwrap();
    let source = source(&server, budget(5_000)).await;
    server.put_pod_unwatched(pod_json("default", "slow", NODE, &BTreeMap::new()));
    let path = pod_path("default", "slow");
    server.inject(
        Fault::new(
            Method::GET,
            path.clone(),
            Action::Delay(Duration::from_secs(3)),
        )
        .times(1),
    );
    assert!(source.pod("default", "slow").await.unwrap().is_some());
    assert_eq!(server.requests(&Method::GET, &path), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_watch_is_resumed_and_later_pods_are_seen() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::start().await.unwrap();
    server.put_pod(pod_json("default", "before", NODE, &BTreeMap::new()));
    let source = source(&server, budget(5_000)).await;
    let watches_before = server.requests(&Method::GET, "/api/v1/pods");
    server.drop_watches();
    server.put_pod(pod_json("default", "after", NODE, &BTreeMap::new()));
    assert!(
        eventually(|| source.is_pod_cached("default", "after")).await,
        "pod added after the drop is cached"
    );
    assert!(
        server.requests(&Method::GET, "/api/v1/pods") > watches_before,
        "the watch was re-opened"
    );
    server.delete_pod("default", "before");
    assert!(
        eventually(|| !source.is_pod_cached("default", "before")).await,
        "deletions reach the cache too"
    );
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn put_thousand_pods(server: &ApiServer, node: &str) {
    let ann = annotations(&[
        (NETWORKS, "macvlan-conf@net1"),
        ("kubernetes.io/config.source", "api"),
    ]);
    for i in 0..1000 {
        server.put_pod(pod_json(
            &format!("ns{}", i % 20),
            &format!("{node}-pod-{i}"),
            node,
            &ann,
        ));
    }
}

/// Memory of the cache, separated from the stand-in's own store (same process): 1,000 pods on
/// another node cost the stand-in alone; 1,000 on this node cost the stand-in the same plus the
/// daemon's cache. Reported, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pods_in_the_cache() {
    let _serial = SERIAL.lock().await;
    let server = ApiServer::start().await.unwrap();
    let source = source(&server, budget(5_000)).await;
    let r0 = rss_kib();
    put_thousand_pods(&server, "node-b");
    let r1 = rss_kib();
    put_thousand_pods(&server, NODE);
    assert!(
        eventually(|| source.cached_pods() == 1000).await,
        "1,000 pods cached"
    );
    let r2 = rss_kib();
    assert!(source.is_pod_cached("ns7", &format!("{NODE}-pod-7")));
    let standin = r1.saturating_sub(r0);
    let both = r2.saturating_sub(r1);
    println!(
        "1,000-pod cache: RSS {r0} -> {r1} KiB (+{standin}: stand-in store, other node) -> {r2} KiB \
         (+{both}: stand-in store + daemon cache); daemon cache ~ {} KiB",
        both.saturating_sub(standin)
    );
}
