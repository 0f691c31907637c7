//! Sessions: a refresh-token family per sign-in, access tokens bound to it,
//! `POST /api/auth/refresh-token` (rotation with theft detection) and
//! `POST /api/auth/logout` (server-side revocation).
//!
//! Every access token names its family (`sid`); [`authenticate`] accepts it
//! only while the family stands and the account is active, so logout, a
//! replayed refresh token and account deletion all end the session at once
//! instead of 15 minutes later.

use std::borrow::Cow;

use http::{Request, StatusCode, header};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::Answer;
use super::intake;
use super::journal::{self, Event};
use crate::App;
use crate::http::response;
use crate::http::{ApiError, Code};
use crate::identity::UserId;
use crate::store::{Action, Millis, NewFamily, Rotate, Rotation, User, UserStatus};
use crate::token::{self, Claims, RefreshToken};

/// What the store keeps of each refresh token: an HMAC under the HSM's
/// pseudonym key ([`RefreshToken::mac_input`] has its own context), one trip
/// to the token for all of them.
async fn stored_forms(
    app: &App,
    tokens: &[&RefreshToken],
) -> Result<Vec<[u8; 32]>, arclock_hsm::Error> {
    crate::signin::pseudonym_key_ready(app).await?;
    app.hsm
        .pseudonyms(tokens.iter().map(|t| t.mac_input()).collect())
        .await
}

/// A session made in the HSM and not yet stored: its family (the refresh
/// token's HMAC) and its signed access token. A sign-in makes it while the
/// face is still being embedded, for whichever account the attempt names
/// (the decoy's id for an unknown e-mail, so both cost the same); it is
/// handed out only once [`Opening::family`] is committed, which only a
/// match does. Until then nothing accepts it: [`authenticate`] wants the
/// family to stand, and the tokens never leave the process. Dropped, its
/// secrets are wiped.
pub struct Opening {
    family: NewFamily,
    refresh: RefreshToken,
    access: zeroize::Zeroizing<String>,
}

impl Opening {
    /// The family to commit before the tokens are handed out.
    pub fn family(&self) -> &NewFamily {
        &self.family
    }

    /// The pair to hand out.
    pub fn tokens(&self, app: &App) -> serde_json::Value {
        pair(app, &self.access, &self.refresh.encode())
    }
}

/// `{accessToken, refreshToken, expiresIn}`, the mobile app's shape.
fn pair(app: &App, access: &str, refresh: &str) -> serde_json::Value {
    json!({
        "accessToken": access,
        "refreshToken": refresh,
        "expiresIn": app.tokens.access_ttl().as_secs(),
    })
}

/// A new [`Opening`] for `user` at `at`: the family's MAC and the access
/// token's signature, at once (two HSM calls, nothing stored).
pub async fn prepare(app: &App, user: &UserId, at: Millis) -> Result<Opening, token::TokenError> {
    let sid = hex::encode(rand::random::<[u8; 16]>());
    let refresh = RefreshToken::generate(&sid, user);
    let mac_inputs = [&refresh];
    let (hash, access) = tokio::join!(
        stored_forms(app, &mac_inputs),
        app.tokens.issue(user, &sid, at)
    );
    let family = NewFamily {
        id: sid,
        user_id: user.clone(),
        token_hash: hash?[0],
        created_at: at,
        expires_at: at + app.config.auth.refresh_ttl_secs as i64 * 1000,
    };
    Ok(Opening {
        family,
        refresh,
        access: zeroize::Zeroizing::new(access?),
    })
}

/// A new session for `user`, stored: a pair whose family could not be
/// committed is never handed out.
pub async fn open(app: &App, user: &UserId, at: Millis) -> Result<serde_json::Value, ApiError> {
    let opening = prepare(app, user, at).await?;
    app.store.create_family(opening.family()).await?;
    Ok(opening.tokens(app))
}

/// Who is calling: a valid RS256 access token whose session stands and whose
/// account is active. Every failure is the same 401.
pub struct Caller {
    pub user: User,
    pub claims: Claims,
}

/// Checks `Authorization: Bearer <jwt>`.
pub async fn authenticate<B>(app: &App, req: &Request<B>) -> Result<Caller, ApiError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 8192)
        .ok_or_else(ApiError::unauthorized)?;
    let now = app.clock.now();
    let claims = match app.tokens.verify(token, now).await {
        Ok(c) => c,
        Err(token::TokenError::Hsm(e)) => return Err(e.into()),
        Err(e) => {
            tracing::debug!(error = %e, "access token refused");
            return Err(ApiError::unauthorized());
        }
    };
    let id = UserId::parse(&claims.sub).ok_or_else(ApiError::unauthorized)?;
    let live = app.store.family_live(&claims.sid, now).await?;
    if !live {
        return Err(ApiError::unauthorized());
    }
    let user = app
        .store
        .user_by_id(&id)
        .await?
        .filter(|u| u.status == UserStatus::Active)
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Caller { user, claims })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody<'a> {
    #[serde(borrow, rename = "refreshToken")]
    refresh_token: Cow<'a, str>,
}

fn invalid_refresh() -> ApiError {
    ApiError::new(
        Code::Unauthorized,
        "Invalid or expired refresh token",
        "the refresh token is not valid",
    )
}

/// `POST /api/auth/refresh-token` `{refreshToken}` -> `{tokens}`.
pub async fn refresh(app: &App, req: Request<Incoming>) -> Answer {
    let (body, client) = intake::read_body(app, req).await?;
    let presented = presented_refresh(&body)?;
    drop(body);
    let Some(presented) = presented else {
        return Err(invalid_refresh());
    };
    let at = app.clock.now();
    let next = RefreshToken::generate(presented.family_id(), presented.user());
    let hashes = stored_forms(app, &[&presented, &next]).await?;
    // The swap, the account's status and the success's log entry in one
    // store call (one commit on SQLite): a second call per rotation on
    // SQLite's one writing connection bounded ES256 refreshes at 4 clients.
    let entry = journal::entry(
        app,
        &client,
        &Event::ok(at, Some(presented.user()), Action::Refresh),
    );
    let rotation = app
        .store
        .rotate_refresh(Rotate {
            claims: Some((presented.user(), presented.family_id())),
            entry: Some(&entry),
            ..Rotate::new(&hashes[0], &hashes[1], at)
        })
        .await?;
    match rotation {
        Rotation::Mismatch { user_id, family_id } => {
            // The row is not the one this token was issued for: moved to
            // another user (or family) by someone writing to the store.
            let _ = app.store.revoke_family(&family_id).await;
            tracing::error!(family = %family_id, "refresh family does not match its token: revoked");
            crate::audit::record(
                app,
                "integrity",
                "arclockd",
                Some(user_id.to_string()),
                "a refresh family's row names another user or family than its token: revoked"
                    .into(),
            )
            .await;
            Err(invalid_refresh())
        }
        Rotation::Rotated { user_id, family_id } => {
            app.announce(entry);
            let access = app.tokens.issue(&user_id, &family_id, at).await?;
            let tokens = pair(app, &access, &next.encode());
            Ok(response::ok(
                StatusCode::OK,
                "Token refreshed successfully",
                json!({"tokens": tokens}),
            ))
        }
        Rotation::Reused { user_id, .. } => {
            tracing::warn!("refresh token reused: session revoked");
            crate::audit::record(
                app,
                "token_reuse",
                "arclockd",
                Some(user_id.to_string()),
                "a rotated refresh token was presented again: its session family is revoked".into(),
            )
            .await;
            journal::record(
                app,
                &client,
                Event::failed(at, Some(&user_id), Action::Refresh, "token reuse"),
            )
            .await;
            Err(invalid_refresh())
        }
        Rotation::Invalid => Err(invalid_refresh()),
    }
}

/// The refresh token a refresh body presents; `None` if it has no shape
/// ArcLock issues (answered like an unknown token).
pub(crate) fn presented_refresh(body: &[u8]) -> Result<Option<RefreshToken>, ApiError> {
    let b: RefreshBody<'_> = intake::parse(body)?;
    if b.refresh_token.is_empty() || b.refresh_token.len() > 256 {
        return Err(ApiError::bad_request("refreshToken is required"));
    }
    Ok(RefreshToken::parse(&b.refresh_token))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogoutBody<'a> {
    #[serde(borrow, default, rename = "refreshToken")]
    refresh_token: Option<Cow<'a, str>>,
}

/// What a logout body names.
pub(crate) enum Named {
    /// No refresh token (an empty body, or none in it).
    Nothing,
    /// A refresh token of no shape ArcLock issues: it revokes nothing.
    Unknown,
    Token(RefreshToken),
}

/// The refresh token a logout body names, if any.
pub(crate) fn logout_refresh(body: &[u8]) -> Result<Named, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Named::Nothing);
    }
    let b: LogoutBody<'_> = intake::parse(body)?;
    match b.refresh_token {
        Some(t) if !t.is_empty() && t.len() <= 256 => {
            Ok(RefreshToken::parse(&t).map_or(Named::Unknown, Named::Token))
        }
        Some(_) => Err(ApiError::bad_request("refreshToken is malformed")),
        None => Ok(Named::Nothing),
    }
}

/// `POST /api/auth/logout`: revokes the session of the bearer token and/or
/// the family of the refresh token in the body (the app sends either).
pub async fn logout(app: &App, req: Request<Incoming>) -> Answer {
    let caller = if req.headers().contains_key(header::AUTHORIZATION) {
        Some(authenticate(app, &req).await?)
    } else {
        None
    };
    let (body, client) = intake::read_body(app, req).await?;
    let named = logout_refresh(&body)?;
    drop(body);
    let at = app.clock.now();
    let mut revoked = false;
    if let Some(c) = &caller {
        revoked |= app.store.revoke_family(&c.claims.sid).await?;
    }
    match named {
        Named::Token(t) => {
            let hash = stored_forms(app, &[&t]).await?[0];
            revoked |= app.store.revoke_family_of(&hash).await?;
        }
        Named::Unknown => {}
        // Nothing names a session: the caller is not authenticated.
        Named::Nothing if caller.is_none() => return Err(ApiError::unauthorized()),
        Named::Nothing => {}
    }
    let user = caller.as_ref().map(|c| &c.user.id);
    journal::record(app, &client, Event::ok(at, user, Action::Logout)).await;
    Ok(response::ok(
        StatusCode::OK,
        "Logged out successfully",
        json!({"revoked": revoked}),
    ))
}
