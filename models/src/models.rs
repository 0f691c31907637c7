//! The loaded model set: a detector and a recognizer, verified and shared.

use std::path::Path;
use std::sync::Mutex;

use arclock_secmem::LockedVec;
use ort::session::Session;
use ort::value::TensorRef;
use sha2::{Digest, Sha256};

use crate::manifest::{Manifest, ModelSpec, Role};
use crate::{Error, runtime};

/// A model spec together with its ONNX Runtime session.
///
/// `Session::run` needs `&mut`, so each session sits behind a mutex; the
/// daemon's bounded inference pool decides how many run at once.
pub struct LoadedModel {
    pub spec: ModelSpec,
    session: Mutex<Session>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("id", &self.spec.id)
            .finish_non_exhaustive()
    }
}

/// The detector and recognizer the pipeline runs, loaded once at start.
#[derive(Debug)]
pub struct FaceModels {
    pub detector: LoadedModel,
    pub recognizer: LoadedModel,
}

/// What is loaded, for `/health` and the console.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelsStatus {
    pub detector: String,
    pub recognizer: String,
    pub embedding_dim: usize,
}

impl FaceModels {
    /// Loads ONNX Runtime from `runtime_library`, then the two models named in
    /// `manifest` from `dir`. Each file's sha256 must match the manifest, checked
    /// on the very bytes handed to ONNX Runtime (no re-read between check and
    /// use). The recognizer is run once on a blank face to confirm that its
    /// output has the manifest's `embedding_dim`.
    pub fn load(
        runtime_library: &Path,
        manifest: &Manifest,
        dir: &Path,
        detector: &str,
        recognizer: &str,
        intra_threads: usize,
    ) -> Result<Self, Error> {
        let manifest_err = |reason: String| Error::Manifest {
            path: dir.to_path_buf(),
            reason,
        };
        let det = manifest
            .get(detector, Role::Detector)
            .map_err(manifest_err)?;
        let rec = manifest
            .get(recognizer, Role::Recognizer)
            .map_err(manifest_err)?;
        let env = runtime::environment(runtime_library)?;
        let load = |spec: &ModelSpec| -> Result<LoadedModel, Error> {
            let bytes = read_verified(spec, dir)?;
            let model_err = |e: ort::Error| Error::Model {
                id: spec.id.clone(),
                reason: e.to_string(),
            };
            let session = Session::builder(env)
                .map_err(model_err)?
                .with_intra_threads(intra_threads.max(1))
                .map_err(|e| model_err(e.into()))?
                .commit_from_memory(&bytes)
                .map_err(model_err)?;
            if !session.inputs().iter().any(|i| i.name() == spec.input) {
                let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
                return Err(Error::Model {
                    id: spec.id.clone(),
                    reason: format!(
                        "has no input {:?} (inputs: {})",
                        spec.input,
                        names.join(", ")
                    ),
                });
            }
            Ok(LoadedModel {
                spec: spec.clone(),
                session: Mutex::new(session),
            })
        };
        let models = FaceModels {
            detector: load(det)?,
            recognizer: load(rec)?,
        };
        models.check_recognizer()?;
        Ok(models)
    }

    /// Runs the recognizer on a blank face and checks the output length.
    fn check_recognizer(&self) -> Result<(), Error> {
        let spec = &self.recognizer.spec;
        let [w, h] = spec.input_size;
        let blank =
            LockedVec::<f32>::zeroed(3 * w as usize * h as usize).map_err(|e| Error::Model {
                id: spec.id.clone(),
                reason: e.to_string(),
            })?;
        let got = self
            .recognizer
            .run_single(&blank, [1, 3, h as usize, w as usize])?;
        let want = spec.embedding_dim.unwrap_or(0);
        if got != want {
            return Err(Error::Model {
                id: spec.id.clone(),
                reason: format!("outputs {got} values, manifest says embedding_dim = {want}"),
            });
        }
        Ok(())
    }

    /// What is loaded.
    pub fn status(&self) -> ModelsStatus {
        ModelsStatus {
            detector: self.detector.spec.id.clone(),
            recognizer: self.recognizer.spec.id.clone(),
            embedding_dim: self.recognizer.spec.embedding_dim.unwrap_or(0),
        }
    }
}

impl LoadedModel {
    /// Runs the model on one input tensor held in caller-owned (locked) memory
    /// and returns the number of values in the first output.
    fn run_single(&self, input: &[f32], shape: [usize; 4]) -> Result<usize, Error> {
        let err = |reason: String| Error::Model {
            id: self.spec.id.clone(),
            reason,
        };
        let tensor = TensorRef::from_array_view((shape, input)).map_err(|e| err(e.to_string()))?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| err("session lock poisoned".into()))?;
        let outputs = session
            .run(ort::inputs![self.spec.input.as_str() => tensor])
            .map_err(|e| err(e.to_string()))?;
        let (_, values) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| err(e.to_string()))?;
        Ok(values.len())
    }
}

/// Reads a model file and checks its size and sha256 against the manifest.
pub(crate) fn read_verified(spec: &ModelSpec, dir: &Path) -> Result<Vec<u8>, Error> {
    let file = spec.path_in(dir);
    let bytes = std::fs::read(&file).map_err(|source| Error::Io {
        file: file.clone(),
        source,
    })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if !actual.eq_ignore_ascii_case(&spec.sha256) || bytes.len() as u64 != spec.bytes {
        return Err(Error::Integrity {
            file,
            expected: spec.sha256.clone(),
            actual,
        });
    }
    Ok(bytes)
}
