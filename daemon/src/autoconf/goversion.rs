//! The version check upstream's generator runs, with blang/semver's parsing rules and error
//! texts (strict `major.minor.patch[-pre][+build]`), so a refused primary config is refused with
//! the message an operator already knows from Go Multus.
use std::cmp::Ordering;

/// A parsed version; build metadata has no precedence and is only validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    core: (u64, u64, u64),
    pre: Vec<Pre>,
}

/// One pre-release identifier: numeric ones sort before alphanumeric ones.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Pre {
    Num(u64),
    Alpha(String),
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core
            .cmp(&other.core)
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                // A release sorts after its pre-releases.
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

const ALPHANUM: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789";

fn digits_only(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_digit())
}

fn alphanum_only(s: &str) -> bool {
    s.chars().all(|c| ALPHANUM.contains(c))
}

fn leading_zero(s: &str) -> bool {
    s.len() > 1 && s.starts_with('0')
}

/// Go's `%q` of an ASCII-ish string (JSON quoting is the same for everything we print).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// `strconv.ParseUint(s, 10, 64)` with Go's messages (only digits reach it).
fn parse_uint(s: &str) -> Result<u64, String> {
    if s.is_empty() {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            quoted(s)
        ));
    }
    s.parse().map_err(|_| {
        format!(
            "strconv.ParseUint: parsing {}: value out of range",
            quoted(s)
        )
    })
}

fn number(s: &str, what: &str, capital: &str) -> Result<u64, String> {
    if !digits_only(s) {
        return Err(format!(
            "Invalid character(s) found in {what} number {}",
            quoted(s)
        ));
    }
    if leading_zero(s) {
        return Err(format!(
            "{capital} number must not contain leading zeroes {}",
            quoted(s)
        ));
    }
    parse_uint(s)
}

fn pre_release(s: &str) -> Result<Pre, String> {
    if s.is_empty() {
        return Err("Prerelease is empty".into());
    }
    if digits_only(s) {
        if leading_zero(s) {
            return Err(format!(
                "Numeric PreRelease version must not contain leading zeroes {}",
                quoted(s)
            ));
        }
        return parse_uint(s).map(Pre::Num);
    }
    if alphanum_only(s) {
        return Ok(Pre::Alpha(s.to_owned()));
    }
    Err(format!(
        "Invalid character(s) found in prerelease {}",
        quoted(s)
    ))
}

/// blang/semver `Make`/`Parse`.
pub fn parse(s: &str) -> Result<Version, String> {
    if s.is_empty() {
        return Err("Version string empty".into());
    }
    let parts: Vec<&str> = s.splitn(3, '.').collect();
    let [major, minor, rest] = parts[..] else {
        return Err("No Major.Minor.Patch elements found".into());
    };
    let major = number(major, "major", "Major")?;
    let minor = number(minor, "minor", "Minor")?;
    let (rest, build) = match rest.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (rest, None),
    };
    let (patch, pre) = match rest.split_once('-') {
        Some((patch, pre)) => (patch, Some(pre)),
        None => (rest, None),
    };
    let patch = number(patch, "patch", "Patch")?;
    let pre = match pre {
        Some(pre) => pre.split('.').map(pre_release).collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    for part in build.into_iter().flat_map(|b| b.split('.')) {
        if part.is_empty() {
            return Err("Build meta data is empty".into());
        }
        if !alphanum_only(part) {
            return Err(format!(
                "Invalid character(s) found in build meta data {}",
                quoted(part)
            ));
        }
    }
    Ok(Version {
        core: (major, minor, patch),
        pre,
    })
}

/// 0.4.0, the first version with CHECK: upstream refuses older primaries under a newer multus.
pub fn v040() -> Version {
    Version {
        core: (0, 4, 0),
        pre: Vec::new(),
    }
}
