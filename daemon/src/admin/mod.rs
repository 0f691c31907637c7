//! The operator API: HTTP/1.1 with JSON bodies over a Unix socket, never over
//! TCP. The socket is mode 0660 (group `admin.group`), and every connection's
//! peer uid is checked with SO_PEERCRED before a request is read. Every
//! action that changes something is written to the auth log as `admin`, with
//! the operator's uid.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/health` | dependencies, key versions, the key job running or last run (phase, keys moved so far), uptime |
//! | `GET /v1/metrics` | Prometheus text exposition |
//! | `GET /v1/instances` | every daemon sharing the store, from their heartbeats (`alive` if seen in the last 15 s), with its counters and KEK version |
//! | `GET /v1/logs` | log search: `since`, `until`, `user` (id or e-mail), `outcome`, `action`, `ip`, `limit`, `cursor` |
//! | `GET /v1/logs/stream` | the live log of every instance on the store as JSON lines (same filters, no paging), heartbeats every 5 s |
//! | `GET /v1/lockouts` | lockouts in force (accounts resolved to e-mails where an account exists) |
//! | `POST /v1/lockouts/unlock` | `{"kind": "account"\|"ip", "key": ..}` |
//! | `GET /v1/users` | accounts without biometric data: `after`, `limit` |
//! | `POST /v1/users/{id}/disable`, `.../enable`, `DELETE /v1/users/{id}` | account actions |
//! | `POST /v1/keys/rotate` | new KEK version in the HSM, every wrapped key re-wrapped |
//! | `POST /v1/keys/retire` | crypto-shredding: rotate, then destroy every older KEK (copies of the store taken before never open again) |
//! | `POST /v1/camera/enrol`, `POST /v1/camera/verify` | the kiosk camera: `{"name", "email"}` / `{"email"}` |
//! | `POST /v1/invites` | an enrolment invitation: `{"email"?, "ttlSecs"?}` -> the code, once |
//! | `GET /v1/audit/verify` | the audit trail's hash chain and HSM seals checked; the first break |
//! | `POST /v1/audit/seal` | seal the audit trail's head in the HSM now |
//!
//! Answers use the public API's envelope, so one client parser serves both;
//! refusals are the public API's [`ApiError`].

mod access;
mod camera;
mod invites;
mod lockouts;
mod logs;
mod system;
mod trail;
mod users;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, watch};

pub use access::{Operator, Operators};

use crate::App;
use crate::config;
use crate::http::response;
use crate::http::{ApiError, Code};
use crate::identity::UserId;
use crate::store::{Action, AuthLog, Outcome};

/// Body of admin answers: whole JSON documents, or the live log stream.
pub type AdminBody = UnsyncBoxBody<Bytes, Infallible>;

/// Why the admin socket cannot be opened (a start error: a daemon nobody
/// can operate must not run silently).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin socket {path}: {reason}")]
    Socket { path: PathBuf, reason: String },
    #[error("admin.group {0:?}: {1}")]
    Group(String, String),
}

/// Connections served at once; operators are few.
const MAX_CONNECTIONS: usize = 32;
/// Largest request body (unlock and the like are a few bytes).
const MAX_BODY: usize = 4096;

/// The bound socket, before serving.
pub struct Listener {
    listener: UnixListener,
    path: PathBuf,
    operators: Operators,
}

impl Listener {
    /// Binds `admin.socket` (0660, the admin group). A stale socket left by a
    /// crash is replaced; one a live daemon answers on is not.
    pub fn bind(cfg: &config::Admin) -> Result<Self, AdminError> {
        let path = cfg.socket.clone();
        let fail = |reason: String| AdminError::Socket {
            path: path.clone(),
            reason,
        };
        let operators = Operators::from_config(cfg)?;
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(fail("exists and is not a socket".into()));
            }
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Err(fail("another daemon is serving on it".into()));
            }
            std::fs::remove_file(&path).map_err(|e| fail(format!("removing stale socket: {e}")))?;
        }
        let listener = UnixListener::bind(&path).map_err(|e| fail(e.to_string()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| fail(format!("chmod 0660: {e}")))?;
        if let Some(gid) = operators.group() {
            std::os::unix::fs::chown(&path, None, Some(gid.as_raw()))
                .map_err(|e| fail(format!("chgrp: {e}")))?;
        }
        tracing::info!(socket = %path.display(), "admin socket ready");
        Ok(Listener {
            listener,
            path,
            operators,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves operators until `shutdown`, then removes the socket file.
    pub async fn serve(self, app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
        let operators = Arc::new(self.operators);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let accepted = tokio::select! {
                r = self.listener.accept() => r,
                _ = shutdown.changed() => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                tracing::warn!("admin connection refused: too many open");
                continue;
            };
            let (app, operators) = (Arc::clone(&app), Arc::clone(&operators));
            tokio::spawn(async move {
                let _permit = permit;
                let who = match stream.peer_cred() {
                    Ok(c) if operators.permits(c.uid(), c.gid()) => Ok(Operator {
                        uid: c.uid(),
                        pid: c.pid(),
                    }),
                    Ok(c) => {
                        tracing::warn!(uid = c.uid(), pid = ?c.pid(), "admin connection refused: not an operator");
                        Err(c.uid())
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admin connection refused: no peer credentials");
                        Err(u32::MAX)
                    }
                };
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let app = Arc::clone(&app);
                    async move {
                        Ok::<_, Infallible>(match who {
                            Ok(op) => handle(&app, req, op).await,
                            Err(uid) => forbidden(uid),
                        })
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "admin connection ended with an error");
                }
            });
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn forbidden(uid: u32) -> Response<AdminBody> {
    whole(
        ApiError::new(
            Code::Forbidden,
            "Not an operator",
            format!("uid {uid} may not use the admin socket"),
        )
        .into(),
    )
}

/// One admin request, routed.
async fn handle(app: &App, req: Request<Incoming>, op: Operator) -> Response<AdminBody> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    // Reads of personal data (accounts, the auth log) are audited too, with
    // the query (who searched for whom); to the journal, not the auth log,
    // which the console itself reads every second.
    if method == Method::GET
        && matches!(
            segments.as_slice(),
            ["v1", "users"] | ["v1", "logs"] | ["v1", "logs", "stream"]
        )
    {
        tracing::info!(
            target: "audit",
            uid = op.uid,
            pid = ?op.pid,
            read = %path,
            query = req.uri().query().unwrap_or(""),
            "operator read"
        );
    }
    let answer = match (&method, segments.as_slice()) {
        (&Method::GET, ["v1", "health"]) => Ok(system::health(app).await),
        (&Method::GET, ["v1", "metrics"]) => system::metrics(app).await,
        (&Method::GET, ["v1", "instances"]) => system::instances(app).await,
        (&Method::POST, ["v1", "keys", "rotate"]) => system::rotate(app, op).await,
        (&Method::POST, ["v1", "keys", "retire"]) => system::retire(app, op).await,
        (&Method::GET, ["v1", "logs"]) => logs::search(app, &req).await,
        (&Method::GET, ["v1", "logs", "stream"]) => logs::stream(app, &req).await,
        (&Method::GET, ["v1", "lockouts"]) => lockouts::list(app).await,
        (&Method::POST, ["v1", "lockouts", "unlock"]) => lockouts::unlock(app, req, op).await,
        (&Method::GET, ["v1", "users"]) => users::list(app, &req).await,
        (&Method::POST, ["v1", "users", id, "disable"]) => {
            users::set_status(app, id, false, op).await
        }
        (&Method::POST, ["v1", "users", id, "enable"]) => {
            users::set_status(app, id, true, op).await
        }
        (&Method::DELETE, ["v1", "users", id]) => users::delete(app, id, op).await,
        (&Method::POST, ["v1", "camera", "enrol"]) => camera::enrol_new(app, req, op).await,
        (&Method::POST, ["v1", "camera", "verify"]) => camera::verify(app, req, op).await,
        (&Method::POST, ["v1", "invites"]) => invites::create(app, req, op).await,
        (&Method::GET, ["v1", "audit", "verify"]) => trail::verify(app).await,
        (&Method::POST, ["v1", "audit", "seal"]) => trail::seal(app, op).await,
        _ => Err(ApiError::new(
            Code::NotFound,
            "No such admin route",
            "see the route table in daemon/src/admin/mod.rs",
        )),
    };
    answer.unwrap_or_else(|e| whole(e.into()))
}

/// What admin handlers return: the answer, or the refusal to render.
type Answer = Result<Response<AdminBody>, ApiError>;

/// A whole JSON answer as an admin body.
fn whole(r: Response<response::Body>) -> Response<AdminBody> {
    r.map(|b| b.map_err(|never| match never {}).boxed_unsync())
}

fn ok<T: serde::Serialize>(message: &str, data: T) -> Response<AdminBody> {
    whole(response::ok(StatusCode::OK, message, data))
}

/// A small JSON body, strictly parsed.
async fn json_body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, ApiError> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|_| ApiError::bad_request("body too large or unreadable"))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("bad JSON: {e}")))
}

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).ok_or_else(|| ApiError::bad_request("not a user id"))
}

/// An operator's action in the daemon's log (target `audit`, with uid and
/// pid) and in the tamper-evident trail (`crate::audit`). `user` is the
/// account acted on, if any.
async fn operator_event(
    app: &App,
    op: Operator,
    user: Option<&UserId>,
    what: &str,
    outcome: Option<Outcome>,
) {
    tracing::info!(target: "audit", uid = op.uid, pid = ?op.pid, action = what, outcome = outcome.map(Outcome::as_str), "operator action");
    let detail = match outcome {
        Some(o) => format!("{what}: {}", o.as_str()),
        None => what.to_string(),
    };
    crate::audit::record(
        app,
        "operator",
        &format!("operator uid {}", op.uid),
        user.map(ToString::to_string),
        detail,
    )
    .await;
}

/// [`operator_event`], and the action in the auth log as `admin`.
async fn audit(app: &App, op: Operator, user: Option<&UserId>, what: &str, outcome: Outcome) {
    operator_event(app, op, user, what, Some(outcome)).await;
    let entry = AuthLog {
        id: String::new(),
        at: app.clock.now(),
        user_id: user.cloned(),
        action: Action::Admin,
        outcome,
        reason: Some(format!("{what} by operator uid {}", op.uid)),
        similarity_bucket: None,
        client_ip: None,
        user_agent: Some(format!("admin-socket uid={}", op.uid)),
        instance: Some(app.instance.clone()),
    };
    if let Err(e) = app.journal(entry).await {
        tracing::error!(error = %e, uid = op.uid, action = what, "audit entry not written");
    }
}
