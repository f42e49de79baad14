//! D-11: a failed ADD reads as upstream's (`error configuring pod [ns/pod] networking: `, then
//! its `cmdErr` step, then our detail), and a missing NAD is upstream's Warning `NoNetworkFound`
//! event. D-12: a pod replaced under its name fails the ADD with upstream's error (and is rolled
//! back), a DEL of a replaced or vanished pod still tears everything down, and an ADD without
//! any network-status entry writes none.
use super::*;
use crate::source::EventType;

const PREFIX: &str = "error configuring pod [app/web] networking: ";

fn with_networks(annotation: &str) -> Mem {
    let mut m = mem();
    m.pods[0]
        .annotations
        .insert("k8s.v1.cni.cncf.io/networks".into(), annotation.into());
    m
}

async fn add_error(f: &Fixture, args: &str) -> EngineError {
    let mut add = call(Command::Add, "c1");
    add.args = CniArgs::parse(args).unwrap();
    f.engine.add(add).await.unwrap_err()
}

const ARGS: &str = "K8S_POD_NAMESPACE=app;K8S_POD_NAME=web;K8S_POD_UID=uid-1";

#[tokio::test]
async fn d11_a_missing_nad_is_upstreams_full_error_and_a_no_network_found_warning() {
    let f = fixture(with_networks("sec1,absent"), |_| {});
    let err = add_error(&f, ARGS).await;
    assert_eq!(
        err.to_string(),
        format!(
            "{PREFIX}Multus: [app/web/uid-1]: error loading k8s delegates k8s args: TryLoadPodDelegates: error in getting k8s network for pod: GetNetworkDelegates: failed getting the delegate: getKubernetesDelegate: cannot find a network-attachment-definition (absent) in namespace (app): network-attachment-definitions.k8s.cni.cncf.io \"absent\" not found"
        )
    );
    assert_eq!(err.cni_code(), 7);
    assert!(order(&f).is_empty(), "nothing ran");
    assert_eq!(
        *f.source.event_types.lock().unwrap(),
        [(EventType::Warning, "NoNetworkFound".to_owned())]
    );
    assert_eq!(
        f.source.events.lock().unwrap()[0].1,
        "cannot find a network-attachment-definition (absent) in namespace (app): network-attachment-definitions.k8s.cni.cncf.io \"absent\" not found",
        "upstream's event message"
    );
}

/// A change of the fixture's config.
type Tweak = Box<dyn FnOnce(&mut Config)>;

#[tokio::test]
async fn d11_each_add_step_has_upstreams_cmd_err_prefix() {
    let ready = tempfile::tempdir().unwrap();
    let missing_file = ready.path().join("ready");
    let cases: Vec<(Mem, Tweak, &str, String)> = vec![
        (
            mem(),
            Box::new(|_| {}),
            "K8S_POD_NAMESPACE=app;K8S_POD_NAME=web;K8S_POD_UID=other",
            format!(
                "{PREFIX}Multus: [app/web/other]: expected pod UID \"other\" but got \"uid-1\" from Kube API"
            ),
        ),
        (
            mem(),
            Box::new(|c| c.delegates.clear()),
            ARGS,
            format!(
                "{PREFIX}Multus: error loading netconf: LoadNetConf: at least one delegate/clusterNetwork must be specified"
            ),
        ),
        (
            {
                let mut m = mem();
                m.pods[0].annotations.insert(
                    "v1.multus-cni.io/default-network".into(),
                    "sec1,sec2".into(),
                );
                m
            },
            Box::new(|_| {}),
            ARGS,
            format!(
                "{PREFIX}Multus: [app/web/uid-1]: error loading k8s delegates k8s args: TryLoadPodDelegates: error in loading K8s cluster default network from pod annotation: tryLoadK8sPodDefaultNetwork: more than one default network is specified: sec1,sec2"
            ),
        ),
        (
            with_networks("sec1@abcdefghijklmnop"),
            Box::new(|_| {}),
            ARGS,
            format!(
                "{PREFIX}Multus: [app/web/uid-1]: error loading k8s delegates k8s args: parsePodNetworkAnnotation: parsePodNetworkObjectName: Failed to parse interface name: must be less than 15 chars and not contain '/' or spaces. interface name 'abcdefghijklmnop'"
            ),
        ),
        (
            mem(),
            Box::new({
                let path = missing_file.clone();
                move |c: &mut Config| c.readiness_indicator_file = Some(path)
            }),
            ARGS,
            format!(
                "{PREFIX}Multus: [app/web/uid-1]: have you checked that your default network is ready? still waiting for readinessindicatorfile @ {p}. pollimmediate error: readiness indicator file {p} does not exist yet",
                p = missing_file.display()
            ),
        ),
    ];
    for (source, tweak, args, want) in cases {
        let f = fixture(source, tweak);
        let err = add_error(&f, args).await;
        assert_eq!(err.to_string(), want);
        assert!(order(&f).is_empty(), "nothing ran for: {want}");
    }
}

#[tokio::test]
async fn d11_a_missing_cluster_network_names_upstreams_steps_and_keeps_our_cause() {
    let f = fixture(mem(), |c| {
        c.delegates.clear();
        c.cluster_network = Some("nope".into());
    });
    let text = add_error(&f, ARGS).await.to_string();
    assert!(
        text.starts_with(&format!(
            "{PREFIX}Multus: [app/web/uid-1]: failed to get clusterNetwork/defaultNetworks: GetDefaultNetworks: failed to get clusterNetwork nope in namespace kube-system: "
        )),
        "{text}"
    );
}

#[tokio::test]
async fn d11_without_the_pods_name_nothing_is_wrapped_as_upstream() {
    let f = fixture(mem(), |_| {});
    let err = add_error(&f, "K8S_POD_NAMESPACE=app").await;
    assert_eq!(err.to_string(), "missing K8S_POD_NAME");
    assert_eq!(err.cni_code(), 4);
}

#[tokio::test]
async fn d12_a_pod_replaced_during_the_add_fails_it_with_upstreams_error_and_rolls_back() {
    let f = fixture(
        Mem {
            replaced_by: Some("uid-2".into()),
            ..mem()
        },
        |_| {},
    );
    let err = add_error(&f, ARGS).await;
    assert_eq!(
        err.to_string(),
        format!(
            "{PREFIX}Multus: [app/web/uid-1]: error setting the networks status: pod app/web: setting network-status: SetNetworkStatus: expected pod app/web UID \"uid-1\" but got \"uid-2\" from Kube API"
        )
    );
    assert_eq!(err.cni_code(), 7);
    assert_eq!(
        dels(&f),
        ["DEL third net2", "DEL second net1", "DEL first eth0"]
    );
    assert!(record(&f, "c1").is_none());
}

/// An engine over `f`'s config and cache with another cluster source.
fn engine_over(f: &Fixture, source: Mem) -> Engine {
    let config = f.engine.config.clone();
    let devices = Arc::new(crate::kubelet::Kubelet::from_config(&config));
    Engine::new(config, Arc::new(source), devices).unwrap()
}

#[tokio::test]
async fn d12_del_of_a_replaced_or_vanished_pod_still_tears_everything_down() {
    let mut replaced = mem();
    replaced.pods[0].uid = "uid-2".into();
    let vanished = Mem {
        pods: Vec::new(),
        ..mem()
    };
    for (what, later) in [("replaced", replaced), ("vanished", vanished)] {
        let f = fixture(mem(), |_| {});
        f.engine.add(call(Command::Add, "c1")).await.unwrap();
        engine_over(&f, later)
            .del(call(Command::Del, "c1"))
            .await
            .unwrap();
        assert_eq!(
            dels(&f),
            ["DEL third net2", "DEL second net1", "DEL first eth0"],
            "{what}"
        );
        assert!(record(&f, "c1").is_none(), "{what}");
    }
}

#[tokio::test]
async fn d12_an_add_without_any_network_status_entry_writes_none() {
    let f = fixture(mem(), |_| {});
    for p in ["first", "second", "third"] {
        f.plugins.add(
            p,
            r#"[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.0.0"}'; true"#,
        );
    }
    f.engine.add(call(Command::Add, "c1")).await.unwrap();
    assert!(f.source.statuses.lock().unwrap().is_empty());
    let f = fixture(mem(), |_| {});
    f.engine.add(call(Command::Add, "c1")).await.unwrap();
    assert_eq!(
        f.source.statuses.lock().unwrap().len(),
        1,
        "entries: written"
    );
}
