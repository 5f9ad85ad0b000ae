//! libFuzzer's entry for [`linli_fuzz::roster`]; `scripts/fuzz roster` runs it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| linli_fuzz::roster::run(data));
