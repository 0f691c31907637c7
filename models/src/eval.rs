//! Accuracy evaluation over a labelled photo set (`../shared/faces/lfw-dev`):
//! every same-person pair and every different-person pair, the thresholds at
//! fixed false-match rates, and the quality measures the policy is set from.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::quality::Measures;
use crate::{Embedding, Error, Pipeline, Workspace};

/// One labelled photo.
#[derive(Debug, Clone)]
pub struct Photo {
    pub person: String,
    pub path: PathBuf,
}

/// Lists `dir/PERSON/*.jpg` (LFW layout), sorted, people with >= 1 photo.
pub fn list(dir: &Path) -> std::io::Result<Vec<Photo>> {
    let mut out = Vec::new();
    let mut people: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    people.sort_by_key(|e| e.file_name());
    for p in people {
        let person = p.file_name().to_string_lossy().into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(p.path())?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|f| {
                f.extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("png"))
            })
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|path| Photo {
            person: person.clone(),
            path,
        }));
    }
    Ok(out)
}

/// The raw results of an evaluation run.
#[derive(Debug, Default)]
pub struct Outcome {
    pub photos: usize,
    /// Photos that gave no embedding, by error kind.
    pub refused: BTreeMap<&'static str, usize>,
    pub measures: Vec<Measures>,
    pub genuine: Vec<f32>,
    pub impostor: Vec<f32>,
}

type PhotoResult = Result<(Embedding, Measures), Error>;
type Column = (&'static str, fn(&Measures) -> f32);

/// The side of a 12 MP phone photo (4032x3024, landscape).
pub const PHONE_SIZE: (u32, u32) = (4032, 3024);

/// `photo` as a phone would have taken it: enlarged (bilinear) to the
/// frame's height and centred in a 12 MP frame of plain grey, with a faint
/// sensor noise (+/-2 levels, fixed seed) everywhere, encoded as phones
/// encode (JPEG quality 92, 4:2:0). What `eval --phone` and the benchmark
/// feed the pipeline to show that large photos lose nothing. The sides are
/// plain on purpose: a stretched copy of the photo there put partial faces
/// in the frame (55 more `MultipleFaces` over lfw-dev). Works on ordinary
/// heap memory: it is a tool for public test photos, never on the daemon's
/// path.
pub fn phone_variant(photo: &[u8]) -> Result<Vec<u8>, Error> {
    phone_framed(photo, 1.0)
}

/// [`phone_variant`] with the photo enlarged to `height` (0..=1) of the
/// frame's height, centred: below ~0.6 an LFW face is too small for the
/// detector's first look at the whole frame and is seen again closer, as a
/// selfie held at arm's length is (`eval --phone-height`).
pub fn phone_framed(photo: &[u8], height: f32) -> Result<Vec<u8>, Error> {
    let bad = |e: &dyn std::fmt::Display| Error::CorruptImage(e.to_string());
    let img = image::load_from_memory(photo)
        .map_err(|e| bad(&e))?
        .to_rgb8();
    let (w, h) = PHONE_SIZE;
    let (sw, sh) = (img.width() as f32, img.height() as f32);
    let side = ((h as f32 * height.clamp(0.05, 1.0)).round() as u32).max(1);
    let (left, top) = ((w - side) / 2, (h - side) / 2);
    // Bilinear taps per column and per row (pixel centres) over the square
    // in the middle; `None`: the grey around it.
    let taps = |pos: f32, len: u32| {
        let p = pos - 0.5;
        let p0 = p.floor();
        let last = len as usize - 1;
        let i0 = (p0.max(0.0) as usize).min(last);
        let i1 = ((p0 + 1.0).max(0.0) as usize).min(last);
        (i0, i1, p - p0)
    };
    let along =
        |start: u32, len: u32, src: f32, src_len: u32| -> Vec<Option<(usize, usize, f32)>> {
            (0..len)
                .map(|i| {
                    (start..start + side)
                        .contains(&i)
                        .then(|| taps(((i - start) as f32 + 0.5) * src / side as f32, src_len))
                })
                .collect()
        };
    let cols = along(left, w, sw, img.width());
    let rows = along(top, h, sh, img.height());
    let src = img.as_raw();
    let stride = img.width() as usize * 3;
    let mut frame = vec![0u8; w as usize * h as usize * 3];
    let mut seed = 0x2545_f491_u32;
    for (row, taps) in frame.chunks_exact_mut(w as usize * 3).zip(&rows) {
        let (y0, y1, ay) = taps.unwrap_or((0, 0, 0.0));
        let (r0, r1) = (&src[y0 * stride..], &src[y1 * stride..]);
        for (px, col) in row.chunks_exact_mut(3).zip(&cols) {
            for (c, out) in px.iter_mut().enumerate() {
                let v = match (*col, taps) {
                    (Some((x0, x1, ax)), Some(_)) => {
                        let top =
                            f32::from(r0[x0 * 3 + c]) * (1.0 - ax) + f32::from(r0[x1 * 3 + c]) * ax;
                        let bottom =
                            f32::from(r1[x0 * 3 + c]) * (1.0 - ax) + f32::from(r1[x1 * 3 + c]) * ax;
                        top * (1.0 - ay) + bottom * ay
                    }
                    _ => 120.0,
                };
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let noise = ((seed >> 29) % 5) as f32 - 2.0;
                *out = (v + noise).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    let mut jpeg = turbojpeg::Compressor::new().map_err(|e| bad(&e))?;
    jpeg.set_quality(92);
    jpeg.set_subsamp(turbojpeg::Subsamp::Sub2x2);
    jpeg.compress_to_vec(turbojpeg::Image {
        pixels: frame.as_slice(),
        width: w as usize,
        pitch: w as usize * 3,
        height: h as usize,
        format: turbojpeg::PixelFormat::RGB,
    })
    .map_err(|e| bad(&e))
}

/// Embeds every photo on `workers` threads, then scores all pairs. With
/// `phone`, each photo is first made a 12 MP phone photo, enlarged to that
/// fraction of its height ([`phone_framed`]).
pub fn run(
    pipeline: &Pipeline,
    photos: &[Photo],
    workers: usize,
    phone: Option<f32>,
) -> Result<Outcome, Error> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, PhotoResult)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                let Ok(mut ws) = Workspace::new() else { return };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(photo) = photos.get(i) else { break };
                    let r = std::fs::read(&photo.path)
                        .map_err(|source| Error::Io {
                            file: photo.path.clone(),
                            source,
                        })
                        .and_then(|bytes| match phone {
                            Some(height) => phone_framed(&bytes, height),
                            None => Ok(bytes),
                        })
                        .and_then(|bytes| pipeline.run(&mut ws, &bytes, None))
                        .map(|f| (f.embedding, f.measures));
                    if let Ok(mut v) = results.lock() {
                        v.push((i, r));
                    }
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .map_err(|_| Error::Unavailable("evaluation worker panicked".into()))?;
    results.sort_by_key(|(i, _)| *i);

    let mut out = Outcome {
        photos: photos.len(),
        ..Outcome::default()
    };
    let mut kept: Vec<(usize, Embedding)> = Vec::new();
    for (i, r) in results {
        match r {
            Ok((e, m)) => {
                out.measures.push(m);
                kept.push((i, e));
            }
            Err(e) if e.is_photo_problem() => *out.refused.entry(e.kind()).or_default() += 1,
            Err(e) => return Err(e),
        }
    }
    for a in 0..kept.len() {
        for b in a + 1..kept.len() {
            let s = kept[a].1.cosine(&kept[b].1)?;
            if photos[kept[a].0].person == photos[kept[b].0].person {
                out.genuine.push(s);
            } else {
                out.impostor.push(s);
            }
        }
    }
    Ok(out)
}

/// Thresholds and error rates derived from an [`Outcome`].
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct OperatingPoint {
    pub fmr_target: f64,
    pub threshold: f32,
    pub fmr: f64,
    pub fnmr: f64,
}

impl Outcome {
    /// The lowest threshold whose false-match rate over all impostor pairs is
    /// at most `fmr` ("accept if cosine >= threshold").
    pub fn at_fmr(&self, fmr: f64) -> OperatingPoint {
        let mut imp = self.impostor.clone();
        imp.sort_by(|a, b| b.total_cmp(a));
        let k = (fmr * imp.len() as f64).floor() as usize;
        let threshold = imp.get(k).map_or(-1.0, |v| next_up(*v));
        self.point(fmr, threshold)
    }

    fn point(&self, target: f64, threshold: f32) -> OperatingPoint {
        let fm = self.impostor.iter().filter(|s| **s >= threshold).count();
        let fnm = self.genuine.iter().filter(|s| **s < threshold).count();
        OperatingPoint {
            fmr_target: target,
            threshold,
            fmr: fm as f64 / self.impostor.len().max(1) as f64,
            fnmr: fnm as f64 / self.genuine.len().max(1) as f64,
        }
    }

    /// Best balanced accuracy ((1 - FMR + 1 - FNMR) / 2) over all thresholds.
    pub fn best_accuracy(&self) -> (f32, f64) {
        let mut all: Vec<(f32, bool)> = self
            .genuine
            .iter()
            .map(|s| (*s, true))
            .chain(self.impostor.iter().map(|s| (*s, false)))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (g, i) = (
            self.genuine.len().max(1) as f64,
            self.impostor.len().max(1) as f64,
        );
        // Threshold just above all[j]: genuine below it are misses, impostors
        // below are correct rejections.
        let (mut miss, mut reject) = (0usize, 0usize);
        let mut best = (all.first().map_or(0.0, |a| a.0), 0.5);
        for (s, genuine) in &all {
            if *genuine {
                miss += 1;
            } else {
                reject += 1;
            }
            let acc = ((1.0 - miss as f64 / g) + reject as f64 / i) / 2.0;
            if acc > best.1 {
                best = (next_up(*s), acc);
            }
        }
        best
    }

    /// The markdown report printed by `arclock-face eval`.
    pub fn report(&self, header: &str) -> String {
        let mut r = String::new();
        let _ = writeln!(r, "{header}\n");
        let used = self.measures.len();
        let _ = writeln!(
            r,
            "- photos: {}, embedded: {used}, refused: {}",
            self.photos,
            self.refused
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            r,
            "- pairs used: {} same-person (all), {} different-person (all)\n",
            self.genuine.len(),
            self.impostor.len()
        );
        let _ = writeln!(r, "| cosine | mean | sd | p1 | p5 | p50 | p95 | p99 |");
        let _ = writeln!(r, "|---|---|---|---|---|---|---|---|");
        for (name, v) in [
            ("same person", &self.genuine),
            ("different people", &self.impostor),
        ] {
            let (m, sd) = mean_sd(v);
            let q = |p: f64| quantile(v, p);
            let _ = writeln!(
                r,
                "| {name} | {m:.3} | {sd:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                q(0.01),
                q(0.05),
                q(0.5),
                q(0.95),
                q(0.99)
            );
        }
        let _ = writeln!(r, "\n| operating point | threshold | FMR measured | FNMR |");
        let _ = writeln!(r, "|---|---|---|---|");
        for f in [1e-3, 1e-4] {
            let p = self.at_fmr(f);
            let _ = writeln!(
                r,
                "| FMR <= {f:.0e} | {:.4} | {:.2e} | {:.2} % |",
                p.threshold,
                p.fmr,
                p.fnmr * 100.0
            );
        }
        let (t, acc) = self.best_accuracy();
        let p = self.point(0.0, t);
        let _ = writeln!(
            r,
            "| best balanced accuracy {:.2} % | {t:.4} | {:.2e} | {:.2} % |",
            acc * 100.0,
            p.fmr,
            p.fnmr * 100.0
        );
        let _ = writeln!(r, "\nHistogram (share of pairs per cosine bin):\n");
        let _ = writeln!(r, "| bin | same | different |");
        let _ = writeln!(r, "|---|---|---|");
        for b in -2..10 {
            let (lo, hi) = (b as f32 / 10.0, (b + 1) as f32 / 10.0);
            let share = |v: &[f32]| {
                v.iter().filter(|s| **s >= lo && **s < hi).count() as f64 / v.len().max(1) as f64
            };
            let _ = writeln!(
                r,
                "| [{lo:.1}, {hi:.1}) | {:.2} % | {:.3} % |",
                share(&self.genuine) * 100.0,
                share(&self.impostor) * 100.0
            );
        }
        let _ = writeln!(r, "\nQuality measures of embedded photos (quantiles):\n");
        let _ = writeln!(r, "| measure | p0.1 | p0.5 | p1 | p50 | p99 | p99.9 |");
        let _ = writeln!(r, "|---|---|---|---|---|---|---|");
        let cols: [Column; 6] = [
            ("detector score", |m| m.score),
            ("face px (short side)", |m| m.face_px),
            ("|yaw|", |m| m.yaw.abs()),
            ("pitch", |m| m.pitch),
            ("sharpness", |m| m.sharpness),
            ("brightness", |m| m.brightness),
        ];
        for (name, f) in cols {
            let v: Vec<f32> = self.measures.iter().map(f).collect();
            let _ = writeln!(
                r,
                "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                quantile(&v, 0.001),
                quantile(&v, 0.005),
                quantile(&v, 0.01),
                quantile(&v, 0.5),
                quantile(&v, 0.99),
                quantile(&v, 0.999)
            );
        }
        r
    }
}

fn next_up(v: f32) -> f32 {
    if v.is_nan() || v == f32::INFINITY {
        v
    } else if v == 0.0 {
        f32::from_bits(1)
    } else if v > 0.0 {
        f32::from_bits(v.to_bits() + 1)
    } else {
        f32::from_bits(v.to_bits() - 1)
    }
}

fn mean_sd(v: &[f32]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().map(|x| f64::from(*x)).sum::<f64>() / n;
    let var = v.iter().map(|x| (f64::from(*x) - m).powi(2)).sum::<f64>() / n;
    (m, var.sqrt())
}

fn quantile(v: &[f32], q: f64) -> f32 {
    if v.is_empty() {
        return f32::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((q * (s.len() - 1) as f64).round() as usize).min(s.len() - 1);
    s[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_follow_the_definition() {
        let o = Outcome {
            genuine: vec![0.9, 0.8, 0.7, 0.2],
            impostor: (0..1000).map(|i| i as f32 / 2000.0).collect(), // 0 .. 0.4995
            ..Outcome::default()
        };
        // FMR 1e-3 of 1000 impostors: at most one may pass.
        let p = o.at_fmr(1e-3);
        assert!(p.fmr <= 1e-3, "{p:?}");
        assert!(p.threshold > 0.4985 && p.threshold <= 0.4995, "{p:?}");
        assert_eq!(p.fnmr, 0.25);
        let (t, acc) = o.best_accuracy();
        assert!(t > 0.2 && t <= 0.7, "{t}");
        assert!(acc > 0.87, "{acc}");
    }
}
