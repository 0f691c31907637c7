//! The loaded model set: a detector and a recognizer, verified and shared.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use arclock_secmem::LockedVec;
use ort::session::Session;
use ort::value::TensorRef;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::detect::{self, Detection, Family, Placement};
use crate::embedding::Embedding;
use crate::manifest::{Manifest, ModelSpec, Role};
use crate::pad::{self, PadStatus};
use crate::photo::Rgb;
use crate::{Error, graph, runtime};

/// How inference uses the cores: `workers` photos at once, each model run
/// using `intra` threads. Each model keeps one session per worker, because
/// `ort`'s `Session::run` takes `&mut self`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threads {
    pub workers: usize,
    pub intra: usize,
}

impl Threads {
    /// One worker per core, one thread each: a burst of requests keeps every
    /// core busy without oversubscribing them.
    pub fn per_core() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Threads {
            workers: cores,
            intra: 1,
        }
    }
}

/// A model spec together with its ONNX Runtime sessions.
pub struct LoadedModel {
    pub spec: ModelSpec,
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
    /// Which graph the sessions run.
    pub graph: GraphForm,
}

/// The graph a model's sessions run: ONNX Runtime sees the verified bytes, or
/// their rewrite (`graph`), never anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphForm {
    /// Nothing to rewrite.
    AsShipped,
    /// This many `PRelu`s in vectorised form; same outputs on the probe.
    FastPrelu(usize),
    /// A rewrite was possible but is not used, and why.
    KeptAsShipped(String),
}

impl std::fmt::Display for GraphForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GraphForm::AsShipped => write!(f, "as shipped"),
            GraphForm::FastPrelu(n) => write!(f, "{n} PRelu vectorised, same outputs on the probe"),
            GraphForm::KeptAsShipped(why) => {
                write!(f, "as shipped: the rewrite was refused ({why})")
            }
        }
    }
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("id", &self.spec.id)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// The detector and recognizer the pipeline runs, loaded once at start.
#[derive(Debug)]
pub struct FaceModels {
    pub detector: LoadedModel,
    pub recognizer: LoadedModel,
    /// The passive PAD models (empty when unavailable; see `pad_status`).
    pad: Vec<LoadedModel>,
    pad_status: PadStatus,
    pub(crate) family: Family,
}

/// What is loaded, for `/health` and the console.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelsStatus {
    pub detector: String,
    pub recognizer: String,
    pub embedding_dim: usize,
    pub pad: PadStatus,
}

impl FaceModels {
    /// Loads ONNX Runtime from `runtime_library`, then the two models named in
    /// `manifest` from `dir`, and every PAD model of the manifest when they
    /// are installed (else PAD is reported unavailable). Each file's sha256 must match the manifest, checked
    /// on the very bytes handed to ONNX Runtime (no re-read between check and
    /// use). The recognizer is run once on a blank face to confirm that its
    /// output has the manifest's `embedding_dim`.
    pub fn load(
        runtime_library: &Path,
        manifest: &Manifest,
        dir: &Path,
        detector: &str,
        recognizer: &str,
        threads: Threads,
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
        let family = Family::from_kind(&det.kind)
            .ok_or_else(|| manifest_err(format!("unknown detector kind {:?}", det.kind)))?;
        let env = runtime::environment(runtime_library)?;
        let load = |spec: &ModelSpec| load_model(env, spec, dir, threads);
        let (pad, pad_status) = load_pad(manifest, dir, &load)?;
        let models = FaceModels {
            detector: load(det)?,
            recognizer: load(rec)?,
            pad,
            pad_status,
            family,
        };
        models.check_recognizer()?;
        Ok(models)
    }

    /// Runs the recognizer on a blank face and checks the output length.
    fn check_recognizer(&self) -> Result<(), Error> {
        let spec = &self.recognizer.spec;
        let [w, h] = spec.input_size;
        let blank = LockedVec::<f32>::zeroed(3 * w as usize * h as usize)?;
        let want = spec.embedding_dim.unwrap_or(0);
        // The output size is the model's, not a session's: one run says it.
        let mut session = self.recognizer.session()?;
        let (got, _) = self.recognizer.run_raw(&mut session, &blank, |_| Ok(()))?;
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
            pad: self.pad_status.clone(),
        }
    }

    /// Each loaded model's id and the graph its sessions run (for the start log).
    pub fn graphs(&self) -> Vec<(&str, &GraphForm)> {
        [&self.detector, &self.recognizer]
            .into_iter()
            .chain(&self.pad)
            .map(|m| (m.spec.id.as_str(), &m.graph))
            .collect()
    }

    /// Whether passive PAD can run.
    pub fn pad_status(&self) -> &PadStatus {
        &self.pad_status
    }

    /// The fused live score (mean of the PAD models' live probabilities) of
    /// `face` in `img`; `input` is the locked tensor buffer to use.
    /// `None` when no PAD model is loaded.
    pub(crate) fn pad_score(
        &self,
        img: Rgb<'_>,
        face: &Detection,
        input: &mut LockedVec<f32>,
    ) -> Result<Option<f32>, Error> {
        if self.pad.is_empty() {
            return Ok(None);
        }
        let mut sum = 0.0f32;
        for m in &self.pad {
            pad::prepare(&m.spec, img, face, input)?;
            let mut session = m.session()?;
            let mut live = None;
            m.run_raw(&mut session, input, |logits| {
                live = Some(pad::live_probability(logits).map_err(|e| m.err(e))?);
                Ok(())
            })?;
            input.clear();
            sum += live.ok_or_else(|| m.err("no output"))?;
        }
        Ok(Some(sum / self.pad.len() as f32))
    }

    /// Runs the detector on a prepared tensor; returns the faces and the time
    /// spent inside ONNX Runtime.
    pub(crate) fn detect(
        &self,
        input: &[f32],
        at: Placement,
    ) -> Result<(Vec<Detection>, Duration), Error> {
        let m = &self.detector;
        let threshold = m
            .spec
            .score_threshold
            .unwrap_or_else(|| self.family.default_score_threshold());
        let shape = [1, 3, at.height, at.width];
        let tensor = TensorRef::from_array_view((shape, input)).map_err(|e| m.err(e))?;
        let mut session = m.session()?;
        let t = Instant::now();
        let mut outputs = session
            .run(ort::inputs![m.spec.input.as_str() => tensor])
            .map_err(|e| m.err(e))?;
        let took = t.elapsed();
        // Copy the outputs out (wiping ONNX Runtime's copies: landmarks are
        // biometric geometry), then decode from our copies.
        let mut copies: Vec<(String, Vec<i64>, Zeroizing<Vec<f32>>)> = Vec::new();
        for (name, mut value) in outputs.iter_mut() {
            let (shape, data) = value
                .try_extract_tensor_mut::<f32>()
                .map_err(|e| m.err(e))?;
            copies.push((
                name.to_string(),
                shape.to_vec(),
                Zeroizing::new(data.to_vec()),
            ));
            data.zeroize();
        }
        drop(outputs);
        drop(session);
        let views: Vec<detect::Output<'_>> = copies
            .iter()
            .map(|(name, shape, values)| detect::Output {
                name,
                shape,
                values,
            })
            .collect();
        let faces = detect::decode(self.family, &views, at, threshold)?;
        Ok((faces, took))
    }

    /// Runs the recognizer on an aligned face tensor; returns the normalised
    /// embedding and the time spent inside ONNX Runtime.
    pub(crate) fn embed(&self, input: &[f32]) -> Result<(Embedding, Duration), Error> {
        let m = &self.recognizer;
        let mut session = m.session()?;
        let mut embedding = None;
        let (_, took) = m.run_raw(&mut session, input, |values| {
            embedding = Some(Embedding::from_raw(&m.spec.id, values)?);
            Ok(())
        })?;
        let embedding = embedding.ok_or_else(|| m.err("no output"))?;
        Ok((embedding, took))
    }
}

impl LoadedModel {
    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Model {
            id: self.spec.id.clone(),
            reason: e.to_string(),
        }
    }

    fn poisoned(&self) -> Error {
        self.err("session lock poisoned")
    }

    /// A free session if there is one, else waits for the next in turn.
    fn session(&self) -> Result<MutexGuard<'_, Session>, Error> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            match self.sessions[(start + i) % n].try_lock() {
                Ok(g) => return Ok(g),
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Poisoned(_)) => return Err(self.poisoned()),
            }
        }
        self.sessions[start].lock().map_err(|_| self.poisoned())
    }

    /// Runs a single-input, single-output model over caller-owned (locked)
    /// memory; `use_output` sees the first output before it is wiped.
    /// Returns the output length and the ONNX Runtime time.
    fn run_raw(
        &self,
        session: &mut Session,
        input: &[f32],
        use_output: impl FnOnce(&[f32]) -> Result<(), Error>,
    ) -> Result<(usize, Duration), Error> {
        let [w, h] = self.spec.input_size;
        let shape = [1, 3, h as usize, w as usize];
        let tensor = TensorRef::from_array_view((shape, input)).map_err(|e| self.err(e))?;
        let t = Instant::now();
        let mut outputs = session
            .run(ort::inputs![self.spec.input.as_str() => tensor])
            .map_err(|e| self.err(e))?;
        let took = t.elapsed();
        let mut first = outputs
            .values_mut()
            .next()
            .ok_or_else(|| self.err("model has no output"))?;
        let (_, values) = first
            .try_extract_tensor_mut::<f32>()
            .map_err(|e| self.err(e))?;
        let len = values.len();
        let used = use_output(values);
        values.zeroize();
        used?;
        Ok((len, took))
    }
}

/// One model's sessions, one per worker, from sha256-verified bytes: the
/// bytes as shipped, or their `graph::fast_prelu` rewrite once it has given
/// the very same outputs as the original on a probe.
fn load_model(
    env: &ort::environment::Environment,
    spec: &ModelSpec,
    dir: &Path,
    threads: Threads,
) -> Result<LoadedModel, Error> {
    let verified = read_verified(spec, dir)?;
    let session = |bytes: &[u8]| session(env, spec, bytes, threads.intra);
    let mut first = session(&verified)?;
    let rewrite = if spec.fast_prelu {
        graph::fast_prelu(&verified)
    } else {
        Ok(None)
    };
    let (bytes, graph) = match rewrite {
        Ok(None) => (verified, GraphForm::AsShipped),
        // A rewrite ONNX Runtime refuses, or one that answers differently,
        // falls back to the shipped graph: the rewrite never fails a load.
        Ok(Some(fast)) => match session(&fast.bytes)
            .map_err(|e| e.to_string())
            .and_then(|mut r| same_outputs(spec, &mut first, &mut r).map(|()| r))
        {
            Ok(rewritten) => {
                first = rewritten;
                (fast.bytes, GraphForm::FastPrelu(fast.prelus))
            }
            Err(why) => (verified, GraphForm::KeptAsShipped(why)),
        },
        Err(e) => (verified, GraphForm::KeptAsShipped(e.to_string())),
    };
    let mut sessions = vec![Mutex::new(first)];
    for _ in 1..threads.workers.max(1) {
        sessions.push(Mutex::new(session(&bytes)?));
    }
    Ok(LoadedModel {
        spec: spec.clone(),
        sessions,
        next: AtomicUsize::new(0),
        graph,
    })
}

/// One ONNX Runtime session of `bytes`, which must take `spec.input`.
fn session(
    env: &ort::environment::Environment,
    spec: &ModelSpec,
    bytes: &[u8],
    intra: usize,
) -> Result<Session, Error> {
    let model_err = |e: ort::Error| Error::Model {
        id: spec.id.clone(),
        reason: e.to_string(),
    };
    let session = Session::builder(env)
        .map_err(model_err)?
        .with_intra_threads(intra.max(1))
        .map_err(|e| model_err(e.into()))?
        // No arena: it grows by powers of two and keeps its peak; with the
        // rewritten graphs' extra intermediates that was +26 MiB of RSS
        // (two workers), for no measurable speed.
        .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])
        .map_err(|e| model_err(e.into()))?
        .commit_from_memory(bytes)
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
    Ok(session)
}

/// Runs both sessions on one probe (a fixed pattern of both signs, no
/// biometric data) and wants every output equal, bit for bit.
fn same_outputs(spec: &ModelSpec, a: &mut Session, b: &mut Session) -> Result<(), String> {
    let [w, h] = spec.input_size;
    let shape = [1, 3, h as usize, w as usize];
    let mut x = 0x9e37_79b9_u32;
    let probe: Vec<f32> = (0..3 * w as usize * h as usize)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect();
    let run = |s: &mut Session| -> Result<Vec<Vec<u32>>, String> {
        let tensor = TensorRef::from_array_view((shape, &probe[..])).map_err(|e| e.to_string())?;
        let outputs = s
            .run(ort::inputs![spec.input.as_str() => tensor])
            .map_err(|e| e.to_string())?;
        outputs
            .values()
            .map(|v| {
                let (_, data) = v.try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
                Ok(data.iter().map(|f| f.to_bits()).collect())
            })
            .collect()
    };
    if run(a)? == run(b)? {
        Ok(())
    } else {
        Err("its outputs differ from the original's on the probe".into())
    }
}

/// Every PAD model of the manifest, or none and why: a file that is not
/// installed makes PAD unavailable (upstream has no ONNX URL, so a machine
/// without the mirror has none); a file that is there but fails its sha256,
/// or that ONNX Runtime refuses, fails the load like any other model.
fn load_pad(
    manifest: &Manifest,
    dir: &Path,
    load: &dyn Fn(&ModelSpec) -> Result<LoadedModel, Error>,
) -> Result<(Vec<LoadedModel>, PadStatus), Error> {
    let specs: Vec<&ModelSpec> = manifest
        .models
        .iter()
        .filter(|m| m.role == Role::Pad)
        .collect();
    if specs.is_empty() {
        let reason = "the manifest names no PAD model".to_string();
        return Ok((Vec::new(), PadStatus::Unavailable { reason }));
    }
    if let Some(missing) = specs.iter().find(|s| !s.path_in(dir).exists()) {
        let reason = format!("{} is not installed in {}", missing.file, dir.display());
        return Ok((Vec::new(), PadStatus::Unavailable { reason }));
    }
    let loaded = specs
        .iter()
        .map(|s| load(s))
        .collect::<Result<Vec<_>, _>>()?;
    let models = loaded.iter().map(|m| m.spec.id.clone()).collect();
    Ok((loaded, PadStatus::Ready { models }))
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// `make setup`'s state directory (ONNX Runtime and the models).
    fn state() -> PathBuf {
        std::env::var_os("ARCLOCK_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../var"))
    }

    #[test]
    fn the_probe_refuses_a_rewrite_that_changes_an_output() {
        let manifest =
            Manifest::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("manifest.toml")).unwrap();
        let spec = manifest
            .get("arcface_mobileface_128", Role::Recognizer)
            .unwrap();
        let env =
            runtime::environment(&state().join("opt/onnxruntime-1.32.0/libonnxruntime.so.1.32.0"))
                .unwrap();
        let verified = read_verified(spec, &state().join("models")).unwrap();
        let fast = graph::fast_prelu(&verified).unwrap().unwrap();
        let mut shipped = session(env, spec, &verified, 1).unwrap();
        let mut right = session(env, spec, &fast.bytes, 1).unwrap();
        assert_eq!(same_outputs(spec, &mut shipped, &mut right), Ok(()));
        // The same rewrite with one `Max` turned into a `Min` (op_type is
        // field 4: key 0x22, length 3): a wrong rewrite must not slip through.
        let mut wrong = fast.bytes.clone();
        let at = wrong.windows(5).position(|w| w == b"\x22\x03Max").unwrap();
        wrong[at + 2..at + 5].copy_from_slice(b"Min");
        let mut wrong = session(env, spec, &wrong, 1).unwrap();
        assert!(same_outputs(spec, &mut shipped, &mut wrong).is_err());
    }
}
