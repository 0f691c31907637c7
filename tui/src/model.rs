//! What the admin socket answers, as the console reads it. Only the fields
//! the console shows; unknown fields are ignored so that a newer daemon does
//! not break an older console.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `GET /v1/health`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub status: String,
    pub version: String,
    #[serde(default)]
    pub uptime_secs: u64,
    pub dependencies: BTreeMap<String, Dependency>,
    #[serde(default)]
    pub keys: Keys,
    #[serde(default)]
    pub camera: CameraState,
    /// The key job running in the daemon, or the last one it ran.
    #[serde(default)]
    pub key_job: Option<KeyJob>,
}

/// A rotation, retirement or binding pass over every wrapped key.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyJob {
    pub kind: String,
    pub phase: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub tally: Tally,
    pub version: Option<u32>,
    #[serde(default)]
    pub destroyed: Vec<u32>,
    pub error: Option<String>,
}

/// Keys moved by one pass.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    pub rewrapped: u64,
    pub already_current: u64,
    pub failed: u64,
}

/// `POST /v1/keys/retire`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Retirement {
    pub version: u32,
    pub tally: Tally,
    pub destroyed: Vec<u32>,
}

/// The kiosk camera, if the daemon has one.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct CameraState {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub device: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Dependency {
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub detector: Option<String>,
    #[serde(default)]
    pub recognizer: Option<String>,
    /// Liveness only: the modes and whether passive PAD is installed.
    #[serde(default)]
    pub signin: Option<String>,
    #[serde(default)]
    pub registration: Option<String>,
    #[serde(default)]
    pub pad: Option<String>,
}

impl Dependency {
    /// One line on what it is or why it is down.
    pub fn detail(&self) -> String {
        if let (Some(s), Some(r), Some(p)) = (&self.signin, &self.registration, &self.pad) {
            let why = self
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            return format!("sign-in {s} · registration {r} · PAD {p}{why}");
        }
        if let Some(r) = &self.reason {
            return r.clone();
        }
        match (&self.backend, &self.detector, &self.recognizer) {
            (Some(b), _, _) => b.clone(),
            (None, Some(d), Some(r)) => format!("{d} + {r}"),
            _ => String::new(),
        }
    }
}

/// What the HSM token holds (or why it cannot say).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Keys {
    #[serde(default)]
    pub token: Option<String>,
    /// Who made the token and which model it is (its `C_GetTokenInfo`).
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub kek_versions: Vec<u32>,
    #[serde(default)]
    pub jwt_kids: Vec<String>,
    /// The algorithm new tokens are signed with (`RS256`, `ES256`).
    #[serde(default)]
    pub signing: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The `User` the camera enrol answer carries lacks `status`; it is active.
fn active() -> String {
    "active".into()
}

/// One auth-log entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    #[serde(default)]
    pub id: String,
    pub at: String,
    #[serde(default)]
    pub user_id: Option<String>,
    pub action: String,
    pub outcome: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub similarity_bucket: Option<u8>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub device: Option<String>,
}

impl LogEntry {
    /// Whether a free-text filter (case-insensitive, every word must occur)
    /// matches any shown field.
    pub fn matches(&self, filter: &str) -> bool {
        let hay = format!(
            "{} {} {} {} {} {} {}",
            self.at,
            self.action,
            self.outcome,
            self.user_id.as_deref().unwrap_or(""),
            self.ip.as_deref().unwrap_or(""),
            self.reason.as_deref().unwrap_or(""),
            self.device.as_deref().unwrap_or(""),
        )
        .to_lowercase();
        filter
            .to_lowercase()
            .split_whitespace()
            .all(|w| hay.contains(w))
    }
}

/// One line of `GET /v1/logs/stream`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamEvent {
    Log { entry: LogEntry },
    Heartbeat { at: String },
    Lagged { skipped: u64 },
}

/// A lockout in force.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Lockout {
    /// `account` or `ip`.
    pub kind: String,
    /// What unlocking names: the e-mail's hash, or the address.
    pub key: String,
    #[serde(default)]
    pub email: Option<String>,
    pub until: String,
    pub seconds_left: u64,
}

impl Lockout {
    /// Who is locked, as an operator reads it.
    pub fn who(&self) -> String {
        match (self.kind.as_str(), &self.email) {
            ("account", Some(e)) => e.clone(),
            ("account", None) => format!("(no account) {}…", &self.key[..self.key.len().min(12)]),
            _ => self.key.clone(),
        }
    }
}

/// `POST /v1/invites`: the code, shown once.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Invite {
    pub code: String,
    pub email: Option<String>,
    pub expires_at: String,
}

/// An account (never any biometric data).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    #[serde(default = "active")]
    pub status: String,
    pub created_at: String,
}

/// The daemon's check of its tamper-evident audit trail
/// (`GET /v1/audit/verify`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerdict {
    pub entries: u64,
    pub seals_verified: usize,
    pub seals_unverifiable: usize,
    pub sealed_through: u64,
    pub broken: Option<AuditBreak>,
}

/// The first entry where the audit trail does not hold.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AuditBreak {
    pub seq: u64,
    pub reason: String,
}

/// One daemon sharing the store (`GET /v1/instances`), from its heartbeats.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInfo {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub started_at: i64,
    pub seen_at: i64,
    /// Seen within the last three heartbeats.
    pub alive: bool,
    /// The daemon this console is connected to.
    pub this: bool,
}

/// `POST /v1/keys/rotate`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    pub version: u32,
    pub rewrapped: u64,
    pub already_current: u64,
    pub failed: u64,
}
