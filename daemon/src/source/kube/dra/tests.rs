#![allow(clippy::unwrap_used)]
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use ::kube::runtime::watcher;
use futures::StreamExt;

use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use super::api::{MAX_RETRY, retry_pause};
use super::*;
use crate::kubelet::fake::MemoryDevices;

const SRIOV: &str = "intel.com/sriov_netdevice";
const DRIVER: &str = "sriovnetwork.k8snetworkplumbingwg.io";

fn pod() -> PodInfo {
    PodInfo {
        namespace: "default".into(),
        name: "web".into(),
        uid: "uid-web".into(),
        ..PodInfo::default()
    }
}

fn attrs(id: Option<&str>, resource: Option<&str>) -> DeviceAttrs {
    DeviceAttrs {
        device_id: id.map(str::to_owned),
        resource_name: resource.map(str::to_owned),
    }
}

fn slice(name: &str, pool: &str, devices: &[(&str, DeviceAttrs)]) -> SliceDevices {
    SliceDevices {
        name: name.into(),
        driver: DRIVER.into(),
        pool: pool.into(),
        devices: devices
            .iter()
            .map(|(n, a)| ((*n).to_owned(), a.clone()))
            .collect(),
    }
}

fn allocated(request: &str, pool: &str, device: &str) -> Allocated {
    Allocated {
        request: request.into(),
        driver: DRIVER.into(),
        pool: pool.into(),
        device: device.into(),
    }
}

/// Fixed answers, and a count of each call.
#[derive(Default)]
struct FakeApi {
    claims: Option<PodClaims>,
    allocations: HashMap<String, version::Allocation>,
    slices: Vec<SliceDevices>,
    /// The watch fails before its first listing.
    watch_fails: bool,
    /// Claim GETs never answer.
    hang: bool,
    versions: AtomicUsize,
    claim_gets: AtomicUsize,
    watches: AtomicUsize,
}

#[async_trait]
impl DraApi for FakeApi {
    async fn pod_claims(&self, _: &PodInfo) -> Result<Option<PodClaims>, DraError> {
        Ok(self.claims.clone())
    }

    async fn version(&self, _: &PodInfo) -> Result<ApiVersion, DraError> {
        self.versions.fetch_add(1, Ordering::SeqCst);
        Ok(ApiVersion::V1)
    }

    async fn claim(
        &self,
        _: ApiVersion,
        _: &str,
        name: &str,
    ) -> Result<Option<version::Allocation>, DraError> {
        self.claim_gets.fetch_add(1, Ordering::SeqCst);
        if self.hang {
            futures::future::pending::<()>().await;
        }
        Ok(self.allocations.get(name).cloned())
    }

    fn watch_slices(&self, _: ApiVersion, node: &str) -> NodeSlices {
        self.watches.fetch_add(1, Ordering::SeqCst);
        let events: Vec<Result<watcher::Event<SliceDevices>, watcher::Error>> = if self.watch_fails
        {
            vec![Err(watcher::Error::NoResourceVersion)]
        } else {
            let mut v = vec![Ok(watcher::Event::Init)];
            v.extend(
                self.slices
                    .iter()
                    .cloned()
                    .map(|s| Ok(watcher::Event::InitApply(s))),
            );
            v.push(Ok(watcher::Event::InitDone));
            v
        };
        let events = std::sync::Mutex::new(Some(events));
        NodeSlices::from_events(
            node,
            Box::new(move || {
                let once = events.lock().unwrap().take().unwrap_or_default();
                futures::stream::iter(once)
                    .chain(futures::stream::pending())
                    .boxed()
            }),
        )
    }
}

fn claims(names: &[&str]) -> Option<PodClaims> {
    Some(PodClaims {
        node: Some("node-1".into()),
        claims: names.iter().map(|s| (*s).to_owned()).collect(),
        extended: None,
    })
}

/// A node with two VFs published for CNI and a GPU that is not.
fn node_slices() -> Vec<SliceDevices> {
    vec![
        slice(
            "node-1-sriov",
            "node-1",
            &[
                ("vf-1", attrs(Some("0000:03:00.2"), Some(SRIOV))),
                ("vf-0", attrs(Some("0000:03:00.1"), Some(SRIOV))),
            ],
        ),
        slice("node-1-gpu", "node-1", &[("gpu-0", attrs(None, None))]),
    ]
}

fn new_dra(api: FakeApi) -> (Dra, Arc<FakeApi>) {
    let api = Arc::new(api);
    (Dra::new(api.clone(), None), api)
}

#[tokio::test]
async fn allocated_devices_map_to_their_resource_name_and_the_rest_is_skipped() {
    let (dra, _) = new_dra(FakeApi {
        claims: claims(&["web-nic-x7k2"]),
        allocations: HashMap::from([(
            "web-nic-x7k2".to_owned(),
            Some(vec![
                allocated("nic", "node-1", "vf-1"),
                allocated("gpu", "node-1", "gpu-0"),
                allocated("nic", "node-1", "vf-gone"),
            ]),
        )]),
        slices: node_slices(),
        ..FakeApi::default()
    });
    let pairs = dra.pod_devices(&pod()).await.unwrap();
    assert_eq!(
        pairs,
        vec![(SRIOV.to_owned(), vec!["0000:03:00.2".to_owned()])]
    );
}

#[tokio::test]
async fn a_claim_without_allocation_or_missing_fails_in_upstreams_words() {
    let (dra, _) = new_dra(FakeApi {
        claims: claims(&["pending"]),
        allocations: HashMap::from([("pending".to_owned(), None)]),
        slices: node_slices(),
        ..FakeApi::default()
    });
    let err = dra.pod_devices(&pod()).await.unwrap_err();
    assert_eq!(err.to_string(), "claim pending has no device allocation");

    let (dra, _) = dra_with_claims(&["nowhere"]);
    let err = dra.pod_devices(&pod()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "resource claim default/nowhere not found",
        "{err:?}"
    );
}

fn dra_with_claims(names: &[&str]) -> (Dra, Arc<FakeApi>) {
    new_dra(FakeApi {
        claims: claims(names),
        slices: node_slices(),
        ..FakeApi::default()
    })
}

/// Claim `c` of the pod, allocated `vf-0` of the node's pool (SR-IOV, `0000:03:00.1`).
fn one_allocated_vf() -> (Dra, Arc<FakeApi>) {
    new_dra(FakeApi {
        claims: claims(&["c"]),
        allocations: HashMap::from([(
            "c".to_owned(),
            Some(vec![allocated("nic", "node-1", "vf-0")]),
        )]),
        slices: node_slices(),
        ..FakeApi::default()
    })
}

#[tokio::test]
async fn a_pod_without_claims_costs_no_dra_call() {
    let (dra, api) = new_dra(FakeApi {
        claims: Some(PodClaims::default()),
        ..FakeApi::default()
    });
    assert!(dra.pod_devices(&pod()).await.unwrap().is_empty());
    let (gone, gone_api) = new_dra(FakeApi::default());
    assert!(gone.pod_devices(&pod()).await.unwrap().is_empty());
    for api in [api, gone_api] {
        assert_eq!(api.versions.load(Ordering::SeqCst), 0);
        assert_eq!(api.claim_gets.load(Ordering::SeqCst), 0);
        assert_eq!(api.watches.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn slices_are_watched_once_for_every_pod() {
    let (dra, api) = one_allocated_vf();
    for _ in 0..5 {
        let pairs = dra.pod_devices(&pod()).await.unwrap();
        assert_eq!(
            pairs,
            vec![(SRIOV.to_owned(), vec!["0000:03:00.1".to_owned()])]
        );
    }
    assert_eq!(api.watches.load(Ordering::SeqCst), 1);
    assert_eq!(
        api.claim_gets.load(Ordering::SeqCst),
        5,
        "claims are per ADD"
    );
}

#[tokio::test(start_paused = true)]
async fn a_watch_failing_before_its_first_listing_fails_the_lookup_at_once() {
    let (dra, _) = new_dra(FakeApi {
        claims: claims(&["c"]),
        watch_fails: true,
        ..FakeApi::default()
    });
    let started = Instant::now();
    let err = dra.pod_devices(&pod()).await.unwrap_err();
    assert!(
        matches!(&err, DraError::Slices { node, reason } if node == "node-1" && reason.contains("resourceVersion")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn the_whole_lookup_is_bounded_by_upstreams_20_seconds() {
    let (dra, _) = new_dra(FakeApi {
        claims: claims(&["c"]),
        slices: node_slices(),
        hang: true,
        ..FakeApi::default()
    });
    let started = Instant::now();
    let err = dra.pod_devices(&pod()).await.unwrap_err();
    assert_eq!(err.to_string(), "pod default/web: no answer within 20s");
    assert_eq!(started.elapsed(), DRA_TIMEOUT);
}

#[tokio::test]
async fn the_node_comes_from_the_daemon_first_then_the_pod() {
    let api = Arc::new(FakeApi {
        claims: Some(PodClaims {
            node: None,
            claims: vec!["c".into()],
            extended: None,
        }),
        allocations: HashMap::from([("c".to_owned(), Some(Vec::new()))]),
        ..FakeApi::default()
    });
    let unscheduled = Dra::new(api.clone(), None);
    let err = unscheduled.pod_devices(&pod()).await.unwrap_err();
    assert!(matches!(err, DraError::NoNode { .. }), "{err:?}");
    let named = Dra::new(api, Some("node-9".into()));
    assert!(named.pod_devices(&pod()).await.unwrap().is_empty());
    assert_eq!(named.slices.get().map(NodeSlices::node), Some("node-9"));
}

fn extended(mappings: &[(&str, &str)], results: Vec<Allocated>) -> (Dra, Arc<FakeApi>) {
    new_dra(FakeApi {
        claims: Some(PodClaims {
            node: Some("node-1".into()),
            claims: Vec::new(),
            extended: Some(ExtendedClaim {
                claim: "web-extended-resources-abc".into(),
                mappings: mappings
                    .iter()
                    .map(|(r, n)| ((*r).to_owned(), (*n).to_owned()))
                    .collect(),
            }),
        }),
        allocations: HashMap::from([("web-extended-resources-abc".to_owned(), Some(results))]),
        slices: node_slices(),
        ..FakeApi::default()
    })
}

#[tokio::test]
async fn the_extended_resource_claim_is_strict() {
    let (ok, _) = extended(
        &[("container-0-request-0", SRIOV)],
        vec![allocated("container-0-request-0", "node-1", "vf-0")],
    );
    assert_eq!(
        ok.pod_devices(&pod()).await.unwrap(),
        vec![(SRIOV.to_owned(), vec!["0000:03:00.1".to_owned()])]
    );
    let (missing, _) = extended(&[("container-0-request-1", SRIOV)], vec![]);
    assert_eq!(
        missing.pod_devices(&pod()).await.unwrap_err().to_string(),
        "request container-0-request-1 not found in claim web-extended-resources-abc"
    );
    let (other, _) = extended(
        &[("r", "example.com/other")],
        vec![allocated("r", "node-1", "vf-0")],
    );
    let err = other.pod_devices(&pod()).await.unwrap_err();
    assert!(
        matches!(err, DraError::ResourceNameMismatch { .. }),
        "{err:?}"
    );
    let (gpu, _) = extended(&[("r", SRIOV)], vec![allocated("r", "node-1", "gpu-0")]);
    let err = gpu.pod_devices(&pod()).await.unwrap_err();
    assert!(
        matches!(err, DraError::DeviceNotInAnySlice { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn dra_devices_merge_into_the_kubelets_map_sorted() {
    let (dra, _) = one_allocated_vf();
    let kubelet = MemoryDevices::default().with("uid-web", SRIOV, &["0000:81:00.5"]);
    let devices = KubeletWithDra::new(Arc::new(kubelet), dra);
    let mut map = devices.pod_devices(&pod()).await.unwrap();
    assert_eq!(map.devices(SRIOV), ["0000:03:00.1", "0000:81:00.5"]);
    assert_eq!(map.take(SRIOV).as_deref(), Some("0000:03:00.1"));
}

#[tokio::test]
async fn a_dra_failure_is_the_device_lookups_failure() {
    let (dra, _) = dra_with_claims(&["nowhere"]);
    let devices = KubeletWithDra::new(Arc::new(MemoryDevices::default()), dra);
    let err = devices.pod_devices(&pod()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "DRA: resource claim default/nowhere not found"
    );
}

#[tokio::test]
async fn a_relist_replaces_the_nodes_slices_and_deletes_remove_them() {
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let rx = std::sync::Mutex::new(Some(rx));
    let slices = NodeSlices::from_events(
        "node-1",
        Box::new(move || match rx.lock().unwrap().take() {
            Some(rx) => rx.boxed(),
            None => futures::stream::pending().boxed(),
        }),
    );
    let send = |e| tx.unbounded_send(Ok(e)).unwrap();
    send(watcher::Event::Init);
    for s in node_slices() {
        send(watcher::Event::InitApply(s));
    }
    send(watcher::Event::InitDone);
    slices.ready(Duration::from_secs(5)).await.unwrap();
    assert!(slices.device(DRIVER, "node-1", "vf-0").is_some());
    // A relist without the sriov slice: the old view stays until the relist is complete.
    send(watcher::Event::Init);
    send(watcher::Event::InitApply(node_slices().remove(1)));
    tokio::task::yield_now().await;
    assert!(slices.device(DRIVER, "node-1", "vf-0").is_some());
    send(watcher::Event::InitDone);
    send(watcher::Event::Apply(slice(
        "late",
        "node-1",
        &[("vf-9", attrs(Some("0000:03:01.0"), Some(SRIOV)))],
    )));
    wait_until(|| slices.device(DRIVER, "node-1", "vf-9").is_some()).await;
    assert!(slices.device(DRIVER, "node-1", "vf-0").is_none());
    assert!(slices.device(DRIVER, "other-pool", "vf-9").is_none());
    send(watcher::Event::Delete(slice("late", "node-1", &[])));
    wait_until(|| slices.device(DRIVER, "node-1", "vf-9").is_none()).await;
}

type Events = Vec<Result<watcher::Event<SliceDevices>, watcher::Error>>;

/// A node whose watch fails after each listing (upstream's RBAC: list, no watch); each start
/// of the watch lists the next of `listings`.
fn unwatchable(listings: Vec<Vec<SliceDevices>>) -> (NodeSlices, Arc<AtomicUsize>) {
    let starts = Arc::new(AtomicUsize::new(0));
    let counted = starts.clone();
    let listings = std::sync::Mutex::new(listings.into_iter());
    let slices = NodeSlices::from_events(
        "node-1",
        Box::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut events: Events = vec![Ok(watcher::Event::Init)];
            let listing = listings.lock().unwrap().next().unwrap_or_default();
            events.extend(
                listing
                    .into_iter()
                    .map(|s| Ok(watcher::Event::InitApply(s))),
            );
            events.push(Ok(watcher::Event::InitDone));
            events.push(Err(watcher::Error::NoResourceVersion));
            futures::stream::iter(events)
                .chain(futures::stream::pending())
                .boxed()
        }),
    );
    (slices, starts)
}

#[tokio::test]
async fn a_miss_while_the_watch_fails_relists_once() {
    let later = slice(
        "late",
        "node-1",
        &[("vf-9", attrs(Some("0000:03:01.0"), Some(SRIOV)))],
    );
    let (slices, starts) = unwatchable(vec![node_slices(), vec![later]]);
    slices.ready(Duration::from_secs(5)).await.unwrap();
    wait_until(|| slices.progress().error.is_some()).await;
    assert_eq!(starts.load(Ordering::SeqCst), 1);
    assert!(slices.device(DRIVER, "node-1", "vf-9").is_none());
    slices.relist_if_failing(Duration::from_secs(5)).await;
    assert_eq!(starts.load(Ordering::SeqCst), 2);
    assert!(slices.device(DRIVER, "node-1", "vf-9").is_some());
}

async fn wait_until(cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition not reached");
}

#[test]
fn discovery_retries_back_off_to_a_minute() {
    assert_eq!(retry_pause(1), Duration::from_secs(1));
    assert_eq!(retry_pause(2), Duration::from_secs(2));
    assert_eq!(retry_pause(5), Duration::from_secs(16));
    assert_eq!(retry_pause(40), MAX_RETRY);
}

#[test]
fn pod_claims_come_from_the_status() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"nodeName": "node-1", "containers": []},
        "status": {
            "resourceClaimStatuses": [
                {"name": "nic", "resourceClaimName": "web-nic-x7k2"},
                {"name": "unneeded"}
            ],
            "extendedResourceClaimStatus": {
                "resourceClaimName": "web-extended-resources-abc",
                "requestMappings": [{"containerName": "app", "resourceName": SRIOV, "requestName": "container-0-request-0"}]
            }
        }
    }))
    .unwrap();
    let claims = PodClaims::from_pod(&pod);
    assert_eq!(claims.node.as_deref(), Some("node-1"));
    assert_eq!(claims.claims, ["web-nic-x7k2"]);
    let ext = claims.extended.unwrap();
    assert_eq!(ext.claim, "web-extended-resources-abc");
    assert_eq!(
        ext.mappings,
        [("container-0-request-0".to_owned(), SRIOV.to_owned())]
    );
}
