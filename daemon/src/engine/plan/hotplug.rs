//! Planning one hot-plugged delegate for a running pod: a NAD selection element (gRPC) or the
//! delegate's own CNI config with upstream's `interfaceAttributes` (HTTP `/delegate`), resolved
//! with the same NAD lookup, isolation check, capability and CNI_ARGS rules as a pod's ADD.
use multus_common::CniArgs;
use multus_common::validate;
use serde_json::{Map, Value};

use super::PlanError;
use super::effective::effective;
use super::networks::{check_isolation, nad_delegate};
use crate::config::Config;
use crate::engine::netconf::{self, NetConf};
use crate::engine::selection::{self, NetworkSelection};
use crate::engine::{Delegate, runtime};
use crate::source::{ClusterSource, PodInfo};

/// The network to hot-plug.
#[derive(Debug, Clone)]
pub enum HotplugNetwork {
    /// One element of the networks annotation: a JSON object or `ns/name@ifname`.
    Selection(String),
    /// Upstream's `/delegate`: the delegate's own CNI config and the selection's values.
    Config {
        config: Value,
        selection: Box<NetworkSelection>,
    },
}

/// Resolves `network` into a delegate named for network-status, with interface `ifname` (or the
/// selection's `interface` when `ifname` is empty).
pub async fn delegate(
    config: &Config,
    source: &dyn ClusterSource,
    pod: &PodInfo,
    network: &HotplugNetwork,
    ifname: &str,
    args: &CniArgs,
) -> Result<Delegate, PlanError> {
    let (name, net, sel) = match network {
        HotplugNetwork::Selection(element) => from_selection(config, source, pod, element).await?,
        HotplugNetwork::Config { config, selection } => {
            from_config(pod, config.clone(), (**selection).clone())?
        }
    };
    let ifname = if ifname.is_empty() {
        sel.interface.clone()
    } else {
        ifname.to_owned()
    };
    if ifname.is_empty() {
        return Err(PlanError::MissingArg(
            "interface name (ifname, or the selection's \"interface\")",
        ));
    }
    validate::ifname(&ifname).map_err(|source| PlanError::InvalidIfname {
        network: name.clone(),
        source,
    })?;
    if sel.default_route.is_some() {
        return Err(PlanError::Unsupported(
            "default-route on a hot-plugged network",
        ));
    }
    if !sel.device_id.is_empty() {
        return Err(PlanError::Unsupported("deviceID on a hot-plugged network"));
    }
    Ok(Delegate {
        cni_args: runtime::cni_args(args, &pod.uid, &sel.mac, &sel.ips),
        capability_args: runtime::secondary_capabilities(&Map::new(), &sel, None),
        name,
        ifname,
        config: net,
        is_default: false,
        default_route: None,
    })
}

/// The interface a DEL or CHECK is about: `ifname`, else the selection element's `interface`
/// (read without any lookup, so it works after the NAD is gone).
pub fn ifname(network: &HotplugNetwork, ifname: &str) -> Result<String, PlanError> {
    if !ifname.is_empty() {
        return Ok(ifname.to_owned());
    }
    if let HotplugNetwork::Selection(element) = network {
        let sel = one_selection(element, "")?;
        if !sel.interface.is_empty() {
            return Ok(sel.interface);
        }
    }
    Err(PlanError::MissingArg(
        "interface name (ifname, or the selection's \"interface\")",
    ))
}

/// One element of the networks annotation, in either of its forms.
fn one_selection(element: &str, namespace: &str) -> Result<NetworkSelection, PlanError> {
    let element = element.trim();
    let annotation = if element.starts_with('{') {
        format!("[{element}]")
    } else {
        element.to_owned()
    };
    let mut all = selection::parse(&annotation, namespace)?;
    if all.len() != 1 {
        return Err(PlanError::DecodeConfig(format!(
            "hot-plug takes exactly one network selection element, got {}",
            all.len()
        )));
    }
    Ok(all.remove(0))
}

async fn from_selection(
    config: &Config,
    source: &dyn ClusterSource,
    pod: &PodInfo,
    element: &str,
) -> Result<(String, NetConf, NetworkSelection), PlanError> {
    let sel = one_selection(element, &pod.namespace)?;
    let eff = effective(config, b"{}")?;
    check_isolation(config, &eff, pod, &sel, None)?;
    let resolved = nad_delegate(config, source, pod, &sel).await?;
    if resolved.resource.is_some() {
        return Err(PlanError::Unsupported(
            "hot-plug of a NAD with a device-plugin resourceName",
        ));
    }
    Ok((resolved.name, resolved.config, sel))
}

/// Upstream's `/delegate` config: the NAD's config with its `name` defaulted to the NAD's name
/// (multus-dynamic-networks-controller), so network-status names it `<pod namespace>/<name>`.
fn from_config(
    pod: &PodInfo,
    net: Value,
    sel: NetworkSelection,
) -> Result<(String, NetConf, NetworkSelection), PlanError> {
    let network = net
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or(PlanError::MissingArg("the delegate config's \"name\""))?
        .to_owned();
    let name = format!("{}/{network}", pod.namespace);
    let mut net = netconf::check_runnable(&name, "/delegate request", net).map_err(|source| {
        PlanError::Netconf {
            context: "LoadDelegateNetConf".into(),
            source,
        }
    })?;
    if let Some(args) = &sel.cni_args {
        netconf::inject_cni_args(&mut net, args);
    }
    Ok((name, net, sel))
}
