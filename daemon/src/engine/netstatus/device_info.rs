//! A device-info file as upstream puts it in network-status: decoded into the NAD client's
//! `DeviceInfo` struct (v1.7.6) and encoded again, so unknown keys are dropped, keys take the
//! struct's order and spelling, empty strings are left out, and a file that does not decode
//! (a field of the wrong type, not an object) gives no `device-info` at all.
//!
//! Go's `encoding/json` rules kept here: keys match a field exactly, else case-insensitively;
//! a later duplicate key wins (an object merges into what an earlier one set); `null` leaves a
//! string as it was and clears a struct.
use serde_json::{Map, Value};

/// A field of a Go struct of strings and pointers to structs of strings.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Struct(&'static [(&'static str, Kind)]),
}

const PCI: &[(&str, Kind)] = &[
    ("pci-address", Kind::Str),
    ("vhost-net", Kind::Str),
    ("rdma-device", Kind::Str),
    ("pf-pci-address", Kind::Str),
    ("representor-device", Kind::Str),
];
const VDPA: &[(&str, Kind)] = &[
    ("parent-device", Kind::Str),
    ("driver", Kind::Str),
    ("path", Kind::Str),
    ("pci-address", Kind::Str),
    ("pf-pci-address", Kind::Str),
    ("representor-device", Kind::Str),
];
const VHOST_USER: &[(&str, Kind)] = &[("mode", Kind::Str), ("path", Kind::Str)];
const MEMIF: &[(&str, Kind)] = &[
    ("role", Kind::Str),
    ("path", Kind::Str),
    ("mode", Kind::Str),
];
const DEVICE_INFO: &[(&str, Kind)] = &[
    ("type", Kind::Str),
    ("version", Kind::Str),
    ("pci", Kind::Struct(PCI)),
    ("vdpa", Kind::Struct(VDPA)),
    ("vhost-user", Kind::Struct(VHOST_USER)),
    ("memif", Kind::Struct(MEMIF)),
];

/// One decoded field: a string, or a (possibly nil) struct.
enum Slot {
    Str(String),
    Struct(Option<Vec<Slot>>),
}

fn empty(schema: &[(&str, Kind)]) -> Vec<Slot> {
    schema
        .iter()
        .map(|(_, kind)| match kind {
            Kind::Str => Slot::Str(String::new()),
            Kind::Struct(_) => Slot::Struct(None),
        })
        .collect()
}

/// The device-info upstream would write for `raw`, or `None` where upstream writes none.
pub fn normalize(raw: &Value) -> Option<Value> {
    let mut slots = empty(DEVICE_INFO);
    match raw {
        // Go decodes `null` into a zero DeviceInfo, written as `{}`.
        Value::Null => {}
        Value::Object(input) => decode(DEVICE_INFO, input, &mut slots)?,
        _ => return None,
    }
    Some(Value::Object(encode(DEVICE_INFO, &slots)))
}

fn field(schema: &[(&str, Kind)], key: &str) -> Option<usize> {
    schema
        .iter()
        .position(|(name, _)| *name == key)
        .or_else(|| {
            schema
                .iter()
                .position(|(name, _)| name.eq_ignore_ascii_case(key))
        })
}

/// Decodes `input` into `slots`; `None` on a value of the wrong type (Go's UnmarshalTypeError).
fn decode(schema: &[(&str, Kind)], input: &Map<String, Value>, slots: &mut [Slot]) -> Option<()> {
    for (key, value) in input {
        let Some(i) = field(schema, key) else {
            continue;
        };
        match (&mut slots[i], schema[i].1, value) {
            (Slot::Str(_), Kind::Str, Value::Null) => {}
            (Slot::Str(s), Kind::Str, Value::String(v)) => v.clone_into(s),
            (Slot::Struct(s), Kind::Struct(_), Value::Null) => *s = None,
            (Slot::Struct(s), Kind::Struct(inner), Value::Object(o)) => {
                decode(inner, o, s.get_or_insert_with(|| empty(inner)))?;
            }
            _ => return None,
        }
    }
    Some(())
}

fn encode(schema: &[(&str, Kind)], slots: &[Slot]) -> Map<String, Value> {
    let mut out = Map::new();
    for ((name, kind), slot) in schema.iter().zip(slots) {
        match (kind, slot) {
            (Kind::Str, Slot::Str(s)) if !s.is_empty() => {
                out.insert((*name).into(), s.clone().into());
            }
            (Kind::Struct(inner), Slot::Struct(Some(s))) => {
                out.insert((*name).into(), Value::Object(encode(inner, s)));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn d12_device_info_is_upstreams_struct_reencoded() {
        let raw = json!({"pci": {"representor-device": "", "PCI-Address": "0000:03:00.1",
            "extra": 1}, "Version": "1.1.0", "type": "pci", "vendor": "x", "memif": null});
        let got = normalize(&raw).unwrap();
        assert_eq!(
            got,
            json!({"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:03:00.1"}})
        );
        let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["type", "version", "pci"], "the struct's order");
    }

    #[test]
    fn d12_device_info_duplicates_merge_and_the_last_wins() {
        let raw: Value = serde_json::from_str(
            r#"{"type":"pci","pci":{"pci-address":"a"},"TYPE":"vdpa","pci":{"vhost-net":"/dev/vhost-net"},"vdpa":{}}"#,
        )
        .unwrap();
        // serde_json keeps the last duplicate of a key, as Go does for a plain field.
        assert_eq!(
            normalize(&raw).unwrap(),
            json!({"type": "vdpa", "pci": {"vhost-net": "/dev/vhost-net"}, "vdpa": {}})
        );
    }

    #[test]
    fn d12_device_info_of_the_wrong_shape_is_left_out() {
        for bad in [
            json!({"type": "pci", "version": 1}),
            json!({"pci": "0000:03:00.1"}),
            json!(["pci"]),
            json!("pci"),
        ] {
            assert_eq!(normalize(&bad), None, "{bad}");
        }
        assert_eq!(normalize(&Value::Null), Some(json!({})));
    }
}
