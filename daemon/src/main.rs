//! multus-daemon: loads the daemon config, serves the multus socket until SIGTERM/SIGINT, then
//! drains. Exit codes follow upstream: 1 configuration, 3 source/listener/server, 2 bad flags.
use std::path::Path;
use std::process::ExitCode;

use multus_daemon::{app::App, config::Config, load, signal::Shutdown, telemetry};

fn fail(code: u8, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("multus-daemon: {e}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    let config_path = match load::parse_flags(std::env::args().skip(1)) {
        Ok(Some(path)) => path,
        Ok(None) => {
            println!("multus-daemon version {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            return fail(
                2,
                format!("{e}\nusage: multus-daemon [-config <path>] [-version]"),
            );
        }
    };
    let config = match setup(&config_path) {
        Ok(c) => c,
        Err(e) => return fail(1, e),
    };
    // Without this the reason would be only in the log file when stderr logging is off.
    let file_only = config.log_file.is_some() && !config.log_to_stderr;
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "multus-daemon failed");
            if file_only {
                fail(3, e)
            } else {
                ExitCode::from(3)
            }
        }
    }
}

/// Config (file, then `MULTUS_` env), then logging; any failure here is exit 1.
fn setup(path: &Path) -> anyhow::Result<Config> {
    let config = load::load(path, std::env::vars())?;
    telemetry::init(
        &config.log_level,
        config.log_file.as_deref(),
        config.log_to_stderr,
    )?;
    tracing::info!(config = %path.display(), version = env!("CARGO_PKG_VERSION"), "multus-daemon starting");
    load::warn_unimplemented(&config);
    Ok(config)
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = Shutdown::install()?;
        let app = App::build(config).await?;
        app.run(async { tracing::info!(signal = shutdown.recv().await, "shutting down") })
            .await?;
        Ok(())
    })
}
