//! libFuzzer entry point: see `multus_fuzz::shim_env`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multus_fuzz::shim_env(data));
