//! The multus-rs node daemon library: configuration, the delegate-invocation engine, the
//! pod/NAD sources and the gRPC server. `main.rs` is a thin wrapper around it.

pub mod config;
pub mod source;
