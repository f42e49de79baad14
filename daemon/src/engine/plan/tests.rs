//! Unit tests of `plan`, over an in-memory `ClusterSource`.
use multus_common::{CniArgs, Command};
use serde_json::{Value, json};

use super::*;
use crate::engine::selection;
use crate::source::{CONFIG_SOURCE_ANNOTATION, NadInfo};

use crate::source::memory::MemSource as Mem;

fn nad(ns: &str, name: &str, plugin: &str) -> NadInfo {
    let config = json!({"cniVersion": "0.3.1", "type": plugin}).to_string();
    NadInfo {
        namespace: ns.into(),
        name: name.into(),
        config,
        ..Default::default()
    }
}

fn pod(annotations: &[(&str, &str)]) -> PodInfo {
    PodInfo {
        namespace: "app".into(),
        name: "web".into(),
        uid: "uid-1".into(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn source(p: PodInfo) -> Mem {
    let nads = vec![
        nad("kube-system", "cluster", "flannel"),
        nad("kube-system", "extra", "bridge"),
        nad("kube-system", "alt", "calico"),
        nad("app", "mv", "macvlan"),
        nad("other", "ipv", "ipvlan"),
        nad("default", "glob", "host-device"),
    ];
    Mem {
        pods: vec![p],
        nads,
        ..Default::default()
    }
}

fn call(args: &str, stdin: Value) -> CniCall {
    CniCall {
        command: Command::Add,
        container_id: "cid".into(),
        netns: "/run/netns/x".into(),
        ifname: "eth0".into(),
        args: CniArgs::parse(args).unwrap(),
        config: stdin.to_string().into_bytes(),
    }
}

const ARGS: &str = "K8S_POD_NAMESPACE=app;K8S_POD_NAME=web;K8S_POD_UID=uid-1";

fn stdin() -> Value {
    json!({"cniVersion": "1.0.0", "name": "multus", "type": "multus-shim", "clusterNetwork": "cluster",
           "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}})
}

async fn run(config: &Config, src: &Mem, args: &str, stdin: Value) -> Result<Planned, PlanError> {
    let devices = crate::kubelet::Kubelet::from_config(config);
    plan(config, src, &devices, &call(args, stdin)).await
}

async fn delegates(config: &Config, p: PodInfo) -> Result<Vec<Delegate>, PlanError> {
    match run(config, &source(p), ARGS, stdin()).await? {
        Planned::Plan(plan) => Ok(plan.delegates),
        Planned::PodGone => panic!("pod is there"),
    }
}

fn summary(ds: &[Delegate]) -> Vec<(String, String, bool)> {
    ds.iter()
        .map(|d| (d.name.clone(), d.ifname.clone(), d.is_default))
        .collect()
}

fn s(name: &str, ifname: &str, default: bool) -> (String, String, bool) {
    (name.into(), ifname.into(), default)
}

#[tokio::test]
async fn order_and_interface_names() {
    let config = Config {
        default_networks: vec!["extra".into()],
        ..Config::default()
    };
    let p = pod(&[(
        selection::NETWORKS_ANNOTATION,
        "mv, default/glob@gl0, other/ipv",
    )]);
    let ds = delegates(&config, p).await.unwrap();
    let want = vec![
        s("kube-system/cluster", "eth0", true),
        s("kube-system/extra", "net1", false),
        s("app/mv", "net2", false),
        s("default/glob", "gl0", false),
        s("other/ipv", "net4", false),
    ];
    assert_eq!(summary(&ds), want);
    assert_eq!(ds[0].capability_args["portMappings"][0]["hostPort"], 8080);
    assert!(!ds[2].capability_args.contains_key("portMappings"));
    assert_eq!(
        ds[2].cni_args,
        "IgnoreUnknown=true;K8S_POD_NAMESPACE=app;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=;K8S_POD_UID=uid-1"
    );
}

#[tokio::test]
async fn system_namespaces_get_no_default_networks() {
    let config = Config {
        default_networks: vec!["extra".into()],
        system_namespaces: vec!["app".into()],
        ..Config::default()
    };
    assert_eq!(
        summary(&delegates(&config, pod(&[])).await.unwrap()),
        vec![s("kube-system/cluster", "eth0", true)]
    );
}

#[tokio::test]
async fn default_network_annotation_replaces_cluster_network() {
    let p = pod(&[
        (selection::DEFAULT_NETWORK_ANNOTATION, "alt"),
        (selection::NETWORKS_ANNOTATION, "mv"),
    ]);
    let ds = delegates(&Config::default(), p).await.unwrap();
    assert_eq!(
        summary(&ds),
        vec![
            s("kube-system/alt", "eth0", true),
            s("app/mv", "net1", false)
        ]
    );
    assert_eq!(ds[0].config.to_value()["type"], "calico");
    let isolated = Config {
        namespace_isolation: true,
        ..Config::default()
    };
    let p = pod(&[(selection::DEFAULT_NETWORK_ANNOTATION, "other/ipv")]);
    let err = delegates(&isolated, p).await.unwrap_err().to_string();
    assert!(err.contains("refers to target namespace other"), "{err}");
    let p = pod(&[(selection::DEFAULT_NETWORK_ANNOTATION, "alt")]);
    assert!(delegates(&isolated, p).await.is_ok());
    let p = pod(&[(selection::DEFAULT_NETWORK_ANNOTATION, "alt,cluster")]);
    let err = delegates(&Config::default(), p).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "tryLoadK8sPodDefaultNetwork: more than one default network is specified: alt,cluster"
    );
}

#[tokio::test]
async fn selection_requests_reach_the_delegate() {
    let ann = r#"[{"name":"mv","interface":"ext0","ips":["10.1.1.5/24"],"mac":"c2:b0:57:49:47:f1",
        "cni-args":{"k":"v"},"default-route":["10.1.1.1"]}]"#;
    let ds = delegates(
        &Config::default(),
        pod(&[(selection::NETWORKS_ANNOTATION, ann)]),
    )
    .await
    .unwrap();
    let d = &ds[1];
    assert_eq!(d.ifname, "ext0");
    assert_eq!(d.config.to_value()["args"]["cni"]["k"], "v");
    assert_eq!(d.capability_args["ips"], json!(["10.1.1.5/24"]));
    assert!(
        d.cni_args
            .ends_with(";MAC=c2:b0:57:49:47:f1;IP=10.1.1.5/24"),
        "{}",
        d.cni_args
    );
    assert_eq!(d.default_route, Some(vec!["10.1.1.1".parse().unwrap()]));
}

#[tokio::test]
async fn refusals() {
    let isolated = Config {
        namespace_isolation: true,
        ..Config::default()
    };
    let cases: Vec<(Config, &str, &str)> = vec![
        (
            isolated.clone(),
            "other/ipv",
            "pod is in namespace app but refers to target namespace other",
        ),
        (
            Config::default(),
            "absent",
            r#"GetNetworkDelegates: failed getting the delegate: getKubernetesDelegate: cannot find a network-attachment-definition (absent) in namespace (app): network-attachment-definitions.k8s.cni.cncf.io "absent" not found"#,
        ),
        (
            Config::default(),
            "mv@eth0",
            "interface name eth0 is requested by both kube-system/cluster and app/mv",
        ),
        (
            Config::default(),
            "mv@a:b",
            "network app/mv: invalid interface name",
        ),
        (Config::default(), "Bad", "mismatch @ 'Bad'"),
        (
            Config::default(),
            r#"[{"name":"mv","default-route":["10.0.0.1"]},{"name":"glob","namespace":"default","default-route":["10.0.0.2"]}]"#,
            "multus does not support ECMP for default-route",
        ),
        (
            Config {
                auxiliary_cni_chain_name: Some("aux".into()),
                ..Config::default()
            },
            "mv",
            "auxiliary chain used but ClusterNetwork must be a path, and it is not a path: cluster",
        ),
    ];
    for (config, ann, want) in cases {
        let err = delegates(&config, pod(&[(selection::NETWORKS_ANNOTATION, ann)]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains(want), "{ann}: {err}");
    }
    assert!(
        delegates(
            &isolated,
            pod(&[(selection::NETWORKS_ANNOTATION, "mv,default/glob")])
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn request_level_errors() {
    let config = Config::default();
    let src = source(pod(&[]));
    let missing = run(&config, &src, "K8S_POD_NAME=web", stdin())
        .await
        .unwrap_err();
    assert!(matches!(
        missing,
        PlanError::MissingArg("K8S_POD_NAMESPACE")
    ));
    let bad = plan(
        &config,
        &src,
        &crate::kubelet::Kubelet::from_config(&config),
        &CniCall {
            config: b"{x".to_vec(),
            ..call(ARGS, stdin())
        },
    )
    .await;
    assert!(matches!(bad, Err(PlanError::DecodeConfig(_))));
    let none = run(&config, &src, ARGS, json!({"cniVersion": "1.0.0"}))
        .await
        .unwrap_err();
    assert!(matches!(none, PlanError::NoClusterNetwork));
    let gone = run(
        &config,
        &src,
        "K8S_POD_NAMESPACE=app;K8S_POD_NAME=nope",
        stdin(),
    )
    .await
    .unwrap();
    assert!(matches!(gone, Planned::PodGone));
    let down = Mem {
        down: true.into(),
        ..source(pod(&[]))
    };
    let err = run(&config, &down, ARGS, stdin()).await.unwrap_err();
    assert!(matches!(
        err,
        PlanError::Source {
            source: SourceError::Unavailable { .. },
            ..
        }
    ));
}

#[tokio::test]
async fn uid_mismatch_unless_static() {
    let config = Config::default();
    let args = "K8S_POD_NAMESPACE=app;K8S_POD_NAME=web;K8S_POD_UID=other";
    let err = run(&config, &source(pod(&[])), args, stdin())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"expected pod UID "other" but got "uid-1" from Kube API"#
    );
    let static_pod = pod(&[(CONFIG_SOURCE_ANNOTATION, "file")]);
    assert!(
        run(&config, &source(static_pod), args, stdin())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn daemon_config_wins_and_stdin_fills_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let list = json!({"name": "filenet", "plugins": [{"type": "ptp"}]});
    std::fs::write(dir.path().join("10-file.conflist"), list.to_string()).unwrap();
    let config = Config {
        cluster_network: Some("filenet".into()),
        conf_dir: dir.path().into(),
        ..Config::default()
    };
    let Planned::Plan(plan) = run(&config, &source(pod(&[])), ARGS, stdin())
        .await
        .unwrap()
    else {
        panic!("planned")
    };
    assert_eq!(summary(&plan.delegates), vec![s("filenet", "eth0", true)]);
    assert_eq!(plan.delegates[0].config.to_value()["cniVersion"], "1.0.0");
    assert_eq!(plan.result_version, "1.0.0");
    let path = dir.path().join("10-file.conflist").display().to_string();
    let inline = json!({"cniVersion": "0.4.0", "delegates": [{"name": "a", "type": "bridge"}, {"name": "b", "type": "ptp"}]});
    let Planned::Plan(plan) = run(&Config::default(), &source(pod(&[])), ARGS, inline)
        .await
        .unwrap()
    else {
        panic!("planned")
    };
    assert_eq!(
        summary(&plan.delegates),
        vec![s("a", "eth0", true), s("b", "net1", false)]
    );
    let by_path = json!({"cniVersion": "0.4.0", "clusterNetwork": path});
    let Planned::Plan(plan) = run(&Config::default(), &source(pod(&[])), ARGS, by_path)
        .await
        .unwrap()
    else {
        panic!("planned")
    };
    assert_eq!(plan.delegates[0].name, "filenet");
}

mod devices;

/// D-13: a default-network selection's requests reach the cluster network as upstream sends
/// them to its master plugin: `MAC=`/`IP=` CNI_ARGS, and only the runtime's `runtimeConfig`.
#[tokio::test]
async fn d13_default_network_requests_reach_the_cluster_network_only_as_cni_args() {
    let ann = r#"[{"name":"alt","ips":["10.1.1.5/24"],"mac":"c2:b0:57:49:47:f1",
        "portMappings":[{"hostPort":1,"containerPort":2}],"bandwidth":{"egressRate":7},
        "deviceID":"0000:03:00.1"}]"#;
    let ds = delegates(
        &Config::default(),
        pod(&[(selection::DEFAULT_NETWORK_ANNOTATION, ann)]),
    )
    .await
    .unwrap();
    assert!(ds[0].is_default);
    assert_eq!(
        Value::Object(ds[0].capability_args.clone()),
        stdin()["runtimeConfig"],
        "only the runtime's runtimeConfig"
    );
    assert!(
        ds[0]
            .cni_args
            .ends_with(";MAC=c2:b0:57:49:47:f1;IP=10.1.1.5/24"),
        "{}",
        ds[0].cni_args
    );
}

/// D-11: lookup errors keep upstream's wrappers (`GetNetworkDelegates:`,
/// `tryLoadK8sPodDefaultNetwork:`) and its NotFound text; the code stays 7.
#[tokio::test]
async fn d11_lookup_errors_keep_upstreams_wrappers() {
    let cases = [
        (
            selection::NETWORKS_ANNOTATION,
            "absent",
            r#"GetNetworkDelegates: failed getting the delegate: getKubernetesDelegate: cannot find a network-attachment-definition (absent) in namespace (app): network-attachment-definitions.k8s.cni.cncf.io "absent" not found"#,
        ),
        (
            selection::DEFAULT_NETWORK_ANNOTATION,
            "absent",
            r#"tryLoadK8sPodDefaultNetwork: failed getting the delegate: getKubernetesDelegate: cannot find a network-attachment-definition (absent) in namespace (kube-system): network-attachment-definitions.k8s.cni.cncf.io "absent" not found"#,
        ),
        (
            selection::DEFAULT_NETWORK_ANNOTATION,
            "a/b/c",
            "tryLoadK8sPodDefaultNetwork: failed to parse CRD object: parsePodNetworkAnnotation: parsePodNetworkObjectName: Invalid network object (failed at '/')",
        ),
    ];
    for (key, ann, want) in cases {
        let err = delegates(&Config::default(), pod(&[(key, ann)]))
            .await
            .unwrap_err();
        assert_eq!((err.to_string().as_str(), err.cni_code()), (want, 7));
    }
}

/// A cluster network file in a temp dir, with `<dir>/<chain>/` holding `plugins` (file name,
/// content) for the auxiliary chain.
fn aux_dir(chain: &str, plugins: &[(&str, &str)]) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("10-cluster.conflist");
    let conflist = json!({"cniVersion": "1.0.0", "name": "cbr0", "plugins": [{"type": "bridge"}]});
    std::fs::write(&cluster, conflist.to_string()).unwrap();
    std::fs::create_dir(dir.path().join(chain)).unwrap();
    for (file, text) in plugins {
        std::fs::write(dir.path().join(chain).join(file), text).unwrap();
    }
    let config = Config {
        cluster_network: Some(cluster.display().to_string()),
        auxiliary_cni_chain_name: Some(chain.into()),
        ..Config::default()
    };
    (dir, config)
}

#[tokio::test]
async fn d4_auxiliary_chain_is_passthru_then_the_chain_dirs_plugins_after_every_network() {
    let (_dir, config) = aux_dir(
        "vendor-cni-chain",
        &[
            (
                "20-sysctl.conf",
                r#"{"type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}}"#,
            ),
            ("10-first.conf", r#"{"type": "firewall"}"#),
            ("30-ignored.conflist", r#"{"type": "nope"}"#),
        ],
    );
    let ds = delegates(&config, pod(&[(selection::NETWORKS_ANNOTATION, "mv")]))
        .await
        .unwrap();
    assert_eq!(
        summary(&ds),
        [
            s("cbr0", "eth0", true),
            s("app/mv", "net1", false),
            s("vendor-cni-chain", "net2", false)
        ]
    );
    let aux = &ds[2];
    // Upstream's exact list: the multus config's cniVersion, passthru first, then *.conf files
    // in file-name order.
    assert_eq!(
        aux.config.to_value(),
        json!({"cniVersion": "1.0.0", "name": "vendor-cni-chain", "plugins": [
            {"type": "passthru", "name": "passthru-cni"},
            {"type": "firewall"},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}}]})
    );
    assert!(!aux.capability_args.contains_key("CNIDeviceInfoFile"));
}

#[tokio::test]
async fn d4_a_chain_that_adds_nothing_or_does_not_load_is_left_out_as_upstream() {
    for plugins in [
        &[][..],
        &[("10-bad.conf", "{not json")][..],
        &[("10-untyped.conf", r#"{"name": "x"}"#)][..],
    ] {
        let (_dir, config) = aux_dir("aux", plugins);
        let ds = delegates(&config, pod(&[])).await.unwrap();
        assert_eq!(summary(&ds), [s("cbr0", "eth0", true)], "{plugins:?}");
    }
    // No directory at all, and a name that cannot be a path component.
    for chain in ["absent", "../etc"] {
        let (_dir, mut config) = aux_dir("aux", &[("10-a.conf", r#"{"type": "tuning"}"#)]);
        config.auxiliary_cni_chain_name = Some(chain.into());
        let ds = delegates(&config, pod(&[])).await.unwrap();
        assert_eq!(ds.len(), 1, "{chain}");
    }
}

#[tokio::test]
async fn d4_chain_name_from_the_multus_config_when_the_daemon_has_none() {
    let (dir, mut config) = aux_dir("aux", &[("10-a.conf", r#"{"type": "tuning"}"#)]);
    config.auxiliary_cni_chain_name = None;
    let mut stdin = stdin();
    stdin["auxiliaryCNIChainName"] = json!("aux");
    stdin["clusterNetwork"] = json!(dir.path().join("10-cluster.conflist"));
    config.cluster_network = None;
    let Planned::Plan(plan) = run(&config, &source(pod(&[])), ARGS, stdin).await.unwrap() else {
        panic!("pod is there")
    };
    assert_eq!(plan.delegates.last().map(|d| d.name.as_str()), Some("aux"));
    let err = run(
        &Config {
            auxiliary_cni_chain_name: Some("aux".into()),
            ..Config::default()
        },
        &source(pod(&[])),
        ARGS,
        json!({"cniVersion": "1.0.0", "name": "m", "type": "multus-shim", "delegates": [{"type": "bridge", "name": "b"}]}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.cni_code(), multus_common::code::INVALID_NETWORK_CONFIG);
    assert!(err.to_string().ends_with("it is not a path: "), "{err}");
}
