//! Entry points for the cargo-fuzz targets in `fuzz/`: everything untrusted
//! bytes reach before ONNX Runtime does (photo decode, EXIF orientation,
//! camera frame conversion, the detector's input tensor), through the same
//! first step as [`crate::Pipeline`], and our own JPEG entropy decoder
//! against libjpeg-turbo's. Built only with the `fuzzing` feature.

use arclock_secmem::LockedBytes;

use crate::camera::{Frame, PixelFormat};
use crate::jpeg::Outcome;
use crate::jpeg::compare::{ours, theirs};
use crate::photo::{Decoded, Limits};
use crate::pipeline::{Input, to_rgb};
use crate::{Error, ModelSpec, Workspace, detect};

/// The daemon's limits scaled down (2 MP, 2048 px a side): the same checks
/// and code paths, but a fuzzer's 4 KiB PNG can no longer declare a 24 MP
/// canvas and spend a second filling it, which took the target from ~700 to
/// ~15 inputs a second.
fn limits() -> Limits {
    Limits {
        max_side: 2048,
        max_pixels: 2_000_000,
        ..Limits::default()
    }
}

/// Photo bytes (as a client sends them) through decode and the detector's
/// input preparation. Panics if a success breaks an invariant the models
/// rely on.
pub fn photo(spec: &ModelSpec, ws: &mut Workspace, bytes: &[u8]) -> Result<(), Error> {
    run(spec, ws, Input::Encoded(bytes))
}

/// JPEG bytes through our own 1/8 entropy decoder (`jpeg.rs`, the one parser
/// of untrusted bytes we wrote ourselves), whole and split over two threads,
/// against libjpeg-turbo's own 1/8 decode. Panics unless ours refuses, or
/// libjpeg-turbo decodes the file without a warning to the same pixels and
/// the halves give the whole's. Meant to run with libjpeg-turbo's SIMD code
/// off (`JSIMD_FORCENONE=1`, which the `jpeg` target sets): ours follows its
/// C code, which its SIMD code departs from only at coefficients no encoder
/// writes.
pub fn jpeg(bytes: &[u8]) -> Result<(), Error> {
    let Ok(header) = turbojpeg::read_header(bytes) else {
        return Ok(());
    };
    if !crate::photo::ours_may_take(&header) {
        return Ok(());
    }
    let (w, h) = crate::photo::admitted(&limits(), &header)?;
    let (w, h) = (w.div_ceil(8) as usize, h.div_ceil(8) as usize);
    let (whole, pixels) = ours(bytes, false, w * h * 3)?;
    let (halves, same) = ours(bytes, true, w * h * 3)?;
    assert_eq!(
        whole == Outcome::Refused,
        halves == Outcome::Refused,
        "one decode refused what the other took ({whole:?}, {halves:?})"
    );
    if whole == Outcome::Refused {
        return Ok(());
    }
    assert!(
        pixels == same,
        "the halves ({halves:?}) differ from the whole"
    );
    let verdict = theirs(bytes, w, h);
    assert!(
        verdict.is_ok(),
        "taken by ours, refused by libjpeg-turbo: {verdict:?}"
    );
    let theirs = verdict.unwrap_or_default();
    let differ = pixels.iter().zip(&theirs).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{differ} bytes differ from libjpeg-turbo's");
    Ok(())
}

/// A camera frame (`width`, `height`, format and bytes as the driver hands
/// them over) through conversion and the detector's input preparation.
pub fn frame(
    spec: &ModelSpec,
    ws: &mut Workspace,
    width: u32,
    height: u32,
    mjpeg: bool,
    bytes: &[u8],
) -> Result<(), Error> {
    let frame = Frame {
        width,
        height,
        format: if mjpeg {
            PixelFormat::Mjpeg
        } else {
            PixelFormat::Yuyv
        },
        data: LockedBytes::from_slice(bytes)?,
    };
    run(spec, ws, Input::Frame(&frame))
}

/// The pipeline's own first step, then the detector tensor, then a wipe.
fn run(spec: &ModelSpec, ws: &mut Workspace, input: Input<'_>) -> Result<(), Error> {
    let limits = limits();
    // Full size, then scaled: both decode paths a photo can take.
    let out = to_rgb(input, &limits, 0, false, ws)
        .and_then(|d| prepared(spec, ws, d, &limits))
        .and_then(|()| to_rgb(input, &limits, 64, true, ws))
        .and_then(|d| prepared(spec, ws, d, &limits));
    ws.wipe();
    out
}

fn prepared(
    spec: &ModelSpec,
    ws: &mut Workspace,
    img: Decoded,
    limits: &Limits,
) -> Result<(), Error> {
    let Decoded { width, height, .. } = img;
    assert!(width > 0 && height > 0, "decoded an empty image");
    assert!(width <= limits.max_side && height <= limits.max_side);
    assert_eq!(ws.rgb.len(), width as usize * height as usize * 3);
    let at = detect::prepare(
        spec,
        img.pixels(&ws.rgb),
        detect::whole(width, height),
        spec.input_size,
        &mut ws.det_input,
    )?;
    let [max_w, max_h] = spec.input_size;
    assert!(at.width % 32 == 0 && at.height % 32 == 0);
    assert!(at.width <= (max_w as usize).div_ceil(32) * 32);
    assert!(at.height <= (max_h as usize).div_ceil(32) * 32);
    assert!(at.inv_scale >= 1.0 && at.inv_scale.is_finite());
    assert_eq!(ws.det_input.len(), 3 * at.width * at.height);
    assert!(ws.det_input.iter().all(|v| v.is_finite()));
    Ok(())
}
