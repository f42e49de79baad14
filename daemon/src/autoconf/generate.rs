//! One generation of `00-multus.conf` from the daemon-config and the primary config, as
//! upstream's manager does it, except that every generation starts from the daemon-config
//! again: upstream mutates one struct, so a capability or a name the primary drops is never
//! dropped from the file until the daemon restarts.
use serde_json::Value;

use super::primary::{self, LoadError, NameError};
use super::shimconf::ShimConf;

/// Why a primary config produced no multus config.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GenerateError {
    #[error("failed to load the primary CNI configuration as a multus delegate with error '{0}'")]
    Load(#[from] LoadError),
    #[error("could not override the network name: {0}")]
    Name(#[from] NameError),
}

/// The bytes of `00-multus.conf` for the primary at `primary_path` whose decoded content is
/// `primary`. `clusterNetwork` is the primary's path as the daemon sees it, as upstream.
pub fn render(
    base: &ShimConf,
    primary_path: &str,
    primary: &Value,
) -> Result<Vec<u8>, GenerateError> {
    primary::check_version(&base.cni_version, primary)?;
    let mut conf = base.clone();
    primary_path.clone_into(&mut conf.cluster_network);
    for name in primary::capabilities(primary)? {
        conf.capabilities.insert(name, true);
    }
    if conf.override_network_name {
        conf.name = primary::network_name(primary)?;
    }
    Ok(conf.marshal())
}
