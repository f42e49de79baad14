//! libFuzzer entry point: see `multus_fuzz::annotation`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multus_fuzz::annotation(data));
