//! `GET /health` (public) and `GET /v1/health` (operators), which adds what
//! only an operator may see: keys, the key job, the camera, uptime.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::keys::KeyJob;

/// The public health answer: each dependency's state, reasons stripped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    pub version: String,
    /// `hsm`, `store`, `models`, `liveness`.
    pub dependencies: BTreeMap<String, Dependency>,
}

/// One dependency. Which optional fields are present depends on which one
/// it is; absent ones are not sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// `ok` or `error`.
    pub status: String,
    /// Why it is down (operators only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The store: `embedded` or `mongodb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// The models: detector and recognizer ids, and the embedding size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recognizer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_dim: Option<usize>,
    /// Liveness: the sign-in and registration modes, and whether passive PAD
    /// is installed (`ready`, `unavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad: Option<String>,
}

impl Dependency {
    /// A dependency that is up.
    pub fn ok() -> Self {
        Dependency {
            status: "ok".into(),
            ..Default::default()
        }
    }

    /// A dependency that is down, and why.
    pub fn down(reason: impl Into<String>) -> Self {
        Dependency {
            status: "error".into(),
            reason: Some(reason.into()),
            ..Default::default()
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// `GET /v1/health`: always 200, the report is the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminHealth {
    /// What `/health` says, reasons included.
    #[serde(flatten)]
    pub public: Health,
    #[serde(default)]
    pub uptime_secs: u64,
    /// The dependencies that are down.
    #[serde(default)]
    pub down: Vec<String>,
    #[serde(default)]
    pub keys: Keys,
    /// The key job running in the daemon, or the last one it ran.
    #[serde(default)]
    pub key_job: Option<KeyJob>,
    #[serde(default)]
    pub camera: CameraState,
}

/// What the HSM token holds, or why it cannot say (`error` alone).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Keys {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Who made the token and which model it is (its `C_GetTokenInfo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kek_versions: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_kids: Vec<String>,
    /// The algorithm new tokens are signed with (`RS256`, `ES256`); the kids
    /// are of both kinds after a switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The kiosk camera, if the daemon has one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CameraState {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}
