//! Failure accounting and lockouts, keyed by [`Subject`]: attempts are
//! reserved before any comparison, so the limit holds under concurrency
//! and across daemons sharing one database.

use super::*;

/// The lockout key of an e-mail address: the first 128 bits of its HMAC
/// under the HSM's pseudonym key, in hex (`signin::email_subject`). The same
/// whether or not an account has the address, so a lockout says nothing
/// about which addresses exist, and a copy of the store cannot be matched
/// against a list of addresses. Not an account id: an address with no
/// account has one too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct EmailKey(String);

impl EmailKey {
    /// The key of the pseudonym MAC `mac` (at least 16 bytes).
    pub fn from_mac(mac: &[u8]) -> Self {
        EmailKey(hex::encode(&mac[..mac.len().min(16)]))
    }

    /// A key as an operator or a stored row names it: 32 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| EmailKey(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whose failures are counted: an account, or a client address across accounts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Subject {
    /// An e-mail address, account or not.
    Account(EmailKey),
    Ip(String),
}

impl Subject {
    pub(super) fn key(&self) -> String {
        match self {
            Subject::Account(u) => format!("acct:{u}"),
            Subject::Ip(ip) => format!("ip:{ip}"),
        }
    }

    pub(super) fn from_key(k: &str) -> Result<Self, StoreError> {
        match k.split_once(':') {
            Some(("acct", k)) => EmailKey::parse(k)
                .map(Subject::Account)
                .ok_or_else(|| StoreError::Corrupt(format!("lockout subject {k:?}"))),
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

/// What every backend offers for this concern (part of [`Store`]).
#[async_trait::async_trait]
pub trait Lockouts: Logs + Send + Sync {
    /// Reserves one attempt for `subject` before any comparison, atomically:
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

    /// [`Lockouts::reserve_attempt`] for every subject of one sign-in (its
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
}
