//! A NAD with a device resource through ADD and DEL over a stand-in kubelet and fake plugins:
//! the device plugin's device-info file is in place when the plugin runs, its content reaches
//! network-status, and DEL removes it. (No real device: a real SR-IOV or host-device plugin
//! needs PCI hardware this machine does not have.)
use super::*;
use crate::kubelet::fake::{FakeKubelet, GetMode, pod as kubelet_pod};

const DEVICE: &str = "0000:03:02.1";
const DEVICE_INFO: &str =
    r#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.1"}}"#;

fn mem_with_resource() -> Mem {
    let mut m = mem();
    let sec1 = &mut m.nads[0];
    sec1.annotations.insert(
        "k8s.v1.cni.cncf.io/resourceName".into(),
        "intel.com/sriov".into(),
    );
    sec1.config = json!({"cniVersion": "1.0.0", "name": "sec1", "type": "second",
        "capabilities": {"deviceID": true, "CNIDeviceInfoFile": true}})
    .to_string();
    m
}

#[tokio::test]
async fn device_info_is_copied_reported_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let pods = vec![kubelet_pod(
        "app",
        "web",
        &[("c", "intel.com/sriov", &[DEVICE])],
    )];
    let _kubelet = FakeKubelet::start(dir.path(), pods, GetMode::Served, false);
    let devinfo = dir.path().join("devinfo");
    let f = fixture(mem_with_resource(), |c| {
        c.kubelet_pod_resources_socket = dir.path().join("kubelet.sock");
        c.device_info_dir = devinfo.clone();
    });
    let dp = devinfo.join(format!("dp/intel.com-sriov-{DEVICE}-device.json"));
    std::fs::create_dir_all(dp.parent().unwrap()).unwrap();
    std::fs::write(&dp, DEVICE_INFO).unwrap();
    let cni_file = devinfo.join("cni/app-sec1-c1_net1");
    // The plugin fails unless the device-info file is already there when it runs.
    let body = format!(
        "[ \"$CNI_COMMAND\" = ADD ] && {{ test -f {} || exit 9; }}\n{ECHO_RESULT}",
        cni_file.display()
    );
    f.plugins.add("second", &body);

    f.engine.add(call(Command::Add, "c1")).await.unwrap();
    let sent = f.plugins.calls().into_iter().find(|c| c.plugin == "second");
    let stdin = sent.unwrap().stdin;
    assert_eq!(stdin["deviceID"], DEVICE);
    assert_eq!(stdin["pciBusID"], DEVICE);
    assert_eq!(stdin["runtimeConfig"]["deviceID"], DEVICE);
    assert_eq!(
        stdin["runtimeConfig"]["CNIDeviceInfoFile"],
        cni_file.to_str().unwrap()
    );
    let statuses = f.source.statuses.lock().unwrap().clone();
    let status: Value = serde_json::from_str(&statuses[0]).unwrap();
    let want: Value = serde_json::from_str(DEVICE_INFO).unwrap();
    assert_eq!(status[1]["name"], "app/sec1");
    assert_eq!(status[1]["device-info"], want);

    f.engine.del(call(Command::Del, "c1")).await.unwrap();
    assert!(!cni_file.exists(), "DEL removes the device-info file");
    assert!(dp.exists(), "the device plugin's own file stays");
}
