//! CNI spec versions: which ones we speak, and comparing them.
use std::cmp::Ordering;

/// Every spec version the shim accepts and answers to VERSION with (upstream Multus' list).
pub const SUPPORTED_VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest spec version this implementation speaks.
pub const CURRENT_VERSION: &str = "1.1.0";

/// A `major.minor.patch` spec version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SpecVersion(pub u32, pub u32, pub u32);

impl SpecVersion {
    pub const V0_3_0: SpecVersion = SpecVersion(0, 3, 0);
    pub const V0_4_0: SpecVersion = SpecVersion(0, 4, 0);
    pub const V1_0_0: SpecVersion = SpecVersion(1, 0, 0);
    pub const V1_1_0: SpecVersion = SpecVersion(1, 1, 0);

    /// Parses `a.b.c` (also `a.b`); `None` for anything else. An empty string is 0.1.0, as the
    /// spec says a config without `cniVersion` is.
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty() {
            return Some(SpecVersion(0, 1, 0));
        }
        let mut it = s.split('.').map(|p| p.parse::<u32>().ok());
        let (a, b) = (it.next()??, it.next()??);
        let c = match it.next() {
            Some(c) => c?,
            None => 0,
        };
        if it.next().is_some() {
            return None;
        }
        Some(SpecVersion(a, b, c))
    }

    /// Compares two version strings; unparsable strings sort first.
    pub fn cmp_str(a: &str, b: &str) -> Ordering {
        Self::parse(a).cmp(&Self::parse(b))
    }
}

/// Whether `v` is one of [`SUPPORTED_VERSIONS`].
pub fn is_supported(v: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&v)
}

/// The VERSION result, `{"cniVersion": <current>, "supportedVersions": [...]}`, as static text:
/// the shim prints it with no JSON value built (no allocation, no hash-map seed from the
/// kernel's random source). A test checks it against the two constants above.
pub const VERSION_RESULT: &str = r#"{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#;

/// The VERSION result as an owned string ([`VERSION_RESULT`]).
pub fn version_result() -> String {
    VERSION_RESULT.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        assert_eq!(SpecVersion::parse("0.3.1"), Some(SpecVersion(0, 3, 1)));
        assert_eq!(SpecVersion::parse("1.0"), Some(SpecVersion(1, 0, 0)));
        assert_eq!(SpecVersion::parse(""), Some(SpecVersion(0, 1, 0)));
        assert_eq!(SpecVersion::parse("x"), None);
        assert_eq!(SpecVersion::parse("1.0.0.0"), None);
        assert!(SpecVersion::parse("0.4.0") < SpecVersion::parse("1.0.0"));
        assert_eq!(SpecVersion::cmp_str("1.1.0", "0.3.1"), Ordering::Greater);
    }

    #[test]
    fn version_result_lists_all() {
        let v: serde_json::Value = serde_json::from_str(&version_result()).expect("json");
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["supportedVersions"].as_array().map(Vec::len), Some(7));
    }

    #[test]
    fn version_result_is_the_constants() {
        let built = serde_json::json!({
            "cniVersion": CURRENT_VERSION,
            "supportedVersions": SUPPORTED_VERSIONS,
        });
        let text: serde_json::Value = serde_json::from_str(VERSION_RESULT).expect("json");
        assert_eq!(text, built);
        assert_eq!(
            VERSION_RESULT,
            built.to_string(),
            "compact, in this key order"
        );
    }
}
