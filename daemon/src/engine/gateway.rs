//! `default-route` (behaviour ref §4.9 step 5): once every delegate is attached, make the
//! requested gateways the pod's only default routes, inside the namespace and in the cached
//! results, so network-status' `gateway` and a later DEL/CHECK see what the pod really has.
//!
//! As upstream: nothing happens unless some delegate requested `default-route` (even `[]`); then
//! every delegate whose result has interfaces or IPs loses its default routes of each family it
//! did not request a gateway for, and gets one via the gateway it did request. Better than
//! upstream: default routes are recognised by their zero prefix (current kernels never send a
//! nil destination, ref §9.5; results say `::/0`, not only `::0/0`), routes without `dst` are
//! kept, and a requested gateway replaces, rather than silently joins, the link's other defaults.
use std::net::IpAddr;

use multus_common::version::SpecVersion;
use serde_json::{Value, json};

use super::cache::Entry;
use crate::netns::{self, DefaultRouteChange, Family, NetnsError};

/// The default routes could not be set.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("setting default routes in {netns}: {source}")]
    SetDefaultRoutes { netns: String, source: NetnsError },
}

/// The route changes for each entry (by index), `None` when no delegate requested
/// `default-route`. Deletions come first: IPv4 refuses a second default route of a family.
pub(super) fn changes(entries: &[Entry]) -> Option<Vec<(usize, DefaultRouteChange)>> {
    if entries.iter().all(|en| en.delegate.default_route.is_none()) {
        return None;
    }
    let mut all = Vec::new();
    for (i, en) in entries.iter().enumerate() {
        if !en.result.as_ref().is_some_and(has_interfaces_or_ips) {
            continue;
        }
        let requested = en.delegate.default_route.as_deref().unwrap_or_default();
        for family in [Family::V4, Family::V6] {
            let gateway = requested
                .iter()
                .find(|gw| Family::of(gw) == family)
                .copied();
            all.push((
                i,
                DefaultRouteChange {
                    ifname: en.delegate.ifname.clone(),
                    family,
                    gateway,
                },
            ));
        }
    }
    all.sort_by_key(|(_, c)| c.gateway.is_some());
    Some(all)
}

/// Applies the `default-route` requests of `entries` in `netns` and rewrites their results to
/// match; returns the places of the entries whose result changed. Does nothing when no delegate
/// requested it.
pub(super) async fn apply(netns: &str, entries: &mut [Entry]) -> Result<Vec<usize>, GatewayError> {
    let Some(changes) = changes(entries) else {
        return Ok(Vec::new());
    };
    let routes: Vec<_> = changes.iter().map(|(_, c)| c.clone()).collect();
    netns::apply_default_routes(netns.into(), routes)
        .await
        .map_err(|source| GatewayError::SetDefaultRoutes {
            netns: netns.to_owned(),
            source,
        })?;
    for (i, change) in &changes {
        let Some(en) = entries.get_mut(*i) else {
            continue;
        };
        if let Some(result) = en.result.as_mut() {
            // A result's own cniVersion wins over its config's (as in `result::convert`).
            let version = result
                .get("cniVersion")
                .and_then(Value::as_str)
                .unwrap_or(en.delegate.cni_version())
                .to_owned();
            rewrite_result(result, &version, change);
        }
        tracing::info!(network = %en.delegate.name, ifname = %change.ifname,
            family = ?change.family, gateway = ?change.gateway, "default route set");
    }
    Ok(changes.iter().map(|(i, _)| *i).collect())
}

/// Upstream's test: the 1.0.0 form of the result has interfaces or ips (legacy: `ip4`/`ip6`).
fn has_interfaces_or_ips(result: &Value) -> bool {
    let non_empty = |key: &str| {
        result
            .get(key)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    non_empty("interfaces")
        || non_empty("ips")
        || result.get("ip4").is_some_and(Value::is_object)
        || result.get("ip6").is_some_and(Value::is_object)
}

/// Drops the result's default routes of the change's family and, for a requested gateway,
/// appends the one route via it. `version` is the result's own `cniVersion`: before 0.3.0
/// routes live under `ip4`/`ip6`.
pub(super) fn rewrite_result(result: &mut Value, version: &str, change: &DefaultRouteChange) {
    let legacy = SpecVersion::parse(version).is_some_and(|v| v < SpecVersion::V0_3_0);
    let section = if legacy {
        let key = match change.family {
            Family::V4 => "ip4",
            Family::V6 => "ip6",
        };
        match result.get_mut(key) {
            Some(s @ Value::Object(_)) => s,
            // No address of that family: no routes of it to drop, none to add to.
            _ => return,
        }
    } else {
        result
    };
    let Some(obj) = section.as_object_mut() else {
        return;
    };
    let routes = obj.entry("routes").or_insert_with(|| json!([]));
    let Some(list) = routes.as_array_mut() else {
        return;
    };
    list.retain(|r| !is_default_of(r, change.family));
    if let Some(gw) = change.gateway {
        list.push(json!({"dst": default_dst(change.family), "gw": gw.to_string()}));
    }
    if list.is_empty() {
        obj.remove("routes");
    }
}

fn default_dst(family: Family) -> &'static str {
    match family {
        Family::V4 => "0.0.0.0/0",
        Family::V6 => "::/0",
    }
}

/// A route whose `dst` has a zero prefix and an address of `family` (`0.0.0.0/0`, `::/0`,
/// `::0/0`, ...). Routes without a parseable `dst` are not default routes of any family.
fn is_default_of(route: &Value, family: Family) -> bool {
    let Some((ip, len)) = route
        .get("dst")
        .and_then(Value::as_str)
        .and_then(|d| d.split_once('/'))
    else {
        return false;
    };
    len.trim() == "0"
        && ip
            .parse::<IpAddr>()
            .is_ok_and(|ip| Family::of(&ip) == family)
}

#[cfg(test)]
mod tests;
