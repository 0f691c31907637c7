//! Where `make setup` put ONNX Runtime and the models, and where the photos are.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn state() -> PathBuf {
    std::env::var_os("ARCLOCK_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../var"))
}

pub fn runtime() -> PathBuf {
    state().join("opt/onnxruntime-1.32.0/libonnxruntime.so.1.32.0")
}

pub fn manifest_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifest.toml")
}

pub fn faces() -> PathBuf {
    std::env::var_os("ARCLOCK_FACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/faces"))
}

/// The default pipeline (SCRFD + the 128-d recognizer) with `workers` sessions
/// per model, loaded once per test process.
pub fn default_pipeline(workers: usize) -> std::sync::Arc<arclock_face::Pipeline> {
    static P: std::sync::OnceLock<std::sync::Arc<arclock_face::Pipeline>> =
        std::sync::OnceLock::new();
    P.get_or_init(|| std::sync::Arc::new(new_pipeline(workers)))
        .clone()
}

/// A pipeline of the default models with `workers` sessions per model, loaded
/// afresh (for a test that needs a worker count of its own).
pub fn new_pipeline(workers: usize) -> arclock_face::Pipeline {
    use arclock_face::{FaceModels, Manifest, Pipeline, Policy, Threads, photo::Limits};
    let manifest = Manifest::parse(&std::fs::read_to_string(manifest_path()).unwrap()).unwrap();
    let models = FaceModels::load(
        &runtime(),
        &manifest,
        &state().join("models"),
        "scrfd_2.5g_bnkps",
        "arcface_mobileface_128",
        Threads { workers, intra: 1 },
    )
    .unwrap();
    Pipeline::new(models, Policy::default(), Limits::default(), workers)
}
