//! JPEG bytes through our own 1/8 entropy decoder (`models/src/jpeg.rs`),
//! whole and split over two threads, against libjpeg-turbo's 1/8 decode: a
//! differential oracle for the one parser of untrusted bytes we wrote.
//!
//! Input: the JPEG file as a client would upload it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: {
        // Before libjpeg-turbo's first call, which reads it once: ours
        // follows its C code, and its SIMD code departs from that only at
        // coefficients no encoder writes (models/src/jpeg.rs).
        // SAFETY: no other thread exists yet to read the environment.
        unsafe { std::env::set_var("JSIMD_FORCENONE", "1") };
    },
    |data: &[u8]| {
        let _ = arclock_face::fuzzing::jpeg(data);
    }
);
