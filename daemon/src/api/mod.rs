//! Routes of the public API. `ROUTES` is the one table of what exists: the
//! dispatcher reads it, and a test holds it and `daemon/openapi.json` equal.
//! Every answer, including 404, 405 and 429, is in the mobile app's envelope
//! and carries the security headers; `/api` answers carry `RateLimit-*`.

pub(crate) mod account;
pub(crate) mod auth;
pub(crate) mod health;
pub(crate) mod intake;
pub(crate) mod journal;
mod keys;
pub mod limits;
pub(crate) mod logs;
pub(crate) mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;

use crate::App;
use crate::http::response::{self, Body};
use crate::http::{ApiError, Code};
use crate::store::Action;
use crate::timing;
use limits::Class;

/// What a handler gives back: the answer, or the refusal to render.
pub(crate) type Answer = Result<Response<Body>, ApiError>;

/// What a route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Register,
    Challenge,
    Login,
    VerifyFace,
    Refresh,
    Logout,
    ProfileGet,
    ProfilePut,
    Delete,
    LogsAuth,
    LogsFailures,
    Health,
    Jwks,
    OpenApi,
}

/// Every route: method, path, handler, rate-limit class.
const ROUTES: &[(Method, &str, Endpoint, Option<Class>)] = &[
    (
        Method::POST,
        "/api/auth/register",
        Endpoint::Register,
        Some(Class::Auth),
    ),
    (
        Method::POST,
        "/api/auth/challenge",
        Endpoint::Challenge,
        Some(Class::Auth),
    ),
    (
        Method::POST,
        "/api/auth/login",
        Endpoint::Login,
        Some(Class::Auth),
    ),
    (
        Method::POST,
        "/api/auth/verify-face",
        Endpoint::VerifyFace,
        Some(Class::Auth),
    ),
    (
        Method::POST,
        "/api/auth/refresh-token",
        Endpoint::Refresh,
        Some(Class::Auth),
    ),
    (
        Method::POST,
        "/api/auth/logout",
        Endpoint::Logout,
        Some(Class::Auth),
    ),
    (
        Method::GET,
        "/api/user/profile",
        Endpoint::ProfileGet,
        Some(Class::General),
    ),
    (
        Method::PUT,
        "/api/user/profile",
        Endpoint::ProfilePut,
        Some(Class::General),
    ),
    (
        Method::DELETE,
        "/api/user/delete",
        Endpoint::Delete,
        Some(Class::General),
    ),
    (
        Method::GET,
        "/api/logs/auth",
        Endpoint::LogsAuth,
        Some(Class::General),
    ),
    (
        Method::GET,
        "/api/logs/failures",
        Endpoint::LogsFailures,
        Some(Class::General),
    ),
    (
        Method::GET,
        "/health",
        Endpoint::Health,
        Some(Class::Health),
    ),
    (Method::GET, "/.well-known/jwks.json", Endpoint::Jwks, None),
    (Method::GET, "/openapi.json", Endpoint::OpenApi, None),
];

/// `(method, path)` of every route, for the OpenAPI test and the docs.
pub fn routes() -> impl Iterator<Item = (&'static str, &'static str)> {
    ROUTES.iter().map(|(m, p, _, _)| (m.as_str(), *p))
}

/// The OpenAPI 3.1 document of this API, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// Routes one request, inside a [`timing::scope`]: a request slower than
/// `[server] slow_request_ms` is logged with its steps, and with `[server]
/// server_timing` every answer carries them as `Server-Timing`.
pub async fn handle(app: Arc<App>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let ((route, mut resp), timeline) = timing::scope(dispatch(&app, req, peer)).await;
    let status = resp.status().as_u16();
    app.metrics.request(route, status, timeline.total);
    let slow = app.config.server.slow_request_ms;
    if slow > 0 && timeline.total.as_millis() >= u128::from(slow) {
        tracing::info!(route, status, steps = %timeline, "slow request");
    }
    if app.config.server.server_timing
        && let Ok(v) = HeaderValue::from_str(&timeline.server_timing())
    {
        resp.headers_mut().insert("server-timing", v);
    }
    resp
}

/// The route's label for metrics (from the table, never the raw path) and
/// the answer.
async fn dispatch(
    app: &Arc<App>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> (&'static str, Response<Body>) {
    req.extensions_mut().insert(peer);
    let client = crate::http::forwarded::client_addr(
        req.headers(),
        peer.ip(),
        &app.config.server.trusted_proxies,
    );
    req.extensions_mut()
        .insert(crate::http::forwarded::ClientAddr(client));
    let path = req.uri().path().to_string();
    if app.config.app.enabled
        && (path == "/app" || path.starts_with("/app/"))
        && let Some(resp) = crate::webapp::serve(req.method(), &path)
    {
        return ("/app/", resp);
    }
    let found = ROUTES
        .iter()
        .find(|(m, p, _, _)| *p == path && m == req.method());
    let Some((_, route, endpoint, class)) = found else {
        let same_path: Vec<&(Method, &str, Endpoint, Option<Class>)> =
            ROUTES.iter().filter(|(_, p, _, _)| *p == path).collect();
        let allowed: Vec<&str> = same_path.iter().map(|(m, _, _, _)| m.as_str()).collect();
        let route = same_path.first().map_or("unmatched", |(_, p, _, _)| *p);
        return (
            route,
            response::secure(if allowed.is_empty() {
                ApiError::new(Code::NotFound, "Route not found", "no such route").into()
            } else {
                method_not_allowed(&allowed.join(", "))
            }),
        );
    };
    let standing = match class {
        Some(class) => match app.limits.check(*class, client) {
            Ok(s) => s,
            Err(refused) => return (route, response::secure(refused.into())),
        },
        None => None,
    };
    let mut resp = match endpoint {
        Endpoint::Register => either(auth::register(app, req).await),
        Endpoint::Challenge => either(auth::challenge(app, req).await),
        Endpoint::Login => either(auth::login(app, req, Action::Login).await),
        Endpoint::VerifyFace => either(auth::login(app, req, Action::VerifyFace).await),
        Endpoint::Refresh => either(session::refresh(app, req).await),
        Endpoint::Logout => either(session::logout(app, req).await),
        Endpoint::ProfileGet => either(account::get(app, req).await),
        Endpoint::ProfilePut => either(account::put(app, req).await),
        Endpoint::Delete => either(account::delete(app, req).await),
        Endpoint::LogsAuth => either(logs::list(app, req, logs::Listing::Auth).await),
        Endpoint::LogsFailures => either(logs::list(app, req, logs::Listing::Failures).await),
        Endpoint::Health => health::get(app).await,
        Endpoint::Jwks => keys::jwks(app).await,
        Endpoint::OpenApi => keys::openapi(),
    };
    if let Some(s) = standing {
        limits::annotate(resp.headers_mut(), &s);
    }
    (route, response::secure(resp))
}

fn either(r: Answer) -> Response<Body> {
    r.unwrap_or_else(ApiError::into_response)
}

fn method_not_allowed(allow: &str) -> Response<Body> {
    ApiError::new(
        Code::MethodNotAllowed,
        "Method not allowed",
        "this route does not accept that method",
    )
    .with_header(header::ALLOW, allow)
    .into()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The route table and `openapi.json` name the same operations.
    #[test]
    fn route_table_and_openapi_agree() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        let routed: BTreeSet<(String, String)> = super::routes()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(routed, documented);
    }
}
