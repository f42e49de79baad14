//! libFuzzer entry point: see `multus_fuzz::result_convert`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multus_fuzz::result_convert(data));
