//! Passive PAD and the active checks on real photos with the real models.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::sync::Arc;

use arclock_face::liveness::{FrameView, Refusal, Step, Thresholds, judge};
use arclock_face::{FaceModels, Manifest, PadStatus, Pipeline, Policy, Threads, Workspace};

/// The default detector and recognizer, and the PAD models found in `dir`.
fn load(dir: &std::path::Path) -> Result<FaceModels, arclock_face::Error> {
    load_for(dir, 1)
}

/// [`load`] with `workers` sessions per model.
fn load_for(dir: &std::path::Path, workers: usize) -> Result<FaceModels, arclock_face::Error> {
    let manifest = Manifest::load(&common::manifest_path()).unwrap();
    FaceModels::load(
        &common::runtime(),
        &manifest,
        dir,
        "scrfd_2.5g_bnkps",
        "arcface_mobileface_128",
        Threads { workers, intra: 1 },
    )
}

fn pipeline() -> Arc<Pipeline> {
    static P: std::sync::OnceLock<Arc<Pipeline>> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let models = load(&common::state().join("models")).unwrap();
        Arc::new(Pipeline::new(models, Policy::default(), Default::default(), 1).with_pad(true))
    })
    .clone()
}

fn lfw(person: &str, n: u32) -> Vec<u8> {
    std::fs::read(common::faces().join(format!("lfw-dev/{person}/{person}_{n:04}.jpg"))).unwrap()
}

fn jpeg(img: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn view(f: &arclock_face::Face) -> FrameView<'_> {
    FrameView {
        landmarks: &f.detection.landmarks,
        yaw: f.measures.yaw,
        pad: f.pad,
        embedding: &f.embedding,
    }
}

/// The upstream samples are classed as upstream classes them (F1, F2 a
/// photo shown to the camera; T1 live) at the default operating point, and
/// the workspace (which held the PAD crop) is wiped after each run.
#[test]
fn upstream_pad_samples_are_classed_as_upstream_says() {
    let p = pipeline();
    assert!(matches!(p.models().pad_status(), PadStatus::Ready { models } if models.len() == 2));
    let min = Thresholds::default().min_pad;
    let mut ws = Workspace::new().unwrap();
    for (name, live) in [
        ("image_F1.jpg", false),
        ("image_F2.jpg", false),
        ("image_T1.jpg", true),
    ] {
        let bytes = std::fs::read(common::faces().join("pad-samples").join(name)).unwrap();
        let face = p.run(&mut ws, &bytes, None).unwrap();
        assert!(ws.is_wiped(), "workspace not wiped after {name}");
        let score = face.pad.unwrap();
        assert_eq!(
            score >= min,
            live,
            "{name}: live score {score}, threshold {min}"
        );
    }
}

/// With a second worker idle, a lone run scores PAD on its thread beside the
/// recognizer; the scores and embeddings are exactly those of the
/// one-worker pipeline, which runs them one after the other, and the
/// workspace is wiped all the same.
#[test]
fn pad_beside_the_recognizer_gives_the_same_answer() {
    let sequential = pipeline();
    let two = Pipeline::new(
        load_for(&common::state().join("models"), 2).unwrap(),
        Policy::default(),
        Default::default(),
        2,
    )
    .with_pad(true);
    let mut ws = Workspace::new().unwrap();
    for name in ["image_F1.jpg", "image_T1.jpg"] {
        let bytes = std::fs::read(common::faces().join("pad-samples").join(name)).unwrap();
        let one = sequential.run(&mut ws, &bytes, None).unwrap();
        assert!(!one.timings.pad_beside, "one worker has no core to lend");
        // The idle worker takes PAD unless this thread finishes the
        // recognizer first (a host too loaded to wake it in ~15 ms): then it
        // runs PAD itself, which must give the same answer too.
        let mut went_beside = false;
        for _ in 0..5 {
            let beside = two.run(&mut ws, &bytes, None).unwrap();
            assert!(ws.is_wiped(), "workspace not wiped after {name}");
            assert!(beside.pad.is_some());
            assert_eq!(beside.pad, one.pad, "{name}: PAD score differs");
            assert_eq!(
                beside.embedding.values(),
                one.embedding.values(),
                "{name}: embedding differs"
            );
            went_beside |= beside.timings.pad_beside;
            if went_beside {
                break;
            }
        }
        assert!(went_beside, "{name}: PAD never ran beside in 5 runs");
    }
}

/// Two runs at once take both workers: neither borrows a thread for PAD while
/// the other still runs (the pipeline never computes on more threads than it
/// has workers, and no run waits behind another's PAD), and both answer as
/// the sequential run does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_run_pad_after_the_recognizer() {
    let sequential = pipeline();
    let two = Arc::new(
        Pipeline::new(
            load_for(&common::state().join("models"), 2).unwrap(),
            Policy::default(),
            Default::default(),
            2,
        )
        .with_pad(true),
    );
    let bytes = std::fs::read(common::faces().join("pad-samples/image_T1.jpg")).unwrap();
    let one = sequential
        .run(&mut Workspace::new().unwrap(), &bytes, None)
        .unwrap();
    for _ in 0..3 {
        // Both take their permits in the first poll, long before either
        // reaches PAD (decoding and detection come first).
        let photo = || arclock_secmem::LockedBytes::from_slice(&bytes).unwrap();
        let (a, b) = tokio::join!(two.embed(photo()), two.embed(photo()));
        let (a, b) = (a.unwrap(), b.unwrap());
        // Both clocks start at the call. On a loaded host one run can be
        // held off long enough for the other to finish and give its worker
        // back: then PAD may take that worker, since nothing else computes.
        let pad_start = |f: &arclock_face::Face| {
            let t = f.timings;
            t.queue + t.decode + t.detect + t.align
        };
        let end = |f: &arclock_face::Face| f.timings.queue + f.timings.total;
        for (face, other) in [(&a, &b), (&b, &a)] {
            assert!(
                !face.timings.pad_beside || end(other) <= pad_start(face),
                "a third thread computed: PAD went beside at {:?}, the other run ended at {:?}",
                pad_start(face),
                end(other)
            );
            assert_eq!(face.pad, one.pad);
            assert_eq!(face.embedding.values(), one.embedding.values());
        }
    }
    assert!(two.workspaces_wiped());
}

/// Without the PAD files, the models still load and PAD says why it is off.
#[test]
fn missing_pad_models_are_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["scrfd_2.5g_bnkps.onnx", "arcface_mobileface_128.onnx"] {
        std::fs::copy(common::state().join("models").join(f), dir.path().join(f)).unwrap();
    }
    let models = load(dir.path()).unwrap();
    match models.pad_status() {
        PadStatus::Unavailable { reason } => assert!(reason.contains("minifasnet"), "{reason}"),
        other => panic!("expected unavailable, got {other:?}"),
    }
    // A PAD file that is there but altered refuses the load (fail closed).
    std::fs::write(dir.path().join("minifasnet_v2_80.onnx"), b"not a model").unwrap();
    std::fs::copy(
        common::state().join("models/minifasnet_v1se_80.onnx"),
        dir.path().join("minifasnet_v1se_80.onnx"),
    )
    .unwrap();
    let e = load(dir.path()).unwrap_err();
    assert_eq!(e.kind(), "integrity", "{e}");
}

/// A real head (three photos of one person, one mirrored) passes the active
/// checks; the same frontal photo turned as a flat picture does not.
#[test]
fn a_live_head_passes_and_a_turned_print_does_not() {
    let p = pipeline();
    let mut ws = Workspace::new().unwrap();
    let turned = lfw("Amanda_Bynes", 4);
    let mirror = jpeg(&image::imageops::flip_horizontal(
        &image::load_from_memory(&turned).unwrap().to_rgb8(),
    ));
    let front = lfw("Amanda_Bynes", 2);
    let faces: Vec<_> = [&front, &turned, &mirror, &front]
        .iter()
        .map(|b| p.run(&mut ws, b, None).unwrap())
        .collect();

    let t = Thresholds::default();
    let steps = [Step::Front, Step::Right, Step::Left, Step::Front];
    let views: Vec<FrameView<'_>> = faces.iter().map(view).collect();
    let ev = judge(&steps, &views, &t).unwrap();
    assert!(
        ev.parallax >= t.min_parallax && ev.consistency > 0.5,
        "{ev:?}"
    );
    // Out of order: a pose problem, not an attack.
    let wrong = [Step::Right, Step::Front, Step::Left, Step::Front];
    assert!(matches!(
        judge(&wrong, &views, &t),
        Err(Refusal::Pose { frame: 0, .. })
    ));

    // The frontal photo as a print turned 0 / +-35 degrees.
    let img = image::load_from_memory(&front).unwrap().to_rgb8();
    let deg = std::f32::consts::PI / 180.0;
    let prints: Vec<_> = [0.0f32, 35.0, -35.0]
        .iter()
        .map(|a| {
            let w =
                arclock_face::liveness::eval::warp_flat(&img, a * deg, 0.0, 1.0, [0.0, 0.0], 250.0);
            p.run(&mut ws, &jpeg(&w), None).unwrap()
        })
        .collect();
    let views: Vec<FrameView<'_>> = prints.iter().map(view).collect();
    for steps in [
        [Step::Front, Step::Left, Step::Right],
        [Step::Front, Step::Right, Step::Left],
    ] {
        let r = judge(&steps, &views, &t);
        assert!(
            matches!(r, Err(Refusal::Pose { .. } | Refusal::Flat { .. })),
            "a turned print: {r:?}"
        );
    }
}
