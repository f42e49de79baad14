//! Validation of the identifiers that end up in file names and kernel interface names, so no
//! request can write outside the cache directory or ask the kernel for an impossible name.

/// The longest id accepted: Kubernetes' longest object name, and under `NAME_MAX` (255), so an
/// id always fits in the file name of its cache record.
pub const MAX_ID_BYTES: usize = 253;

/// Why an identifier was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidName {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {value:?} must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")]
    BadId { what: &'static str, value: String },
    #[error("{what} of {len} bytes is longer than {MAX_ID_BYTES}")]
    IdTooLong { what: &'static str, len: usize },
    #[error("interface name {0:?} is longer than 15 bytes")]
    IfnameTooLong(String),
    #[error(
        "interface name {0:?} must not be '.' or '..' nor contain '/', ':', whitespace or control characters"
    )]
    IfnameBadChars(String),
}

/// Container ids and network names: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (libcni's rule), at most
/// [`MAX_ID_BYTES`] (libcni has no limit, and then fails writing its cache file).
pub fn id(what: &'static str, value: &str) -> Result<(), InvalidName> {
    if value.len() > MAX_ID_BYTES {
        return Err(InvalidName::IdTooLong {
            what,
            len: value.len(),
        });
    }
    let mut chars = value.chars();
    let Some(first) = chars.next() else {
        return Err(InvalidName::Empty { what });
    };
    let ok = first.is_ascii_alphanumeric()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(InvalidName::BadId {
            what,
            value: value.to_owned(),
        })
    }
}

/// Kernel interface names (libcni's rule: 1-15 bytes, not `.`/`..`, no `/`, `:` or whitespace).
pub fn ifname(value: &str) -> Result<(), InvalidName> {
    if value.is_empty() {
        return Err(InvalidName::Empty {
            what: "interface name",
        });
    }
    if value.len() > 15 {
        return Err(InvalidName::IfnameTooLong(value.to_owned()));
    }
    if value == "."
        || value == ".."
        || value
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(InvalidName::IfnameBadChars(value.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids() {
        assert!(id("container id", "abc-123_x.y").is_ok());
        for bad in ["", "../etc", "-a", "a/b", "a b", ".hidden", "a\0b"] {
            assert!(id("container id", bad).is_err(), "{bad}");
        }
        assert!(id("container id", &"a".repeat(MAX_ID_BYTES)).is_ok());
        let long = "a".repeat(300);
        assert_eq!(
            id("container id", &long).unwrap_err().to_string(),
            "container id of 300 bytes is longer than 253"
        );
    }

    #[test]
    fn ifnames() {
        assert!(ifname("eth0").is_ok());
        assert!(ifname("net_1").is_ok());
        assert!(ifname("abcdefghijklmno").is_ok());
        // NUL reaches the daemon only over gRPC (no env var carries it); the kernel would
        // cut the name there.
        for bad in [
            "",
            ".",
            "..",
            "abcdefghijklmnop",
            "a/b",
            "a:b",
            "a b",
            "eth\x000",
            "e\x07",
        ] {
            assert!(ifname(bad).is_err(), "{bad}");
        }
    }
}
