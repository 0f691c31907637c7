//! The auth log for operators: search over everything the store holds, and a
//! live stream of what this daemon writes from now on.
//!
//! The stream is JSON lines (`application/x-ndjson`): `{"type":"log","entry":..}`
//! per entry, `{"type":"heartbeat","at":..}` every 5 s (so a client notices a
//! dead daemon), and `{"type":"lagged","skipped":n}` if the client fell more
//! than 1024 entries behind. Entries written by other daemons sharing a
//! MongoDB store are not streamed; search finds them.

use std::time::Duration;

use arclock_proto::{self as proto, StreamEvent};
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use tokio::sync::broadcast::error::RecvError;

use super::{Answer, ok};
use crate::App;
use crate::api::logs::{params, time, unknown};
use crate::http::ApiError;
use crate::http::response::timestamp;
use crate::identity::{Email, UserId};
use crate::store::{Action, AuthLog, LogCursor, LogFilter, Outcome};

/// An entry for operators: everything the store keeps (which is never more
/// than a similarity bucket, an address and a device string).
pub(super) fn entry_wire(l: &AuthLog) -> proto::LogEntry {
    proto::LogEntry {
        id: l.id.clone(),
        at: timestamp(l.at),
        at_ms: l.at,
        user_id: l.user_id.as_ref().map(ToString::to_string),
        action: l.action.as_str().to_string(),
        outcome: l.outcome.as_str().to_string(),
        reason: l.reason.clone(),
        similarity_bucket: l.similarity_bucket,
        ip: l.client_ip.clone(),
        device: l.user_agent.clone(),
    }
}

/// The query, strictly: unknown or repeated parameters are 400. `paged`
/// allows `limit` and `cursor` (search), not the stream.
async fn filter(app: &App, req: &Request<Incoming>, paged: bool) -> Result<LogFilter, ApiError> {
    let mut f = LogFilter {
        limit: 100,
        ..LogFilter::default()
    };
    for (k, v) in params(req.uri().query()).map_err(ApiError::bad_request)? {
        let bad = |what: &str| ApiError::bad_request(format!("query parameter {k}: {what}"));
        match k.as_str() {
            "limit" if paged => {
                f.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| bad("must be 1..=1000"))?;
            }
            "cursor" if paged => {
                f.before = Some(LogCursor::decode(&v).ok_or_else(|| bad("not a cursor"))?)
            }
            "since" => f.since = Some(time(&v).ok_or_else(|| bad("not a time"))?),
            "until" => f.until = Some(time(&v).ok_or_else(|| bad("not a time"))?),
            "outcome" => f.outcome = Some(Outcome::parse(&v).map_err(|_| bad("unknown outcome"))?),
            "action" => f.action = Some(Action::parse(&v).map_err(|_| bad("unknown action"))?),
            "ip" => {
                let ip: std::net::IpAddr = v.parse().map_err(|_| bad("not an IP address"))?;
                f.client_ip = Some(ip.to_string());
            }
            "user" => f.user_id = Some(user(app, &v).await?),
            _ => return Err(ApiError::bad_request(unknown(&k))),
        }
    }
    Ok(f)
}

/// A user named by id or by e-mail address.
async fn user(app: &App, v: &str) -> Result<UserId, ApiError> {
    if let Some(id) = UserId::parse(v) {
        return Ok(id);
    }
    let email = Email::parse(v)
        .map_err(|_| ApiError::bad_request("user: neither a user id nor an e-mail"))?;
    app.store
        .user_by_email(&email)
        .await?
        .map(|u| u.id)
        .ok_or_else(|| ApiError::not_found("No account has this e-mail"))
}

pub async fn search(app: &App, req: &Request<Incoming>) -> Answer {
    let f = filter(app, req, true).await?;
    let page = app.store.logs(&f).await?;
    Ok(ok(
        "log entries",
        proto::LogPage {
            logs: page.entries.iter().map(entry_wire).collect(),
            next_cursor: page.next.map(|c| c.encode()),
        },
    ))
}

fn matches(f: &LogFilter, l: &AuthLog) -> bool {
    f.user_id
        .as_ref()
        .is_none_or(|u| l.user_id.as_ref() == Some(u))
        && f.action.is_none_or(|a| a == l.action)
        && f.outcome.is_none_or(|o| o == l.outcome)
        && f.client_ip
            .as_ref()
            .is_none_or(|ip| l.client_ip.as_ref() == Some(ip))
        && f.since.is_none_or(|t| l.at >= t)
        && f.until.is_none_or(|t| l.at < t)
}

fn line(event: &StreamEvent) -> Bytes {
    let mut b = serde_json::to_vec(event).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// Follows the feed until the client goes away.
pub async fn stream(app: &App, req: &Request<Incoming>) -> Answer {
    let f = filter(app, req, false).await?;
    let mut feed = app.feed.subscribe();
    let clock = std::sync::Arc::clone(&app.clock);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(Duration::from_secs(5));
        loop {
            let out = tokio::select! {
                got = feed.recv() => match got {
                    Ok(l) if matches(&f, &l) => line(&StreamEvent::Log { entry: entry_wire(&l) }),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(skipped)) => line(&StreamEvent::Lagged { skipped }),
                    Err(RecvError::Closed) => break,
                },
                _ = beat.tick() => line(&StreamEvent::Heartbeat { at: timestamp(clock.now()) }),
            };
            if tx.send(out).await.is_err() {
                break;
            }
        }
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(frames).boxed_unsync());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
