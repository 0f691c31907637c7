//! `POST /v1/invites`: an enrolment invitation for `[registration] mode =
//! "invite"`, optionally for one address, lasting `ttlSecs` (the config's
//! `invite_ttl_secs` by default). The code is in this answer only; the store
//! keeps its hash, and the auth log names the operator.

use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::{Answer, Operator, audit, json_body, whole};
use crate::App;
use crate::http::ApiError;
use crate::http::response;
use crate::identity::Email;
use crate::signin::invite;
use crate::store::Outcome;

pub async fn create(app: &App, req: Request<Incoming>, op: Operator) -> Answer {
    let body: arclock_proto::InviteRequest = json_body(req).await?;
    let email = body
        .email
        .as_deref()
        .map(Email::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if body
        .ttl_secs
        .is_some_and(|t| !(60..=90 * 24 * 3600).contains(&t))
    {
        return Err(ApiError::bad_request(
            "ttlSecs must be 60..=7776000 (90 days)",
        ));
    }
    let what = match &email {
        Some(e) => format!("create invitation for {e}"),
        None => "create invitation".to_string(),
    };
    let issued = invite::issue(app, email, body.ttl_secs).await?;
    audit(app, op, None, &what, Outcome::Success).await;
    Ok(whole(response::ok(
        StatusCode::CREATED,
        "invitation created",
        issued,
    )))
}
