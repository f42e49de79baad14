//! libFuzzer entry point: see `multus_fuzz::cni_args`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multus_fuzz::cni_args(data));
