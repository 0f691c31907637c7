//! Instance heartbeats: every daemon on one database announces itself,
//! so the console can list them.

use super::*;

/// One running daemon as it last announced itself: several instances on one
/// database see each other, and the console lists them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceBeat {
    /// Random per process start.
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub started_at: Millis,
    pub seen_at: Millis,
    /// What it had served by then.
    pub load: Load,
    /// The KEK version it wrapped with then (`None`: the token did not
    /// answer): a rotation has reached every instance when all show it.
    pub kek: Option<u32>,
}

/// An instance's counters since its start, carried by its heartbeat (the
/// wire type itself: the console sums them across the daemons on one
/// database, which no single daemon's `/metrics` can).
pub use arclock_proto::Load;

/// How long an instance's entry outlives its last heartbeat.
pub const INSTANCE_RETENTION_MS: Millis = 7 * 24 * 3600 * 1000;

/// What every backend offers for this concern (part of [`Store`]).
#[async_trait::async_trait]
pub trait Instances: Send + Sync {
    /// Records that `beat`'s instance is alive (and forgets instances not
    /// seen for [`INSTANCE_RETENTION_MS`]).
    async fn heartbeat(&self, beat: &InstanceBeat) -> Result<(), StoreError>;

    /// Instances seen at or after `since`, oldest start first.
    async fn instances(&self, since: Millis) -> Result<Vec<InstanceBeat>, StoreError>;
}
