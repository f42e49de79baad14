//! stub
pub mod apiserver;
