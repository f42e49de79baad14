//! libFuzzer entry point: see `multus_fuzz::netconf`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multus_fuzz::netconf(data));
