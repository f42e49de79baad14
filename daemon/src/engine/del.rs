//! CNI DEL and CHECK: driven only by the container's cache record (no cluster source, no NAD),
//! so they work when the pod, its NADs or the API server are gone.
//!
//! Decisions: DEL with no record succeeds (nothing was attached, or it is already torn down:
//! DEL must be idempotent); DEL with a corrupt record succeeds with a warning (the file is
//! quarantined by `cache`, nothing in it can drive a teardown). CHECK with no record fails with
//! CNI code 3 (unknown container): the runtime asks about an attachment we do not have.
mod request;

use multus_common::validate;
use multus_common::version::SpecVersion;
use tracing::Instrument;

use super::cache::{Loaded, Record, State};
use super::conflist::{self, Attachment};
use super::netconf::capability;
use super::{CniCall, Engine, EngineError};

pub(super) async fn load(e: &Engine, call: &CniCall) -> Result<Loaded, EngineError> {
    let (id, ifname, args) = (
        call.container_id.clone(),
        call.ifname.clone(),
        call.args.clone(),
    );
    e.blocking(move |c| c.read(&id, &ifname, &args))
        .instrument(tracing::info_span!("cache.read"))
        .await
}

/// Removes the record and what was written beside it (see `Cache::remove`).
pub(super) async fn remove(e: &Engine, record: &Record) -> Result<(), EngineError> {
    let owned = record.clone();
    e.blocking(move |c| c.remove(&owned))
        .instrument(tracing::info_span!("cache.remove"))
        .await
}

pub(super) async fn del(e: &Engine, call: CniCall) -> Result<(), EngineError> {
    validate::id("container id", &call.container_id)?;
    let (_guard, _) = e
        .admission
        .lock_container(&call.container_id)
        .instrument(tracing::info_span!("admission.wait", queue = "container"))
        .await?;
    let mut record = match load(e, &call).await? {
        Loaded::Found(r) => r,
        Loaded::Missing => {
            tracing::debug!(container.id = %call.container_id, "DEL: nothing recorded");
            return Ok(());
        }
        Loaded::Corrupt(path) => {
            tracing::warn!(container.id = %call.container_id, quarantined = %path.display(),
                "DEL: record unreadable; nothing can be torn down from it");
            return Ok(());
        }
    };
    if record.from_upstream {
        tracing::info!(container.id = %call.container_id, "DEL from an upstream Multus record");
    }
    with_request(e, &call, &mut record);
    let errors = teardown(e, &record, &call.netns).await;
    if errors.is_empty() || !e.config.retry_delete_on_error {
        remove(e, &record).await?;
    }
    if errors.is_empty() {
        tracing::info!(container.id = %call.container_id, delegates = record.delegates.len(), "DEL done");
    }
    EngineError::from_all(errors)
}

/// What the request adds to a cached record before its teardown (D-5, see `request`). A stdin
/// that is not JSON carries no runtimeConfig; the teardown goes on without it.
pub(super) fn with_request(e: &Engine, call: &CniCall, record: &mut Record) {
    let _span = tracing::info_span!("del.request").entered();
    let stdin: serde_json::Value = serde_json::from_slice(&call.config).unwrap_or_default();
    request::apply(record, &stdin, &e.config.device_info_dir);
}

/// DEL of every delegate in reverse, each with its cached result; returns every failure.
///
/// Delegates run one after the other and the record is rewritten after each, so of the entries
/// still `planned` (an ADD that crashed or is being torn down) only the first may have run; the
/// ones after it never started. They are DELed too (harmless when nothing ran, and the CNI spec
/// asks plugins to accept it), but a plugin refusing to DEL what it never made (host-device:
/// "Link not found") must not fail the runtime's DEL after a crash.
pub(super) async fn teardown(e: &Engine, record: &Record, netns: &str) -> Vec<EngineError> {
    let at = Attachment {
        container_id: &record.container_id,
        netns,
    };
    let first_planned = record
        .delegates
        .iter()
        .position(|en| en.state == State::Planned);
    let mut errors = Vec::new();
    for (i, entry) in record.delegates.iter().enumerate().rev() {
        let d = &entry.delegate;
        let span = tracing::info_span!("delegate", network = %d.name, ifname = %d.ifname, plugin = %d.config.first_type());
        match conflist::del(&e.exec, d, &at, entry.result.as_ref())
            .instrument(span)
            .await
        {
            Ok(()) => remove_device_info(e, std::slice::from_ref(d)).await,
            Err(source) if first_planned.is_some_and(|f| i > f) => {
                tracing::info!(container.id = %record.container_id, network = %d.name, error = %source,
                    "DEL of a delegate whose ADD never started failed; ignored");
                remove_device_info(e, std::slice::from_ref(d)).await;
            }
            Err(source) => {
                tracing::warn!(container.id = %record.container_id, network = %d.name, error = %source, "DEL failed");
                errors.push(EngineError::delegate(d, source));
            }
        }
    }
    errors
}

/// Removes the device-info files written for the delegates (upstream removes them on DEL too),
/// off the async workers. Best effort: a file that cannot be removed is only logged.
pub(super) async fn remove_device_info(e: &Engine, delegates: &[super::Delegate]) {
    let paths: Vec<String> = delegates
        .iter()
        .filter_map(|d| d.capability_args.get(capability::DEVICE_INFO_FILE))
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    if paths.is_empty() {
        return;
    }
    let removed = e.blocking_io("device-info removal", move || {
        for path in &paths {
            if let Err(e) = std::fs::remove_file(path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::debug!(path = %path, error = %e, "device-info file not removed");
            }
        }
    });
    if let Err(err) = removed
        .instrument(tracing::info_span!("device_info.remove"))
        .await
    {
        tracing::debug!(error = %err, "device-info files not removed");
    }
}

/// CHECK on every recorded delegate, in ADD order. Delegates whose config predates 0.4.0 cannot
/// be checked and are skipped (failing the pod's CHECK for them would report a healthy
/// attachment as broken).
pub(super) async fn check(e: &Engine, call: CniCall) -> Result<(), EngineError> {
    validate::id("container id", &call.container_id)?;
    let (_guard, _) = e.admission.lock_container(&call.container_id).await?;
    let record = match load(e, &call).await? {
        Loaded::Found(r) => r,
        Loaded::Missing | Loaded::Corrupt(_) => {
            return Err(EngineError::UnknownContainer(call.container_id));
        }
    };
    let at = Attachment {
        container_id: &call.container_id,
        netns: &call.netns,
    };
    for entry in &record.delegates {
        let d = &entry.delegate;
        if entry.state != State::Added {
            return Err(EngineError::Internal(format!(
                "delegate {:?} ({}) was never fully added",
                d.name, d.ifname
            )));
        }
        if SpecVersion::parse(d.cni_version()).is_none_or(|v| v < SpecVersion::V0_4_0) {
            tracing::debug!(network = %d.name, version = %d.cni_version(), "CHECK skipped: config predates 0.4.0");
            continue;
        }
        conflist::check(&e.exec, d, &at, entry.result.as_ref())
            .await
            .map_err(|s| EngineError::delegate(d, s))?;
    }
    Ok(())
}
