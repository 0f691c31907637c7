//! `arclock-face`: run the face pipeline outside the daemon.
//!
//! `arclock-face eval` embeds every photo of a labelled set (LFW layout) with
//! the real models, scores all same-person and different-person pairs, and
//! prints the thresholds at FMR 1e-3 / 1e-4; the manifest's `threshold` comes
//! from it. `arclock-face embed FILE` checks one photo.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use arclock_face::{FaceModels, Manifest, Pipeline, Policy, Threads, Workspace, eval, liveness};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "ArcLock face pipeline tools")]
struct Args {
    /// ONNX Runtime shared library.
    #[arg(
        long,
        default_value = "var/opt/onnxruntime-1.32.0/libonnxruntime.so.1.32.0"
    )]
    runtime: PathBuf,
    #[arg(long, default_value = "models/manifest.toml")]
    manifest: PathBuf,
    /// Directory with the model files.
    #[arg(long, default_value = "var/models")]
    models: PathBuf,
    #[arg(long, default_value = "scrfd_2.5g_bnkps")]
    detector: String,
    #[arg(long, default_value = "arcface_mobileface_128")]
    recognizer: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Accuracy over a labelled set: pairs, distributions, thresholds.
    Eval {
        /// Folder of PERSON/photo.jpg folders.
        #[arg(long, env = "ARCLOCK_FACES_DIR", default_value = "../shared/faces")]
        faces: PathBuf,
        /// Write the markdown report here as well as to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Turn off the pose, blur and brightness gates (to calibrate them).
        #[arg(long)]
        no_quality_gates: bool,
        /// Override the policy's minimum face size (px, short side).
        #[arg(long)]
        min_face_px: Option<f32>,
        /// Override the policy's second-face area ratio for `MultipleFaces`.
        #[arg(long)]
        multi_face_ratio: Option<f32>,
        /// Evaluate only the first N photos.
        #[arg(long)]
        limit: Option<usize>,
        /// Make each photo a 12 MP phone photo first (enlarged into a
        /// 4032x3024 frame, sensor noise, JPEG q92 4:2:0), in memory.
        #[arg(long)]
        phone: bool,
        /// With `--phone`: the photo's height as a fraction of the frame's
        /// (1: filling it; 0.4: a selfie at arm's length, whose face the
        /// first detection pass finds small and looks at again closer).
        #[arg(long, default_value_t = 1.0, requires = "phone")]
        phone_height: f32,
    },
    /// Liveness in ISO/IEC 30107-3 terms: APCER per attack type and BPCER at
    /// the operating point, from bona fide and synthetic attack sequences.
    LivenessEval {
        /// Folder of PERSON/photo.jpg folders (lfw-dev).
        #[arg(long, env = "ARCLOCK_FACES_DIR", default_value = "../shared/faces")]
        faces: PathBuf,
        /// Write the markdown report here as well as to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Bona fide sequences tried per person (kept when the person's
        /// photos fit the drawn steps).
        #[arg(long, default_value_t = 3)]
        per_person: usize,
        /// Sequences per attack type.
        #[arg(long, default_value_t = 400)]
        attacks: usize,
        #[arg(long, default_value_t = 30_107)]
        seed: u64,
        /// Evaluate only the first N photos.
        #[arg(long)]
        limit: Option<usize>,
        /// Override thresholds: front_max_yaw, turn_min_yaw, min_parallax,
        /// min_consistency, min_pad as `key=value` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Embed photos and print what was measured (never the vector): face
    /// box score, size, yaw and pitch proxies, sharpness, PAD live score.
    Embed { photos: Vec<PathBuf> },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let manifest = Manifest::load(&args.manifest)?;
    let threads = Threads::per_core();
    let models = FaceModels::load(
        &args.runtime,
        &manifest,
        &args.models,
        &args.detector,
        &args.recognizer,
        threads,
    )?;
    match args.command {
        Command::Eval {
            faces,
            out,
            no_quality_gates,
            min_face_px,
            multi_face_ratio,
            limit,
            phone,
            phone_height,
        } => {
            let mut policy = Policy::default();
            if let Some(px) = min_face_px {
                policy.min_face_px = px;
            }
            if let Some(r) = multi_face_ratio {
                policy.multi_face_area_ratio = r;
            }
            if no_quality_gates {
                policy.max_yaw = f32::INFINITY;
                policy.pitch_range = (f32::NEG_INFINITY, f32::INFINITY);
                policy.min_sharpness = 0.0;
                policy.min_brightness = 0.0;
            }
            let pipeline = Pipeline::new(models, policy, Default::default(), threads.workers);
            let dir = if faces.join("lfw-dev").is_dir() {
                faces.join("lfw-dev")
            } else {
                faces
            };
            let mut photos =
                eval::list(&dir).with_context(|| format!("listing {}", dir.display()))?;
            if let Some(n) = limit {
                photos.truncate(n);
            }
            let start = Instant::now();
            let phone = phone.then_some(phone_height);
            let outcome = eval::run(&pipeline, &photos, threads.workers, phone)?;
            let header = format!(
                "## Face accuracy: {} + {} on {}\n\n{} photos of {} people, {:.0} s on {} workers{}",
                args.detector,
                args.recognizer,
                dir.display(),
                photos.len(),
                {
                    let mut p: Vec<&str> = photos.iter().map(|p| p.person.as_str()).collect();
                    p.dedup();
                    p.len()
                },
                start.elapsed().as_secs_f64(),
                threads.workers,
                match (no_quality_gates, phone) {
                    (true, Some(_)) => ", quality gates off, as 12 MP phone photos".to_string(),
                    (true, None) => ", quality gates off".to_string(),
                    (false, Some(k)) => format!(
                        ", as 12 MP phone photos (4032x3024, JPEG q92 4:2:0, the photo at {:.0} % of the frame's height)",
                        k * 100.0
                    ),
                    (false, None) => String::new(),
                }
            );
            let report = outcome.report(&header);
            print!("{report}");
            if let Some(out) = out {
                std::fs::write(&out, &report)?;
            }
        }
        Command::LivenessEval {
            faces,
            out,
            per_person,
            attacks,
            seed,
            limit,
            set,
        } => {
            let mut t = liveness::Thresholds::default();
            for kv in &set {
                let (k, v) = kv.split_once('=').context("--set takes KEY=VALUE")?;
                let v: f32 = v
                    .parse()
                    .with_context(|| format!("--set {k}: not a number"))?;
                match k {
                    "front_max_yaw" => t.front_max_yaw = v,
                    "turn_min_yaw" => t.turn_min_yaw = v,
                    "min_parallax" => t.min_parallax = v,
                    "min_consistency" => t.min_consistency = v,
                    "min_pad" => t.min_pad = v,
                    other => anyhow::bail!("--set: unknown threshold {other:?}"),
                }
            }
            let pipeline = Pipeline::new(
                models,
                Policy::default(),
                Default::default(),
                threads.workers,
            )
            .with_pad(true);
            let (dir, pad_dir) = if faces.join("lfw-dev").is_dir() {
                (faces.join("lfw-dev"), faces.join("pad-samples"))
            } else {
                (faces.clone(), faces.join("../pad-samples"))
            };
            let mut photos =
                eval::list(&dir).with_context(|| format!("listing {}", dir.display()))?;
            if let Some(n) = limit {
                photos.truncate(n);
            }
            let samples = liveness::eval::samples(&pad_dir);
            let start = Instant::now();
            let plan = liveness::eval::Plan {
                bona_fide_per_person: per_person,
                attacks,
                seed,
            };
            let outcome =
                liveness::eval::run(&pipeline, &photos, &samples, &t, plan, threads.workers)?;
            let header = format!(
                "## Liveness: {} + {} + PAD ({}) on {}\n\n{} photos of {} people ({} images with \
                 mirrors gave a face), seed {seed}, {:.0} s on {} workers",
                args.detector,
                args.recognizer,
                match pipeline.models().pad_status() {
                    arclock_face::PadStatus::Ready { models } => models.join(" + "),
                    arclock_face::PadStatus::Unavailable { reason } =>
                        format!("unavailable: {reason}"),
                },
                dir.display(),
                photos.len(),
                outcome.people,
                outcome.variants,
                start.elapsed().as_secs_f64(),
                threads.workers,
            );
            let report = outcome.report(&header, &t);
            print!("{report}");
            if let Some(out) = out {
                std::fs::write(&out, &report)?;
            }
        }
        Command::Embed { photos } => {
            let pipeline =
                Pipeline::new(models, Policy::default(), Default::default(), 1).with_pad(true);
            let mut ws = Workspace::new()?;
            for photo in photos {
                let bytes = std::fs::read(&photo)?;
                let mut t = arclock_face::Timings::default();
                match pipeline.run(&mut ws, &bytes, Some(&mut t)) {
                    Ok(face) => println!(
                        "{}\t{:?}\tpad {:?}\t{:?}",
                        photo.display(),
                        face.measures,
                        face.pad,
                        t
                    ),
                    Err(e) => println!("{}\t{e}", photo.display()),
                }
            }
        }
    }
    Ok(())
}
