//! `POST /api/auth/register`, `/login`, `/verify-face` and `/challenge`:
//! a face in (one photo, or one frame per step of a liveness challenge),
//! tokens out. These handlers parse and render; the decisions are the
//! sign-in service's (`crate::signin`).
//!
//! The request body is read into locked memory, parsed without copying the
//! photo's base64 (borrowed), and decoded straight into another locked buffer
//! that the face pipeline consumes and wipes. An unknown e-mail and a wrong face
//! take the same path (the photo is embedded and a decoy template is opened in
//! the HSM) and get the same 401; lockouts are kept per e-mail (known or not)
//! and per client address, in the store.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::intake::{self, ClientInfo, FormKind, Proof};
use super::session::{self, Answer};
use crate::App;
use crate::http::response::{self, Body, bad_request};
use crate::identity::{Email, Name};
use crate::signin::challenge::{self, Judged};
use crate::signin::{self, Refused};
use crate::store::{Action, User};

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
    let embedding = enrolment_face(app, &email, form.proof, &client).await?;
    let user = signin::enrol(app, name, email, embedding, &client).await?;
    let tokens = session::open(app, &user.id, user.created_at).await?;
    Ok(response::ok(
        StatusCode::CREATED,
        "Registration successful",
        json!({"user": user_json(&user), "tokens": tokens}),
    ))
}

/// The face to enrol, proven live as `[liveness] registration` asks.
async fn enrolment_face(
    app: &App,
    email: &Email,
    proof: Proof,
    client: &ClientInfo,
) -> Result<arclock_face::Embedding, Refused> {
    let mode = app.config.liveness.registration;
    let pad = signin::pad_in_force(app, mode)?;
    match proof {
        Proof::Photo(_) if mode == crate::config::LivenessMode::Active => {
            Err(Refused::ChallengeRequired)
        }
        Proof::Photo(photo) => {
            let face = signin::embed(app, photo).await?;
            match signin::passive_verdict(app, &face, pad) {
                None => Ok(face.embedding),
                Some(reason) => Err(signin::refuse_enrolment(app, client, reason).await),
            }
        }
        Proof::Challenge { id, frames } => {
            let at = app.clock.now();
            let steps = challenge::take(app, &id, email, client, at, frames.len()).await?;
            match challenge::judge_frames(app, &steps, frames, pad).await? {
                Judged::Live(fused) => Ok(fused),
                Judged::Attack(_, reason) => {
                    Err(signin::refuse_enrolment(app, client, reason).await)
                }
            }
        }
    }
}

/// `POST /api/auth/challenge`: a fresh liveness challenge for an e-mail
/// (the same answer whether or not it has an account).
pub async fn challenge(app: &App, req: Request<Incoming>) -> Answer {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ChallengeBody<'a> {
        #[serde(borrow)]
        email: std::borrow::Cow<'a, str>,
    }
    let (body, client) = intake::read_body(app, req).await?;
    let b: ChallengeBody<'_> = intake::parse(&body)?;
    let email = Email::parse(&b.email).map_err(|e| bad_request(&e.to_string()))?;
    let issued = challenge::issue(app, &email, &client).await?;
    Ok(response::ok(StatusCode::OK, "Challenge issued", issued))
}

pub async fn login(app: &App, req: Request<Incoming>, action: Action) -> Answer {
    let (form, client) = intake::photo_form(app, req, FormKind::Login).await?;
    let email = Email::parse(&form.email).map_err(|e| bad_request(&e.to_string()))?;
    let at = app.clock.now();
    let (user, similarity) = sign_in(app, &email, form.proof, &client, at, action).await?;
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

/// Locks, liveness as `[liveness] signin` asks, then the comparison.
async fn sign_in(
    app: &App,
    email: &Email,
    proof: Proof,
    client: &ClientInfo,
    at: crate::store::Millis,
    action: Action,
) -> Result<(User, f32), Response<Body>> {
    let mode = app.config.liveness.signin;
    if matches!(proof, Proof::Photo(_)) && mode == crate::config::LivenessMode::Active {
        return Err(Refused::ChallengeRequired.into());
    }
    signin::check_locks(app, email, client, at, action).await?;
    let pad = signin::pad_in_force(app, mode)?;
    let (probe, attack) = match proof {
        Proof::Photo(photo) => {
            let face = signin::embed(app, photo).await?;
            let attack = signin::passive_verdict(app, &face, pad);
            (face.embedding, attack)
        }
        Proof::Challenge { id, frames } => {
            let steps = challenge::take(app, &id, email, client, at, frames.len()).await?;
            match challenge::judge_frames(app, &steps, frames, pad).await? {
                Judged::Live(fused) => (fused, None),
                Judged::Attack(fused, reason) => (fused, Some(reason)),
            }
        }
    };
    Ok(signin::compare(app, email, probe, client, at, action, attack).await?)
}
