//! The kubelet lookup against a stand-in kubelet (real gRPC on a unix socket) and the
//! checkpoint fallback.
use std::sync::atomic::Ordering;

use super::fake::{FakeKubelet, GetMode, pod};
use super::*;

fn pod_info(namespace: &str, name: &str, uid: &str) -> PodInfo {
    PodInfo {
        namespace: namespace.into(),
        name: name.into(),
        uid: uid.into(),
        ..Default::default()
    }
}

fn kubelet(dir: &std::path::Path) -> Kubelet {
    Kubelet::from_config(&Config {
        kubelet_pod_resources_socket: dir.join("kubelet.sock"),
        kubelet_checkpoint_file: dir.join("kubelet_internal_checkpoint"),
        ..Config::default()
    })
}

fn node_pods() -> Vec<multus_proto::podresources::v1::PodResources> {
    vec![
        pod(
            "other",
            "web",
            &[("c", "intel.com/sriov", &["0000:03:09.0"])],
        ),
        pod(
            "ns",
            "web",
            &[
                ("a", "intel.com/sriov", &["0000:03:02.1", "0000:03:02.0"]),
                ("b", "intel.com/sriov", &["0000:03:01.7"]),
                ("b", "example.com/gpu", &["gpu-1"]),
            ],
        ),
    ]
}

#[test]
fn take_hands_out_sorted_ids_once() {
    let mut map = ResourceMap::from_pairs([
        ("r".to_owned(), vec!["b".to_owned(), "a".to_owned()]),
        ("s".to_owned(), vec!["x".to_owned()]),
        ("r".to_owned(), vec!["c".to_owned()]),
    ]);
    assert_eq!(map.devices("r"), ["a", "b", "c"]);
    let taken: Vec<_> = (0..4).map(|_| map.take("r")).collect();
    assert_eq!(
        taken,
        [Some("a".into()), Some("b".into()), Some("c".into()), None]
    );
    assert_eq!(map.take("s").as_deref(), Some("x"));
    assert_eq!(map.take("unknown"), None);
}

#[tokio::test]
async fn podresources_get_list_fallbacks() {
    for mode in [GetMode::Served, GetMode::Unimplemented, GetMode::Disabled] {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeKubelet::start(dir.path(), node_pods(), mode, false);
        let map = kubelet(dir.path())
            .pod_devices(&pod_info("ns", "web", "uid"))
            .await
            .unwrap();
        assert_eq!(
            map.devices("intel.com/sriov"),
            ["0000:03:01.7", "0000:03:02.0", "0000:03:02.1"],
            "{mode:?}"
        );
        assert_eq!(map.devices("example.com/gpu"), ["gpu-1"], "{mode:?}");
        let lists = fake.calls.list.load(Ordering::SeqCst);
        assert_eq!(fake.calls.get.load(Ordering::SeqCst), 1, "{mode:?}");
        assert_eq!(lists, usize::from(mode != GetMode::Served), "{mode:?}");
    }
}

#[tokio::test]
async fn podresources_pod_without_devices_and_list_failure() {
    let dir = tempfile::tempdir().unwrap();
    let _fake = FakeKubelet::start(dir.path(), node_pods(), GetMode::Unimplemented, false);
    let map = kubelet(dir.path())
        .pod_devices(&pod_info("ns", "db", "uid"))
        .await
        .unwrap();
    assert_eq!(map, ResourceMap::default());

    let dir = tempfile::tempdir().unwrap();
    let _fake = FakeKubelet::start(dir.path(), node_pods(), GetMode::Unimplemented, true);
    let err = kubelet(dir.path())
        .pod_devices(&pod_info("ns", "web", "uid"))
        .await
        .unwrap_err();
    assert!(matches!(err, KubeletError::List { .. }), "{err}");
    assert!(err.to_string().contains("lister broken"), "{err}");
}

#[tokio::test]
async fn dead_socket_is_a_connect_error() {
    let dir = tempfile::tempdir().unwrap();
    // A socket file nobody listens on: the kubelet is down, not absent.
    drop(std::os::unix::net::UnixListener::bind(dir.path().join("kubelet.sock")).unwrap());
    let err = kubelet(dir.path())
        .pod_devices(&pod_info("ns", "web", "uid"))
        .await
        .unwrap_err();
    assert!(matches!(err, KubeletError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn no_socket_reads_the_checkpoint_by_uid() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = r#"{"Data":{"PodDeviceEntries":[
        {"PodUID":"uid-1","ContainerName":"c","ResourceName":"intel.com/sriov","DeviceIDs":{"0":["0000:03:02.1","0000:03:02.0"]},"AllocResp":""},
        {"PodUID":"uid-2","ContainerName":"c","ResourceName":"intel.com/sriov","DeviceIDs":{"0":["0000:03:09.0"]},"AllocResp":""}
    ],"RegisteredDevices":{}},"Checksum":7}"#;
    std::fs::write(dir.path().join("kubelet_internal_checkpoint"), checkpoint).unwrap();
    let map = kubelet(dir.path())
        .pod_devices(&pod_info("ns", "web", "uid-1"))
        .await
        .unwrap();
    assert_eq!(
        map.devices("intel.com/sriov"),
        ["0000:03:02.0", "0000:03:02.1"]
    );
}
