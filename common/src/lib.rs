//! The CNI vocabulary shared by `multus-shim` and `multus-daemon`: verbs, error objects and codes,
//! CNI_ARGS, spec versions, result conversion between versions, and name validation.
//!
//! Kept free of async, gRPC transport and Kubernetes so the shim stays small.
#![forbid(unsafe_code)]

pub mod args;
pub mod command;
pub mod constants;
pub mod error;
pub mod result;
pub mod validate;
pub mod version;

pub use args::CniArgs;
pub use command::Command;
pub use error::{CniError, code};
