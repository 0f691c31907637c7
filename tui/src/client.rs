//! The admin socket client: HTTP/1.1 over a Unix socket, one connection per
//! request (operators are few, and a fresh connection notices a restarted
//! daemon at once), answers in the public API's envelope.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arclock_proto as proto;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::model::{
    AdminHealth, AuditVerdict, InstanceInfo, Invite, Lockout, LogEntry, Retirement, Rotation,
    StreamEvent, User,
};

/// Why a request to the daemon did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket is missing, refused, or the daemon went away mid-request.
    #[error("cannot reach arclockd at {path}: {reason}")]
    Unreachable { path: PathBuf, reason: String },
    /// The daemon answered with an error (its message, e.g. "Not an operator").
    #[error("{message} ({code}, HTTP {status})")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The answer does not have the expected shape (a version mismatch).
    #[error("unexpected answer from arclockd: {0}")]
    Protocol(String),
}

/// Requests that take longer than this count as an unreachable daemon.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A key job visits every account (~1 ms each): it gets this long.
const KEY_JOB_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

/// A handle on one daemon's admin socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

/// Filters for log search and the live stream (empty fields: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub user: Option<String>,
    pub outcome: Option<String>,
    pub action: Option<String>,
    pub ip: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<usize>,
}

impl LogQuery {
    fn encode(&self, paged: bool) -> String {
        let mut q = Vec::new();
        let fields = [
            ("user", &self.user),
            ("outcome", &self.outcome),
            ("action", &self.action),
            ("ip", &self.ip),
            ("since", &self.since),
            ("until", &self.until),
        ];
        for (k, v) in fields {
            if let Some(v) = v {
                q.push(format!("{k}={}", escape(v)));
            }
        }
        if let (true, Some(n)) = (paged, self.limit) {
            q.push(format!("limit={n}"));
        }
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> ClientError {
        ClientError::Unreachable {
            path: self.socket.clone(),
            reason: reason.to_string(),
        }
    }

    /// Sends one request and returns the answer's head and body stream.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<http::Response<Incoming>, ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| self.unreachable(e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.unreachable(e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "arclockd")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| self.unreachable(e))
    }

    /// Status and whole body of one request, within [`TIMEOUT`].
    async fn fetch(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        self.fetch_within(TIMEOUT, method, path, body).await
    }

    /// [`Client::fetch`] with its own time limit.
    async fn fetch_within(
        &self,
        limit: Duration,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let work = async {
            let resp = self.send(method, path, body).await?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unreachable(e))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| self.unreachable("timed out"))?
    }

    /// A whole JSON answer: `data` on success, the envelope's message otherwise.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        self.call_within(TIMEOUT, method, path, body).await
    }

    /// [`Client::call`] with its own time limit.
    async fn call_within(
        &self,
        limit: Duration,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let (status, bytes) = self.fetch_within(limit, method, path, body).await?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("HTTP {status}: {e}")))?;
        if status.is_success() && v["success"] == Value::Bool(true) {
            Ok(v["data"].clone())
        } else {
            // The envelope's message is for people, its error says what exactly.
            let message = v["message"].as_str().unwrap_or("error");
            let detail = v["error"].as_str().unwrap_or_default();
            Err(ClientError::Refused {
                status: status.as_u16(),
                code: v["code"].as_str().unwrap_or("UNKNOWN").to_string(),
                message: if detail.is_empty() || detail == message {
                    message.to_string()
                } else {
                    format!("{message}: {detail}")
                },
            })
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let data = self.call(Method::GET, path, None).await?;
        read(path, data)
    }

    pub async fn health(&self) -> Result<AdminHealth, ClientError> {
        self.get("/v1/health").await
    }

    /// The Prometheus text exposition.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let (status, bytes) = self.fetch(Method::GET, "/v1/metrics", None).await?;
        if status != StatusCode::OK {
            return Err(ClientError::Refused {
                status: status.as_u16(),
                code: "METRICS".into(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
        }
        String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub async fn lockouts(&self) -> Result<Vec<Lockout>, ClientError> {
        let page: proto::Lockouts = self.get("/v1/lockouts").await?;
        Ok(page.lockouts)
    }

    /// The first `limit` accounts in id order.
    pub async fn users(&self, limit: usize) -> Result<Vec<User>, ClientError> {
        let page: proto::UserPage = self.get(&format!("/v1/users?limit={limit}")).await?;
        Ok(page.users)
    }

    /// Newest first.
    pub async fn logs(&self, q: &LogQuery) -> Result<Vec<LogEntry>, ClientError> {
        let page: proto::LogPage = self.get(&format!("/v1/logs{}", q.encode(true))).await?;
        Ok(page.logs)
    }

    pub async fn unlock(&self, kind: &str, key: &str) -> Result<(), ClientError> {
        let body = proto::Unlock {
            kind: kind.to_string(),
            key: key.to_string(),
        };
        self.call(Method::POST, "/v1/lockouts/unlock", Some(json(&body)))
            .await
            .map(drop)
    }

    pub async fn set_enabled(&self, user_id: &str, enabled: bool) -> Result<(), ClientError> {
        let verb = if enabled { "enable" } else { "disable" };
        self.call(
            Method::POST,
            &format!("/v1/users/{}/{verb}", escape(user_id)),
            None,
        )
        .await
        .map(drop)
    }

    pub async fn delete_user(&self, user_id: &str) -> Result<(), ClientError> {
        self.call(
            Method::DELETE,
            &format!("/v1/users/{}", escape(user_id)),
            None,
        )
        .await
        .map(drop)
    }

    /// A single-use enrolment invitation (`[registration] mode = "invite"`),
    /// for `email` or anyone, lasting `ttl_secs` (the daemon's default when
    /// `None`). The code is shown here once; the daemon keeps its hash.
    pub async fn create_invite(
        &self,
        email: Option<&str>,
        ttl_secs: Option<u64>,
    ) -> Result<Invite, ClientError> {
        let body = proto::InviteRequest {
            email: email.map(str::to_string),
            ttl_secs,
        };
        let data = self
            .call(Method::POST, "/v1/invites", Some(json(&body)))
            .await?;
        read("/v1/invites", data)
    }

    /// Enrols a new account from the daemon's camera.
    pub async fn camera_enrol(&self, name: &str, email: &str) -> Result<User, ClientError> {
        let body = proto::EnrolRequest {
            name: name.to_string(),
            email: email.to_string(),
        };
        let data = self
            .call(Method::POST, "/v1/camera/enrol", Some(json(&body)))
            .await?;
        read::<proto::Enrolment>("/v1/camera/enrol", data).map(|e| e.user)
    }

    /// Verifies the person at the camera against `email`; the similarity in
    /// tenths on a match.
    pub async fn camera_verify(&self, email: &str) -> Result<u8, ClientError> {
        let body = proto::VerifyRequest {
            email: email.to_string(),
        };
        let data = self
            .call(Method::POST, "/v1/camera/verify", Some(json(&body)))
            .await?;
        read::<proto::CameraMatch>("/v1/camera/verify", data).map(|m| m.similarity_bucket)
    }

    /// The audit trail recomputed and its seals checked by the daemon.
    pub async fn audit_verify(&self) -> Result<AuditVerdict, ClientError> {
        self.get("/v1/audit/verify").await
    }

    /// Seals the audit trail's head in the HSM now; the entry sealed, if
    /// there was anything new to seal.
    pub async fn audit_seal(&self) -> Result<Option<u64>, ClientError> {
        let data = self.call(Method::POST, "/v1/audit/seal", None).await?;
        read::<proto::Sealed>("/v1/audit/seal", data).map(|s| s.sealed_through)
    }

    /// Every daemon sharing the store, as their heartbeats tell it.
    pub async fn instances(&self) -> Result<Vec<InstanceInfo>, ClientError> {
        let list: proto::Instances = self.get("/v1/instances").await?;
        Ok(list.instances)
    }

    /// A new KEK version, every wrapped key re-wrapped under it.
    pub async fn rotate_kek(&self) -> Result<Rotation, ClientError> {
        let data = self
            .call_within(KEY_JOB_TIMEOUT, Method::POST, "/v1/keys/rotate", None)
            .await?;
        read("/v1/keys/rotate", data)
    }

    /// Crypto-shredding: rotate, then destroy every older KEK (progress is in
    /// [`AdminHealth::key_job`] meanwhile).
    pub async fn retire_keks(&self) -> Result<Retirement, ClientError> {
        let data = self
            .call_within(KEY_JOB_TIMEOUT, Method::POST, "/v1/keys/retire", None)
            .await?;
        read("/v1/keys/retire", data)
    }

    /// Opens the live log; read it with [`LogStream::next`].
    pub async fn stream(&self, q: &LogQuery) -> Result<LogStream, ClientError> {
        let resp = tokio::time::timeout(
            TIMEOUT,
            self.send(
                Method::GET,
                &format!("/v1/logs/stream{}", q.encode(false)),
                None,
            ),
        )
        .await
        .map_err(|_| self.unreachable("timed out"))??;
        if resp.status() != StatusCode::OK {
            return Err(ClientError::Refused {
                status: resp.status().as_u16(),
                code: "STREAM".into(),
                message: "the daemon refused the log stream".into(),
            });
        }
        Ok(LogStream {
            body: resp.into_body(),
            buf: Vec::new(),
        })
    }
}

/// The live log: one event per line, heartbeats included.
pub struct LogStream {
    body: Incoming,
    buf: Vec<u8>,
}

/// A daemon that sends nothing (not even a heartbeat, every 5 s) this long
/// is taken for gone.
const SILENCE: Duration = Duration::from_secs(15);

impl LogStream {
    /// The next event; `None` when the daemon closed the stream or fell silent.
    pub async fn next(&mut self) -> Option<Result<StreamEvent, ClientError>> {
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                return Some(
                    serde_json::from_slice(&line).map_err(|e| ClientError::Protocol(e.to_string())),
                );
            }
            if self.buf.len() > 1 << 20 {
                return Some(Err(ClientError::Protocol("line longer than 1 MiB".into())));
            }
            let frame = tokio::time::timeout(SILENCE, self.body.frame())
                .await
                .ok()??;
            if let Ok(data) = frame.ok()?.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }
}

/// An answer's `data` as the admin API's type for it.
fn read<T: DeserializeOwned>(path: &str, data: Value) -> Result<T, ClientError> {
    serde_json::from_value(data).map_err(|e| ClientError::Protocol(format!("{path}: {e}")))
}

/// A request body.
fn json<T: serde::Serialize>(body: &T) -> Value {
    serde_json::to_value(body).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_escaped_and_paged_only_for_search() {
        let q = LogQuery {
            user: Some("a+b@x.org".into()),
            outcome: Some("failure".into()),
            limit: Some(50),
            ..LogQuery::default()
        };
        assert_eq!(
            q.encode(true),
            "?user=a%2Bb%40x.org&outcome=failure&limit=50"
        );
        assert_eq!(q.encode(false), "?user=a%2Bb%40x.org&outcome=failure");
        assert_eq!(LogQuery::default().encode(true), "");
    }
}
