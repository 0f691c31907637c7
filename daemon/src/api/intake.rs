//! Getting a request's contents in safely: the body into locked memory under
//! a size cap and a deadline, strict JSON (unknown fields refused, values
//! never echoed), and the photo of a face request, as base64 JSON or as a
//! multipart upload, decoded straight into a locked buffer that the face
//! pipeline consumes and wipes.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arclock_secmem::LockedBytes;
use base64::Engine;
use http::{Request, header};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::App;
use crate::http::forwarded::ClientAddr;
use crate::http::{ApiError, Code};

/// Any request body intake reads: hyper's `Incoming` in the daemon, an
/// in-memory body in the fuzz targets.
pub trait RequestBody:
    hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
    + Send
    + Unpin
    + 'static
{
}

impl<B> RequestBody for B where
    B: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + Unpin
        + 'static
{
}

/// How much body a request may send, and how slowly, and the budget of
/// locked memory all arriving bodies share.
#[derive(Debug, Clone)]
pub struct BodyLimits {
    pub bytes: usize,
    pub timeout: Duration,
    pub budget: Option<Arc<BodyBudget>>,
}

impl BodyLimits {
    /// The limits of `[server]` in the running config.
    pub fn of(app: &App) -> Self {
        BodyLimits {
            bytes: app.config.server.body_limit_bytes,
            timeout: Duration::from_secs(app.config.server.body_timeout_secs),
            budget: Some(Arc::clone(&app.bodies)),
        }
    }
}

/// Locked memory that request bodies may hold while they arrive, and face
/// requests' decoded photos until the face work is done with them: at most
/// `[server] body_budget_bytes` in all, and half of that per client address
/// (IPv6: per /64). Buffers grow as bytes arrive (never sized from a
/// `Content-Length` a client merely declares), and a request that would
/// exceed either bound gets 503 at once: neither slow uploads nor fast ones
/// queued behind the face workers can pin the memlock limit or starve every
/// other client. (The face workspaces' locked memory is reserved apart, by
/// the memlock check at start: `hardening`.)
#[derive(Debug)]
pub struct BodyBudget {
    per_address: usize,
    state: std::sync::Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    free: usize,
    by_address: std::collections::HashMap<IpAddr, usize>,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        BodyBudget {
            per_address: bytes / 2,
            state: std::sync::Mutex::new(BudgetState {
                free: bytes,
                by_address: Default::default(),
            }),
        }
    }
}

/// One request's share of the budget: the body while it arrives, then (for
/// a face request) the decoded photos until the face work is done with them.
struct Held {
    budget: Option<Arc<BodyBudget>>,
    address: Option<IpAddr>,
    bytes: usize,
}

/// The budget is spent: the answer, at once (never a wait that a slow
/// client could prolong).
struct Busy;

impl Held {
    fn new(limits: &BodyLimits, address: Option<IpAddr>) -> Self {
        Held {
            budget: limits.budget.clone(),
            address: address.map(crate::http::forwarded::grouped),
            bytes: 0,
        }
    }

    /// Takes `extra` more bytes from the budget.
    fn take(&mut self, extra: usize) -> Result<(), Busy> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let mut s = budget.state.lock().map_err(|_| Busy)?;
        let mine = self
            .address
            .map_or(0, |a| s.by_address.get(&a).copied().unwrap_or(0));
        if s.free < extra || mine + extra > budget.per_address {
            return Err(Busy);
        }
        s.free -= extra;
        if let Some(a) = self.address {
            *s.by_address.entry(a).or_insert(0) += extra;
        }
        self.bytes += extra;
        Ok(())
    }

    /// Keeps `bytes` of the share (never more than held) and gives the rest
    /// back: the body's charge becomes its decoded photos' (which base64
    /// makes smaller, so this never needs more budget).
    fn keep(&mut self, bytes: usize) {
        self.give(self.bytes.saturating_sub(bytes));
    }

    /// Gives `bytes` back.
    fn give(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        let (Some(budget), true) = (&self.budget, bytes > 0) else {
            return;
        };
        if let Ok(mut s) = budget.state.lock() {
            s.free += bytes;
            if let Some(a) = self.address
                && let Some(n) = s.by_address.get_mut(&a)
            {
                *n -= bytes.min(*n);
                if *n == 0 {
                    s.by_address.remove(&a);
                }
            }
            self.bytes -= bytes;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.give(self.bytes);
    }
}

fn busy() -> ApiError {
    ApiError::new(
        Code::Unavailable,
        "The service is busy receiving other uploads; try again shortly",
        "upload capacity is in use",
    )
    .retry_after(2)
}

/// The client address a request's budget is counted under.
fn address_of<B>(req: &Request<B>) -> Option<IpAddr> {
    req.extensions()
        .get::<ClientAddr>()
        .map(|a| a.0)
        .or_else(|| req.extensions().get::<SocketAddr>().map(|a| a.ip()))
}

/// The first locked part of a body buffer; more is locked ([`GROWTH`] at a
/// time) as bytes arrive.
const FIRST_BUFFER: usize = 64 * 1024;

/// Why a body buffer could not take more bytes.
enum Grow {
    Busy,
    Memory,
}

/// What the logs record about the caller.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    pub fn from<B>(req: &Request<B>) -> Self {
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(256).collect::<String>())
        };
        ClientInfo {
            ip: address_of(req).map(|ip| ip.to_string()),
            user_agent: header("x-device-info").or_else(|| header("user-agent")),
        }
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        Code::PayloadTooLarge,
        "Request body too large",
        format!("the limit is {limit} bytes"),
    )
}

fn too_slow() -> ApiError {
    ApiError::new(
        Code::RequestTimeout,
        "The request body took too long to arrive",
        "body read timed out",
    )
}

/// Wipes hyper's copy of a chunk when we hold the only reference (best effort:
/// hyper may have handed out the bytes from a shared buffer).
fn wipe(data: Bytes) {
    if let Ok(mut owned) = data.try_into_mut() {
        zeroize::Zeroize::zeroize(owned.as_mut());
    }
}

/// A buffer for up to `room` bytes that arrive a piece at a time: address
/// space only, its first [`FIRST_BUFFER`] bytes (never more than `room`)
/// locked (mlock; the whole of it MADV_DONTDUMP) and charged to `held`
/// first, the locking timed as [`Step::Lock`](crate::timing::Step::Lock).
/// [`grow_into`] locks more of it in place as bytes come.
fn arriving(room: usize, held: &mut Held) -> Result<LockedBytes, ApiError> {
    let first = FIRST_BUFFER.min(room).max(1);
    held.take(first).map_err(|_| busy())?;
    crate::timing::measured(crate::timing::Step::Lock, || {
        let mut buf = LockedBytes::reserved(room)?;
        buf.grow_to(first)?;
        Ok::<_, arclock_secmem::Error>(buf)
    })
    .map_err(ApiError::from)
}

/// A locked buffer of `n` zeroed bytes, its allocation timed as
/// [`Step::Lock`](crate::timing::Step::Lock).
fn locked_zeroed(n: usize) -> Result<LockedBytes, arclock_secmem::Error> {
    crate::timing::measured(crate::timing::Step::Lock, || LockedBytes::zeroed(n))
}

/// Reads the body into locked memory, refusing more than the configured cap
/// or a body slower than the configured deadline.
pub async fn read_body(
    app: &App,
    req: Request<Incoming>,
) -> Result<(LockedBytes, ClientInfo), ApiError> {
    crate::timing::timed(
        crate::timing::Step::Intake,
        read_body_within(BodyLimits::of(app), req),
    )
    .await
}

/// [`read_body`] under explicit limits.
pub async fn read_body_within(
    limits: BodyLimits,
    req: Request<impl RequestBody>,
) -> Result<(LockedBytes, ClientInfo), ApiError> {
    let (body, _held, info) = read_body_held(limits, req).await?;
    Ok((body, info))
}

/// [`read_body_within`], also returning the body's share of the budget.
async fn read_body_held(
    limits: BodyLimits,
    req: Request<impl RequestBody>,
) -> Result<(LockedBytes, Held, ClientInfo), ApiError> {
    let limit = limits.bytes;
    let info = ClientInfo::from(&req);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    // Locked as it arrives, not as the client declares. The declared length
    // bounds only the address space reserved (HTTP holds the body to it), so
    // that a flood of small requests does not each reserve the whole limit.
    let room = declared.map_or(limit, |n| n.min(limit));
    let mut held = Held::new(&limits, address_of(&req));
    let mut buf = arriving(room, &mut held)?;
    let mut body = req.into_body();
    let deadline = limits.timeout;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
            if let Ok(data) = frame.into_data() {
                let fits = buf.len() + data.len() <= room;
                let stored = if fits {
                    grow_into(&mut buf, &data, &mut held, room)
                } else {
                    Ok(())
                };
                wipe(data);
                if !fits && room < limit {
                    return Err(ApiError::bad_request(
                        "the request body is longer than its Content-Length",
                    ));
                }
                if !fits {
                    return Err(too_large(limit));
                }
                match stored {
                    Ok(()) => {}
                    Err(Grow::Busy) => return Err(busy()),
                    Err(Grow::Memory) => {
                        return Err(ApiError::unavailable(
                            "locked memory",
                            &"cannot grow the body buffer",
                        ));
                    }
                }
            }
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(r) => r?,
        Err(_) => return Err(too_slow()),
    }
    Ok((buf, held, info))
}

/// How much more of an [`arriving`] buffer is locked at a time once its
/// first part is full: a few `mlock` calls for a phone photo, and never more
/// than this locked ahead of the bytes that came.
const GROWTH: usize = 256 * 1024;

/// Appends, first locking more of the buffer's reservation (in place, in
/// [`GROWTH`] steps, up to `limit`) when it is full; the growth is taken
/// from the budget first.
fn grow_into(
    buf: &mut LockedBytes,
    data: &[u8],
    held: &mut Held,
    limit: usize,
) -> Result<(), Grow> {
    let needed = buf.len() + data.len();
    if needed > buf.capacity() {
        let want = needed.next_multiple_of(GROWTH).min(limit).max(needed);
        held.take(want.saturating_sub(buf.capacity()))
            .map_err(|_| Grow::Busy)?;
        crate::timing::measured(crate::timing::Step::Lock, || buf.grow_to(want))
            .map_err(|_| Grow::Memory)?;
    }
    buf.extend_from_slice(data).map_err(|_| Grow::Memory)
}

/// Strict JSON: serde's message names the field, never echoes the value.
pub fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let field = msg.split(" at line").next().unwrap_or("invalid JSON");
        ApiError::bad_request(format!("Invalid request body: {field}"))
    })
}

/// Base64 (optionally a `data:image/...;base64,` URL) into locked memory.
/// A photo given as a raw JSON string value: unescaped (only what base64
/// text can need: `\/` and `\u00XX` for ASCII) into locked memory, then
/// decoded. Without escapes the text is decoded straight from the body.
fn decode_raw_photo(raw: &RawValue) -> Result<LockedBytes, ApiError> {
    let not_base64 = || ApiError::bad_request("imageBase64 is not valid base64");
    let text = raw
        .get()
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(|| ApiError::bad_request("imageBase64 must be a string"))?;
    // A data: URL's media type is not decoded (escapes there do not matter).
    let text = match text.trim_start().strip_prefix("data:") {
        Some(rest) => rest.split_once(";base64,").map_or("", |(_, d)| d),
        None => text,
    };
    if !text.contains('\\') {
        return decode_photo(text);
    }
    let mut plain = locked_zeroed(text.len()).map_err(ApiError::from)?;
    let (bytes, mut n, mut i) = (text.as_bytes(), 0, 0);
    while i < bytes.len() {
        let c = match bytes[i] {
            b'\\' => match bytes.get(i + 1) {
                Some(b'/') => {
                    i += 2;
                    b'/'
                }
                Some(b'u') => {
                    let hex = text.get(i + 2..i + 6).ok_or_else(not_base64)?;
                    let code =
                        u8::from_str_radix(hex.strip_prefix("00").ok_or_else(not_base64)?, 16)
                            .map_err(|_| not_base64())?;
                    i += 6;
                    code
                }
                _ => return Err(not_base64()),
            },
            c => {
                i += 1;
                c
            }
        };
        plain[n] = c;
        n += 1;
    }
    plain.truncate(n);
    let text = std::str::from_utf8(&plain).map_err(|_| not_base64())?;
    decode_photo(text)
}

pub fn decode_photo(b64: &str) -> Result<LockedBytes, ApiError> {
    let b64 = b64.trim();
    let b64 = match b64.strip_prefix("data:") {
        Some(rest) => rest.split_once(";base64,").map(|(_, d)| d).unwrap_or(""),
        None => b64,
    };
    if b64.is_empty() {
        return Err(ApiError::bad_request("imageBase64 is required"));
    }
    let mut out = locked_zeroed(b64.len() / 4 * 3 + 3).map_err(ApiError::from)?;
    // As lenient as the origin's Node `Buffer.from(s, "base64")`: non-zero
    // trailing bits and missing padding are accepted (what a client's encoder
    // meant is unambiguous).
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let n = engine
        .decode_slice(b64.as_bytes(), &mut out)
        .map_err(|_| ApiError::bad_request("imageBase64 is not valid base64"))?;
    out.truncate(n);
    Ok(out)
}

/// A face request's share of the body budget, held by its [`PhotoForm`]
/// until the handler returns: decoded photos wait in locked memory for a
/// face worker, and without this a flood of uploads queued behind the
/// workers would hold locked memory no budget bounds (issue 17: forty 14 MiB
/// uploads must not make every other request fail).
pub struct Upload {
    /// Given back on drop.
    _share: Held,
}

/// What a face request offers as its face: one photo (the mobile app's
/// flow), or the frames answering a liveness challenge, one per step.
pub enum Proof {
    Photo(LockedBytes),
    Challenge {
        id: String,
        frames: Vec<LockedBytes>,
    },
}

/// A face request: who (name only at registration), and the face.
pub struct PhotoForm {
    pub name: Option<String>,
    pub email: String,
    pub proof: Proof,
    /// An enrolment invitation (`[registration] mode = "invite"`).
    pub invite_code: Option<String>,
    /// The photos' share of the body budget; dropped with the form (keep
    /// the form, or this field, alive until the face work is done).
    pub upload: Upload,
}

/// Which fields a face request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormKind {
    /// name, email, photo or challenge answer.
    Register,
    /// email, photo or challenge answer.
    Login,
}

/// Most frames one answer may carry (the longest challenge).
pub const MAX_FRAMES: usize = arclock_face::liveness::MAX_STEPS;

/// Longest challenge id accepted (ours are 22 characters).
const MAX_CHALLENGE_ID: usize = 64;

/// The JSON shape of every face request; `FormKind` decides whether `name`
/// is required or refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhotoBody<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    email: Cow<'a, str>,
    /// Raw JSON (borrowed from the locked body, escapes and all): a string
    /// with escapes would make serde unescape it into an unlocked buffer.
    #[serde(borrow, default, rename = "imageBase64")]
    image_base64: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "challengeId")]
    challenge_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    frames: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default, rename = "inviteCode")]
    invite_code: Option<Cow<'a, str>>,
    /// Accepted for the mobile app's sake; not stored (the header is logged).
    #[serde(default, rename = "device")]
    _device: Option<serde::de::IgnoredAny>,
}

fn too_many_frames() -> ApiError {
    ApiError::bad_request(format!(
        "at most {MAX_FRAMES} frames, one per challenge step"
    ))
}

/// Exactly one face: a photo, or a challenge id with frames (both readers
/// refuse more than `MAX_FRAMES` before decoding them).
fn proof(
    photo: Option<LockedBytes>,
    challenge_id: Option<String>,
    frames: Vec<LockedBytes>,
) -> Result<Proof, ApiError> {
    match (photo, challenge_id, frames.is_empty()) {
        (Some(p), None, true) => Ok(Proof::Photo(p)),
        (None, Some(id), false) => {
            if id.is_empty() || id.len() > MAX_CHALLENGE_ID {
                return Err(ApiError::bad_request("challengeId is not a challenge id"));
            }
            if frames.iter().any(|f| f.is_empty()) {
                return Err(ApiError::bad_request("a frame is empty"));
            }
            Ok(Proof::Challenge { id, frames })
        }
        (None, Some(_), true) => Err(ApiError::bad_request(
            "frames are required with challengeId",
        )),
        (None, None, false) => Err(ApiError::bad_request("challengeId is required with frames")),
        (None, None, true) => Err(ApiError::bad_request(
            "imageBase64 (one photo) or challengeId with frames is required",
        )),
        (Some(_), _, _) => Err(ApiError::bad_request(
            "send one photo (imageBase64) or a challenge answer (challengeId, frames), not both",
        )),
    }
}

/// Reads a face request, as JSON (`imageBase64`, or `challengeId` and
/// `frames`) or as `multipart/form-data` (an `image` file part or an
/// `imageBase64` text part; or a `challengeId` part and repeated `frames`
/// file parts).
pub async fn photo_form(
    app: &App,
    req: Request<Incoming>,
    kind: FormKind,
) -> Result<(PhotoForm, ClientInfo), ApiError> {
    crate::timing::timed(
        crate::timing::Step::Intake,
        photo_form_within(BodyLimits::of(app), req, kind),
    )
    .await
}

/// [`photo_form`] under explicit limits.
pub async fn photo_form_within(
    limits: BodyLimits,
    req: Request<impl RequestBody>,
    kind: FormKind,
) -> Result<(PhotoForm, ClientInfo), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (form, client) = if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        multipart(limits, req, &content_type).await?
    } else {
        let (body, mut held, client) = read_body_held(limits, req).await?;
        let b: PhotoBody<'_> = parse(&body)?;
        // Counted before any frame is decoded.
        if b.frames.as_ref().is_some_and(|f| f.len() > MAX_FRAMES) {
            return Err(too_many_frames());
        }
        let photo = b.image_base64.map(decode_raw_photo).transpose()?;
        let frames = b
            .frames
            .iter()
            .flatten()
            .map(|f| decode_raw_photo(f))
            .collect::<Result<Vec<_>, _>>()?;
        // From here the request holds its photos' bytes, not its body's.
        held.keep(photo.iter().chain(&frames).map(LockedBytes::capacity).sum());
        let form = PhotoForm {
            name: b.name.map(Cow::into_owned),
            email: b.email.into_owned(),
            proof: proof(photo, b.challenge_id.map(Cow::into_owned), frames)?,
            invite_code: b.invite_code.map(Cow::into_owned),
            upload: Upload { _share: held },
        };
        (form, client)
    };
    match (kind, &form.name, &form.invite_code) {
        (FormKind::Register, None, _) => Err(ApiError::bad_request(
            "Invalid request body: name is required",
        )),
        (FormKind::Login, Some(_), _) => Err(ApiError::bad_request(
            "Invalid request body: unknown field `name`, expected `email`, `imageBase64`, `challengeId`, `frames` or `device`",
        )),
        (FormKind::Login, _, Some(_)) => Err(ApiError::bad_request(
            "Invalid request body: unknown field `inviteCode`, expected `email`, `imageBase64`, `challengeId`, `frames` or `device`",
        )),
        _ => Ok((form, client)),
    }
}

/// Largest text part of a multipart form (name, e-mail, device).
const TEXT_PART_LIMIT: usize = 4096;

async fn multipart(
    limits: BodyLimits,
    req: Request<impl RequestBody>,
    content_type: &str,
) -> Result<(PhotoForm, ClientInfo), ApiError> {
    let limit = limits.bytes;
    let client = ClientInfo::from(&req);
    let mut held = Held::new(&limits, address_of(&req));
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| ApiError::bad_request("multipart/form-data without a valid boundary"))?;
    let constraints = multer::Constraints::new()
        .allowed_fields(vec![
            "name",
            "email",
            "image",
            "imageBase64",
            "device",
            "challengeId",
            "frames",
            "inviteCode",
        ])
        .size_limit(multer::SizeLimit::new().whole_stream(limit as u64));
    let stream = req.into_body().into_data_stream();
    let mut parts = multer::Multipart::with_constraints(stream, boundary, constraints);
    let (mut name, mut email, mut photo) = (None, None, None::<LockedBytes>);
    let (mut challenge_id, mut frames, mut invite_code) = (None, Vec::new(), None);
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let refuse = |e: multer::Error| match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            too_large(limit)
        }
        multer::Error::UnknownField { field_name } => ApiError::bad_request(format!(
            "Invalid request body: unknown field `{}`",
            field_name
                .unwrap_or_default()
                .chars()
                .take(64)
                .collect::<String>()
        )),
        _ => ApiError::bad_request("Invalid multipart body"),
    };
    loop {
        let next = tokio::time::timeout_at(deadline, parts.next_field())
            .await
            .map_err(|_| too_slow())?
            .map_err(refuse)?;
        let Some(mut field) = next else { break };
        let field_name = field.name().unwrap_or_default().to_string();
        let mut value = arriving(limit, &mut held)?;
        loop {
            let chunk = tokio::time::timeout_at(deadline, field.chunk())
                .await
                .map_err(|_| too_slow())?
                .map_err(refuse)?;
            let Some(chunk) = chunk else { break };
            let text_too_long = !matches!(field_name.as_str(), "image" | "imageBase64" | "frames")
                && value.len() + chunk.len() > TEXT_PART_LIMIT;
            let stored = if text_too_long {
                Ok(())
            } else {
                grow_into(&mut value, &chunk, &mut held, limit)
            };
            wipe(chunk);
            if text_too_long {
                return Err(ApiError::bad_request(format!("{field_name} is too long")));
            }
            match stored {
                Ok(()) => {}
                Err(Grow::Busy) => return Err(busy()),
                Err(Grow::Memory) => {
                    return Err(ApiError::unavailable(
                        "locked memory",
                        &"cannot grow the part buffer",
                    ));
                }
            }
        }
        let text = || {
            std::str::from_utf8(&value)
                .map(str::to_string)
                .map_err(|_| ApiError::bad_request(format!("{field_name} is not UTF-8 text")))
        };
        let duplicate = || ApiError::bad_request(format!("{field_name} appears more than once"));
        match field_name.as_str() {
            "name" if name.is_none() => name = Some(text()?),
            "challengeId" if challenge_id.is_none() => challenge_id = Some(text()?),
            "inviteCode" if invite_code.is_none() => invite_code = Some(text()?),
            "frames" if frames.len() < MAX_FRAMES => frames.push(value),
            "frames" => return Err(too_many_frames()),
            "email" if email.is_none() => email = Some(text()?),
            "device" => {}
            "image" if photo.is_none() => photo = Some(value),
            "imageBase64" if photo.is_none() => {
                let b64 = std::str::from_utf8(&value)
                    .map_err(|_| ApiError::bad_request("imageBase64 is not valid base64"))?;
                photo = Some(decode_photo(b64)?);
            }
            "image" | "imageBase64" => {
                return Err(ApiError::bad_request(
                    "send the photo once: an image file part or imageBase64, not both",
                ));
            }
            _ => return Err(duplicate()),
        }
    }
    let email =
        email.ok_or_else(|| ApiError::bad_request("Invalid request body: email is required"))?;
    if photo.as_ref().is_some_and(|p| p.is_empty()) {
        return Err(ApiError::bad_request("the image part is empty"));
    }
    let proof = proof(photo, challenge_id, frames)?;
    // The parts' buffers were charged as they arrived; the request keeps
    // what its photos hold (the text parts are gone).
    let photos = match &proof {
        Proof::Photo(p) => p.capacity(),
        Proof::Challenge { frames, .. } => frames.iter().map(LockedBytes::capacity).sum(),
    };
    held.keep(photos);
    Ok((
        PhotoForm {
            name,
            email,
            proof,
            invite_code,
            upload: Upload { _share: held },
        },
        client,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_string()).unwrap()
    }

    #[test]
    fn escaped_base64_decodes_like_the_plain_text() {
        // "/+8=" style text with every slash escaped, as PHP's json_encode
        // and some Java encoders write it.
        let bytes: Vec<u8> = (0u8..=255).collect();
        let plain = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert!(plain.contains('/'));
        let escaped = plain.replace('/', "\\/").replacen('A', "\\u0041", 1);
        let want = decode_photo(&plain).ok().unwrap();
        let data_url = format!("data:image/\\u00e9;base64,{escaped}");
        for text in [plain.clone(), escaped, data_url] {
            let got = decode_raw_photo(&raw(&format!("\"{text}\""))).ok().unwrap();
            assert_eq!(&got[..], &want[..]);
            assert_eq!(&got[..], &bytes[..]);
        }
    }

    /// A body in `pieces` frames, declaring `declared` as its length.
    fn request(pieces: usize, piece: &[u8], declared: Option<usize>) -> Request<impl RequestBody> {
        let piece = Bytes::copy_from_slice(piece);
        let frames = (0..pieces).map(move |_| {
            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(piece.clone()))
        });
        let mut req = Request::builder().method("POST");
        if let Some(n) = declared {
            req = req.header(header::CONTENT_LENGTH, n);
        }
        req.body(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
        .unwrap()
    }

    fn limits(bytes: usize, budget: usize) -> BodyLimits {
        BodyLimits {
            bytes,
            timeout: Duration::from_secs(5),
            budget: Some(Arc::new(BodyBudget::new(budget))),
        }
    }

    /// A body of many frames is locked as it arrives, in place: its buffer
    /// holds what came rounded up to one growth step, never the limit.
    #[tokio::test]
    async fn a_body_grows_in_place_as_it_arrives() {
        let piece = [b'A'; 16 * 1024];
        let (limit, pieces) = (14 * 1024 * 1024, 75); // 1.2 MB, like a phone photo
        let lim = limits(limit, 4 * limit);
        let budget = Arc::clone(lim.budget.as_ref().unwrap());
        for declared in [None, Some(pieces * piece.len())] {
            let (body, held, _) = read_body_held(lim.clone(), request(pieces, &piece, declared))
                .await
                .ok()
                .unwrap();
            assert_eq!(body.len(), pieces * piece.len());
            assert!(body.iter().all(|b| *b == b'A'));
            let room = declared.unwrap_or(limit);
            assert_eq!(
                body.capacity(),
                body.len().next_multiple_of(GROWTH).min(room)
            );
            assert_eq!(held.bytes, body.capacity(), "charged what is locked");
            let (start, end) = body.mapping();
            assert_eq!(end - start, room, "address space only");
        }
        assert_eq!(
            budget.state.lock().unwrap().free,
            4 * limit,
            "all given back"
        );
    }

    /// More than the declared length (which HTTP itself refuses first) or
    /// than the limit is refused, and gives its budget back.
    #[tokio::test]
    async fn a_body_past_its_declared_length_or_the_limit_is_refused() {
        let piece = [b'A'; 1000];
        let lim = limits(10_000, 100_000);
        let budget = Arc::clone(lim.budget.as_ref().unwrap());
        for (declared, status) in [
            (Some(5_000), http::StatusCode::BAD_REQUEST),
            (None, http::StatusCode::PAYLOAD_TOO_LARGE),
            (Some(20_000), http::StatusCode::PAYLOAD_TOO_LARGE),
        ] {
            let r = read_body_held(lim.clone(), request(11, &piece, declared)).await;
            assert_eq!(r.err().map(|e| e.status()), Some(status), "{declared:?}");
        }
        assert_eq!(budget.state.lock().unwrap().free, 100_000);
    }

    /// A multipart form under a limit smaller than the first buffer (the
    /// config allows 1 KiB) is read, not refused for want of room.
    #[tokio::test]
    async fn a_form_under_a_small_limit_is_read() {
        let form = "--b\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@example.org\r\n\
                    --b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"f.jpg\"\r\n\
                    Content-Type: image/jpeg\r\n\r\nnot really a jpeg\r\n--b--\r\n";
        let req = Request::builder()
            .method("POST")
            .header(header::CONTENT_TYPE, "multipart/form-data; boundary=b")
            .body(http_body_util::Full::new(Bytes::from(form)))
            .unwrap();
        let (form, _) = photo_form_within(limits(2048, 8192), req, FormKind::Login)
            .await
            .ok()
            .unwrap();
        assert_eq!(form.email, "a@example.org");
        assert!(matches!(&form.proof, Proof::Photo(p) if &p[..] == b"not really a jpeg"));
    }

    #[test]
    fn other_escapes_and_non_strings_are_refused() {
        for bad in [
            r#""QUJD\nRA==""#,
            r#""QUJD\u00e9""#,
            r#""QU\\""#,
            "42",
            r#"["QUJD"]"#,
        ] {
            let r = decode_raw_photo(&raw(bad));
            assert_eq!(
                r.err().map(|r| r.status()),
                Some(http::StatusCode::BAD_REQUEST),
                "{bad}"
            );
        }
    }
}
