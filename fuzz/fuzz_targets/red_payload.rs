#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| voipchat_fuzz::red::red_payload(data));
