//! `GET /v1/instances`: every daemon sharing the store, from its heartbeats.

use serde::{Deserialize, Serialize};

/// One daemon as it last announced itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceInfo {
    /// Random per process start.
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    pub seen_at: i64,
    /// Seen within the last three heartbeats.
    pub alive: bool,
    /// The daemon that answered.
    pub this: bool,
    /// Its counters at its last heartbeat (the answering daemon's: now).
    #[serde(default)]
    pub load: Load,
    /// The KEK version it wrapped with at its last heartbeat (absent: its
    /// token did not answer, or an older daemon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek: Option<u32>,
}

/// What one daemon has served since its start. Counters, not rates: the
/// console derives rates from two readings, and sums them across instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Load {
    /// Public API requests answered.
    pub requests: u64,
    /// ... of them with a 5xx status.
    pub server_errors: u64,
    /// Face verifications (login and verify-face) by outcome.
    pub accepts: u64,
    pub rejects: u64,
    pub locked: u64,
    /// Lockouts it started.
    pub lockouts: u64,
}

/// The list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instances {
    pub instances: Vec<InstanceInfo>,
}
