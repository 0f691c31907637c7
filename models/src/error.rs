use std::path::PathBuf;

use crate::quality::Quality;

/// Why a photo gave no embedding, or the models could not be loaded or run.
///
/// The photo errors (`ImageTooLarge` .. `LowQuality`) are the client's to fix
/// (4xx); the others are ours (503). No variant ever carries pixel data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Over the byte, side or pixel limits: refused before decoding.
    #[error("image too large: {0}")]
    ImageTooLarge(String),
    /// Not a JPEG, PNG or WebP image.
    #[error("unsupported image: {0}")]
    UnsupportedImage(String),
    /// Damaged or truncated image data.
    #[error("corrupt image: {0}")]
    CorruptImage(String),
    /// No face found.
    #[error("no face found in the photo")]
    NoFace,
    /// More than one face of comparable size: whose is it?
    #[error("{count} faces found; the photo must show one person")]
    MultipleFaces { count: usize },
    /// The face is too small to recognise reliably.
    #[error("the face is too small ({pixels} px, at least {minimum} px needed); move closer")]
    FaceTooSmall { pixels: u32, minimum: u32 },
    /// Blurred, dark or turned away.
    #[error("low quality photo: {reason}")]
    LowQuality { reason: Quality },

    /// Two embeddings from different models (or dimensions) cannot be compared.
    #[error("embedding model mismatch: template made with {expected}, probe with {found}")]
    ModelMismatch { expected: String, found: String },
    /// Stored template bytes that do not parse as an embedding.
    #[error("malformed template: {0}")]
    Template(String),
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
    /// Locked memory could not be had (RLIMIT_MEMLOCK too low?).
    #[error("locked memory: {0}")]
    SecretMemory(#[from] arclock_secmem::Error),
    /// The inference pool is shut down.
    #[error("face pipeline unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// Whether the photo is at fault (a 4xx for the client) rather than the service.
    pub fn is_photo_problem(&self) -> bool {
        matches!(
            self,
            Error::ImageTooLarge(_)
                | Error::UnsupportedImage(_)
                | Error::CorruptImage(_)
                | Error::NoFace
                | Error::MultipleFaces { .. }
                | Error::FaceTooSmall { .. }
                | Error::LowQuality { .. }
        )
    }

    /// Stable machine-readable kind, for logs and API error codes.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::ImageTooLarge(_) => "image_too_large",
            Error::UnsupportedImage(_) => "unsupported_image",
            Error::CorruptImage(_) => "corrupt_image",
            Error::NoFace => "no_face",
            Error::MultipleFaces { .. } => "multiple_faces",
            Error::FaceTooSmall { .. } => "face_too_small",
            Error::LowQuality { .. } => "low_quality",
            Error::ModelMismatch { .. } => "model_mismatch",
            Error::Template(_) => "template",
            Error::Manifest { .. } => "manifest",
            Error::Integrity { .. } => "integrity",
            Error::Io { .. } => "io",
            Error::Runtime(_) => "runtime",
            Error::Model { .. } => "model",
            Error::SecretMemory(_) => "secret_memory",
            Error::Unavailable(_) => "unavailable",
        }
    }
}
