//! Where users, encrypted templates, wrapped keys, logs, lockouts and refresh
//! token families live: one [`Store`] contract, two real backends.
//!
//! - [`EmbeddedStore`]: SQLite (WAL, every commit fsync'd), the appliance default.
//! - [`MongoStore`]: MongoDB through the official driver, for deployments that
//!   outgrow one box; transactions where the server has them, and writes
//!   ordered so that a crash between them leaves nothing half-visible.
//!
//! Biometric data only ever reaches the store as ciphertext (the ECIES template
//! and the HSM-wrapped private key); logs carry a similarity *bucket*, never
//! the score. Both backends pass `daemon/tests/store.rs`.

pub mod audit;
mod checkpoint;
mod embedded;
mod mongo;

use std::fmt;

use arclock_hsm::WrappedKey;

pub use audit::{AuditEntry, AuditEvent, AuditSeal};
pub use embedded::{Checkpoints, EmbeddedStore};
pub use mongo::MongoStore;

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

/// Whether an account may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Disabled,
}

impl UserStatus {
    fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "active" => Ok(UserStatus::Active),
            "disabled" => Ok(UserStatus::Disabled),
            other => Err(StoreError::Corrupt(format!("user status {other:?}"))),
        }
    }
}

/// An account, without any biometric data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub id: UserId,
    pub name: Name,
    pub email: Email,
    pub status: UserStatus,
    pub created_at: Millis,
}

/// The encrypted face template (ECIES to the user's public key) and the model
/// that made the embedding inside it.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    pub model_id: String,
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("model_id", &self.model_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// The user's private key as the HSM wrapped it, and its public half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub wrapped: WrappedKey,
    pub public_key: Vec<u8>,
}

/// What verification needs: the template and the key to open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub template: Template,
    pub key: StoredKey,
}

/// A registration: written all together or not at all.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub user: User,
    pub credentials: Credentials,
}

/// What an auth log entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Register,
    Login,
    VerifyFace,
    Refresh,
    Logout,
    DeleteAccount,
    UpdateProfile,
    /// An operator action on the admin socket.
    Admin,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Locked,
}

macro_rules! str_enum {
    ($t:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
            pub fn parse(s: &str) -> Result<Self, StoreError> {
                match s {
                    $($s => Ok(<$t>::$v),)*
                    other => Err(StoreError::Corrupt(format!("{} {other:?}", stringify!($t)))),
                }
            }
        }
    };
}

str_enum!(Action {
    Register => "register",
    Login => "login",
    VerifyFace => "verify_face",
    Refresh => "refresh",
    Logout => "logout",
    DeleteAccount => "delete_account",
    UpdateProfile => "update_profile",
    Admin => "admin",
});
str_enum!(Outcome {
    Success => "success",
    Failure => "failure",
    Locked => "locked",
});

/// One auth log entry. `user_id` is `None` for unknown accounts and after the
/// account was deleted (the entry is kept, anonymised).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuthLog {
    /// Assigned by the store; ignored on append.
    pub id: String,
    pub at: Millis,
    pub user_id: Option<UserId>,
    pub action: Action,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// Similarity in tenths (0..=10), never the raw score.
    pub similarity_bucket: Option<u8>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Opaque position in a log listing ("entries older than this one").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCursor {
    pub at: Millis,
    pub id: String,
}

impl LogCursor {
    /// The wire form handed to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.at, self.id)
    }

    /// `<ms>.<id>` with the id as either backend writes it: a row number
    /// (embedded) or 24 lowercase hex digits (MongoDB ObjectId).
    pub fn decode(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('.')?;
        let ok = !id.is_empty()
            && id.len() <= 24
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        Some(LogCursor {
            at: at.parse().ok()?,
            id: id.to_string(),
        })
        .filter(|_| ok)
    }
}

/// Which log entries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub user_id: Option<UserId>,
    pub action: Option<Action>,
    pub outcome: Option<Outcome>,
    pub client_ip: Option<String>,
    /// Inclusive lower bound.
    pub since: Option<Millis>,
    /// Exclusive upper bound.
    pub until: Option<Millis>,
    pub before: Option<LogCursor>,
    pub limit: usize,
}

impl LogFilter {
    /// Entries per page, bounded whatever the caller asked for.
    fn page_size(&self) -> usize {
        self.limit.clamp(1, 1000)
    }
}

/// A page of log entries and where the next one starts.
#[derive(Debug, Clone)]
pub struct LogPage {
    pub entries: Vec<AuthLog>,
    pub next: Option<LogCursor>,
}

impl LogPage {
    /// Backends fetch one entry more than a page: if it came, there is a next
    /// page, starting after the last entry kept.
    fn from_overfetch(mut entries: Vec<AuthLog>, page_size: usize) -> Self {
        let next = if entries.len() > page_size {
            entries.truncate(page_size);
            entries.last().map(|l| LogCursor {
                at: l.at,
                id: l.id.clone(),
            })
        } else {
            None
        };
        LogPage { entries, next }
    }
}

/// Whose failures are counted: an account, or a client address across accounts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Subject {
    Account(UserId),
    Ip(String),
}

impl Subject {
    fn key(&self) -> String {
        match self {
            Subject::Account(u) => format!("acct:{u}"),
            Subject::Ip(ip) => format!("ip:{ip}"),
        }
    }

    fn from_key(k: &str) -> Result<Self, StoreError> {
        match k.split_once(':') {
            Some(("acct", u)) => Ok(Subject::Account(UserId::stored(u.to_string()))),
            Some(("ip", ip)) => Ok(Subject::Ip(ip.to_string())),
            _ => Err(StoreError::Corrupt(format!("lockout subject {k:?}"))),
        }
    }
}

/// Brute-force policy: `max_failures` within `window` locks for `lock_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    pub max_failures: u32,
    pub window: Millis,
    pub lock_for: Millis,
}

/// Whether an attempt may go ahead (`Store::reserve_attempt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Counted against the window's budget; settle it with
    /// `fail_attempt` or `release_attempt`.
    Granted,
    /// Locked, or the window's budget is taken by failed and still-running
    /// attempts: not before `until`.
    Refused { until: Millis },
}

/// What recording a failure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Counted; this many failures in the current window.
    Counted(u32),
    /// The limit was reached: locked until then.
    LockedUntil(Millis),
}

/// A refresh-token family at creation: the hash of its first token.
#[derive(Debug, Clone)]
pub struct NewFamily {
    pub id: String,
    pub user_id: UserId,
    pub token_hash: [u8; 32],
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: `next` is current now.
    Rotated { user_id: UserId, family_id: String },
    /// The token was already rotated away (stolen and replayed, or a race):
    /// the whole family is revoked.
    Reused { user_id: UserId, family_id: String },
    /// Unknown, expired or revoked.
    Invalid,
}

/// A drawn liveness challenge, kept until it is answered or expires. The
/// store sees only the hash of its id (the id travels to the client and back;
/// whoever reads the database cannot answer with it), the e-mail's subject
/// hash and the client address it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChallenge {
    pub id_hash: [u8; 32],
    /// `email_subject` of the e-mail it was drawn for (known or not).
    pub subject: String,
    /// The address that asked for it.
    pub client_ip: Option<String>,
    pub steps: Vec<arclock_face::liveness::Step>,
    pub expires_at: Millis,
}

/// An enrolment invitation (`[registration] mode = "invite"`), as kept:
/// only the SHA-256 of its code, so whoever reads the database cannot
/// register with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInvite {
    pub code_hash: [u8; 32],
    /// The address it is for, if the operator named one.
    pub email: Option<String>,
    pub created_at: Millis,
    pub expires_at: Millis,
}

impl StoredChallenge {
    /// Steps as stored: `front,left,right`.
    fn steps_text(&self) -> String {
        let names: Vec<&str> = self.steps.iter().map(|s| s.as_str()).collect();
        names.join(",")
    }

    fn parse_steps(text: &str) -> Result<Vec<arclock_face::liveness::Step>, StoreError> {
        text.split(',')
            .map(|s| {
                arclock_face::liveness::Step::parse(s)
                    .ok_or_else(|| StoreError::Corrupt(format!("challenge step {s:?}")))
            })
            .collect()
    }
}

/// The storage contract. Every method is one atomic step from the caller's
/// view; times come from the caller.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// `"embedded"` or `"mongodb"`.
    fn backend(&self) -> &'static str;

    /// A real round trip; `Err` means answer 503.
    async fn health(&self) -> Result<(), StoreError>;

    /// Writes user, template and wrapped key together; `EmailTaken` if the
    /// e-mail exists (exactly one of two concurrent registrations wins).
    async fn register(&self, new: &NewUser) -> Result<(), StoreError>;
    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError>;
    async fn user_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError>;
    async fn credentials(&self, id: &UserId) -> Result<Option<Credentials>, StoreError>;
    async fn update_name(&self, id: &UserId, name: &Name) -> Result<Option<User>, StoreError>;
    /// Enables or disables an account. Disabling also revokes every session
    /// family it has, so that re-enabling it later cannot revive a refresh
    /// token stolen meanwhile. `false` if there is no such user.
    async fn set_status(&self, id: &UserId, status: UserStatus) -> Result<bool, StoreError>;
    /// Replaces the wrapped key (KEK rotation re-wraps without re-enrolment).
    async fn replace_key(&self, id: &UserId, key: &StoredKey) -> Result<bool, StoreError>;
    /// Users by id, after `after`, at most `limit` (operator console).
    async fn list_users(
        &self,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<User>, StoreError>;
    /// Crypto-shredding: removes the user, template, wrapped key and refresh
    /// families; anonymises the user's log entries and appends `log` (with no
    /// user id). `false` if there was no such user.
    async fn delete_user(&self, id: &UserId, log: &AuthLog) -> Result<bool, StoreError>;

    async fn append_log(&self, log: &AuthLog) -> Result<(), StoreError>;
    async fn logs(&self, filter: &LogFilter) -> Result<LogPage, StoreError>;

    /// Reserves one attempt for `subject` before any face work, atomically:
    /// refused while locked, or when `max_failures` attempts (failed, or
    /// reserved and still running) already count in the window. Of any
    /// number of concurrent attempts at most `max_failures` are evaluated.
    async fn reserve_attempt(
        &self,
        subject: &Subject,
        now: Millis,
        policy: &LockPolicy,
    ) -> Result<Reservation, StoreError>;
    /// The reserved attempt failed: it stays counted (counted afresh if a
    /// success cleared it meanwhile), and the subject locks at the limit.
    async fn fail_attempt(
        &self,
        subject: &Subject,
        now: Millis,
        policy: &LockPolicy,
    ) -> Result<FailureOutcome, StoreError>;
    /// The reserved attempt succeeded or never reached the face comparison
    /// (a photo problem, a dependency down): its place is given back.
    async fn release_attempt(&self, subject: &Subject) -> Result<(), StoreError>;
    /// Until when `subject` is locked, if it is.
    async fn locked_until(
        &self,
        subject: &Subject,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError>;
    /// Forgets the failures of `subject` (after a success).
    async fn clear_failures(&self, subject: &Subject) -> Result<(), StoreError>;
    /// [`Store::reserve_attempt`] for every subject of one sign-in (its
    /// account, its address), all or none: refused as the first subject that
    /// refuses, with nothing left reserved. One commit where the backend can
    /// (a sign-in's critical path pays one fsync, not one per subject); the
    /// default reserves one by one and gives back what it took on a refusal.
    async fn reserve_attempts(
        &self,
        asks: &[(Subject, LockPolicy)],
        now: Millis,
    ) -> Result<Reservation, StoreError> {
        for (i, (subject, policy)) in asks.iter().enumerate() {
            let r = self.reserve_attempt(subject, now, policy).await?;
            if let Reservation::Refused { .. } = r {
                for (taken, _) in &asks[..i] {
                    self.release_attempt(taken).await?;
                }
                return Ok(r);
            }
        }
        Ok(Reservation::Granted)
    }
    /// A successful sign-in settled: each account's failures forgotten, each
    /// address's place given back, and the success's log entry, in one
    /// commit where the backend can (the default does them one by one).
    async fn settle_success(&self, subjects: &[Subject], log: &AuthLog) -> Result<(), StoreError> {
        for s in subjects {
            match s {
                Subject::Account(_) => self.clear_failures(s).await?,
                Subject::Ip(_) => self.release_attempt(s).await?,
            }
        }
        self.append_log(log).await
    }
    /// Lifts a lockout (operator action); `true` if there was one.
    async fn unlock(&self, subject: &Subject) -> Result<bool, StoreError>;
    /// Lockouts in force at `now`.
    async fn lockouts(&self, now: Millis) -> Result<Vec<(Subject, Millis)>, StoreError>;

    async fn create_family(&self, family: &NewFamily) -> Result<(), StoreError>;
    /// Compare-and-swap of the family's current token: of two concurrent uses
    /// of one token exactly one rotates; the other is reuse and revokes.
    async fn rotate_refresh(
        &self,
        presented: &[u8; 32],
        next: &[u8; 32],
        now: Millis,
    ) -> Result<Rotation, StoreError>;
    /// Revokes the family a token belongs to (logout); `true` if it was live.
    async fn revoke_family_of(&self, token_hash: &[u8; 32]) -> Result<bool, StoreError>;
    /// Revokes a family by id (logout with only an access token, whose `sid`
    /// names its family); `true` if it was live.
    async fn revoke_family(&self, family_id: &str) -> Result<bool, StoreError>;
    /// Whether a family still stands (not revoked, not expired, user not
    /// deleted): access tokens die with the session that issued them.
    async fn family_live(&self, family_id: &str, now: Millis) -> Result<bool, StoreError>;
    /// Keeps a drawn challenge (ids are random, so a collision is an error).
    async fn put_challenge(&self, challenge: &StoredChallenge) -> Result<(), StoreError>;
    /// Removes and returns the challenge with this id hash, expired or not:
    /// single use by construction (of two concurrent answers exactly one
    /// gets it; several daemons on one database share it).
    async fn take_challenge(
        &self,
        id_hash: &[u8; 32],
    ) -> Result<Option<StoredChallenge>, StoreError>;

    /// Keeps an invitation (codes are random, so a collision is an error).
    async fn put_invite(&self, invite: &StoredInvite) -> Result<(), StoreError>;
    /// Removes and returns the invitation with this code hash, expired or
    /// not: single use by construction, as for challenges.
    async fn take_invite(&self, code_hash: &[u8; 32]) -> Result<Option<StoredInvite>, StoreError>;

    /// Deletes expired families, tokens, failure counters, lockouts,
    /// challenges and invitations.
    async fn purge_expired(&self, now: Millis) -> Result<u64, StoreError>;

    /// Appends `event` to the audit chain, linked to the current head in one
    /// atomic step (concurrent appends get consecutive numbers, never one
    /// head twice), and returns the new entry.
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditEntry, StoreError>;
    /// Entries numbered after `after`, ascending, at most `limit`.
    async fn audit_entries(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// The newest entry, if any.
    async fn audit_head(&self) -> Result<Option<AuditEntry>, StoreError>;
    /// Keeps a seal (one per entry number; sealing a head twice is a no-op).
    async fn put_audit_seal(&self, seal: &AuditSeal) -> Result<(), StoreError>;
    /// Every seal, ascending by entry number.
    async fn audit_seals(&self) -> Result<Vec<AuditSeal>, StoreError>;

    /// Records that `beat`'s instance is alive (and forgets instances not
    /// seen for [`INSTANCE_RETENTION_MS`]).
    async fn heartbeat(&self, beat: &InstanceBeat) -> Result<(), StoreError>;
    /// Instances seen at or after `since`, oldest start first.
    async fn instances(&self, since: Millis) -> Result<Vec<InstanceBeat>, StoreError>;
}

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
}

/// How long an instance's entry outlives its last heartbeat.
pub const INSTANCE_RETENTION_MS: Millis = 7 * 24 * 3600 * 1000;

/// The similarity bucket stored in logs: tenths, clamped to 0..=10.
pub fn similarity_bucket(similarity: f32) -> u8 {
    (similarity.clamp(0.0, 1.0) * 10.0).floor() as u8
}
