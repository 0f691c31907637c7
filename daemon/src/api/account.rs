//! The caller's own account: `GET`/`PUT /api/user/profile` and
//! `DELETE /api/user/delete` (crypto-shredding: the wrapped private key and
//! the encrypted template are deleted, so no copy of the template that
//! survives anywhere, in a backup or a replica, can be opened again).

use std::borrow::Cow;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::Answer;
use super::auth::user_json;
use super::intake::{self, ClientInfo};
use super::journal::{self, Event};
use super::session::authenticate;
use crate::App;
use crate::http::ApiError;
use crate::http::response::{self};
use crate::identity::Name;
use crate::signin::email_subject;
use crate::store::Action;

/// `GET /api/user/profile`: the user plus `securityStatus` ("active", or
/// "locked" while failed face attempts lock the account) and `lockedUntil`.
pub async fn get(app: &App, req: Request<Incoming>) -> Answer {
    let caller = authenticate(app, &req).await?;
    let now = app.clock.now();
    let subject = email_subject(app, &caller.user.email).await?;
    let locked = app.store.locked_until(&subject, now).await?;
    let mut data = user_json(&caller.user);
    if let Some(obj) = data.as_object_mut() {
        obj.insert(
            "securityStatus".into(),
            json!(if locked.is_some() { "locked" } else { "active" }),
        );
        obj.insert("lockedUntil".into(), json!(locked.map(response::timestamp)));
    }
    Ok(response::ok(
        StatusCode::OK,
        "Profile retrieved successfully",
        data,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileBody<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// The new display name a profile body asks for.
pub(crate) fn profile_name(body: &[u8]) -> Result<Name, ApiError> {
    let b: ProfileBody<'_> = intake::parse(body)?;
    Name::parse(&b.name).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `PUT /api/user/profile {name}`: only the display name can change (the
/// e-mail is the login name; the face is changed by re-registering).
pub async fn put(app: &App, req: Request<Incoming>) -> Answer {
    let caller = authenticate(app, &req).await?;
    let (body, client) = intake::read_body(app, req).await?;
    let name = profile_name(&body)?;
    drop(body);
    let user = app
        .store
        .update_name(&caller.user.id, &name)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let at = app.clock.now();
    journal::record(
        app,
        &client,
        Event::ok(at, Some(&user.id), Action::UpdateProfile),
    )
    .await;
    Ok(response::ok(
        StatusCode::OK,
        "Profile updated successfully",
        user_json(&user),
    ))
}

/// `DELETE /api/user/delete`: the account, its template, wrapped key and
/// sessions go; its log entries stay, anonymised, plus one anonymous entry
/// saying an account was deleted.
pub async fn delete(app: &App, req: Request<Incoming>) -> Answer {
    let caller = authenticate(app, &req).await?;
    let client = ClientInfo::from(&req);
    let at = app.clock.now();
    let entry = journal::entry(app, &client, &Event::ok(at, None, Action::DeleteAccount));
    let deleted = app.store.delete_user(&caller.user.id, &entry).await?;
    if !deleted {
        return Err(ApiError::unauthorized());
    }
    let _ = app.feed.send(entry);
    tracing::info!("account deleted");
    Ok(response::ok(
        StatusCode::OK,
        "Account deleted successfully",
        serde_json::Value::Null,
    ))
}
