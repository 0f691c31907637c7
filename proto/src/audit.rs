//! `GET /v1/audit/verify` and `POST /v1/audit/seal`.

use serde::{Deserialize, Serialize};

/// The daemon's check of the whole trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerdict {
    /// Entries read.
    pub entries: u64,
    /// Seals whose signature and hash were checked and hold.
    pub seals_verified: usize,
    /// Seals made by a key no longer in the token (rotated out): their hash
    /// is checked, their signature cannot be.
    pub seals_unverifiable: usize,
    /// The last entry a verified seal covers (0: none).
    pub sealed_through: u64,
    /// The first place the trail does not hold, if any.
    pub broken: Option<AuditBreak>,
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBreak {
    pub seq: u64,
    pub reason: String,
}

/// What a seal covered (`None`: nothing new since the last one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sealed {
    pub sealed_through: Option<u64>,
}
