//! The kiosk camera, driven by an operator: enrol a new account, or verify
//! that the person in front of the camera is the account they claim. Same
//! pipeline, sealing, lockouts and auth log as the mobile API; the log entry
//! names the camera and the operator's uid as the device.

use std::sync::Arc;

use arclock_proto as proto;
use http::Request;
use hyper::body::Incoming;

use super::users::user_wire;
use super::{Answer, Operator, json_body, ok};
use crate::App;
use crate::api::intake::ClientInfo;
use crate::http::{ApiError, Code};
use crate::identity::{Email, Name};
use crate::kiosk::Kiosk;
use crate::signin::{self, compare, enrol};
use crate::store::{Action, similarity_bucket};

fn kiosk(app: &App) -> Result<&Arc<Kiosk>, ApiError> {
    app.kiosk.as_ref().ok_or_else(|| {
        ApiError::new(
            Code::NoCamera,
            "No camera is configured",
            "set [camera] enabled = true in arclockd.toml",
        )
    })
}

/// The auth log's device field for a camera action.
fn client(kiosk: &Kiosk, op: Operator) -> ClientInfo {
    ClientInfo {
        ip: None,
        user_agent: Some(format!(
            "camera {} (operator uid {})",
            kiosk.device(),
            op.uid
        )),
    }
}

/// A burst from the camera, best face embedded; face problems are 422 with
/// the reason ("no face found", "low quality photo: blur"), a missing device 503.
async fn capture(app: &App, kiosk: &Arc<Kiosk>) -> Result<arclock_face::Face, ApiError> {
    match kiosk.best_face(&app.face).await {
        Ok(face) => Ok(face),
        Err(e) if e.is_photo_problem() => Err(signin::face_refusal(e, None).into()),
        Err(e) => Err(ApiError::unavailable(
            &format!("the camera {}", kiosk.device()),
            &e,
        )),
    }
}

pub async fn enrol_new(app: &App, req: Request<Incoming>, op: Operator) -> Answer {
    let kiosk = kiosk(app)?;
    let body: proto::EnrolRequest = json_body(req).await?;
    let name = Name::parse(&body.name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let email = Email::parse(&body.email).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mode = app.config.liveness.registration;
    let pad = signin::pad_in_force(app, mode)?;
    let face = capture(app, kiosk).await?;
    super::operator_event(app, op, None, "camera enrol", None).await;
    let client = client(kiosk, op);
    if let Some(reason) = signin::passive_verdict(app, &face, pad) {
        return Err(ApiError::from(
            signin::refuse_enrolment(app, &client, reason).await,
        ));
    }
    let user = enrol(app, name, email, face.embedding, &client).await?;
    Ok(ok(
        "enrolled from the camera",
        proto::Enrolment {
            user: user_wire(&user),
        },
    ))
}

/// 200 with the similarity bucket on a match; 401 `VERIFICATION_FAILED` or
/// 429 `ACCOUNT_LOCKED` exactly as a mobile login would get.
pub async fn verify(app: &App, req: Request<Incoming>, op: Operator) -> Answer {
    let kiosk = kiosk(app)?;
    let body: proto::VerifyRequest = json_body(req).await?;
    let email = Email::parse(&body.email).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let client = client(kiosk, op);
    let at = app.clock.now();
    super::operator_event(app, op, None, "camera verify", None).await;
    let attempt = signin::reserve(app, &email, &client, at, Action::VerifyFace).await?;
    let pad = signin::pad_in_force(app, app.config.liveness.signin)?;
    let face = capture(app, kiosk).await?;
    let attack = signin::passive_verdict(app, &face, pad);
    let (user, similarity) = compare(app, attempt, &email, face.embedding, &client, attack).await?;
    Ok(ok(
        "face verified",
        proto::CameraMatch {
            user: user_wire(&user),
            similarity_bucket: similarity_bucket(similarity),
        },
    ))
}
