//! Root tests of the namespace operations in namespaces of their own (test-only 10.x and fd00::
//! addresses on veth pairs inside the namespace; nothing leaves the namespace).
use std::process::Command as Proc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

/// A network namespace of this test's own, removed even when the test fails.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "mrs-nsr-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        Netns(name)
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.0))
    }
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.0];
        all.extend_from_slice(args);
        ip(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Proc::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Proc::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two veth links (peers in the same namespace): d0 with 10.77.0.2/24 and fd00:77::2/64 and default routes via .1 and ::1,
/// d1 with 10.78.0.2/24.
fn two_links(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    for (link, v4) in [("d0", "10.77.0.2/24"), ("d1", "10.78.0.2/24")] {
        let peer = format!("p{link}");
        ns.ip(&["link", "add", link, "type", "veth", "peer", "name", &peer]);
        ns.ip(&["link", "set", &peer, "up"]);
        ns.ip(&["addr", "add", v4, "dev", link]);
        ns.ip(&["link", "set", link, "up"]);
    }
    ns.ip(&["addr", "add", "fd00:77::2/64", "dev", "d0", "nodad"]);
    ns.ip(&["route", "add", "default", "via", "10.77.0.1", "dev", "d0"]);
    ns.ip(&[
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fd00:77::1",
        "dev",
        "d0",
    ]);
    ns
}

fn defaults(ns: &Netns, family: Family) -> Vec<Option<IpAddr>> {
    routes(&ns.path(), family)
        .unwrap()
        .into_iter()
        .filter(Route::is_default)
        .map(|r| r.gateway)
        .collect()
}

fn ipa(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn lists_zero_prefix_default_routes_of_the_main_table() {
    let ns = two_links("list");
    let v4 = routes(&ns.path(), Family::V4).unwrap();
    let default: Vec<_> = v4.iter().filter(|r| r.is_default()).collect();
    assert_eq!(default.len(), 1, "{v4:?}");
    assert_eq!(default[0].gateway, Some(ipa("10.77.0.1")));
    // The connected routes are there, the local table's are not.
    assert!(
        v4.iter()
            .any(|r| r.dst == Some(ipa("10.78.0.0")) && r.dst_prefix_len == 24)
    );
    assert!(
        !v4.iter()
            .any(|r| r.dst == Some(ipa("10.77.0.2")) && r.dst_prefix_len == 32)
    );
    assert_eq!(defaults(&ns, Family::V6), vec![Some(ipa("fd00:77::1"))]);
}

#[test]
fn moves_the_default_route_and_deletes_per_family() {
    let ns = two_links("move");
    let changes = [
        DefaultRouteChange {
            ifname: "d0".into(),
            family: Family::V4,
            gateway: None,
        },
        DefaultRouteChange {
            ifname: "d1".into(),
            family: Family::V4,
            gateway: Some(ipa("10.78.0.1")),
        },
    ];
    set_default_routes(&ns.path(), &changes).unwrap();
    assert_eq!(defaults(&ns, Family::V4), vec![Some(ipa("10.78.0.1"))]);
    // IPv6 untouched: no change named that family.
    assert_eq!(defaults(&ns, Family::V6), vec![Some(ipa("fd00:77::1"))]);
    // Again: idempotent (the requested route exists, nothing left to delete).
    set_default_routes(&ns.path(), &changes).unwrap();
    assert_eq!(defaults(&ns, Family::V4), vec![Some(ipa("10.78.0.1"))]);
    let v6 = [DefaultRouteChange {
        ifname: "d0".into(),
        family: Family::V6,
        gateway: None,
    }];
    set_default_routes(&ns.path(), &v6).unwrap();
    assert!(defaults(&ns, Family::V6).is_empty());
}

#[test]
fn a_requested_gateway_replaces_another_default_on_the_same_link() {
    let ns = two_links("repl");
    let change = [DefaultRouteChange {
        ifname: "d0".into(),
        family: Family::V4,
        gateway: Some(ipa("10.77.0.254")),
    }];
    set_default_routes(&ns.path(), &change).unwrap();
    assert_eq!(defaults(&ns, Family::V4), vec![Some(ipa("10.77.0.254"))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_callers_stay_in_their_own_namespace() {
    let ns = two_links("async");
    let before = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let change = vec![
        DefaultRouteChange {
            ifname: "d0".into(),
            family: Family::V4,
            gateway: None,
        },
        DefaultRouteChange {
            ifname: "d1".into(),
            family: Family::V4,
            gateway: Some(ipa("10.78.0.1")),
        },
    ];
    apply_default_routes(ns.path(), change).await.unwrap();
    assert_eq!(
        std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        before
    );
    assert_eq!(defaults(&ns, Family::V4), vec![Some(ipa("10.78.0.1"))]);
}

#[test]
fn errors_name_what_failed() {
    let missing = routes(Path::new("/run/netns/mrs-no-such-namespace"), Family::V4);
    assert!(
        matches!(missing, Err(NetnsError::Open { .. })),
        "{missing:?}"
    );
    let ns = two_links("err");
    let change = [DefaultRouteChange {
        ifname: "nope0".into(),
        family: Family::V4,
        gateway: None,
    }];
    let r = set_default_routes(&ns.path(), &change);
    assert!(
        matches!(r, Err(NetnsError::LinkNotFound(ref n)) if n == "nope0"),
        "{r:?}"
    );
    // A gateway no connected route reaches: the kernel refuses, the error says which route.
    let change = [DefaultRouteChange {
        ifname: "d1".into(),
        family: Family::V4,
        gateway: Some(ipa("10.99.0.1")),
    }];
    let r = set_default_routes(&ns.path(), &change);
    assert!(matches!(r, Err(NetnsError::AddRoute { .. })), "{r:?}");
    // IPv4 answers EEXIST for a default via another link: not taken for success.
    let change = [DefaultRouteChange {
        ifname: "d1".into(),
        family: Family::V4,
        gateway: Some(ipa("10.78.0.1")),
    }];
    let r = set_default_routes(&ns.path(), &change);
    assert!(matches!(r, Err(NetnsError::OtherDefault { .. })), "{r:?}");
    assert_eq!(defaults(&ns, Family::V4), vec![Some(ipa("10.77.0.1"))]);
}

#[test]
fn a_path_that_is_no_namespace_is_refused_without_being_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let fifo = tmp.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Opening the FIFO for reading would block until a writer came: it must not be opened.
    for path in [&file, &fifo] {
        let err = existing_links(path, &[]).unwrap_err();
        assert!(matches!(err, NetnsError::NotANetns { .. }), "{err}");
        assert!(
            err.to_string().contains("is not a network namespace"),
            "{err}"
        );
    }
    // A real one, by its bind mount and through /proc's magic link, is accepted.
    let ns = Netns::new("isns");
    assert!(existing_links(&ns.path(), &["lo".into()]).unwrap() == ["lo"]);
    let proc_link = PathBuf::from(format!("/proc/{}/ns/net", std::process::id()));
    assert!(existing_links(&proc_link, &[]).is_ok());
}
