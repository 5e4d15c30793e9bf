//! The pcapng reader, from one buffer and through the read-ahead path in small pieces (the way
//! a pipe from a live tcpdump feeds it), with every frame run through the pipeline.
//!
//! Input: the file. Properties: no panic; both ways of reading give the same frames, times,
//! link types and ending (clean, truncated, or the same error); the pipeline holds nothing
//! after finishing. The seeds decide the format; the fuzzer may change the magic, so both
//! readers are reached from either target.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| liteobs_fuzz::check_capture(data));
