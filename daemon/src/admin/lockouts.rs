//! Lockouts in force, and lifting them.
//!
//! An account lockout is keyed by a pseudonym of the e-mail (an HMAC in the
//! HSM, so that lockouts of addresses without an account look like any
//! other); to show operators whose it is, the pseudonyms are matched against
//! those of the accounts' e-mails. One that matches none is an address with
//! no account, shown as such.

use std::collections::HashMap;

use arclock_proto as proto;
use http::Request;
use hyper::body::Incoming;

use super::{Answer, Operator, audit, json_body, ok};
use crate::App;
use crate::http::ApiError;
use crate::http::response::timestamp;
use crate::signin::email_subjects;
use crate::store::{EmailKey, Outcome, Subject, User};

/// Accounts scanned to name locked e-mails, at most (an appliance-sized
/// directory; beyond it, lockouts show their hash only).
const SCAN_USERS: usize = 100_000;

/// The accounts whose e-mail pseudonym is one of `keys` (one HSM call per
/// page of accounts).
async fn owners(app: &App, keys: &[&EmailKey]) -> Result<HashMap<EmailKey, User>, ApiError> {
    let mut found = HashMap::new();
    let mut after = None;
    let mut scanned = 0;
    while found.len() < keys.len() && scanned < SCAN_USERS {
        let page = app.store.list_users(after.as_ref(), 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        scanned += page.len();
        let emails: Vec<&crate::identity::Email> = page.iter().map(|u| &u.email).collect();
        let subjects = email_subjects(app, &emails).await?;
        for (u, s) in page.iter().zip(subjects) {
            if let Subject::Account(h) = s
                && keys.contains(&&h)
            {
                found.insert(h, u.clone());
            }
        }
    }
    Ok(found)
}

pub async fn list(app: &App) -> Answer {
    let now = app.clock.now();
    let locks = app.store.lockouts(now).await?;
    let keys: Vec<&EmailKey> = locks
        .iter()
        .filter_map(|(s, _)| match s {
            Subject::Account(h) => Some(h),
            Subject::Ip(_) => None,
        })
        .collect();
    let owners = owners(app, &keys).await?;
    let rows: Vec<_> = locks
        .iter()
        .map(|(s, until)| {
            let (kind, key, user) = match s {
                Subject::Account(h) => ("account", h.to_string(), owners.get(h)),
                Subject::Ip(ip) => ("ip", ip.clone(), None),
            };
            proto::Lockout {
                kind: kind.to_string(),
                key,
                email: user.map(|u| u.email.as_str().to_string()),
                user_id: user.map(|u| u.id.to_string()),
                until: timestamp(*until),
                seconds_left: (((until - now).max(0) + 999) / 1000) as u64,
            }
        })
        .collect();
    Ok(ok("lockouts in force", proto::Lockouts { lockouts: rows }))
}

pub async fn unlock(app: &App, req: Request<Incoming>, op: Operator) -> Answer {
    let body: proto::Unlock = json_body(req).await?;
    let subject = match body.kind.as_str() {
        "account" => Subject::Account(
            EmailKey::parse(&body.key)
                .ok_or_else(|| ApiError::bad_request("key: not an account lockout key"))?,
        ),
        "ip" => Subject::Ip(
            body.key
                .parse::<std::net::IpAddr>()
                .map_err(|_| ApiError::bad_request("key: not an IP address"))?
                .to_string(),
        ),
        _ => return Err(ApiError::bad_request("kind: must be \"account\" or \"ip\"")),
    };
    let lifted = app.store.unlock(&subject).await?;
    if !lifted {
        return Err(ApiError::not_found("No such lockout"));
    }
    let owner = match &subject {
        Subject::Account(h) => owners(app, &[h])
            .await
            .ok()
            .and_then(|mut m| m.remove(h))
            .map(|u| u.id),
        Subject::Ip(_) => None,
    };
    let what = match &subject {
        Subject::Account(_) => "unlock account".to_string(),
        Subject::Ip(ip) => format!("unlock ip {ip}"),
    };
    audit(app, op, owner.as_ref(), &what, Outcome::Success).await;
    Ok(ok("lockout lifted", body))
}
