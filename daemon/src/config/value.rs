//! Typed values of daemon-config keys, decoded the way upstream's Go decoding reads them: level
//! and format names ignore case, `""` means unset, a Go duration string is parsed when loaded.
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::duration::parse_go_duration;

/// `logLevel`: upstream's names (`panic` = errors only, `verbose` = info) plus tracing's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogLevel {
    #[default]
    Panic,
    Error,
    Warning,
    Verbose,
    Debug,
    Trace,
}

impl LogLevel {
    pub const NAMES: &'static str = "panic, error, warn, verbose, info, debug, trace";

    /// The level a name means (any case); `""` is the default; `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "" | "panic" => Self::Panic,
            "error" => Self::Error,
            "warn" | "warning" => Self::Warning,
            "verbose" | "info" => Self::Verbose,
            "debug" => Self::Debug,
            "trace" => Self::Trace,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Panic => "panic",
            Self::Error => "error",
            Self::Warning => "warning",
            Self::Verbose => "verbose",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

impl Serialize for LogLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::from_name(&name)
            .ok_or_else(|| D::Error::custom(format!("{name:?} is not one of {}", Self::NAMES)))
    }
}

/// `logFormat`: `text` (upstream's look; also `""`) or `json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Serialize for LogFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match name.to_ascii_lowercase().as_str() {
            "" | "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(D::Error::custom(format!(
                "{name:?} is not one of text, json"
            ))),
        }
    }
}

/// A Go `time.Duration` string (`10m`, `1h30m`), parsed when the config is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Nanoseconds: exact, and read back by the same parser.
        write!(f, "{}ns", self.0.as_nanos())
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_go_duration(&text)
            .map(Self)
            .map_err(|reason| D::Error::custom(format!("{text:?} is not a Go duration: {reason}")))
    }
}

/// `metricsBindAddress` when unset or `""`: every address of both families, as upstream's
/// `:port` (Go listens on `[::]` with IPV6_V6ONLY off, so IPv4 clients reach it too).
pub const DEFAULT_METRICS_BIND_ADDRESS: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// An IP address; `""` is the default address.
pub fn ip_address<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    let text = String::deserialize(d)?;
    if text.is_empty() {
        return Ok(DEFAULT_METRICS_BIND_ADDRESS);
    }
    text.parse()
        .map_err(|_| D::Error::custom(format!("{text:?} is not an IP address")))
}

/// An optional string-like value where `""` means unset, as upstream's `if x != ""` checks.
pub fn empty_is_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    let text = Option::<String>::deserialize(d)?;
    Ok(text.filter(|s| !s.is_empty()).map(T::from))
}

/// [`empty_is_none`] for a value that is a Go duration.
pub fn empty_duration_is_none<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<GoDuration>, D::Error> {
    match Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(text) => parse_go_duration(&text)
            .map(|v| Some(GoDuration(v)))
            .map_err(|reason| D::Error::custom(format!("{text:?} is not a Go duration: {reason}"))),
    }
}
