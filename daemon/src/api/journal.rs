//! Writing the auth log: one entry per security-relevant request, with the
//! client's address and device, a similarity bucket (never the score) and a
//! reason (never the input). A log write that fails is reported in the
//! daemon's own log but does not fail the request that caused it.

use super::intake::ClientInfo;
use crate::App;
use crate::identity::UserId;
use crate::store::{Action, AuthLog, Millis, Outcome};

/// What happened, to whom, how it ended.
pub struct Event<'a> {
    pub at: Millis,
    pub user: Option<&'a UserId>,
    pub action: Action,
    pub outcome: Outcome,
    pub reason: Option<&'a str>,
    pub bucket: Option<u8>,
}

impl<'a> Event<'a> {
    pub fn ok(at: Millis, user: Option<&'a UserId>, action: Action) -> Self {
        Event {
            at,
            user,
            action,
            outcome: Outcome::Success,
            reason: None,
            bucket: None,
        }
    }

    pub fn failed(at: Millis, user: Option<&'a UserId>, action: Action, reason: &'a str) -> Self {
        Event {
            outcome: Outcome::Failure,
            reason: Some(reason),
            ..Event::ok(at, user, action)
        }
    }
}

/// The entry as the store keeps it, naming this instance as its writer.
pub fn entry(app: &App, client: &ClientInfo, e: &Event<'_>) -> AuthLog {
    AuthLog {
        id: String::new(),
        at: e.at,
        user_id: e.user.cloned(),
        action: e.action,
        outcome: e.outcome,
        reason: e.reason.map(str::to_string),
        similarity_bucket: e.bucket,
        client_ip: client.ip.clone(),
        user_agent: client.user_agent.clone(),
        instance: Some(app.instance.clone()),
    }
}

pub async fn record(app: &App, client: &ClientInfo, e: Event<'_>) {
    if let Err(err) = app.journal(entry(app, client, &e)).await {
        tracing::warn!(error = %err, action = e.action.as_str(), "auth log not written");
    }
}
