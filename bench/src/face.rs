//! Face pipeline latency: decode, detect, align, embed and the whole run on
//! real photos, with the time inside ONNX Runtime measured in the same runs, so
//! the pipeline's own overhead is a ratio (goal: <= 1.15x the model time).

use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use arclock_face::{FaceModels, Manifest, Pipeline, Policy, Threads, Timings, Workspace};

use crate::report::{Report, Samples, num};

/// The default model pair (SCRFD-2.5G + ArcFace-MobileFaceNet-128) as `make
/// setup` installed it under `root/var`, in a pipeline of `threads`.
pub fn pipeline(root: &Path, threads: Threads) -> Result<Pipeline> {
    let state = root.join("var");
    let manifest = Manifest::load(&root.join("models/manifest.toml"))?;
    let models = FaceModels::load(
        &state.join("opt/onnxruntime-1.32.0/libonnxruntime.so.1.32.0"),
        &manifest,
        &state.join("models"),
        "scrfd_2.5g_bnkps",
        "arcface_mobileface_128",
        threads,
    )?;
    Ok(Pipeline::new(
        models,
        Policy::default(),
        Default::default(),
        threads.workers,
    ))
}

pub fn run(report: &mut Report, root: &Path, faces: &Path, iterations: usize) -> Result<()> {
    let threads = Threads::per_core();
    let pipeline = pipeline(root, threads)?;

    let lfw = faces.join("lfw-dev/Aaron_Peirsol/Aaron_Peirsol_0001.jpg");
    let small = std::fs::read(&lfw).with_context(|| format!("reading {}", lfw.display()))?;
    // Phone-sized JPEGs (4032x3024) made from the same photo. `flat`: the
    // face enlarged 10x on a plain grey frame (the original figure;
    // it compresses to little, so entropy decoding is cheap). `textured`: the
    // photo filling the frame, sensor noise, q92 4:2:0 as phones write it
    // (what `arclock-face eval --phone` measures accuracy on).
    let textured = arclock_face::eval::phone_variant(&small)?;
    let phone = {
        let img = image::load_from_memory(&small)?.to_rgb8();
        let face = image::imageops::resize(&img, 1500, 1500, image::imageops::FilterType::Triangle);
        let mut canvas = image::RgbImage::from_pixel(4032, 3024, image::Rgb([128, 128, 128]));
        image::imageops::overlay(&mut canvas, &face, 1266, 762);
        let mut out = Vec::new();
        canvas.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Jpeg)?;
        out
    };

    report.table(
        "Face pipeline (SCRFD-2.5G + ArcFace-MobileFaceNet-128, ONNX Runtime 1.32 CPU)",
        &format!(
            "{iterations} sequential runs per photo after 3 warm-up runs, one worker, \
             {} intra-op thread(s) per model (the daemon's default). `model` columns are \
             the time inside `Session::run`, measured in the same runs.",
            threads.intra
        ),
        &["photo", "step", "median ms", "p95 ms"],
    );
    let mut ratios = Vec::new();
    let mut split = Vec::new();
    let photos = [
        ("LFW 150x150 JPEG", &small),
        ("phone 4032x3024 JPEG, flat", &phone),
        ("phone 4032x3024 JPEG, textured", &textured),
    ];
    for (name, bytes) in photos {
        let mut ws = Workspace::new()?;
        for _ in 0..3 {
            pipeline.run(&mut ws, bytes, None)?;
        }
        let mut all: Vec<Timings> = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let mut t = Timings::default();
            pipeline.run(&mut ws, bytes, Some(&mut t))?;
            all.push(t);
        }
        let col = |f: fn(&Timings) -> Duration| {
            let mut s = Samples::default();
            for t in &all {
                s.push(f(t));
            }
            s
        };
        // Baseline in the same run: the whole-image decode the pipeline did
        // before DCT scaling (the `image` crate's zune-jpeg, full size).
        let mut before = Samples::default();
        for _ in 0..iterations.min(20) {
            let t = std::time::Instant::now();
            std::hint::black_box(image::load_from_memory(bytes)?);
            before.push(t.elapsed());
        }
        report.row(&[
            name.into(),
            "baseline: full-size decode (zune-jpeg)".into(),
            num(before.median_ms()),
            num(before.p95_ms()),
        ]);
        // And the decode the pipeline's own replaced for phone JPEGs: the
        // same 1/8 scale through libjpeg-turbo alone, on one thread.
        if let Some(eighth) = turbo_eighth(bytes, iterations.min(30), pipeline.first_decode_side())?
        {
            report.row(&[
                name.into(),
                "baseline: libjpeg-turbo 1/8 decode, one thread".into(),
                num(eighth.median_ms()),
                num(eighth.p95_ms()),
            ]);
        }
        let rows: [(&str, Samples); 7] = [
            ("decode", col(|t| t.decode)),
            ("detect (prepare + model + decode)", col(|t| t.detect)),
            ("detector model", col(|t| t.detect_model)),
            ("align + quality", col(|t| t.align)),
            ("embed", col(|t| t.embed)),
            ("recognizer model", col(|t| t.embed_model)),
            ("whole pipeline", col(|t| t.total)),
        ];
        for (step, s) in &rows {
            report.row(&[
                name.into(),
                (*step).into(),
                num(s.median_ms()),
                num(s.p95_ms()),
            ]);
        }
        let halves = all.iter().filter(|t| t.decode_halves).count();
        if halves > 0 {
            split.push(format!("{name} {halves} of {}", all.len()));
        }
        let models = col(|t| t.detect_model + t.embed_model);
        ratios.push((
            name,
            rows[6].1.median_ms() / models.median_ms(),
            ws.locked_bytes(),
        ));
    }
    report.end_table();
    report.para(&format!(
        "Sizes: {}. A JPEG is decoded at the coarsest DCT scale (1/8, 1/4, 1/2) \
         whose long side is still >= {} px, the detector runs first at <= 160 px a \
         side and larger only when the face is small; what is left of the decode is \
         entropy decoding, which grows with the file, not the pixels.",
        photos
            .iter()
            .map(|(n, b)| format!("{n} {:.0} KiB", b.len() as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(", "),
        pipeline.first_decode_side()
    ));
    report.para(&format!(
        "Runs whose JPEG was entropy-decoded in two halves on the pipeline's two \
         threads (a lone run, the other worker idle; `models/src/jpeg.rs`): {}.",
        if split.is_empty() {
            "none".to_string()
        } else {
            split.join(", ")
        }
    ));
    for (name, ratio, locked) in ratios {
        report.para(&format!(
            "{name}: whole pipeline = **{}x** the raw model time (median over median; goal \
             <= 1.15x); locked workspace {:.1} MiB.",
            num(ratio),
            locked as f64 / (1024.0 * 1024.0)
        ));
    }
    Ok(())
}

/// `bytes` decoded `runs` times at 1/8 by libjpeg-turbo alone (`None` for a
/// photo too small to be decoded at 1/8 by the pipeline, whose first decode
/// is to `first_side`).
fn turbo_eighth(bytes: &[u8], runs: usize, first_side: u32) -> Result<Option<Samples>> {
    let mut tj = turbojpeg::Decompressor::new()?;
    let header = tj.read_header(bytes)?;
    if header.width.max(header.height) < 8 * first_side as usize {
        return Ok(None);
    }
    let (w, h) = (header.width.div_ceil(8), header.height.div_ceil(8));
    let mut pixels = vec![0u8; w * h * 3];
    let mut s = Samples::default();
    for _ in 0..runs {
        let t = std::time::Instant::now();
        tj.decompress(
            bytes,
            turbojpeg::Image {
                pixels: pixels.as_mut_slice(),
                width: w,
                pitch: w * 3,
                height: h,
                format: turbojpeg::PixelFormat::RGB,
            },
        )?;
        s.push(t.elapsed());
    }
    Ok(Some(s))
}
