//! A Kubernetes API server stand-in on 127.0.0.1 (plain HTTP, no authentication) that speaks the
//! real REST paths and JSON for pods (get, list, watch, merge patch, update of the pod and of
//! `pods/<name>/status` with resourceVersion checks), NetworkAttachmentDefinitions (get, list,
//! watch), `resource.k8s.io` ResourceClaims (get, list) and ResourceSlices (get, list, watch,
//! field selectors) at one version a test picks (`v1` by default, or none), events (create, kept for tests to read) and CertificateSigningRequests (create, get,
//! list; approved and signed by a test CA on a test's word), with an in-memory store tests change
//! directly (each change is a watch event), fault injection, RBAC (everything allowed unless a
//! test picks a ClusterRole shape: 403s in the real server's words), and a kubeconfig pointing at
//! itself so the daemon connects exactly as it would to a real cluster.
mod csr;
mod faults;
mod http;
mod rbac;
mod store;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::Method;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch as signal};

pub use csr::{CsrError, subject as csr_subject};
pub use faults::{Action, Fault};
pub use rbac::{Rbac, Rule, USER as RBAC_USER};
pub use store::Kind;

use http::{Shared, lock};
use store::Store;

/// Starting the stand-in failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    #[error("binding 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    #[error("writing the kubeconfig: {0}")]
    WriteKubeconfig(#[source] std::io::Error),
}

/// The running stand-in; stops when dropped.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Open watches would keep the graceful shutdown waiting.
        self.drop_watches();
    }
}

impl ApiServer {
    /// Serves on an ephemeral loopback port and writes `<tmp>/kubeconfig`. Needs a tokio runtime.
    pub async fn start() -> Result<Self, ApiServerError> {
        let (drops, _) = signal::channel(0);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            faults: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            events: Mutex::new(Vec::new()),
            drops,
            csrs: Mutex::new(csr::Csrs::new()),
            authorizations: Mutex::new(Vec::new()),
            rbac: Mutex::new(Rbac::default()),
            denied: Mutex::new(Vec::new()),
            dra_version: Mutex::new(Some("v1".to_owned())),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(ApiServerError::Bind)?;
        let addr = listener.local_addr().map_err(ApiServerError::Bind)?;
        let app = Router::new()
            .fallback(http::handle)
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = serve.await {
                eprintln!("apiserver stand-in stopped: {error}");
            }
        });
        let dir = tempfile::tempdir().map_err(ApiServerError::WriteKubeconfig)?;
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig(addr))
            .map_err(ApiServerError::WriteKubeconfig)?;
        Ok(Self {
            shared,
            addr,
            dir,
            stop: Some(stop),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server (cluster, user without credentials, current context).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Creates or replaces a pod (watchers see ADDED or MODIFIED); returns it as stored.
    pub fn put_pod(&self, pod: Value) -> Value {
        lock(&self.shared.store).put(Kind::Pod, pod, true)
    }

    /// Stores a pod without telling watchers: GET finds it, the watch cache does not (yet).
    pub fn put_pod_unwatched(&self, pod: Value) -> Value {
        lock(&self.shared.store).put(Kind::Pod, pod, false)
    }

    pub fn delete_pod(&self, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.shared.store).delete(Kind::Pod, namespace, name)
    }

    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.shared.store).get(Kind::Pod, namespace, name)
    }

    /// Creates or replaces a NAD (watchers see the event); returns it as stored.
    pub fn put_nad(&self, nad: Value) -> Value {
        lock(&self.shared.store).put(Kind::Nad, nad, true)
    }

    pub fn delete_nad(&self, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.shared.store).delete(Kind::Nad, namespace, name)
    }

    /// Serves `resource.k8s.io` at this version only (`None`: not at all, as a cluster without
    /// DRA). Objects are stored as given, so a test puts them in that version's shape.
    pub fn serve_dra(&self, version: Option<&str>) {
        *lock(&self.shared.dra_version) = version.map(str::to_owned);
    }

    /// Creates or replaces a ResourceClaim; returns it as stored.
    pub fn put_resource_claim(&self, claim: Value) -> Value {
        lock(&self.shared.store).put(Kind::ResourceClaim, claim, true)
    }

    /// Creates or replaces a ResourceSlice (watchers see the event); returns it as stored.
    pub fn put_resource_slice(&self, slice: Value) -> Value {
        lock(&self.shared.store).put(Kind::ResourceSlice, slice, true)
    }

    pub fn delete_resource_slice(&self, name: &str) -> Option<Value> {
        lock(&self.shared.store).delete(Kind::ResourceSlice, "", name)
    }

    /// Adds a fault rule (checked in the order added).
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared.faults).push(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Authorizes later requests by these rules (`Rbac::upstream()`, `Rbac::chart()`, ...).
    pub fn set_rbac(&self, rbac: Rbac) {
        *lock(&self.shared.rbac) = rbac;
    }

    /// The requests RBAC refused with 403 (method, path), oldest first.
    pub fn denials(&self) -> Vec<(Method, String)> {
        lock(&self.shared.denied).clone()
    }

    /// Closes every open watch (as an API server restart does); clients must re-watch.
    pub fn drop_watches(&self) {
        self.shared.drops.send_modify(|generation| *generation += 1);
    }

    /// The events POSTed so far (core/v1 Event JSON), oldest first.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.shared.events).clone()
    }

    /// How many requests had this method and path (query not compared).
    pub fn requests(&self, method: &Method, path: &str) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|(m, p)| m == method && p == path)
            .count()
    }

    /// How many requests had this method and a path starting with `prefix`.
    pub fn requests_under(&self, method: &Method, prefix: &str) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|(m, p)| m == method && p.starts_with(prefix))
            .count()
    }
}

impl ApiServer {
    /// The CertificateSigningRequests created so far, oldest first, as stored.
    pub fn csrs(&self) -> Vec<Value> {
        lock(&self.shared.csrs).list()
    }

    /// Approves a request and issues its certificate, signed by the test CA (what an approver and
    /// kube-controller-manager's signer do together).
    pub fn approve_csr(&self, name: &str) -> Result<(), CsrError> {
        lock(&self.shared.csrs).approve(name)
    }

    /// Denies a request.
    pub fn deny_csr(&self, name: &str, message: &str) -> Result<(), CsrError> {
        lock(&self.shared.csrs).deny(name, message)
    }

    /// Approve every request as it is created (as a running approver would).
    pub fn auto_approve_csrs(&self, on: bool) {
        lock(&self.shared.csrs).auto_approve = on;
    }

    /// The `Authorization` header of each request with this method and a path starting with
    /// `prefix`, oldest first (`None`: no header).
    pub fn authorizations(&self, method: &Method, prefix: &str) -> Vec<Option<String>> {
        lock(&self.shared.authorizations)
            .iter()
            .filter(|(m, p, _)| m == method && p.starts_with(prefix))
            .map(|(_, _, a)| a.clone())
            .collect()
    }

    /// The CA that signs issued certificates, PEM.
    pub fn csr_ca_pem(&self) -> String {
        lock(&self.shared.csrs).ca_pem().to_owned()
    }

    /// Writes a kubeconfig for this server whose user has a bootstrap token (the stand-in does
    /// not check it; it makes the credentials a per-node client must drop visible).
    pub fn bootstrap_kubeconfig(&self, token: &str) -> Result<PathBuf, ApiServerError> {
        let path = self.dir.path().join("bootstrap-kubeconfig");
        let text = kubeconfig(self.addr).replace("user: {}", &format!("user:\n    token: {token}"));
        std::fs::write(&path, text).map_err(ApiServerError::WriteKubeconfig)?;
        Ok(path)
    }
}

/// The REST path of a CertificateSigningRequest.
pub fn csr_path(name: &str) -> String {
    format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}")
}

/// The REST path of a pod.
pub fn pod_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{name}")
}

/// The REST path of a pod's status subresource.
pub fn pod_status_path(namespace: &str, name: &str) -> String {
    format!("{}/status", pod_path(namespace, name))
}

/// The REST path of a NAD.
pub fn nad_path(namespace: &str, name: &str) -> String {
    format!("/apis/k8s.cni.cncf.io/v1/namespaces/{namespace}/network-attachment-definitions/{name}")
}

/// The REST path of a ResourceClaim at `version`.
pub fn resource_claim_path(version: &str, namespace: &str, name: &str) -> String {
    format!("/apis/resource.k8s.io/{version}/namespaces/{namespace}/resourceclaims/{name}")
}

/// The REST path of the ResourceSlice collection at `version`.
pub fn resource_slices_path(version: &str) -> String {
    format!("/apis/resource.k8s.io/{version}/resourceslices")
}

/// One allocated device of a claim: (request, driver, pool, device).
pub type Allocation<'a> = (&'a str, &'a str, &'a str, &'a str);

/// A ResourceClaim in `version`'s shape; `allocated: None` is a claim not allocated yet.
pub fn resource_claim_json(
    version: &str,
    namespace: &str,
    name: &str,
    allocated: Option<&[Allocation<'_>]>,
) -> Value {
    let requests: Vec<Value> = allocated
        .unwrap_or_default()
        .iter()
        .map(|(request, ..)| {
            let exactly = json!({"deviceClassName": "vf.example.com", "allocationMode": "ExactCount", "count": 1});
            if version == "v1beta1" {
                json!({"name": request, "deviceClassName": "vf.example.com"})
            } else {
                json!({"name": request, "exactly": exactly})
            }
        })
        .collect();
    let mut claim = json!({
        "apiVersion": format!("resource.k8s.io/{version}"), "kind": "ResourceClaim",
        "metadata": {"name": name, "namespace": namespace,
            "annotations": {"resource.kubernetes.io/pod-claim-name": "nic"}},
        "spec": {"devices": {"requests": requests}},
        "status": {}
    });
    if let Some(devices) = allocated {
        let results: Vec<Value> = devices
            .iter()
            .map(|(request, driver, pool, device)| {
                json!({"request": request, "driver": driver, "pool": pool, "device": device})
            })
            .collect();
        claim["status"] = json!({"allocation": {"devices": {"results": results},
            "allocationTimestamp": "2026-01-01T00:00:00Z"}});
    }
    claim
}

/// One device of a slice: (name, `k8s.cni.cncf.io/deviceID`, `k8s.cni.cncf.io/resourceName`),
/// either attribute absent when `None`.
pub type SliceDevice<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

/// A ResourceSlice of `node` in `version`'s shape (v1beta1 nests attributes in `basic`).
pub fn resource_slice_json(
    version: &str,
    name: &str,
    node: &str,
    driver: &str,
    devices: &[SliceDevice<'_>],
) -> Value {
    let devices: Vec<Value> = devices
        .iter()
        .map(|(device, id, resource)| {
            let mut attributes = json!({"dra.net/numaNode": {"int": 0}});
            if let Some(id) = id {
                attributes["k8s.cni.cncf.io/deviceID"] = json!({"string": id});
            }
            if let Some(resource) = resource {
                attributes["k8s.cni.cncf.io/resourceName"] = json!({"string": resource});
            }
            if version == "v1beta1" {
                json!({"name": device, "basic": {"attributes": attributes}})
            } else {
                json!({"name": device, "attributes": attributes})
            }
        })
        .collect();
    json!({
        "apiVersion": format!("resource.k8s.io/{version}"), "kind": "ResourceSlice",
        "metadata": {"name": name},
        "spec": {"driver": driver, "nodeName": node,
            "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
            "devices": devices}
    })
}

/// A pod scheduled to `node` with these annotations, shaped like what the API serves (spec,
/// status and managedFields included, so trimming on the client side is exercised).
pub fn pod_json(
    namespace: &str,
    name: &str,
    node: &str,
    annotations: &BTreeMap<String, String>,
) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": namespace, "labels": {"app": name},
            "annotations": annotations,
            "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:annotations": {}, "f:labels": {}}, "f:spec": {"f:containers": {}}}}]
        },
        "spec": {
            "nodeName": node, "restartPolicy": "Always", "serviceAccountName": "default",
            "containers": [{"name": "app", "image": "registry.example/app:1.0", "command": ["/bin/app", "--serve"],
                "env": [{"name": "MODE", "value": "production"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]
        },
        "status": {"phase": "Pending", "qosClass": "Burstable", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    })
}

/// A NetworkAttachmentDefinition with this `spec.config` (none when empty).
pub fn nad_json(namespace: &str, name: &str, config: &str) -> Value {
    let spec = if config.is_empty() {
        json!({})
    } else {
        json!({"config": config})
    };
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec
    })
}

fn kubeconfig(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: http://{addr}\n\
         users:\n- name: standin\n  user: {{}}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    \
         user: standin\n    namespace: default\ncurrent-context: standin\n"
    )
}
