use std::path::PathBuf;

/// Why the face models could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest is unreadable or inconsistent; names the offending key.
    #[error("model manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    /// A model file does not match the sha256 pinned in the manifest.
    #[error(
        "model file {file} fails its integrity check: sha256 {actual}, manifest pins {expected}"
    )]
    Integrity {
        file: PathBuf,
        expected: String,
        actual: String,
    },
    /// A model file is missing or unreadable.
    #[error("model file {file}: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    /// ONNX Runtime itself could not be loaded.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// ONNX Runtime refused the model, or it does not look like the manifest says.
    #[error("model {id}: {reason}")]
    Model { id: String, reason: String },
}
