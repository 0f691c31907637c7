//! Active liveness: the server asks for a few head poses in a random order
//! (a [`Challenge`]'s steps), the client sends one frame per step, and the
//! frames must show one live, three-dimensional head of one person doing what
//! was asked.
//!
//! What each frame's face is judged on (all from the five landmarks, the
//! embedding and passive PAD; no extra model):
//!
//! - **Pose** ([`pose_fits`]): the yaw proxy of `quality::pose` (nose offset
//!   along the eye line, in eye distances; negative = nose toward the image's
//!   left edge) must be within `front_max_yaw` of 0 for `front`, and at least
//!   `turn_min_yaw` toward the named side for `left` / `right`.
//! - **Depth** ([`parallax`]): eyes and mouth corners lie close to one plane,
//!   the nose tip well in front of it. Between two frames, the homography
//!   fixed by the four planar points predicts where the nose would be if the
//!   face were flat (a printout or a screen, however it is turned, tilted or
//!   moved: a planar object's points move by a homography); a head turning
//!   moves the nose away from that prediction, toward the side it turns to.
//!   The signed residual, in eye distances, must reach `min_parallax`
//!   between every two consecutive frames.
//! - **Identity** ([`judge`]): every two frames must be the same person
//!   (cosine >= `min_consistency`), so a turn cannot be borrowed from someone
//!   else; the frames are then fused (normalised mean embedding) and the
//!   fusion is compared with the template by the caller at the usual threshold.
//! - **Passive PAD**: the mean live score of the frames must reach `min_pad`.
//!
//! The thresholds are measured, not guessed: `arclock-face liveness-eval`
//! (`models/README.md`) reports the distributions and the APCER/BPCER they give.

use crate::Embedding;

pub mod eval;

/// One pose a challenge asks for, in the coordinates of the submitted pixels
/// (after EXIF orientation): `left` = nose toward the image's left edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Front,
    Left,
    Right,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Front => "front",
            Step::Left => "left",
            Step::Right => "right",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "front" => Some(Step::Front),
            "left" => Some(Step::Left),
            "right" => Some(Step::Right),
            _ => None,
        }
    }

    /// -1, 0, +1: where the nose should sit, along the image's x axis.
    pub(crate) fn side(self) -> f32 {
        match self {
            Step::Left => -1.0,
            Step::Front => 0.0,
            Step::Right => 1.0,
        }
    }
}

/// Fewest and most steps a challenge asks for.
pub const MIN_STEPS: usize = 2;
pub const MAX_STEPS: usize = 4;

/// A drawn sequence of steps: 2 to 4, no step equal to the one before it, so
/// every challenge asks for at least one turn and every two neighbouring
/// frames must show a head that moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    steps: Vec<Step>,
}

impl Challenge {
    /// Draws a challenge from `random` (at least 8 bytes from the OS RNG).
    /// 2 steps: 6 sequences; 3: 12; 4: 24 (42 in all).
    pub fn draw(random: &[u8]) -> Self {
        let mut bits = random
            .iter()
            .take(8)
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let mut next = |n: u64| {
            let v = bits % n;
            bits /= n;
            v as usize
        };
        let len = MIN_STEPS + next((MAX_STEPS - MIN_STEPS + 1) as u64);
        const ALL: [Step; 3] = [Step::Front, Step::Left, Step::Right];
        let mut steps = vec![ALL[next(3)]];
        while steps.len() < len {
            let prev = steps[steps.len() - 1];
            let others: Vec<Step> = ALL.iter().copied().filter(|s| *s != prev).collect();
            steps.push(others[next(2)]);
        }
        Challenge { steps }
    }

    /// Steps as stored; refuses sequences [`Challenge::draw`] never makes.
    pub fn from_steps(steps: Vec<Step>) -> Option<Self> {
        let ok = (MIN_STEPS..=MAX_STEPS).contains(&steps.len())
            && steps.windows(2).all(|w| w[0] != w[1]);
        ok.then_some(Challenge { steps })
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

/// The operating point of the active checks (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub front_max_yaw: f32,
    pub turn_min_yaw: f32,
    pub min_parallax: f32,
    pub min_consistency: f32,
    pub min_pad: f32,
}

impl Default for Thresholds {
    /// Measured by `arclock-face liveness-eval` on lfw-dev (models/README.md).
    fn default() -> Self {
        Thresholds {
            front_max_yaw: 0.10,
            turn_min_yaw: 0.22,
            min_parallax: 0.08,
            min_consistency: 0.25,
            min_pad: 0.3,
        }
    }
}

/// What the client can fix: shown to the user as a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoseHint {
    LookStraight,
    TurnLeft,
    TurnFurtherLeft,
    TurnRight,
    TurnFurtherRight,
}

impl std::fmt::Display for PoseHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PoseHint::LookStraight => "look straight at the camera",
            PoseHint::TurnLeft => {
                "the nose must point toward the picture's left edge (it points the other way)"
            }
            PoseHint::TurnFurtherLeft => {
                "turn further: the nose must point more toward the picture's left edge"
            }
            PoseHint::TurnRight => {
                "the nose must point toward the picture's right edge (it points the other way)"
            }
            PoseHint::TurnFurtherRight => {
                "turn further: the nose must point more toward the picture's right edge"
            }
        })
    }
}

/// Whether a face with `yaw` does `step`; the hint if not. "Left" and
/// "right" are the submitted picture's, never the user's: for `left` a
/// person facing the camera turns to their own right, which a mirrored
/// selfie preview shows as the nose moving toward the screen's right. A
/// client says it in the user's terms (the browser client does).
pub fn pose_fits(step: Step, yaw: f32, t: &Thresholds) -> Result<(), PoseHint> {
    match step {
        Step::Front if yaw.abs() <= t.front_max_yaw => Ok(()),
        Step::Front => Err(PoseHint::LookStraight),
        Step::Left if yaw <= -t.turn_min_yaw => Ok(()),
        Step::Left if yaw < 0.0 => Err(PoseHint::TurnFurtherLeft),
        Step::Left => Err(PoseHint::TurnLeft),
        Step::Right if yaw >= t.turn_min_yaw => Ok(()),
        Step::Right if yaw > 0.0 => Err(PoseHint::TurnFurtherRight),
        Step::Right => Err(PoseHint::TurnRight),
    }
}

/// The homography taking four points onto four others (DLT, `h33 = 1`);
/// `None` for a degenerate configuration (three points in a line).
pub(crate) fn homography(src: [[f32; 2]; 4], dst: [[f32; 2]; 4]) -> Option<[f64; 9]> {
    let mut a = [[0.0f64; 9]; 8];
    for i in 0..4 {
        let (x, y) = (f64::from(src[i][0]), f64::from(src[i][1]));
        let (u, v) = (f64::from(dst[i][0]), f64::from(dst[i][1]));
        a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
        a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
    }
    // Gaussian elimination with partial pivoting on the 8x8 system.
    for col in 0..8 {
        let pivot = (col..8).max_by(|&r, &s| a[r][col].abs().total_cmp(&a[s][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col];
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                for (v, p) in row.iter_mut().zip(pivot_row.iter()).skip(col) {
                    *v -= f * p;
                }
            }
        }
    }
    let mut h = [0.0f64; 9];
    for (i, row) in a.iter().enumerate() {
        h[i] = row[8] / row[i];
    }
    h[8] = 1.0;
    Some(h)
}

/// The signed depth cue between two frames of a face, `a` then `b`, with
/// `expected` = where the nose should have moved (-1 left, +1 right): the
/// nose of `b` minus where a flat face's nose would be (the homography of
/// eyes and mouth corners from `a` to `b` applied to `a`'s nose), along `b`'s
/// eye line, in `b`'s eye distances, times `expected`. About 0 for a flat
/// picture however it moved; clearly positive for a head that turned the
/// expected way. `None` when the landmarks are degenerate.
pub fn parallax(a: &[[f32; 2]; 5], b: &[[f32; 2]; 5], expected: f32) -> Option<f32> {
    let planar = |l: &[[f32; 2]; 5]| [l[0], l[1], l[3], l[4]];
    let h = homography(planar(a), planar(b))?;
    let [x, y] = a[2].map(f64::from);
    let w = h[6] * x + h[7] * y + h[8];
    if w.abs() < 1e-9 {
        return None;
    }
    let flat = [
        (h[0] * x + h[1] * y + h[2]) / w,
        (h[3] * x + h[4] * y + h[5]) / w,
    ];
    let e = [f64::from(b[1][0] - b[0][0]), f64::from(b[1][1] - b[0][1])];
    let d2 = e[0] * e[0] + e[1] * e[1];
    if d2 < 1e-6 {
        return None;
    }
    let r = [f64::from(b[2][0]) - flat[0], f64::from(b[2][1]) - flat[1]];
    Some(((r[0] * e[0] + r[1] * e[1]) / d2 * f64::from(expected)) as f32)
}

/// What the frames of one answer showed, as the judge needs it.
#[derive(Debug, Clone, Copy)]
pub struct FrameView<'a> {
    pub landmarks: &'a [[f32; 2]; 5],
    pub yaw: f32,
    pub pad: Option<f32>,
    pub embedding: &'a Embedding,
}

/// Why an answer to a challenge is refused. `Pose` is the client's to fix
/// (422 with the hint); the others are attack verdicts (401, like a wrong
/// face; the reason goes to the operators' log only).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// Frame `frame` (0-based) does not show its step.
    Pose { frame: usize, hint: PoseHint },
    /// Passive PAD scored the frames as a presentation attack.
    Spoof { score: f32 },
    /// The face moved like a flat picture between two frames.
    Flat { parallax: f32 },
    /// Two frames show different people.
    IdentitySwitch { cosine: f32 },
}

impl Refusal {
    /// Stable reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Pose { .. } => "pose",
            Refusal::Spoof { .. } => "pad",
            Refusal::Flat { .. } => "flat",
            Refusal::IdentitySwitch { .. } => "identity_switch",
        }
    }
}

/// What a passed answer measured (for logs and the evaluation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    /// Smallest depth cue between consecutive frames.
    pub parallax: f32,
    /// Smallest cosine between two frames.
    pub consistency: f32,
    /// Mean passive PAD live score, when PAD ran.
    pub pad: Option<f32>,
}

/// Judges the frames of an answer against its steps (same length, the
/// caller checked). Order: pose (fixable) first, then the attack checks.
pub fn judge(
    steps: &[Step],
    frames: &[FrameView<'_>],
    t: &Thresholds,
) -> Result<Evidence, Refusal> {
    for (i, (step, f)) in steps.iter().zip(frames).enumerate() {
        pose_fits(*step, f.yaw, t).map_err(|hint| Refusal::Pose { frame: i, hint })?;
    }
    let scores: Vec<f32> = frames.iter().filter_map(|f| f.pad).collect();
    let pad = (!scores.is_empty()).then(|| scores.iter().sum::<f32>() / scores.len() as f32);
    if let Some(score) = pad
        && score < t.min_pad
    {
        return Err(Refusal::Spoof { score });
    }
    let mut min_parallax = f32::INFINITY;
    for (w, f) in steps.windows(2).zip(frames.windows(2)) {
        let expected = w[1].side() - w[0].side();
        let p = parallax(f[0].landmarks, f[1].landmarks, expected.signum()).unwrap_or(0.0);
        min_parallax = min_parallax.min(p);
    }
    // NaN (degenerate landmarks) counts as flat.
    if min_parallax.is_nan() || min_parallax < t.min_parallax {
        return Err(Refusal::Flat {
            parallax: min_parallax,
        });
    }
    let mut consistency = 1.0f32;
    for (i, a) in frames.iter().enumerate() {
        for b in &frames[i + 1..] {
            let c = a.embedding.cosine(b.embedding).unwrap_or(-1.0);
            consistency = consistency.min(c);
        }
    }
    if consistency < t.min_consistency {
        return Err(Refusal::IdentitySwitch {
            cosine: consistency,
        });
    }
    Ok(Evidence {
        parallax: min_parallax,
        consistency,
        pad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::ARCFACE_TEMPLATE;

    #[test]
    fn draws_cover_every_sequence_and_never_repeat_a_step() {
        let mut seen = std::collections::HashSet::new();
        for i in 0u64..5000 {
            let bytes = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes();
            let c = Challenge::draw(&bytes);
            assert!((MIN_STEPS..=MAX_STEPS).contains(&c.steps().len()));
            assert!(c.steps().windows(2).all(|w| w[0] != w[1]));
            assert!(c.steps().iter().any(|s| *s != Step::Front));
            seen.insert(c.steps().to_vec());
        }
        assert_eq!(seen.len(), 6 + 12 + 24);
        assert!(Challenge::from_steps(vec![Step::Left, Step::Left]).is_none());
        assert!(Challenge::from_steps(vec![Step::Left]).is_none());
    }

    #[test]
    fn poses_and_hints() {
        let t = Thresholds::default();
        assert!(pose_fits(Step::Front, 0.05, &t).is_ok());
        assert_eq!(pose_fits(Step::Front, 0.3, &t), Err(PoseHint::LookStraight));
        assert!(pose_fits(Step::Left, -0.3, &t).is_ok());
        assert_eq!(
            pose_fits(Step::Left, -0.05, &t),
            Err(PoseHint::TurnFurtherLeft)
        );
        assert_eq!(pose_fits(Step::Left, 0.3, &t), Err(PoseHint::TurnLeft));
        assert_eq!(
            pose_fits(Step::Right, 0.1, &t),
            Err(PoseHint::TurnFurtherRight)
        );
    }

    /// A face as 3-D points (eyes and mouth on z = 0, the nose in front),
    /// turned by `yaw` radians about the vertical axis and projected by a
    /// pinhole camera at distance `dist` (in template pixels).
    fn head(yaw: f32, dist: f32) -> [[f32; 2]; 5] {
        let depth = [0.0, 0.0, 30.0, 0.0, 0.0];
        let mut out = [[0.0; 2]; 5];
        for (i, p) in ARCFACE_TEMPLATE.iter().enumerate() {
            let (x, y, z) = (p[0] - 56.0, p[1] - 70.0, -depth[i]);
            let (xr, zr) = (
                x * yaw.cos() + z * yaw.sin(),
                -x * yaw.sin() + z * yaw.cos(),
            );
            let s = dist / (dist + zr);
            out[i] = [xr * s + 56.0, y * s + 70.0];
        }
        out
    }

    /// The same face printed flat (the nose on the paper), turned the same way.
    fn print(yaw: f32, tilt: f32, dist: f32) -> [[f32; 2]; 5] {
        let mut out = [[0.0; 2]; 5];
        for (i, p) in ARCFACE_TEMPLATE.iter().enumerate() {
            let (x, y) = (p[0] - 56.0, p[1] - 70.0);
            let (xr, z1) = (x * yaw.cos(), -x * yaw.sin());
            let (yr, zr) = (
                y * tilt.cos() - z1 * tilt.sin(),
                y * tilt.sin() + z1 * tilt.cos(),
            );
            let s = dist / (dist + zr);
            out[i] = [xr * s + 80.0, yr * s + 60.0];
        }
        out
    }

    #[test]
    fn a_turning_head_shows_parallax_and_a_turned_print_does_not() {
        let front = head(0.0, 300.0);
        // A positive rotation in `head` carries the nose (in front of the
        // face) toward the image's left.
        let left = head(0.5, 300.0);
        let (yaw_left, _) = crate::quality::pose(&left);
        assert!(yaw_left < -0.2, "{yaw_left}");
        let p = parallax(&front, &left, -1.0).unwrap();
        assert!(p > 0.15, "head parallax {p}");
        // The wrong direction is negative.
        assert!(parallax(&front, &left, 1.0).unwrap() < 0.0);
        for (yaw, tilt) in [(0.6, 0.0), (-0.7, 0.3), (0.3, -0.6)] {
            let a = print(0.0, 0.0, 250.0);
            let b = print(yaw, tilt, 250.0);
            let p = parallax(&a, &b, -1.0).unwrap().abs();
            assert!(p < 0.01, "print parallax {p} at {yaw},{tilt}");
        }
    }
}
