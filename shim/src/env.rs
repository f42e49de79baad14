//! The CNI_* environment of one invocation, checked per verb the way CNI's skel checks it.
use std::ffi::OsString;

use multus_common::constants::env;
use multus_common::{CniArgs, CniError, Command, code, validate};

/// What the runtime told the shim through the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniEnv {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: CniArgs,
    pub path: String,
}

/// Refuses a CNI_* variable that is not UTF-8 (code 4, naming it). `std::env::var` would call it
/// missing, and a CNI_ARGS that is not UTF-8 would silently become no arguments at all.
pub fn check_utf8(get: impl Fn(&str) -> Option<OsString>) -> Result<(), CniError> {
    match env::ALL
        .into_iter()
        .find(|v| get(v).is_some_and(|s| s.to_str().is_none()))
    {
        Some(var) => Err(CniError::new(
            code::INVALID_ENV,
            format!("{var} is not valid UTF-8"),
        )),
        None => Ok(()),
    }
}

/// The variables skel requires for `cmd`, in skel's order.
fn required(cmd: Command) -> Vec<&'static str> {
    let mut vars = Vec::new();
    if cmd.is_per_container() {
        vars.push(env::CONTAINERID);
    }
    if cmd.needs_netns() {
        vars.push(env::NETNS);
    }
    if cmd.is_per_container() {
        vars.push(env::IFNAME);
    }
    if cmd != Command::Version {
        vars.push(env::PATH);
    }
    vars
}

impl CniEnv {
    /// Reads the environment through `get` (the process environment in `main`, a table in tests).
    /// Every missing variable is named at once (code 4), as skel does.
    pub fn read(cmd: Command, get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let missing: Vec<&str> = required(cmd)
            .into_iter()
            .filter(|v| get(v).is_none_or(|s| s.is_empty()))
            .collect();
        if !missing.is_empty() {
            let msg = format!("required env variables [{}] missing", missing.join(","));
            return Err(CniError::new(code::INVALID_ENV, msg));
        }
        let raw_args = get(env::ARGS).unwrap_or_default();
        let args = CniArgs::parse(&raw_args)
            .map_err(|e| CniError::new(code::INVALID_ENV, format!("{}: {e}", env::ARGS)))?;
        Ok(Self {
            container_id: get(env::CONTAINERID).unwrap_or_default(),
            netns: get(env::NETNS).unwrap_or_default(),
            ifname: get(env::IFNAME).unwrap_or_default(),
            args,
            path: get(env::PATH).unwrap_or_default(),
        })
    }

    /// Refuses ids that could escape a cache directory or that the kernel would refuse (code 4,
    /// as skel's `ValidateContainerID`/`ValidateInterfaceName`).
    pub fn validate(&self, cmd: Command) -> Result<(), CniError> {
        if !cmd.is_per_container() {
            return Ok(());
        }
        let bad = |var: &str, e: validate::InvalidName| {
            CniError::new(code::INVALID_ENV, format!("{var}: {e}"))
        };
        validate::id("container id", &self.container_id).map_err(|e| bad(env::CONTAINERID, e))?;
        validate::ifname(&self.ifname).map_err(|e| bad(env::IFNAME, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn missing_variables_are_all_named_per_verb() {
        // (verb, env, the missing list the message must contain)
        type Case<'a> = (Command, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            (
                Command::Add,
                &[],
                "[CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH]",
            ),
            (
                Command::Del,
                &[("CNI_PATH", "/x")],
                "[CNI_CONTAINERID,CNI_IFNAME]",
            ),
            (
                Command::Check,
                &[
                    ("CNI_CONTAINERID", "c"),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_PATH", "/x"),
                ],
                "[CNI_NETNS]",
            ),
            (Command::Status, &[], "[CNI_PATH]"),
            (Command::Gc, &[("CNI_PATH", "")], "[CNI_PATH]"),
        ];
        for (cmd, env, want) in cases {
            let err = CniEnv::read(*cmd, from(env)).unwrap_err();
            assert_eq!(err.code, code::INVALID_ENV, "{cmd}");
            assert!(err.msg.contains(want), "{cmd}: {}", err.msg);
        }
    }

    #[test]
    fn complete_env_parses_args() {
        let e = CniEnv::read(
            Command::Add,
            from(&[
                ("CNI_CONTAINERID", "abc"),
                ("CNI_NETNS", "/var/run/netns/x"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/opt/cni/bin"),
                ("CNI_ARGS", "K8S_POD_NAME=p;K8S_POD_NAMESPACE=ns"),
            ]),
        )
        .unwrap();
        assert_eq!(e.args.get("K8S_POD_NAME"), Some("p"));
        assert!(e.validate(Command::Add).is_ok());
        assert!(CniEnv::read(Command::Status, from(&[("CNI_PATH", "/x")])).is_ok());
    }

    #[test]
    fn variables_that_are_not_utf8_are_named() {
        use std::os::unix::ffi::OsStringExt;
        let get = |k: &str| match k {
            "CNI_COMMAND" => Some(OsString::from("ADD")),
            "CNI_ARGS" => Some(OsString::from_vec(b"K=\xff".to_vec())),
            _ => None,
        };
        let err = check_utf8(get).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
        assert!(
            err.msg.contains("CNI_ARGS") && err.msg.contains("UTF-8"),
            "{}",
            err.msg
        );
        assert!(check_utf8(|_| Some(OsString::from("fine"))).is_ok());
    }

    #[test]
    fn malformed_args_and_ids_are_code_4() {
        let env = [("CNI_PATH", "/x"), ("CNI_ARGS", "junk")];
        let err = CniEnv::read(Command::Status, from(&env)).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
        assert!(err.msg.contains("CNI_ARGS"));
        let env = [
            ("CNI_CONTAINERID", "../etc"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/x"),
        ];
        let e = CniEnv::read(Command::Del, from(&env)).unwrap();
        assert_eq!(
            e.validate(Command::Del).unwrap_err().code,
            code::INVALID_ENV
        );
    }
}
