//! `install_multus`: the init container's plugin installer (upstream's flags, parsed as
//! upstream's pflag does), and the DaemonSet's exec probe client (gRPC health over the daemon's
//! unix socket).
//!
//! Install (`-t thick`, as upstream): `multus-shim` and `passthru` from the image's bin dir into
//! the destination. Each is written next to its destination, fsynced, then renamed over it, and
//! the directory is fsynced. A runtime may be executing the old shim at that very moment (after a
//! reboot it waits for the daemon this container belongs to): writing in place would fail with
//! ETXTBSY and deadlock the node (upstream MC#1221); a rename never touches the running inode.
//!
//! Probe: the image has no shell and no `grpc_health_probe`, so this binary asks
//! `grpc.health.v1.Health/Check` itself. `--probe live` passes when the daemon answers at all,
//! `--probe ready` only when it answers SERVING.
#![forbid(unsafe_code)]
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use multus_common::constants;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Where the image puts the binaries (upstream's layout).
const IMAGE_BIN_DIR: &str = "/usr/src/multus-cni/bin";
/// Upstream's default destination: the host's CNI bin dir mounted into the init container.
const DEFAULT_DEST_DIR: &str = "/host/opt/cni/bin";
const SHIM_NAME: &str = "multus-shim";
/// Upstream installs its passthru plugin beside the shim (auxiliary chains, NADs using it).
const PASSTHRU_NAME: &str = "passthru";
const MODE: u32 = 0o755;

const USAGE: &str = "usage:
  install_multus -t|--type thick [-d|--dest-dir DIR] [--source-dir SRC]
      copy multus-shim and passthru from SRC (default /usr/src/multus-cni/bin) into DIR
      (default /host/opt/cni/bin) atomically, mode 0755; a file DIR already holds is not
      rewritten. Flags as upstream's pflag: -d X, -dX, -d=X, --dest-dir X, --dest-dir=X
  install_multus --source PATH [-d|--dest-dir DIR] [--mode OCTAL]
      the same atomic copy of one file (e.g. --source /etc/multus-rs/00-multus.conf
      --dest-dir /host/etc/cni/net.d --mode 0644)
  install_multus --probe live|ready [--socket-dir DIR] [--timeout-seconds N]
      ask the daemon's gRPC health service on DIR/multus.sock (default /run/multus);
      live: it answers; ready: it answers SERVING";

#[derive(Debug, thiserror::Error)]
enum ArgsError {
    #[error("flag needs an argument: {0}")]
    MissingValue(String),
    #[error("unknown flag: {0}")]
    Unknown(String),
    #[error("unexpected argument {0:?}: install_multus takes flags only")]
    Positional(OsString),
    /// Upstream's wording, and its exit code 1 (see `exit_code`).
    #[error("--type is missing or --type has invalid value")]
    Type,
    #[error(
        "--type thin: multus-rs ships the thick plugin only (thin is upstream's in-process \
         plugin, not in this image); use --type thick"
    )]
    Thin,
    #[error("--mode {0:?}: expected an octal file mode such as 0644")]
    Mode(String),
    #[error("--probe {0:?}: expected live or ready")]
    ProbeKind(String),
    #[error("--timeout-seconds {0:?}: expected a positive integer")]
    Timeout(String),
}

impl ArgsError {
    /// Upstream exits 1 on a missing or invalid --type; pflag exits 2 on other flag errors.
    fn exit_code(&self) -> u8 {
        match self {
            Self::Type | Self::Thin => 1,
            _ => 2,
        }
    }
}

#[derive(Debug, PartialEq)]
enum Probe {
    Live,
    Ready,
}

#[derive(Debug, PartialEq)]
enum Action {
    Help,
    /// Upstream's install: these files (sources) into `dest_dir`, mode 0755.
    Plugins {
        sources: Vec<PathBuf>,
        dest_dir: PathBuf,
    },
    /// One file (`--source`), with its mode.
    Install {
        source: PathBuf,
        dest_dir: PathBuf,
        mode: u32,
    },
    Probe {
        kind: Probe,
        socket: PathBuf,
        timeout: Duration,
    },
}

/// The flags as pflag splits them: `--name=value`, `--name [value]`, and short clusters
/// (`-dX`, `-d=X`, `-d X`, `-h`). Values are taken from the next argument when not inline, even
/// when it starts with `-` (pflag does the same). `--` ends the flags.
fn split_flags(
    args: impl IntoIterator<Item = OsString>,
) -> Result<Vec<(String, Option<OsString>)>, ArgsError> {
    // Short letters upstream defines; `true` when the flag takes a value.
    const SHORT: &[(char, &str, bool)] = &[
        ('t', "type", true),
        ('d', "dest-dir", true),
        ('h', "help", false),
    ];
    const LONG: &[(&str, bool)] = &[
        ("type", true),
        ("dest-dir", true),
        ("help", false),
        ("source", true),
        ("source-dir", true),
        ("mode", true),
        ("socket-dir", true),
        ("probe", true),
        ("timeout-seconds", true),
    ];
    let mut out = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        if text == "--" {
            if let Some(extra) = args.next() {
                return Err(ArgsError::Positional(extra));
            }
            break;
        }
        if let Some(long) = text.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(OsString::from(v))),
                None => (long.to_owned(), None),
            };
            let Some((_, takes_value)) = LONG.iter().find(|(n, _)| *n == name) else {
                return Err(ArgsError::Unknown(format!("--{name}")));
            };
            let value = match inline {
                Some(v) => Some(v),
                None if *takes_value => Some(
                    args.next()
                        .ok_or_else(|| ArgsError::MissingValue(format!("--{name}")))?,
                ),
                None => None,
            };
            out.push((name, value));
            continue;
        }
        let Some(cluster) = text.strip_prefix('-').filter(|c| !c.is_empty()) else {
            return Err(ArgsError::Positional(arg));
        };
        for (at, letter) in cluster.char_indices() {
            let Some((_, name, needs_value)) = SHORT.iter().find(|(c, _, _)| *c == letter) else {
                return Err(ArgsError::Unknown(format!("-{letter} in -{cluster}")));
            };
            if !needs_value {
                out.push(((*name).to_owned(), None));
                continue;
            }
            let rest = &cluster[at + letter.len_utf8()..];
            let rest = rest.strip_prefix('=').unwrap_or(rest);
            let value = if rest.is_empty() {
                args.next()
                    .ok_or_else(|| ArgsError::MissingValue(format!("-{letter}")))?
            } else {
                OsString::from(rest)
            };
            out.push(((*name).to_owned(), Some(value)));
            break;
        }
    }
    Ok(out)
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Action, ArgsError> {
    let mut kind = None;
    let mut source = None;
    let mut source_dir = PathBuf::from(IMAGE_BIN_DIR);
    let mut dest_dir = PathBuf::from(DEFAULT_DEST_DIR);
    let mut probe = None;
    let mut socket_dir = PathBuf::from(constants::DEFAULT_SOCKET_DIR);
    let mut timeout = Duration::from_secs(5);
    let mut mode = MODE;
    for (name, value) in split_flags(args)? {
        let text = || {
            value
                .clone()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        };
        let path = || PathBuf::from(value.clone().unwrap_or_default());
        match name.as_str() {
            "help" => return Ok(Action::Help),
            "type" => kind = Some(text()),
            "dest-dir" => dest_dir = path(),
            "source" => source = Some(path()),
            "source-dir" => source_dir = path(),
            "mode" => {
                let raw = text();
                match u32::from_str_radix(raw.trim_start_matches("0o"), 8) {
                    Ok(m) if m <= 0o7777 => mode = m,
                    _ => return Err(ArgsError::Mode(raw)),
                }
            }
            "socket-dir" => socket_dir = path(),
            "probe" => {
                probe = Some(match text().as_str() {
                    "live" => Probe::Live,
                    "ready" => Probe::Ready,
                    other => return Err(ArgsError::ProbeKind(other.to_owned())),
                })
            }
            "timeout-seconds" => {
                let raw = text();
                match raw.parse::<u64>() {
                    Ok(n) if n > 0 => timeout = Duration::from_secs(n),
                    _ => return Err(ArgsError::Timeout(raw)),
                }
            }
            // split_flags only yields the names it knows.
            other => return Err(ArgsError::Unknown(format!("--{other}"))),
        }
    }
    match kind.as_deref() {
        Some("thin") => return Err(ArgsError::Thin),
        Some("thick") | None => {}
        Some(_) => return Err(ArgsError::Type),
    }
    Ok(match (probe, source) {
        (Some(kind), _) => Action::Probe {
            kind,
            socket: socket_dir.join(constants::SOCKET_FILE),
            timeout,
        },
        (None, Some(source)) => Action::Install {
            source,
            dest_dir,
            mode,
        },
        // Upstream's install: --type is required (its DaemonSet always passes -t thick).
        (None, None) if kind.is_none() => return Err(ArgsError::Type),
        (None, None) => Action::Plugins {
            // passthru first: a node with the new shim then always has passthru too.
            sources: [PASSTHRU_NAME, SHIM_NAME]
                .map(|name| source_dir.join(name))
                .into(),
            dest_dir,
        },
    })
}

#[derive(Debug, thiserror::Error)]
enum InstallError {
    #[error("read source {path}: {source}")]
    ReadSource { path: PathBuf, source: io::Error },
    #[error("source {0} has no file name")]
    SourceName(PathBuf),
    #[error("write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// What `install` did.
#[derive(Debug, PartialEq)]
enum Outcome {
    Installed,
    AlreadyCurrent,
}

/// The shim's install: mode 0755.
#[cfg(test)]
fn install(source: &Path, dest_dir: &Path) -> Result<(PathBuf, Outcome), InstallError> {
    install_mode(source, dest_dir, MODE)
}

/// Copies `source` into `dest_dir` under the same file name with `mode`, atomically and only when
/// the destination does not already hold the same bytes with that mode.
fn install_mode(
    source: &Path,
    dest_dir: &Path,
    mode: u32,
) -> Result<(PathBuf, Outcome), InstallError> {
    let name = source
        .file_name()
        .ok_or_else(|| InstallError::SourceName(source.to_owned()))?;
    let dest = dest_dir.join(name);
    let bytes = fs::read(source).map_err(|e| InstallError::ReadSource {
        path: source.to_owned(),
        source: e,
    })?;
    if is_current(&dest, &bytes, mode) {
        return Ok((dest, Outcome::AlreadyCurrent));
    }
    // Atomic and durable: the runtime execs the shim at any moment, and a crash must leave the
    // old shim or the new one after reboot, never half (or none).
    multus_daemon::atomic_file::write(&dest, &bytes, mode).map_err(|e| InstallError::Write {
        path: dest.clone(),
        source: e,
    })?;
    Ok((dest, Outcome::Installed))
}

/// True when `dest` already holds exactly `bytes` with mode 0755 (then nothing is rewritten, so an
/// init container restart never touches a shim the runtime may be executing).
fn is_current(dest: &Path, bytes: &[u8], mode: u32) -> bool {
    let Ok(meta) = fs::metadata(dest) else {
        return false;
    };
    meta.is_file()
        && meta.len() == bytes.len() as u64
        && meta.permissions().mode() & 0o7777 == mode
        && fs::read(dest).is_ok_and(|current| current == bytes)
}

#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("connect to {path}: {source}")]
    Connect {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("health check on {path}: {source}")]
    Check {
        path: PathBuf,
        source: Box<tonic::Status>,
    },
    #[error("daemon on {path} reports {status:?}")]
    NotServing {
        path: PathBuf,
        status: ServingStatus,
    },
    #[error("start the probe runtime: {0}")]
    Runtime(io::Error),
}

fn probe(kind: &Probe, socket: &Path, timeout: Duration) -> Result<ServingStatus, ProbeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ProbeError::Runtime)?;
    let status = rt.block_on(health_status(socket, timeout))?;
    if *kind == Probe::Ready && status != ServingStatus::Serving {
        return Err(ProbeError::NotServing {
            path: socket.to_owned(),
            status,
        });
    }
    Ok(status)
}

async fn health_status(socket: &Path, timeout: Duration) -> Result<ServingStatus, ProbeError> {
    let channel = multus_proto::channel::unix(socket, timeout)
        .await
        .map_err(|e| ProbeError::Connect {
            path: socket.to_owned(),
            source: e,
        })?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|e| ProbeError::Check {
            path: socket.to_owned(),
            source: Box::new(e),
        })?;
    Ok(ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown))
}

/// Installs every source, each atomically; all are read first, so a source missing from the
/// image fails before the host is touched.
fn install_plugins(sources: &[PathBuf], dest_dir: &Path) -> anyhow::Result<()> {
    for source in sources {
        fs::metadata(source).map_err(|e| InstallError::ReadSource {
            path: source.clone(),
            source: e,
        })?;
    }
    for source in sources {
        let (dest, outcome) = install_mode(source, dest_dir, MODE)
            .with_context(|| format!("install {}", source.display()))?;
        match outcome {
            Outcome::Installed => {
                tracing::info!(source = %source.display(), dest = %dest.display(), "installed")
            }
            Outcome::AlreadyCurrent => {
                tracing::info!(dest = %dest.display(), "already up to date, not rewritten")
            }
        }
        // Upstream's success lines on stdout, for anyone grepping the init container's log.
        let name = source.file_name().unwrap_or_default().to_string_lossy();
        if name == SHIM_NAME {
            println!("multus {name} copy succeeded!");
        } else {
            println!("passthru cni {} copy succeeded!", source.display());
        }
    }
    Ok(())
}

fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Help => println!("{USAGE}"),
        Action::Plugins { sources, dest_dir } => install_plugins(&sources, &dest_dir)?,
        Action::Install {
            source,
            dest_dir,
            mode,
        } => {
            let (dest, outcome) =
                install_mode(&source, &dest_dir, mode).context("install the file")?;
            match outcome {
                Outcome::Installed => {
                    tracing::info!(source = %source.display(), dest = %dest.display(), "shim installed")
                }
                Outcome::AlreadyCurrent => {
                    tracing::info!(dest = %dest.display(), "shim already up to date, not rewritten")
                }
            }
        }
        Action::Probe {
            kind,
            socket,
            timeout,
        } => {
            let status = probe(&kind, &socket, timeout)?;
            tracing::debug!(socket = %socket.display(), ?status, "daemon answered");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_target(false)
        .init();
    let action = match parse_args(std::env::args_os().skip(1)) {
        Ok(action) => action,
        Err(e) => {
            eprintln!("install_multus: {e}\n{USAGE}");
            return ExitCode::from(e.exit_code());
        }
    };
    match run(action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "install_multus failed");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn plugins(dest_dir: &str) -> Action {
        Action::Plugins {
            sources: vec![
                "/usr/src/multus-cni/bin/passthru".into(),
                "/usr/src/multus-cni/bin/multus-shim".into(),
            ],
            dest_dir: dest_dir.into(),
        }
    }

    #[test]
    fn flags_parse_like_upstream() {
        let cases: &[(&[&str], Action)] = &[
            (&["-t", "thick"], plugins("/host/opt/cni/bin")),
            (&["-t", "thick", "-d", "/x"], plugins("/x")),
            (
                &["-t", "thick", "--source-dir", "/img/bin"],
                Action::Plugins {
                    sources: vec!["/img/bin/passthru".into(), "/img/bin/multus-shim".into()],
                    dest_dir: "/host/opt/cni/bin".into(),
                },
            ),
            (
                &["--type=thick", "--dest-dir=/y", "--source", "/s/shim"],
                Action::Install {
                    source: "/s/shim".into(),
                    dest_dir: "/y".into(),
                    mode: MODE,
                },
            ),
            (
                &[
                    "--source",
                    "/c/00-multus.conf",
                    "-d",
                    "/etc",
                    "--mode",
                    "0644",
                ],
                Action::Install {
                    source: "/c/00-multus.conf".into(),
                    dest_dir: "/etc".into(),
                    mode: 0o644,
                },
            ),
            (
                &["--probe", "ready"],
                Action::Probe {
                    kind: Probe::Ready,
                    socket: "/run/multus/multus.sock".into(),
                    timeout: Duration::from_secs(5),
                },
            ),
            (
                &[
                    "--probe=live",
                    "--socket-dir",
                    "/h/run/multus",
                    "--timeout-seconds",
                    "2",
                ],
                Action::Probe {
                    kind: Probe::Live,
                    socket: "/h/run/multus/multus.sock".into(),
                    timeout: Duration::from_secs(2),
                },
            ),
            (&["--help"], Action::Help),
            (&["-h"], Action::Help),
        ];
        for (input, want) in cases {
            assert_eq!(&parse_args(args(input)).unwrap(), want, "{input:?}");
        }
    }

    /// Every spelling upstream's pflag accepts for -t/--type and -d/--dest-dir.
    #[test]
    fn d10_pflag_spellings() {
        let want = plugins("/opt/x");
        for dest in [
            &["-d", "/opt/x"][..],
            &["-d/opt/x"],
            &["-d=/opt/x"],
            &["--dest-dir", "/opt/x"],
            &["--dest-dir=/opt/x"],
        ] {
            for kind in [
                &["-t", "thick"][..],
                &["-tthick"],
                &["-t=thick"],
                &["--type", "thick"],
                &["--type=thick"],
            ] {
                for order in [[kind, dest], [dest, kind]] {
                    let argv: Vec<&str> = order.concat();
                    assert_eq!(parse_args(args(&argv)).unwrap(), want, "{argv:?}");
                }
            }
        }
        // A value may start with '-' (pflag takes the next argument as is); `--` ends the flags.
        assert_eq!(
            parse_args(args(&["-t", "thick", "-d", "-odd", "--"])).unwrap(),
            plugins("-odd")
        );
        // The last occurrence wins, as with pflag.
        assert_eq!(
            parse_args(args(&["-t", "thick", "-d", "/a", "--dest-dir=/opt/x"])).unwrap(),
            want
        );
    }

    #[test]
    fn d10_type_is_required_and_thin_refused() {
        // Upstream: no or a wrong --type is "--type is missing or --type has invalid value", exit 1.
        for argv in [&[][..], &["-d", "/x"], &["-t", "thicc"], &["--type="]] {
            let err = parse_args(args(argv)).unwrap_err();
            assert!(matches!(err, ArgsError::Type), "{argv:?}: {err}");
            assert_eq!(err.exit_code(), 1);
            assert_eq!(
                err.to_string(),
                "--type is missing or --type has invalid value"
            );
        }
        let err = parse_args(args(&["-tthin"])).unwrap_err();
        assert!(matches!(err, ArgsError::Thin), "{err}");
        assert!(err.to_string().contains("thick plugin only"), "{err}");
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn bad_flags_are_refused() {
        let cases: &[&[&str]] = &[
            &["-t", "thin"],
            &["-d"],
            &["-t"],
            &["--dest-dir"],
            &["--probe", "maybe"],
            &["--mode", "rw-r--r--"],
            &["--mode", "99"],
            &["--timeout-seconds", "0"],
            &["--bogus"],
            &["-x"],
            &["-t", "thick", "stray"],
            &["-t", "thick", "--", "stray"],
        ];
        for input in cases {
            assert!(parse_args(args(input)).is_err(), "{input:?}");
        }
        assert_eq!(parse_args(args(&["--bogus"])).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn d10_installs_shim_and_passthru() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("img");
        fs::create_dir(&src).unwrap();
        fs::write(src.join(SHIM_NAME), b"shim").unwrap();
        fs::write(src.join(PASSTHRU_NAME), b"passthru").unwrap();
        let dest = dir.path().join("cni-bin");
        fs::create_dir(&dest).unwrap();
        let Action::Plugins { sources, dest_dir } = parse_args(args(&[
            "-tthick",
            &format!("-d={}", dest.display()),
            "--source-dir",
            src.to_str().unwrap(),
        ]))
        .unwrap() else {
            panic!("not a plugins install")
        };
        install_plugins(&sources, &dest_dir).unwrap();
        for (name, bytes) in [(SHIM_NAME, &b"shim"[..]), (PASSTHRU_NAME, b"passthru")] {
            let path = dest.join(name);
            assert_eq!(fs::read(&path).unwrap(), bytes, "{name}");
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
                MODE
            );
        }
        assert_eq!(
            fs::read_dir(&dest).unwrap().count(),
            2,
            "no temp files left"
        );

        // An image without passthru fails before anything on the host changes.
        fs::remove_file(src.join(PASSTHRU_NAME)).unwrap();
        fs::write(src.join(SHIM_NAME), b"shim v2").unwrap();
        let err = install_plugins(&sources, &dest_dir).unwrap_err();
        assert!(format!("{err:#}").contains("passthru"), "{err:#}");
        assert_eq!(
            fs::read(dest.join(SHIM_NAME)).unwrap(),
            b"shim",
            "shim untouched"
        );
    }

    #[test]
    fn installs_then_skips_identical_content() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        let shim = src.join(SHIM_NAME);
        fs::write(&shim, b"shim v1").unwrap();
        let dest = dir.path().join("dest");
        fs::create_dir(&dest).unwrap();

        assert_eq!(install(&shim, &dest).unwrap().1, Outcome::Installed);
        let installed = dest.join(SHIM_NAME);
        assert_eq!(
            fs::metadata(&installed).unwrap().permissions().mode() & 0o7777,
            MODE
        );
        assert_eq!(install(&shim, &dest).unwrap().1, Outcome::AlreadyCurrent);

        // A wrong mode alone is reason enough to reinstall.
        fs::set_permissions(&installed, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(install(&shim, &dest).unwrap().1, Outcome::Installed);
        fs::write(&shim, b"shim v2").unwrap();
        assert_eq!(install(&shim, &dest).unwrap().1, Outcome::Installed);
        assert_eq!(fs::read(&installed).unwrap(), b"shim v2");
        assert_eq!(
            fs::read_dir(&dest).unwrap().count(),
            1,
            "no temp file left behind"
        );
    }

    #[test]
    fn installs_a_config_with_its_own_mode_and_fixes_a_wrong_one() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("00-multus.conf");
        fs::write(
            &src,
            br#"{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus-shim"}"#,
        )
        .unwrap();
        let dest = dir.path().join("net.d");
        fs::create_dir(&dest).unwrap();
        let (installed, outcome) = install_mode(&src, &dest, 0o644).unwrap();
        assert_eq!(outcome, Outcome::Installed);
        assert_eq!(
            fs::metadata(&installed).unwrap().permissions().mode() & 0o7777,
            0o644
        );
        assert_eq!(
            install_mode(&src, &dest, 0o644).unwrap().1,
            Outcome::AlreadyCurrent
        );
        // Same content, other mode: rewritten, so the mode always ends up as asked.
        assert_eq!(
            install_mode(&src, &dest, 0o600).unwrap().1,
            Outcome::Installed
        );
        assert_eq!(
            fs::metadata(&installed).unwrap().permissions().mode() & 0o7777,
            0o600
        );
    }

    #[test]
    fn missing_source_is_an_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = install(&dir.path().join("nope"), dir.path()).unwrap_err();
        assert!(matches!(err, InstallError::ReadSource { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
