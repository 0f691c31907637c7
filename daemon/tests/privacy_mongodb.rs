//! The privacy proof (`privacy.rs`) with the daemon on the MongoDB backend:
//! every document of every collection and the server's own files are
//! scanned as well as the state directory. Runs whenever `make test` starts
//! a server (`scripts/with-mongo.sh`); its own binary, so its own SoftHSM2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;
#[path = "common/privacy.rs"]
mod proof;

use common::mongo_uri;
use proof::{Backend, prove};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_reaches_mongodb_documents_or_files() {
    let Some(uri) = mongo_uri() else {
        return;
    };
    let database = format!("privacy{}", std::process::id());
    prove(Backend::Mongo { uri, database }).await;
}
