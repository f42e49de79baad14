//! D-15: upstream's `validateIfName` pre-check refuses an ADD whose netns cannot be entered or
//! already holds a requested interface name, before any plugin runs and before anything is
//! recorded.
use super::*;

/// Nothing ran, nothing is recorded, no network-status was written.
fn nothing_done(f: &Fixture) {
    assert!(order(f).is_empty(), "{:?}", order(f));
    assert!(record(f, "c1").is_none());
    assert!(f.source.statuses.lock().unwrap().is_empty());
}

#[tokio::test]
async fn d15_an_existing_secondary_ifname_is_refused_before_any_plugin() {
    let f = fixture(mem(), |_| {});
    let mut add = call(Command::Add, "c1");
    add.netns = private_netns(Some("net2"));
    let err = f.engine.add(add).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"error configuring pod [app/web] networking: [app/web/uid-1:sec2]: error adding container to network "sec2": DelegateAdd: cannot set "third" interface name to "net2": validateIfName: interface name net2 already exists"#
    );
    assert_eq!(err.cni_code(), 4);
    nothing_done(&f);
}

#[tokio::test]
async fn d15_a_missing_netns_is_refused_before_any_plugin() {
    let f = fixture(mem(), |_| {});
    let mut add = call(Command::Add, "c1");
    add.netns = "/run/netns/mrs-d15-no-such-namespace".into();
    let err = f.engine.add(add).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(r#"error configuring pod [app/web] networking: [app/web/uid-1:cluster]: error adding container to network "cluster": DelegateAdd: cannot set "first" interface name to "eth0": validateIfName: no net namespace /run/netns/mrs-d15-no-such-namespace found: "#),
        "{text}"
    );
    assert_eq!(err.cni_code(), 4);
    nothing_done(&f);
}
