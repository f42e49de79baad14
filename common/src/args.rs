//! CNI_ARGS: `KEY=VALUE` pairs separated by `;` (CNI spec, "Parameters").
//!
//! Parsed as upstream Multus parses them (`kubernetesRuntimeArgs`, then libcni's `LoadArgs`):
//! every item must split on `=` into exactly a key and a value, so `a=b=c`, a trailing or doubled
//! `;` and an item without `=` are refused. A key given twice is refused too: upstream keeps the
//! last, so `K8S_POD_NAME=a;K8S_POD_NAME=b` would attach one pod under another's name.
use std::collections::BTreeMap;

/// CNI_ARGS could not be split into `KEY=VALUE` pairs.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("invalid CNI_ARGS item {item:?}: expected exactly one KEY=VALUE")]
    Item { item: String },
    #[error("empty CNI_ARGS item (a trailing or doubled ';')")]
    EmptyItem,
    #[error("CNI_ARGS key {key:?} is given more than once")]
    Duplicate { key: String },
}

/// Parsed CNI_ARGS, keeping the runtime's raw string too (delegates get their own, rebuilt).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub raw: String,
    pub pairs: BTreeMap<String, String>,
}

impl CniArgs {
    /// Parses CNI_ARGS; an empty string is no arguments. Keys and values are trimmed.
    pub fn parse(raw: &str) -> Result<Self, ArgsError> {
        let mut pairs = BTreeMap::new();
        if raw.trim().is_empty() {
            return Ok(Self {
                raw: raw.to_owned(),
                pairs,
            });
        }
        for item in raw.split(';').map(str::trim) {
            if item.is_empty() {
                return Err(ArgsError::EmptyItem);
            }
            let mut parts = item.split('=');
            let (Some(k), Some(v), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(ArgsError::Item {
                    item: item.to_owned(),
                });
            };
            let k = k.trim();
            if k.is_empty() {
                return Err(ArgsError::Item {
                    item: item.to_owned(),
                });
            }
            if pairs.insert(k.to_owned(), v.trim().to_owned()).is_some() {
                return Err(ArgsError::Duplicate { key: k.to_owned() });
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
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1",
        )
        .expect("valid");
        assert_eq!(a.get("K8S_POD_NAME"), Some("web-0"));
        assert_eq!(a.get("K8S_POD_UID"), Some("u-1"));
        assert_eq!(a.pairs.len(), 5);
        assert_eq!(CniArgs::parse("K=").expect("empty value").pairs["K"], "");
    }

    #[test]
    fn empty_is_empty() {
        assert!(CniArgs::parse("").expect("empty").pairs.is_empty());
        assert!(CniArgs::parse("  ").expect("blank").pairs.is_empty());
    }

    /// Upstream's rule (issue 12, bad input): these used to be accepted (`a=b=c` split on the
    /// first `=`, empty items skipped, the last duplicate kept).
    #[test]
    fn refuses_what_upstream_refuses_and_duplicates() {
        let item = |s: &str| ArgsError::Item { item: s.into() };
        let cases = [
            ("A=1;junk", item("junk")),
            ("=v", item("=v")),
            ("X=a=b", item("X=a=b")),
            ("A=1;", ArgsError::EmptyItem),
            ("A=1;;B=2", ArgsError::EmptyItem),
            (
                "K8S_POD_NAME=a;K8S_POD_NAME=b",
                ArgsError::Duplicate {
                    key: "K8S_POD_NAME".into(),
                },
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(CniArgs::parse(raw).unwrap_err(), want, "{raw}");
        }
    }
}
