//! The delegate-invocation engine: no gRPC and no Kubernetes types in its signatures.
//!
//! `plan` turns a request (pod, selections, NADs) into ordered delegates; `exec` runs one plugin
//! per the CNI spec; `conflist` chains plugins; `cache` keeps what DEL needs; `admission` bounds
//! concurrency; `netstatus` builds the network-status annotation.

pub mod admission;
pub mod cache;
pub mod call;
pub mod conflist;
pub mod delegate;
pub mod exec;
#[cfg(test)]
mod fakeplugin;
pub mod netconf;
pub mod netstatus;
pub mod plan;
pub mod runtime;
pub mod selection;

pub use call::CniCall;
pub use delegate::Delegate;
