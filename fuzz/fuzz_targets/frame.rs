//! See `samld_fuzz_checks::frame` (fuzz/checks/), which the corpus test also runs on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| samld_fuzz_checks::frame(data));
