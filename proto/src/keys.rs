//! `POST /v1/keys/rotate`, `POST /v1/keys/retire`, and the key job's
//! progress in the health answer.

use serde::{Deserialize, Serialize};

/// Keys moved by one pass over the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// Re-wrapped under the newest KEK (or bound for the first time).
    pub rewrapped: u64,
    /// Already under the newest KEK and bound.
    pub already_current: u64,
    /// Not re-wrapped (logged one by one): the record did not open.
    pub failed: u64,
}

/// A rotation, retirement or binding pass, running or finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyJob {
    /// `rotate`, `retire`, `bind`.
    pub kind: String,
    /// Where it is (`starting`, `rewrapping`, ..., `done`, `failed`).
    pub phase: String,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub tally: Tally,
    /// The KEK version everything moves to, once made.
    pub version: Option<u32>,
    /// Versions destroyed by a retirement.
    #[serde(default)]
    pub destroyed: Vec<u32>,
    pub error: Option<String>,
}

/// `POST /v1/keys/rotate`: the new version and what moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    pub version: u32,
    #[serde(flatten)]
    pub tally: Tally,
}

/// `POST /v1/keys/retire`: the version everything now lives under and the
/// versions destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retirement {
    pub version: u32,
    pub tally: Tally,
    pub destroyed: Vec<u32>,
}
