//! The privacy proof: after real users registered and signed in (JSON and
//! multipart uploads, right and wrong faces, logs at trace level), nothing the
//! daemon wrote (database, WAL, logs, HSM token files, everything under its
//! state directory) holds any 64-byte window of any photo sent (raw or
//! base64), any 32-byte window of any stored embedding's floats, or any
//! user's private key; and while it ran, every buffer it marked
//! non-dumpable was also locked in RAM, and core dumps were off.
//!
//! This file runs the proof on the embedded store; `privacy_mongodb.rs` runs
//! it with the daemon on the MongoDB backend, where every document of every
//! collection and the server's own files are scanned too. The proof itself
//! is in `common/privacy.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;
#[path = "common/privacy.rs"]
mod proof;

use proof::{Backend, prove};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_reaches_disk_and_secret_buffers_are_locked() {
    prove(Backend::Embedded).await;
}
