//! The shim's view of its stdin config: the few keys it reads, matched case-insensitively like
//! Go's `encoding/json`, and skel's checks (JSON object, network name, spec version per verb).
use std::path::PathBuf;
use std::time::Duration;

use multus_common::version::{self, SpecVersion};
use multus_common::{CniError, Command, code, constants, validate};
use serde_json::{Map, Value};

/// How long the daemon may take by default; the daemon may apply a shorter per-verb deadline.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The stdin config keys the shim itself uses; every other key is the daemon's business.
#[derive(Debug, Clone, PartialEq)]
pub struct ShimConf {
    pub cni_version: String,
    pub name: String,
    pub daemon_socket_dir: PathBuf,
    pub log_file: Option<PathBuf>,
    pub log_level: Option<String>,
    pub log_to_stderr: bool,
    /// multus-rs: the `grpc-timeout` sent with the request (`daemonTimeoutSeconds`).
    pub timeout: Duration,
}

/// Looks a key up as Go does: the exact spelling first, else any case-insensitive match.
fn lookup<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key)
        .or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

fn string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, CniError> {
    match lookup(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(wrong_type(key, "a string", other)),
    }
}

/// A string key that must be present and non-empty (code 7 naming it otherwise).
fn required(obj: &Map<String, Value>, key: &str) -> Result<String, CniError> {
    string(obj, key)?.filter(|s| !s.is_empty()).ok_or_else(|| {
        CniError::new(
            code::INVALID_NETWORK_CONFIG,
            format!("missing {key} in the network config"),
        )
    })
}

fn wrong_type(key: &str, want: &str, got: &Value) -> CniError {
    CniError::new(
        code::DECODE_FAILURE,
        format!("error unmarshall network config: {key} must be {want}, got {got}"),
    )
}

impl ShimConf {
    /// Parses stdin. Errors carry skel's codes: 6 not a JSON object or a key of the wrong type,
    /// 7 no valid network name, no `cniVersion` or no `type`.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                format!("error unmarshall network config: {e}"),
            )
        })?;
        let Value::Object(obj) = value else {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                "error unmarshall network config: not a JSON object",
            ));
        };
        let name = string(&obj, "name")?.unwrap_or_default();
        if name.is_empty() {
            return Err(CniError::new(
                code::INVALID_NETWORK_CONFIG,
                "missing network name",
            ));
        }
        validate::id("network name", &name)
            .map_err(|e| CniError::new(code::INVALID_NETWORK_CONFIG, e.to_string()))?;
        // The spec requires both; skel would read a missing `cniVersion` as 0.1.0 and answer
        // a pre-0.3 result the runtime never asked for (issue 12: a clear error instead).
        let cni_version = required(&obj, "cniVersion")?;
        required(&obj, "type")?;
        let log_to_stderr = match lookup(&obj, "logToStderr") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(wrong_type("logToStderr", "a boolean", other)),
        };
        let timeout = match lookup(&obj, "daemonTimeoutSeconds") {
            None => DEFAULT_TIMEOUT,
            Some(v) => v
                .as_u64()
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .ok_or_else(|| wrong_type("daemonTimeoutSeconds", "a positive integer", v))?,
        };
        Ok(Self {
            cni_version,
            name,
            daemon_socket_dir: string(&obj, "daemonSocketDir")?
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| constants::DEFAULT_SOCKET_DIR.into())
                .into(),
            log_file: string(&obj, "logFile")?
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            log_level: string(&obj, "logLevel")?,
            log_to_stderr,
            timeout,
        })
    }

    /// skel's version reconciliation: the config's version must be one we speak (code 1), and
    /// CHECK needs >= 0.4.0, STATUS and GC >= 1.1.0.
    pub fn check_version(&self, cmd: Command) -> Result<(), CniError> {
        let shown = if self.cni_version.is_empty() {
            "0.1.0"
        } else {
            self.cni_version.as_str()
        };
        if !version::is_supported(shown) {
            let details = format!(
                "config is {shown:?}, plugin supports {:?}",
                version::SUPPORTED_VERSIONS
            );
            return Err(
                CniError::new(code::INCOMPATIBLE_VERSION, "incompatible CNI versions")
                    .with_details(details),
            );
        }
        let floor = match cmd {
            Command::Check => SpecVersion::V0_4_0,
            Command::Status | Command::Gc => SpecVersion::V1_1_0,
            _ => return Ok(()),
        };
        match SpecVersion::parse(shown) {
            Some(v) if v >= floor => Ok(()),
            _ => Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("config version does not allow {cmd}"),
            )),
        }
    }

    /// The daemon socket: `<daemonSocketDir>/multus.sock`.
    pub fn socket_path(&self) -> PathBuf {
        self.daemon_socket_dir.join(constants::SOCKET_FILE)
    }
}

/// The `cniVersion` to tag an error with: the config's when it is one we speak, else ours.
pub fn error_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| {
            v.as_object()
                .and_then(|o| string(o, "cniVersion").ok().flatten())
        })
        .filter(|v| version::is_supported(v))
        .unwrap_or_else(|| version::CURRENT_VERSION.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_case_insensitively_exact_first() {
        let c = ShimConf::parse(
            br#"{"CNIVERSION":"0.3.1","Name":"multus","TYPE":"multus-shim","daemonsocketdir":"/tmp/x","LOGTOSTDERR":true,
                "logFile":"/a","LogFile":"/b","unknown":{"deep":1}}"#,
        )
        .unwrap();
        assert_eq!(c.cni_version, "0.3.1");
        assert_eq!(c.name, "multus");
        assert_eq!(c.socket_path(), PathBuf::from("/tmp/x/multus.sock"));
        assert!(c.log_to_stderr);
        assert_eq!(c.log_file, Some(PathBuf::from("/a")));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn defaults() {
        let c = ShimConf::parse(br#"{"name":"n","cniVersion":"1.0.0","type":"t"}"#).unwrap();
        assert_eq!(c.socket_path(), PathBuf::from("/run/multus/multus.sock"));
        assert!(!c.log_to_stderr);
        assert_eq!(c.log_file, None);
    }

    #[test]
    fn stdin_errors_carry_skels_codes() {
        let cases: &[(&[u8], u32)] = &[
            (b"", code::DECODE_FAILURE),
            (b"not json", code::DECODE_FAILURE),
            (b"[1,2]", code::DECODE_FAILURE),
            (br#"{"name":1}"#, code::DECODE_FAILURE),
            (
                br#"{"name":"n","cniVersion":"1.0.0","type":"t","logToStderr":"yes"}"#,
                code::DECODE_FAILURE,
            ),
            (br#"{"cniVersion":"1.0.0"}"#, code::INVALID_NETWORK_CONFIG),
            (br#"{"name":""}"#, code::INVALID_NETWORK_CONFIG),
            (br#"{"name":"a/b"}"#, code::INVALID_NETWORK_CONFIG),
            (br#"{"name":"n","type":"t"}"#, code::INVALID_NETWORK_CONFIG),
            (
                br#"{"name":"n","type":"t","cniVersion":""}"#,
                code::INVALID_NETWORK_CONFIG,
            ),
            (
                br#"{"name":"n","cniVersion":"1.0.0"}"#,
                code::INVALID_NETWORK_CONFIG,
            ),
            (
                br#"{"name":"n","cniVersion":1,"type":"t"}"#,
                code::DECODE_FAILURE,
            ),
        ];
        for (stdin, want) in cases {
            let got = ShimConf::parse(stdin).unwrap_err().code;
            assert_eq!(got, *want, "{}", String::from_utf8_lossy(stdin));
        }
    }

    #[test]
    fn version_gates_per_verb() {
        let conf = |v: &str| {
            ShimConf::parse(format!(r#"{{"name":"n","type":"t","cniVersion":"{v}"}}"#).as_bytes())
                .unwrap()
        };
        let cases = [
            ("1.1.0", Command::Status, true),
            ("1.0.0", Command::Status, false),
            ("1.0.0", Command::Gc, false),
            ("0.4.0", Command::Check, true),
            ("0.3.1", Command::Check, false),
            ("0.3.1", Command::Add, true),
            ("9.9.9", Command::Add, false),
            ("1.0", Command::Del, false),
        ];
        for (v, cmd, ok) in cases {
            let got = conf(v).check_version(cmd);
            assert_eq!(got.is_ok(), ok, "{v} {cmd}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
            }
        }
    }

    #[test]
    fn error_version_falls_back_to_ours() {
        assert_eq!(error_version(br#"{"cniVersion":"0.3.1"}"#), "0.3.1");
        assert_eq!(error_version(br#"{"cniVersion":"7"}"#), "1.1.0");
        assert_eq!(error_version(b"junk"), "1.1.0");
    }
}
