//! multus-shim: the CNI plugin the container runtime execs. It checks env and stdin as CNI's
//! skel does, answers VERSION itself, and forwards every other verb to multus-daemon as one gRPC
//! call over a unix socket. stdout carries only the result or the CNI error JSON.
#![forbid(unsafe_code)]
mod client;
mod conf;
mod env;
mod log;

use std::io::{Read, Write};
use std::process::ExitCode;

use conf::ShimConf;
use env::CniEnv;
use log::{Level, Logger};
use multus_common::constants::{MAX_CONFIG_BYTES, env as vars};
use multus_common::{CniError, Command, code, version};
use multus_proto::v1::CniRequest;

const ABOUT: &str =
    "multus-shim: meta-plugin that delegates to other CNI plugins (via multus-daemon)";

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    if matches!(arg.as_deref(), Some("-v" | "--version" | "-version")) {
        println!("multus-shim version {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Err(e) = env::check_utf8(|k| std::env::var_os(k)) {
        return fail("CNI", &e, version::CURRENT_VERSION);
    }
    let command = std::env::var(vars::COMMAND).unwrap_or_default();
    if command.is_empty() {
        eprintln!("{ABOUT}");
        eprintln!(
            "CNI protocol versions supported: {}",
            version::SUPPORTED_VERSIONS.join(", ")
        );
        return ExitCode::SUCCESS;
    }
    let cmd = match command.parse::<Command>() {
        Ok(cmd) => cmd,
        Err(e) => {
            return fail(
                &command,
                &CniError::new(code::INVALID_ENV, e.to_string()),
                version::CURRENT_VERSION,
            );
        }
    };
    if cmd == Command::Version {
        println!("{}", version::VERSION_RESULT);
        return ExitCode::SUCCESS;
    }
    let mut stdin = Vec::new();
    let outcome = read_stdin(&mut stdin).and_then(|()| run(cmd, &stdin));
    match outcome {
        Ok(result) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(&result).and_then(|()| out.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(cmd.as_str(), &e, &conf::error_version(&stdin)),
    }
}

/// Reads the config from stdin, at most [`MAX_CONFIG_BYTES`] of it (code 6 past that), so a
/// runaway writer cannot make the shim, or through it the daemon, hold unbounded memory.
fn read_stdin(buf: &mut Vec<u8>) -> Result<(), CniError> {
    let limit = u64::try_from(MAX_CONFIG_BYTES).unwrap_or(u64::MAX);
    std::io::stdin()
        .take(limit.saturating_add(1))
        .read_to_end(buf)
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("reading stdin: {e}")))?;
    if buf.len() > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    Ok(())
}

fn too_large() -> CniError {
    CniError::new(
        code::DECODE_FAILURE,
        format!(
            "error unmarshall network config: stdin is larger than the {MAX_CONFIG_BYTES}-byte limit"
        ),
    )
}

/// Checks env and stdin in skel's order, then makes the call.
fn run(cmd: Command, stdin: &[u8]) -> Result<Vec<u8>, CniError> {
    let env = CniEnv::read(cmd, |k| std::env::var(k).ok())?;
    let conf = ShimConf::parse(stdin)?;
    let logger = Logger::new(
        conf.log_level.as_deref(),
        conf.log_file.clone(),
        conf.log_to_stderr,
    );
    let checked = env.validate(cmd).and_then(|()| conf.check_version(cmd));
    if let Err(e) = checked {
        logger.log(Level::Error, &format!("{cmd} refused: {e}"));
        return Err(e);
    }
    let socket = conf.socket_path();
    logger.log(
        Level::Verbose,
        &format!(
            "{cmd} container={} ifname={} socket={}",
            env.container_id,
            env.ifname,
            socket.display()
        ),
    );
    let request = CniRequest {
        protocol_version: multus_proto::PROTOCOL_VERSION,
        container_id: env.container_id,
        netns: env.netns,
        ifname: env.ifname,
        cni_args_raw: env.args.raw,
        cni_args: env.args.pairs.into_iter().collect(),
        cni_path: env.path,
        config: stdin.to_vec(),
    };
    match client::call(cmd, &socket, request, conf.timeout).and_then(|r| require_result(cmd, r)) {
        Ok(result) => {
            logger.log(
                Level::Debug,
                &format!("{cmd} succeeded: {}", String::from_utf8_lossy(&result)),
            );
            Ok(result)
        }
        Err(e) => {
            logger.log(Level::Error, &format!("{cmd} failed: {e}"));
            Err(e)
        }
    }
}

/// An ADD answer must be a CNI result (a JSON object): anything else, e.g. from a daemon of
/// another protocol on the socket, is an error, never printed for the runtime to misread.
fn require_result(cmd: Command, result: Vec<u8>) -> Result<Vec<u8>, CniError> {
    if cmd != Command::Add {
        return Ok(result);
    }
    match serde_json::from_slice::<serde_json::Value>(&result) {
        Ok(v) if v.is_object() => Ok(result),
        _ => Err(CniError::new(
            code::INTERNAL,
            format!(
                "multus-daemon answered ADD without a CNI result ({} bytes that are not a JSON object): shim and daemon versions do not match; upgrade multus-daemon",
                result.len()
            ),
        )),
    }
}

/// Prints the CNI error JSON on stdout and a human line on stderr; exit status 1.
fn fail(verb: &str, err: &CniError, cni_version: &str) -> ExitCode {
    println!("{}", err.to_json(cni_version));
    let details = if err.details.is_empty() {
        String::new()
    } else {
        format!(" ({})", err.details)
    };
    eprintln!("multus-shim: {verb} failed: {err}{details}");
    ExitCode::FAILURE
}
