//! The API server (the stand-in) failing under a Kubernetes-mode daemon, through the real shim
//! (issue 12): down, slower than the budget, answering 500, 429 and 409. Every ADD fails with
//! code 11 ("try again later") within its budget and attaches nothing; the DEL of a pod attached
//! before is unaffected, as DEL reads only the cache.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::Method;
use multus_e2e::{
    apiserver::{Action, Fault, nad_json, pod_json, pod_path},
    ip,
    netns::Netns,
    scenario::{KUBE_NODE, KubeCluster, host_local},
    shim::Invocation,
};
use serde_json::json;

/// 1 s per API call, 2 s of retries: a failing ADD must end well inside its 5 s request deadline.
const BUDGET: Duration = Duration::from_secs(3);

fn put_pod(k: &KubeCluster, name: &str, watched: bool) {
    let ann = BTreeMap::from([("k8s.v1.cni.cncf.io/networks".to_owned(), "ptp-f".to_owned())]);
    let mut pod = pod_json("default", name, KUBE_NODE, &ann);
    pod["metadata"]["uid"] = json!(format!("uid-{name}"));
    if watched {
        k.api.put_pod(pod);
    } else {
        // Not in the daemon's cache: the ADD must ask the API server.
        k.api.put_pod_unwatched(pod);
    }
}

fn add(k: &KubeCluster, cid: &str, pod_ns: &Netns, name: &str) -> Invocation {
    k.invocation(cid, pod_ns, "default", name, &format!("uid-{name}"))
}

/// One fault: the ADD of a pod that needs the API fails with code 11 in time, attaching
/// nothing; then the DEL of `attached` (a pod ADDed before the fault) succeeds and leaves nothing.
fn assert_retryable_and_del_unaffected(
    k: &KubeCluster,
    case: &str,
    cid: &str,
    attached: &(Invocation, Netns),
) {
    let pod_ns = Netns::new("mrspod").unwrap();
    let name = format!("p-{cid}");
    let started = Instant::now();
    let out = add(k, cid, &pod_ns, &name).run().unwrap();
    let took = started.elapsed();
    assert_eq!(
        out.cni_code(),
        Some(11),
        "{case}: {out:?}\n{}",
        k.daemon.log_text()
    );
    assert!(
        took < BUDGET + Duration::from_secs(2),
        "{case}: ADD took {took:?}"
    );
    assert_eq!(
        ip::links(pod_ns.name()).unwrap(),
        Vec::<String>::new(),
        "{case}"
    );
    let records = k.layout.cache_records().unwrap();
    assert!(!records.contains(&cid.to_owned()), "{case}: {records:?}");

    let (inv, ns) = attached;
    let del = inv.with_command("DEL").run().unwrap();
    assert!(del.success(), "{case}: DEL {del:?}");
    assert_eq!(
        ip::links(ns.name()).unwrap(),
        Vec::<String>::new(),
        "{case}"
    );
    assert!(
        !k.layout
            .cache_records()
            .unwrap()
            .contains(&inv.container_id),
        "{case}"
    );
}

#[test]
fn api_down_slow_500_429_409_make_add_retryable_in_time_and_leave_del_alone() {
    let mut k = KubeCluster::start(|c| {
        c.insert("kubeApiTimeoutSeconds".into(), json!(1));
        c.insert("kubeApiRetrySeconds".into(), json!(2));
        c.insert("requestTimeouts".into(), json!({"add": 5}));
    })
    .unwrap();
    let ptp = json!({"cniVersion": "1.0.0", "type": "ptp", "ipam": host_local(&k.layout, "10.89.0.0/24")});
    k.api
        .put_nad(nad_json("default", "ptp-f", &ptp.to_string()));
    // One attached pod per fault, whose DEL runs under it.
    let cases = ["slow", "500", "429", "409", "down"];
    let mut attached = Vec::new();
    for (i, _) in cases.iter().enumerate() {
        let name = format!("before{i}");
        put_pod(&k, &name, true);
        let ns = Netns::new("mrspod").unwrap();
        let inv = add(&k, &format!("fa0a000{i}"), &ns, &name);
        let out = inv.run().unwrap();
        assert!(out.success(), "{out:?}\n{}", k.daemon.log_text());
        attached.push((inv, ns));
    }
    let leases_before = k.layout.leases().unwrap().len();

    for (i, case) in cases.iter().enumerate() {
        let cid = format!("fa0b000{i}");
        let name = format!("p-{cid}");
        put_pod(&k, &name, *case == "409");
        let path = pod_path("default", &name);
        match *case {
            "slow" => k.api.inject(Fault::new(
                Method::GET,
                &path,
                Action::Delay(Duration::from_secs(30)),
            )),
            "500" => k
                .api
                .inject(Fault::new(Method::GET, &path, Action::Status(500))),
            "429" => k.api.inject(Fault::new(
                Method::GET,
                &path,
                Action::TooManyRequests {
                    retry_after_seconds: 1,
                },
            )),
            // The pod is cached; its network-status write meets a conflict every time: the
            // attachment is rolled back.
            "409" => k
                .api
                .inject(Fault::new(Method::PATCH, &path, Action::Status(409))),
            _ => k.api.halt(),
        }
        assert_retryable_and_del_unaffected(&k, case, &cid, &attached[i]);
        k.api.clear_faults();
    }
    // Only the five attached pods ever held leases, and their DELs released them all.
    assert_eq!(leases_before, 5 * 2);
    assert_eq!(k.layout.leases().unwrap(), Vec::<String>::new());
    assert_eq!(k.layout.cache_records().unwrap(), Vec::<String>::new());
}
