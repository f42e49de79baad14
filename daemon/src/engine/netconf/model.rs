//! The typed network config every delegate carries: a single plugin's config or a conflist,
//! parsed and validated once (see [`NetConf::from_value`]). The keys the engine reads are typed;
//! every other key is kept verbatim, and writing a config back keeps its keys where they were,
//! so a plugin's stdin and the cache record are byte for byte what the untyped JSON gave.
use serde::de::{Deserialize, Deserializer, Error as _};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// CNI capability names: keys of a plugin's `capabilities` and of its `runtimeConfig`.
pub mod capability {
    pub const IPS: &str = "ips";
    pub const MAC: &str = "mac";
    pub const PORT_MAPPINGS: &str = "portMappings";
    pub const BANDWIDTH: &str = "bandwidth";
    pub const INFINIBAND_GUID: &str = "infinibandGUID";
    pub const DEVICE_ID: &str = "deviceID";
    pub const DEVICE_INFO_FILE: &str = "CNIDeviceInfoFile";
}

const TYPE: &str = "type";
const NAME: &str = "name";
const CNI_VERSION: &str = "cniVersion";
const CAPABILITIES: &str = "capabilities";
const PLUGINS: &str = "plugins";

/// Why a JSON value is not a runnable network config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("not a JSON object")]
    NotAnObject,
    /// A conf without a non-empty string `type`.
    #[error("no 'type'")]
    MissingType,
    /// A conflist whose `plugins` is not a non-empty array.
    #[error("no plugins")]
    NoPlugins,
    /// A conflist entry that is not an object with a non-empty `type`.
    #[error("plugin {0} has no 'type'")]
    PluginMissingType(usize),
}

/// A network config: one plugin (a `.conf`) or a chain of them (a `.conflist`, `plugins` set).
#[derive(Debug, Clone, PartialEq)]
pub enum NetConf {
    Plugin(PluginConf),
    List(ConfList),
}

/// One plugin's config: a whole `.conf`, or one entry of a conflist's `plugins`.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    plugin_type: String,
    name: Option<String>,
    cni_version: Option<String>,
    capabilities: Option<Map<String, Value>>,
    rest: Map<String, Value>,
    order: KeyOrder,
}

/// A conflist: its `name`, `cniVersion` and plugins; `disableCheck` and the like stay in `rest`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfList {
    name: Option<String>,
    cni_version: Option<String>,
    plugins: Vec<PluginConf>,
    rest: Map<String, Value>,
    order: KeyOrder,
}

impl NetConf {
    /// Parses and validates: a conf needs a `type`, a conflist (any object with `plugins`) a
    /// non-empty list of objects that each have one.
    pub fn from_value(value: Value) -> Result<Self, Invalid> {
        match value {
            Value::Object(obj) => Self::from_object(obj),
            _ => Err(Invalid::NotAnObject),
        }
    }

    pub fn from_object(obj: Map<String, Value>) -> Result<Self, Invalid> {
        if obj.contains_key(PLUGINS) {
            ConfList::from_object(obj).map(NetConf::List)
        } else {
            PluginConf::from_object(obj).map(NetConf::Plugin)
        }
    }

    pub fn is_list(&self) -> bool {
        matches!(self, NetConf::List(_))
    }

    /// The CNI network `name`, when the config has one.
    pub fn name(&self) -> Option<&str> {
        match self {
            NetConf::Plugin(p) => p.name.as_deref(),
            NetConf::List(l) => l.name.as_deref(),
        }
    }

    /// The config's own `cniVersion` (empty when it has none).
    pub fn cni_version(&self) -> &str {
        let v = match self {
            NetConf::Plugin(p) => &p.cni_version,
            NetConf::List(l) => &l.cni_version,
        };
        v.as_deref().unwrap_or_default()
    }

    /// The plugins in chain order (a single conf is a chain of itself).
    pub fn plugins(&self) -> &[PluginConf] {
        match self {
            NetConf::Plugin(p) => std::slice::from_ref(p),
            NetConf::List(l) => &l.plugins,
        }
    }

    pub fn plugins_mut(&mut self) -> &mut [PluginConf] {
        match self {
            NetConf::Plugin(p) => std::slice::from_mut(p),
            NetConf::List(l) => &mut l.plugins,
        }
    }

    /// The type of the first plugin (the one named in errors about the whole config).
    pub fn first_type(&self) -> &str {
        self.plugins().first().map_or("", PluginConf::plugin_type)
    }

    /// A boolean option of the config's top level (`disableCheck`, `disableGC`), given as
    /// `true` or `"true"`, as libcni reads them.
    pub fn flag(&self, key: &str) -> bool {
        let rest = match self {
            NetConf::Plugin(p) => &p.rest,
            NetConf::List(l) => &l.rest,
        };
        rest.get(key)
            .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"))
    }

    /// Gives a conflist without a `cniVersion` this one (libcni needs one; upstream gives it
    /// the multus config's). A single conf and a conflist with its own version are unchanged.
    pub fn default_list_version(&mut self, version: &str) {
        if let NetConf::List(l) = self
            && l.cni_version.is_none()
            && !version.is_empty()
        {
            let at = l.key_count();
            l.order.place(CNI_VERSION, at);
            l.cni_version = Some(version.to_owned());
        }
    }

    /// The config as JSON, keys in their original order.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl TryFrom<Value> for NetConf {
    type Error = Invalid;

    fn try_from(value: Value) -> Result<Self, Invalid> {
        Self::from_value(value)
    }
}

impl PluginConf {
    fn from_object(obj: Map<String, Value>) -> Result<Self, Invalid> {
        let mut p = PluginConf {
            plugin_type: String::new(),
            name: None,
            cni_version: None,
            capabilities: None,
            rest: Map::new(),
            order: KeyOrder::default(),
        };
        for (at, (key, value)) in obj.into_iter().enumerate() {
            match (key.as_str(), value) {
                (TYPE, Value::String(s)) => p.plugin_type = p.order.typed(TYPE, at, s),
                (NAME, Value::String(s)) => p.name = Some(p.order.typed(NAME, at, s)),
                (CNI_VERSION, Value::String(s)) => {
                    p.cni_version = Some(p.order.typed(CNI_VERSION, at, s));
                }
                (CAPABILITIES, Value::Object(m)) => {
                    p.capabilities = Some(p.order.typed(CAPABILITIES, at, m));
                }
                (_, value) => {
                    p.rest.insert(key, value);
                }
            }
        }
        if p.plugin_type.is_empty() {
            return Err(Invalid::MissingType);
        }
        Ok(p)
    }

    /// The plugin binary's name.
    pub fn plugin_type(&self) -> &str {
        &self.plugin_type
    }

    /// Whether the plugin declares capability `name` (`capabilities: {name: true}`).
    pub fn declares(&self, name: &str) -> bool {
        self.capabilities
            .as_ref()
            .and_then(|c| c.get(name))
            .and_then(Value::as_bool)
            == Some(true)
    }

    /// The keys the engine does not read, to add plugin options to (`args`, `deviceID`).
    pub fn rest_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.rest
    }

    /// The plugin's config as a JSON object, keys in their original order.
    pub fn to_object(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

impl ConfList {
    fn from_object(obj: Map<String, Value>) -> Result<Self, Invalid> {
        let mut l = ConfList {
            name: None,
            cni_version: None,
            plugins: Vec::new(),
            rest: Map::new(),
            order: KeyOrder::default(),
        };
        let mut has_plugins = false;
        for (at, (key, value)) in obj.into_iter().enumerate() {
            match (key.as_str(), value) {
                (NAME, Value::String(s)) => l.name = Some(l.order.typed(NAME, at, s)),
                (CNI_VERSION, Value::String(s)) => {
                    l.cni_version = Some(l.order.typed(CNI_VERSION, at, s));
                }
                (PLUGINS, Value::Array(list)) if !list.is_empty() => {
                    has_plugins = true;
                    let plugins = parse_plugins(list)?;
                    l.plugins = l.order.typed(PLUGINS, at, plugins);
                }
                (PLUGINS, _) => return Err(Invalid::NoPlugins),
                (_, value) => {
                    l.rest.insert(key, value);
                }
            }
        }
        if !has_plugins {
            return Err(Invalid::NoPlugins);
        }
        Ok(l)
    }

    fn key_count(&self) -> usize {
        self.rest.len()
            + usize::from(self.name.is_some())
            + usize::from(self.cni_version.is_some())
            + 1
    }
}

fn parse_plugins(list: Vec<Value>) -> Result<Vec<PluginConf>, Invalid> {
    list.into_iter()
        .enumerate()
        .map(|(index, v)| match v {
            Value::Object(obj) => {
                PluginConf::from_object(obj).map_err(|_| Invalid::PluginMissingType(index))
            }
            _ => Err(Invalid::PluginMissingType(index)),
        })
        .collect()
}

/// Where each typed key stood among all the keys of the object it was read from (a key set
/// later goes where it was added: last). Only presentation: configs compare equal whatever
/// their key order, as JSON objects do.
#[derive(Debug, Clone, Default)]
struct KeyOrder(Vec<(&'static str, usize)>);

impl PartialEq for KeyOrder {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl KeyOrder {
    /// Records that `key` was at `at`, and hands its value back.
    fn typed<T>(&mut self, key: &'static str, at: usize, value: T) -> T {
        self.place(key, at);
        value
    }

    fn place(&mut self, key: &'static str, at: usize) {
        if self.position(key).is_none() {
            self.0.push((key, at));
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, at)| *at)
    }
}

/// A typed value, written at its key's place.
enum Field<'a> {
    Str(&'a str),
    Object(&'a Map<String, Value>),
    Plugins(&'a [PluginConf]),
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Str(v) => v.serialize(s),
            Field::Object(v) => v.serialize(s),
            Field::Plugins(v) => v.serialize(s),
        }
    }
}

/// Writes the typed fields and `rest` as one object, each typed key back at its position.
fn write_object<S: Serializer>(
    s: S,
    typed: Vec<(&'static str, Field<'_>)>,
    rest: &Map<String, Value>,
    order: &KeyOrder,
) -> Result<S::Ok, S::Error> {
    let mut typed: Vec<_> = typed
        .into_iter()
        .map(|(key, field)| (order.position(key).unwrap_or(usize::MAX), key, field))
        .collect();
    typed.sort_by_key(|(at, _, _)| *at);
    let mut typed = typed.into_iter().peekable();
    let mut map = s.serialize_map(Some(typed.len() + rest.len()))?;
    let mut written = 0;
    for (key, value) in rest {
        while let Some((_, k, field)) = typed.next_if(|(at, _, _)| *at <= written) {
            map.serialize_entry(k, &field)?;
            written += 1;
        }
        map.serialize_entry(key, value)?;
        written += 1;
    }
    for (_, k, field) in typed {
        map.serialize_entry(k, &field)?;
    }
    map.end()
}

fn optional<'a>(key: &'static str, v: &'a Option<String>) -> Option<(&'static str, Field<'a>)> {
    v.as_deref().map(|s| (key, Field::Str(s)))
}

impl Serialize for PluginConf {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut typed = vec![(TYPE, Field::Str(&self.plugin_type))];
        typed.extend(optional(NAME, &self.name));
        typed.extend(optional(CNI_VERSION, &self.cni_version));
        typed.extend(
            self.capabilities
                .as_ref()
                .map(|c| (CAPABILITIES, Field::Object(c))),
        );
        write_object(s, typed, &self.rest, &self.order)
    }
}

impl Serialize for ConfList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut typed = vec![(PLUGINS, Field::Plugins(&self.plugins))];
        typed.extend(optional(NAME, &self.name));
        typed.extend(optional(CNI_VERSION, &self.cni_version));
        write_object(s, typed, &self.rest, &self.order)
    }
}

impl Serialize for NetConf {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            NetConf::Plugin(p) => p.serialize(s),
            NetConf::List(l) => l.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for NetConf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let obj = Map::<String, Value>::deserialize(d)?;
        NetConf::from_object(obj).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(text: &str) -> String {
        let value: Value = serde_json::from_str(text).unwrap();
        let conf = NetConf::from_value(value).unwrap();
        serde_json::to_string(&conf).unwrap()
    }

    #[test]
    fn writing_back_keeps_every_key_in_its_place() {
        let cases = [
            r#"{"type":"macvlan","cniVersion":"0.3.1","master":"eth0","name":"n","capabilities":{"ips":true}}"#,
            r#"{"a":1,"cniVersion":5,"type":"x","name":{"odd":true},"capabilities":"no"}"#,
            r#"{"plugins":[{"x":1,"type":"ptp"},{"type":"tuning","name":"t"}],"disableCheck":true,"name":"l"}"#,
            r#"{"cniVersion":"1.0.0","name":"l","extra":[1,2],"plugins":[{"type":"a"}],"z":null}"#,
        ];
        for text in cases {
            assert_eq!(roundtrip(text), text);
        }
    }

    #[test]
    fn what_is_added_later_goes_last() {
        let value = serde_json::json!({"name": "l", "plugins": [{"type": "a"}]});
        let mut conf = NetConf::from_value(value).unwrap();
        conf.default_list_version("1.0.0");
        conf.plugins_mut()[0]
            .rest_mut()
            .insert(capability::DEVICE_ID.into(), "d".into());
        if let NetConf::List(l) = &mut conf {
            l.rest.insert("after".into(), 1.into());
        }
        assert_eq!(
            serde_json::to_string(&conf).unwrap(),
            r#"{"name":"l","plugins":[{"type":"a","deviceID":"d"}],"cniVersion":"1.0.0","after":1}"#
        );
        let own = serde_json::json!({"cniVersion": "0.4.0", "plugins": [{"type": "a"}]});
        let mut own = NetConf::from_value(own).unwrap();
        own.default_list_version("1.0.0");
        assert_eq!(own.cni_version(), "0.4.0");
    }

    #[test]
    fn invalid_configs_are_refused() {
        let cases = [
            (serde_json::json!([1]), Invalid::NotAnObject),
            (serde_json::json!({"name": "n"}), Invalid::MissingType),
            (serde_json::json!({"type": ""}), Invalid::MissingType),
            (serde_json::json!({"type": 3}), Invalid::MissingType),
            (serde_json::json!({"plugins": []}), Invalid::NoPlugins),
            (serde_json::json!({"plugins": null}), Invalid::NoPlugins),
            (
                serde_json::json!({"plugins": [{"type": "a"}, 7]}),
                Invalid::PluginMissingType(1),
            ),
            (
                serde_json::json!({"plugins": [{"name": "b"}]}),
                Invalid::PluginMissingType(0),
            ),
        ];
        for (value, want) in cases {
            assert_eq!(NetConf::from_value(value.clone()), Err(want), "{value}");
        }
    }

    #[test]
    fn typed_reads() {
        let conf = NetConf::from_value(serde_json::json!({"cniVersion": "1.1.0", "name": "l",
            "disableGC": "true", "plugins": [{"type": "a", "capabilities": {"mac": true, "ips": false}}, {"type": "b"}]}))
        .unwrap();
        assert!(conf.is_list() && conf.flag("disableGC") && !conf.flag("disableCheck"));
        assert_eq!((conf.name(), conf.cni_version()), (Some("l"), "1.1.0"));
        assert_eq!(conf.first_type(), "a");
        let first = &conf.plugins()[0];
        assert!(first.declares(capability::MAC) && !first.declares(capability::IPS));
        assert!(!conf.plugins()[1].declares(capability::MAC));
    }
}
