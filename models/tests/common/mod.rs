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
