#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skeleguide_fuzz::pose_json(data));
