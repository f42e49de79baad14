//! The environment a delegate plugin runs with.
//!
//! libcni (which upstream Multus uses to run delegates) gives a plugin the caller's whole
//! environment (`os.Environ()`) with the six CNI_* parameters of the request on top. Plugins rely
//! on that: portmap, bridge/ptp `ipMasq` and firewall look up `iptables`/`ip6tables`/`nft` in
//! `PATH`; chained plugins read `KUBERNETES_SERVICE_*` or proxy variables. So a delegate gets the
//! daemon's environment minus the deny list below, then the request's CNI_* (set per exec by the
//! executor), and a `PATH` that always holds the system directories [`SYSTEM_PATH`], appended when
//! the daemon's lacks them (distroless and upstream-derived images set a `PATH` without `sbin`).
//! With `chrootDir` the same `PATH` is looked up inside the chroot, where the host's tools are.
//!
//! The deny list, and why each entry is on it:
//! * `CNI_*`: a plugin takes every CNI_* as a parameter of the current request. The request's six
//!   are set for each exec; any other left in the daemon's environment (`CNI_NETNS_OVERRIDE`, a
//!   stale `CNI_ARGS` from a debugging session, ...) would silently apply to every request
//!   without the runtime asking for it.
//! * `MULTUS_*` except `MULTUS_NODE_NAME`: these are this daemon's own config overrides
//!   (`MULTUS_<KEY>`, see `load`), which can name its credentials (`kubeconfig`,
//!   `perNodeCertificate` paths) and mean nothing to a plugin. `MULTUS_NODE_NAME` stays: upstream's
//!   DaemonSet sets it and upstream's delegates see it.
//! * `NOTIFY_SOCKET`, `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`: systemd's readiness and
//!   socket-activation variables address this process only (sd_notify(3), sd_listen_fds(3)).
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// Directories every delegate's `PATH` contains, in this order when appended.
pub const SYSTEM_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// The one `MULTUS_` variable a delegate keeps (see the module docs).
const KEPT_MULTUS: &str = "MULTUS_NODE_NAME";

/// systemd's variables for this process only.
const SYSTEMD_OWN: [&str; 4] = [
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
];

/// Whether the daemon's variable `name` is kept from delegates.
pub fn denied(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    bytes.starts_with(b"CNI_")
        || (bytes.starts_with(b"MULTUS_") && bytes != KEPT_MULTUS.as_bytes())
        || SYSTEMD_OWN.iter().any(|own| bytes == own.as_bytes())
}

/// The daemon's environment as every delegate gets it (before the request's CNI_*): `vars`
/// without the denied ones, `PATH` completed by [`complete_path`] (and set when absent).
pub fn base(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    let mut path = None;
    let mut out: Vec<(OsString, OsString)> = vars
        .into_iter()
        .filter(|(name, _)| !denied(name))
        .filter_map(|(name, value)| {
            if name == "PATH" {
                path = Some(value);
                None
            } else {
                Some((name, value))
            }
        })
        .collect();
    out.push(("PATH".into(), complete_path(path.as_deref())));
    out
}

/// `path` with each [`SYSTEM_PATH`] directory it lacks appended, in order; the system
/// directories alone when `path` is unset or empty. Entries already there keep their place;
/// empty entries (the plugin's working directory, to execvp) are dropped.
pub fn complete_path(path: Option<&OsStr>) -> OsString {
    let given: Vec<&[u8]> = path
        .map(|p| {
            p.as_bytes()
                .split(|b| *b == b':')
                .filter(|d| !d.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let has = |dir: &str| {
        given
            .iter()
            .any(|g| trim_slash(g) == trim_slash(dir.as_bytes()))
    };
    let mut out: Vec<u8> = given.join(&b':');
    for dir in SYSTEM_PATH.iter().filter(|d| !has(d)) {
        if !out.is_empty() {
            out.push(b':');
        }
        out.extend_from_slice(dir.as_bytes());
    }
    OsStr::from_bytes(&out).to_owned()
}

fn trim_slash(dir: &[u8]) -> &[u8] {
    match dir {
        [rest @ .., b'/'] if !rest.is_empty() => rest,
        _ => dir,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    #[test]
    fn path_gets_the_system_dirs_it_lacks_appended() {
        let full = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        let cases = [
            (None, full.to_owned()),
            (Some(""), full.to_owned()),
            (Some(full), full.to_owned()),
            // The upstream image's PATH: its own dir first, sbin appended.
            (
                Some("/usr/src/multus-cni/bin:/usr/local/bin:/usr/bin:/bin"),
                "/usr/src/multus-cni/bin:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
                    .to_owned(),
            ),
            (
                Some("/bin/:/opt/x::/usr/bin"),
                "/bin/:/opt/x:/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin".to_owned(),
            ),
        ];
        for (given, want) in cases {
            assert_eq!(
                complete_path(given.map(OsStr::new)),
                OsString::from(&want),
                "{given:?}"
            );
        }
    }

    #[test]
    fn the_daemon_environment_passes_minus_the_deny_list() {
        let got = base(vars(&[
            ("HOME", "/root"),
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("CNI_NETNS_OVERRIDE", "1"),
            ("CNI_COMMAND", "DEL"),
            ("MULTUS_NODE_NAME", "node-1"),
            ("MULTUS_LOGLEVEL", "debug"),
            ("MULTUS_KUBECONFIG", "/etc/secret/kubeconfig"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("LISTEN_FDS", "1"),
            ("PATH", "/usr/bin:/bin"),
        ]));
        let want = vars(&[
            ("HOME", "/root"),
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("MULTUS_NODE_NAME", "node-1"),
            (
                "PATH",
                "/usr/bin:/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin",
            ),
        ]);
        assert_eq!(got, want);
    }
}
