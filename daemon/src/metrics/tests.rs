//! Metrics: the families and their counts through a real Prometheus text parser, the /proc
//! parser, and the listener over loopback.
use std::time::Duration;

use super::collectors::parse_stat;
use super::*;
use crate::engine::cache::Cache;

fn scrape(m: &Metrics) -> prometheus_parse::Scrape {
    let text = m.encode().unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).unwrap()
}

/// The value of the sample named `name` whose labels include all of `labels`.
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

#[test]
fn recorded_events_show_up_with_their_labels() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c1"), "{}").unwrap();
    std::fs::write(dir.path().join(".c2.tmp-1-1"), "{}").unwrap();
    let m = Metrics::new(crate::app::cache_entries(Cache::new(dir.path())));
    let ms = Duration::from_millis(3);
    m.request("ADD", 0, ms);
    m.request("ADD", 0, ms);
    m.request("ADD", 7, ms);
    m.delegate_exec("bridge", "ADD", "success", ms);
    m.delegate_exec("macvlan", "ADD", "timeout", ms);
    m.plugin_lookup("bridge", true);
    m.kube_lookup("pod", "files", "found", ms);
    m.status_patch("written", ms);
    m.auth_rejected(Some(65534));
    m.queue_wait("delegate", ms);
    let guard = m.in_flight();
    let s = scrape(&m);
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);
    let cases: &[Case<'_>] = &[
        (
            "multus_rs_requests_total",
            &[("verb", "ADD"), ("code", "0")],
            2.0,
        ),
        (
            "multus_rs_requests_total",
            &[("verb", "ADD"), ("code", "7")],
            1.0,
        ),
        ("multus_rs_requests_in_flight", &[], 1.0),
        (
            "multus_server_request_total",
            &[("handler", "/cni"), ("code", "200")],
            2.0,
        ),
        (
            "multus_server_request_total",
            &[("handler", "/cni"), ("code", "400")],
            1.0,
        ),
        (
            "multus_cni_plugin_execution_total",
            &[("plugin", "macvlan"), ("outcome", "failure")],
            1.0,
        ),
        (
            "multus_rs_delegate_executions_total",
            &[("plugin", "macvlan"), ("outcome", "timeout")],
            1.0,
        ),
        (
            "multus_cni_plugin_lookup_total",
            &[("plugin", "bridge"), ("outcome", "success")],
            1.0,
        ),
        (
            "multus_rs_kube_lookups_total",
            &[("kind", "pod"), ("outcome", "found")],
            1.0,
        ),
        (
            "multus_rs_network_status_patches_total",
            &[("outcome", "written")],
            1.0,
        ),
        ("multus_rs_auth_rejections_total", &[("uid", "65534")], 1.0),
        ("multus_rs_cache_entries", &[], 1.0),
        (
            "multus_rs_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        ),
    ];
    for (name, labels, want) in cases {
        assert_eq!(value(&s, name, labels), Some(*want), "{name} {labels:?}");
    }
    for histogram in [
        "multus_rs_request_duration_seconds_count",
        "multus_rs_queue_wait_seconds_count",
        "multus_cni_plugin_execution_duration_seconds_count",
        "multus_rs_delegate_duration_seconds_count",
        "multus_rs_kube_lookup_duration_seconds_count",
    ] {
        assert!(
            s.samples.iter().any(|x| x.metric == histogram),
            "{histogram} missing"
        );
    }
    assert!(value(&s, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
    drop(guard);
    assert_eq!(
        value(&scrape(&m), "multus_rs_requests_in_flight", &[]),
        Some(0.0)
    );
}

#[test]
fn proc_stat_fields_are_counted_after_the_command_name() {
    // Field 2 with a space and a parenthesis must not shift the fields after it.
    let stat = "42 (multus (rs) d) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 12345 104857600 2560 18446744073709551615";
    let got = parse_stat(stat, 100.0, 4096).unwrap();
    assert_eq!(
        got,
        collectors::ProcStat {
            cpu_seconds: 3.0,
            rss_bytes: 2560 * 4096,
            virtual_bytes: 104_857_600,
            start_ticks: 12345,
        }
    );
    assert_eq!(parse_stat("garbage", 100.0, 4096), None);
}

#[tokio::test]
async fn listener_serves_metrics_and_404s_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let m = Metrics::new(crate::app::cache_entries(Cache::new(dir.path())));
    m.request("DEL", 0, Duration::from_millis(1));
    let l = listener::bind(std::net::Ipv4Addr::LOCALHOST.into(), 0)
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(listener::serve(l, m));
    let get = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let ok = get("/metrics").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("application/openmetrics-text"), "{ok}");
    assert!(
        ok.contains("multus_rs_requests_total{verb=\"DEL\",code=\"0\"} 1"),
        "{ok}"
    );
    assert!(get("/other").await.starts_with("HTTP/1.1 404"));
    task.abort();
}

#[test]
fn noop_records_nothing_and_encodes_empty() {
    let m = Metrics::noop();
    m.request("ADD", 0, Duration::from_millis(1));
    let guard = m.in_flight();
    drop(guard);
    assert_eq!(m.encode().unwrap(), "");
}

#[tokio::test]
async fn readiness_and_reconcile_gauges_follow_what_they_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let m = Metrics::new(crate::app::cache_entries(Cache::new(dir.path())));
    let flag = dir.path().join("ready");
    let (tx, rx) = tokio::sync::watch::channel(crate::source::SyncState::PENDING);
    let r = crate::readiness::Readiness::new(rx, Some(&flag), Duration::from_secs(1));
    m.readiness(&r);
    let path = flag.display().to_string();
    let s = scrape(&m);
    let file = |s: &prometheus_parse::Scrape| {
        value(s, "multus_rs_readiness_indicator_file", &[("path", &path)])
    };
    assert_eq!(file(&s), Some(0.0));
    assert_eq!(
        value(&s, "multus_rs_cache_synced", &[("cache", "pods")]),
        Some(0.0)
    );
    std::fs::write(&flag, b"").unwrap();
    assert!(r.missing_indicator().await.is_none());
    tx.send_modify(|st| st.pods = true);
    m.readiness(&r);
    let s = scrape(&m);
    assert_eq!(file(&s), Some(1.0));
    assert_eq!(
        value(&s, "multus_rs_cache_synced", &[("cache", "pods")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "multus_rs_cache_synced", &[("cache", "nads")]),
        Some(0.0)
    );

    m.reconciled(&[("own", 3), ("temp", 1)], &[("own", 2)], true);
    m.reconciled(&[("own", 0), ("temp", 1)], &[("own", 1)], false);
    let s = scrape(&m);
    assert_eq!(
        value(&s, "multus_rs_stale_entries", &[("kind", "own")]),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "multus_rs_stale_entries", &[("kind", "temp")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "multus_rs_stale_collected_total", &[("kind", "own")]),
        Some(3.0)
    );
    assert_eq!(
        value(&s, "multus_rs_reconciles_total", &[("outcome", "error")]),
        Some(1.0)
    );
}
