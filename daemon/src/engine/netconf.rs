//! Turning a network reference into a CNI config: a NAD's `spec.config`, a network name looked up
//! in `confDir`, or a file or directory path (`clusterNetwork`/`defaultNetworks` values), each
//! checked to be a runnable conf or conflist before anything runs.
mod model;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use self::model::{Invalid, NetConf, PluginConf, capability};
use crate::source::NadInfo;

/// Extensions of network config files, as libcni's `ConfFiles`.
const CONF_EXTENSIONS: [&str; 3] = ["conf", "json", "conflist"];
/// A config file larger than this is refused rather than read into memory.
const MAX_CONF_BYTES: u64 = 1 << 20;

/// A network could not be turned into a usable CNI config. Every variant names the network and,
/// where there is one, the file.
#[derive(Debug, thiserror::Error)]
pub enum NetconfError {
    #[error("network {network}: config from {origin} is not valid JSON: {reason}")]
    Parse {
        network: String,
        origin: String,
        reason: String,
    },
    #[error("network {network}: config from {origin} is not a JSON object")]
    NotAnObject { network: String, origin: String },
    #[error(
        "network {network}: error loading CNI config {origin}: no 'type'; perhaps this is supposed to be a .conflist?"
    )]
    MissingType { network: String, origin: String },
    #[error("network {network}: conflist {origin} has no plugins")]
    NoPlugins { network: String, origin: String },
    #[error("network {network}: conflist {origin}: plugin {index} has no 'type'")]
    PluginMissingType {
        network: String,
        origin: String,
        index: usize,
    },
    #[error("network {network}: cannot read {path}: {source}")]
    Read {
        network: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network {network}: {path} is larger than {MAX_CONF_BYTES} bytes")]
    TooLarge { network: String, path: PathBuf },
    #[error("No networks found in {dir} (looking for network {network})")]
    NoNetworks { network: String, dir: PathBuf },
    #[error("no network available in the name {network} in cni dir {dir}")]
    NotInDir { network: String, dir: PathBuf },
}

/// The CNI config of a NAD. An empty `spec.config` means "the file in `conf_dir` whose network
/// name is the NAD's name"; otherwise the spec must be a JSON object, and gets `name` = the NAD
/// name when it has none (or an empty one).
pub fn from_nad(nad: &NadInfo, conf_dir: &Path) -> Result<NetConf, NetconfError> {
    let network = format!("{}/{}", nad.namespace, nad.name);
    if nad.config.trim().is_empty() {
        return from_conf_dir(&nad.name, conf_dir);
    }
    let origin = format!("network-attachment-definition {network}");
    let mut config = parse_object(&network, &origin, nad.config.as_bytes())?;
    if let Some(obj) = config.as_object_mut() {
        let named = obj
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !named {
            obj.insert("name".into(), nad.name.clone().into());
        }
    }
    check_runnable(&network, &origin, config)
}

/// The config in `conf_dir` whose CNI network `name` is `network`: files `.conf`, `.json` and
/// `.conflist`, in file-name order, first match wins.
///
/// Upstream stops at the first unreadable file in the directory; a broken file that is not the
/// one asked for is skipped here (and logged), so one bad file cannot take every network down.
pub fn from_conf_dir(network: &str, conf_dir: &Path) -> Result<NetConf, NetconfError> {
    let files = conf_files(network, conf_dir)?;
    if files.is_empty() {
        return Err(NetconfError::NoNetworks {
            network: network.into(),
            dir: conf_dir.into(),
        });
    }
    for file in files {
        let config = match load_file(network, &file) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "skipping unreadable network config");
                continue;
            }
        };
        if config.get("name").and_then(Value::as_str) == Some(network) {
            return check_runnable(network, &file.display().to_string(), config);
        }
    }
    Err(NetconfError::NotInDir {
        network: network.into(),
        dir: conf_dir.into(),
    })
}

/// A `clusterNetwork`/`defaultNetworks` value containing '/': a conf or conflist file, or a
/// directory whose first config file (sorted) is used.
pub fn from_path(path: &Path) -> Result<NetConf, NetconfError> {
    let network = path.display().to_string();
    let meta = fs::metadata(path).map_err(|source| NetconfError::Read {
        network: network.clone(),
        path: path.into(),
        source,
    })?;
    let file = if meta.is_dir() {
        conf_files(&network, path)?
            .into_iter()
            .next()
            .ok_or_else(|| NetconfError::NoNetworks {
                network: network.clone(),
                dir: path.into(),
            })?
    } else {
        path.to_path_buf()
    };
    let mut config = load_file(&network, &file)?;
    if file.extension().is_some_and(|e| e == "conflist") {
        append_subdirectory_plugins(&network, &file, &mut config)?;
    }
    check_runnable(&network, &file.display().to_string(), config)
}

/// libcni's subdirectory chaining: the `*.conf` files of `<dir of the conflist>/<its name>/`, in
/// file-name order, are appended to its plugins, unless it sets `loadOnlyInlinedPlugins`. This
/// runs on the file's JSON before it is checked: the list may be empty until these are added.
fn append_subdirectory_plugins(
    network: &str,
    file: &Path,
    config: &mut Value,
) -> Result<(), NetconfError> {
    let inline_only = config
        .get("loadOnlyInlinedPlugins")
        .and_then(Value::as_bool);
    let name = config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // The name becomes a path component: only libcni's network-name alphabet may.
    if inline_only == Some(true) || multus_common::validate::id("network name", name).is_err() {
        return Ok(());
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let extra = subdirectory_plugins(network, dir, name)?;
    if let Some(plugins) = config.get_mut("plugins").and_then(Value::as_array_mut) {
        plugins.extend(extra);
    }
    Ok(())
}

/// The plugin configs of `<dir>/<name>/*.conf`, in file-name order (none when there is no such
/// directory), as libcni's `NetworkPluginConfsFromFiles`. `name` must already be a valid
/// network name.
fn subdirectory_plugins(network: &str, dir: &Path, name: &str) -> Result<Vec<Value>, NetconfError> {
    let subdir = dir.join(name);
    if !subdir.is_dir() {
        return Ok(Vec::new());
    }
    let mut extra = Vec::new();
    for path in conf_files(network, &subdir)? {
        if path.extension().is_some_and(|e| e == "conf") {
            extra.push(load_file(network, &path)?);
        }
    }
    Ok(extra)
}

/// The plugin upstream puts first in an auxiliary chain (`multus.go:CmdAdd`).
pub const PASSTHRU: &str = "passthru";

/// Upstream's auxiliary CNI chain (`auxiliaryCNIChainName`, `multus.go:CmdAdd` and
/// `k8sclient.go:loadSubdirectoryChain`): the conflist `{"cniVersion": <the multus config's>,
/// "name": <chain>, "plugins": [{"type": "passthru", "name": "passthru-cni"}]}` with the
/// `*.conf` plugin files of `<dir>/<chain>/` appended, `dir` being the cluster network file's
/// directory. `None` when the directory adds no plugin (upstream attaches nothing then).
pub fn auxiliary_chain(
    chain: &str,
    cni_version: &str,
    dir: &Path,
) -> Result<Option<NetConf>, NetconfError> {
    let origin = dir.join(chain).display().to_string();
    if multus_common::validate::id("network name", chain).is_err() {
        return Err(NetconfError::Parse {
            network: chain.into(),
            origin,
            reason: format!("invalid network config name: {chain}"),
        });
    }
    let extra = subdirectory_plugins(chain, dir, chain)?;
    if extra.is_empty() {
        return Ok(None);
    }
    let mut plugins = vec![serde_json::json!({"type": PASSTHRU, "name": "passthru-cni"})];
    plugins.extend(extra);
    let config = serde_json::json!({"cniVersion": cni_version, "name": chain, "plugins": plugins});
    check_runnable(chain, &origin, config).map(Some)
}

/// An inline `delegates` entry of the multus config.
pub fn from_inline(index: usize, config: &Value) -> Result<NetConf, NetconfError> {
    let network = config
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)")
        .to_owned();
    check_runnable(&network, &format!("delegates[{index}]"), config.clone())
}

/// The typed config, once the JSON is a runnable conf or conflist (see [`NetConf::from_value`]).
pub fn check_runnable(network: &str, origin: &str, config: Value) -> Result<NetConf, NetconfError> {
    let (network, origin) = (network.to_owned(), origin.to_owned());
    NetConf::from_value(config).map_err(|invalid| match invalid {
        Invalid::NotAnObject => NetconfError::NotAnObject { network, origin },
        Invalid::MissingType => NetconfError::MissingType { network, origin },
        Invalid::NoPlugins => NetconfError::NoPlugins { network, origin },
        Invalid::PluginMissingType(index) => NetconfError::PluginMissingType {
            network,
            origin,
            index,
        },
    })
}

/// Config files of a directory, sorted by file name.
fn conf_files(network: &str, dir: &Path) -> Result<Vec<PathBuf>, NetconfError> {
    let read_err = |source| NetconfError::Read {
        network: network.into(),
        path: dir.into(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let ext_ok = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| CONF_EXTENSIONS.contains(&e));
        if ext_ok && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn load_file(network: &str, file: &Path) -> Result<Value, NetconfError> {
    let read_err = |source| NetconfError::Read {
        network: network.into(),
        path: file.into(),
        source,
    };
    let len = fs::metadata(file).map_err(read_err)?.len();
    if len > MAX_CONF_BYTES {
        return Err(NetconfError::TooLarge {
            network: network.into(),
            path: file.into(),
        });
    }
    let bytes = fs::read(file).map_err(read_err)?;
    parse_object(network, &file.display().to_string(), &bytes)
}

fn parse_object(network: &str, origin: &str, bytes: &[u8]) -> Result<Value, NetconfError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| NetconfError::Parse {
        network: network.into(),
        origin: origin.into(),
        reason: e.to_string(),
    })?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(NetconfError::NotAnObject {
            network: network.into(),
            origin: origin.into(),
        })
    }
}

/// Merges `cni_args` into the config's `args.cni` (every plugin's, for a conflist); the
/// selection's values win over the config's, as upstream.
pub fn inject_cni_args(config: &mut NetConf, cni_args: &Map<String, Value>) {
    if cni_args.is_empty() {
        return;
    }
    for plugin in config.plugins_mut() {
        merge_args(plugin.rest_mut(), cni_args);
    }
}

fn merge_args(obj: &mut Map<String, Value>, cni_args: &Map<String, Value>) {
    let args = obj
        .entry("args")
        .or_insert_with(|| Value::Object(Map::new()));
    if !args.is_object() {
        // Upstream would panic on a non-object `args`; replacing it is the only sane reading.
        *args = Value::Object(Map::new());
    }
    let Some(args) = args.as_object_mut() else {
        return;
    };
    let cni = args
        .entry("cni")
        .or_insert_with(|| Value::Object(Map::new()));
    if !cni.is_object() {
        *cni = Value::Object(Map::new());
    }
    if let Some(cni) = cni.as_object_mut() {
        cni.extend(cni_args.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nad(config: &str) -> NadInfo {
        NadInfo {
            namespace: "ns1".into(),
            name: "mynet".into(),
            config: config.into(),
            ..Default::default()
        }
    }

    fn write(dir: &Path, file: &str, v: &str) {
        fs::write(dir.join(file), v).unwrap();
    }

    #[test]
    fn nad_name_is_injected_when_missing_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        for spec in [
            r#"{"cniVersion":"0.3.1","type":"macvlan"}"#,
            r#"{"name":"","type":"macvlan"}"#,
        ] {
            assert_eq!(
                from_nad(&nad(spec), dir.path()).unwrap().name(),
                Some("mynet")
            );
        }
        let kept = from_nad(&nad(r#"{"name":"own","type":"macvlan"}"#), dir.path()).unwrap();
        assert_eq!(kept.name(), Some("own"));
    }

    #[test]
    fn nad_spec_errors_name_the_network() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("[1]", "not a JSON object"),
            ("{bad", "not valid JSON"),
            (r#"{"name":"x"}"#, "no 'type'"),
            (r#"{"plugins":[]}"#, "has no plugins"),
            (
                r#"{"plugins":[{"type":"a"},{"name":"b"}]}"#,
                "plugin 1 has no 'type'",
            ),
        ];
        for (spec, want) in cases {
            let msg = from_nad(&nad(spec), dir.path()).unwrap_err().to_string();
            assert!(
                msg.contains("ns1/mynet") && msg.contains(want),
                "{spec}: {msg}"
            );
        }
    }

    #[test]
    fn empty_spec_falls_back_to_conf_dir() {
        let dir = tempfile::tempdir().unwrap();
        let err = from_nad(&nad(""), dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("No networks found in"), "{err}");
        write(
            dir.path(),
            "10-other.conf",
            r#"{"name":"other","type":"bridge"}"#,
        );
        write(dir.path(), "20-broken.conf", "{not json");
        write(
            dir.path(),
            "30-mynet.conflist",
            r#"{"name":"mynet","plugins":[{"type":"bridge"}]}"#,
        );
        write(
            dir.path(),
            "40-mynet.conf",
            r#"{"name":"mynet","type":"late"}"#,
        );
        write(
            dir.path(),
            "mynet.txt",
            r#"{"name":"mynet","type":"ignored"}"#,
        );
        let got = from_nad(&nad("  "), dir.path()).unwrap().to_value();
        assert_eq!(got["plugins"][0]["type"], "bridge");
        let err = from_conf_dir("absent", dir.path()).unwrap_err().to_string();
        assert!(
            err.starts_with("no network available in the name absent in cni dir"),
            "{err}"
        );
        write(dir.path(), "05-typeless.json", r#"{"name":"typeless"}"#);
        assert!(
            from_conf_dir("typeless", dir.path())
                .unwrap_err()
                .to_string()
                .contains("05-typeless.json")
        );
    }

    #[test]
    fn paths_file_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.conf", r#"{"name":"b","type":"bridge"}"#);
        write(
            dir.path(),
            "a.conflist",
            r#"{"name":"a","plugins":[{"type":"ptp"}]}"#,
        );
        assert_eq!(from_path(dir.path()).unwrap().name(), Some("a"));
        assert_eq!(
            from_path(&dir.path().join("b.conf")).unwrap().name(),
            Some("b")
        );
        write(
            dir.path(),
            "c.conf",
            r#"{"name":"c","plugins":[{"type":"x"}]}"#,
        );
        assert_eq!(
            from_path(&dir.path().join("c.conf")).unwrap().name(),
            Some("c")
        );
        write(dir.path(), "d.conf", r#"{"name":"d"}"#);
        let err = from_path(&dir.path().join("d.conf"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("d.conf") && err.contains("no 'type'"), "{err}");
        assert!(from_path(&dir.path().join("missing")).is_err());
        let empty = tempfile::tempdir().unwrap();
        assert!(
            from_path(empty.path())
                .unwrap_err()
                .to_string()
                .starts_with("No networks found")
        );
    }

    #[test]
    fn conflist_subdirectory_plugins_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "10-kindnet.conflist",
            r#"{"name":"kindnet","plugins":[{"type":"ptp"}]}"#,
        );
        fs::create_dir(dir.path().join("kindnet")).unwrap();
        write(
            &dir.path().join("kindnet"),
            "b.conf",
            r#"{"type":"tuning"}"#,
        );
        write(
            &dir.path().join("kindnet"),
            "a.conf",
            r#"{"type":"portmap"}"#,
        );
        write(
            &dir.path().join("kindnet"),
            "c.json",
            r#"{"type":"ignored"}"#,
        );
        let got = from_path(&dir.path().join("10-kindnet.conflist"))
            .unwrap()
            .to_value();
        let types: Vec<&str> = got["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["ptp", "portmap", "tuning"]);
        write(
            dir.path(),
            "10-kindnet.conflist",
            r#"{"name":"kindnet","loadOnlyInlinedPlugins":true,"plugins":[{"type":"ptp"}]}"#,
        );
        assert_eq!(
            from_path(dir.path()).unwrap().to_value()["plugins"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn inline_delegates() {
        assert!(from_inline(0, &json!({"name":"x","type":"flannel"})).is_ok());
        assert!(
            from_inline(1, &json!({"name":"x"}))
                .unwrap_err()
                .to_string()
                .contains("delegates[1]")
        );
    }

    #[test]
    fn cni_args_merge_into_each_plugin() {
        let add = json!({"foo":"new","bar":1});
        let add = add.as_object().unwrap();
        let mut conf =
            NetConf::from_value(json!({"type":"macvlan","args":{"cni":{"foo":"old","keep":true}}}))
                .unwrap();
        inject_cni_args(&mut conf, add);
        let conf = conf.to_value();
        assert_eq!(
            conf["args"]["cni"],
            json!({"foo":"new","keep":true,"bar":1})
        );
        let mut list =
            NetConf::from_value(json!({"plugins":[{"type":"a"},{"type":"b","args":{"other":1}}]}))
                .unwrap();
        inject_cni_args(&mut list, add);
        let list = list.to_value();
        assert_eq!(list["plugins"][0]["args"]["cni"]["foo"], "new");
        assert_eq!(
            list["plugins"][1]["args"],
            json!({"other":1,"cni":{"foo":"new","bar":1}})
        );
    }
}
