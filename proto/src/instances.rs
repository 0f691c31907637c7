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
}

/// The list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instances {
    pub instances: Vec<InstanceInfo>,
}
