//! A stand-in kubelet for tests: the real PodResources v1 service (the same generated code the
//! client uses) on a unix socket in a temporary directory, serving a fixed set of pods.
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use multus_proto::podresources::v1::pod_resources_lister_server::{
    PodResourcesLister, PodResourcesListerServer,
};
use multus_proto::podresources::v1::{
    AllocatableResourcesRequest, AllocatableResourcesResponse, ContainerDevices,
    ContainerResources, GetPodResourcesRequest, GetPodResourcesResponse, ListPodResourcesRequest,
    ListPodResourcesResponse, PodResources,
};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

/// How the stand-in answers `Get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetMode {
    /// As a kubelet with the Get RPC.
    Served,
    /// As a kubelet before Get existed.
    Unimplemented,
    /// As a kubelet with the KubeletPodResourcesGet feature gate off.
    Disabled,
}

/// Calls the stand-in received, per RPC.
#[derive(Debug, Default)]
pub struct Calls {
    pub get: AtomicUsize,
    pub list: AtomicUsize,
}

struct Service {
    pods: Vec<PodResources>,
    get: GetMode,
    list_fails: bool,
    calls: Arc<Calls>,
}

#[tonic::async_trait]
impl PodResourcesLister for Service {
    async fn list(
        &self,
        _: Request<ListPodResourcesRequest>,
    ) -> Result<Response<ListPodResourcesResponse>, Status> {
        self.calls.list.fetch_add(1, Ordering::SeqCst);
        if self.list_fails {
            return Err(Status::internal("podresources: lister broken"));
        }
        Ok(Response::new(ListPodResourcesResponse {
            pod_resources: self.pods.clone(),
        }))
    }

    async fn get_allocatable_resources(
        &self,
        _: Request<AllocatableResourcesRequest>,
    ) -> Result<Response<AllocatableResourcesResponse>, Status> {
        Err(Status::unimplemented("not served by the stand-in"))
    }

    async fn get(
        &self,
        req: Request<GetPodResourcesRequest>,
    ) -> Result<Response<GetPodResourcesResponse>, Status> {
        self.calls.get.fetch_add(1, Ordering::SeqCst);
        let req = req.into_inner();
        match self.get {
            GetMode::Unimplemented => Err(Status::unimplemented("unknown method Get")),
            GetMode::Disabled => Err(Status::unknown("PodResources API Get method disabled")),
            GetMode::Served => self
                .pods
                .iter()
                .find(|p| p.name == req.pod_name && p.namespace == req.pod_namespace)
                .map(|p| {
                    Response::new(GetPodResourcesResponse {
                        pod_resources: Some(p.clone()),
                    })
                })
                .ok_or_else(|| {
                    let (name, ns) = (req.pod_name, req.pod_namespace);
                    Status::unknown(format!("pod {name} in namespace {ns} not found"))
                }),
        }
    }
}

/// A running stand-in; stops when dropped.
pub struct FakeKubelet {
    pub calls: Arc<Calls>,
    task: JoinHandle<()>,
}

impl FakeKubelet {
    /// Serves `pods` on `<dir>/kubelet.sock`. Must be called inside a tokio runtime.
    pub fn start(dir: &Path, pods: Vec<PodResources>, get: GetMode, list_fails: bool) -> Self {
        let socket = dir.join("kubelet.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let calls = Arc::new(Calls::default());
        let service = Service {
            pods,
            get,
            list_fails,
            calls: calls.clone(),
        };
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(PodResourcesListerServer::new(service))
                .serve_with_incoming(UnixListenerStream::new(listener))
                .await;
        });
        Self { calls, task }
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A pod whose containers hold `devices` (container name, resource, device ids).
pub fn pod(namespace: &str, name: &str, devices: &[(&str, &str, &[&str])]) -> PodResources {
    let mut containers: Vec<ContainerResources> = Vec::new();
    for (container, resource, ids) in devices {
        let d = ContainerDevices {
            resource_name: (*resource).to_owned(),
            device_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            topology: None,
        };
        match containers.iter_mut().find(|c| c.name == *container) {
            Some(c) => c.devices.push(d),
            None => containers.push(ContainerResources {
                name: (*container).to_owned(),
                devices: vec![d],
                ..Default::default()
            }),
        }
    }
    PodResources {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        containers,
    }
}

/// An in-memory [`DeviceSource`](super::DeviceSource): fixed devices per pod UID, and a count
/// of lookups (to show when planning asks and when it does not).
#[derive(Debug, Default)]
pub struct MemoryDevices {
    by_uid: std::collections::HashMap<String, Vec<(String, Vec<String>)>>,
    pub lookups: AtomicUsize,
}

impl MemoryDevices {
    /// Gives the pod with `uid` the devices `ids` of `resource`.
    pub fn with(mut self, uid: &str, resource: &str, ids: &[&str]) -> Self {
        let ids = ids.iter().map(|s| (*s).to_owned()).collect();
        self.by_uid
            .entry(uid.to_owned())
            .or_default()
            .push((resource.to_owned(), ids));
        self
    }
}

#[async_trait::async_trait]
impl super::DeviceSource for MemoryDevices {
    async fn pod_devices(
        &self,
        pod: &crate::source::PodInfo,
    ) -> Result<super::ResourceMap, super::KubeletError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let pairs = self.by_uid.get(&pod.uid).cloned().unwrap_or_default();
        Ok(super::ResourceMap::from_pairs(pairs))
    }
}
