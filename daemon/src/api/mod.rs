//! Routes of the public API. Each route group has its own file; this one
//! dispatches and guarantees that every answer, including 404 and 405, is in
//! the mobile app's envelope and carries the security headers.

mod health;
mod keys;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::App;
use crate::http::response::{self, Body};

/// Routes one request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
    let resp = match (req.method(), req.uri().path()) {
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

fn method_not_allowed() -> Response<Body> {
    response::error(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "Method not allowed",
        "this route does not accept that method",
        None,
    )
}
