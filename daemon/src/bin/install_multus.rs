//! `install_multus`: the init container's shim installer (upstream's flags), and the DaemonSet's
//! exec probe client (gRPC health over the daemon's unix socket).
//!
//! Install: the shim is written next to its destination, fsynced, then renamed over it, and the
//! directory is fsynced. A runtime may be executing the old shim at that very moment (after a
//! reboot it waits for the daemon this container belongs to): writing in place would fail with
//! ETXTBSY and deadlock the node (upstream MC#1221); a rename never touches the running inode.
//!
//! Probe: the image has no shell and no `grpc_health_probe`, so this binary asks
//! `grpc.health.v1.Health/Check` itself. `--probe live` passes when the daemon answers at all,
//! `--probe ready` only when it answers SERVING.
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::TokioIo;
use multus_common::constants;
use tonic::transport::{Endpoint, Uri};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Where the image puts the binaries (upstream's layout).
const IMAGE_BIN_DIR: &str = "/usr/src/multus-cni/bin";
/// Upstream's default destination: the host's CNI bin dir mounted into the init container.
const DEFAULT_DEST_DIR: &str = "/host/opt/cni/bin";
const SHIM_NAME: &str = "multus-shim";
const MODE: u32 = 0o755;

const USAGE: &str = "usage:
  install_multus [-t|--type thick] [-d|--dest-dir DIR] [--source PATH] [--mode OCTAL]
      copy the shim into DIR atomically (default DIR /host/opt/cni/bin,
      PATH /usr/src/multus-cni/bin/multus-shim, mode 0755); nothing is written when DIR already
      holds it. The same copy installs the multus CNI config (e.g. --source
      /etc/multus-rs/00-multus.conf --dest-dir /host/etc/cni/net.d --mode 0644)
  install_multus --probe live|ready [--socket-dir DIR] [--timeout-seconds N]
      ask the daemon's gRPC health service on DIR/multus.sock (default /run/multus);
      live: it answers; ready: it answers SERVING";

#[derive(Debug, thiserror::Error)]
enum ArgsError {
    #[error("{0} needs a value")]
    MissingValue(String),
    #[error("unknown argument {0:?}")]
    Unknown(OsString),
    #[error(
        "--type {0:?}: multus-rs ships the thick plugin only (thin is upstream's in-process plugin)"
    )]
    UnsupportedType(String),
    #[error("--mode {0:?}: expected an octal file mode such as 0644")]
    Mode(String),
    #[error("--probe {0:?}: expected live or ready")]
    ProbeKind(String),
    #[error("--timeout-seconds {0:?}: expected a positive integer")]
    Timeout(String),
}

#[derive(Debug, PartialEq)]
enum Probe {
    Live,
    Ready,
}

#[derive(Debug, PartialEq)]
enum Action {
    Help,
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

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Action, ArgsError> {
    let mut source = PathBuf::from(IMAGE_BIN_DIR).join(SHIM_NAME);
    let mut dest_dir = PathBuf::from(DEFAULT_DEST_DIR);
    let mut probe = None;
    let mut socket_dir = PathBuf::from(constants::DEFAULT_SOCKET_DIR);
    let mut timeout = Duration::from_secs(5);
    let mut mode = MODE;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        // `--flag=value` and `--flag value` both work, as with upstream's pflag.
        let (flag, inline) = match text.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(OsString::from(v))),
            _ => (text.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| ArgsError::MissingValue(flag.clone()))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Action::Help),
            "-t" | "--type" => {
                let kind = value()?.to_string_lossy().into_owned();
                if kind != "thick" {
                    return Err(ArgsError::UnsupportedType(kind));
                }
            }
            "-d" | "--dest-dir" => dest_dir = value()?.into(),
            "--source" => source = value()?.into(),
            "--mode" => {
                let raw = value()?.to_string_lossy().into_owned();
                match u32::from_str_radix(raw.trim_start_matches("0o"), 8) {
                    Ok(m) if m <= 0o7777 => mode = m,
                    _ => return Err(ArgsError::Mode(raw)),
                }
            }
            "--socket-dir" => socket_dir = value()?.into(),
            "--probe" => {
                probe = Some(match value()?.to_string_lossy().as_ref() {
                    "live" => Probe::Live,
                    "ready" => Probe::Ready,
                    other => return Err(ArgsError::ProbeKind(other.to_owned())),
                })
            }
            "--timeout-seconds" => {
                let raw = value()?.to_string_lossy().into_owned();
                match raw.parse::<u64>() {
                    Ok(n) if n > 0 => timeout = Duration::from_secs(n),
                    _ => return Err(ArgsError::Timeout(raw)),
                }
            }
            _ => return Err(ArgsError::Unknown(arg)),
        }
    }
    Ok(match probe {
        Some(kind) => Action::Probe {
            kind,
            socket: socket_dir.join(constants::SOCKET_FILE),
            timeout,
        },
        None => Action::Install {
            source,
            dest_dir,
            mode,
        },
    })
}

#[derive(Debug, thiserror::Error)]
enum InstallError {
    #[error("read source {path}: {source}")]
    ReadSource { path: PathBuf, source: io::Error },
    #[error("source {0} has no file name")]
    SourceName(PathBuf),
    #[error("create temporary file {path}: {source}")]
    CreateTemp { path: PathBuf, source: io::Error },
    #[error("write temporary file {path}: {source}")]
    WriteTemp { path: PathBuf, source: io::Error },
    #[error("rename {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("fsync directory {path}: {source}")]
    SyncDir { path: PathBuf, source: io::Error },
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
    let mut temp_name = OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp.{}", std::process::id()));
    let temp = dest_dir.join(temp_name);
    let written = write_synced(&temp, &bytes, mode).and_then(|()| {
        fs::rename(&temp, &dest).map_err(|e| InstallError::Rename {
            from: temp.clone(),
            to: dest.clone(),
            source: e,
        })
    });
    if let Err(e) = written {
        // Best effort: a leftover temp file is harmless (dot-named, replaced next time), the error is what matters.
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // The rename is only durable once the directory entry is; a crash before this could otherwise
    // leave the old shim (or none) after reboot.
    File::open(dest_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| InstallError::SyncDir {
            path: dest_dir.to_owned(),
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

fn write_synced(temp: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    // A stale temp file of a killed earlier run with our pid would make create_new fail: remove it.
    let _ = fs::remove_file(temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(temp)
        .map_err(|e| InstallError::CreateTemp {
            path: temp.to_owned(),
            source: e,
        })?;
    let write_err = |e| InstallError::WriteTemp {
        path: temp.to_owned(),
        source: e,
    };
    file.write_all(bytes).map_err(write_err)?;
    // The umask may have narrowed the creation mode.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(write_err)?;
    file.sync_all().map_err(write_err)
    // `file` is closed here, before the rename: nothing holds the new binary open for writing.
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
    let path = socket.to_owned();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
    });
    // The URI is a placeholder: the connector above decides where the bytes go.
    let channel = Endpoint::from_static("http://[::1]:50051")
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(connector)
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

fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Help => println!("{USAGE}"),
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
            return ExitCode::from(2);
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

    #[test]
    fn flags_parse_like_upstream() {
        let cases: &[(&[&str], Action)] = &[
            (
                &[],
                Action::Install {
                    source: "/usr/src/multus-cni/bin/multus-shim".into(),
                    dest_dir: "/host/opt/cni/bin".into(),
                    mode: MODE,
                },
            ),
            (
                &["-t", "thick", "-d", "/x"],
                Action::Install {
                    source: "/usr/src/multus-cni/bin/multus-shim".into(),
                    dest_dir: "/x".into(),
                    mode: MODE,
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
        ];
        for (input, want) in cases {
            assert_eq!(&parse_args(args(input)).unwrap(), want, "{input:?}");
        }
    }

    #[test]
    fn bad_flags_are_refused() {
        let cases: &[&[&str]] = &[
            &["-t", "thin"],
            &["-d"],
            &["--probe", "maybe"],
            &["--mode", "rw-r--r--"],
            &["--mode", "99"],
            &["--timeout-seconds", "0"],
            &["--bogus"],
        ];
        for input in cases {
            assert!(parse_args(args(input)).is_err(), "{input:?}");
        }
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
