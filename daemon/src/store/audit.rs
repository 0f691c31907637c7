//! The audit trail's records: operator actions and security events in an
//! append-only chain, each entry's hash covering the previous entry's, and
//! seals (HSM signatures over a head of the chain) made periodically.
//!
//! The auth log is not the trail: it is searched, pruned and anonymised
//! when an account is deleted. The chain is its own table (collection),
//! written by `Store::append_audit` (the previous head is read and the new
//! entry linked to it in one atomic step) and checked by `crate::audit`.
//! Whoever can write the database can still change it, but not without
//! breaking the chain at that entry, and rewriting every later hash is
//! caught by the first seal after it: the signature is the HSM's.

use sha2::{Digest, Sha256};

use super::{Millis, StoreError};

/// The hash an empty chain starts from.
pub const GENESIS: [u8; 32] = [0; 32];

/// What happened, as the trail keeps it (no biometric data, no e-mail: an
/// account is named by its id, an address-keyed lockout by its subject).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: Millis,
    /// `operator`, `lockout`, `token_reuse`, `attack`, ...
    pub kind: String,
    /// Who: `operator uid 1000`, or `arclockd` for what the daemon decided.
    pub actor: String,
    /// Whom or what it concerns (an account id, a lockout subject).
    pub subject: Option<String>,
    pub detail: String,
}

/// An event in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// 1, 2, 3, ... without gaps.
    pub seq: u64,
    pub event: AuditEvent,
    /// [`chain_hash`] of the previous entry's hash, `seq` and the event.
    pub hash: [u8; 32],
}

impl AuditEntry {
    /// The entry that follows `prev` (the first one if `None`).
    pub fn after(prev: Option<&AuditEntry>, event: AuditEvent) -> Self {
        let (seq, prev_hash) = prev.map_or((1, GENESIS), |p| (p.seq + 1, p.hash));
        AuditEntry {
            seq,
            hash: chain_hash(&prev_hash, seq, &event),
            event,
        }
    }
}

/// SHA-256 over a version tag, the previous hash, the sequence number and
/// every field, each length-prefixed (no two events share an encoding).
pub fn chain_hash(prev: &[u8; 32], seq: u64, e: &AuditEvent) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"arclock-audit-v1");
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(e.at.to_be_bytes());
    let field = |h: &mut Sha256, s: &str| {
        h.update((s.len() as u32).to_be_bytes());
        h.update(s.as_bytes());
    };
    field(&mut h, &e.kind);
    field(&mut h, &e.actor);
    match &e.subject {
        Some(s) => {
            h.update([1]);
            field(&mut h, s);
        }
        None => h.update([0]),
    }
    field(&mut h, &e.detail);
    h.finalize().into()
}

/// An entry number as a backend stores it (a signed 64-bit integer).
pub(super) fn stored_seq(seq: i64) -> Result<u64, super::StoreError> {
    u64::try_from(seq).map_err(|_| super::StoreError::Corrupt(format!("audit seq {seq}")))
}

/// A chain or seal hash as a backend stores it (bytes that must be 32).
pub(super) fn stored_hash(hash: Vec<u8>) -> Result<[u8; 32], super::StoreError> {
    hash.try_into().map_err(|h: Vec<u8>| {
        super::StoreError::Corrupt(format!("audit hash of {} bytes", h.len()))
    })
}

/// A head of the chain signed in the HSM (RS256 with the JWT signing key
/// named by `kid`, over [`AuditSeal::signed_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSeal {
    pub seq: u64,
    pub hash: [u8; 32],
    pub at: Millis,
    pub kid: String,
    pub signature: Vec<u8>,
}

impl AuditSeal {
    /// What the HSM signs: a tag, the entry's number and its hash.
    pub fn signed_bytes(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        format!("arclock-audit-seal-v1.{seq}.{}", hex::encode(hash)).into_bytes()
    }
}

/// Where the trail is kept (`crate::audit` checks and seals it).
#[async_trait::async_trait]
pub trait AuditTrail: Send + Sync {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(detail: &str) -> AuditEvent {
        AuditEvent {
            at: 1_800_000_000_000,
            kind: "operator".into(),
            actor: "operator uid 1000".into(),
            subject: Some("u-1".into()),
            detail: detail.into(),
        }
    }

    #[test]
    fn each_hash_covers_the_previous_one_and_every_field() {
        let a = AuditEntry::after(None, event("disable account"));
        let b = AuditEntry::after(Some(&a), event("enable account"));
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(b.hash, chain_hash(&a.hash, 2, &b.event));
        assert_ne!(b.hash, chain_hash(&GENESIS, 2, &b.event));
        let mut moved = b.event.clone();
        moved.subject = None;
        assert_ne!(chain_hash(&a.hash, 2, &moved), b.hash);
        // Length prefixes: shifting text between fields changes the hash.
        let mut shifted = b.event.clone();
        shifted.kind = "operatoroperator uid 1000".into();
        shifted.actor = String::new();
        assert_ne!(chain_hash(&a.hash, 2, &shifted), b.hash);
    }
}
