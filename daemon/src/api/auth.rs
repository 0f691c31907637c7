//! `POST /api/auth/register`, `/login` and `/verify-face`: photo in, tokens out.
//!
//! The request body is read into locked memory, parsed without copying the
//! photo's base64 (borrowed), and decoded straight into another locked buffer
//! that the face pipeline consumes and wipes. An unknown e-mail and a wrong face
//! take the same path (the photo is embedded and a decoy template is opened in
//! the HSM) and get the same 401; lockouts are kept per e-mail (known or not)
//! and per client address, in the store.

use arclock_face::Embedding;
use arclock_secmem::LockedBytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::intake::{self, ClientInfo, FormKind};
use super::journal::{self, Event};
use super::session::{self, Answer};
use crate::App;
use crate::http::response::{self, Body, bad_request, unavailable};
use crate::identity::{Email, Name, UserId};
use crate::metrics::{LockKind, Verdict};
use crate::store::{
    Action, Credentials, FailureOutcome, LockPolicy, Millis, NewUser, Outcome, Subject, User,
    UserStatus, similarity_bucket,
};
use crate::template;

async fn embed(app: &App, photo: LockedBytes) -> Result<Embedding, Response<Body>> {
    match app.face.embed(photo).await {
        Ok(face) => Ok(face.embedding),
        Err(e) if e.is_photo_problem() => Err(response::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "FACE_ERROR",
            &e.to_string(),
            e.kind(),
            None,
        )),
        Err(e) => Err(unavailable("the face pipeline", &e)),
    }
}

/// The user as the mobile app reads it.
pub fn user_json(u: &User) -> serde_json::Value {
    json!({
        "id": u.id,
        "name": u.name,
        "email": u.email,
        "createdAt": response::timestamp(u.created_at),
    })
}

pub async fn register(app: &App, req: Request<Incoming>) -> Answer {
    let (form, client) = intake::photo_form(app, req, FormKind::Register).await?;
    let name = Name::parse(form.name.as_deref().unwrap_or_default())
        .map_err(|e| bad_request(&e.to_string()))?;
    let email = Email::parse(&form.email).map_err(|e| bad_request(&e.to_string()))?;
    let embedding = embed(app, form.photo).await?;
    let user = enrol(app, name, email, embedding, &client).await?;
    let tokens = session::open(app, &user.id, user.created_at).await?;
    Ok(response::ok(
        StatusCode::CREATED,
        "Registration successful",
        json!({"user": user_json(&user), "tokens": tokens}),
    ))
}

/// Seals `embedding` for a new account and stores it (a photo upload or the
/// kiosk camera): 409 `USER_EXISTS` if the e-mail is taken.
pub(crate) async fn enrol(
    app: &App,
    name: Name,
    email: Email,
    embedding: Embedding,
    client: &ClientInfo,
) -> Result<User, Response<Body>> {
    let at = app.clock.now();
    let id = UserId::generate();
    let credentials = template::seal(&app.hsm, &id, &embedding)
        .await
        .map_err(|e| unavailable("the HSM", &e))?;
    drop(embedding);
    let user = User {
        id: id.clone(),
        name,
        email,
        status: UserStatus::Active,
        created_at: at,
    };
    match app
        .store
        .register(&NewUser {
            user: user.clone(),
            credentials,
        })
        .await
    {
        Ok(()) => {}
        Err(crate::store::StoreError::EmailTaken) => {
            return Err(response::error(
                StatusCode::CONFLICT,
                "USER_EXISTS",
                "An account with this e-mail already exists",
                "email already registered",
                None,
            ));
        }
        Err(e) => return Err(unavailable("the store", &e)),
    }
    journal::record(app, client, Event::ok(at, Some(&id), Action::Register)).await;
    Ok(user)
}

/// The lockout subject of an e-mail, whether or not an account has it, so that
/// lockouts reveal nothing about which addresses exist.
pub(crate) fn email_subject(email: &Email) -> Subject {
    let h = Sha256::digest(email.as_str().as_bytes());
    Subject::Account(UserId::stored(hex::encode(&h[..16])))
}

fn locked(until: Millis, at: Millis) -> Response<Body> {
    let secs = ((until - at).max(1000) + 999) / 1000;
    let mut r = response::error(
        StatusCode::TOO_MANY_REQUESTS,
        "ACCOUNT_LOCKED",
        "Too many failed attempts. Try again later.",
        "account temporarily locked",
        None,
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// A template sealed once for a user that does not exist: unknown e-mails are
/// compared against it so that they cost the same HSM and ECIES work.
static DECOY: OnceCell<(UserId, Credentials)> = OnceCell::const_new();

async fn decoy(
    app: &App,
    probe: &Embedding,
) -> Result<&'static (UserId, Credentials), Response<Body>> {
    DECOY
        .get_or_try_init(|| async {
            let id = UserId::generate();
            let creds = template::seal(&app.hsm, &id, probe).await?;
            Ok::<_, template::TemplateError>((id, creds))
        })
        .await
        .map_err(|e| unavailable("the HSM", &e))
}

pub async fn login(app: &App, req: Request<Incoming>, action: Action) -> Answer {
    let (form, client) = intake::photo_form(app, req, FormKind::Login).await?;
    let email = Email::parse(&form.email).map_err(|e| bad_request(&e.to_string()))?;
    let at = app.clock.now();
    check_locks(app, &email, &client, at, action).await?;
    let probe = embed(app, form.photo).await?;
    let (user, similarity) = compare(app, &email, probe, &client, at, action).await?;
    let tokens = session::open(app, &user.id, at).await?;
    Ok(response::ok(
        StatusCode::OK,
        "Face verification successful",
        json!({
            "user": user_json(&user),
            "tokens": tokens,
            "similarity": (similarity * 100.0).round() / 100.0,
        }),
    ))
}

/// Whose failures a sign-in attempt counts against: the e-mail (whether or
/// not it has an account) and the client address.
fn subjects(email: &Email, client: &ClientInfo) -> Vec<Subject> {
    std::iter::once(email_subject(email))
        .chain(client.ip.clone().map(Subject::Ip))
        .collect()
}

/// 429 `ACCOUNT_LOCKED` (logged) if the e-mail or the address is locked out;
/// checked before any face work is spent.
pub(crate) async fn check_locks(
    app: &App,
    email: &Email,
    client: &ClientInfo,
    at: Millis,
    action: Action,
) -> Result<(), Response<Body>> {
    for s in &subjects(email, client) {
        if let Some(until) = app
            .store
            .locked_until(s, at)
            .await
            .map_err(|e| unavailable("the store", &e))?
        {
            let e = Event {
                outcome: Outcome::Locked,
                reason: Some("locked"),
                ..Event::ok(at, None, action)
            };
            journal::record(app, client, e).await;
            app.metrics.verdict(Verdict::Locked);
            return Err(locked(until, at));
        }
    }
    Ok(())
}

/// Compares `probe` with the account's template (or, for an unknown or
/// disabled account, a decoy at the same cost); counts failures, logs, and
/// returns the user and similarity on a match, 401 `VERIFICATION_FAILED`
/// otherwise.
pub(crate) async fn compare(
    app: &App,
    email: &Email,
    probe: Embedding,
    client: &ClientInfo,
    at: Millis,
    action: Action,
) -> Result<(User, f32), Response<Body>> {
    let policy = LockPolicy {
        max_failures: app.config.auth.max_failures,
        window: app.config.auth.failure_window_secs as i64 * 1000,
        lock_for: app.config.auth.lockout_secs as i64 * 1000,
    };
    let subjects = subjects(email, client);
    let user = app
        .store
        .user_by_email(email)
        .await
        .map_err(|e| unavailable("the store", &e))?
        .filter(|u| u.status == UserStatus::Active);
    // Same work either way: unwrap in the HSM, decrypt, compare.
    let (template_owner, creds) = match &user {
        Some(u) => (
            u.id.clone(),
            app.store
                .credentials(&u.id)
                .await
                .map_err(|e| unavailable("the store", &e))?
                .ok_or_else(|| unavailable("the store", &"credentials missing"))?,
        ),
        None => {
            let (id, c) = decoy(app, &probe).await?;
            (id.clone(), c.clone())
        }
    };
    let reference = template::open(&app.hsm, &template_owner, &creds)
        .await
        .map_err(|e| unavailable("the HSM", &e))?;
    let similarity = reference.cosine(&probe).unwrap_or(-1.0);
    drop((reference, probe));
    let threshold = app.face.threshold().unwrap_or(1.0);
    let matched = user.is_some() && similarity >= threshold;
    let user_id = user.as_ref().map(|u| u.id.clone());
    if !matched {
        for s in &subjects {
            let out = app
                .store
                .record_failure(s, at, &policy)
                .await
                .map_err(|e| unavailable("the store", &e))?;
            if let FailureOutcome::LockedUntil(_) = out {
                tracing::info!(action = action.as_str(), "lockout started");
                app.metrics.lockout(match s {
                    Subject::Account(_) => LockKind::Account,
                    Subject::Ip(_) => LockKind::Ip,
                });
            }
        }
        let bucket = user.as_ref().map(|_| similarity_bucket(similarity));
        let reason = if user.is_some() {
            "no match"
        } else {
            "unknown account"
        };
        let e = Event {
            bucket,
            ..Event::failed(at, user_id.as_ref(), action, reason)
        };
        journal::record(app, client, e).await;
        app.metrics.verdict(Verdict::Reject);
        return Err(response::error(
            StatusCode::UNAUTHORIZED,
            "VERIFICATION_FAILED",
            "Face verification failed",
            "the face does not match this account",
            None,
        ));
    }
    let (Some(user), Some(id)) = (user, user_id) else {
        return Err(unavailable("the store", &"user vanished"));
    };
    for s in &subjects {
        let _ = app.store.clear_failures(s).await;
    }
    let e = Event {
        bucket: Some(similarity_bucket(similarity)),
        ..Event::ok(at, Some(&id), action)
    };
    journal::record(app, client, e).await;
    app.metrics.verdict(Verdict::Accept);
    Ok((user, similarity))
}
