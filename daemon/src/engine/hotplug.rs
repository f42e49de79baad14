//! Hot-plug: ADD, DEL or CHECK of one delegate on a running pod (upstream's `/delegate`, the gRPC
//! `AddDelegate`/`DelDelegate`/`CheckDelegate`). Unlike upstream, the delegate is kept in the
//! container's record like the ones ADD attached, so the pod's final DEL tears it down too, and
//! network-status is rewritten from the record after each change.
//!
//! The record is updated as ADD does: the delegate is saved as planned before its plugin runs,
//! as added after; a failed ADD DELs what may have half-attached and drops it from the record.
use multus_common::constants::k8s_args;
use multus_common::{CniArgs, Command, validate};
use serde_json::Value;

use super::add::{publish_status, save};
use super::cache::{Entry, Loaded, Record, State};
use super::conflist::{self, Attachment};
use super::plan::{self, HotplugNetwork, PlanError};
use super::{Delegate, Engine, EngineError, del};
use crate::source::PodInfo;

/// One hot-plug request.
#[derive(Debug, Clone)]
pub struct HotplugCall {
    /// ADD, DEL or CHECK.
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    /// The hot-plugged interface; empty: the selection's `interface`.
    pub ifname: String,
    /// CNI_ARGS: K8S_POD_NAMESPACE, K8S_POD_NAME (required), K8S_POD_UID.
    pub args: CniArgs,
    pub network: HotplugNetwork,
}

/// Runs one hot-plug request; ADD returns the delegate's result in cniVersion 1.0.0.
pub(super) async fn hotplug(e: &Engine, call: HotplugCall) -> Result<Option<Value>, EngineError> {
    validate::id("container id", &call.container_id)?;
    if !matches!(call.command, Command::Add | Command::Del | Command::Check) {
        return Err(EngineError::InvalidConfig(format!(
            "hot-plug supports ADD, DEL and CHECK, not {}",
            call.command
        )));
    }
    if call.command == Command::Add {
        super::ready_for_add(e, &tokio_util::sync::CancellationToken::new()).await?;
    }
    let (_guard, waited) = e.admission.lock_container(&call.container_id).await?;
    e.metrics.queue_wait("container", waited);
    let record = match load(e, &call).await? {
        Some(r) => r,
        // DEL is idempotent: nothing recorded, nothing attached.
        None if call.command == Command::Del => return Ok(None),
        None => return Err(EngineError::UnknownContainer(call.container_id)),
    };
    if record.from_upstream {
        // Rewriting upstream's file in our format would break a later downgrade's DEL.
        return Err(EngineError::InvalidConfig(format!(
            "container {}: attached by upstream Go Multus; hot-plug needs a pod attached by multus-rs",
            call.container_id
        )));
    }
    if call.command != Command::Add {
        // DEL and CHECK work from the record alone: the NAD may be gone by now.
        let ifname = plan::hotplug_ifname(&call.network, &call.ifname)?;
        return match call.command {
            Command::Del => remove(e, &call, record, &ifname).await.map(|()| None),
            _ => check(e, &call, &record, &ifname).await.map(|()| None),
        };
    }
    let pod = pod(e, &call, &record).await?;
    let d = plan::hotplug_delegate(
        &e.config,
        &*e.source,
        &pod,
        &call.network,
        &call.ifname,
        &call.args,
    )
    .await?;
    add(e, &call, record, d, &pod).await.map(Some)
}

async fn load(e: &Engine, call: &HotplugCall) -> Result<Option<Record>, EngineError> {
    let (id, args) = (call.container_id.clone(), call.args.clone());
    // The record's own ifname is found by container id; the CNI_IFNAME argument only matters to
    // upstream-format records, which hold one interface per file.
    let ifname = String::new();
    match e.blocking(move |c| c.read(&id, &ifname, &args)).await? {
        Loaded::Found(r) => Ok(Some(r)),
        Loaded::Missing | Loaded::Corrupt(_) => Ok(None),
    }
}

/// The running pod, which must be the one the record was attached for.
async fn pod(e: &Engine, call: &HotplugCall, record: &Record) -> Result<PodInfo, EngineError> {
    let arg = |key: &'static str| call.args.get(key).ok_or(PlanError::MissingArg(key));
    let (namespace, name) = (arg(k8s_args::POD_NAMESPACE)?, arg(k8s_args::POD_NAME)?);
    let what = format!("pod {namespace}/{name}");
    let pod = e
        .source
        .pod(namespace, name)
        .await
        .map_err(|source| PlanError::Source {
            what: what.clone(),
            source,
        })?
        .ok_or_else(|| EngineError::InvalidConfig(format!("{what} not found")))?;
    let recorded = record.pod.as_ref().map(|p| p.uid.as_str());
    for expected in [call.args.get(k8s_args::POD_UID), recorded]
        .into_iter()
        .flatten()
    {
        if !expected.is_empty() && expected != pod.uid {
            return Err(PlanError::UidMismatch {
                expected: expected.to_owned(),
                actual: pod.uid.clone(),
            }
            .into());
        }
    }
    Ok(pod)
}

fn position(record: &Record, ifname: &str) -> Option<usize> {
    record
        .delegates
        .iter()
        .position(|en| en.delegate.ifname == ifname)
}

async fn add(
    e: &Engine,
    call: &HotplugCall,
    mut record: Record,
    d: Delegate,
    pod: &PodInfo,
) -> Result<Value, EngineError> {
    if let Some(i) = position(&record, &d.ifname) {
        return Err(PlanError::DuplicateIfname {
            ifname: d.ifname,
            first: record.delegates[i].delegate.name.clone(),
            second: d.name,
        }
        .into());
    }
    record.delegates.push(Entry {
        delegate: d,
        state: State::Planned,
        result: None,
    });
    // Before the exec: a crash from here on leaves a record the pod's DEL tears down.
    save(e, &record).await?;
    let i = record.delegates.len() - 1;
    let at = Attachment {
        container_id: &call.container_id,
        netns: &call.netns,
    };
    let d = &record.delegates[i].delegate;
    let span = tracing::info_span!("delegate", network = %d.name, ifname = %d.ifname, plugin = %d.config.first_type(), hotplug = true);
    let outcome = tracing::Instrument::instrument(conflist::add(&e.exec, d, &at), span).await;
    let result = match outcome {
        Ok(result) => result,
        Err(source) => {
            // Upstream's /delegate ADD words a failed delegate so.
            let err = EngineError::delegate(d, source).configuring_pod(&call.args);
            rollback(e, call, record).await;
            return Err(err);
        }
    };
    record.delegates[i].state = State::Added;
    record.delegates[i].result = Some(result.clone());
    let published = match save(e, &record).await {
        Ok(()) => publish_status(e, &record, Some(pod)).await,
        Err(err) => Err(err),
    };
    if let Err(err) = published {
        rollback(e, call, record).await;
        return Err(err);
    }
    tracing::info!(container.id = %call.container_id, network = %record.delegates[i].delegate.name,
        ifname = %record.delegates[i].delegate.ifname, "hot-plug ADD done");
    let d = &record.delegates[i].delegate;
    multus_common::result::convert(&result, d.cni_version(), "1.0.0").map_err(|source| {
        EngineError::ConvertResult {
            name: d.name.clone(),
            version: "1.0.0".into(),
            source,
        }
    })
}

/// DELs the last (hot-plugged) delegate and drops it from the record; if that DEL fails while
/// the plugin had reported success, the entry stays so the pod's DEL retries it.
async fn rollback(e: &Engine, call: &HotplugCall, mut record: Record) {
    let Some(entry) = record.delegates.last() else {
        return;
    };
    let at = Attachment {
        container_id: &call.container_id,
        netns: &call.netns,
    };
    let d = &entry.delegate;
    if let Err(err) = conflist::del(&e.exec, d, &at, entry.result.as_ref()).await {
        tracing::warn!(container.id = %call.container_id, network = %d.name, error = %err, "hot-plug rollback DEL failed");
        if entry.state == State::Added {
            return;
        }
    }
    del::remove_device_info(e, std::slice::from_ref(d)).await;
    record.delegates.pop();
    if let Err(err) = save(e, &record).await {
        tracing::warn!(container.id = %call.container_id, error = %err, "record not updated after hot-plug rollback");
    }
}

async fn remove(
    e: &Engine,
    call: &HotplugCall,
    mut record: Record,
    ifname: &str,
) -> Result<(), EngineError> {
    let Some(i) = position(&record, ifname) else {
        tracing::info!(container.id = %call.container_id, ifname, "hot-plug DEL: interface not recorded");
        return Ok(());
    };
    let entry = &record.delegates[i];
    if entry.delegate.is_default {
        return Err(EngineError::InvalidConfig(format!(
            "interface {ifname} is the cluster network's; it is removed only by the pod's DEL"
        )));
    }
    let at = Attachment {
        container_id: &call.container_id,
        netns: &call.netns,
    };
    // Upstream returns DEL errors here: the container lives on, so the caller can retry.
    conflist::del(&e.exec, &entry.delegate, &at, entry.result.as_ref())
        .await
        .map_err(|source| EngineError::delegate(&entry.delegate, source))?;
    del::remove_device_info(e, std::slice::from_ref(&entry.delegate)).await;
    record.delegates.remove(i);
    save(e, &record).await?;
    tracing::info!(container.id = %call.container_id, ifname, "hot-plug DEL done");
    // A pod that is gone has no network-status to update; the detach itself is done.
    match pod(e, call, &record).await {
        Ok(pod) => publish_status(e, &record, Some(&pod)).await,
        Err(err) => {
            tracing::info!(container.id = %call.container_id, error = %err, "hot-plug DEL: network-status not updated");
            Ok(())
        }
    }
}

async fn check(
    e: &Engine,
    call: &HotplugCall,
    record: &Record,
    ifname: &str,
) -> Result<(), EngineError> {
    let entry = position(record, ifname)
        .map(|i| &record.delegates[i])
        .filter(|en| en.state == State::Added)
        .ok_or_else(|| {
            EngineError::UnknownContainer(format!("{} (interface {ifname})", call.container_id))
        })?;
    let at = Attachment {
        container_id: &call.container_id,
        netns: &call.netns,
    };
    conflist::check(&e.exec, &entry.delegate, &at, entry.result.as_ref())
        .await
        .map_err(|source| EngineError::delegate(&entry.delegate, source))
}
