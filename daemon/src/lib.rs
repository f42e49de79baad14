//! The multus-rs node daemon library: configuration, the delegate-invocation engine, the
//! pod/NAD sources and the gRPC server. `main.rs` is a thin wrapper around it.
//!
//! Public: what `main.rs`, `install_multus`, `daemon/tests` and the e2e crate use. The rest is
//! private so the dead-code lint sees it.

pub mod app;
pub mod atomic_file;
pub mod autoconf;
pub mod build_info;
pub mod caps;
pub mod chroot_proc;
pub mod config;
mod engine;
pub mod heap;
mod http_api;
mod kubelet;
mod layers;
pub mod load;
pub mod metrics;
mod netns;
mod otel;
mod readiness;
mod server;
mod service;
pub mod signal;
pub mod socket;
pub mod source;
pub mod telemetry;
