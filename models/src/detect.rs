//! Face detection: photo to detector tensor, and the two detector families'
//! outputs (SCRFD, YuNet) back to boxes with five landmarks in photo pixels.
//!
//! Both detectors take any input size that is a multiple of 32. The photo is
//! shrunk (never enlarged) to fit a bound, placed top-left and padded with
//! black: a 150x150 LFW photo runs at 160x160, sixteen times cheaper than a fixed
//! 640x640 letterbox. The pipeline first bounds a large photo by
//! `FIRST_PASS_SIDE` (a 12 MP selfie runs at 160x128). A face smaller
//! than `FIRST_PASS_MIN_FACE` pixels there is looked at again alone
//! (`closer`, at `CLOSER_SIDE`); no face at all sends the whole photo
//! to the manifest's `input_size`. The detector's cost grows with its input
//! (~6 ms at 160x160, ~70 ms at 640x480 here), and the face of a photo
//! taken to sign in fills much of it.

use crate::Error;
use crate::manifest::{ChannelOrder, ModelSpec};
use crate::photo::Rgb;
use crate::workspace::sized;
use arclock_secmem::LockedVec;

/// One detected face, in photo pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// Left eye, right eye, nose tip, left and right mouth corners (as seen in
    /// the photo: "left" is the left of the image).
    pub landmarks: [[f32; 2]; 5],
    pub score: f32,
}

impl Detection {
    pub fn width(&self) -> f32 {
        self.bbox[2] - self.bbox[0]
    }

    pub fn height(&self) -> f32 {
        self.bbox[3] - self.bbox[1]
    }

    pub fn area(&self) -> f32 {
        self.width().max(0.0) * self.height().max(0.0)
    }

    /// The same face with every coordinate multiplied by `k` (from a scaled
    /// decode's pixels to the photo's, or back).
    pub fn scaled(&self, k: f32) -> Detection {
        Detection {
            bbox: self.bbox.map(|v| v * k),
            landmarks: self.landmarks.map(|[x, y]| [x * k, y * k]),
            score: self.score,
        }
    }

    pub(crate) fn iou(&self, o: &Detection) -> f32 {
        let x1 = self.bbox[0].max(o.bbox[0]);
        let y1 = self.bbox[1].max(o.bbox[1]);
        let x2 = self.bbox[2].min(o.bbox[2]);
        let y2 = self.bbox[3].min(o.bbox[3]);
        let inter = (x2 - x1).max(0.0) * (y2 - y1).max(0.0);
        let union = self.area() + o.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// The first detection pass's bound (a square, in detector pixels): a
/// 4:3 photo runs at 160x128, a little less than the 160x160 of the
/// 150x150 LFW photos the threshold was calibrated on (their faces are
/// ~55 px in the detector). At 192 (192x160) a 12 MP selfie's detector took
/// ~3.7 ms more, for FNMR 0.74 % instead of 0.78 % at FMR 1e-3 over
/// lfw-dev as phone photos (`EVAL-phone.md`).
pub(crate) const FIRST_PASS_SIDE: u32 = 160;

/// The smallest face (shorter box side, in detector pixels) the first pass
/// settles for: five stride-8 cells, inside the range both detectors were
/// trained on and close to the calibration photos' faces. A smaller face
/// sends the photo to a second pass sized to make it larger than this; no
/// face, to one at the manifest's full size.
pub(crate) const FIRST_PASS_MIN_FACE: f32 = 40.0;

/// The side (detector pixels) of the second, closer look at a face the
/// first pass found too small: three stride-32 cells, so the detector runs
/// on no padding. At 128 (twice the face, padded up to a multiple of 32)
/// the bench's flat 12 MP photo spent 10.7-11.0 ms in the detector, at 96
/// 7.0-9.6 ms, FNMR unmoved (`bench/results/issue20-closer-ab.md`).
pub(crate) const CLOSER_SIDE: u32 = 96;

/// The face's shorter side (detector pixels) in the closer look: a quarter
/// above what the first pass settles for.
pub(crate) const CLOSER_FACE: f32 = 1.25 * FIRST_PASS_MIN_FACE;

/// The closer look's region around `face` (in the decoded photo's pixels,
/// `width` x `height`): the square that [`CLOSER_SIDE`] shows the face in at
/// [`CLOSER_FACE`], but never less than 1.5 times the face's longer side,
/// for the context the detector needs.
pub(crate) fn closer(face: &Detection, width: u32, height: u32) -> Region {
    let (short, long) = (
        face.width().min(face.height()).max(1.0),
        face.width().max(face.height()).max(1.0),
    );
    let side = (CLOSER_SIDE as f32 * short / CLOSER_FACE).max(1.5 * long);
    around(face, side / long, width, height)
}

/// The detector decoders the manifest can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Scrfd,
    Yunet,
}

impl Family {
    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "scrfd" => Some(Family::Scrfd),
            "yunet" => Some(Family::Yunet),
            _ => None,
        }
    }

    /// Score below which a candidate is dropped, unless the manifest says otherwise
    /// (InsightFace's and OpenCV's published defaults).
    pub fn default_score_threshold(self) -> f32 {
        match self {
            Family::Scrfd => 0.5,
            Family::Yunet => 0.6,
        }
    }
}

/// Where the photo sits inside the detector tensor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    /// Tensor width and height (multiples of 32).
    pub(crate) width: usize,
    pub(crate) height: usize,
    /// Photo pixels per tensor pixel (>= 1).
    pub(crate) inv_scale: f32,
    /// Where the tensor's top-left corner is in the photo (a region's corner).
    pub(crate) origin: [f32; 2],
}

/// A rectangle of the photo in pixels, `[x0, y0, x1, y1)`.
pub(crate) type Region = [u32; 4];

/// The whole of a `width` x `height` photo.
pub(crate) fn whole(width: u32, height: u32) -> Region {
    [0, 0, width, height]
}

/// The square around `face` (photo pixels) `times` its longer side, clamped
/// to the photo.
fn around(face: &Detection, times: f32, width: u32, height: u32) -> Region {
    let side = face.width().max(face.height()) * times;
    let (cx, cy) = (
        (face.bbox[0] + face.bbox[2]) / 2.0,
        (face.bbox[1] + face.bbox[3]) / 2.0,
    );
    let clamp = |v: f32, max: u32| v.clamp(0.0, max as f32) as u32;
    [
        clamp(cx - side / 2.0, width),
        clamp(cy - side / 2.0, height),
        clamp((cx + side / 2.0).ceil(), width),
        clamp((cy + side / 2.0).ceil(), height),
    ]
}

/// Fills `out` with the detector input for `region` of `img` (NCHW,
/// normalised per the manifest), shrunk to fit `bound` (width, height) if it
/// is larger.
pub(crate) fn prepare(
    spec: &ModelSpec,
    img: Rgb<'_>,
    region: Region,
    bound: [u32; 2],
    out: &mut LockedVec<f32>,
) -> Result<Placement, Error> {
    let [rx0, ry0, rx1, ry1] = region.map(|v| v as usize);
    if img.width == 0
        || img.height == 0
        || img.pixels.len() < img.width as usize * img.height as usize * 3
        || rx1 <= rx0
        || ry1 <= ry0
        || rx1 > img.width as usize
        || ry1 > img.height as usize
    {
        return Err(Error::CorruptImage("no pixels to detect in".into()));
    }
    let (iw, ih) = (rx1 - rx0, ry1 - ry0);
    let [max_w, max_h] = bound.map(|v| v.max(32) as f32);
    let scale = (max_w / iw as f32).min(max_h / ih as f32).min(1.0);
    let rw = ((iw as f32 * scale).round() as usize).max(1);
    let rh = ((ih as f32 * scale).round() as usize).max(1);
    let pad = |v: usize| v.div_ceil(32).max(1) * 32;
    let (tw, th) = (pad(rw), pad(rh));
    let plane = tw * th;
    let t = sized(out, 3 * plane)?;
    let black = (0.0 - spec.mean) / spec.std;
    t.fill(black);
    let inv = iw as f32 / rw as f32;
    let inv_y = ih as f32 / rh as f32;
    let order = match spec.channel_order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    let stride = img.width as usize * 3;
    for y in 0..rh {
        // Box filter over the photo pixels this tensor pixel covers (area
        // resampling; a plain copy when the region is not shrunk).
        let y0 = ry0 + ((y as f32 * inv_y) as usize).min(ih - 1);
        let y1 = (ry0 + ((y + 1) as f32 * inv_y) as usize).clamp(y0 + 1, ry1);
        for x in 0..rw {
            let x0 = rx0 + ((x as f32 * inv) as usize).min(iw - 1);
            let x1 = (rx0 + ((x + 1) as f32 * inv) as usize).clamp(x0 + 1, rx1);
            let mut acc = [0u32; 3];
            for sy in y0..y1 {
                let row = &img.pixels[sy * stride + x0 * 3..sy * stride + x1 * 3];
                for p in row.chunks_exact(3) {
                    acc[0] += u32::from(p[0]);
                    acc[1] += u32::from(p[1]);
                    acc[2] += u32::from(p[2]);
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as f32;
            let i = y * tw + x;
            for (c, src) in order.iter().enumerate() {
                t[c * plane + i] = (acc[*src] as f32 / n - spec.mean) / spec.std;
            }
        }
    }
    Ok(Placement {
        width: tw,
        height: th,
        inv_scale: inv,
        origin: [rx0 as f32, ry0 as f32],
    })
}

/// One output tensor of the detector: its name, shape and values.
pub(crate) struct Output<'a> {
    pub(crate) name: &'a str,
    pub(crate) shape: &'a [i64],
    pub(crate) values: &'a [f32],
}

/// Candidates above `threshold`, decoded and mapped back to photo pixels,
/// after non-maximum suppression, best first.
pub(crate) fn decode(
    family: Family,
    outputs: &[Output<'_>],
    at: Placement,
    threshold: f32,
) -> Result<Vec<Detection>, Error> {
    let mut found = match family {
        Family::Scrfd => scrfd(outputs, at, threshold)?,
        Family::Yunet => yunet(outputs, at, threshold)?,
    };
    let [ox, oy] = at.origin;
    for d in &mut found {
        for (i, v) in d.bbox.iter_mut().enumerate() {
            *v = *v * at.inv_scale + if i % 2 == 0 { ox } else { oy };
        }
        for p in &mut d.landmarks {
            p[0] = p[0] * at.inv_scale + ox;
            p[1] = p[1] * at.inv_scale + oy;
        }
    }
    Ok(nms(found, 0.4))
}

const STRIDES: [usize; 3] = [8, 16, 32];

fn bad(reason: String) -> Error {
    Error::Model {
        id: "detector".into(),
        reason,
    }
}

/// SCRFD (InsightFace): per stride, scores [N,1], distances [N,4] and landmark
/// offsets [N,10] in stride units, two anchors per cell. Output names are
/// graph-internal numbers, so tensors are told apart by their last dimension and
/// their row count (more rows = finer stride).
fn scrfd(outputs: &[Output<'_>], at: Placement, threshold: f32) -> Result<Vec<Detection>, Error> {
    let pick = |cols: i64| -> Result<Vec<&Output<'_>>, Error> {
        let mut v: Vec<&Output<'_>> = outputs
            .iter()
            .filter(|o| o.shape.last() == Some(&cols))
            .collect();
        v.sort_by_key(|o| std::cmp::Reverse(o.values.len() / cols as usize));
        if v.len() != STRIDES.len() {
            return Err(bad(format!(
                "SCRFD: expected 3 outputs with last dimension {cols}, found {}",
                v.len()
            )));
        }
        Ok(v)
    };
    let (scores, boxes, kps) = (pick(1)?, pick(4)?, pick(10)?);
    let mut out = Vec::new();
    for (si, &stride) in STRIDES.iter().enumerate() {
        let (rows, cols) = (at.height / stride, at.width / stride);
        let anchors = scores[si].values.len() / (rows * cols).max(1);
        if anchors == 0
            || scores[si].values.len() != rows * cols * anchors
            || boxes[si].values.len() != scores[si].values.len() * 4
            || kps[si].values.len() != scores[si].values.len() * 10
        {
            return Err(bad(format!(
                "SCRFD stride {stride}: output sizes do not match a {}x{} input",
                at.width, at.height
            )));
        }
        let s = stride as f32;
        for (i, &score) in scores[si].values.iter().enumerate() {
            if score < threshold {
                continue;
            }
            let cell = i / anchors;
            let (cx, cy) = ((cell % cols) as f32 * s, (cell / cols) as f32 * s);
            let b = &boxes[si].values[i * 4..i * 4 + 4];
            let k = &kps[si].values[i * 10..i * 10 + 10];
            let mut landmarks = [[0.0; 2]; 5];
            for (j, p) in landmarks.iter_mut().enumerate() {
                *p = [cx + k[2 * j] * s, cy + k[2 * j + 1] * s];
            }
            out.push(Detection {
                bbox: [cx - b[0] * s, cy - b[1] * s, cx + b[2] * s, cy + b[3] * s],
                landmarks,
                score,
            });
        }
    }
    Ok(out)
}

/// YuNet (OpenCV, 2023mar): per stride, `cls_S`, `obj_S` [1,N,1], `bbox_S`
/// [1,N,4] (centre offset in stride units, log size) and `kps_S` [1,N,10], one
/// anchor per cell; score = sqrt(cls * obj).
fn yunet(outputs: &[Output<'_>], at: Placement, threshold: f32) -> Result<Vec<Detection>, Error> {
    let get = |prefix: &str, stride: usize| -> Result<&[f32], Error> {
        let name = format!("{prefix}_{stride}");
        outputs
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.values)
            .ok_or_else(|| bad(format!("YuNet: no output {name:?}")))
    };
    let mut out = Vec::new();
    for stride in STRIDES {
        let (rows, cols) = (at.height / stride, at.width / stride);
        let (cls, obj, bbox, kps) = (
            get("cls", stride)?,
            get("obj", stride)?,
            get("bbox", stride)?,
            get("kps", stride)?,
        );
        let n = rows * cols;
        if cls.len() != n || obj.len() != n || bbox.len() != n * 4 || kps.len() != n * 10 {
            return Err(bad(format!(
                "YuNet stride {stride}: output sizes do not match a {}x{} input",
                at.width, at.height
            )));
        }
        let s = stride as f32;
        for i in 0..n {
            let score = (cls[i].clamp(0.0, 1.0) * obj[i].clamp(0.0, 1.0)).sqrt();
            if score < threshold {
                continue;
            }
            let (c, r) = ((i % cols) as f32, (i / cols) as f32);
            let b = &bbox[i * 4..i * 4 + 4];
            let (cx, cy) = ((c + b[0]) * s, (r + b[1]) * s);
            let (w, h) = (b[2].exp() * s, b[3].exp() * s);
            let k = &kps[i * 10..i * 10 + 10];
            let mut landmarks = [[0.0; 2]; 5];
            for (j, p) in landmarks.iter_mut().enumerate() {
                *p = [(k[2 * j] + c) * s, (k[2 * j + 1] + r) * s];
            }
            out.push(Detection {
                bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0],
                landmarks,
                score,
            });
        }
    }
    Ok(out)
}

/// Greedy non-maximum suppression, best score first.
fn nms(mut v: Vec<Detection>, iou: f32) -> Vec<Detection> {
    v.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<Detection> = Vec::new();
    for d in v {
        if keep.iter().all(|k| k.iou(&d) <= iou) {
            keep.push(d);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, score: f32) -> Detection {
        Detection {
            bbox: [x, 0.0, x + 10.0, 10.0],
            landmarks: [[0.0; 2]; 5],
            score,
        }
    }

    #[test]
    fn the_closer_look_shows_the_face_at_its_size_with_room_around_it() {
        // A face 60 wide and 75 tall in a 500x400 decode.
        let face = Detection {
            bbox: [200.0, 100.0, 260.0, 175.0],
            landmarks: [[0.0; 2]; 5],
            score: 0.9,
        };
        let [x0, y0, x1, y1] = closer(&face, 500, 400);
        let (w, h) = ((x1 - x0) as f32, (y1 - y0) as f32);
        assert!((w - h).abs() <= 1.0, "{w}x{h} is not square");
        assert!(x0 < 200 && y0 < 100 && x1 > 260 && y1 > 175);
        // Fitted to CLOSER_SIDE, the face's shorter side is CLOSER_FACE.
        let face_px = 60.0 * CLOSER_SIDE as f32 / w.max(h);
        assert!((face_px - CLOSER_FACE).abs() < 1.0, "{face_px} px");
        // An elongated box keeps half its length of room on each axis; the
        // face is then a little smaller in the detector, never cut.
        let long = Detection {
            bbox: [200.0, 100.0, 240.0, 200.0],
            ..face
        };
        let [x0, y0, x1, y1] = closer(&long, 500, 400);
        assert!((x1 - x0) >= 150 && (y1 - y0) >= 150);
        // At the photo's corner the region is cut at the photo's edges.
        let corner = Detection {
            bbox: [0.0, 0.0, 60.0, 75.0],
            ..face
        };
        let [x0, y0, x1, y1] = closer(&corner, 500, 400);
        assert_eq!((x0, y0), (0, 0));
        assert!(x1 > 60 && y1 > 75 && x1 <= 500 && y1 <= 400);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let kept = nms(vec![det(0.0, 0.6), det(1.0, 0.9), det(50.0, 0.7)], 0.4);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].score, 0.7);
    }

    #[test]
    fn scrfd_decodes_distances_in_stride_units() {
        // A 32x32 input: strides 8, 16, 32 give 16, 4 and 1 cells, 2 anchors each.
        let at = Placement {
            width: 32,
            height: 32,
            inv_scale: 2.0,
            origin: [0.0, 0.0],
        };
        let sizes = [32usize, 8, 2];
        let mut scores: Vec<Vec<f32>> = sizes.iter().map(|n| vec![0.0; *n]).collect();
        let boxes: Vec<Vec<f32>> = sizes.iter().map(|n| vec![1.0; n * 4]).collect();
        let kps: Vec<Vec<f32>> = sizes.iter().map(|n| vec![0.5; n * 10]).collect();
        // Stride 16, cell (x=1, y=1) = cell 3, anchor 1 -> index 7.
        scores[1][7] = 0.9;
        let shapes: Vec<[i64; 2]> = sizes
            .iter()
            .flat_map(|n| [[*n as i64, 1]])
            .chain(sizes.iter().map(|n| [*n as i64, 4]))
            .chain(sizes.iter().map(|n| [*n as i64, 10]))
            .collect();
        let values: Vec<&[f32]> = scores
            .iter()
            .chain(boxes.iter())
            .chain(kps.iter())
            .map(|v| v.as_slice())
            .collect();
        let outputs: Vec<Output<'_>> = shapes
            .iter()
            .zip(values)
            .map(|(s, v)| Output {
                name: "x",
                shape: s,
                values: v,
            })
            .collect();
        let found = decode(Family::Scrfd, &outputs, at, 0.5).unwrap();
        assert_eq!(found.len(), 1);
        // Centre (16, 16), distances 16 each way, then x2 back to photo pixels.
        assert_eq!(found[0].bbox, [0.0, 0.0, 64.0, 64.0]);
        assert_eq!(found[0].landmarks[0], [48.0, 48.0]);
    }
}
