//! Validation of the identifiers that end up in file names and kernel interface names, so no
//! request can write outside the cache directory or ask the kernel for an impossible name.

/// Why an identifier was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidName {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {value:?} must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")]
    BadId { what: &'static str, value: String },
    #[error("interface name {0:?} is longer than 15 bytes")]
    IfnameTooLong(String),
    #[error("interface name {0:?} must not be '.' or '..' nor contain '/', ':' or whitespace")]
    IfnameBadChars(String),
}

/// Container ids and network names: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (libcni's rule).
pub fn id(what: &'static str, value: &str) -> Result<(), InvalidName> {
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
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
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
        for bad in ["", "../etc", "-a", "a/b", "a b", ".hidden"] {
            assert!(id("container id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ifnames() {
        assert!(ifname("eth0").is_ok());
        assert!(ifname("net_1").is_ok());
        assert!(ifname("abcdefghijklmno").is_ok());
        for bad in ["", ".", "..", "abcdefghijklmnop", "a/b", "a:b", "a b"] {
            assert!(ifname(bad).is_err(), "{bad}");
        }
    }
}
