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
use arclock_face::{FaceModels, Manifest, Pipeline, Policy, Threads, Workspace, eval};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "ArcLock face pipeline tools")]
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
    },
    /// Embed one photo and print what was measured (never the vector).
    Embed { photo: PathBuf },
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
            let outcome = eval::run(&pipeline, &photos, threads.workers)?;
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
                if no_quality_gates {
                    ", quality gates off"
                } else {
                    ""
                }
            );
            let report = outcome.report(&header);
            print!("{report}");
            if let Some(out) = out {
                std::fs::write(&out, &report)?;
            }
        }
        Command::Embed { photo } => {
            let pipeline = Pipeline::new(models, Policy::default(), Default::default(), 1);
            let bytes = std::fs::read(&photo)?;
            let mut ws = Workspace::new()?;
            let mut t = arclock_face::Timings::default();
            let face = pipeline.run(&mut ws, &bytes, Some(&mut t))?;
            println!("{:?}\n{:?}\n{:?}", face.embedding, face.measures, t);
        }
    }
    Ok(())
}
