//! Loading the real models with the real ONNX Runtime installed by `make test`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::path::Path;

use common::{manifest_path, runtime, state};

use arclock_face::{Error, FaceModels, Manifest, Threads};

const ONE: Threads = Threads {
    workers: 1,
    intra: 1,
};

fn manifest() -> Manifest {
    Manifest::load(&manifest_path()).unwrap()
}

#[test]
fn default_models_load_and_recognizer_has_manifest_dimension() {
    let m = manifest();
    for (det, rec) in [
        ("scrfd_2.5g_bnkps", "arcface_mobileface_128"),
        ("yunet_2023mar", "mobilefacenet_128"),
    ] {
        let models =
            FaceModels::load(&runtime(), &m, &state().join("models"), det, rec, ONE).unwrap();
        let s = models.status();
        assert_eq!(
            (s.detector.as_str(), s.recognizer.as_str(), s.embedding_dim),
            (det, rec, 128)
        );
    }
}

#[test]
fn a_changed_byte_refuses_to_load_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["scrfd_2.5g_bnkps.onnx", "arcface_mobileface_128.onnx"] {
        std::fs::copy(state().join("models").join(f), dir.path().join(f)).unwrap();
    }
    let victim = dir.path().join("arcface_mobileface_128.onnx");
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let e = FaceModels::load(
        &runtime(),
        &manifest(),
        dir.path(),
        "scrfd_2.5g_bnkps",
        "arcface_mobileface_128",
        ONE,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Integrity { .. }), "{e}");
    assert!(e.to_string().contains("arcface_mobileface_128.onnx"), "{e}");

    std::fs::remove_file(&victim).unwrap();
    let e = FaceModels::load(
        &runtime(),
        &manifest(),
        dir.path(),
        "scrfd_2.5g_bnkps",
        "arcface_mobileface_128",
        ONE,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

#[test]
fn a_manifest_that_lies_about_the_dimension_is_caught_at_load() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifest.toml"))
        .unwrap()
        .replacen("embedding_dim = 128", "embedding_dim = 512", 1);
    let m = Manifest::parse(&text).unwrap();
    let e = FaceModels::load(
        &runtime(),
        &m,
        &state().join("models"),
        "scrfd_2.5g_bnkps",
        "arcface_mobileface_128",
        ONE,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("outputs 128 values, manifest says embedding_dim = 512"),
        "{e}"
    );
}

#[test]
fn unknown_model_id_lists_the_known_ones() {
    let e = FaceModels::load(
        &runtime(),
        &manifest(),
        &state().join("models"),
        "nope",
        "arcface_mobileface_128",
        ONE,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("known: scrfd_2.5g_bnkps, yunet_2023mar"),
        "{e}"
    );
}
