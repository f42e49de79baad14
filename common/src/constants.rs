//! Names and default locations shared by the shim and the daemon (upstream Multus' values, so an
//! existing node layout keeps working).

/// Default directory of the daemon socket (shim key `daemonSocketDir`, daemon key `socketDir`).
pub const DEFAULT_SOCKET_DIR: &str = "/run/multus";
/// File name of the daemon socket inside the socket directory.
pub const SOCKET_FILE: &str = "multus.sock";
/// Default daemon configuration file.
pub const DEFAULT_DAEMON_CONFIG: &str = "/etc/cni/net.d/multus.d/daemon-config.json";
/// Default cache directory (daemon key `cniDir`).
pub const DEFAULT_CNI_DIR: &str = "/var/lib/cni/multus";
/// Default directory of delegate plugin binaries (daemon key `binDir`).
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";
/// Default directory of network configuration files (daemon key `confDir`).
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/multus/net.d";

/// The largest network config (the shim's stdin, a request's `config`) the shim and the daemon
/// accept: 1 MiB, far above any real multus config, well below the 4 MiB gRPC message limit, and
/// a bound on what one runtime call can make the shim or the daemon hold in memory.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

/// The CNI environment variables (CNI spec, "Parameters").
pub mod env {
    pub const COMMAND: &str = "CNI_COMMAND";
    pub const CONTAINERID: &str = "CNI_CONTAINERID";
    pub const NETNS: &str = "CNI_NETNS";
    pub const IFNAME: &str = "CNI_IFNAME";
    pub const ARGS: &str = "CNI_ARGS";
    pub const PATH: &str = "CNI_PATH";
    /// Every variable above, in the spec's order.
    pub const ALL: [&str; 6] = [COMMAND, CONTAINERID, NETNS, IFNAME, ARGS, PATH];
}

/// Keys Kubernetes runtimes put in CNI_ARGS.
pub mod k8s_args {
    pub const POD_NAMESPACE: &str = "K8S_POD_NAMESPACE";
    pub const POD_NAME: &str = "K8S_POD_NAME";
    pub const POD_INFRA_CONTAINER_ID: &str = "K8S_POD_INFRA_CONTAINER_ID";
    pub const POD_UID: &str = "K8S_POD_UID";
}
