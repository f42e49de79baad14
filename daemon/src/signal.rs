//! Waiting for the signals that stop the daemon (SIGTERM from the kubelet, SIGINT from a terminal).
use tokio::signal::unix::{SignalKind, signal};

/// The signal handlers could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("installing the {signal} handler: {source}")]
pub struct SignalError {
    signal: &'static str,
    source: std::io::Error,
}

/// A pair of installed handlers; install them before serving so an early signal is not lost.
pub struct Shutdown {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Installs the SIGTERM and SIGINT handlers. Must run inside a tokio runtime.
    pub fn install() -> Result<Self, SignalError> {
        let install = |kind, name| {
            signal(kind).map_err(|source| SignalError {
                signal: name,
                source,
            })
        };
        Ok(Self {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    /// Resolves with the name of the first signal received.
    pub async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
