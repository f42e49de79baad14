//! Devices of NADs annotated `k8s.v1.cni.cncf.io/resourceName`, through a stand-in kubelet.
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::kubelet::fake::{FakeKubelet, GetMode, MemoryDevices, pod as kubelet_pod};

const SRIOV: &str = "intel.com/sriov";

fn sriov_nad(name: &str, config: Value) -> NadInfo {
    NadInfo {
        namespace: "app".into(),
        name: name.into(),
        config: config.to_string(),
        annotations: [(RESOURCE_NAME_ANNOTATION.to_string(), SRIOV.to_string())].into(),
    }
}

/// The pod with `networks`, its NADs (two on the SR-IOV resource, one without a resource).
fn src(networks: &str) -> Mem {
    let mut m = source(pod(&[(selection::NETWORKS_ANNOTATION, networks)]));
    m.nads.push(sriov_nad(
        "sriov-a",
        json!({"cniVersion": "0.4.0", "type": "sriov", "capabilities": {"deviceID": true}}),
    ));
    m.nads.push(sriov_nad(
        "sriov-b",
        json!({"cniVersion": "0.4.0", "name": "b", "plugins": [{"type": "sriov"}, {"type": "tuning"}]}),
    ));
    m
}

fn config_in(dir: &std::path::Path) -> Config {
    Config {
        kubelet_pod_resources_socket: dir.join("kubelet.sock"),
        kubelet_checkpoint_file: dir.join("kubelet_internal_checkpoint"),
        device_info_dir: dir.join("devinfo"),
        ..Config::default()
    }
}

async fn planned(config: &Config, m: &Mem) -> Result<Plan, PlanError> {
    match run(config, m, ARGS, stdin()).await? {
        Planned::Plan(p) => Ok(p),
        Planned::PodGone => panic!("pod is there"),
    }
}

fn kubelet_pods() -> Vec<multus_proto::podresources::v1::PodResources> {
    vec![kubelet_pod(
        "app",
        "web",
        &[("c", SRIOV, &["0000:03:02.3", "0000:03:02.1"])],
    )]
}

#[tokio::test]
async fn same_resource_networks_get_distinct_devices_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let _kubelet = FakeKubelet::start(dir.path(), kubelet_pods(), GetMode::Served, false);
    let config = config_in(dir.path());
    let p = planned(&config, &src("sriov-a, mv, sriov-b"))
        .await
        .unwrap();
    let ds = &p.delegates;
    let devinfo = |d: &Delegate| {
        let file = format!("app-{}-cid_{}", d.name.trim_start_matches("app/"), d.ifname);
        dir.path().join("devinfo/cni").join(file)
    };

    let (a, mv, b) = (&ds[1], &ds[2], &ds[3]);
    assert_eq!(a.config.to_value()["deviceID"], "0000:03:02.1");
    assert_eq!(a.config.to_value()["pciBusID"], "0000:03:02.1");
    assert_eq!(a.capability_args["deviceID"], "0000:03:02.1");
    assert_eq!(
        a.capability_args["CNIDeviceInfoFile"],
        devinfo(a).to_str().unwrap()
    );
    for plugin in b.config.to_value()["plugins"].as_array().unwrap() {
        assert_eq!(plugin["deviceID"], "0000:03:02.3");
        assert_eq!(plugin["pciBusID"], "0000:03:02.3");
    }
    assert_eq!(b.capability_args["deviceID"], "0000:03:02.3");
    assert!(mv.config.to_value().get("deviceID").is_none());
    assert!(!mv.capability_args.contains_key("deviceID"));
    assert!(!mv.capability_args.contains_key("CNIDeviceInfoFile"));

    let dp = |id: &str| {
        let file = format!("intel.com-sriov-{id}-device.json");
        dir.path().join("devinfo/dp").join(file)
    };
    let want = vec![
        DeviceInfoCopy {
            from: dp("0000:03:02.1"),
            to: devinfo(a),
        },
        DeviceInfoCopy {
            from: dp("0000:03:02.3"),
            to: devinfo(b),
        },
    ];
    assert_eq!(p.device_info, want);
}

#[tokio::test]
async fn kubelet_device_wins_and_an_exhausted_resource_keeps_the_selection() {
    let dir = tempfile::tempdir().unwrap();
    let pods = vec![kubelet_pod(
        "app",
        "web",
        &[("c", SRIOV, &["0000:03:02.1"])],
    )];
    let _kubelet = FakeKubelet::start(dir.path(), pods, GetMode::Unimplemented, false);
    let networks = r#"[{"name": "sriov-a", "deviceID": "0000:09:00.0"},
                       {"name": "sriov-b", "interface": "sb0", "deviceID": "0000:09:00.1"}]"#;
    let p = planned(&config_in(dir.path()), &src(networks))
        .await
        .unwrap();
    let (a, b) = (&p.delegates[1], &p.delegates[2]);
    assert_eq!(a.capability_args["deviceID"], "0000:03:02.1");
    assert_eq!(a.config.to_value()["deviceID"], "0000:03:02.1");
    // No device left: upstream passes the selection's deviceID as runtimeConfig only.
    assert_eq!(b.capability_args["deviceID"], "0000:09:00.1");
    assert!(b.config.to_value()["plugins"][0].get("deviceID").is_none());
    assert_eq!(p.device_info.len(), 1);
}

#[tokio::test]
async fn checkpoint_fallback_and_lookup_failure() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path());
    // Neither socket nor checkpoint: the ADD fails before anything runs...
    let err = planned(&config, &src("sriov-a")).await.unwrap_err();
    assert!(matches!(err, PlanError::Devices { .. }), "{err}");
    assert!(
        err.to_string().contains("kubelet_internal_checkpoint"),
        "{err}"
    );
    // ...but pods without a resource never ask the kubelet.
    assert!(planned(&config, &src("mv")).await.is_ok());

    let checkpoint = json!({"Data": {"PodDeviceEntries": [
        {"PodUID": "uid-1", "ContainerName": "c", "ResourceName": SRIOV,
         "DeviceIDs": {"0": ["0000:03:02.7"]}, "AllocResp": ""},
        {"PodUID": "uid-other", "ContainerName": "c", "ResourceName": SRIOV,
         "DeviceIDs": {"0": ["0000:03:02.0"]}, "AllocResp": ""}
    ]}, "Checksum": 1});
    std::fs::write(&config.kubelet_checkpoint_file, checkpoint.to_string()).unwrap();
    let p = planned(&config, &src("sriov-a")).await.unwrap();
    assert_eq!(p.delegates[1].capability_args["deviceID"], "0000:03:02.7");
}

#[tokio::test]
async fn an_injected_device_source_is_asked_only_for_resource_networks() {
    let devices = MemoryDevices::default().with("uid-1", SRIOV, &["0000:03:02.5", "0000:03:02.4"]);
    let config = config_in(tempfile::tempdir().unwrap().path());
    let plan_with = |networks: &'static str| {
        let (config, devices) = (&config, &devices);
        async move {
            let m = src(networks);
            plan(config, &m, devices, &call(ARGS, stdin())).await
        }
    };
    let Planned::Plan(p) = plan_with("mv").await.unwrap() else {
        panic!("pod is there")
    };
    assert_eq!(p.delegates.len(), 2);
    assert_eq!(devices.lookups.load(std::sync::atomic::Ordering::SeqCst), 0);
    let Planned::Plan(p) = plan_with("sriov-a, sriov-b").await.unwrap() else {
        panic!("pod is there")
    };
    let ids: Vec<_> = p.delegates[1..]
        .iter()
        .map(|d| d.capability_args["deviceID"].clone())
        .collect();
    assert_eq!(ids, ["0000:03:02.4", "0000:03:02.5"]);
    assert_eq!(devices.lookups.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn device_info_copy_is_read_only_and_best_effort() {
    let dir = tempfile::tempdir().unwrap();
    let dp = dir
        .path()
        .join("dp/intel.com-sriov-0000:03:02.1-device.json");
    std::fs::create_dir_all(dp.parent().unwrap()).unwrap();
    std::fs::write(
        &dp,
        br#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.1"}}"#,
    )
    .unwrap();
    let to = dir.path().join("cni/app-sriov-a-cid_net1");
    let missing_to = dir.path().join("cni/app-sriov-b-cid_net2");
    let copies = [
        DeviceInfoCopy {
            from: dir.path().join("dp/absent-device.json"),
            to: missing_to.clone(),
        },
        DeviceInfoCopy {
            from: dp.clone(),
            to: to.clone(),
        },
    ];
    copy_device_info(&copies);
    // Twice: a leftover read-only file from an earlier sandbox is replaced.
    copy_device_info(&copies);
    assert_eq!(std::fs::read(&to).unwrap(), std::fs::read(&dp).unwrap());
    let mode = std::fs::metadata(&to).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444);
    assert!(!missing_to.exists());
}
