//! The command parser on arbitrary lines (see `duet::fuzz::parse`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| duet::fuzz::parse(data));
