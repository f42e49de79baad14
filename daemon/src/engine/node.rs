//! The node-wide verbs of CNI 1.1: STATUS (can this node attach networks?) and GC (release what
//! the runtime no longer knows about).
//!
//! GC works from our records, not from a pod: every record whose container is not in the
//! runtime's `cni.dev/valid-attachments` is torn down like a DEL and removed; then each distinct
//! delegate network seen in the records gets GC (if its config is >= 1.1.0) with the attachments
//! of the records that remain. Networks never recorded on this node get no GC. A GC without the
//! list (missing or `null`) collects nothing and succeeds, as upstream's.
use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use super::cache::{Loaded, Record};
use super::conflist::{self, ValidAttachment};
use super::del::teardown;
use super::plan;
use super::{CniCall, Delegate, Engine, EngineError};

pub(super) async fn status(e: &Engine, call: CniCall) -> Result<(), EngineError> {
    if let Some(path) = e.readiness.missing_indicator().await {
        return Err(EngineError::Unavailable(format!(
            "readiness indicator file {} does not exist",
            path.display()
        )));
    }
    let synced = e.readiness.synced();
    if !synced.is_synced() {
        return Err(EngineError::Unavailable(format!(
            "{} not synced with the Kubernetes API yet",
            synced.pending()
        )));
    }
    let Some((name, config)) = plan::cluster_network(&e.config, &*e.source, &call.config).await?
    else {
        return Ok(());
    };
    let d = Delegate {
        name,
        ifname: String::new(),
        config,
        capability_args: Map::new(),
        cni_args: String::new(),
        is_default: true,
        default_route: None,
    };
    conflist::status(&e.exec, &d)
        .await
        .map_err(|s| EngineError::delegate(&d, s))
}

/// The runtime's `cni.dev/valid-attachments`; `None` when the key is missing or `null`.
///
/// libcni sends `null` when the runtime passes no list, and upstream never reads the key (it
/// takes the attachments from its own cache), so its GC succeeds either way. Without a list we
/// cannot tell stale from live, so nothing is collected; an empty list (`[]`) is the runtime
/// saying that no attachment is live, and collects every record.
fn valid_attachments(config: &[u8]) -> Result<Option<Vec<ValidAttachment>>, EngineError> {
    let v: Value =
        serde_json::from_slice(config).map_err(|e| EngineError::DecodeConfig(e.to_string()))?;
    match v.get("cni.dev/valid-attachments") {
        None | Some(Value::Null) => Ok(None),
        Some(list) => serde_json::from_value(list.clone())
            .map(Some)
            .map_err(|err| EngineError::InvalidConfig(format!("cni.dev/valid-attachments: {err}"))),
    }
}

pub(super) async fn gc(e: &Engine, call: CniCall) -> Result<(), EngineError> {
    let Some(valid) = valid_attachments(&call.config)? else {
        tracing::info!("GC without cni.dev/valid-attachments: nothing collected");
        return Ok(());
    };
    let live: HashSet<&str> = valid.iter().map(|a| a.container_id.as_str()).collect();
    // For the stale-state reconcile: which containers the runtime knew, and when.
    let ids: Vec<String> = live.iter().map(|id| (*id).to_owned()).collect();
    if let Err(err) = e
        .blocking(move |c| c.remember_valid(ids.iter().map(String::as_str)))
        .await
    {
        tracing::warn!(error = %err, "GC valid list not remembered");
    }
    let mut errors = Vec::new();
    let mut networks: BTreeMap<String, (Delegate, Vec<ValidAttachment>)> = BTreeMap::new();
    for id in e.blocking(|c| c.list()).await? {
        let is_live = live.contains(id.as_str());
        let Some(record) = (if is_live {
            read(e, &id).await
        } else {
            collect(e, &id, &mut errors).await
        }) else {
            continue;
        };
        for entry in &record.delegates {
            let key = entry.delegate.config.to_value().to_string();
            let slot = networks
                .entry(key)
                .or_insert_with(|| (entry.delegate.clone(), Vec::new()));
            if is_live {
                slot.1.push(ValidAttachment {
                    container_id: id.clone(),
                    ifname: entry.delegate.ifname.clone(),
                });
            }
        }
    }
    for (d, attachments) in networks.values() {
        if let Err(source) = conflist::gc(&e.exec, d, attachments).await {
            errors.push(EngineError::delegate(d, source));
        }
    }
    EngineError::from_all(errors)
}

async fn read(e: &Engine, id: &str) -> Option<Record> {
    let id = id.to_owned();
    // Upstream-format records name no interface for the cluster network; runtimes use eth0.
    match e
        .blocking(move |c| c.read(&id, "eth0", &Default::default()))
        .await
    {
        Ok(Loaded::Found(r)) => Some(r),
        Ok(_) => None,
        Err(err) => {
            tracing::warn!(error = %err, "GC: record not readable");
            None
        }
    }
}

/// Tears down a stale container's attachments (as DEL, with the recorded netns) and drops its
/// record; returns the record so its networks still get GC.
pub(super) async fn collect(e: &Engine, id: &str, errors: &mut Vec<EngineError>) -> Option<Record> {
    let _guard = match e.admission.lock_container(id).await {
        Ok((g, _)) => g,
        Err(err) => {
            errors.push(err.into());
            return None;
        }
    };
    let record = read(e, id).await?;
    let failed = teardown(e, &record, &record.netns).await;
    tracing::info!(container.id = %id, failures = failed.len(), "GC: stale container torn down");
    if failed.is_empty() || !e.config.retry_delete_on_error {
        let owned = record.clone();
        if let Err(err) = e.blocking(move |c| c.remove(&owned)).await {
            errors.push(err);
        }
    }
    errors.extend(failed);
    Some(record)
}
