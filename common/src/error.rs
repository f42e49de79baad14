//! The CNI error object (CNI spec, "Error") and the spec's well-known codes.
use serde::{Deserialize, Serialize};

/// Well-known CNI error codes (CNI spec 1.1, "Well-known Error Codes").
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables, like CNI_COMMAND or CNI_CONTAINERID.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODE_FAILURE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// The plugin is not available (STATUS).
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// The plugin is available but has limited connectivity (STATUS).
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// multus-rs' own: an error inside the daemon that fits no spec code.
    pub const INTERNAL: u32 = 999;
}

/// A CNI error object as a plugin prints it on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("CNI error {code}: {msg}")]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// The error JSON the spec asks a plugin to print, tagged with the config's `cniVersion`.
    pub fn to_json(&self, cni_version: &str) -> String {
        let mut obj = serde_json::Map::new();
        obj.insert("cniVersion".into(), cni_version.into());
        obj.insert("code".into(), self.code.into());
        obj.insert("msg".into(), self.msg.clone().into());
        if !self.details.is_empty() {
            obj.insert("details".into(), self.details.clone().into());
        }
        serde_json::Value::Object(obj).to_string()
    }

    /// Encodes the error for the `details` of a gRPC status (see `multus.cni.v1.CniError`).
    #[cfg(feature = "proto")]
    pub fn to_wire(&self) -> Vec<u8> {
        multus_proto::encode(&multus_proto::v1::CniError::from(self))
    }

    /// Decodes the `details` of a gRPC status written by [`CniError::to_wire`].
    #[cfg(feature = "proto")]
    pub fn from_wire(bytes: &[u8]) -> Option<Self> {
        multus_proto::decode::<multus_proto::v1::CniError>(bytes).map(Self::from)
    }
}

#[cfg(feature = "proto")]
impl From<multus_proto::v1::CniError> for CniError {
    fn from(e: multus_proto::v1::CniError) -> Self {
        Self {
            code: e.code,
            msg: e.msg,
            details: e.details,
        }
    }
}

#[cfg(feature = "proto")]
impl From<&CniError> for multus_proto::v1::CniError {
    fn from(e: &CniError) -> Self {
        Self {
            code: e.code,
            msg: e.msg.clone(),
            details: e.details.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_spec_fields_and_omits_empty_details() {
        let e = CniError::new(code::TRY_AGAIN_LATER, "daemon down");
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.1.0")).expect("json");
        assert_eq!(v["code"], 11);
        assert_eq!(v["msg"], "daemon down");
        assert_eq!(v["cniVersion"], "1.1.0");
        assert!(v.get("details").is_none());
    }

    #[test]
    fn wire_round_trip() {
        let e = CniError::new(7, "bad").with_details("field x");
        assert_eq!(CniError::from_wire(&e.to_wire()), Some(e));
        assert_eq!(CniError::from_wire(b"\xff\xff\xff"), None);
    }
}
