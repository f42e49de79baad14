//! One CNI request as the engine sees it: the runtime's parameters, no transport types.
use multus_common::{CniArgs, Command};

/// The parameters of one CNI invocation of the shim (CNI spec, "Parameters" and stdin).
#[derive(Debug, Clone)]
pub struct CniCall {
    pub command: Command,
    /// CNI_CONTAINERID (empty for STATUS and GC).
    pub container_id: String,
    /// CNI_NETNS (may be empty for DEL, STATUS and GC).
    pub netns: String,
    /// CNI_IFNAME: the cluster network's interface name.
    pub ifname: String,
    /// CNI_ARGS.
    pub args: CniArgs,
    /// The shim's stdin: the multus network config, byte for byte.
    pub config: Vec<u8>,
}
