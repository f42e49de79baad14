//! The multus-rs node daemon library: configuration, the delegate-invocation engine, the
//! pod/NAD sources and the gRPC server. `main.rs` is a thin wrapper around it.

pub mod app;
pub mod atomic_file;
pub mod autoconf;
pub mod build_info;
pub mod caps;
pub mod chroot_proc;
pub mod config;
pub mod engine;
pub mod http_api;
pub mod kubelet;
pub mod layers;
pub mod load;
pub mod metrics;
pub mod netns;
pub mod otel;
pub mod server;
pub mod service;
pub mod signal;
pub mod socket;
pub mod source;
pub mod telemetry;
