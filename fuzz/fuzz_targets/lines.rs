//! The line reader on arbitrary streams and chunkings (see `duet::fuzz::lines`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| duet::fuzz::lines(data));
