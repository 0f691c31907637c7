//! Public documents, served as themselves rather than in the app envelope
//! because their clients expect exactly that: `GET /.well-known/jwks.json`,
//! the public halves of the HSM's signing keys (RFC 7517) so any service can
//! verify ArcLock's access tokens, and `GET /openapi.json`.

use http::{HeaderValue, Response, header};
use http_body_util::Full;
use hyper::body::Bytes;

use crate::App;
use crate::http::response::Body;
use crate::http::{ApiError, Code};

pub async fn jwks(app: &App) -> Response<Body> {
    match app.tokens.jwks().await {
        Ok(set) => {
            let bytes = serde_json::to_vec(&set).unwrap_or_default();
            let mut resp = Response::new(Full::new(Bytes::from(bytes)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            );
            resp
        }
        Err(e) => {
            tracing::warn!(error = %e, "JWKS unavailable");
            ApiError::new(
                Code::Unavailable,
                "Signing keys are unavailable",
                "the HSM cannot be reached",
            )
            .into()
        }
    }
}

/// `GET /openapi.json`: the API's own description, for clients and for
/// schema-driven testing.
pub fn openapi() -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(super::OPENAPI.as_bytes())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
