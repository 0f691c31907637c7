//! Accounts for operators: listed without any biometric data (the store
//! returns none here), disabled, enabled or deleted.

use arclock_proto as proto;
use http::Request;
use hyper::body::Incoming;

use super::{Answer, Operator, audit, ok, user_id};
use crate::App;
use crate::api::logs::{params, unknown};
use crate::http::ApiError;
use crate::http::response::timestamp;
use crate::identity::UserId;
use crate::store::{Action, AuthLog, Outcome, User, UserStatus};

/// An account as operators see it (the console reads the same type).
pub(super) fn user_wire(u: &User) -> proto::User {
    proto::User {
        id: u.id.to_string(),
        name: u.name.as_str().to_string(),
        email: u.email.as_str().to_string(),
        status: u.status.as_str().to_string(),
        created_at: timestamp(u.created_at),
    }
}

/// `?after=<id>&limit=1..=500` (default 100), in id order.
pub async fn list(app: &App, req: &Request<Incoming>) -> Answer {
    let (mut after, mut limit) = (None, 100usize);
    for (k, v) in params(req.uri().query()).map_err(ApiError::bad_request)? {
        match k.as_str() {
            "after" => after = Some(user_id(&v)?),
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=500).contains(n))
                    .ok_or_else(|| ApiError::bad_request("limit: must be 1..=500"))?
            }
            _ => return Err(ApiError::bad_request(unknown(&k))),
        }
    }
    let users = app.store.list_users(after.as_ref(), limit + 1).await?;
    let more = users.len() > limit;
    let page = &users[..users.len().min(limit)];
    let next = more.then(|| page.last().map(|u| u.id.clone())).flatten();
    Ok(ok(
        "users",
        proto::UserPage {
            users: page.iter().map(user_wire).collect(),
            next: next.map(|id| id.to_string()),
        },
    ))
}

/// Disabling takes effect at once: sign-in treats the account as unknown and
/// `authenticate` refuses its outstanding access tokens.
pub async fn set_status(app: &App, id: &str, enable: bool, op: Operator) -> Answer {
    let id = user_id(id)?;
    let status = if enable {
        UserStatus::Active
    } else {
        UserStatus::Disabled
    };
    let found = app.store.set_status(&id, status).await?;
    if !found {
        return Err(ApiError::not_found("No such user"));
    }
    let what = if enable {
        "enable account"
    } else {
        "disable account"
    };
    audit(app, op, Some(&id), what, Outcome::Success).await;
    Ok(ok(
        what,
        proto::StatusChange {
            id: id.to_string(),
            status: status.as_str().to_string(),
        },
    ))
}

/// The same crypto-shredding as the user's own deletion; the log keeps an
/// anonymous entry naming the operator.
pub async fn delete(app: &App, id: &str, op: Operator) -> Answer {
    let id: UserId = user_id(id)?;
    let entry = AuthLog {
        id: String::new(),
        at: app.clock.now(),
        user_id: None,
        action: Action::Admin,
        outcome: Outcome::Success,
        // The account is named by its id (random, and all that is left of it).
        reason: Some(format!("delete account {id} by operator uid {}", op.uid)),
        similarity_bucket: None,
        client_ip: None,
        user_agent: Some(format!("admin-socket uid={}", op.uid)),
        instance: Some(app.instance.clone()),
    };
    let deleted = app.store.delete_user(&id, &entry).await?;
    if !deleted {
        return Err(ApiError::not_found("No such user"));
    }
    super::operator_event(app, op, Some(&id), "delete account", None).await;
    let _ = app.feed.send(entry);
    Ok(ok("account deleted", proto::UserRef { id: id.to_string() }))
}
