//! Alignment: the similarity transform (Umeyama, no reflection) that maps the
//! five detected landmarks onto the standard ArcFace template, and the warp of
//! the face into the recognizer's input tensor.

use arclock_secmem::LockedBytes;

use crate::Error;
use crate::manifest::{ChannelOrder, ModelSpec};
use crate::photo::Rgb;
use crate::workspace::sized;

/// Landmark positions of the ArcFace training crops in a 112x112 image (left
/// eye, right eye, nose, left and right mouth corner), as InsightFace publishes.
pub const ARCFACE_TEMPLATE: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// `dst = [a -b; b a] * src + t`: rotation, uniform scale and translation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    /// The least-squares similarity taking `src` onto `dst` (Umeyama 1991, for
    /// 2-D points the closed form needs no SVD). `None` if the points coincide.
    pub fn estimate(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Self> {
        let n = src.len().min(dst.len()) as f64;
        if n < 2.0 {
            return None;
        }
        let mean = |p: &[[f32; 2]]| {
            let (sx, sy) = p.iter().fold((0.0f64, 0.0f64), |(x, y), q| {
                (x + f64::from(q[0]), y + f64::from(q[1]))
            });
            (sx / n, sy / n)
        };
        let (msx, msy) = mean(src);
        let (mdx, mdy) = mean(dst);
        let (mut dot, mut cross, mut norm) = (0.0f64, 0.0f64, 0.0f64);
        for (s, d) in src.iter().zip(dst) {
            let (sx, sy) = (f64::from(s[0]) - msx, f64::from(s[1]) - msy);
            let (dx, dy) = (f64::from(d[0]) - mdx, f64::from(d[1]) - mdy);
            dot += sx * dx + sy * dy;
            cross += sx * dy - sy * dx;
            norm += sx * sx + sy * sy;
        }
        if norm < 1e-9 {
            return None;
        }
        let (a, b) = (dot / norm, cross / norm);
        Some(Similarity {
            a: a as f32,
            b: b as f32,
            tx: (mdx - (a * msx - b * msy)) as f32,
            ty: (mdy - (b * msx + a * msy)) as f32,
        })
    }

    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    /// Scale factor (destination pixels per source pixel).
    pub fn scale(&self) -> f32 {
        (self.a * self.a + self.b * self.b).sqrt()
    }

    fn inverse(&self) -> Self {
        let d = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / d, -self.b / d);
        Similarity {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        }
    }
}

/// The template scaled to the recognizer's input size.
pub fn template_for(spec: &ModelSpec) -> [[f32; 2]; 5] {
    let [w, h] = spec.input_size;
    let (sx, sy) = (w as f32 / 112.0, h as f32 / 112.0);
    ARCFACE_TEMPLATE.map(|[x, y]| [x * sx, y * sy])
}

/// Warps the face into `tensor` (NCHW, the recognizer's normalisation and
/// channel order) and `grey` (0..255 luma, same geometry, for quality checks).
///
/// A face much larger than the crop (a close-up phone photo) is first shrunk by
/// a whole factor with a box filter into `small`, so bilinear sampling does not
/// alias; the crops InsightFace trained on were made the same way from
/// moderate-resolution photos.
pub(crate) fn warp(
    spec: &ModelSpec,
    img: Rgb<'_>,
    landmarks: &[[f32; 2]; 5],
    small: &mut LockedBytes,
    tensor: &mut arclock_secmem::LockedVec<f32>,
    grey: &mut arclock_secmem::LockedVec<f32>,
) -> Result<(), Error> {
    let template = template_for(spec);
    let fail = || Error::LowQuality {
        reason: crate::Quality::Pose,
    };
    let mut tf = Similarity::estimate(landmarks, &template).ok_or_else(fail)?;
    let factor = (1.0 / tf.scale()).floor() as usize;
    let src = if factor >= 2 {
        // Shrink only the part of the photo the crop can sample from: the
        // crop's corners mapped back into the photo, plus one pixel.
        let [cw, ch] = spec.input_size.map(|v| v as f32);
        let inv = tf.inverse();
        let corners = [[0.0, 0.0], [cw, 0.0], [0.0, ch], [cw, ch]].map(|p| inv.apply(p));
        let lo = |i: usize| corners.iter().map(|c| c[i]).fold(f32::INFINITY, f32::min);
        let hi = |i: usize| {
            corners
                .iter()
                .map(|c| c[i])
                .fold(f32::NEG_INFINITY, f32::max)
        };
        let fx = factor as f32;
        let clamp_x = |v: f32| {
            (v / fx)
                .floor()
                .clamp(0.0, (img.width as usize / factor) as f32) as usize
        };
        let clamp_y = |v: f32| {
            (v / fx)
                .floor()
                .clamp(0.0, (img.height as usize / factor) as f32) as usize
        };
        let (x0, x1) = (clamp_x(lo(0) - fx), clamp_x(hi(0) + 2.0 * fx));
        let (y0, y1) = (clamp_y(lo(1) - fx), clamp_y(hi(1) + 2.0 * fx));
        let (w, h) = (x1.saturating_sub(x0).max(1), y1.saturating_sub(y0).max(1));
        let out = sized(small, w * h * 3)?;
        let stride = img.width as usize * 3;
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0u32; 3];
                for dy in 0..factor {
                    let sy = ((y0 + y) * factor + dy).min(img.height as usize - 1);
                    let sx = ((x0 + x) * factor).min(img.width as usize - factor);
                    let row = &img.pixels[sy * stride + sx * 3..sy * stride + (sx + factor) * 3];
                    for p in row.chunks_exact(3) {
                        acc[0] += u32::from(p[0]);
                        acc[1] += u32::from(p[1]);
                        acc[2] += u32::from(p[2]);
                    }
                }
                let n = (factor * factor) as u32;
                for c in 0..3 {
                    out[(y * w + x) * 3 + c] = ((acc[c] + n / 2) / n) as u8;
                }
            }
        }
        // Pixel centres: photo (x + 0.5) = small (x' + x0 + 0.5) * factor.
        let scaled = landmarks.map(|[x, y]| {
            [
                (x + 0.5) / fx - 0.5 - x0 as f32,
                (y + 0.5) / fx - 0.5 - y0 as f32,
            ]
        });
        tf = Similarity::estimate(&scaled, &template).ok_or_else(fail)?;
        Rgb {
            width: w as u32,
            height: h as u32,
            pixels: &small[..],
        }
    } else {
        img
    };

    let [w, h] = spec.input_size.map(|v| v as usize);
    let plane = w * h;
    let t = sized(tensor, 3 * plane)?;
    let order = match spec.channel_order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let inv = tf.inverse();
    let g_out = sized(grey, plane)?;
    for y in 0..h {
        for x in 0..w {
            let [sx, sy] = inv.apply([x as f32, y as f32]);
            let px = bilinear(src, sx, sy);
            let i = y * w + x;
            for (c, from) in order.iter().enumerate() {
                t[c * plane + i] = (px[*from] - spec.mean) / spec.std;
            }
            g_out[i] = 0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2];
        }
    }
    small.clear();
    Ok(())
}

/// Bilinear sample; outside the photo is black (as `cv2.warpAffine`'s default).
#[inline]
fn bilinear(img: Rgb<'_>, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = (img.width as f32, img.height as f32);
    if !(x > -1.0 && y > -1.0 && x < w && y < h) {
        return [0.0; 3];
    }
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let inside =
        |xx: i64, yy: i64| xx >= 0 && yy >= 0 && xx < img.width as i64 && yy < img.height as i64;
    let px = |xx: i64, yy: i64| -> [f32; 3] {
        if inside(xx, yy) {
            img.at(xx, yy).map(f32::from)
        } else {
            [0.0; 3]
        }
    };
    let (p00, p10, p01, p11) = (
        px(x0, y0),
        px(x0 + 1, y0),
        px(x0, y0 + 1),
        px(x0 + 1, y0 + 1),
    );
    let mut out = [0.0; 3];
    for c in 0..3 {
        let top = p00[c] + (p10[c] - p00[c]) * fx;
        let bottom = p01[c] + (p11[c] - p01[c]) * fx;
        out[c] = top + (bottom - top) * fy;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_recovers_a_known_similarity() {
        let truth = Similarity {
            a: 0.8,
            b: 0.3,
            tx: 5.0,
            ty: -7.0,
        };
        let src = [
            [10.0, 20.0],
            [50.0, 22.0],
            [30.0, 40.0],
            [15.0, 60.0],
            [45.0, 61.0],
        ];
        let dst = src.map(|p| truth.apply(p));
        let got = Similarity::estimate(&src, &dst).unwrap();
        for (x, y) in [
            (got.a, truth.a),
            (got.b, truth.b),
            (got.tx, truth.tx),
            (got.ty, truth.ty),
        ] {
            assert!((x - y).abs() < 1e-4, "{got:?} vs {truth:?}");
        }
        let back = got.inverse().apply(got.apply([3.0, 4.0]));
        assert!((back[0] - 3.0).abs() < 1e-4 && (back[1] - 4.0).abs() < 1e-4);
        assert!(Similarity::estimate(&[[1.0, 1.0]; 5], &dst).is_none());
    }

    #[test]
    fn template_landmarks_map_to_themselves() {
        let t = Similarity::estimate(&ARCFACE_TEMPLATE, &ARCFACE_TEMPLATE).unwrap();
        assert!((t.a - 1.0).abs() < 1e-5 && t.b.abs() < 1e-5);
    }
}
