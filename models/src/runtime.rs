//! ONNX Runtime, loaded once per process from the pinned shared library.
//!
//! `ort` allows one environment per process, so the first caller's library path
//! wins and a later call with another path is an error rather than a silent mix.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

use crate::Error;

static RUNTIME: OnceLock<(PathBuf, Environment)> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

/// The process's ONNX Runtime environment, loading `library` on first use.
pub fn environment(library: &Path) -> Result<&'static Environment, Error> {
    let _one = LOADING
        .lock()
        .map_err(|_| Error::Runtime("runtime loader poisoned".into()))?;
    if let Some((path, env)) = RUNTIME.get() {
        return if path == library {
            Ok(env)
        } else {
            Err(Error::Runtime(format!(
                "already loaded from {}, cannot also load {}",
                path.display(),
                library.display()
            )))
        };
    }
    if !library.is_file() {
        return Err(Error::Runtime(format!(
            "{} does not exist (run `make run` or `make test` to install it)",
            library.display()
        )));
    }
    let env = ort::init_from(library)
        .map_err(|e| Error::Runtime(format!("cannot load {}: {e}", library.display())))?
        .with_name("arclock")
        .with_telemetry(false)
        .build()
        .map_err(|e| Error::Runtime(e.to_string()))?;
    let stored = RUNTIME.get_or_init(|| (library.to_path_buf(), env));
    Ok(&stored.1)
}
