//! CNI ADD: plan, record the plan, run each delegate, apply `default-route`, publish
//! network-status, return the cluster network's result (and post AddedInterface events). Any
//! failure after the first exec rolls back what was attached.
use multus_common::validate;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::cache::{Entry, Loaded, PodRef, Progress, Record, SCHEMA_VERSION, State, Written};
use super::conflist::{self, Attachment};
use super::plan::{self, Plan, Planned};
use super::{CniCall, Delegate, Engine, EngineError, del, events, gateway, netstatus};
use crate::netns::{self, NetnsError};

/// ADD; a failure reads as upstream's (see [`EngineError::in_upstream_words`]).
pub(super) async fn add(
    e: &Engine,
    call: CniCall,
    cancel: &CancellationToken,
) -> Result<Vec<u8>, EngineError> {
    add_steps(e, &call, cancel)
        .await
        .map_err(|err| err.in_upstream_words(&call.args))
}

async fn add_steps(
    e: &Engine,
    call: &CniCall,
    cancel: &CancellationToken,
) -> Result<Vec<u8>, EngineError> {
    validate::id("container id", &call.container_id)?;
    validate::ifname(&call.ifname)?;
    let cancelled = || EngineError::Cancelled(call.container_id.clone());
    super::ready_for_add(e, cancel)
        .await
        .map_err(|err| match err {
            EngineError::Cancelled(_) => cancelled(),
            other => other,
        })?;
    let lock = e
        .admission
        .lock_container(&call.container_id)
        .instrument(tracing::info_span!("admission.wait", queue = "container"));
    let (_guard, waited) = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(cancelled()),
        r = lock => r?,
    };
    e.metrics.queue_wait("container", waited);
    tracing::debug!(container.id = %call.container_id, queue_wait_ms = waited.as_millis() as u64, "ADD admitted");
    // Nothing is attached before the plan: a cancellation here has nothing to roll back.
    let planned = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(cancelled()),
        r = plan::plan(&e.config, &*e.source, &*e.devices, call).instrument(tracing::info_span!("plan")) => r?,
    };
    match planned {
        Planned::PodGone => pod_gone_result(call),
        Planned::Plan(p) => attach(e, call, p, cancel).await,
    }
}

/// Upstream §4.2: ADD for a pod that no longer exists succeeds with a placeholder result, so the
/// runtime tears the sandbox down instead of retrying forever; nothing runs, nothing is cached.
fn pod_gone_result(call: &CniCall) -> Result<Vec<u8>, EngineError> {
    let version = stdin_version(&call.config)?;
    let placeholder = json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": call.ifname, "sandbox": call.netns}],
        "ips": [{"address": "0.0.0.0/0", "gateway": "0.0.0.0"}],
    });
    let result =
        multus_common::result::convert(&placeholder, "1.0.0", &version).map_err(|source| {
            EngineError::ConvertResult {
                name: "pod-gone placeholder".into(),
                version: version.clone(),
                source,
            }
        })?;
    Ok(result.to_string().into_bytes())
}

fn stdin_version(config: &[u8]) -> Result<String, EngineError> {
    let v: Value =
        serde_json::from_slice(config).map_err(|e| EngineError::DecodeConfig(e.to_string()))?;
    Ok(v.get("cniVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned())
}

async fn attach(
    e: &Engine,
    call: &CniCall,
    p: Plan,
    cancel: &CancellationToken,
) -> Result<Vec<u8>, EngineError> {
    teardown_stale(e, call).await?;
    // After the stale teardown (its interfaces are gone), before anything is copied or recorded.
    check_ifnames(call, &p.delegates)
        .instrument(tracing::info_span!("ifname.check"))
        .await?;
    // After the stale teardown, which removes the old record's device-info files (same names).
    copy_device_info(e, p.device_info).await?;
    let mut record = Record {
        schema_version: SCHEMA_VERSION,
        container_id: call.container_id.clone(),
        netns: call.netns.clone(),
        ifname: call.ifname.clone(),
        pod: p.pod.as_ref().map(|pod| PodRef {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
        }),
        result_version: p.result_version.clone(),
        delegates: p
            .delegates
            .into_iter()
            .map(|d| Entry {
                delegate: d,
                state: State::Planned,
                result: None,
            })
            .collect(),
        from_upstream: false,
    };
    // Before the first exec: a crash from here on leaves a record DEL can tear down. Without
    // it nothing may run (a crash would leak what ran), so a failed write ends the ADD here.
    let mut written = Written::default();
    if let Err(err) = save_planned(e, &record, &mut written).await {
        forget_unrecorded(e, call, &record).await;
        return Err(EngineError::NotRecorded(Box::new(err)));
    }
    // Durable against a power cut while the delegates run; waited for before the answer.
    let durable = e.sync_record(&call.container_id);
    let at = Attachment {
        container_id: &call.container_id,
        netns: &call.netns,
    };
    for i in 0..record.delegates.len() {
        let d = &record.delegates[i].delegate;
        let span = tracing::info_span!("delegate", network = %d.name, ifname = %d.ifname, plugin = %d.config.first_type());
        let outcome = tokio::select! {
            biased;
            // Dropping the running delegate's future kills its plugin (kill_on_drop); the
            // rollback below DELs it too, as it may have half-attached.
            () = cancel.cancelled() => {
                tracing::warn!(container.id = %call.container_id, network = %d.name, "deadline passed; rolling back");
                rollback(e, call, &record, i).await;
                return Err(EngineError::Cancelled(call.container_id.clone()));
            }
            r = conflist::add(&e.exec, d, &at).instrument(span) => r,
        };
        let failure = match outcome {
            Ok(result) => {
                record.delegates[i].state = State::Added;
                record.delegates[i].result = Some(result);
                // On disk before the next delegate starts. The last one's line goes with the
                // ADD's final write below, still before the network-status says it is there:
                // one blocking-pool hop (two thread wake-ups) less per ADD.
                if i + 1 < record.delegates.len() {
                    save_progress(e, &record, &[i]).await.err()
                } else {
                    None
                }
            }
            Err(source) => {
                let d = &record.delegates[i].delegate;
                Some(EngineError::delegate(d, source).in_add(call, d))
            }
        };
        if let Some(err) = failure {
            rollback(e, call, &record, i).await;
            return Err(err);
        }
    }
    let last = record.delegates.len().saturating_sub(1);
    let rewritten = match default_routes(call, &mut record).await {
        Ok(rewritten) => rewritten,
        Err(err) => {
            rollback(e, call, &record, last).await;
            return Err(err);
        }
    };
    if let Err(err) = durable.wait().await {
        rollback(e, call, &record, last).await;
        return Err(err);
    }
    // The journal holds what the record does not (the last delegate's result and every result
    // the default routes rewrote, as they left them); the files Go Multus reads are written
    // now that every result is known. One blocking task for both.
    let mut unjournaled = rewritten;
    if !record.delegates.is_empty() && !unjournaled.contains(&last) {
        unjournaled.push(last);
    }
    if let Err(err) = save_final(e, &record, &mut written, &unjournaled).await {
        rollback(e, call, &record, last).await;
        return Err(err);
    }
    // Last: nothing may fail after the annotation says the interfaces are there (a rollback
    // would leave it naming interfaces that are gone).
    if let Err(err) = publish_status(e, &record, p.pod.as_ref()).await {
        rollback(e, call, &record, last).await;
        return Err(err);
    }
    tracing::info!(container.id = %call.container_id, delegates = record.delegates.len(), "ADD done");
    let result = {
        let _span = tracing::info_span!("result").entered();
        cluster_result(&record, &p.result_version)
    };
    if let Some(pod) = p.pod {
        events::added_interfaces(e.source.clone(), pod, record);
    }
    result
}

/// The device plugins' device-info files, copied for the delegates; no blocking task when
/// there are none (most pods).
async fn copy_device_info(
    e: &Engine,
    copies: Vec<plan::DeviceInfoCopy>,
) -> Result<(), EngineError> {
    if copies.is_empty() {
        return Ok(());
    }
    e.blocking_io("device-info copy", move || plan::copy_device_info(&copies))
        .instrument(tracing::info_span!("device_info.copy"))
        .await
}

/// `default-route`: after every delegate succeeded, before network-status reads the results and
/// the journal keeps the rewritten ones; returns the places of the rewritten results.
async fn default_routes(call: &CniCall, record: &mut Record) -> Result<Vec<usize>, EngineError> {
    gateway::apply(&call.netns, &mut record.delegates)
        .await
        .map_err(|err| EngineError::DefaultRoute(Box::new(err)))
}

/// Upstream's `validateIfName`, for every delegate before the first one runs (upstream checks
/// each just before its plugin, and so may have to roll back the ones before it): the netns must
/// be enterable and no delegate's interface name may already exist in it.
async fn check_ifnames(call: &CniCall, delegates: &[Delegate]) -> Result<(), EngineError> {
    let Some(first) = delegates.first() else {
        return Ok(());
    };
    let names: Vec<String> = delegates.iter().map(|d| d.ifname.clone()).collect();
    let refused = |d: &Delegate, reason: String| {
        EngineError::IfnameCheck {
            plugin: upstream_type(d).to_owned(),
            ifname: d.ifname.clone(),
            reason,
        }
        .in_add(call, d)
    };
    let existing = netns::find_existing_links(call.netns.clone().into(), names)
        .await
        .map_err(|err| match err {
            NetnsError::Open { source, .. } => refused(
                first,
                format!("no net namespace {} found: {source}", call.netns),
            ),
            // Opened, but setns(2) refused it: a regular file or a directory, not a namespace
            // (upstream's prefix, then what the path really is rather than a bare EINVAL).
            NetnsError::Setns { source, .. } => refused(
                first,
                format!(
                    "no net namespace {} found: it is not a network namespace ({source})",
                    call.netns
                ),
            ),
            // Upstream's ns.GetNS checks the fs magic too (after opening; we check before).
            not @ NetnsError::NotANetns { .. } => refused(
                first,
                format!("no net namespace {} found: {not}", call.netns),
            ),
            other => refused(first, other.to_string()),
        })?;
    match delegates.iter().find(|d| existing.contains(&d.ifname)) {
        Some(d) => Err(refused(
            d,
            format!("interface name {} already exists", d.ifname),
        )),
        None => Ok(()),
    }
}

/// `delegate.Conf.Type` as upstream prints it: a conflist's `Conf` is empty.
fn upstream_type(d: &Delegate) -> &str {
    if d.config.is_list() {
        ""
    } else {
        d.config.first_type()
    }
}

/// A second ADD for a container without a DEL in between (e.g. after a rollback that failed)
/// would overwrite the record of what is still attached; tear that down first so nothing leaks.
async fn teardown_stale(e: &Engine, call: &CniCall) -> Result<(), EngineError> {
    let Loaded::Found(mut stale) = del::load(e, call).await? else {
        return Ok(());
    };
    tracing::warn!(container.id = %call.container_id, delegates = stale.delegates.len(),
        "ADD over an existing record; tearing the old attachments down first");
    del::with_request(e, call, &mut stale);
    EngineError::from_all(del::teardown(e, &stale, &call.netns).await)?;
    // The new record replaces ours and the scratch copy, but not the old delegates' libcni
    // result files (other networks may leave other names): nothing of the old one may stay.
    del::remove(e, &stale).await
}

/// Writes the record and everything beside it, durable before it returns (hot-plug: one
/// delegate, nothing to overlap the sync with).
pub(super) async fn save(e: &Engine, record: &Record) -> Result<(), EngineError> {
    let record = record.clone();
    e.blocking(move |c| {
        c.write(&record)?;
        c.sync(&record.container_id)
    })
    .instrument(tracing::info_span!("cache.write", sync = true))
    .await
}

/// Appends that the delegates at `indexes` were added, with their results as they are now, not
/// yet durable: the ADD's progress. Nothing to do for no index.
async fn save_progress(e: &Engine, record: &Record, indexes: &[usize]) -> Result<(), EngineError> {
    if indexes.is_empty() {
        return Ok(());
    }
    let lines = Progress::of(record, indexes)?;
    let id = record.container_id.clone();
    e.blocking(move |c| c.append_progress(&id, &lines))
        .instrument(tracing::info_span!("cache.write", progress = true))
        .await
}

/// The journal line of the delegate at `last` when it was added: the final delegate's line waits
/// for the ADD's final write (and an append may have failed), so a rollback whose DELs fail and
/// keep the record would otherwise leave DEL without its result as `prevResult`. A line already
/// there is harmless written again (applying it again changes nothing). Best effort: the
/// rollback goes on either way.
async fn journal_last(e: &Engine, record: &Record, last: usize) {
    if record
        .delegates
        .get(last)
        .is_none_or(|en| en.state != State::Added)
    {
        return;
    }
    if let Err(err) = save_progress(e, record, &[last]).await {
        tracing::warn!(container.id = %record.container_id, error = %err, "journaling the last delegate before the rollback failed");
    }
}

/// The ADD's final write, in one blocking task: the journal lines of the delegates at `indexes`
/// (not yet durable, as every progress line), then what Go Multus reads beside the record.
async fn save_final(
    e: &Engine,
    record: &Record,
    written: &mut Written,
    indexes: &[usize],
) -> Result<(), EngineError> {
    let lines = if indexes.is_empty() {
        None
    } else {
        Some(Progress::of(record, indexes)?)
    };
    let (owned, mut memo) = (record.clone(), std::mem::take(written));
    *written = e
        .blocking(move |c| {
            if let Some(lines) = lines {
                c.append_progress(&owned.container_id, &lines)?;
            }
            c.write_beside(&owned, &mut memo).map(|()| memo)
        })
        .instrument(tracing::info_span!("cache.write", beside = true))
        .await?;
    Ok(())
}

/// The ADD's first write, not yet durable: the planned record, and what Go Multus reads beside
/// it (the last write, [`save_final`], rewrites of that only what changed). On an error the ADD
/// ends, so `written` is left empty then.
async fn save_planned(
    e: &Engine,
    record: &Record,
    written: &mut Written,
) -> Result<(), EngineError> {
    let (owned, mut memo) = (record.clone(), std::mem::take(written));
    *written = e
        .blocking(move |c| c.write_tracked(&owned, &mut memo).map(|()| memo))
        .instrument(tracing::info_span!("cache.write"))
        .await?;
    Ok(())
}

/// Removes what a failed first write may have left (the record without its scratch copy, a
/// temp file is removed by the writer) and the device-info files copied for it: nothing ran.
async fn forget_unrecorded(e: &Engine, call: &CniCall, record: &Record) {
    if let Err(err) = del::remove(e, record).await {
        tracing::warn!(container.id = %call.container_id, error = %err, "removing a half-written record failed");
    }
    let all: Vec<_> = record
        .delegates
        .iter()
        .map(|en| en.delegate.clone())
        .collect();
    del::remove_device_info(e, &all).await;
}

/// DELs delegates `last..=0` in reverse (the failing one too: it may have half-attached). The
/// record is removed only when every DEL succeeded; otherwise the runtime's own DEL retries it.
async fn rollback(e: &Engine, call: &CniCall, record: &Record, last: usize) {
    journal_last(e, record, last).await;
    let at = Attachment {
        container_id: &call.container_id,
        netns: &call.netns,
    };
    let mut clean = true;
    for entry in record.delegates.iter().take(last + 1).rev() {
        if let Err(err) = conflist::del(&e.exec, &entry.delegate, &at, entry.result.as_ref()).await
        {
            // Only a delegate that reported success can hold something we know of; the one whose
            // ADD failed must clean up after itself (CNI spec), and its DEL often fails for the
            // same reason its ADD did (e.g. a missing master), which must not pin the record.
            let attached = entry.state == State::Added;
            clean &= !attached;
            tracing::warn!(container.id = %call.container_id, network = %entry.delegate.name, attached, error = %err, "rollback DEL failed");
        }
    }
    // Every device-info file was copied before the first delegate ran.
    let all: Vec<_> = record
        .delegates
        .iter()
        .map(|en| en.delegate.clone())
        .collect();
    del::remove_device_info(e, &all).await;
    if clean {
        if let Err(err) = del::remove(e, record).await {
            tracing::warn!(container.id = %call.container_id, error = %err, "removing the record after rollback failed");
        }
    } else {
        // The record and its journal already say what was added, with each result as DEL
        // passes it in prevResult (a result the default routes rewrote may be journaled as it
        // was before: that is what the plugin returned).
        tracing::warn!(container.id = %call.container_id, "record kept: DEL will retry the teardown");
    }
}

pub(super) async fn publish_status(
    e: &Engine,
    record: &Record,
    pod: Option<&crate::source::PodInfo>,
) -> Result<(), EngineError> {
    let Some(pod) = pod else { return Ok(()) };
    let status = network_status(e, record)
        .instrument(tracing::info_span!("network_status.build"))
        .await?;
    // As upstream (D-12): no entry at all is no write (an earlier annotation stays as it was).
    if status.as_array().is_none_or(Vec::is_empty) {
        tracing::debug!(pod.namespace = %pod.namespace, pod.name = %pod.name, "no network-status entries; nothing written");
        return Ok(());
    }
    let annotation = netstatus::to_annotation(&status);
    match e.source.set_network_status(pod, &annotation).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::info!(pod.namespace = %pod.namespace, pod.name = %pod.name, "pod gone; network-status not written");
            Ok(())
        }
        Err(source) => Err(EngineError::NetworkStatus {
            pod: format!("{}/{}", pod.namespace, pod.name),
            source,
        }),
    }
}

/// The network-status entries of the record's results. The plugins' device-info files are read
/// on the blocking pool; without any (most pods) there is no file to read and no task to wait
/// for.
async fn network_status(e: &Engine, record: &Record) -> Result<Value, EngineError> {
    let reads_files = record
        .delegates
        .iter()
        .any(|en| netstatus::has_device_info_file(&en.delegate));
    if !reads_files {
        let refs: Vec<_> = results(record).collect();
        return Ok(netstatus::build_with(&refs, |_| None));
    }
    let entries: Vec<_> = results(record)
        .map(|(d, r)| (d.clone(), r.clone()))
        .collect();
    e.blocking_io("network-status", move || {
        let refs: Vec<_> = entries.iter().map(|(d, r)| (d, r)).collect();
        netstatus::build_with(&refs, netstatus::read_device_info)
    })
    .await
}

/// Each delegate that produced a result, with it, in ADD order.
fn results(record: &Record) -> impl Iterator<Item = (&Delegate, &Value)> {
    record
        .delegates
        .iter()
        .filter_map(|en| en.result.as_ref().map(|r| (&en.delegate, r)))
}

/// The cluster network's result (else the first one), in the runtime's cniVersion.
fn cluster_result(record: &Record, version: &str) -> Result<Vec<u8>, EngineError> {
    let chosen = record
        .delegates
        .iter()
        .find(|en| en.delegate.is_default)
        .or(record.delegates.first());
    let Some((d, result)) = chosen.and_then(|en| en.result.as_ref().map(|r| (&en.delegate, r)))
    else {
        return Err(EngineError::Internal(
            "no delegate produced a result".into(),
        ));
    };
    let converted =
        multus_common::result::convert(result, d.cni_version(), version).map_err(|source| {
            EngineError::ConvertResult {
                name: d.name.clone(),
                version: version.to_owned(),
                source,
            }
        })?;
    Ok(converted.to_string().into_bytes())
}
