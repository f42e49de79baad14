//! `ip` (iproute2) as the tests' independent witness of what the kernel really has.
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Runs `ip <args>` and fails with its stderr when it fails.
pub fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip -j <args>` and parses the JSON (an empty answer is an empty list).
pub fn ip_json(args: &[&str]) -> Result<Value> {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    let text = ip(&all)?;
    if text.trim().is_empty() {
        return Ok(Value::Array(Vec::new()));
    }
    serde_json::from_str(&text)
        .with_context(|| format!("ip -j {}: not JSON: {text}", args.join(" ")))
}

/// Interface name -> IPv4/IPv6 addresses (`a.b.c.d/len`) in namespace `ns`, loopback excluded.
pub fn addresses(ns: &str) -> Result<Vec<(String, Vec<String>)>> {
    Ok(parse_addresses(&ip_json(&["-n", ns, "addr"])?))
}

/// As [`addresses`], for a namespace known by its path only (one a runtime bind-mounted where it
/// likes, not under /var/run/netns), entered with `nsenter`.
pub fn addresses_at(netns: &std::path::Path) -> Result<Vec<(String, Vec<String>)>> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["ip", "-j", "addr"])
        .output()
        .context("running nsenter")?;
    if !out.status.success() {
        bail!(
            "nsenter --net={} ip -j addr: {}",
            netns.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v = serde_json::from_slice(&out.stdout).context("ip -j addr: not JSON")?;
    Ok(parse_addresses(&v))
}

fn parse_addresses(v: &Value) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        let name = link["ifname"].as_str().unwrap_or_default().to_owned();
        if name == "lo" {
            continue;
        }
        let addrs = link["addr_info"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["scope"] != "link")
            .map(|a| {
                format!(
                    "{}/{}",
                    a["local"].as_str().unwrap_or_default(),
                    a["prefixlen"]
                )
            })
            .collect();
        out.push((name, addrs));
    }
    out
}

/// The names of the links in namespace `ns`, loopback excluded.
pub fn links(ns: &str) -> Result<Vec<String>> {
    Ok(addresses(ns)?.into_iter().map(|(n, _)| n).collect())
}

/// The IPv4 addresses (with prefix) `addresses_at` listed for `ifname`; none if it is absent.
pub fn ipv4_of(addrs: &[(String, Vec<String>)], ifname: &str) -> Vec<String> {
    addrs
        .iter()
        .find(|(n, _)| n == ifname)
        .map(|(_, a)| a.iter().filter(|a| !a.contains(':')).cloned().collect())
        .unwrap_or_default()
}
