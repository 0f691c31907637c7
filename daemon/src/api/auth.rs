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

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Answer;
use super::intake::{self, ClientInfo, FormKind, Proof};
use super::session;
use crate::App;
use crate::config::RegistrationMode;
use crate::http::ApiError;
use crate::http::response;
use crate::identity::{Email, Name};
use crate::signin::{self, Refused};
use crate::signin::{challenge, invite};
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

/// `POST /api/auth/register`, as `[registration] mode` allows: anyone,
/// holders of an invitation, or nobody (403 before the body is read).
pub async fn register(app: &App, req: Request<Incoming>) -> Answer {
    let policy = app.config.registration.mode;
    if policy == RegistrationMode::Closed {
        return Err(Refused::RegistrationClosed.into());
    }
    let (form, client) = intake::photo_form(app, req, FormKind::Register).await?;
    let name = Name::parse(form.name.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let email = Email::parse(&form.email).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let at = app.clock.now();
    // Taken before any face work (a random code costs nothing), given back
    // if the registration then fails for another reason.
    let invitation = match policy {
        RegistrationMode::Invite => {
            Some(invite::redeem(app, form.invite_code.as_deref(), &email, at).await?)
        }
        _ => None,
    };
    let enrolled = async {
        let mode = app.config.liveness.registration;
        let (embedding, attack) =
            signin::proven_face(app, mode, &email, form.proof, &client, at).await?;
        if let Some(reason) = attack {
            return Err(signin::refuse_enrolment(app, &client, reason).await);
        }
        signin::enrol(app, name, email.clone(), embedding, &client).await
    }
    .await;
    drop(form.upload);
    let user = match (enrolled, invitation) {
        (Ok(user), _) => user,
        (Err(refused), Some(invitation)) => {
            invitation.give_back(app).await;
            return Err(refused.into());
        }
        (Err(refused), None) => return Err(refused.into()),
    };
    let tokens = session::open(app, &user.id, user.created_at).await?;
    Ok(response::ok(
        StatusCode::CREATED,
        "Registration successful",
        json!({"user": user_json(&user), "tokens": tokens}),
    ))
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
    let email = Email::parse(&b.email).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let issued = challenge::issue(app, &email, &client).await?;
    Ok(response::ok(StatusCode::OK, "Challenge issued", issued))
}

pub async fn login(app: &App, req: Request<Incoming>, action: Action) -> Answer {
    let (form, client) = intake::photo_form(app, req, FormKind::Login).await?;
    let email = Email::parse(&form.email).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let at = app.clock.now();
    let (user, similarity, session) = sign_in(app, &email, form.proof, &client, at, action).await?;
    // The face work is done: the photo's share of the body budget goes back.
    drop(form.upload);
    Ok(response::ok(
        StatusCode::OK,
        "Face verification successful",
        json!({
            "user": user_json(&user),
            "tokens": session.tokens(app),
            "similarity": (similarity * 100.0).round() / 100.0,
        }),
    ))
}

/// Locks, liveness as `[liveness] signin` asks, then the comparison; on a
/// match, the success and the new session are on record when it returns.
async fn sign_in(
    app: &App,
    email: &Email,
    proof: Proof,
    client: &ClientInfo,
    at: crate::store::Millis,
    action: Action,
) -> Result<(User, f32, session::Opening), Refused> {
    let mode = app.config.liveness.signin;
    // Before the lock check: a photo can never succeed here, locked or not.
    if matches!(proof, Proof::Photo(_)) && mode == crate::config::LivenessMode::Active {
        return Err(Refused::ChallengeRequired);
    }
    let budgets = signin::budgets(app, email, client).await?;
    // The template needs no probe: it is read and opened while the face is
    // embedded, and the session it would open is made in the HSM (the
    // signature is most of a success's work after the match). The same for
    // an unknown account, against the decoy. Nothing of it is stored or
    // handed out unless the face matches.
    let face_work = async {
        tokio::join!(
            signin::proven_face(app, mode, email, proof, client, at),
            async {
                let reference = signin::reference(app, email).await?;
                let opening = session::prepare(app, reference.owner(), at).await?;
                Ok::<_, Refused>((reference, opening))
            }
        )
    };
    let (attempt, (proven, reference)) = if budgets.seen_locked(app, at) {
        // Seen locked here: the store's answer first, and no face work on a
        // refusal.
        let attempt = signin::reserve_budgets(app, budgets, client, at, action).await?;
        (attempt, face_work.await)
    } else {
        // The reservation's commit runs beside the face work: nothing is
        // compared, let alone accepted, before it is granted, and a refusal
        // answers at once (a face run not yet started is dropped unrun).
        let reserved = signin::reserve_budgets(app, budgets, client, at, action);
        tokio::try_join!(reserved, async { Ok(face_work.await) })?
    };
    let (probe, attack) = match proven {
        Ok(proven) => proven,
        // A photo problem, a refused challenge: not a failed comparison.
        Err(refused) => {
            attempt.release().await;
            return Err(refused);
        }
    };
    let (reference, opening) = reference?;
    let (user, similarity, success) =
        signin::compare_deferred(app, attempt, reference, probe, client, attack).await?;
    success.settle_with(app, opening.family()).await?;
    Ok((user, similarity, opening))
}
