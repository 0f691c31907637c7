//! The whole path from photo bytes to embedding, and the bounded pool it runs on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arclock_secmem::LockedBytes;

use crate::Error;
use crate::camera::{self, Frame, PixelFormat};
use crate::detect::{self, Detection};
use crate::embedding::Embedding;
use crate::models::FaceModels;
use crate::photo::{self, Decoded, Limits};
use crate::quality::{self, Measures, Policy};
use crate::workspace::Workspace;

/// What a run starts from.
#[derive(Clone, Copy)]
pub(crate) enum Input<'a> {
    /// JPEG, PNG or WebP bytes (an upload).
    Encoded(&'a [u8]),
    /// A camera frame, YUYV or MJPEG.
    Frame(&'a Frame),
}

/// The first step of every run: `input` into upright RGB in `ws.rgb` under
/// `limits`, a JPEG at the coarsest scale whose long side is at least
/// `long_side` (0: full size), on two threads when `split` (see
/// [`photo::decode`]). (Also the fuzz targets' way in.)
pub(crate) fn to_rgb(
    input: Input<'_>,
    limits: &Limits,
    long_side: u32,
    split: bool,
    ws: &mut Workspace,
) -> Result<Decoded, Error> {
    match input {
        Input::Encoded(bytes) => photo::decode(bytes, limits, long_side, split, ws),
        Input::Frame(frame) => match frame.format {
            PixelFormat::Yuyv => {
                limits.admit(frame.width, frame.height)?;
                let (width, height) = camera::yuyv_to_rgb(frame, &mut ws.rgb)?;
                Ok(Decoded {
                    width,
                    height,
                    scale: 1,
                    halves: false,
                })
            }
            PixelFormat::Mjpeg => {
                let fixed = camera::mjpeg_as_jpeg(frame)?;
                let jpeg = fixed.as_deref().unwrap_or(&frame.data[..]);
                photo::decode(jpeg, limits, long_side, split, ws)
            }
        },
    }
}

/// Below this an upload is never decoded in halves (it is not a 12 MP photo
/// decoded at 1/8), so its run does not hold a second worker's permit for it.
const SPLIT_MIN_BYTES: usize = 64 * 1024;

/// How much larger than the calibration photos' a face's alignment may
/// magnify it (their eyes are ~24 px apart, the template's 35: ~1.5x).
const MAX_MAGNIFICATION: f32 = 1.5;

/// How good a face is for picking one frame of a burst.
fn frame_rank(face: &Face) -> f32 {
    face.measures.score * face.measures.sharpness
}

/// A face found, checked and embedded.
#[derive(Debug)]
pub struct Face {
    pub embedding: Embedding,
    pub detection: Detection,
    pub measures: Measures,
    /// Passive PAD's live score (0..1), when the pipeline runs PAD and its
    /// models are installed.
    pub pad: Option<f32>,
    /// Where this run's time went (the daemon's per-request timeline).
    pub timings: Timings,
}

/// Where the time of one run went; `*_model` is the time inside ONNX Runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Waiting for a worker: its permit, a crew thread and a
    /// workspace (set by the pooled entry points, zero for [`Pipeline::run`]).
    pub queue: Duration,
    pub decode: Duration,
    pub detect: Duration,
    pub detect_model: Duration,
    pub align: Duration,
    pub embed: Duration,
    pub embed_model: Duration,
    /// Passive PAD (crops and both models), when it runs.
    pub pad: Duration,
    /// Whether PAD ran on a second thread beside the recognizer (a core was
    /// idle), so `pad` overlapped `embed` instead of adding to it.
    pub pad_beside: bool,
    /// Whether the JPEG's entropy decoding ran in two halves on two threads
    /// (a 1/8 decode with a worker idle), so `decode` took about half.
    pub decode_halves: bool,
    pub total: Duration,
}

/// The face pipeline: models, policy and limits, plus a bounded pool of
/// workers. Requests beyond `workers` wait for a permit instead of all running
/// at once and thrashing the cores (and the locked-memory budget).
#[derive(Debug)]
pub struct Pipeline {
    models: FaceModels,
    policy: Policy,
    limits: Limits,
    /// Whether each run also scores the face with the PAD models.
    pad: bool,
    permits: tokio::sync::Semaphore,
    workspaces: Mutex<Vec<Workspace>>,
    /// One long-lived thread per worker, on which every run computes (or
    /// why there are none).
    crew: Result<rayon::ThreadPool, String>,
    /// Runs begun on the crew ([`Pipeline::runs_begun`]).
    runs: std::sync::atomic::AtomicU64,
}

/// `workers` long-lived face threads. A run's second task (PAD beside the
/// recognizer, the second half of a JPEG's entropy decoding) is taken by a
/// thread that would otherwise be idle, and by the run's own thread if none
/// is, so the pipeline never computes on more threads than it has workers,
/// and never spawns one per request.
fn crew(workers: usize) -> Result<rayon::ThreadPool, String> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .thread_name(|i| format!("arclock-face-{i}"))
        // The panic hook has reported it; the run's caller sees its answer
        // dropped (503) instead of the process aborting.
        .panic_handler(|_| {})
        .build()
        .map_err(|e| e.to_string())
}

impl Pipeline {
    /// `workers` should match the sessions per model the models were loaded with.
    pub fn new(models: FaceModels, policy: Policy, limits: Limits, workers: usize) -> Self {
        Pipeline {
            models,
            policy,
            limits,
            pad: false,
            permits: tokio::sync::Semaphore::new(workers.max(1)),
            workspaces: Mutex::new(Vec::new()),
            crew: crew(workers.max(1)),
            runs: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The same pipeline, scoring every face with passive PAD too (when its
    /// models are installed; [`Face::pad`] is `None` otherwise).
    pub fn with_pad(mut self, on: bool) -> Self {
        self.pad = on;
        self
    }

    /// Whether runs score faces with PAD (asked for, and the models are there).
    pub fn runs_pad(&self) -> bool {
        self.pad && self.models.pad_status().is_ready()
    }

    pub fn models(&self) -> &FaceModels {
        &self.models
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The long side a photo is decoded to first: the first detection pass's
    /// side with room to spare. A JPEG whose long side is 8 times this or
    /// more decodes at 1/8.
    pub fn first_decode_side(&self) -> u32 {
        let full = self.models.detector.spec.input_size;
        full[0].max(full[1]).min(detect::FIRST_PASS_SIDE) * 3 / 2
    }

    /// The recognizer's calibrated match threshold from the manifest.
    pub fn threshold(&self) -> Option<f32> {
        self.models.recognizer.spec.threshold
    }

    /// Embeds a photo on the crew, at most `workers` at a time. The
    /// photo buffer is consumed: it is wiped when the run ends.
    pub async fn embed(self: &Arc<Self>, photo: LockedBytes) -> Result<Face, Error> {
        self.pooled(move |me, ws| {
            let out = me.run(ws, &photo, None);
            drop(photo);
            out
        })
        .await
    }

    /// Embeds several photos (the frames of a liveness challenge) at once on
    /// the crew: with two workers, three frames take two runs' time, not
    /// three. Each frame is wiped when its run ends; results keep their order.
    pub async fn embed_all(self: &Arc<Self>, photos: Vec<LockedBytes>) -> Vec<Result<Face, Error>> {
        let runs = photos.into_iter().map(|photo| {
            self.pooled(move |me, ws| {
                let out = me.run(ws, &photo, None);
                drop(photo);
                out
            })
        });
        futures_util::future::join_all(runs).await
    }

    /// Runs `job` with a workspace on the crew, at most `workers` at a time;
    /// the workspace goes back to the pool (wiped by `job`).
    async fn pooled<F>(self: &Arc<Self>, job: F) -> Result<Face, Error>
    where
        F: FnOnce(&Pipeline, &mut Workspace) -> Result<Face, Error> + Send + 'static,
    {
        let asked = Instant::now();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Unavailable("pool closed".into()))?;
        let me = Arc::clone(self);
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.crew()?.spawn(move || {
            // The caller went while this waited for a thread (a client that
            // hung up, a sign-in refused by its lockout meanwhile): not run.
            if answer.is_closed() {
                return;
            }
            me.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let out = me.take_workspace().and_then(|mut ws| {
                let queue = asked.elapsed();
                let mut out = job(&me, &mut ws);
                me.give_back(ws);
                if let Ok(face) = &mut out {
                    face.timings.queue = queue;
                }
                out
            });
            // The caller may have gone (a client that hung up): the face is
            // dropped here, its embedding wiped.
            let _ = answer.send(out);
        });
        answered
            .await
            .map_err(|_| Error::Unavailable("a face worker failed".into()))?
    }

    /// How many runs (one photo or frame each) have begun on the face
    /// workers since start: set against the answers given, the face work
    /// spent on requests that were refused without it.
    pub fn runs_begun(&self) -> u64 {
        self.runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The face threads, or 503 if they could not be started.
    fn crew(&self) -> Result<&rayon::ThreadPool, Error> {
        self.crew
            .as_ref()
            .map_err(|e| Error::Unavailable(format!("no face workers: {e}")))
    }

    /// Embeds camera frames (a burst), one after the other on the pool, and
    /// keeps the best face: the highest detection score times sharpness among
    /// the frames that pass the quality gates. If none passes, the last
    /// frame's reason is the answer (e.g. "no face found"). Every frame is
    /// wiped as soon as it has been run.
    pub async fn best_of(self: &Arc<Self>, frames: Vec<Frame>) -> Result<Face, Error> {
        let mut best: Option<Face> = None;
        let mut last_err = Error::NoFace;
        for frame in frames {
            let out = self
                .pooled(move |me, ws| {
                    let out = me.run_frame(ws, &frame);
                    drop(frame);
                    out
                })
                .await;
            match out {
                Ok(face) => {
                    let better = best
                        .as_ref()
                        .is_none_or(|b| frame_rank(&face) > frame_rank(b));
                    if better {
                        best = Some(face);
                    }
                }
                Err(e) if e.is_photo_problem() => last_err = e,
                Err(e) => return Err(e),
            }
        }
        best.ok_or(last_err)
    }

    /// One synchronous run on a camera frame, wiped like [`Pipeline::run`].
    pub fn run_frame(&self, ws: &mut Workspace, frame: &Frame) -> Result<Face, Error> {
        self.run_wiped(ws, Input::Frame(frame), None)
    }

    /// One synchronous run in `ws`, which is wiped before returning (also on
    /// error). `timings`, if given, receives where the time went.
    pub fn run(
        &self,
        ws: &mut Workspace,
        bytes: &[u8],
        timings: Option<&mut Timings>,
    ) -> Result<Face, Error> {
        self.run_wiped(ws, Input::Encoded(bytes), timings)
    }

    /// [`Pipeline::run_inner`] on one of the crew's threads (this one, if it
    /// is one), so that PAD finds the crew's other threads to run beside;
    /// `ws` is wiped afterwards, also on error.
    fn run_wiped(
        &self,
        ws: &mut Workspace,
        input: Input<'_>,
        timings: Option<&mut Timings>,
    ) -> Result<Face, Error> {
        let out = self
            .crew()
            .and_then(|crew| crew.install(|| self.run_inner(ws, input, timings)));
        ws.wipe();
        out
    }

    fn run_inner(
        &self,
        ws: &mut Workspace,
        input: Input<'_>,
        timings: Option<&mut Timings>,
    ) -> Result<Face, Error> {
        let mut t = Timings::default();
        let start = Instant::now();
        let full = self.models.detector.spec.input_size;
        let full_side = full[0].max(full[1]);
        let first = full.map(|v| v.min(detect::FIRST_PASS_SIDE));

        // Decode no finer than the first detection pass can use (with room to
        // spare): a 12 MP JPEG decodes at 1/8, its second half on an idle
        // worker's thread when there is one (a permit free, as for PAD
        // below).
        let idle = match input {
            Input::Encoded(bytes) if bytes.len() >= SPLIT_MIN_BYTES => {
                self.permits.try_acquire().ok()
            }
            _ => None,
        };
        let img = to_rgb(
            input,
            &self.limits,
            self.first_decode_side(),
            idle.is_some(),
            ws,
        );
        drop(idle);
        let mut img = img?;
        t.decode = start.elapsed();
        t.decode_halves = img.halves;

        // Detection, in photo pixels. A first pass over the whole photo at
        // `first` decides which face (and whether there is one, or two); if
        // the photo was shrunk and that face is too small there to trust its
        // landmarks, a second look at it alone, sized to make it large enough
        // (from a finer decode if this one is too coarse). No face at all: the
        // whole photo again at the manifest's full size.
        let mark = Instant::now();
        let (faces, mut det_model, per_px) =
            self.detect(ws, img, detect::whole(img.width, img.height), first)?;
        // Photo pixels per detector pixel: more than per decoded pixel when
        // the first pass shrank the photo.
        let shrunk = per_px > img.scale as f32;
        let chosen = quality::select(&faces, img.photo_size(), &self.policy).copied();
        let mut redecode = Duration::ZERO;
        let wanted = detect::CLOSER_FACE;
        let face = match chosen {
            Ok(f)
                if !shrunk || f.width().min(f.height()) / per_px >= detect::FIRST_PASS_MIN_FACE =>
            {
                f
            }
            Ok(f) => {
                let px = f.width().min(f.height()) / img.scale as f32;
                if img.scale > 1 && px < wanted {
                    let long = img.width.max(img.height) as f32 * wanted / px;
                    img = self.decode_again(input, long.ceil() as u32, ws, &mut redecode)?;
                }
                let local = f.scaled(1.0 / img.scale as f32);
                let region = detect::closer(&local, img.width, img.height);
                let side = detect::CLOSER_SIDE;
                let (near, model, _) = self.detect(ws, img, region, [side, side])?;
                det_model += model;
                // The same face, seen closer; the first pass's verdict on the
                // photo (which face, one or several) stands, and its size is
                // checked again as measured closer.
                let closer = near
                    .into_iter()
                    .filter(|d| d.iou(&f) >= 0.3)
                    .max_by(|a, b| a.score.total_cmp(&b.score))
                    .unwrap_or(f);
                *quality::select(
                    std::slice::from_ref(&closer),
                    img.photo_size(),
                    &self.policy,
                )?
            }
            Err(_) if shrunk => {
                if img.scale > 1 && img.width.max(img.height) < full_side {
                    img = self.decode_again(input, full_side, ws, &mut redecode)?;
                }
                let (all, model, _) =
                    self.detect(ws, img, detect::whole(img.width, img.height), full)?;
                det_model += model;
                *quality::select(&all, img.photo_size(), &self.policy)?
            }
            Err(e) => return Err(e),
        };
        t.decode += redecode;
        t.detect = mark.elapsed().saturating_sub(redecode);
        t.detect_model = det_model;

        // The recognizer's crop must not be magnified out of a coarse decode
        // more than the calibration photos were (their eyes are ~24 px apart,
        // the template's 35): when it would be, decode finer.
        let template_eyes = {
            let tpl = crate::align::template_for(&self.models.recognizer.spec);
            (tpl[1][0] - tpl[0][0]).hypot(tpl[1][1] - tpl[0][1])
        };
        let eyes = {
            let [l, r] = [face.landmarks[0], face.landmarks[1]];
            (r[0] - l[0]).hypot(r[1] - l[1])
        };
        if img.scale > 1 && eyes / (img.scale as f32) < template_eyes / MAX_MAGNIFICATION {
            let (w, h) = img.photo_size();
            let want =
                (w.max(h) as f32 * template_eyes / MAX_MAGNIFICATION / eyes.max(1.0)).ceil() as u32;
            img = self.decode_again(input, want, ws, &mut t.decode)?;
        }
        let local = face.scaled(1.0 / img.scale as f32);

        let mark = Instant::now();
        let spec = &self.models.recognizer.spec;
        crate::align::warp(
            spec,
            img.pixels(&ws.rgb),
            &local.landmarks,
            &mut ws.small,
            &mut ws.rec_input,
            &mut ws.grey,
        )?;
        let (yaw, pitch) = quality::pose(&face.landmarks);
        let [w, h] = spec.input_size.map(|v| v as usize);
        let (sharpness, brightness) = quality::image_stats(&ws.grey, w, h);
        ws.grey.clear();
        let measures = Measures {
            score: face.score,
            face_px: face.width().min(face.height()),
            yaw,
            pitch,
            sharpness,
            brightness,
        };
        quality::assess(&measures, &self.policy)?;
        t.align = mark.elapsed();

        // PAD reads its own crops of the photo, the recognizer the aligned
        // face. With a worker idle (a permit free: fewer runs than workers),
        // PAD is offered to the crew while this thread embeds and the idle
        // thread takes it, so a lone request waits for the slower of the two,
        // not for both. The permit it holds keeps a new run from being queued
        // meanwhile, which this thread, waiting for PAD, would pick up and
        // make this request wait for. Under load no permit is free and PAD
        // runs after the recognizer.
        let pixels = img.pixels(&ws.rgb);
        let pad_input = &mut ws.pad_input;
        let rec_input = &ws.rec_input;
        let idle = if self.runs_pad() {
            self.permits.try_acquire().ok()
        } else {
            None
        };
        let (embedded, (pad, beside)) = match idle {
            Some(idle) => rayon::join_context(
                |_| self.embed_timed(rec_input),
                |ctx| {
                    let _idle = idle;
                    (self.pad_timed(pixels, &local, pad_input), ctx.migrated())
                },
            ),
            None => {
                let pad = if self.pad {
                    self.pad_timed(pixels, &local, pad_input)
                } else {
                    Ok((None, Duration::ZERO))
                };
                (self.embed_timed(rec_input), (pad, false))
            }
        };
        t.pad_beside = beside;
        ws.rgb.clear();
        ws.rec_input.clear();
        let (pad, pad_took) = pad?;
        let (embedding, rec_model, embed_took) = embedded?;
        t.pad = pad_took;
        t.embed = embed_took;
        t.embed_model = rec_model;
        t.total = start.elapsed();
        if let Some(out) = timings {
            *out = t;
        }
        Ok(Face {
            embedding,
            detection: face,
            measures,
            pad,
            timings: t,
        })
    }

    /// Passive PAD's score of `face` and the time it took.
    fn pad_timed(
        &self,
        pixels: crate::photo::Rgb<'_>,
        face: &Detection,
        input: &mut arclock_secmem::LockedVec<f32>,
    ) -> Result<(Option<f32>, Duration), Error> {
        let mark = Instant::now();
        let score = self.models.pad_score(pixels, face, input)?;
        Ok((score, mark.elapsed()))
    }

    /// The recognizer on an aligned face: the embedding, the time inside
    /// ONNX Runtime and the whole step's.
    fn embed_timed(&self, input: &[f32]) -> Result<(Embedding, Duration, Duration), Error> {
        let mark = Instant::now();
        let (embedding, model) = self.models.embed(input)?;
        Ok((embedding, model, mark.elapsed()))
    }

    /// Runs the detector on `region` of the decoded photo in `ws.rgb`,
    /// shrunk to fit `bound`: the faces in photo pixels, the time inside
    /// ONNX Runtime, and how many photo pixels each detector pixel covered.
    fn detect(
        &self,
        ws: &mut Workspace,
        img: Decoded,
        region: detect::Region,
        bound: [u32; 2],
    ) -> Result<(Vec<Detection>, Duration, f32), Error> {
        let spec = &self.models.detector.spec;
        let mut at = detect::prepare(spec, img.pixels(&ws.rgb), region, bound, &mut ws.det_input)?;
        let k = img.scale as f32;
        at.inv_scale *= k;
        at.origin = at.origin.map(|v| v * k);
        let out = self.models.detect(&ws.det_input, at);
        ws.det_input.clear();
        let (faces, took) = out?;
        Ok((faces, took, at.inv_scale))
    }

    /// `input` decoded again into `ws`, finer (long side at least
    /// `long_side`); the time it took is added to `spent`.
    fn decode_again(
        &self,
        input: Input<'_>,
        long_side: u32,
        ws: &mut Workspace,
        spent: &mut Duration,
    ) -> Result<Decoded, Error> {
        let again = Instant::now();
        let img = to_rgb(input, &self.limits, long_side, false, ws);
        *spent += again.elapsed();
        img
    }

    fn take_workspace(&self) -> Result<Workspace, Error> {
        let reused = self
            .workspaces
            .lock()
            .map_err(|_| Error::Unavailable("workspace pool poisoned".into()))?
            .pop();
        match reused {
            Some(ws) => Ok(ws),
            None => Workspace::new(),
        }
    }

    fn give_back(&self, ws: Workspace) {
        if let Ok(mut pool) = self.workspaces.lock() {
            pool.push(ws);
        }
    }

    /// Whether every pooled workspace is wiped (for tests).
    pub fn workspaces_wiped(&self) -> bool {
        self.workspaces
            .lock()
            .map(|p| p.iter().all(Workspace::is_wiped))
            .unwrap_or(false)
    }
}
