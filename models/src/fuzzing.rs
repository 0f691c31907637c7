//! Entry points for the cargo-fuzz targets in `fuzz/`: everything untrusted
//! bytes reach before ONNX Runtime does (photo decode, EXIF orientation,
//! camera frame conversion, the detector's input tensor), through the same
//! first step as [`crate::Pipeline`]. Built only with the `fuzzing` feature.

use arclock_secmem::LockedBytes;

use crate::camera::{Frame, PixelFormat};
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
