//! Passive presentation-attack detection (PAD): does this one image show a
//! live face, or a photo, print or screen held up to the camera?
//!
//! The models are MiniFASNet V2 and V1SE (minivision-ai/Silent-Face-Anti-Spoofing,
//! Apache-2.0), fed exactly as upstream feeds them: the detector's face box
//! enlarged by the model's `crop_scale` (clamped so the crop fits the photo,
//! shifted back inside rather than shrunk), resized to 80x80 with OpenCV's
//! bilinear rule, BGR, 0..255. Each outputs three logits; class 1 is "live".
//! The fused score is the mean of the models' live probabilities (upstream
//! sums the softmaxes and takes the argmax; both are reported by the
//! evaluation, `models/README.md`).
//!
//! PAD is optional: upstream publishes no ONNX file, so an installation
//! without the mirror has none, and says so ([`PadStatus`]). Whether that
//! refuses sign-ins is the daemon's policy, not this crate's.

use crate::Error;
use crate::detect::Detection;
use crate::manifest::{ChannelOrder, ModelSpec};
use crate::photo::Rgb;
use crate::workspace::sized;
use arclock_secmem::LockedVec;

/// Whether passive PAD can run, for `/health`, the console and the start-up log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PadStatus {
    /// Every PAD model of the manifest is loaded.
    Ready { models: Vec<String> },
    /// The manifest names PAD models that are not installed (or names none).
    Unavailable { reason: String },
}

impl PadStatus {
    pub fn is_ready(&self) -> bool {
        matches!(self, PadStatus::Ready { .. })
    }
}

/// The crop upstream takes around a face box: `[x0, y0, x1, y1]` inclusive
/// pixel bounds inside a `width` x `height` photo.
pub(crate) fn crop_box(width: u32, height: u32, bbox: [f32; 4], scale: f32) -> [i64; 4] {
    let (src_w, src_h) = (width as f32, height as f32);
    let (bw, bh) = ((bbox[2] - bbox[0]).max(1.0), (bbox[3] - bbox[1]).max(1.0));
    let scale = scale.min((src_h - 1.0) / bh).min((src_w - 1.0) / bw);
    let (nw, nh) = (bw * scale, bh * scale);
    let (cx, cy) = (bbox[0] + bw / 2.0, bbox[1] + bh / 2.0);
    let (mut x0, mut y0) = (cx - nw / 2.0, cy - nh / 2.0);
    let (mut x1, mut y1) = (cx + nw / 2.0, cy + nh / 2.0);
    if x0 < 0.0 {
        x1 -= x0;
        x0 = 0.0;
    }
    if y0 < 0.0 {
        y1 -= y0;
        y0 = 0.0;
    }
    if x1 > src_w - 1.0 {
        x0 -= x1 - src_w + 1.0;
        x1 = src_w - 1.0;
    }
    if y1 > src_h - 1.0 {
        y0 -= y1 - src_h + 1.0;
        y1 = src_h - 1.0;
    }
    [x0 as i64, y0 as i64, x1 as i64, y1 as i64].map(|v| v.max(0))
}

/// Fills `out` (NCHW, one image) with the model's input for `face` in `img`.
pub(crate) fn prepare(
    spec: &ModelSpec,
    img: Rgb<'_>,
    face: &Detection,
    out: &mut LockedVec<f32>,
) -> Result<(), Error> {
    let scale = spec.crop_scale.unwrap_or(1.0);
    let [x0, y0, x1, y1] = crop_box(img.width, img.height, face.bbox, scale);
    let (x1, y1) = (
        x1.min(i64::from(img.width) - 1),
        y1.min(i64::from(img.height) - 1),
    );
    let (cw, ch) = ((x1 - x0 + 1).max(1) as f32, (y1 - y0 + 1).max(1) as f32);
    let [ow, oh] = spec.input_size.map(|v| v as usize);
    let plane = ow * oh;
    let t = sized(out, 3 * plane)?;
    let order = match spec.channel_order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let (sx, sy) = (cw / ow as f32, ch / oh as f32);
    let stride = img.width as usize * 3;
    let (max_x, max_y) = (x1 - x0, y1 - y0);
    // OpenCV INTER_LINEAR: source = (dst + 0.5) * scale - 0.5, clamped.
    let sample = |v: f32, max: i64| -> (usize, usize, f32) {
        let v = v.max(0.0);
        let i = (v.floor() as i64).min(max);
        let j = (i + 1).min(max);
        (i as usize, j as usize, v - i as f32)
    };
    for oy in 0..oh {
        let (ya, yb, fy) = sample((oy as f32 + 0.5) * sy - 0.5, max_y);
        for ox in 0..ow {
            let (xa, xb, fx) = sample((ox as f32 + 0.5) * sx - 0.5, max_x);
            let at = |x: usize, y: usize, c: usize| -> f32 {
                let px = (y0 as usize + y) * stride + (x0 as usize + x) * 3 + c;
                f32::from(img.pixels.get(px).copied().unwrap_or(0))
            };
            for (c, src) in order.iter().enumerate() {
                let top = at(xa, ya, *src) * (1.0 - fx) + at(xb, ya, *src) * fx;
                let bottom = at(xa, yb, *src) * (1.0 - fx) + at(xb, yb, *src) * fx;
                let v = top * (1.0 - fy) + bottom * fy;
                t[c * plane + oy * ow + ox] = (v - spec.mean) / spec.std;
            }
        }
    }
    Ok(())
}

/// The probability of class 1 ("live") from one model's logits.
pub(crate) fn live_probability(logits: &[f32]) -> Result<f32, String> {
    if logits.len() != 3 || logits.iter().any(|v| !v.is_finite()) {
        return Err(format!("expected 3 finite logits, got {}", logits.len()));
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    Ok(exp[1] / exp.iter().sum::<f32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crop_is_shifted_inside_not_shrunk() {
        // A 100x100 box at the left edge of a 1000x500 photo, scale 2.7: the
        // crop is 270 wide, pushed right to start at 0.
        let b = crop_box(1000, 500, [0.0, 200.0, 100.0, 300.0], 2.7);
        assert_eq!(b[0], 0);
        assert_eq!(b[2] - b[0], 270);
        // A box as tall as the photo: the scale clamps to (h - 1) / box_h.
        let b = crop_box(400, 250, [100.0, 0.0, 250.0, 250.0], 4.0);
        assert!(b[3] - b[1] <= 249, "{b:?}");
    }

    #[test]
    fn softmax_picks_class_one() {
        let p = live_probability(&[0.0, 2.0, 0.0]).unwrap();
        assert!((p - 0.787).abs() < 0.01, "{p}");
        assert!(live_probability(&[1.0, f32::NAN, 0.0]).is_err());
        assert!(live_probability(&[1.0, 0.0]).is_err());
    }
}
