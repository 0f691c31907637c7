//! `POST /api/auth/register`, `/login` and `/verify-face`: photo in, tokens out.
//!
//! The request body is read into locked memory, parsed without copying the
//! photo's base64 (borrowed), and decoded straight into another locked buffer
//! that the face pipeline consumes and wipes. An unknown e-mail and a wrong face
//! take the same path (the photo is embedded and a decoy template is opened in
//! the HSM) and get the same 401; lockouts are kept per e-mail (known or not)
//! and per client address, in the store.
// Handlers short-circuit with a ready response as the error; it is built once
// per request, so boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use arclock_face::Embedding;
use arclock_secmem::LockedBytes;
use base64::Engine;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::App;
use crate::http::response::{self, Body};
use crate::identity::{Email, Name, UserId};
use crate::store::{
    Action, AuthLog, Credentials, FailureOutcome, LockPolicy, Millis, NewFamily, NewUser, Outcome,
    Subject, User, UserStatus, similarity_bucket,
};
use crate::template;

/// An answer that is already an HTTP response (errors short-circuit with `?`).
type Answer = Result<Response<Body>, Response<Body>>;

fn now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn bad_request(message: &str) -> Response<Body> {
    response::error(
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
        message,
        message,
        None,
    )
}

fn unavailable(what: &str, e: &dyn std::fmt::Display) -> Response<Body> {
    tracing::warn!(error = %e, "{what} unavailable");
    response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
        "The service is temporarily unavailable",
        &format!("{what} is unavailable"),
        None,
    )
}

/// Reads the body into locked memory, refusing more than the configured cap.
async fn read_body(
    app: &App,
    req: Request<Incoming>,
) -> Result<(LockedBytes, ClientInfo), Response<Body>> {
    let limit = app.config.server.body_limit_bytes;
    let info = ClientInfo::from(&req);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        response::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "Request body too large",
            &format!("the limit is {limit} bytes"),
            None,
        )
    };
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut buf = LockedBytes::with_capacity(declared.unwrap_or(limit).min(limit))
        .map_err(|e| unavailable("locked memory", &e))?;
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| bad_request("the request body could not be read"))?;
        if let Ok(data) = frame.into_data() {
            if buf.extend_from_slice(&data).is_err() {
                return Err(too_large());
            }
            // Best effort: wipe hyper's copy if we hold the only reference.
            if let Ok(mut owned) = data.try_into_mut() {
                zeroize::Zeroize::zeroize(owned.as_mut());
            }
        }
    }
    Ok((buf, info))
}

/// What the logs record about the caller.
#[derive(Debug, Clone)]
struct ClientInfo {
    ip: Option<String>,
    user_agent: Option<String>,
}

impl ClientInfo {
    fn from(req: &Request<Incoming>) -> Self {
        let header = |n: &str| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(256).collect::<String>())
        };
        ClientInfo {
            ip: req
                .extensions()
                .get::<SocketAddr>()
                .map(|a| a.ip().to_string()),
            user_agent: header("x-device-info").or_else(|| header("user-agent")),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    email: Cow<'a, str>,
    #[serde(borrow, rename = "imageBase64")]
    image_base64: Cow<'a, str>,
    /// Accepted for the mobile app's sake; not stored (the header is logged).
    #[serde(default, rename = "device")]
    _device: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody<'a> {
    #[serde(borrow)]
    email: Cow<'a, str>,
    #[serde(borrow, rename = "imageBase64")]
    image_base64: Cow<'a, str>,
    /// Accepted for the mobile app's sake; not stored (the header is logged).
    #[serde(default, rename = "device")]
    _device: Option<serde::de::IgnoredAny>,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Response<Body>> {
    serde_json::from_slice(body).map_err(|e| {
        // serde's message names the field, never echoes the value.
        let msg = e.to_string();
        let field = msg.split(" at line").next().unwrap_or("invalid JSON");
        bad_request(&format!("Invalid request body: {field}"))
    })
}

/// Base64 (optionally a `data:image/...;base64,` URL) into locked memory.
fn decode_photo(b64: &str) -> Result<LockedBytes, Response<Body>> {
    let b64 = b64.trim();
    let b64 = match b64.strip_prefix("data:") {
        Some(rest) => rest.split_once(";base64,").map(|(_, d)| d).unwrap_or(""),
        None => b64,
    };
    if b64.is_empty() {
        return Err(bad_request("imageBase64 is required"));
    }
    let mut out =
        LockedBytes::zeroed(b64.len() / 4 * 3 + 3).map_err(|e| unavailable("locked memory", &e))?;
    let engine = base64::engine::general_purpose::STANDARD;
    let n = engine
        .decode_slice(b64.as_bytes(), &mut out)
        .map_err(|_| bad_request("imageBase64 is not valid base64"))?;
    out.truncate(n);
    Ok(out)
}

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

fn user_json(u: &User) -> serde_json::Value {
    json!({"id": u.id, "name": u.name, "email": u.email, "createdAt": u.created_at})
}

/// Access + refresh token pair for `user`, the refresh family stored by hash.
async fn tokens_for(
    app: &App,
    user: &UserId,
    at: Millis,
) -> Result<serde_json::Value, Response<Body>> {
    let access = app
        .tokens
        .issue(user, at)
        .await
        .map_err(|e| unavailable("token signing", &e))?;
    let (refresh, hash) = crate::token::new_refresh_token();
    app.store
        .create_family(&NewFamily {
            id: hex::encode(rand::random::<[u8; 16]>()),
            user_id: user.clone(),
            token_hash: hash,
            created_at: at,
            expires_at: at + app.config.auth.refresh_ttl_secs as i64 * 1000,
        })
        .await
        .map_err(|e| unavailable("the store", &e))?;
    Ok(json!({"accessToken": access, "refreshToken": refresh}))
}

/// One auth-log line: what happened, to whom, how it ended.
struct Event<'a> {
    at: Millis,
    user: Option<&'a UserId>,
    action: Action,
    outcome: Outcome,
    reason: Option<&'a str>,
    bucket: Option<u8>,
}

async fn log(app: &App, client: &ClientInfo, e: Event<'_>) {
    let entry = AuthLog {
        id: String::new(),
        at: e.at,
        user_id: e.user.cloned(),
        action: e.action,
        outcome: e.outcome,
        reason: e.reason.map(str::to_string),
        similarity_bucket: e.bucket,
        client_ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
    };
    if let Err(err) = app.store.append_log(&entry).await {
        tracing::warn!(error = %err, "auth log not written");
    }
}

pub async fn register(app: &App, req: Request<Incoming>) -> Answer {
    let (body, client) = read_body(app, req).await?;
    let b: RegisterBody<'_> = parse(&body)?;
    let name = Name::parse(&b.name).map_err(|e| bad_request(&e.to_string()))?;
    let email = Email::parse(&b.email).map_err(|e| bad_request(&e.to_string()))?;
    let photo = decode_photo(&b.image_base64)?;
    drop(b);
    drop(body);
    let embedding = embed(app, photo).await?;
    let at = now();
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
    log(
        app,
        &client,
        Event {
            at,
            user: Some(&id),
            action: Action::Register,
            outcome: Outcome::Success,
            reason: None,
            bucket: None,
        },
    )
    .await;
    let tokens = tokens_for(app, &id, at).await?;
    Ok(response::ok(
        StatusCode::CREATED,
        "Registration successful",
        json!({"user": user_json(&user), "tokens": tokens}),
    ))
}

/// The lockout subject of an e-mail, whether or not an account has it, so that
/// lockouts reveal nothing about which addresses exist.
fn email_subject(email: &Email) -> Subject {
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
    let (body, client) = read_body(app, req).await?;
    let b: LoginBody<'_> = parse(&body)?;
    let email = Email::parse(&b.email).map_err(|e| bad_request(&e.to_string()))?;
    let photo = decode_photo(&b.image_base64)?;
    drop(b);
    drop(body);
    let at = now();
    let policy = LockPolicy {
        max_failures: app.config.auth.max_failures,
        window: app.config.auth.failure_window_secs as i64 * 1000,
        lock_for: app.config.auth.lockout_secs as i64 * 1000,
    };
    let subjects: Vec<Subject> = std::iter::once(email_subject(&email))
        .chain(client.ip.clone().map(Subject::Ip))
        .collect();
    for s in &subjects {
        if let Some(until) = app
            .store
            .locked_until(s, at)
            .await
            .map_err(|e| unavailable("the store", &e))?
        {
            log(
                app,
                &client,
                Event {
                    at,
                    user: None,
                    action,
                    outcome: Outcome::Locked,
                    reason: Some("locked"),
                    bucket: None,
                },
            )
            .await;
            return Err(locked(until, at));
        }
    }
    let probe = embed(app, photo).await?;
    let user = app
        .store
        .user_by_email(&email)
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
            }
        }
        let bucket = user.as_ref().map(|_| similarity_bucket(similarity));
        let reason = if user.is_some() {
            "no match"
        } else {
            "unknown account"
        };
        log(
            app,
            &client,
            Event {
                at,
                user: user_id.as_ref(),
                action,
                outcome: Outcome::Failure,
                reason: Some(reason),
                bucket,
            },
        )
        .await;
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
    log(
        app,
        &client,
        Event {
            at,
            user: Some(&id),
            action,
            outcome: Outcome::Success,
            reason: None,
            bucket: Some(similarity_bucket(similarity)),
        },
    )
    .await;
    let tokens = tokens_for(app, &id, at).await?;
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
