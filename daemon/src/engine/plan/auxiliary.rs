//! Upstream's auxiliary CNI chain (D-4, `auxiliaryCNIChainName`): one more delegate after every
//! network of the pod, a conflist that starts with `passthru` (which only hands an empty result
//! on) followed by the plugin files of `<dir of clusterNetwork>/<chain name>/*.conf`. Vendors
//! use it to run their own chained plugins (sysctls, firewall, service mesh) once per pod.
//!
//! As upstream: `clusterNetwork` must be a path (an error otherwise); a chain that cannot be
//! loaded is logged and left out, and so is one whose directory adds no plugin; its interface
//! is `net<position>` and it has no selection, device or network-status entry of its own (its
//! result is passthru's empty one).
use std::path::Path;

use super::PlanError;
use super::effective::Effective;
use super::networks::{Pending, Resolved};
use crate::engine::netconf;

/// The chain's delegate, when one is configured and loads.
pub(super) async fn chain(eff: &Effective) -> Result<Option<Pending>, PlanError> {
    let Some(name) = eff.auxiliary_chain.clone() else {
        return Ok(None);
    };
    let cluster = eff.cluster_network.clone().unwrap_or_default();
    if !cluster.contains('/') {
        return Err(PlanError::AuxiliaryChainNeedsPath(cluster));
    }
    let dir = Path::new(&cluster)
        .parent()
        .unwrap_or(Path::new("/"))
        .to_owned();
    let version = eff.result_version.clone();
    let chain_name = name.clone();
    let loaded =
        crate::engine::blocking(move || netconf::auxiliary_chain(&chain_name, &version, &dir))
            .await
            .map_err(|source| PlanError::Task {
                what: "auxiliary chain",
                source,
            })?;
    match loaded {
        Ok(Some(config)) => Ok(Some(Pending::new(
            Resolved {
                name,
                config,
                resource: None,
            },
            None,
            false,
        ))),
        Ok(None) => {
            tracing::debug!(chain = %name, "auxiliary chain adds no plugin; not attached");
            Ok(None)
        }
        Err(err) => {
            tracing::warn!(chain = %name, error = %err, "auxiliary chain not loaded; not attached");
            Ok(None)
        }
    }
}
