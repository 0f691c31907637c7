//! Where users, encrypted templates, wrapped keys and logs live.
//!
//! The embedded SQLite backend ([`embedded`]) is the appliance default. The
//! MongoDB backend and the full data contract arrive with the storage issue; for
//! now the store is opened, migrated and health-checked.

pub mod embedded;

pub use embedded::EmbeddedStore;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be opened or queried: callers answer 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database was written by a newer schema than this binary knows.
    #[error("store schema version {found} is newer than this arclockd supports ({supported})")]
    TooNew { found: i64, supported: i64 },
}
