//! Capabilities at start: fail fast naming what the daemon needs and lacks, then keep only what
//! it and its delegates need. Must run before any thread exists (capability sets are per thread,
//! and every later thread copies the main thread's).
//!
//! Delegates are exec'd as uid 0, and for root the kernel gives an exec'd program its caller's
//! inheritable set plus the whole bounding set; so the bounding set is what actually limits a
//! delegate, and it keeps every capability delegates need. The same set stays inheritable and
//! ambient so a delegate run under another uid keeps it too.
use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};

use crate::config::Config;

/// What reference and common third-party delegates use: links, addresses and routes
/// (NET_ADMIN), raw sockets for ARP/ND announcements (NET_RAW), setns and mounts (SYS_ADMIN),
/// /proc/<pid>/ns of other processes (SYS_PTRACE), IPAM state files owned by others (DAC_*,
/// FOWNER, CHOWN), kernel modules for link types (SYS_MODULE).
const DELEGATE_CAPS: &[Capability] = &[
    Capability::CAP_NET_ADMIN,
    Capability::CAP_NET_RAW,
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_SYS_PTRACE,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_FOWNER,
    Capability::CAP_CHOWN,
    Capability::CAP_SYS_MODULE,
];

/// Why the capability sets could not be checked or reduced.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error(
        "missing capabilities {missing}: multus-daemon needs {needed} (run it privileged or add them to the container's securityContext)"
    )]
    Missing { missing: String, needed: String },
    #[error("keepCapabilities: unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("reading the {set:?} capability set: {source}")]
    Read {
        set: CapSet,
        source: caps::errors::CapsError,
    },
    #[error("setting the {set:?} capability set: {source}")]
    Set {
        set: CapSet,
        source: caps::errors::CapsError,
    },
}

/// What was kept and what could not be dropped (logged once logging is up).
#[derive(Debug, Default)]
pub struct Report {
    pub kept: Vec<String>,
    pub dropped: Vec<String>,
    /// Bounding-set entries left because CAP_SETPCAP is not held.
    pub bounding_kept: Vec<String>,
}

/// The capabilities the daemon itself cannot work without.
pub fn required(config: &Config) -> CapsHashSet {
    let mut set: CapsHashSet = [Capability::CAP_NET_ADMIN, Capability::CAP_SYS_ADMIN].into();
    if config.chroot_dir.is_some() {
        set.insert(Capability::CAP_SYS_CHROOT);
    }
    set
}

/// Everything kept: the required ones, the delegates' set and `keepCapabilities`.
pub fn kept(config: &Config) -> Result<CapsHashSet, CapsError> {
    let mut set = required(config);
    set.extend(DELEGATE_CAPS.iter().copied());
    for name in &config.keep_capabilities {
        let cap = Capability::from_str(&caps::to_canonical(name))
            .map_err(|_| CapsError::UnknownCapability(name.clone()))?;
        set.insert(cap);
    }
    Ok(set)
}

fn names(set: &CapsHashSet) -> String {
    let mut v: Vec<String> = set.iter().map(ToString::to_string).collect();
    v.sort();
    v.join(", ")
}

fn read(set: CapSet) -> Result<CapsHashSet, CapsError> {
    caps::read(None, set).map_err(|source| CapsError::Read { set, source })
}

fn write(set: CapSet, value: &CapsHashSet) -> Result<(), CapsError> {
    caps::set(None, set, value).map_err(|source| CapsError::Set { set, source })
}

/// Checks the required set against the effective one (error naming every missing one), then
/// reduces bounding, inheritable, ambient, permitted and effective to [`kept`].
pub fn apply(config: &Config) -> Result<Report, CapsError> {
    let effective = read(CapSet::Effective)?;
    let needed = required(config);
    let missing: CapsHashSet = needed.difference(&effective).copied().collect();
    if !missing.is_empty() {
        return Err(CapsError::Missing {
            missing: names(&missing),
            needed: names(&needed),
        });
    }
    let permitted = read(CapSet::Permitted)?;
    let keep: CapsHashSet = kept(config)?.intersection(&permitted).copied().collect();
    let mut report = Report {
        kept: names(&keep).split(", ").map(str::to_owned).collect(),
        dropped: permitted
            .difference(&keep)
            .map(ToString::to_string)
            .collect(),
        ..Report::default()
    };
    report.dropped.sort();
    // Bounding first: dropping from it needs CAP_SETPCAP, which the last step removes.
    let bounding = read(CapSet::Bounding)?;
    let can_setpcap = effective.contains(&Capability::CAP_SETPCAP);
    for cap in bounding.difference(&keep) {
        if !can_setpcap || caps::drop(None, CapSet::Bounding, *cap).is_err() {
            report.bounding_kept.push(cap.to_string());
        }
    }
    report.bounding_kept.sort();
    write(CapSet::Inheritable, &keep)?;
    // Ambient needs each capability permitted and inheritable, which `keep` is by now.
    write(CapSet::Ambient, &HashSet::new())?;
    for cap in &keep {
        caps::raise(None, CapSet::Ambient, *cap).map_err(|source| CapsError::Set {
            set: CapSet::Ambient,
            source,
        })?;
    }
    write(CapSet::Effective, &keep)?;
    write(CapSet::Permitted, &keep)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chroot_needs_sys_chroot_and_extras_are_parsed() {
        let mut c = Config::default();
        assert!(!required(&c).contains(&Capability::CAP_SYS_CHROOT));
        c.chroot_dir = Some("/hostroot".into());
        assert!(required(&c).contains(&Capability::CAP_SYS_CHROOT));
        c.keep_capabilities = vec!["net_bind_service".into(), "CAP_IPC_LOCK".into()];
        let k = kept(&c).unwrap();
        for cap in [
            Capability::CAP_NET_BIND_SERVICE,
            Capability::CAP_IPC_LOCK,
            Capability::CAP_NET_RAW,
        ] {
            assert!(k.contains(&cap), "{cap}");
        }
        assert!(!k.contains(&Capability::CAP_SYS_BOOT));
        c.keep_capabilities = vec!["CAP_FLY".into()];
        assert!(kept(&c).unwrap_err().to_string().contains("CAP_FLY"));
    }

    /// In a child process (capability sets are per thread; the test harness must keep its own):
    /// after `apply`, a process exec'd as root has exactly the kept set.
    #[test]
    fn applied_sets_reach_an_execd_child() {
        // The suite runs as root (the e2e tests need it too); a non-root run fails loudly rather
        // than passing without checking anything.
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "this test needs root: it applies capability sets and reads a child's"
        );
        let c = Config::default();
        let keep = kept(&c).unwrap();
        let out = std::thread::scope(|s| {
            s.spawn(|| {
                apply(&c).unwrap();
                std::process::Command::new("grep")
                    .args(["^Cap", "/proc/self/status"])
                    .output()
                    .unwrap()
            })
            .join()
            .unwrap()
        });
        let status = String::from_utf8(out.stdout).unwrap();
        let mask = |field: &str| {
            let line = status.lines().find(|l| l.starts_with(field)).unwrap();
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        let want: u64 = keep.iter().map(|c| c.bitmask()).fold(0, |a, b| a | b);
        assert_eq!(mask("CapEff:"), want, "{status}");
        assert_eq!(mask("CapBnd:") & !want, 0, "{status}");
        assert_eq!(mask("CapAmb:"), want, "{status}");
    }
}
