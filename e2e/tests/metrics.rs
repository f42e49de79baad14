//! The metrics endpoint after a scripted ADD, DEL and failed ADD, parsed by a Prometheus text
//! parser.
#![allow(clippy::unwrap_used)]

use multus_e2e::probe::*;
use multus_e2e::{
    netns::Netns,
    scenario::{Cluster, pod},
};
use serde_json::json;

#[test]
fn metrics_count_a_scripted_add_del_and_failed_add() {
    let port = METRICS_PORT;
    let cluster = Cluster::start(|c| {
        c.insert("metricsPort".into(), json!(port));
        c.insert("metricsBindAddress".into(), json!("127.0.0.1"));
    })
    .unwrap();
    ptp_nad(&cluster);
    let l = &cluster.layout;
    l.put_manifest("pod-a.json", &pod("default", "a", "uid-a", "ptp-net"))
        .unwrap();
    l.put_manifest("pod-b.json", &pod("default", "b", "uid-b", "no-such-net"))
        .unwrap();
    let (ns_a, ns_b) = (Netns::new("mrspod").unwrap(), Netns::new("mrspod").unwrap());
    let add_a = cluster.invocation("a0000001", &ns_a, "default", "a", "uid-a");
    assert!(add_a.run().unwrap().success());
    assert!(add_a.with_command("DEL").run().unwrap().success());
    let failed = cluster
        .invocation("b0000001", &ns_b, "default", "b", "uid-b")
        .run()
        .unwrap();
    assert_eq!(failed.cni_code(), Some(7), "{failed:?}");

    let s = scrape(&cluster.node, port);
    type Expect<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);
    let expect: &[Expect<'_>] = &[
        (
            "multus_rs_requests_total",
            &[("verb", "ADD"), ("code", "0")],
            1.0,
        ),
        (
            "multus_rs_requests_total",
            &[("verb", "DEL"), ("code", "0")],
            1.0,
        ),
        (
            "multus_rs_requests_total",
            &[("verb", "ADD"), ("code", "7")],
            1.0,
        ),
        (
            "multus_rs_request_duration_seconds_count",
            &[("verb", "ADD")],
            2.0,
        ),
        ("multus_rs_requests_in_flight", &[], 0.0),
        (
            "multus_rs_queue_wait_seconds_count",
            &[("queue", "container")],
            2.0,
        ),
        (
            "multus_rs_delegate_executions_total",
            &[
                ("plugin", "bridge"),
                ("command", "ADD"),
                ("outcome", "success"),
            ],
            1.0,
        ),
        (
            "multus_rs_delegate_executions_total",
            &[
                ("plugin", "ptp"),
                ("command", "DEL"),
                ("outcome", "success"),
            ],
            1.0,
        ),
        (
            "multus_rs_delegate_duration_seconds_count",
            &[("plugin", "tuning"), ("command", "ADD")],
            1.0,
        ),
        (
            "multus_rs_kube_lookups_total",
            &[("kind", "pod"), ("source", "files"), ("outcome", "found")],
            2.0,
        ),
        (
            "multus_rs_kube_lookups_total",
            &[
                ("kind", "nad"),
                ("source", "files"),
                ("outcome", "not_found"),
            ],
            1.0,
        ),
        (
            "multus_rs_kube_lookup_duration_seconds_count",
            &[("kind", "nad")],
            2.0,
        ),
        (
            "multus_rs_network_status_patches_total",
            &[("outcome", "written")],
            1.0,
        ),
        ("multus_rs_cache_entries", &[], 0.0),
        ("multus_rs_build_info", &[], 1.0),
        // Upstream's names, for existing dashboards.
        (
            "multus_server_request_total",
            &[("handler", "/cni"), ("code", "200"), ("method", "post")],
            2.0,
        ),
        (
            "multus_server_request_total",
            &[("handler", "/cni"), ("code", "400"), ("method", "post")],
            1.0,
        ),
        (
            "multus_cni_plugin_lookup_total",
            &[("plugin", "ptp"), ("outcome", "success")],
            2.0,
        ),
        (
            "multus_cni_plugin_execution_total",
            &[
                ("plugin", "bridge"),
                ("command", "DEL"),
                ("outcome", "success"),
            ],
            1.0,
        ),
        (
            "multus_cni_plugin_execution_duration_seconds_count",
            &[("plugin", "ptp"), ("command", "ADD")],
            1.0,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, labels, want) in expect {
        let got = sample(&s, name, labels);
        if got != Some(*want) {
            wrong.push(format!("{name}{labels:?}: got {got:?}, want {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    for present in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(
            sample(&s, present, &[]).is_some_and(|v| v > 0.0),
            "{present}"
        );
    }
    assert_eq!(sample(&s, "multus_rs_auth_rejections_total", &[]), None);
}
