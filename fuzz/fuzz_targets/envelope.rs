//! libFuzzer's entry for [`linli_fuzz::envelope`]; `scripts/fuzz envelope` runs it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| linli_fuzz::envelope::run(data));
