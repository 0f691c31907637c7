//! Where users, encrypted templates, wrapped keys, logs, lockouts and refresh
//! token families live: one [`Store`] contract, split by concern, and two
//! real backends, each a folder with one file per concern.
//!
//! | concern | trait and types | what it keeps |
//! |---|---|---|
//! | `users` | [`Users`], [`User`], [`Credentials`] | accounts, sealed templates, wrapped keys |
//! | `logs` | [`Logs`], [`AuthLog`], [`LogFilter`] | the auth log (searched, anonymised on deletion) |
//! | `lockouts` | [`Lockouts`], [`Subject`], [`EmailKey`] | failure counts, reservations, lockouts |
//! | `sessions` | [`Sessions`], [`NewFamily`], [`Rotation`] | refresh-token families |
//! | `challenges` | [`Challenges`], [`StoredChallenge`], [`StoredInvite`] | single-use challenges and invitations |
//! | [`audit`] | [`AuditTrail`], [`AuditEntry`], [`AuditSeal`] | the hash-chained trail and its HSM seals |
//! | `instances` | [`Instances`], [`InstanceBeat`], [`Load`] | heartbeats of the daemons sharing the store, with their counters |
//!
//! [`Store`] is all of them plus health and purging; a `dyn Store` reaches
//! every method, a concrete backend needs [`prelude`] in scope.
//!
//! - [`EmbeddedStore`]: SQLite (WAL, every commit fsync'd before it is
//!   answered, a refresh rotation within a quarter second: [`RotationSync`]),
//!   the appliance default.
//! - [`MongoStore`]: MongoDB through the official driver, for deployments that
//!   outgrow one box; transactions where the server has them, and writes
//!   ordered so that a crash between them leaves nothing half-visible.
//!
//! Biometric data only ever reaches the store as ciphertext (the ECIES template
//! and the HSM-wrapped private key); logs carry a similarity *bucket*, never
//! the score. Both backends pass `daemon/tests/store.rs`.

pub mod audit;
mod challenges;
mod embedded;
mod instances;
mod lockouts;
mod logs;
mod mongo;
mod sessions;
mod users;

use std::fmt;

use arclock_hsm::WrappedKey;

pub use audit::{AuditEntry, AuditEvent, AuditSeal, AuditTrail};
pub use challenges::{Challenges, StoredChallenge, StoredInvite};
pub use embedded::{Checkpoints, EmbeddedStore, RotationSync};
pub use instances::{INSTANCE_RETENTION_MS, InstanceBeat, Instances, Load};
pub use lockouts::{EmailKey, FailureOutcome, LockPolicy, Lockouts, Reservation, Subject};
pub use logs::{Action, AuthLog, LogCursor, LogFilter, LogPage, Logs, Outcome, similarity_bucket};
pub use mongo::MongoStore;
pub use sessions::{NewFamily, Rotate, Rotation, Sessions};
pub use users::{Credentials, NewUser, StoredKey, Template, User, UserStatus, Users};

use crate::identity::{Email, Name, UserId};

/// Milliseconds since the Unix epoch. Every time the store sees comes from the
/// caller, so tests can move the clock.
pub type Millis = i64;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or queried: callers answer 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database was written by a newer schema than this binary knows.
    #[error("store schema version {found} is newer than this arclockd supports ({supported})")]
    TooNew { found: i64, supported: i64 },
    /// Registration with an e-mail that already has an account.
    #[error("an account with this e-mail already exists")]
    EmailTaken,
    /// A stored record does not parse (never expected; refuses rather than guesses).
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
}

/// The storage contract. Every method is one atomic step from the caller's
/// view; times come from the caller.
#[async_trait::async_trait]
pub trait Store:
    Users + Logs + Lockouts + Sessions + Challenges + AuditTrail + Instances + Send + Sync + fmt::Debug
{
    /// `"embedded"` or `"mongodb"`.
    fn backend(&self) -> &'static str;

    /// A real round trip; `Err` means answer 503.
    async fn health(&self) -> Result<(), StoreError>;

    /// A sign-in on record: its attempt settled
    /// ([`Lockouts::settle_success`]) and its session's family created
    /// ([`Sessions::create_family`]), in one commit where the backend can
    /// (the answer waits for one fsync, not two). The default runs the two
    /// at once.
    async fn settle_sign_in(
        &self,
        subjects: &[Subject],
        log: &AuthLog,
        family: &NewFamily,
    ) -> Result<(), StoreError> {
        let (settled, created) = tokio::join!(
            self.settle_success(subjects, log),
            self.create_family(family)
        );
        settled.and(created)
    }

    /// Deletes expired families, tokens, failure counters, lockouts,
    /// challenges and invitations.
    async fn purge_expired(&self, now: Millis) -> Result<u64, StoreError>;
}

/// The store's traits, for callers of a `dyn Store` (a method of a
/// supertrait is called with its trait in scope): `use crate::store::prelude::*`.
pub mod prelude {
    pub use super::{
        AuditTrail as _, Challenges as _, Instances as _, Lockouts as _, Logs as _, Sessions as _,
        Store, Users as _,
    };
}
