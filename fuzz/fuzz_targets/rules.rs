//! libFuzzer's entry for [`linli_fuzz::rules`]; `scripts/fuzz rules` runs it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| linli_fuzz::rules::run(data));
