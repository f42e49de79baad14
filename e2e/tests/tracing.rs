//! Traces through the real binaries: the span tree of an ADD received by a real OTLP receiver,
//! and a collector that is down fails no request.
#![allow(clippy::unwrap_used)]

use multus_e2e::otlp;
use multus_e2e::probe::*;
use multus_e2e::{
    netns::Netns,
    scenario::{Cluster, pod},
};
use serde_json::json;

#[test]
fn otlp_receiver_gets_the_span_tree_of_an_add_with_two_delegates() {
    let node = Netns::new("mrsnode").unwrap();
    let receiver = otlp::Receiver::start_in(&node).unwrap();
    let layout = multus_e2e::daemon::Layout::new().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let cluster = Cluster::start_on(
        node,
        layout,
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "multus-e2e"),
        ],
        |c| {
            c.insert("otlpEndpoint".into(), json!(endpoint));
        },
    )
    .unwrap();
    ptp_nad(&cluster);
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", "ptp-net"))
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let mut add = cluster.invocation("07e10001", &pod_ns, "default", "web", "uid-web");
    // The runtime's trace context: the ADD span must join this trace under this span.
    let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    add.env.push((
        "TRACEPARENT".into(),
        Some(format!("00-{trace_id}-{parent_id}-01")),
    ));
    let out = add.run().unwrap();
    assert!(out.success(), "{out:?}\n{}", cluster.daemon.log_text());

    let mut spans = Vec::new();
    wait_for("the ADD's spans at the receiver", || {
        spans = receiver.spans();
        let rpc = spans.iter().find(|s| s.name == "CNI ADD");
        rpc.is_some_and(|r| {
            spans
                .iter()
                .filter(|s| s.name == "delegate" && s.parent == r.id)
                .count()
                == 2
        }) && spans.iter().filter(|s| s.name == "plugin_exec").count() >= 3
    });
    let tree = otlp::render(&spans, trace_id);
    eprintln!("--- span tree of the ADD ---\n{tree}");
    let rpc = spans.iter().find(|s| s.name == "CNI ADD").unwrap();
    assert_eq!(rpc.trace, trace_id);
    assert_eq!(
        rpc.parent, parent_id,
        "the ADD span is a child of the runtime's span"
    );
    assert_eq!(rpc.service, "multus-e2e");
    assert_eq!(rpc.attr("container.id").as_deref(), Some("07e10001"));
    assert_eq!(rpc.attr("pod.name").as_deref(), Some("web"));
    assert_eq!(rpc.attr("cni.code").as_deref(), Some("0"));
    let delegates: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "delegate" && s.parent == rpc.id)
        .collect();
    let networks: Vec<_> = delegates
        .iter()
        .map(|d| d.attr("network").unwrap_or_default())
        .collect();
    assert_eq!(networks, ["cluster", "default/ptp-net"], "{tree}");
    let execs_under = |d: &otlp::Span| -> Vec<String> {
        spans
            .iter()
            .filter(|s| s.name == "plugin_exec" && s.parent == d.id)
            .map(|s| s.attr("plugin").unwrap_or_default())
            .collect()
    };
    assert_eq!(execs_under(delegates[0]), ["bridge", "tuning"], "{tree}");
    assert_eq!(execs_under(delegates[1]), ["ptp"], "{tree}");
    for child in [
        "pod.lookup",
        "nad.lookup",
        "cache.write",
        "network_status.patch",
        "admission.wait",
    ] {
        assert!(
            spans.iter().any(|s| s.name == child && s.trace == trace_id),
            "{child} missing:\n{tree}"
        );
    }
    assert!(
        spans
            .iter()
            .all(|s| s.trace == trace_id || !s.name.starts_with("CNI ADD"))
    );
}

#[test]
fn a_collector_that_is_down_fails_no_request() {
    // Nothing listens on this port in the node namespace: every export fails.
    let cluster = Cluster::start(|c| {
        c.insert("otlpEndpoint".into(), json!("http://127.0.0.1:4317"));
    })
    .unwrap();
    ptp_nad(&cluster);
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", "ptp-net"))
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("d0e50001", &pod_ns, "default", "web", "uid-web");
    for _ in 0..3 {
        let out = add.run().unwrap();
        assert!(out.success(), "{out:?}\n{}", cluster.daemon.log_text());
        assert!(add.with_command("DEL").run().unwrap().success());
    }
}
