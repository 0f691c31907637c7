//! The liveness evaluation in ISO/IEC 30107-3 terms: APCER per attack type
//! and BPCER, at the configured operating point, on a labelled photo set.
//!
//! LFW holds no video, so sequences are built from photos:
//!
//! - **Bona fide**: for a person, one photo is the enrolled template; each
//!   step of a drawn challenge is answered by a *different* photo of the same
//!   person (or its mirror image, which is a real head turned the other way)
//!   whose measured pose fits the step. These are real 3-D heads in real
//!   poses, taken at different times: harder than one continuous capture.
//! - **Replay** (same photo for every step): one photo of the user, sent as
//!   every frame.
//! - **Print/screen** (one photo, moved): the photo rendered as a flat plane
//!   turned and tilted up to 40 degrees about both axes, scaled and shifted,
//!   and re-encoded as JPEG. The attacker is adaptive: per step it draws warps
//!   until the pose check passes (it sees the 422 hints), up to
//!   `WARP_TRIES`, then submits.
//! - **Two people**: the user's photo for the frontal steps and another
//!   person's real turned faces for the turns (an accomplice's live head).
//! - **Single photo, passive only**: another photo of the user as a
//!   one-image sign-in through passive PAD (what the default mode accepts).
//!
//! A sequence counts as accepted when every check of [`super::judge`] passes
//! and the fused embedding matches the template at the recognizer's threshold.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{ImageEncoder, RgbImage};

use super::{Challenge, FrameView, Step, Thresholds, judge, pose_fits};
use crate::eval::Photo;
use crate::{Embedding, Error, Pipeline, Workspace};

/// Warps an adaptive print attacker tries per step before giving up.
pub const WARP_TRIES: usize = 12;

/// What the pipeline saw in one image (the eval's own copy; test photos only).
pub struct Seen {
    pub embedding: Embedding,
    pub landmarks: [[f32; 2]; 5],
    pub yaw: f32,
    pub pad: Option<f32>,
}

impl Seen {
    fn view(&self) -> FrameView<'_> {
        FrameView {
            landmarks: &self.landmarks,
            yaw: self.yaw,
            pad: self.pad,
            embedding: &self.embedding,
        }
    }
}

/// How many sequences of each kind to build, and from which seed.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub bona_fide_per_person: usize,
    pub attacks: usize,
    pub seed: u64,
}

/// Deterministic random numbers for reproducible sequences (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn challenge(&mut self) -> Challenge {
        Challenge::draw(&self.next().to_be_bytes())
    }
}

/// One image variant of a photo set: a photo, or its mirror image.
struct Variant {
    person: usize,
    photo: usize,
    seen: Seen,
}

/// Per-sequence outcome: `None` accepted, `Some(reason)` refused.
type Verdict = Option<&'static str>;

/// Everything measured, for the report.
#[derive(Default)]
pub struct Outcome {
    pub kinds: BTreeMap<&'static str, Vec<Verdict>>,
    pub yaw: Vec<f32>,
    pub bona_fide_parallax: Vec<f32>,
    pub print_parallax: Vec<f32>,
    pub bona_fide_consistency: Vec<f32>,
    pub pad_bona_fide: Vec<f32>,
    pub samples: Vec<(String, Option<f32>)>,
    pub variants: usize,
    pub people: usize,
    /// `(min_parallax, min_pad, BPCER, print APCER)` over the same sequences.
    pub sweep: Vec<(f32, f32, f64, f64)>,
}

fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::CorruptImage(e.to_string()))?;
    Ok(out)
}

/// `img` as a flat picture turned `yaw` and tilted `pitch` radians about its
/// centre, seen by a pinhole camera with focal length `focal` (pixels),
/// scaled by `scale`, shifted by `shift` pixels, on a grey background.
pub fn warp_flat(
    img: &RgbImage,
    yaw: f32,
    pitch: f32,
    scale: f32,
    shift: [f32; 2],
    focal: f32,
) -> RgbImage {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let project = |p: [f32; 2]| -> [f32; 2] {
        let (x, y) = (p[0] - cx, p[1] - cy);
        // Rotate about the vertical axis, then the horizontal one.
        let (x1, z1) = (x * yaw.cos(), -x * yaw.sin());
        let (y2, z2) = (
            y * pitch.cos() - z1 * pitch.sin(),
            y * pitch.sin() + z1 * pitch.cos(),
        );
        let s = focal / (focal + z2) * scale;
        [x1 * s + cx + shift[0], y2 * s + cy + shift[1]]
    };
    let corners = [[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]];
    let moved = corners.map(project);
    let mut out = RgbImage::from_pixel(img.width(), img.height(), image::Rgb([118, 116, 112]));
    // Output pixel -> source pixel: the homography from the moved corners back.
    let Some(back) = super::homography(moved, corners) else {
        return out;
    };
    for (u, v, px) in out.enumerate_pixels_mut() {
        let (uf, vf) = (f64::from(u) + 0.5, f64::from(v) + 0.5);
        let d = back[6] * uf + back[7] * vf + back[8];
        if d.abs() < 1e-9 {
            continue;
        }
        let sx = ((back[0] * uf + back[1] * vf + back[2]) / d - 0.5) as f32;
        let sy = ((back[3] * uf + back[4] * vf + back[5]) / d - 0.5) as f32;
        if sx < 0.0 || sy < 0.0 || sx > w - 1.0 || sy > h - 1.0 {
            continue;
        }
        let (x0, y0) = (sx.floor() as u32, sy.floor() as u32);
        let (x1, y1) = (
            (x0 + 1).min(img.width() - 1),
            (y0 + 1).min(img.height() - 1),
        );
        let (fx, fy) = (sx - x0 as f32, sy - y0 as f32);
        for c in 0..3 {
            let g = |x: u32, y: u32| f32::from(img.get_pixel(x, y)[c]);
            let top = g(x0, y0) * (1.0 - fx) + g(x1, y0) * fx;
            let bottom = g(x0, y1) * (1.0 - fx) + g(x1, y1) * fx;
            px[c] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// A random warp within the attack's ranges (+-40 degrees both ways).
fn random_warp(img: &RgbImage, rng: &mut Rng) -> Result<Vec<u8>, Error> {
    let deg = std::f32::consts::PI / 180.0;
    let w = img.width() as f32;
    let warped = warp_flat(
        img,
        rng.range(-40.0, 40.0) * deg,
        rng.range(-40.0, 40.0) * deg,
        rng.range(0.8, 1.15),
        [rng.range(-0.08, 0.08) * w, rng.range(-0.08, 0.08) * w],
        w * rng.range(0.9, 2.0),
    );
    encode_jpeg(&warped, 60 + rng.below(36) as u8)
}

/// Runs the pipeline on `bytes` in `ws`.
fn see(pipeline: &Pipeline, ws: &mut Workspace, bytes: &[u8]) -> Result<Option<Seen>, Error> {
    match pipeline.run(ws, bytes, None) {
        Ok(f) => Ok(Some(Seen {
            landmarks: f.detection.landmarks,
            yaw: f.measures.yaw,
            pad: f.pad,
            embedding: f.embedding,
        })),
        Err(e) if e.is_photo_problem() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Runs `job(i, ws)` for i in 0..n on `workers` threads; results in order.
fn parallel<T: Send>(
    n: usize,
    workers: usize,
    job: impl Fn(usize, &mut Workspace) -> Result<T, Error> + Sync,
) -> Result<Vec<T>, Error> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<(usize, Result<T, Error>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                let mut ws = match Workspace::new() {
                    Ok(ws) => ws,
                    Err(e) => {
                        if let Ok(mut v) = out.lock() {
                            v.push((usize::MAX, Err(e)));
                        }
                        return;
                    }
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let r = job(i, &mut ws);
                    if let Ok(mut v) = out.lock() {
                        v.push((i, r));
                    }
                }
            });
        }
    });
    let mut v = out
        .into_inner()
        .map_err(|_| Error::Unavailable("evaluation worker panicked".into()))?;
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, r)| r).collect()
}

fn read(photo: &Photo) -> Result<Vec<u8>, Error> {
    std::fs::read(&photo.path).map_err(|source| Error::Io {
        file: photo.path.clone(),
        source,
    })
}

/// The verdict of a sequence against a template.
fn decide(
    steps: &[Step],
    frames: &[&Seen],
    template: &Embedding,
    threshold: f32,
    t: &Thresholds,
) -> Result<(Verdict, Option<super::Evidence>), Error> {
    let views: Vec<FrameView<'_>> = frames.iter().map(|s| s.view()).collect();
    match judge(steps, &views, t) {
        Err(r) => Ok((Some(r.reason()), None)),
        Ok(ev) => {
            let embeddings: Vec<&Embedding> = frames.iter().map(|s| &s.embedding).collect();
            let fused = Embedding::mean_of(&embeddings)?;
            if fused.cosine(template)? >= threshold {
                Ok((None, Some(ev)))
            } else {
                Ok((Some("no_match"), Some(ev)))
            }
        }
    }
}

/// Runs the whole evaluation. `photos` in LFW layout; `samples`, if given,
/// are the upstream PAD samples (scored and listed).
pub fn run(
    pipeline: &Pipeline,
    photos: &[Photo],
    samples: &[std::path::PathBuf],
    t: &Thresholds,
    plan: Plan,
    workers: usize,
) -> Result<Outcome, Error> {
    let threshold = pipeline
        .threshold()
        .ok_or_else(|| Error::Unavailable("the recognizer has no calibrated threshold".into()))?;
    let mut people: Vec<&str> = photos.iter().map(|p| p.person.as_str()).collect();
    people.dedup();
    let person_of = |p: &Photo| people.iter().position(|q| *q == p.person).unwrap_or(0);

    // Every photo and its mirror image through the pipeline.
    let seen = parallel(photos.len(), workers, |i, ws| {
        let bytes = read(&photos[i])?;
        let original = see(pipeline, ws, &bytes)?;
        let mirrored = match image::load_from_memory(&bytes) {
            Ok(img) => {
                let flipped = image::imageops::flip_horizontal(&img.to_rgb8());
                see(pipeline, ws, &encode_jpeg(&flipped, 95)?)?
            }
            Err(_) => None,
        };
        Ok((original, mirrored))
    })?;
    let mut out = Outcome {
        people: people.len(),
        ..Outcome::default()
    };
    let mut variants: Vec<Variant> = Vec::new();
    let mut originals: BTreeMap<usize, usize> = BTreeMap::new(); // photo -> variant
    for (i, (orig, mirror)) in seen.into_iter().enumerate() {
        let person = person_of(&photos[i]);
        if let Some(s) = orig {
            out.yaw.push(s.yaw);
            originals.insert(i, variants.len());
            variants.push(Variant {
                person,
                photo: i,
                seen: s,
            });
        }
        if let Some(s) = mirror {
            variants.push(Variant {
                person,
                photo: i,
                seen: s,
            });
        }
    }
    out.variants = variants.len();
    let mut by_person: Vec<Vec<usize>> = vec![Vec::new(); people.len()];
    for (i, v) in variants.iter().enumerate() {
        by_person[v.person].push(i);
    }
    let mut rng = Rng(plan.seed);

    // The template of a person: their first photo that gave a face.
    let template_of = |person: usize| -> Option<usize> {
        by_person[person]
            .iter()
            .copied()
            .find(|&v| originals.get(&variants[v].photo) == Some(&v))
    };
    // A variant of `person` (not from `exclude` photos) fitting `step`.
    let pick = |person: usize,
                step: Step,
                exclude: &[usize],
                used: &[usize],
                rng: &mut Rng|
     -> Option<usize> {
        let fits: Vec<usize> = by_person[person]
            .iter()
            .copied()
            .filter(|&v| {
                !exclude.contains(&variants[v].photo)
                    && !used.contains(&v)
                    && pose_fits(step, variants[v].seen.yaw, t).is_ok()
            })
            .collect();
        (!fits.is_empty()).then(|| fits[rng.below(fits.len())])
    };

    // Bona fide sequences.
    let mut bona = Vec::new();
    let mut bona_seqs: Vec<(Vec<Step>, Vec<usize>, usize)> = Vec::new();
    for person in 0..people.len() {
        let Some(tv) = template_of(person) else {
            continue;
        };
        let tphoto = variants[tv].photo;
        for _ in 0..plan.bona_fide_per_person {
            let c = rng.challenge();
            let mut used = Vec::new();
            for s in c.steps() {
                match pick(person, *s, &[tphoto], &used, &mut rng) {
                    Some(v) => used.push(v),
                    None => break,
                }
            }
            if used.len() == c.steps().len() {
                let frames: Vec<&Seen> = used.iter().map(|&v| &variants[v].seen).collect();
                let (verdict, ev) = decide(
                    c.steps(),
                    &frames,
                    &variants[tv].seen.embedding,
                    threshold,
                    t,
                )?;
                if let Some(ev) = ev {
                    out.bona_fide_parallax.push(ev.parallax);
                    out.bona_fide_consistency.push(ev.consistency);
                }
                bona.push(verdict);
                bona_seqs.push((c.steps().to_vec(), used, tv));
            }
        }
    }
    out.kinds.insert("bona fide", bona);
    for v in &variants {
        if let Some(p) = v.seen.pad {
            out.pad_bona_fide.push(p);
        }
    }

    // Attack targets: people with a template and another photo of them.
    let targets: Vec<(usize, usize, usize)> = (0..people.len())
        .filter_map(|person| {
            let tv = template_of(person)?;
            let other = by_person[person].iter().copied().find(|&v| {
                variants[v].photo != variants[tv].photo
                    && originals.get(&variants[v].photo) == Some(&v)
            })?;
            Some((person, tv, other))
        })
        .collect();
    let chosen: Vec<(usize, usize, usize, Challenge, u64)> = (0..plan.attacks)
        .map(|_| {
            let (p, tv, o) = targets[rng.below(targets.len())];
            (p, tv, o, rng.challenge(), rng.next())
        })
        .collect();

    // Replay: the same photo as every frame.
    let mut replay = Vec::new();
    for (_, tv, other, c, _) in &chosen {
        let frames: Vec<&Seen> = c.steps().iter().map(|_| &variants[*other].seen).collect();
        let (v, _) = decide(
            c.steps(),
            &frames,
            &variants[*tv].seen.embedding,
            threshold,
            t,
        )?;
        replay.push(v);
    }
    out.kinds.insert("replay (same photo every step)", replay);

    // Print or screen, turned and tilted by an adaptive attacker.
    let prints = parallel(chosen.len(), workers, |i, ws| {
        let (_, tv, other, c, seed) = &chosen[i];
        let mut rng = Rng(*seed);
        let img = image::load_from_memory(&read(&photos[variants[*other].photo])?)
            .map_err(|e| Error::CorruptImage(e.to_string()))?
            .to_rgb8();
        let mut frames = Vec::new();
        for step in c.steps() {
            let mut last = None;
            for _ in 0..WARP_TRIES {
                let Some(s) = see(pipeline, ws, &random_warp(&img, &mut rng)?)? else {
                    continue;
                };
                let fits = pose_fits(*step, s.yaw, t).is_ok();
                last = Some(s);
                if fits {
                    break;
                }
            }
            match last {
                Some(s) => frames.push(s),
                None => return Ok((Some("no_face"), Vec::new(), None)),
            }
        }
        let refs: Vec<&Seen> = frames.iter().collect();
        let mut parallaxes = Vec::new();
        for (w, f) in c.steps().windows(2).zip(refs.windows(2)) {
            let expected = (w[1].side() - w[0].side()).signum();
            if let Some(p) = super::parallax(&f[0].landmarks, &f[1].landmarks, expected) {
                parallaxes.push(p);
            }
        }
        let (v, _) = decide(
            c.steps(),
            &refs,
            &variants[*tv].seen.embedding,
            threshold,
            t,
        )?;
        Ok((v, parallaxes, Some((c.steps().to_vec(), frames, *tv))))
    })?;
    let mut print = Vec::new();
    let mut print_seqs = Vec::new();
    for (v, p, seq) in prints {
        print.push(v);
        out.print_parallax.extend(p);
        print_seqs.extend(seq);
    }
    // The same sequences judged at other depth and PAD thresholds (the
    // attacker adapted to the pose thresholds, which stay as configured).
    for min_parallax in [0.05, 0.06, 0.07, 0.08, 0.09, 0.10] {
        for min_pad in [0.15, 0.3, 0.5] {
            let at = Thresholds {
                min_parallax,
                min_pad,
                ..*t
            };
            let mut refused = 0usize;
            for (steps, used, tv) in &bona_seqs {
                let frames: Vec<&Seen> = used.iter().map(|&v| &variants[v].seen).collect();
                let template = &variants[*tv].seen.embedding;
                refused += usize::from(
                    decide(steps, &frames, template, threshold, &at)?
                        .0
                        .is_some(),
                );
            }
            let mut accepted = 0usize;
            for (steps, frames, tv) in &print_seqs {
                let refs: Vec<&Seen> = frames.iter().collect();
                let template = &variants[*tv].seen.embedding;
                accepted +=
                    usize::from(decide(steps, &refs, template, threshold, &at)?.0.is_none());
            }
            out.sweep.push((
                min_parallax,
                min_pad,
                refused as f64 / bona_seqs.len().max(1) as f64,
                accepted as f64 / chosen.len().max(1) as f64,
            ));
        }
    }
    out.kinds
        .insert("print/screen turned and tilted (adaptive)", print);

    // Two people: the user's photo for `front`, an accomplice's real turns.
    let mut two = Vec::new();
    for (person, tv, _, c, seed) in &chosen {
        let mut rng = Rng(*seed);
        let tphoto = variants[*tv].photo;
        let mut accomplice = rng.below(people.len());
        if accomplice == *person {
            accomplice = (accomplice + 1) % people.len();
        }
        let mut used = Vec::new();
        for s in c.steps() {
            let who = if *s == Step::Front {
                *person
            } else {
                accomplice
            };
            let found = pick(who, *s, &[tphoto], &used, &mut rng)
                .or_else(|| pick(accomplice, *s, &[], &used, &mut rng));
            match found {
                Some(v) => used.push(v),
                None => break,
            }
        }
        if used.len() == c.steps().len() {
            let frames: Vec<&Seen> = used.iter().map(|&v| &variants[v].seen).collect();
            let (v, _) = decide(
                c.steps(),
                &frames,
                &variants[*tv].seen.embedding,
                threshold,
                t,
            )?;
            two.push(v);
        }
    }
    out.kinds
        .insert("two people (user front, accomplice turns)", two);

    // A single photo of the user through passive PAD (the default mode).
    let mut single = Vec::new();
    for (_, tv, other, _, _) in &chosen {
        let s = &variants[*other].seen;
        let verdict = match s.pad {
            Some(p) if p < t.min_pad => Some("pad"),
            _ if s.embedding.cosine(&variants[*tv].seen.embedding)? < threshold => Some("no_match"),
            _ => None,
        };
        single.push(verdict);
    }
    out.kinds.insert("single photo, passive PAD only", single);

    // The upstream PAD samples.
    let mut ws = Workspace::new()?;
    for path in samples {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            file: path.clone(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let score = see(pipeline, &mut ws, &bytes)?.and_then(|s| s.pad);
        out.samples.push((name, score));
    }
    Ok(out)
}

/// `q`-quantile of `v` (sorted copy); NaN when empty.
fn quantile(v: &[f32], q: f64) -> f32 {
    if v.is_empty() {
        return f32::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f32::total_cmp);
    s[((s.len() - 1) as f64 * q).round() as usize]
}

impl Outcome {
    /// The markdown report: the operating point, APCER per attack type,
    /// BPCER, and the distributions the thresholds were read from.
    pub fn report(&self, header: &str, t: &Thresholds) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{header}\n");
        let _ = writeln!(
            s,
            "Operating point: front |yaw| <= {}, turn |yaw| >= {}, parallax >= {}, \
             frame consistency >= {}, PAD live score >= {}.\n",
            t.front_max_yaw, t.turn_min_yaw, t.min_parallax, t.min_consistency, t.min_pad
        );
        let _ = writeln!(
            s,
            "| presentations | sequences | accepted | error rate | refused by |\n|---|---|---|---|---|"
        );
        for (kind, verdicts) in &self.kinds {
            let n = verdicts.len();
            let accepted = verdicts.iter().filter(|v| v.is_none()).count();
            let mut why: BTreeMap<&str, usize> = BTreeMap::new();
            for r in verdicts.iter().flatten() {
                *why.entry(r).or_default() += 1;
            }
            let why: Vec<String> = why.iter().map(|(k, v)| format!("{k} {v}")).collect();
            let (label, rate) = if *kind == "bona fide" {
                ("BPCER", (n - accepted) as f64 / n.max(1) as f64)
            } else {
                ("APCER", accepted as f64 / n.max(1) as f64)
            };
            let _ = writeln!(
                s,
                "| {kind} | {n} | {accepted} | {label} {:.2} % | {} |",
                rate * 100.0,
                why.join(", ")
            );
        }
        let q = |v: &[f32]| {
            format!(
                "{:.3} / {:.3} / {:.3} / {:.3} / {:.3}",
                quantile(v, 0.01),
                quantile(v, 0.05),
                quantile(v, 0.5),
                quantile(v, 0.95),
                quantile(v, 0.99)
            )
        };
        let _ = writeln!(
            s,
            "\n| measure | n | 1 % / 5 % / median / 95 % / 99 % |\n|---|---|---|"
        );
        let absyaw: Vec<f32> = self.yaw.iter().map(|y| y.abs()).collect();
        for (label, values) in [
            ("\\|yaw\\| of the photos", &absyaw),
            (
                "parallax, accepted bona fide (smallest pair)",
                &self.bona_fide_parallax,
            ),
            ("parallax, print attack (every pair)", &self.print_parallax),
            (
                "frame consistency, accepted bona fide",
                &self.bona_fide_consistency,
            ),
            ("PAD live score, bona fide images", &self.pad_bona_fide),
        ] {
            let _ = writeln!(s, "| {label} | {} | {} |", values.len(), q(values));
        }
        let below = self
            .pad_bona_fide
            .iter()
            .filter(|p| **p < t.min_pad)
            .count();
        let _ = writeln!(
            s,
            "\nPassive-only BPCER (PAD alone, every image of the set and its mirror): {:.1} % \
             ({below} of {}) below the live score {}.",
            below as f64 * 100.0 / self.pad_bona_fide.len().max(1) as f64,
            self.pad_bona_fide.len(),
            t.min_pad
        );
        if !self.sweep.is_empty() {
            let _ = writeln!(
                s,
                "\nThe same sequences at other depth and PAD thresholds:\n\n\
                 | min_parallax | min_pad | BPCER | print APCER |\n|---|---|---|---|"
            );
            for (p, pad, bpcer, apcer) in &self.sweep {
                let _ = writeln!(
                    s,
                    "| {p:.2} | {pad:.2} | {:.2} % | {:.2} % |",
                    bpcer * 100.0,
                    apcer * 100.0
                );
            }
        }
        if !self.samples.is_empty() {
            let _ = writeln!(
                s,
                "\n| upstream PAD sample | live score | verdict |\n|---|---|---|"
            );
            for (name, score) in &self.samples {
                let (shown, verdict) = match score {
                    Some(p) => (
                        format!("{p:.2}"),
                        if *p >= t.min_pad { "live" } else { "attack" },
                    ),
                    None => ("-".into(), "no face / PAD unavailable"),
                };
                let _ = writeln!(s, "| {name} | {shown} | {verdict} |");
            }
        }
        s
    }
}

/// The upstream PAD samples in `dir` (`image_*.jpg`), sorted.
pub fn samples(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
