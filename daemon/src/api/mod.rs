//! Routes of the public API. Each route group has its own file; this one
//! dispatches and guarantees that every answer, including 404 and 405, is in
//! the mobile app's envelope and carries the security headers.

mod auth;
mod health;
mod keys;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::App;
use crate::http::response::{self, Body};

/// Routes one request.
pub async fn handle(app: Arc<App>, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    req.extensions_mut().insert(peer);
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = match (&method, path.as_str()) {
        (&Method::POST, "/api/auth/register") => either(auth::register(&app, req).await),
        (&Method::POST, "/api/auth/login") => {
            either(auth::login(&app, req, crate::store::Action::Login).await)
        }
        (&Method::POST, "/api/auth/verify-face") => {
            either(auth::login(&app, req, crate::store::Action::VerifyFace).await)
        }
        (_, "/api/auth/register" | "/api/auth/login" | "/api/auth/verify-face") => {
            method_not_allowed()
        }
        (&Method::GET, "/health") => health::get(&app).await,
        (_, "/health") => method_not_allowed(),
        (&Method::GET, "/.well-known/jwks.json") => keys::jwks(&app).await,
        (_, "/.well-known/jwks.json") => method_not_allowed(),
        _ => response::error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Route not found",
            "no such route",
            None,
        ),
    };
    response::secure(resp)
}

fn either(r: Result<Response<Body>, Response<Body>>) -> Response<Body> {
    r.unwrap_or_else(|e| e)
}

fn method_not_allowed() -> Response<Body> {
    response::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "Method not allowed",
        "this route does not accept that method",
        None,
    )
}
