//! The locked buffers one pipeline run writes, reused across runs and wiped
//! after each one.
//!
//! Reuse matters twice: `mmap` + `mlock` per request would cost more than the
//! decode itself for small photos, and a fixed set of buffers is easy to prove
//! wiped (`Workspace::is_wiped`, used by the tests after a run).

use arclock_secmem::{LockedBytes, LockedVec, Plain};

use crate::Error;

/// Every buffer that ever holds photo bytes' derivatives: decoded pixels, the
/// detector and recognizer input tensors, the aligned grey crop.
pub struct Workspace {
    /// Decoder output in its native colour type; scratch for re-orienting.
    pub(crate) raw: LockedBytes,
    /// RGB8 pixels of the photo, upright.
    pub(crate) rgb: LockedBytes,
    /// A box-filtered smaller copy for faces much larger than the crop.
    pub(crate) small: LockedBytes,
    /// Detector input tensor, NCHW f32.
    pub(crate) det_input: LockedVec<f32>,
    /// Recognizer input tensor (the aligned face), NCHW f32.
    pub(crate) rec_input: LockedVec<f32>,
    /// Aligned face in grey levels, for the quality checks.
    pub(crate) grey: LockedVec<f32>,
    /// The PAD models' input (the enlarged face crop), NCHW f32.
    pub(crate) pad_input: LockedVec<f32>,
    /// Coefficients of a JPEG's second half, decoded ahead (see `jpeg`).
    pub(crate) records: LockedVec<i16>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Workspace([redacted])")
    }
}

impl Workspace {
    /// Empty buffers; they grow to the largest photo seen (within the limits).
    pub fn new() -> Result<Self, Error> {
        Ok(Workspace {
            raw: LockedVec::with_capacity(0)?,
            rgb: LockedVec::with_capacity(0)?,
            small: LockedVec::with_capacity(0)?,
            det_input: LockedVec::with_capacity(0)?,
            rec_input: LockedVec::with_capacity(0)?,
            grey: LockedVec::with_capacity(0)?,
            pad_input: LockedVec::with_capacity(0)?,
            records: LockedVec::with_capacity(0)?,
        })
    }

    /// Zeroizes everything the last run wrote.
    pub fn wipe(&mut self) {
        self.raw.clear();
        self.rgb.clear();
        self.small.clear();
        self.det_input.clear();
        self.rec_input.clear();
        self.grey.clear();
        self.pad_input.clear();
        self.records.clear();
    }

    /// Whether every byte of every mapping is zero.
    pub fn is_wiped(&self) -> bool {
        self.raw.is_wiped()
            && self.rgb.is_wiped()
            && self.small.is_wiped()
            && self.det_input.is_wiped()
            && self.rec_input.is_wiped()
            && self.grey.is_wiped()
            && self.pad_input.is_wiped()
            && self.records.is_wiped()
    }

    /// Bytes currently mapped and locked, for the benchmark's memory figure.
    pub fn locked_bytes(&self) -> usize {
        [
            self.raw.mapping(),
            self.rgb.mapping(),
            self.small.mapping(),
            self.det_input.mapping(),
            self.rec_input.mapping(),
            self.grey.mapping(),
            self.pad_input.mapping(),
            self.records.mapping(),
        ]
        .iter()
        .map(|(a, b)| b - a)
        .sum()
    }
}

/// `buf` resized to `len` elements, replaced by a larger locked mapping when it
/// is too small (the old one is wiped and unmapped on drop).
pub(crate) fn sized<T: Plain>(buf: &mut LockedVec<T>, len: usize) -> Result<&mut [T], Error> {
    if buf.capacity() < len {
        *buf = LockedVec::with_capacity(len)?;
    }
    buf.resize(len)?;
    Ok(buf.as_mut_slice())
}
