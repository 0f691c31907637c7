//! Accounts (`/v1/users`), lockouts (`/v1/lockouts`), invitations
//! (`/v1/invites`) and the kiosk camera (`/v1/camera/*`). Never any
//! biometric data.

use serde::{Deserialize, Serialize};

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    /// `active` or `disabled`.
    #[serde(default = "active")]
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
}

fn active() -> String {
    "active".into()
}

/// `GET /v1/users?after=&limit=`: accounts in id order; `next` continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPage {
    pub users: Vec<User>,
    #[serde(default)]
    pub next: Option<String>,
}

/// `POST /v1/users/{id}/disable|enable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub id: String,
    pub status: String,
}

/// `DELETE /v1/users/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub id: String,
}

/// A lockout in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lockout {
    /// `account` or `ip`.
    pub kind: String,
    /// What unlocking names: the e-mail's key (its HSM pseudonym), or the
    /// address.
    pub key: String,
    /// The account with that e-mail, where there is one.
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    /// RFC 3339.
    pub until: String,
    pub seconds_left: u64,
}

/// `GET /v1/lockouts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockouts {
    pub lockouts: Vec<Lockout>,
}

/// `POST /v1/lockouts/unlock` (the answer repeats it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unlock {
    /// `account` or `ip`.
    pub kind: String,
    pub key: String,
}

/// `POST /v1/invites`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InviteRequest {
    /// Only this address may use it (anyone, if absent).
    #[serde(default)]
    pub email: Option<String>,
    /// How long it lasts (the daemon's default if absent).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// A new invitation: the code is shown once, the daemon keeps its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invite {
    pub code: String,
    pub email: Option<String>,
    /// RFC 3339.
    pub expires_at: String,
}

/// `POST /v1/camera/enrol`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    pub name: String,
    pub email: String,
}

/// The account the camera enrolled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    pub user: User,
}

/// `POST /v1/camera/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub email: String,
}

/// A match at the camera, with its similarity in tenths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CameraMatch {
    pub user: User,
    pub similarity_bucket: u8,
}
