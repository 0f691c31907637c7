//! Entry points for the cargo-fuzz targets in `fuzz/`: every parser a
//! request's bytes reach before the HSM, the store or the face models do,
//! called the way the handlers call them. Built only with the `fuzzing`
//! feature.
//!
//! The oracle beyond "does not panic": pure parsing refuses with a 4xx in
//! the envelope, never a 5xx, and what it accepts satisfies the types'
//! invariants.
// An oracle reports by panicking: that is what the fuzzer catches.
#![allow(clippy::panic)]

use std::sync::OnceLock;
use std::time::Duration;

use http::{Request, header};
use http_body_util::Full;
use hyper::body::Bytes;

use crate::api::intake::{self, BodyLimits, FormKind};
use crate::api::{account, logs, session};
use crate::http::ApiError;
use crate::identity::{Email, Name};

/// One request body or query string, chosen by the first byte:
/// 0 register form (JSON), 1 login form (JSON), 2 register form
/// (multipart), 3 refresh body, 4 logout body, 5 profile body, 6 log query,
/// 7 a bare e-mail and name.
pub fn request(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => form(rest, "application/json", FormKind::Register),
        1 => form(rest, "application/json", FormKind::Login),
        2 => form(
            rest,
            "multipart/form-data; boundary=ArcLockFuzz",
            FormKind::Register,
        ),
        3 => drop(refused_with_4xx(session::presented_refresh(rest))),
        4 => drop(refused_with_4xx(session::logout_refresh(rest))),
        5 => {
            if let Ok(name) = refused_with_4xx(account::profile_name(rest)) {
                check_name(name.as_str());
            }
        }
        6 => query(rest),
        _ => identity(rest),
    }
}

/// Limits small enough that a fuzzer explores the size checks.
const LIMITS: BodyLimits = BodyLimits {
    bytes: 64 * 1024,
    timeout: Duration::from_secs(5),
    budget: None,
};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("no tokio runtime: {e}"))
    })
}

fn form(body: &[u8], content_type: &str, kind: FormKind) {
    let Ok(req) = Request::builder()
        .method("POST")
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::copy_from_slice(body)))
    else {
        return;
    };
    let out = runtime().block_on(intake::photo_form_within(LIMITS, req, kind));
    let Ok((form, _client)) = refused_with_4xx(out) else {
        return;
    };
    match &form.proof {
        intake::Proof::Photo(p) => assert!(!p.is_empty(), "a form was accepted without a photo"),
        intake::Proof::Challenge { id, frames } => {
            assert!(!id.is_empty(), "a challenge answer without an id");
            assert!(
                (1..=intake::MAX_FRAMES).contains(&frames.len())
                    && frames.iter().all(|f| !f.is_empty()),
                "a challenge answer with {} frames",
                frames.len()
            );
        }
    }
    assert_eq!(form.name.is_some(), kind == FormKind::Register);
    if let Some(name) = &form.name {
        check_name(name);
    }
    check_email(&form.email);
}

fn query(rest: &[u8]) {
    let Ok(q) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(req) = Request::builder()
        .uri(format!("/api/logs/auth?{q}"))
        .body(())
    else {
        return;
    };
    for listing in [logs::Listing::Auth, logs::Listing::Failures] {
        if let Ok(f) = refused_with_4xx(logs::filter(&req, listing)) {
            assert!((1..=100).contains(&f.limit), "limit {}", f.limit);
        }
    }
}

fn identity(rest: &[u8]) {
    let s = String::from_utf8_lossy(rest);
    check_email(&s);
    check_name(&s);
}

fn check_email(raw: &str) {
    if let Ok(e) = Email::parse(raw) {
        let s = e.as_str();
        assert_eq!(s, s.trim().to_lowercase(), "e-mail not normalised");
        assert_eq!(Email::parse(s).ok().as_ref(), Some(&e), "not idempotent");
    }
}

fn check_name(raw: &str) {
    if let Ok(n) = Name::parse(raw) {
        let s = n.as_str();
        assert!(!s.trim().is_empty(), "blank name accepted");
        assert!(!s.contains(['<', '>']), "markup survived: {s:?}");
        assert!(!s.chars().any(char::is_control), "control character kept");
        assert_eq!(Name::parse(s).ok().as_ref(), Some(&n), "not idempotent");
    }
}

/// The refusal of a pure parser must be the client's fault.
fn refused_with_4xx<T>(r: Result<T, ApiError>) -> Result<T, ()> {
    r.map_err(|resp| {
        assert!(
            resp.status().is_client_error(),
            "parsing answered {}",
            resp.status()
        );
    })
}
