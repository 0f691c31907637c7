//! The face pipeline of ArcLock: from photo bytes to an L2-normalised embedding.
//!
//! # Layout
//!
//! - [`manifest`]: which ONNX files exist, their sha256, inputs and normalisation;
//!   the pipeline reads every size and name from here, nothing is hard-coded.
//! - [`runtime`]: ONNX Runtime loaded once per process from the pinned
//!   `libonnxruntime.so` (`ort` with `load-dynamic`).
//! - [`FaceModels`] (in `models`): the detector and recogniser sessions, built
//!   once from sha256-verified bytes and shared; loading fails closed.
//!
//! Secrets (image bytes, pixels, tensors, embeddings) live in
//! [`arclock_secmem::LockedVec`] buffers: locked, never dumped, zeroized on drop.
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::todo,
    clippy::unimplemented,
    clippy::await_holding_lock
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod error;
pub mod manifest;
mod models;
pub mod runtime;

pub use error::Error;
pub use manifest::{Manifest, ModelSpec, Role};
pub use models::{FaceModels, ModelsStatus};
