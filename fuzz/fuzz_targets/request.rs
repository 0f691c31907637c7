//! Request bodies and query strings through the daemon's intake: strict JSON,
//! multipart, base64 photos, e-mail and name parsing, log filters.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| arclockd::fuzzing::request(data));
