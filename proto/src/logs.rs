//! `GET /v1/logs` (search) and `GET /v1/logs/stream` (live, JSON lines).

use serde::{Deserialize, Serialize};

/// One auth-log entry as operators see it (never a score, only its bucket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    #[serde(default)]
    pub id: String,
    /// RFC 3339.
    pub at: String,
    /// The same instant in milliseconds (for sorting across instances).
    #[serde(default)]
    pub at_ms: i64,
    #[serde(default)]
    pub user_id: Option<String>,
    pub action: String,
    pub outcome: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// Similarity in tenths (0..=10).
    #[serde(default)]
    pub similarity_bucket: Option<u8>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub device: Option<String>,
    /// The daemon that wrote it (absent for entries from before instances
    /// were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// One page of a search, newest first; `next_cursor` continues it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    pub logs: Vec<LogEntry>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// One line of the live stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StreamEvent {
    Log {
        entry: Box<LogEntry>,
    },
    /// Every 5 s, so a quiet stream is told from a dead one.
    Heartbeat {
        at: String,
    },
    /// The follower fell behind and `skipped` entries were dropped for it.
    Lagged {
        skipped: u64,
    },
}
