//! The caller's own history: `GET /api/logs/auth` (every sign-in, refresh,
//! logout and profile change) and `GET /api/logs/failures` (failed face
//! attempts), newest first, `?limit` (default 20, at most 100) with an opaque
//! `cursor` for the next page and optional filters. Entries carry a
//! similarity rounded down to tenths, never the score (the origin returned
//! raw scores, which help an attacker tune a presentation attack).

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::Answer;
use super::session::authenticate;
use crate::App;
use crate::http::ApiError;
use crate::http::response::{self};
use crate::store::{Action, AuthLog, LogCursor, LogFilter, Millis, Outcome};

/// Which listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Auth,
    Failures,
}

/// The query string, parsed strictly: unknown or repeated parameters and bad
/// values are 400, never silently ignored.
pub(crate) fn filter<B>(req: &Request<B>, listing: Listing) -> Result<LogFilter, ApiError> {
    let mut f = LogFilter {
        limit: 20,
        ..LogFilter::default()
    };
    for (k, v) in params(req.uri().query()).map_err(ApiError::bad_request)? {
        let bad = |what: &str| ApiError::bad_request(format!("query parameter {k}: {what}"));
        match (listing, k.as_ref()) {
            (_, "limit") => {
                f.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| bad("must be 1..=100"))?;
            }
            (_, "cursor") => {
                f.before = Some(LogCursor::decode(&v).ok_or_else(|| bad("not a cursor"))?);
            }
            (_, "since") => f.since = Some(time(&v).ok_or_else(|| bad("not a time"))?),
            (_, "until") => f.until = Some(time(&v).ok_or_else(|| bad("not a time"))?),
            (Listing::Auth, "action") => {
                f.action = Some(
                    Action::parse(&v)
                        .ok()
                        .filter(|a| *a != Action::Admin)
                        .ok_or_else(|| bad("unknown action"))?,
                );
            }
            (Listing::Auth, "status") => {
                f.outcome = Some(Outcome::parse(&v).map_err(|_| bad("unknown status"))?);
            }
            _ => return Err(ApiError::bad_request(unknown(&k))),
        }
    }
    if listing == Listing::Failures {
        f.outcome = Some(Outcome::Failure);
    }
    Ok(f)
}

/// A query string's pairs, decoded; a parameter given twice is an error
/// (which one would win is exactly what an attacker probes).
pub(crate) fn params(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if pairs.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("query parameter {} appears twice", clip(&k)));
        }
        pairs.push((k.into_owned(), v.into_owned()));
    }
    Ok(pairs)
}

/// The message for a parameter nobody asked for (its name cut to 64 chars).
pub(crate) fn unknown(k: &str) -> String {
    format!("unknown query parameter {}", clip(k))
}

fn clip(k: &str) -> String {
    k.chars().take(64).collect()
}

/// RFC 3339 (any offset, any year the format allows) or milliseconds since
/// the epoch.
pub(crate) fn time(s: &str) -> Option<Millis> {
    if let Ok(ms) = s.parse::<Millis>() {
        return Some(ms);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Millis::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

fn entry_json(l: &AuthLog, listing: Listing) -> serde_json::Value {
    let mut v = json!({
        "_id": l.id,
        "id": l.id,
        "userId": l.user_id,
        "action": l.action.as_str(),
        "reason": l.reason,
        "device": l.user_agent,
        "ipAddress": l.client_ip,
        "timestamp": response::timestamp(l.at),
    });
    if listing == Listing::Auth
        && let Some(obj) = v.as_object_mut()
    {
        obj.insert("status".into(), json!(l.outcome.as_str()));
        obj.insert(
            "similarity".into(),
            json!(l.similarity_bucket.map(|b| f32::from(b) / 10.0)),
        );
    }
    v
}

pub async fn list(app: &App, req: Request<Incoming>, listing: Listing) -> Answer {
    let caller = authenticate(app, &req).await?;
    let mut f = filter(&req, listing)?;
    f.user_id = Some(caller.user.id.clone());
    let page = app.store.logs(&f).await?;
    let entries: Vec<_> = page
        .entries
        .iter()
        .map(|l| entry_json(l, listing))
        .collect();
    let next = page.next.map(|c| c.encode());
    let (key, message) = match listing {
        Listing::Auth => ("logs", "Auth logs retrieved successfully"),
        Listing::Failures => ("attempts", "Failed attempts retrieved successfully"),
    };
    Ok(response::ok(
        StatusCode::OK,
        message,
        json!({key: entries, "nextCursor": next}),
    ))
}

#[cfg(test)]
mod tests {
    use super::time;

    #[test]
    fn times_are_rfc3339_with_any_offset_or_milliseconds() {
        assert_eq!(time("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(time("-5"), Some(-5));
        assert_eq!(time("2023-11-14T22:13:20Z"), Some(1_700_000_000_000));
        assert_eq!(time("2023-11-14T23:13:20.5+01:00"), Some(1_700_000_000_500));
        assert_eq!(time("2023-11-14t22:13:20z"), Some(1_700_000_000_000));
        assert_eq!(time("1969-12-31T23:59:59Z"), Some(-1000));
        for bad in ["yesterday", "2023-13-01T00:00:00Z", "2023-11-14", ""] {
            assert_eq!(time(bad), None, "{bad}");
        }
    }
}
