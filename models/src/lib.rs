//! The face pipeline of ArcLock: from photo bytes to an L2-normalised embedding.
//!
//! # Layout
//!
//! - [`manifest`]: which ONNX files exist, their sha256, inputs, normalisation
//!   and calibrated threshold; nothing about a model is hard-coded.
//! - [`runtime`]: ONNX Runtime loaded once per process from the pinned
//!   `libonnxruntime.so` (`ort` with `load-dynamic`).
//! - [`FaceModels`] (in `models`): detector and recognizer sessions, built once
//!   from sha256-verified bytes, one per worker; loading fails closed.
//! - [`graph`]: the verified graph's `PRelu`s rewritten into operators ONNX
//!   Runtime vectorises, bit for bit the same outputs (checked at load).
//! - [`photo`]: bytes to upright RGB under size limits, into locked memory;
//!   `jpeg`: a phone JPEG at 1/8, its entropy decoding split over two threads.
//! - [`detect`]: SCRFD and YuNet decoders; [`quality`]: which face, and is it
//!   good enough; [`align`]: Umeyama similarity onto the ArcFace template.
//! - [`Embedding`]: the unit vector, tagged with its model id, zeroized.
//! - [`Pipeline`]: the whole path on a bounded pool, with reusable locked
//!   [`Workspace`]s that are wiped after every run.
//! - [`pad`]: passive presentation-attack detection (MiniFASNet) on the
//!   detected face's enlarged crop, in the same workspace.
//! - [`liveness`]: active challenges (random head poses), the per-frame pose
//!   test, the flat-versus-3-D parallax test and the identity check.
//! - [`camera`]: V4L2 frames (MJPEG or YUYV) into the same pipeline; a burst
//!   is embedded frame by frame and the best face kept.
//! - [`eval`]: the accuracy evaluation behind the default threshold.
//! - `fuzzing` (feature `fuzzing`): the entry points of the fuzz targets.
//!
//! Secrets (image bytes, pixels, tensors, embeddings) live in
//! [`arclock_secmem::LockedVec`] buffers: locked, never dumped, zeroized.
#![forbid(unsafe_code)]

pub mod align;
pub mod camera;
pub mod detect;
mod embedding;
mod error;
pub mod eval;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
mod jpeg;
pub mod liveness;
pub mod manifest;
mod models;
pub mod pad;
pub mod photo;
mod pipeline;
pub mod quality;
pub mod runtime;
mod workspace;

pub use embedding::Embedding;
pub use error::Error;
pub use manifest::{Manifest, ModelSpec, Role};
pub use models::{FaceModels, GraphForm, ModelsStatus, Threads};
pub use pad::PadStatus;
pub use pipeline::{Face, Pipeline, Timings};
pub use quality::{Policy, Quality};
pub use workspace::Workspace;
