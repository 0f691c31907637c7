//! The browser reference client (`daemon/app/`), served at `/app/` from the
//! binary itself: nothing to deploy next to it, nothing on disk to tamper
//! with, and no Node at run time (plain ES modules, no bundler).
//!
//! Its pages get their own, still narrow, Content-Security-Policy (scripts,
//! styles and requests to this origin only, no inline code) and are the only
//! answers that allow the camera; the API keeps `default-src 'none'` and
//! `camera=()`.

use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Bytes;

use crate::http::response::{self, Body};
use crate::http::{ApiError, Code};

/// Every file of the client: path, media type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "/app/",
        "text/html; charset=utf-8",
        include_bytes!("../app/index.html"),
    ),
    (
        "/app/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../app/app.js"),
    ),
    (
        "/app/app.css",
        "text/css; charset=utf-8",
        include_bytes!("../app/app.css"),
    ),
];

/// The pages' policy: nothing from elsewhere, no inline script or style, no
/// plugins, frames, forms posting away or `<base>` tricks. `connect-src
/// 'self'` is what keeps a frame from leaving for anywhere but this daemon.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self'; media-src 'self'; connect-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// The camera for this origin's pages, nothing else.
pub const PERMISSIONS: &str = "camera=(self), microphone=(), geolocation=(), payment=(), usb=()";

/// The answer for a path under `/app`, or `None` when no file has it (the
/// caller answers 404 like any unknown route).
pub fn serve(method: &Method, path: &str) -> Option<Response<Body>> {
    if path == "/app" {
        let mut r = response::secure(Response::new(Full::new(Bytes::new())));
        *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/app/"));
        return Some(r);
    }
    let path = if path == "/app/index.html" {
        "/app/"
    } else {
        path
    };
    let (_, media, bytes) = FILES.iter().find(|(p, _, _)| *p == path)?;
    if method != Method::GET && method != Method::HEAD {
        return Some(response::secure(
            ApiError::new(
                Code::MethodNotAllowed,
                "Method not allowed",
                "the client's files are read with GET",
            )
            .with_header(header::ALLOW, "GET, HEAD")
            .into(),
        ));
    }
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from_static(bytes)
    };
    let mut r = response::secure(Response::new(Full::new(body)));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert("permissions-policy", HeaderValue::from_static(PERMISSIONS));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_load_nothing_from_elsewhere_and_no_inline_code() {
        let html = std::str::from_utf8(FILES[0].2).unwrap();
        assert!(!html.contains("<script>") && !html.contains(" style="));
        assert!(!html.contains("http://") && !html.contains("https://"));
        for (_, _, bytes) in FILES {
            let text = std::str::from_utf8(bytes).unwrap();
            for banned in ["localStorage", "sessionStorage", "indexedDB", "eval("] {
                assert!(!text.contains(banned), "{banned}");
            }
        }
    }

    /// Every error code the public API can answer has a sentence in the
    /// client: a new [`Code`] fails here until the client can say it.
    #[test]
    fn the_client_can_say_every_error_code() {
        let js = std::str::from_utf8(FILES[1].2).unwrap();
        let missing: Vec<&str> = Code::ALL
            .iter()
            .filter(|c| !c.admin_only())
            .map(|c| c.as_str())
            .filter(|c| !js.contains(&format!("  {c}: ")))
            .collect();
        assert!(missing.is_empty(), "app.js has no message for {missing:?}");
    }

    #[test]
    fn only_files_and_the_redirect_answer() {
        assert!(serve(&Method::GET, "/app/nope.js").is_none());
        assert!(serve(&Method::GET, "/app/../Cargo.toml").is_none());
        let r = serve(&Method::GET, "/app").unwrap();
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        let r = serve(&Method::POST, "/app/").unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let r = serve(&Method::GET, "/app/").unwrap();
        assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
    }
}
