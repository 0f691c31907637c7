//! The auth log for operators: search over everything the store holds, and a
//! live stream of what every daemon on the store writes from now on.
//!
//! The stream is JSON lines (`application/x-ndjson`): `{"type":"log","entry":..}`
//! per entry, `{"type":"heartbeat","at":..}` every 5 s (so a client notices a
//! dead daemon), and `{"type":"lagged","skipped":n}` if the client fell more
//! than 1024 entries behind. This daemon's own entries come from memory as
//! they are written; what other daemons sharing the database write is read
//! from the store every second ([`Others`]), so it arrives up to a second
//! later. Each entry names the instance that wrote it.

use std::collections::HashMap;
use std::sync::Arc;
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
use crate::store::{Action, AuthLog, LogCursor, LogFilter, Millis, Outcome, Store, StoreError};

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
        instance: l.instance.clone(),
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

/// How often a live stream looks in the store for what the other daemons on
/// it wrote (its own entries come at once, from memory).
const OTHERS_EVERY: Duration = Duration::from_secs(1);

/// How far back each look reaches: an entry committed up to this late, or
/// stamped by a clock up to this far behind ours, is still shown (once).
const OTHERS_LOOKBACK_MS: Millis = 10_000;

/// Entries read per look at most (pages of 1000); past that the stream says
/// it lagged.
const OTHERS_PAGES: usize = 10;

/// What the other instances on the store wrote since a stream opened.
struct Others {
    store: Arc<dyn Store>,
    /// The client's filter, leaving out this instance's entries.
    filter: LogFilter,
    /// Nothing stamped before the stream opened is shown.
    opened: Millis,
    /// Entries already streamed, with their times (forgotten once older than
    /// any look reaches).
    seen: HashMap<String, Millis>,
}

impl Others {
    fn new(store: Arc<dyn Store>, filter: &LogFilter, me: &str, opened: Millis) -> Self {
        Others {
            store,
            filter: LogFilter {
                exclude_instance: Some(me.to_string()),
                limit: 1000,
                before: None,
                ..filter.clone()
            },
            opened,
            seen: HashMap::new(),
        }
    }

    /// The entries not streamed yet, oldest first, and whether some were
    /// left unread (more than [`OTHERS_PAGES`] pages in the look's reach).
    async fn look(&mut self, now: Millis) -> Result<(Vec<AuthLog>, bool), StoreError> {
        let from = (now - OTHERS_LOOKBACK_MS).max(self.opened);
        let mut f = LogFilter {
            since: Some(self.filter.since.map_or(from, |s| s.max(from))),
            ..self.filter.clone()
        };
        let mut fresh = Vec::new();
        let mut unread = false;
        for page_no in 1.. {
            let page = self.store.logs(&f).await?;
            fresh.extend(
                page.entries
                    .into_iter()
                    .filter(|l| !self.seen.contains_key(&l.id)),
            );
            match page.next {
                Some(_) if page_no == OTHERS_PAGES => {
                    unread = true;
                    break;
                }
                Some(next) => f.before = Some(next),
                None => break,
            }
        }
        self.seen.retain(|_, at| *at >= from);
        self.seen.extend(fresh.iter().map(|l| (l.id.clone(), l.at)));
        fresh.reverse();
        Ok((fresh, unread))
    }
}

/// Follows this daemon's feed and the other instances' entries until the
/// client goes away.
pub async fn stream(app: &App, req: &Request<Incoming>) -> Answer {
    let f = filter(app, req, false).await?;
    let mut feed = app.feed.subscribe();
    let clock = std::sync::Arc::clone(&app.clock);
    let mut others = Others::new(Arc::clone(&app.store), &f, &app.instance, clock.now());
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(Duration::from_secs(5));
        let mut look = tokio::time::interval(OTHERS_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let out = tokio::select! {
                got = feed.recv() => match got {
                    Ok(l) if matches(&f, &l) => vec![line(&StreamEvent::Log { entry: Box::new(entry_wire(&l)) })],
                    Ok(_) => continue,
                    Err(RecvError::Lagged(skipped)) => vec![line(&StreamEvent::Lagged { skipped })],
                    Err(RecvError::Closed) => break,
                },
                _ = look.tick() => match others.look(clock.now()).await {
                    Ok((entries, unread)) => entries
                        .iter()
                        .map(|l| line(&StreamEvent::Log { entry: Box::new(entry_wire(l)) }))
                        // "At least one": the look stopped before the end.
                        .chain(unread.then(|| line(&StreamEvent::Lagged { skipped: 1 })))
                        .collect(),
                    Err(e) => {
                        tracing::debug!(error = %e, "live log: the other instances' entries not read");
                        continue;
                    }
                },
                _ = beat.tick() => vec![line(&StreamEvent::Heartbeat { at: timestamp(clock.now()) })],
            };
            for b in out {
                if tx.send(b).await.is_err() {
                    return;
                }
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
