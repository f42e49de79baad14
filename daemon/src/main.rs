//! multus-daemon: loads the daemon config, serves the multus socket until SIGTERM/SIGINT, then
//! drains. Exit codes follow upstream: 1 configuration, 3 source/listener/server, 2 bad flags,
//! 4 after `-version`.
#![forbid(unsafe_code)]
use std::path::Path;
use std::process::ExitCode;

use multus_daemon::app::{App, AppError};
use multus_daemon::autoconf::ConfigWriter;
use multus_daemon::telemetry::{self, Telemetry};
use multus_daemon::{build_info, caps, chroot_proc, config::Config, load, signal::Shutdown};

/// Threads of tokio's blocking pool (its default is 512). Every record write, netns operation and
/// device-info copy runs there, so a burst of 200 ADDs grew the pool to one thread per request,
/// each with its stack and allocator heap; beyond this many the work queues (it is short file and
/// netlink work, bounded by the disk, not by threads). Idle threads still exit after tokio's 10 s.
const MAX_BLOCKING_THREADS: usize = 16;

fn fail(code: u8, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("multus-daemon: {e}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let flags = match load::parse_flags(std::env::args().skip(1)) {
        Ok(Some(flags)) => flags,
        Ok(None) => {
            println!("multus-daemon: {}", build_info::version_string());
            return ExitCode::from(build_info::VERSION_EXIT_CODE);
        }
        Err(e) => {
            return fail(
                2,
                format!(
                    "{e}\nusage: multus-daemon [-config <path>] [-version] [-reconcile-once [-collect]]"
                ),
            );
        }
    };
    let config_path = flags.config.clone();
    let config = match load::load(&config_path, std::env::vars()) {
        Ok(c) => c,
        Err(e) => return fail(1, e),
    };
    // On stderr whatever logLevel says, as upstream prints its "cannot set logging level".
    for w in &config.warnings {
        eprintln!("multus-daemon: warning: config key {}: {}", w.key, w.reason);
    }
    // Before anything serves: a chroot whose /proc is another PID namespace's fails every ADD.
    if let Some(root) = &config.chroot_dir
        && let Err(e) = chroot_proc::check(root)
    {
        return fail(1, e);
    }
    // Capability sets are per thread: reduce them before the runtime starts any.
    let caps = match caps::apply(&config) {
        Ok(report) => report,
        Err(e) => return fail(1, e),
    };
    // The runtime before logging: the OTLP exporter's channel lives on it.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        // A stopping thread hands its cached chunks back to glibc: the heap trims again.
        .on_thread_stop(multus_daemon::heap::thread_stopped)
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(3, e),
    };
    let _telemetry = {
        let _enter = runtime.enter();
        match setup(&config_path, &config, &caps) {
            Ok(t) => t,
            Err(e) => return fail(1, e),
        }
    };
    if flags.reconcile_once {
        return reconcile_once(&runtime, config, flags.collect);
    }
    // upstream reads the file again for the generator: which keys are present matters there.
    let writer = match ConfigWriter::plan(&config_path, &config, std::env::vars()) {
        Ok(w) => w,
        Err(e) => return fail(e.exit_code(), e),
    };
    // Without this the reason would be only in the log file when stderr logging is off.
    let file_only = config.log_file.is_some() && !config.log_to_stderr;
    match serve(&runtime, config, writer) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "multus-daemon failed");
            let code = e.downcast_ref::<AppError>().map_or(3, AppError::exit_code);
            if file_only {
                fail(code, e)
            } else {
                ExitCode::from(code)
            }
        }
    }
}

/// Logging (format, rotation, OTLP) from the loaded config; any failure here is exit 1.
fn setup(path: &Path, config: &Config, caps: &caps::Report) -> anyhow::Result<Telemetry> {
    let telemetry = telemetry::init_from(config)?;
    tracing::info!(config = %path.display(), version = env!("CARGO_PKG_VERSION"), "multus-daemon starting");
    tracing::info!(kept = ?caps.kept, dropped = ?caps.dropped, "capabilities reduced");
    if !caps.bounding_kept.is_empty() {
        tracing::warn!(bounding = ?caps.bounding_kept, "no CAP_SETPCAP: these stay in the bounding set, so delegates may gain them");
    }
    load::warn_unimplemented(config);
    Ok(telemetry)
}

fn serve(
    runtime: &tokio::runtime::Runtime,
    config: Config,
    writer: Option<ConfigWriter>,
) -> anyhow::Result<()> {
    runtime.block_on(async {
        let shutdown = Shutdown::install()?;
        let app = App::build(config).await?.with_config_writer(writer);
        // The await stays outside the macro: a tracing macro does not evaluate its fields when
        // its level is off, so at `logLevel: error` the signal would never be awaited (D-7).
        let running = app.run(async move {
            let signal = shutdown.recv().await;
            tracing::info!(signal, "shutting down");
        });
        // On a worker, not in `block_on`: the main thread is not one of the runtime's workers,
        // so the accept loop polled here had each connection wake this thread and then hand the
        // connection's task to a worker (two thread wake-ups per request). Spawned, the worker
        // that sees the socket readable accepts and runs the connection itself.
        tokio::spawn(running).await??;
        Ok(())
    })
}

/// `-reconcile-once`: the report on stdout; exit 0, or 3 when something could not be collected
/// (or the scan failed).
fn reconcile_once(runtime: &tokio::runtime::Runtime, config: Config, collect: bool) -> ExitCode {
    match runtime.block_on(multus_daemon::app::reconcile_once(config, collect)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(e) => fail(e.exit_code(), e),
    }
}
