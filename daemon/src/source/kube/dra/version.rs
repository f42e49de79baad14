//! Which `resource.k8s.io` version the API server serves (v1 first, then v1beta2, v1beta1: the
//! DRA versions Kubernetes 1.32 to 1.37 serve), and the two things the daemon reads from each
//! version's typed k8s-openapi objects: a claim's allocation results and a slice's devices with
//! their two Multus attributes. Everything else of those objects is dropped right here, so
//! full slices (hundreds of KB each) never stay in memory.
use std::collections::BTreeMap;

use ::kube::api::Api;
use ::kube::core::{ClusterResourceScope, NamespaceResourceScope};
use ::kube::runtime::watcher;
use ::kube::{Client, Resource};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::resource::{v1, v1beta1, v1beta2};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroup;
use serde::de::DeserializeOwned;

use super::super::retry::{Budget, found, with_retries};
use crate::source::SourceError;

/// The API group of ResourceClaims and ResourceSlices.
pub const GROUP: &str = "resource.k8s.io";
/// The slice attribute holding the device ID a delegate gets (upstream's name).
pub const DEVICE_ID_ATTR: &str = "k8s.cni.cncf.io/deviceID";
/// The slice attribute naming the resource a NAD's `resourceName` matches (upstream's name).
pub const RESOURCE_NAME_ATTR: &str = "k8s.cni.cncf.io/resourceName";

/// A served `resource.k8s.io` version the daemon can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V1,
    V1beta2,
    V1beta1,
}

impl ApiVersion {
    /// Most preferred first.
    pub const PREFERENCE: [Self; 3] = [Self::V1, Self::V1beta2, Self::V1beta1];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V1beta2 => "v1beta2",
            Self::V1beta1 => "v1beta1",
        }
    }

    /// The most preferred of the `served` versions, if the daemon reads any of them.
    pub fn choose<'a>(served: impl IntoIterator<Item = &'a str> + Clone) -> Option<Self> {
        Self::PREFERENCE
            .into_iter()
            .find(|v| served.clone().into_iter().any(|s| s == v.as_str()))
    }
}

/// Asks the API server which versions of the group it serves; `None` when it serves none the
/// daemon reads (or not the group at all).
pub async fn discover(client: &Client, budget: Budget) -> Result<Option<ApiVersion>, SourceError> {
    let what = format!("discovering API group {GROUP}");
    let group = found(
        with_retries(&what, budget, || async {
            let req = http::Request::get(format!("/apis/{GROUP}"))
                .body(Vec::new())
                .map_err(::kube::Error::HttpError)?;
            client.request::<APIGroup>(req).await
        })
        .await,
    )?;
    Ok(group.and_then(|g| ApiVersion::choose(g.versions.iter().map(|v| v.version.as_str()))))
}

/// One allocated device of a claim (`status.allocation.devices.results[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocated {
    pub request: String,
    pub driver: String,
    pub pool: String,
    pub device: String,
}

/// What a claim says about its devices: `None` when it has no allocation (or no results).
pub type Allocation = Option<Vec<Allocated>>;

/// The two attributes Multus reads of a device; either may be absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceAttrs {
    pub device_id: Option<String>,
    pub resource_name: Option<String>,
}

/// The devices of one ResourceSlice, keyed by the slice's name in the watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceDevices {
    pub name: String,
    pub driver: String,
    pub pool: String,
    pub devices: Vec<(String, DeviceAttrs)>,
}

/// A slice watch's events, already reduced to [`SliceDevices`].
pub type SliceEvents = BoxStream<'static, Result<watcher::Event<SliceDevices>, watcher::Error>>;

impl ApiVersion {
    /// GETs the claim; `Ok(None)` when it does not exist.
    pub async fn claim(
        self,
        client: &Client,
        budget: Budget,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Allocation>, SourceError> {
        match self {
            Self::V1 => get_claim::<v1::ResourceClaim>(client, budget, namespace, name).await,
            Self::V1beta2 => {
                get_claim::<v1beta2::ResourceClaim>(client, budget, namespace, name).await
            }
            Self::V1beta1 => {
                get_claim::<v1beta1::ResourceClaim>(client, budget, namespace, name).await
            }
        }
    }

    /// Lists and watches the ResourceSlices matching `fields` (with the watcher's back-off
    /// after every error).
    pub fn watch_slices(self, client: Client, fields: &str) -> SliceEvents {
        let config = watcher::Config::default().fields(fields);
        match self {
            Self::V1 => slice_events::<v1::ResourceSlice>(client, config),
            Self::V1beta2 => slice_events::<v1beta2::ResourceSlice>(client, config),
            Self::V1beta1 => slice_events::<v1beta1::ResourceSlice>(client, config),
        }
    }
}

/// What the daemon reads of one version's ResourceClaim.
trait ClaimAllocation {
    fn allocation(self) -> Allocation;
}

/// What the daemon reads of one version's ResourceSlice.
trait SliceContent {
    fn devices(self) -> SliceDevices;
}

async fn get_claim<C>(
    client: &Client,
    budget: Budget,
    namespace: &str,
    name: &str,
) -> Result<Option<Allocation>, SourceError>
where
    C: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + ClaimAllocation,
{
    let api: Api<C> = Api::namespaced(client.clone(), namespace);
    let what = format!("getting ResourceClaim {namespace}/{name}");
    let claim = found(with_retries(&what, budget, || api.get(name)).await)?;
    Ok(claim.map(ClaimAllocation::allocation))
}

fn slice_events<S>(client: Client, config: watcher::Config) -> SliceEvents
where
    S: Resource<Scope = ClusterResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static
        + SliceContent,
{
    use ::kube::runtime::WatchStreamExt;
    watcher(Api::<S>::all(client), config)
        .default_backoff()
        .map_ok(|event| match event {
            watcher::Event::Apply(s) => watcher::Event::Apply(s.devices()),
            watcher::Event::Delete(s) => watcher::Event::Delete(s.devices()),
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitApply(s) => watcher::Event::InitApply(s.devices()),
            watcher::Event::InitDone => watcher::Event::InitDone,
        })
        .boxed()
}

/// A `string` attribute's value (the two Multus attributes are strings; other kinds are ignored,
/// as upstream does).
macro_rules! attrs_of {
    ($map:expr) => {{
        let map = $map.unwrap_or_default();
        let string = |key: &str| map.get(key).and_then(|a| a.string.clone());
        DeviceAttrs {
            device_id: string(DEVICE_ID_ATTR),
            resource_name: string(RESOURCE_NAME_ATTR),
        }
    }};
}

/// v1 and v1beta2 have the same shape (attributes directly on the device); v1beta1 nests them
/// in `basic`.
macro_rules! dra_version {
    ($v:ident, |$d:ident| $attributes:expr) => {
        impl ClaimAllocation for $v::ResourceClaim {
            fn allocation(self) -> Allocation {
                let results = self.status?.allocation?.devices?.results?;
                Some(
                    results
                        .into_iter()
                        .map(|r| Allocated {
                            request: r.request,
                            driver: r.driver,
                            pool: r.pool,
                            device: r.device,
                        })
                        .collect(),
                )
            }
        }

        impl SliceContent for $v::ResourceSlice {
            fn devices(self) -> SliceDevices {
                let devices = self.spec.devices.unwrap_or_default();
                SliceDevices {
                    name: self.metadata.name.unwrap_or_default(),
                    driver: self.spec.driver,
                    pool: self.spec.pool.name,
                    devices: devices
                        .into_iter()
                        .map(|$d| {
                            let attrs: Option<BTreeMap<String, $v::DeviceAttribute>> = $attributes;
                            ($d.name, attrs_of!(attrs))
                        })
                        .collect(),
                }
            }
        }
    };
}

dra_version!(v1, |d| d.attributes);
dra_version!(v1beta2, |d| d.attributes);
dra_version!(v1beta1, |d| d.basic.and_then(|b| b.attributes));

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn the_most_preferred_served_version_is_chosen() {
        assert_eq!(ApiVersion::choose(["v1beta1", "v1"]), Some(ApiVersion::V1));
        assert_eq!(
            ApiVersion::choose(["v1beta1", "v1beta2"]),
            Some(ApiVersion::V1beta2)
        );
        assert_eq!(ApiVersion::choose(["v1beta1"]), Some(ApiVersion::V1beta1));
        assert_eq!(ApiVersion::choose(["v1alpha3"]), None);
    }

    fn claim_json(api_version: &str, allocation: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": format!("resource.k8s.io/{api_version}"), "kind": "ResourceClaim",
            "metadata": {"name": "web-nic", "namespace": "default"},
            "spec": {"devices": {"requests": []}},
            "status": allocation
        })
    }

    #[test]
    fn a_claims_results_are_read_in_every_version() {
        let status = json!({"allocation": {"devices": {"results": [
            {"request": "nic", "driver": "d.example", "pool": "node-1", "device": "vf-0"}
        ]}}});
        let want = Some(vec![Allocated {
            request: "nic".into(),
            driver: "d.example".into(),
            pool: "node-1".into(),
            device: "vf-0".into(),
        }]);
        let v1: v1::ResourceClaim =
            serde_json::from_value(claim_json("v1", status.clone())).unwrap();
        let v1beta2: v1beta2::ResourceClaim =
            serde_json::from_value(claim_json("v1beta2", status.clone())).unwrap();
        let v1beta1: v1beta1::ResourceClaim =
            serde_json::from_value(claim_json("v1beta1", status)).unwrap();
        assert_eq!(v1.allocation(), want);
        assert_eq!(v1beta2.allocation(), want);
        assert_eq!(v1beta1.allocation(), want);
        let pending: v1::ResourceClaim =
            serde_json::from_value(claim_json("v1", json!({}))).unwrap();
        assert_eq!(pending.allocation(), None);
    }

    fn slice_json(api_version: &str, device: serde_json::Value) -> serde_json::Value {
        json!({
            "apiVersion": format!("resource.k8s.io/{api_version}"), "kind": "ResourceSlice",
            "metadata": {"name": "node-1-d.example-abcde"},
            "spec": {"driver": "d.example", "nodeName": "node-1",
                "pool": {"name": "node-1", "generation": 1, "resourceSliceCount": 1},
                "devices": [device, {"name": "gpu-0"}]}
        })
    }

    #[test]
    fn a_slices_multus_attributes_are_read_in_every_version() {
        let attributes = json!({
            DEVICE_ID_ATTR: {"string": "0000:03:00.1"},
            RESOURCE_NAME_ATTR: {"string": "intel.com/sriov"},
            "dra.net/numaNode": {"int": 0}
        });
        let v1: v1::ResourceSlice = serde_json::from_value(slice_json(
            "v1",
            json!({"name": "vf-0", "attributes": attributes.clone()}),
        ))
        .unwrap();
        let v1beta1: v1beta1::ResourceSlice = serde_json::from_value(slice_json(
            "v1beta1",
            json!({"name": "vf-0", "basic": {"attributes": attributes}}),
        ))
        .unwrap();
        let want = SliceDevices {
            name: "node-1-d.example-abcde".into(),
            driver: "d.example".into(),
            pool: "node-1".into(),
            devices: vec![
                (
                    "vf-0".into(),
                    DeviceAttrs {
                        device_id: Some("0000:03:00.1".into()),
                        resource_name: Some("intel.com/sriov".into()),
                    },
                ),
                ("gpu-0".into(), DeviceAttrs::default()),
            ],
        };
        assert_eq!(v1.devices(), want);
        assert_eq!(v1beta1.devices(), want);
    }
}
