//! CNI_ARGS: `KEY=VALUE` pairs separated by `;` (CNI spec, "Parameters").
use std::collections::BTreeMap;

/// CNI_ARGS could not be split into `KEY=VALUE` pairs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid CNI_ARGS item {item:?}: expected KEY=VALUE")]
pub struct ArgsError {
    pub item: String,
}

/// Parsed CNI_ARGS, keeping the runtime's raw string too (delegates get their own, rebuilt).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub raw: String,
    pub pairs: BTreeMap<String, String>,
}

impl CniArgs {
    /// Parses CNI_ARGS. Empty items (a trailing `;`) are tolerated; an item without `=` or with
    /// an empty key is refused. A value may itself contain `=` (split on the first one).
    pub fn parse(raw: &str) -> Result<Self, ArgsError> {
        let mut pairs = BTreeMap::new();
        for item in raw.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    pairs.insert(k.trim().to_owned(), v.trim().to_owned());
                }
                _ => {
                    return Err(ArgsError {
                        item: item.to_owned(),
                    });
                }
            }
        }
        Ok(Self {
            raw: raw.to_owned(),
            pairs,
        })
    }

    /// Builds args from already-split pairs (the daemon side of the wire).
    pub fn from_pairs(raw: String, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            raw,
            pairs: pairs.into_iter().collect(),
        }
    }

    /// The value of `key`, if present and non-empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_args() {
        let a = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1;",
        )
        .expect("valid");
        assert_eq!(a.get("K8S_POD_NAME"), Some("web-0"));
        assert_eq!(a.get("K8S_POD_UID"), Some("u-1"));
        assert_eq!(a.pairs.len(), 5);
    }

    #[test]
    fn empty_is_empty_and_values_may_hold_equals() {
        assert!(CniArgs::parse("").expect("empty").pairs.is_empty());
        let a = CniArgs::parse("X=a=b").expect("valid");
        assert_eq!(a.get("X"), Some("a=b"));
    }

    #[test]
    fn refuses_items_without_key() {
        assert_eq!(CniArgs::parse("A=1;junk").unwrap_err().item, "junk");
        assert!(CniArgs::parse("=v").is_err());
    }
}
