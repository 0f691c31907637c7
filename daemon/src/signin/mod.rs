//! The sign-in service: everything between "these bytes claim to be this
//! person's face" and "yes" or "no", shared by the mobile API (`api::auth`)
//! and the kiosk camera (`admin::camera`), which only parse and render.
//!
//! - an attempt reserved against the e-mail's and the address's budgets
//!   before any comparison ([`reserve`]; its commit beside the face work
//!   unless [`LocksSeen`] has seen one of them locked), so lockouts hold
//!   under concurrency;
//! - liveness: passive PAD on every face, and active challenges
//!   ([`challenge`]: drawn, stored, answered once), judged by
//!   `arclock_face::liveness`;
//! - the template, or a decoy at the same cost for an unknown account, read
//!   and opened beside the face work ([`reference()`]);
//! - comparison with it ([`compare`]), and the failure accounting: an attack
//!   verdict costs the same work, counts and reads the same as a wrong face;
//! - enrolment ([`enrol`]).
//!
//! Every refusal is a [`Refused`], which becomes an [`ApiError`] in one
//! place.

pub mod challenge;
pub mod invite;

use arclock_face::Embedding;
use arclock_face::liveness::PoseHint;
use tokio::sync::OnceCell;

use crate::App;
use crate::api::intake::{ClientInfo, Proof};
use crate::api::journal::{self, Event};
use crate::config::{LivenessMode, PadUnavailable};
use crate::http::{ApiError, Code};
use crate::identity::{Email, Name, UserId};
use crate::metrics::{LockKind, Verdict};
use crate::store::{
    Action, Credentials, EmailKey, FailureOutcome, LockPolicy, Millis, NewUser, Outcome,
    Reservation, Subject, User, UserStatus, similarity_bucket,
};
use crate::template;

/// Why a sign-in or enrolment did not succeed, as the client may learn it.
#[derive(Debug)]
pub enum Refused {
    /// 429: the e-mail or the address is locked out.
    Locked { until: Millis, at: Millis },
    /// 401: wrong face, unknown account, or an attack verdict (one answer).
    NoMatch,
    /// 422: the photo (or frame `frame`) cannot be used; the client can fix it.
    Face {
        error: arclock_face::Error,
        frame: Option<usize>,
    },
    /// 422: a frame does not show its step; the hint is for the user.
    Pose { frame: usize, hint: PoseHint },
    /// 422: registration refused by liveness (there is no account to lock).
    NotLive,
    /// 422: the challenge is unknown, used, expired, foreign, or the number
    /// of frames does not match its steps (well-formed, but not answerable:
    /// the client asks for a new one).
    Challenge(&'static str),
    /// 422: this flow requires a challenge answer, not a single photo.
    ChallengeRequired,
    /// 409: the e-mail (or a look-alike of it) already has an account.
    EmailTaken,
    /// 403: `[registration] mode = "closed"`: operators enrol.
    RegistrationClosed,
    /// 403: invite mode, and the code is missing, unknown, used, expired or
    /// for another address (one answer).
    InviteInvalid,
    /// 503: a dependency is down; never an accept.
    Unavailable { what: &'static str, cause: String },
}

impl Refused {
    fn unavailable(what: &'static str, cause: &dyn std::fmt::Display) -> Self {
        Refused::Unavailable {
            what,
            cause: cause.to_string(),
        }
    }
}

impl From<crate::store::StoreError> for Refused {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::EmailTaken => Refused::EmailTaken,
            e => Refused::unavailable("the store", &e),
        }
    }
}

impl From<crate::token::TokenError> for Refused {
    fn from(e: crate::token::TokenError) -> Self {
        Refused::unavailable("the HSM", &e)
    }
}

impl From<arclock_hsm::Error> for Refused {
    fn from(e: arclock_hsm::Error) -> Self {
        Refused::unavailable("the HSM", &e)
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Locked { until, at } => ApiError::new(
                Code::AccountLocked,
                "Too many failed attempts. Try again later.",
                "account temporarily locked",
            )
            .retry_after((((until - at).max(1000) + 999) / 1000) as u64),
            Refused::NoMatch => ApiError::new(
                Code::VerificationFailed,
                "Face verification failed",
                "the face does not match this account",
            ),
            Refused::Face { error, frame } => ApiError::face(&error, frame),
            Refused::Pose { frame, hint } => ApiError::new(
                Code::LivenessPose,
                format!("frame {}: {hint}", frame + 1),
                "a frame does not show the pose its step asks for",
            )
            .with_data(serde_json::json!({"frame": frame, "hint": hint})),
            Refused::NotLive => ApiError::new(
                Code::LivenessFailed,
                "The face could not be confirmed as live; take a new picture of yourself in good light",
                "liveness check failed",
            ),
            Refused::Challenge(why) => ApiError::new(
                Code::ChallengeInvalid,
                "The liveness challenge is invalid or expired; request a new one",
                why,
            ),
            Refused::ChallengeRequired => ApiError::new(
                Code::LivenessRequired,
                "A liveness challenge is required: POST /api/auth/challenge, then send one frame per step",
                "single photos are not accepted here",
            ),
            Refused::EmailTaken => crate::store::StoreError::EmailTaken.into(),
            Refused::RegistrationClosed => ApiError::new(
                Code::RegistrationClosed,
                "Registration is closed; an operator enrols new accounts",
                "registration is closed",
            ),
            Refused::InviteInvalid => ApiError::new(
                Code::InviteInvalid,
                "A valid invitation code is required to register",
                "the invitation code is missing, used, expired or for another address",
            ),
            Refused::Unavailable { what, cause } => ApiError::unavailable(what, &cause),
        }
    }
}

/// Domain separation of the e-mail pseudonym (another use of the key would
/// get another prefix).
const SUBJECT_CONTEXT: &[u8] = b"arclock/lockout-subject/v1\0";

/// The lockout subject of an e-mail, whether or not an account has it, so that
/// lockouts (and challenges) reveal nothing about which addresses exist: an
/// HMAC under a key inside the HSM (`arclock_hsm::pseudonym`), so that a copy
/// of the store cannot be matched against a list of addresses either.
pub(crate) async fn email_subject(app: &App, email: &Email) -> Result<Subject, arclock_hsm::Error> {
    Ok(email_subjects(app, &[email]).await?.remove(0))
}

/// [`email_subject`] of many addresses in one HSM call (the console's
/// lockout list maps subjects back to accounts).
pub(crate) async fn email_subjects(
    app: &App,
    emails: &[&Email],
) -> Result<Vec<Subject>, arclock_hsm::Error> {
    pseudonym_key_ready(app).await?;
    let inputs = emails
        .iter()
        .map(|e| [SUBJECT_CONTEXT, e.as_str().as_bytes()].concat())
        .collect();
    Ok(app
        .hsm
        .pseudonyms(inputs)
        .await?
        .into_iter()
        .map(|h| Subject::Account(EmailKey::from_mac(&h)))
        .collect())
}

/// Makes sure the token holds the pseudonym key (made on first use if an
/// older provisioning lacks it); asked once per process.
pub(crate) async fn pseudonym_key_ready(app: &App) -> Result<(), arclock_hsm::Error> {
    app.pseudonym_key
        .get_or_try_init(|| async {
            if app.hsm.create_pseudonym_key().await? {
                tracing::warn!(
                    "generated the pseudonym key in the token (lockout counters kept under \
                     earlier subjects, and sessions opened before, no longer apply)"
                );
            }
            Ok::<_, arclock_hsm::Error>(())
        })
        .await
        .copied()
}

/// The lockout subject of a client address: IPv6 by its /64.
fn address_subject(client: &ClientInfo) -> Option<Subject> {
    let ip: std::net::IpAddr = client.ip.as_deref()?.parse().ok()?;
    Some(Subject::Ip(crate::http::forwarded::subject_key(ip)))
}

/// Each subject's budget: the e-mail's is small (it protects one account),
/// the address's much larger (many people may share one behind a NAT or a
/// proxy; it bounds guessing across accounts).
fn policy(app: &App, subject: &Subject) -> LockPolicy {
    let a = &app.config.auth;
    LockPolicy {
        max_failures: match subject {
            Subject::Account(_) => a.max_failures,
            Subject::Ip(_) => a.max_failures_per_address,
        },
        window: a.failure_window_secs as i64 * 1000,
        lock_for: a.lockout_secs as i64 * 1000,
    }
}

/// One sign-in attempt, reserved against the e-mail's and the address's
/// budgets before any comparison ([`reserve`]) and settled by [`compare`].
/// Dropped unsettled (a photo problem, a challenge refused, a dependency
/// down), it gives its places back: only a comparison that fails counts.
#[must_use = "an attempt is settled by compare() or released on drop"]
pub struct Attempt {
    store: std::sync::Arc<dyn crate::store::Store>,
    reserved: Vec<Subject>,
    at: Millis,
    action: Action,
}

impl Attempt {
    /// Gives the places back now (the attempt never reached a comparison).
    /// Dropping does the same in the background; this is for the paths where
    /// the next request may come at once (a photo the client retakes).
    pub async fn release(mut self) {
        give_back(&self.store, std::mem::take(&mut self.reserved)).await;
    }
}

async fn give_back(store: &std::sync::Arc<dyn crate::store::Store>, reserved: Vec<Subject>) {
    for s in &reserved {
        if let Err(e) = store.release_attempt(s).await {
            tracing::warn!(error = %e, "could not release an attempt");
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let reserved = std::mem::take(&mut self.reserved);
        if reserved.is_empty() {
            return;
        }
        let store = self.store.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { give_back(&store, reserved).await });
        }
    }
}

/// Reserves the attempt (429, logged, if the e-mail or the address is
/// locked or its budget is taken by failed and running attempts), before
/// any face work is spent. Of concurrent attempts on one e-mail at most
/// `[auth] max_failures` get past here in a window.
pub async fn reserve(
    app: &App,
    email: &Email,
    client: &ClientInfo,
    at: Millis,
    action: Action,
) -> Result<Attempt, Refused> {
    let asks = budgets(app, email, client).await?;
    reserve_budgets(app, asks, client, at, action).await
}

/// The budgets an attempt for `email` from `client` is counted against:
/// the e-mail's (its pseudonym, an HMAC in the HSM) and the address's.
pub async fn budgets(app: &App, email: &Email, client: &ClientInfo) -> Result<Budgets, Refused> {
    let account = email_subject(app, email).await?;
    Ok(Budgets(
        std::iter::once(account)
            .chain(address_subject(client))
            .map(|s| {
                let p = policy(app, &s);
                (s, p)
            })
            .collect(),
    ))
}

/// The subjects of one attempt with their policies ([`budgets`]).
pub struct Budgets(Vec<(Subject, LockPolicy)>);

impl Budgets {
    /// Whether this process has seen one of them refused, and the lockout
    /// has not run out: a sign-in then reserves before it starts the face
    /// work, so that a locked account under attack costs no face work.
    pub fn seen_locked(&self, app: &App, at: Millis) -> bool {
        self.0.iter().any(|(s, _)| app.locks_seen.holds(s, at))
    }
}

/// [`reserve`] with the budgets already known.
pub async fn reserve_budgets(
    app: &App,
    Budgets(asks): Budgets,
    client: &ClientInfo,
    at: Millis,
    action: Action,
) -> Result<Attempt, Refused> {
    let mut attempt = Attempt {
        store: app.store.clone(),
        reserved: Vec::new(),
        at,
        action,
    };
    match app.store.reserve_attempts(&asks, at).await? {
        Reservation::Granted => attempt.reserved = asks.into_iter().map(|(s, _)| s).collect(),
        Reservation::Refused { until } => {
            for (s, _) in asks {
                app.locks_seen.note(s, until, at);
            }
            let e = Event {
                outcome: Outcome::Locked,
                reason: Some("locked"),
                ..Event::ok(at, None, action)
            };
            journal::record(app, client, e).await;
            app.metrics.verdict(Verdict::Locked);
            return Err(Refused::Locked { until, at });
        }
    }
    Ok(attempt)
}

/// Subjects this process has seen refused, with when that refusal runs out:
/// a hint, never a verdict. The store decides every attempt; this only
/// decides whether a sign-in may start its face work while its reservation
/// is being committed (saving the commit's time) or must wait for it (a
/// subject seen locked: a locked account under attack then costs a store
/// call per request, not a face run). An operator's unlock, or another
/// instance's lockout, is at worst a slower (or one wasted) face run here.
#[derive(Default)]
pub struct LocksSeen(std::sync::Mutex<std::collections::HashMap<Subject, Millis>>);

/// How many subjects [`LocksSeen`] keeps; past it, the expired go, and if
/// none has, all (it is a hint: forgetting costs one face run per subject).
const LOCKS_SEEN_MAX: usize = 4096;

impl LocksSeen {
    /// Remembers that `subject` is refused until `until`: a lockout this
    /// process started, or a refused reservation (then all of its subjects:
    /// which of them was full the store does not say).
    fn note(&self, subject: Subject, until: Millis, at: Millis) {
        let Ok(mut seen) = self.0.lock() else { return };
        if seen.len() >= LOCKS_SEEN_MAX {
            seen.retain(|_, u| *u > at);
            if seen.len() >= LOCKS_SEEN_MAX {
                seen.clear();
            }
        }
        seen.insert(subject, until);
    }

    fn holds(&self, subject: &Subject, at: Millis) -> bool {
        self.0
            .lock()
            .map(|seen| seen.get(subject).is_some_and(|until| *until > at))
            .unwrap_or(false)
    }
}

/// Embeds one photo; photo problems are the client's (422).
pub async fn embed(
    app: &App,
    photo: arclock_secmem::LockedBytes,
) -> Result<arclock_face::Face, Refused> {
    let face = app
        .face
        .embed(photo)
        .await
        .map_err(|e| face_refusal(e, None))?;
    crate::timing::record_face(&face.timings);
    Ok(face)
}

/// A pipeline error as a refusal: the photo's fault (422) or ours (503).
pub(crate) fn face_refusal(e: arclock_face::Error, frame: Option<usize>) -> Refused {
    if e.is_photo_problem() {
        Refused::Face { error: e, frame }
    } else {
        Refused::unavailable("the face pipeline", &e)
    }
}

/// Whether PAD can be used as `mode` wants it: `Ok(true)` run it, `Ok(false)`
/// skip it (mode off, or models missing and the policy allows that), 503 if
/// the models are missing and the policy refuses.
pub fn pad_in_force(app: &App, mode: LivenessMode) -> Result<bool, Refused> {
    if mode == LivenessMode::Off {
        return Ok(false);
    }
    if app.face.runs_pad() {
        return Ok(true);
    }
    match app.config.liveness.pad_unavailable {
        PadUnavailable::Allow => Ok(false),
        PadUnavailable::Refuse => {
            app.metrics.liveness("pad_unavailable");
            Err(Refused::unavailable(
                "presentation-attack detection",
                &"PAD models are not installed and [liveness] pad_unavailable = \"refuse\"",
            ))
        }
    }
}

/// Passive PAD's verdict on one face: `None` live (or not run), `Some("pad")`
/// an attack.
pub fn passive_verdict(app: &App, face: &arclock_face::Face, run: bool) -> Option<&'static str> {
    if !run {
        return None;
    }
    let live = face
        .pad
        .is_some_and(|s| s >= app.config.liveness.thresholds.min_pad);
    app.metrics.liveness(if live { "live" } else { "pad" });
    (!live).then_some("pad")
}

/// The face a request offers (one photo, or a challenge answer), proven
/// live as `mode` asks: the embedding to use and, if liveness judged it an
/// attack, the reason. Registration refuses on that reason; sign-in still
/// compares (same cost as a wrong face) and counts a failure.
pub async fn proven_face(
    app: &App,
    mode: LivenessMode,
    email: &Email,
    proof: Proof,
    client: &ClientInfo,
    at: Millis,
) -> Result<(Embedding, Option<&'static str>), Refused> {
    let pad = pad_in_force(app, mode)?;
    match proof {
        Proof::Photo(_) if mode == LivenessMode::Active => Err(Refused::ChallengeRequired),
        Proof::Photo(photo) => {
            let face = embed(app, photo).await?;
            let attack = passive_verdict(app, &face, pad);
            Ok((face.embedding, attack))
        }
        Proof::Challenge { id, frames } => {
            let steps = challenge::take(app, &id, email, client, at, frames.len()).await?;
            Ok(
                match challenge::judge_frames(app, &steps, frames, pad).await? {
                    challenge::Judged::Live(fused) => (fused, None),
                    challenge::Judged::Attack(fused, reason) => (fused, Some(reason)),
                },
            )
        }
    }
}

/// Seals `embedding` for a new account and stores it (a photo upload or the
/// kiosk camera): 409 if the e-mail is taken.
pub async fn enrol(
    app: &App,
    name: Name,
    email: Email,
    embedding: Embedding,
    client: &ClientInfo,
) -> Result<User, Refused> {
    let at = app.clock.now();
    let id = UserId::generate();
    let credentials = template::seal(&app.hsm, &id, &email, &embedding)
        .await
        .map_err(|e| Refused::unavailable("the HSM", &e))?;
    drop(embedding);
    let user = User {
        id: id.clone(),
        name,
        email,
        status: UserStatus::Active,
        created_at: at,
    };
    app.store
        .register(&NewUser {
            user: user.clone(),
            credentials,
        })
        .await?;
    journal::record(app, client, Event::ok(at, Some(&id), Action::Register)).await;
    Ok(user)
}

/// A template sealed once for a user that does not exist: unknown e-mails are
/// compared against it so that they cost the same HSM and ECIES work.
static DECOY: OnceCell<Decoy> = OnceCell::const_new();

/// The decoy's owner, the address it is bound to, and its record.
type Decoy = (UserId, Email, Credentials);

/// The decoy, sealed on first use over a random unit vector of the
/// recognizer's model and length (so that opening and comparing it costs
/// what a real template does), made before any probe exists: the reference
/// is opened beside the face work.
async fn decoy(app: &App) -> Result<&'static Decoy, Refused> {
    DECOY
        .get_or_try_init(|| async {
            let crypto = |e: &dyn std::fmt::Display| template::TemplateError::Crypto(e.to_string());
            // The recognizer as loaded (its output length checked at load).
            let loaded = app.face.models().status();
            let raw: Vec<f32> = (0..loaded.embedding_dim)
                .map(|_| rand::random::<f32>() - 0.5)
                .collect();
            let stand_in = Embedding::from_raw(&loaded.recognizer, &raw).map_err(|e| crypto(&e))?;
            let id = UserId::generate();
            let email = Email::parse("decoy@arclock.invalid").map_err(|e| crypto(&e))?;
            let creds = template::seal(&app.hsm, &id, &email, &stand_in).await?;
            Ok::<_, template::TemplateError>((id, email, creds))
        })
        .await
        .map_err(|e| Refused::unavailable("the HSM", &e))
}

/// What a probe is compared with: the account (if it exists and is active)
/// and its opened template, or the decoy's for any other e-mail. It needs no
/// probe, so a sign-in opens it while the face is still being embedded.
pub struct Reference {
    user: Option<User>,
    owner: UserId,
    template: Embedding,
}

impl Reference {
    /// Whose template this is: the account's, or the decoy's (an id no
    /// account has). A sign-in prepares its session for it before the
    /// comparison, so an unknown e-mail costs what a wrong face does.
    pub fn owner(&self) -> &UserId {
        &self.owner
    }
}

/// The [`Reference`] for `email`: the same store reads, unwrap in the HSM and
/// decryption whether or not the account exists.
pub async fn reference(app: &App, email: &Email) -> Result<Reference, Refused> {
    let down = |e: &dyn std::fmt::Display| Refused::unavailable("the store", e);
    let user = app
        .store
        .user_by_email(email)
        .await
        .map_err(|e| down(&e))?
        .filter(|u| u.status == UserStatus::Active);
    let (owner, bound_to, creds) = match &user {
        Some(u) => (
            u.id.clone(),
            u.email.clone(),
            app.store
                .credentials(&u.id)
                .await
                .map_err(|e| down(&e))?
                .ok_or_else(|| down(&"credentials missing"))?,
        ),
        None => {
            let (id, email, c) = decoy(app).await?;
            // The same store round trip a known account costs (on MongoDB a
            // missing one is measurable): a read for the decoy's id, which no
            // account has.
            app.store.credentials(id).await.map_err(|e| down(&e))?;
            (id.clone(), email.clone(), c.clone())
        }
    };
    let template = match template::open(&app.hsm, &owner, &bound_to, &creds).await {
        Ok(r) => r,
        Err(
            e @ template::TemplateError::Hsm(arclock_hsm::Error::IntegrityFailure)
            | e @ template::TemplateError::Crypto(_),
        ) => return Err(forged(app, &owner, &e).await),
        Err(e) => return Err(Refused::unavailable("the HSM", &e)),
    };
    Ok(Reference {
        user,
        owner,
        template,
    })
}

/// A stored record failed the token's integrity check: someone wrote to
/// the store (a template or key swapped, an old copy put back). Never a
/// match: 503, an error in the log and an entry in the audit trail.
async fn forged(app: &App, user: &UserId, cause: &template::TemplateError) -> Refused {
    tracing::error!(user = %user, error = %cause, "stored credentials failed their integrity check");
    crate::audit::record(
        app,
        "integrity",
        "arclockd",
        Some(user.to_string()),
        "stored credentials failed the HSM integrity check (tampered or replayed record)".into(),
    )
    .await;
    Refused::unavailable("the account's credentials", cause)
}

/// Compares `probe` with the account's template (or, for an unknown or
/// disabled account, a decoy at the same cost); counts failures, logs, and
/// returns the user and similarity on a match, [`Refused::NoMatch`]
/// otherwise. `attack`, when set, is a liveness verdict already reached: the
/// comparison still runs (so the answer takes as long as a wrong face's),
/// but the outcome is a failure logged with that reason.
pub async fn compare(
    app: &App,
    attempt: Attempt,
    email: &Email,
    probe: Embedding,
    client: &ClientInfo,
    attack: Option<&'static str>,
) -> Result<(User, f32), Refused> {
    let reference = reference(app, email).await?;
    let (user, similarity, success) =
        compare_deferred(app, attempt, reference, probe, client, attack).await?;
    success.settle(app).await;
    Ok((user, similarity))
}

/// A match not yet on record: the account's failures to clear, the
/// address's place to give back, and the log entry. The caller writes it
/// before answering (a success is on record before the client hears of
/// it), alone ([`Success::settle`]) or in one commit with the new session
/// ([`Success::settle_with`]).
#[must_use = "a success is on record only once settled"]
pub struct Success {
    reserved: Vec<Subject>,
    entry: crate::store::AuthLog,
}

impl Success {
    /// Writes the success alone. A store failure here is logged, not
    /// answered: the person did match, and no session depends on it.
    pub async fn settle(self, app: &App) {
        match app.store.settle_success(&self.reserved, &self.entry).await {
            Ok(()) => app.announce(self.entry),
            Err(e) => tracing::warn!(error = %e, "could not settle a successful attempt"),
        }
    }

    /// Writes the success and the new session's `family` in one commit
    /// (one fsync on SQLite): the session exists only if both are stored.
    pub async fn settle_with(
        self,
        app: &App,
        family: &crate::store::NewFamily,
    ) -> Result<(), Refused> {
        app.store
            .settle_sign_in(&self.reserved, &self.entry, family)
            .await?;
        app.announce(self.entry);
        Ok(())
    }
}

/// [`compare`] against a [`Reference`] opened beforehand, with a success's
/// bookkeeping handed back ([`Success`]) instead of written, so that the
/// caller can write it with the new session in one commit.
pub async fn compare_deferred(
    app: &App,
    mut attempt: Attempt,
    reference: Reference,
    probe: Embedding,
    client: &ClientInfo,
    attack: Option<&'static str>,
) -> Result<(User, f32, Success), Refused> {
    let (at, action) = (attempt.at, attempt.action);
    let down = |e: &dyn std::fmt::Display| Refused::unavailable("the store", e);
    let Reference {
        user,
        template: reference,
        ..
    } = reference;
    let similarity = reference.cosine(&probe).unwrap_or(-1.0);
    drop((reference, probe));
    let threshold = app.face.threshold().unwrap_or(1.0);
    let matched = user.is_some() && similarity >= threshold && attack.is_none();
    let user_id = user.as_ref().map(|u| u.id.clone());
    // Settled from here on: the reservations become failures, or go back.
    let reserved = std::mem::take(&mut attempt.reserved);
    if !matched {
        for s in &reserved {
            let out = app
                .store
                .fail_attempt(s, at, &policy(app, s))
                .await
                .map_err(|e| down(&e))?;
            if let FailureOutcome::LockedUntil(until) = out {
                app.locks_seen.note(s.clone(), until, at);
                tracing::info!(action = action.as_str(), "lockout started");
                app.metrics.lockout(match s {
                    Subject::Account(_) => LockKind::Account,
                    Subject::Ip(_) => LockKind::Ip,
                });
                let subject = match s {
                    Subject::Account(h) => format!("account {h}"),
                    Subject::Ip(ip) => format!("ip {ip}"),
                };
                crate::audit::record(
                    app,
                    "lockout",
                    "arclockd",
                    Some(subject),
                    format!("locked until {until} after failed {}", action.as_str()),
                )
                .await;
            }
        }
        let bucket = user.as_ref().map(|_| similarity_bucket(similarity));
        let reason = match (attack, user.is_some()) {
            (Some(why), _) => why,
            (None, true) => "no match",
            (None, false) => "unknown account",
        };
        if let Some(why) = attack {
            // Detached: the answer must take as long as a wrong face's.
            crate::audit::record_detached(
                app,
                "attack",
                "arclockd",
                user_id.as_ref().map(ToString::to_string),
                format!("{} refused by liveness: {why}", action.as_str()),
            );
        }
        let e = Event {
            bucket,
            ..Event::failed(at, user_id.as_ref(), action, reason)
        };
        journal::record(app, client, e).await;
        app.metrics.verdict(Verdict::Reject);
        return Err(Refused::NoMatch);
    }
    let (Some(user), Some(id)) = (user, user_id) else {
        return Err(down(&"user vanished"));
    };
    app.metrics.verdict(Verdict::Accept);
    // The account owner proved themselves: its count starts again. The
    // address's count only gets this attempt's place back: a success must
    // not wipe failures a neighbour (or an attacker) made on other accounts.
    let entry = journal::entry(
        app,
        client,
        &Event {
            bucket: Some(similarity_bucket(similarity)),
            ..Event::ok(at, Some(&id), action)
        },
    );
    Ok((user, similarity, Success { reserved, entry }))
}

/// A registration refused by liveness, logged with its reason (operators
/// see it; the client gets [`Refused::NotLive`]).
pub async fn refuse_enrolment(app: &App, client: &ClientInfo, reason: &'static str) -> Refused {
    let at = app.clock.now();
    journal::record(
        app,
        client,
        Event::failed(at, None, Action::Register, reason),
    )
    .await;
    Refused::NotLive
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: usize) -> Subject {
        Subject::Ip(format!("192.0.2.{n}"))
    }

    #[test]
    fn a_lock_seen_holds_until_it_runs_out() {
        let seen = LocksSeen::default();
        let account = Subject::Account(EmailKey::from_mac(&[7; 32]));
        assert!(!seen.holds(&account, 1_000));
        seen.note(account.clone(), 5_000, 1_000);
        assert!(seen.holds(&account, 4_999));
        assert!(!seen.holds(&account, 5_000), "ran out");
        assert!(!seen.holds(&ip(1), 2_000), "only the subject noted");
    }

    #[test]
    fn a_full_memo_drops_the_expired_first_then_everything() {
        let seen = LocksSeen::default();
        // Half ran out at 1 000, half hold until 10 000.
        for n in 0..LOCKS_SEEN_MAX {
            let until = if n % 2 == 0 { 1_000 } else { 10_000 };
            seen.note(ip(n), until, 0);
        }
        seen.note(ip(LOCKS_SEEN_MAX), 10_000, 2_000);
        assert!(seen.holds(&ip(1), 2_000), "a live entry was dropped");
        assert!(seen.holds(&ip(LOCKS_SEEN_MAX), 2_000));
        let len = seen.0.lock().unwrap().len();
        assert_eq!(len, LOCKS_SEEN_MAX / 2 + 1);
        // Full of live entries: forgotten wholesale (a hint may forget).
        for n in 0..LOCKS_SEEN_MAX {
            seen.note(ip(10_000 + n), 10_000, 2_000);
        }
        assert!(seen.0.lock().unwrap().len() <= LOCKS_SEEN_MAX);
        assert!(seen.holds(&ip(10_000 + LOCKS_SEEN_MAX - 1), 2_000));
    }
}
