//! [`ApiError`]: every refusal either API sends, as a value. Handlers return
//! `Result<Response, ApiError>` and use `?` on the domain errors (store, HSM,
//! template, token, face, sign-in), whose `From` impls below decide once what
//! the client learns; the envelope is rendered in [`ApiError::into_response`]
//! and nowhere else.

use std::borrow::Cow;
use std::fmt;

use http::header::{HeaderName, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::response::{self, Body};

/// The machine-readable `code` of the envelope, each with its one status:
/// the mobile app branches on these strings, so they never change spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 400: the request is malformed; nothing was changed.
    Validation,
    /// 401: a missing, malformed, expired, revoked or foreign token.
    Unauthorized,
    /// 401: wrong face, unknown account, or an attack verdict (one answer).
    VerificationFailed,
    /// 403: not an operator (admin socket).
    Forbidden,
    /// 403: `[registration] mode = "closed"`.
    RegistrationClosed,
    /// 403: the invitation code is missing, used, expired or foreign.
    InviteInvalid,
    /// 404: no such route or record.
    NotFound,
    /// 404: the kiosk camera is not enabled.
    NoCamera,
    /// 405: the route exists with other methods (`Allow` says which).
    MethodNotAllowed,
    /// 408: the body did not arrive in time.
    RequestTimeout,
    /// 409: the e-mail (or a look-alike) already has an account.
    UserExists,
    /// 409: another key job is running.
    JobRunning,
    /// 409: a retirement could not move every key; nothing was destroyed.
    KeysNotMoved,
    /// 413: the body is over the route's cap.
    PayloadTooLarge,
    /// 422: the photo cannot be used; the client can fix it.
    Face,
    /// 422: a frame does not show the pose its step asks for.
    LivenessPose,
    /// 422: registration refused by liveness.
    LivenessFailed,
    /// 422: the challenge is unknown, used, expired or does not fit.
    ChallengeInvalid,
    /// 422: this flow requires a challenge answer, not a single photo.
    LivenessRequired,
    /// 429: the e-mail or the address is locked out.
    AccountLocked,
    /// 429: the general (or health) request quota of the address.
    RateLimited,
    /// 429: the sign-in quota of the address.
    AuthRateLimited,
    /// 503: a dependency is down; never an accept.
    Unavailable,
}

impl Code {
    /// Every code, for the tests that hold clients to them.
    pub const ALL: [Code; 23] = [
        Code::Validation,
        Code::Unauthorized,
        Code::VerificationFailed,
        Code::Forbidden,
        Code::RegistrationClosed,
        Code::InviteInvalid,
        Code::NotFound,
        Code::NoCamera,
        Code::MethodNotAllowed,
        Code::RequestTimeout,
        Code::UserExists,
        Code::JobRunning,
        Code::KeysNotMoved,
        Code::PayloadTooLarge,
        Code::Face,
        Code::LivenessPose,
        Code::LivenessFailed,
        Code::ChallengeInvalid,
        Code::LivenessRequired,
        Code::AccountLocked,
        Code::RateLimited,
        Code::AuthRateLimited,
        Code::Unavailable,
    ];

    /// Codes only the operator socket sends (the browser client never sees
    /// them).
    pub fn admin_only(self) -> bool {
        matches!(
            self,
            Code::Forbidden | Code::NoCamera | Code::JobRunning | Code::KeysNotMoved
        )
    }

    /// The spelling on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Validation => "VALIDATION_ERROR",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::VerificationFailed => "VERIFICATION_FAILED",
            Code::Forbidden => "FORBIDDEN",
            Code::RegistrationClosed => "REGISTRATION_CLOSED",
            Code::InviteInvalid => "INVITE_INVALID",
            Code::NotFound => "NOT_FOUND",
            Code::NoCamera => "NO_CAMERA",
            Code::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Code::RequestTimeout => "REQUEST_TIMEOUT",
            Code::UserExists => "USER_EXISTS",
            Code::JobRunning => "JOB_RUNNING",
            Code::KeysNotMoved => "KEYS_NOT_MOVED",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::Face => "FACE_ERROR",
            Code::LivenessPose => "LIVENESS_POSE",
            Code::LivenessFailed => "LIVENESS_FAILED",
            Code::ChallengeInvalid => "CHALLENGE_INVALID",
            Code::LivenessRequired => "LIVENESS_REQUIRED",
            Code::AccountLocked => "ACCOUNT_LOCKED",
            Code::RateLimited => "RATE_LIMIT_EXCEEDED",
            Code::AuthRateLimited => "AUTH_RATE_LIMIT_EXCEEDED",
            Code::Unavailable => "SERVICE_UNAVAILABLE",
        }
    }

    /// The HTTP status this code is always sent with.
    pub fn status(self) -> StatusCode {
        match self {
            Code::Validation => StatusCode::BAD_REQUEST,
            Code::Unauthorized | Code::VerificationFailed => StatusCode::UNAUTHORIZED,
            Code::Forbidden | Code::RegistrationClosed | Code::InviteInvalid => {
                StatusCode::FORBIDDEN
            }
            Code::NotFound | Code::NoCamera => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Code::UserExists | Code::JobRunning | Code::KeysNotMoved => StatusCode::CONFLICT,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::Face
            | Code::LivenessPose
            | Code::LivenessFailed
            | Code::ChallengeInvalid
            | Code::LivenessRequired => StatusCode::UNPROCESSABLE_ENTITY,
            Code::AccountLocked | Code::RateLimited | Code::AuthRateLimited => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal on its way to the client: `{"success": false, "message",
/// "error", "code"}`, optional `data`, and the headers it needs
/// (`Retry-After`, `Allow`, `RateLimit-*`). Boxed: it travels in every
/// handler's `Result`, and refusals are the rare path.
#[derive(Debug)]
pub struct ApiError(Box<Refusal>);

#[derive(Debug)]
struct Refusal {
    code: Code,
    message: Cow<'static, str>,
    detail: Cow<'static, str>,
    data: Option<serde_json::Value>,
    headers: HeaderMap,
}

impl ApiError {
    /// `message` is for the user, `detail` (the envelope's `error`) for the
    /// developer; neither may carry secret state.
    pub fn new(
        code: Code,
        message: impl Into<Cow<'static, str>>,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError(Box::new(Refusal {
            code,
            message: message.into(),
            detail: detail.into(),
            data: None,
            headers: HeaderMap::new(),
        }))
    }

    /// 400 `VALIDATION_ERROR` with one sentence for both fields.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        let message = message.into();
        ApiError::new(Code::Validation, message.clone(), message)
    }

    /// 401 `UNAUTHORIZED`: one answer for every token fault, so that the
    /// reason is not an oracle.
    pub fn unauthorized() -> Self {
        ApiError::new(
            Code::Unauthorized,
            "Authentication required",
            "missing or invalid access token",
        )
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(what: impl Into<Cow<'static, str>>) -> Self {
        let what = what.into();
        ApiError::new(Code::NotFound, what.clone(), what)
    }

    /// 503 naming the dependency (never its secret state); the cause goes to
    /// the log, not to the client.
    pub fn unavailable(what: &str, cause: &dyn fmt::Display) -> Self {
        tracing::warn!(error = %cause, "{what} unavailable");
        ApiError::new(
            Code::Unavailable,
            "The service is temporarily unavailable",
            format!("{what} is unavailable"),
        )
    }

    /// Adds `data` to the envelope (a frame index, a pose hint, health).
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.0.data = Some(data);
        self
    }

    /// Adds a header (skipped if `value` is not a valid header value).
    pub fn with_header(mut self, name: impl Into<HeaderName>, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.0.headers.insert(name.into(), v);
        }
        self
    }

    /// `Retry-After` in whole seconds.
    pub fn retry_after(self, secs: u64) -> Self {
        self.with_header(RETRY_AFTER, &secs.to_string())
    }

    /// The code (tests and metrics read it).
    pub fn code(&self) -> Code {
        self.0.code
    }

    /// The status the code is sent with.
    pub fn status(&self) -> StatusCode {
        self.0.code.status()
    }

    /// The headers the answer will carry.
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }

    /// The headers, to add to (`RateLimit-*`).
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.0.headers
    }

    /// The envelope, the only place it is written for a refusal.
    pub fn into_response(self) -> Response<Body> {
        let Refusal {
            code,
            message,
            detail,
            data,
            headers,
        } = *self.0;
        let mut body = serde_json::json!({
            "success": false,
            "message": message,
            "error": detail,
            "code": code.as_str(),
        });
        if let (Some(data), Some(obj)) = (data, body.as_object_mut()) {
            obj.insert("data".into(), data);
        }
        let mut resp = response::json(code.status(), &body);
        resp.headers_mut().extend(headers);
        resp
    }
}

impl From<ApiError> for Response<Body> {
    fn from(e: ApiError) -> Self {
        e.into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::EmailTaken => ApiError::new(
                Code::UserExists,
                "An account with this e-mail already exists",
                "email already registered",
            ),
            e => ApiError::unavailable("the store", &e),
        }
    }
}

impl From<arclock_hsm::Error> for ApiError {
    fn from(e: arclock_hsm::Error) -> Self {
        ApiError::unavailable("the HSM", &e)
    }
}

impl From<crate::token::TokenError> for ApiError {
    /// An invalid token is the one 401; a signer that cannot sign is a 503.
    fn from(e: crate::token::TokenError) -> Self {
        match e {
            crate::token::TokenError::Invalid(_) => ApiError::unauthorized(),
            crate::token::TokenError::Hsm(e) => ApiError::unavailable("token signing", &e),
        }
    }
}

impl From<crate::template::TemplateError> for ApiError {
    /// A template that does not open is never the client's fault.
    fn from(e: crate::template::TemplateError) -> Self {
        ApiError::unavailable("the account's credentials", &e)
    }
}

impl From<arclock_face::Error> for ApiError {
    /// The photo's fault (422 `FACE_ERROR`) or ours (503).
    fn from(e: arclock_face::Error) -> Self {
        if e.is_photo_problem() {
            ApiError::face(&e, None)
        } else {
            ApiError::unavailable("the face pipeline", &e)
        }
    }
}

impl ApiError {
    /// 422 `FACE_ERROR`: what is wrong with the photo (or with frame
    /// `frame` of a challenge answer, which `data.frame` names), its kind
    /// (`no_face`, `low_quality`, ...) as `error`.
    pub fn face(e: &arclock_face::Error, frame: Option<usize>) -> Self {
        match frame {
            Some(i) => ApiError::new(Code::Face, format!("frame {}: {e}", i + 1), e.kind())
                .with_data(serde_json::json!({"frame": i})),
            None => ApiError::new(Code::Face, e.to_string(), e.kind()),
        }
    }
}

impl From<arclock_secmem::Error> for ApiError {
    fn from(e: arclock_secmem::Error) -> Self {
        ApiError::unavailable("locked memory", &e)
    }
}

impl From<crate::audit::AuditError> for ApiError {
    fn from(e: crate::audit::AuditError) -> Self {
        ApiError::unavailable("the audit trail", &e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code renders with its status, its wire spelling and the four
    /// envelope fields; headers and data come along.
    #[tokio::test]
    async fn renders_the_envelope_once() {
        let resp = ApiError::new(Code::AccountLocked, "later", "locked")
            .retry_after(7)
            .with_data(serde_json::json!({"frame": 1}))
            .into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[RETRY_AFTER], "7");
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"success": false, "message": "later", "error": "locked",
                "code": "ACCOUNT_LOCKED", "data": {"frame": 1}})
        );
    }

    /// A store that is down is a 503 that names it and nothing more; a taken
    /// e-mail is the app's 409.
    #[test]
    fn store_errors_map_once() {
        let down = ApiError::from(crate::store::StoreError::Unavailable(
            "secret detail".into(),
        ));
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.0.detail, "the store is unavailable");
        let taken = ApiError::from(crate::store::StoreError::EmailTaken);
        assert_eq!(taken.code().as_str(), "USER_EXISTS");
        assert_eq!(taken.status(), StatusCode::CONFLICT);
    }
}
