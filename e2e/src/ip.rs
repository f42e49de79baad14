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
    let v = ip_json(&["-n", ns, "addr"])?;
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
    Ok(out)
}

/// The names of the links in namespace `ns`, loopback excluded.
pub fn links(ns: &str) -> Result<Vec<String>> {
    Ok(addresses(ns)?.into_iter().map(|(n, _)| n).collect())
}
