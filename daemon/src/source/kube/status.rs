//! Writing the network-status annotation, with either RBAC shape.
//!
//! * The chart's ClusterRole grants `patch` on `pods`: one JSON merge patch of the annotation,
//!   nothing read first, nothing else touched.
//! * Upstream's ClusterRole grants `get`, `list`, `update`, `watch` on `pods` and `pods/status`
//!   and no `patch`. Upstream (its NAD client's `SetNetworkStatus`, v1.7.6) GETs the pod, sets
//!   the annotation and PUTs the whole pod to `pods/<name>/status` (`UpdateStatus`; the server
//!   keeps the spec and takes metadata and status), re-reading on each 409 up to 5 times
//!   (client-go's `retry.DefaultRetry`). We do the same when the patch is refused with 403.
//!
//! The first 403 switches the writer to the update for good (an atomic flag), so a node with
//! upstream's RBAC pays one refused patch per daemon start, not one per pod. The pod is read as
//! a `DynamicObject`, so fields newer than our API types survive the round trip.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::kube::Client;
use ::kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use k8s_openapi::api::core::v1::Pod;
use tokio::time::Instant;

use super::NETWORK_STATUS_ANNOTATION;
use super::retry::{Budget, Failure, until_conflict, with_retries};
use crate::source::{PodInfo, SourceError};

/// Writes after a 409 before giving up (upstream's `retry.DefaultRetry` has 5 steps).
const CONFLICT_ATTEMPTS: u32 = 5;
/// Pause before re-reading after a 409, times the attempt number (upstream: 10 ms steps).
const CONFLICT_PAUSE: Duration = Duration::from_millis(10);

/// Remembers which of the two ways this daemon's RBAC allows.
#[derive(Debug, Default)]
pub struct StatusWriter {
    /// Set by the first 403 on the merge patch: write with get + update of `pods/status`.
    by_update: AtomicBool,
}

impl StatusWriter {
    /// Whether writes go straight to the update of `pods/status` (a patch was refused).
    pub fn uses_update(&self) -> bool {
        self.by_update.load(Ordering::Relaxed)
    }

    /// Writes the annotation; `Ok(false)` when the pod is gone (or was replaced meanwhile).
    pub async fn write(
        &self,
        client: &Client,
        budget: Budget,
        pod: &PodInfo,
        status_json: &str,
    ) -> Result<bool, SourceError> {
        if !self.uses_update() {
            match patch(client, budget, pod, status_json).await {
                Err(Failure::Forbidden(refused)) => self.switch_to_update(&refused),
                Ok(()) => return Ok(true),
                Err(other) => return other.into_error().map_or(Ok(false), Err),
            }
        }
        update(client, budget, pod, status_json).await
    }

    fn switch_to_update(&self, refused: &SourceError) {
        // Concurrent ADDs may all meet the 403; one line says why the daemon changed its way.
        if !self.by_update.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %refused,
                "RBAC forbids patching pods; writing network-status as upstream does (get, then update of pods/status) from now on");
        }
    }
}

async fn patch(
    client: &Client,
    budget: Budget,
    pod: &PodInfo,
    status_json: &str,
) -> Result<(), Failure> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    let patch = Patch::Merge(serde_json::json!({
        "metadata": { "annotations": { NETWORK_STATUS_ANNOTATION: status_json } }
    }));
    let params = PatchParams::default();
    let what = format!(
        "patching network-status of pod {}/{}",
        pod.namespace, pod.name
    );
    with_retries(&what, budget, || {
        api.patch_metadata(&pod.name, &params, &patch)
    })
    .await
    .map(|_| ())
}

/// Upstream's way: GET the pod, set the annotation, PUT `pods/<name>/status` with the
/// resourceVersion read; a 409 reads again. All of it within one `budget.total`.
async fn update(
    client: &Client,
    budget: Budget,
    pod: &PodInfo,
    status_json: &str,
) -> Result<bool, SourceError> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &pod.namespace,
        &ApiResource::erase::<Pod>(&()),
    );
    let id = format!("{}/{}", pod.namespace, pod.name);
    let read = format!("getting pod {id} for its network-status");
    let write = format!("updating network-status of pod {id} (pods/status)");
    let deadline = Instant::now() + budget.total;
    let left = || Budget {
        per_call: budget.per_call,
        total: deadline.saturating_duration_since(Instant::now()),
    };
    let mut last_conflict = None;
    for attempt in 1..=CONFLICT_ATTEMPTS {
        let mut current = match with_retries(&read, left(), || api.get(&pod.name)).await {
            Ok(current) => current,
            Err(failure) => return failure.into_error().map_or(Ok(false), Err),
        };
        check_not_replaced(
            pod,
            current.metadata.uid.as_deref().unwrap_or_default(),
            current
                .metadata
                .annotations
                .as_ref()
                .unwrap_or(&BTreeMap::new()),
        )?;
        current
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(NETWORK_STATUS_ANNOTATION.to_owned(), status_json.to_owned());
        let params = PostParams::default();
        match until_conflict(&write, left(), || {
            api.replace_status(&pod.name, &params, &current)
        })
        .await
        {
            Ok(_) => return Ok(true),
            Err(Failure::NotFound) => return Ok(false),
            Err(Failure::Conflict(conflict)) => {
                tracing::debug!(pod = %id, attempt, error = %conflict, "network-status update conflicted; reading the pod again");
                last_conflict = Some(conflict);
            }
            Err(Failure::Forbidden(refused)) => return Err(neither_allowed(&write, &refused)),
            Err(Failure::Failed(e)) => return Err(e),
        }
        if Instant::now() + CONFLICT_PAUSE * attempt >= deadline {
            break;
        }
        tokio::time::sleep(CONFLICT_PAUSE * attempt).await;
    }
    Err(SourceError::Unavailable {
        what: write,
        reason: format!(
            "the pod kept changing under the update (409 Conflict); last: {}",
            last_conflict.map_or_else(|| "none".to_owned(), |e| e.to_string())
        ),
    })
}

/// Both ways refused: say which RBAC rule would fix it.
fn neither_allowed(what: &str, refused: &SourceError) -> SourceError {
    SourceError::Unavailable {
        what: what.to_owned(),
        reason: format!(
            "RBAC allows neither `patch` on pods nor `update` on pods/status, one of which \
             writing network-status needs: {refused}"
        ),
    }
}

/// As upstream (`SetPodNetworkStatusAnnotation`): the status of a pod that replaced ours under
/// the same name is never written, and the ADD fails with upstream's error; a static pod's
/// mirror is exempt (its UID is not the kubelet's).
pub fn check_not_replaced(
    pod: &PodInfo,
    current_uid: &str,
    current_annotations: &BTreeMap<String, String>,
) -> Result<(), SourceError> {
    if pod.uid.is_empty()
        || current_uid.is_empty()
        || current_uid == pod.uid
        || PodInfo::is_static(current_annotations)
    {
        return Ok(());
    }
    tracing::warn!(pod.namespace = %pod.namespace, pod.name = %pod.name, pod.uid = %pod.uid,
        current.uid = %current_uid, "pod replaced; network-status not written");
    Err(SourceError::Replaced {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        expected: pod.uid.clone(),
        actual: current_uid.to_owned(),
    })
}
