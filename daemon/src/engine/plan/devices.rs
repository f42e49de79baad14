//! Devices for NADs annotated `k8s.v1.cni.cncf.io/resourceName` (upstream §4.6): the pod's
//! device IDs are looked up once per ADD, each such network takes the next sorted ID of its
//! resource, and the ID goes into its config (`deviceID`, `pciBusID`) and capability args
//! (`deviceID`, `CNIDeviceInfoFile`). The device plugin's device-info file is copied to the
//! delegate's just before the ADD runs (`copy_device_info`).
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::PlanError;
use super::networks::Pending;
use crate::engine::netconf::{NetConf, capability};
use crate::engine::runtime;
use crate::kubelet::DeviceSource;
use crate::source::PodInfo;

/// A device plugin's device-info file to copy to where the delegate's plugin looks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfoCopy {
    pub from: PathBuf,
    pub to: PathBuf,
}

/// Gives each network with a resource the next device of it. `devices` is only asked when
/// some network has a resource. A resource without a device left gives none (upstream), so a
/// `deviceID` of the selection, if any, applies.
pub(super) async fn assign(
    devices: &dyn DeviceSource,
    pod: &PodInfo,
    pending: &mut [Pending],
) -> Result<(), PlanError> {
    if pending.iter().all(|p| p.resource.is_none()) {
        return Ok(());
    }
    let mut map = devices
        .pod_devices(pod)
        .await
        .map_err(|source| PlanError::Devices { source })?;
    for p in pending.iter_mut() {
        let Some(resource) = &p.resource else {
            continue;
        };
        p.device_id = map.take(resource);
        match &p.device_id {
            Some(id) => {
                tracing::info!(network = %p.name, resource = %resource, device.id = %id, "device assigned");
            }
            None => {
                tracing::warn!(network = %p.name, resource = %resource, "no device of the resource left for this network");
            }
        }
    }
    Ok(())
}

/// Applies `p`'s device to its config and capability args; the device-info copy to make, if
/// the network has a device.
pub(super) fn apply(
    p: &mut Pending,
    caps: &mut Map<String, Value>,
    device_info_dir: &Path,
    container_id: &str,
    ifname: &str,
) -> Option<DeviceInfoCopy> {
    let id = p.device_id.clone()?;
    inject(&mut p.config, &id);
    let file = runtime::device_info_file(device_info_dir, &p.name, container_id, ifname);
    caps.insert(capability::DEVICE_ID.into(), id.clone().into());
    caps.insert(capability::DEVICE_INFO_FILE.into(), file.clone().into());
    let resource = p.resource.as_deref()?;
    Some(DeviceInfoCopy {
        from: dp_file(device_info_dir, resource, &id),
        to: file.into(),
    })
}

/// Upstream's `deviceID` and `pciBusID` in the config, in every plugin of a conflist.
fn inject(config: &mut NetConf, id: &str) {
    for plugin in config.plugins_mut() {
        let obj = plugin.rest_mut();
        obj.insert(capability::DEVICE_ID.into(), id.into());
        obj.insert("pciBusID".into(), id.into());
    }
}

/// `<deviceInfoDir>/dp/<resource>-<deviceID>-device.json`, '/' → '-' in both (upstream's name).
fn dp_file(device_info_dir: &Path, resource: &str, id: &str) -> PathBuf {
    let name = format!(
        "{}-{}-device.json",
        resource.replace('/', "-"),
        id.replace('/', "-")
    );
    device_info_dir.join("dp").join(name)
}

/// Copies each device plugin's file (read-only, 0444). Failures are only logged, as upstream:
/// many device plugins write no device-info file, and the plugin works without it.
pub fn copy_device_info(copies: &[DeviceInfoCopy]) {
    for c in copies {
        match copy_one(c) {
            Ok(()) => {
                tracing::debug!(from = %c.from.display(), to = %c.to.display(), "device-info copied")
            }
            Err(e) => {
                tracing::debug!(from = %c.from.display(), error = %e, "device-info not copied")
            }
        }
    }
}

fn copy_one(c: &DeviceInfoCopy) -> io::Result<()> {
    let bytes = std::fs::read(&c.from)?;
    if let Some(dir) = c.to.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A leftover from an earlier sandbox with the same container id is replaced.
    match std::fs::remove_file(&c.to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::write(&c.to, bytes)?;
    std::fs::set_permissions(&c.to, std::fs::Permissions::from_mode(0o444))
}
