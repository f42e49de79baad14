//! The `default-route` plan and the cached-result rewrite.
use serde_json::{Map, json};

use super::*;
use crate::engine::Delegate;
use crate::engine::cache::State;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn entry(ifname: &str, default_route: Option<Vec<&str>>, result: Option<Value>) -> Entry {
    Entry {
        delegate: Delegate {
            name: format!("ns/{ifname}"),
            ifname: ifname.into(),
            config: json!({"cniVersion": "1.0.0", "name": ifname, "type": "x"})
                .try_into()
                .unwrap(),
            capability_args: Map::new(),
            cni_args: String::new(),
            is_default: ifname == "eth0",
            default_route: default_route.map(|v| v.into_iter().map(ip).collect()),
        },
        state: State::Added,
        result,
    }
}

fn with_ips() -> Option<Value> {
    Some(
        json!({"cniVersion": "1.0.0", "interfaces": [{"name": "x"}], "ips": [{"address": "10.1.0.2/24"}]}),
    )
}

fn change(ifname: &str, family: Family, gw: Option<&str>) -> DefaultRouteChange {
    DefaultRouteChange {
        ifname: ifname.into(),
        family,
        gateway: gw.map(ip),
    }
}

#[test]
fn nothing_unless_some_delegate_asked() {
    assert_eq!(
        changes(&[
            entry("eth0", None, with_ips()),
            entry("net1", None, with_ips())
        ]),
        None
    );
}

/// Expected changes: entry index and change.
type Changes = Vec<(usize, DefaultRouteChange)>;

#[test]
fn changes_follow_upstream_filters_with_deletions_first() {
    let cases: Vec<(&str, Vec<Entry>, Changes)> = vec![
        (
            "net1 takes the v4 default: eth0 loses both families, net1 its v6",
            vec![
                entry("eth0", None, with_ips()),
                entry("net1", Some(vec!["10.2.0.1"]), with_ips()),
            ],
            vec![
                (0, change("eth0", Family::V4, None)),
                (0, change("eth0", Family::V6, None)),
                (1, change("net1", Family::V6, None)),
                (1, change("net1", Family::V4, Some("10.2.0.1"))),
            ],
        ),
        (
            "`[]` removes every default route",
            vec![entry("eth0", Some(vec![]), with_ips())],
            vec![
                (0, change("eth0", Family::V4, None)),
                (0, change("eth0", Family::V6, None)),
            ],
        ),
        (
            "one gateway per family on one delegate; a result without interfaces or ips is left alone",
            vec![
                entry("eth0", Some(vec!["fd00::1", "10.1.0.1"]), with_ips()),
                entry(
                    "net1",
                    None,
                    Some(json!({"cniVersion": "1.0.0", "dns": {}})),
                ),
                entry("net2", None, None),
            ],
            vec![
                (0, change("eth0", Family::V4, Some("10.1.0.1"))),
                (0, change("eth0", Family::V6, Some("fd00::1"))),
            ],
        ),
        (
            "legacy results count by their ip4 section",
            vec![entry(
                "net1",
                Some(vec![]),
                Some(json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.5.0.2/16"}})),
            )],
            vec![
                (0, change("net1", Family::V4, None)),
                (0, change("net1", Family::V6, None)),
            ],
        ),
    ];
    for (name, entries, want) in cases {
        assert_eq!(changes(&entries), Some(want), "{name}");
    }
}

#[test]
fn rewrite_matches_any_zero_prefix_dst_and_keeps_the_rest() {
    let routes = json!([
        {"dst": "0.0.0.0/0", "gw": "10.1.0.1"},
        {"dst": "::/0", "gw": "fd00::1"},
        {"dst": "::0/0", "gw": "fd00::2"},
        {"dst": "10.9.0.0/16", "gw": "10.1.0.9"},
        {"dst": "0.0.0.0/8"},
        {"gw": "10.1.0.7"},
    ]);
    let cases = [
        (
            change("eth0", Family::V4, None),
            json!([routes[1], routes[2], routes[3], routes[4], routes[5]]),
        ),
        (
            change("eth0", Family::V6, None),
            json!([routes[0], routes[3], routes[4], routes[5]]),
        ),
        (
            change("eth0", Family::V4, Some("10.1.0.254")),
            json!([routes[1], routes[2], routes[3], routes[4], routes[5], {"dst": "0.0.0.0/0", "gw": "10.1.0.254"}]),
        ),
        (
            change("eth0", Family::V6, Some("fd00::9")),
            json!([routes[0], routes[3], routes[4], routes[5], {"dst": "::/0", "gw": "fd00::9"}]),
        ),
    ];
    for (c, want) in cases {
        let mut r = json!({"cniVersion": "1.0.0", "ips": [], "routes": routes});
        rewrite_result(&mut r, "1.0.0", &c);
        assert_eq!(r["routes"], want, "{c:?}");
        assert_eq!(r["cniVersion"], "1.0.0");
    }
}

#[test]
fn rewrite_adds_routes_where_there_were_none_and_drops_an_emptied_list() {
    let mut r = json!({"cniVersion": "0.4.0", "ips": [{"address": "10.2.0.2/24", "version": "4"}]});
    rewrite_result(
        &mut r,
        "0.4.0",
        &change("net1", Family::V4, Some("10.2.0.1")),
    );
    assert_eq!(r["routes"], json!([{"dst": "0.0.0.0/0", "gw": "10.2.0.1"}]));
    rewrite_result(&mut r, "0.4.0", &change("net1", Family::V4, None));
    assert_eq!(r.get("routes"), None);
}

#[test]
fn rewrite_of_legacy_results_uses_the_family_section() {
    let mut r = json!({"cniVersion": "0.2.0",
        "ip4": {"ip": "10.5.0.2/16", "routes": [{"dst": "0.0.0.0/0", "gw": "10.5.0.1"}, {"dst": "10.6.0.0/16"}]}});
    rewrite_result(
        &mut r,
        "0.2.0",
        &change("net1", Family::V4, Some("10.5.0.254")),
    );
    assert_eq!(
        r["ip4"]["routes"],
        json!([{"dst": "10.6.0.0/16"}, {"dst": "0.0.0.0/0", "gw": "10.5.0.254"}])
    );
    // No ip6 section: nothing to add a v6 route to, nothing created.
    rewrite_result(
        &mut r,
        "0.2.0",
        &change("net1", Family::V6, Some("fd00::1")),
    );
    assert_eq!(r.get("ip6"), None);
    assert_eq!(r.get("routes"), None);
}

#[tokio::test]
async fn apply_without_requests_touches_nothing() {
    let mut entries = vec![entry("eth0", None, with_ips())];
    let before = entries.clone();
    // The namespace does not exist: any attempt to enter it would fail.
    apply("/run/netns/mrs-gateway-none", &mut entries)
        .await
        .unwrap();
    assert_eq!(entries, before);
    let mut asked = vec![entry("eth0", Some(vec![]), with_ips())];
    let err = apply("/run/netns/mrs-gateway-none", &mut asked)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("mrs-gateway-none"), "{err}");
}
