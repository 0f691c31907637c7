//! The tamper-evident audit trail: operator actions and security events
//! (lockouts, refresh-token reuse, liveness attacks) appended to a hash chain
//! in the store (`store::audit`), its head sealed by an RS256 signature made
//! in the HSM, and a verification that names the first entry where the chain
//! breaks.
//!
//! What it proves: an entry changed, removed or inserted in the database
//! breaks the chain there; rewriting every later hash to hide it breaks the
//! next seal, which only the HSM can make; entries removed after the last
//! seal are reported as unsealed, not proven absent, so seals are made every
//! [`SEAL_EVERY`] and on demand (`POST /v1/audit/seal`).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::App;
use crate::store::audit::{GENESIS, chain_hash};
use crate::store::{AuditEvent, AuditSeal, StoreError};

/// How often the upkeep task seals the head (when it moved).
pub const SEAL_EVERY: Duration = Duration::from_secs(60);

/// Entries read per store call while verifying.
const PAGE: usize = 1000;

/// Why the trail could not be written, sealed or checked (503 on the admin
/// socket; the verdict itself is not an error).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("HSM: {0}")]
    Hsm(#[from] arclock_hsm::Error),
}

/// Appends an event; a trail that cannot be written is logged loudly (the
/// action it records has already happened).
pub async fn record(app: &App, kind: &str, actor: &str, subject: Option<String>, detail: String) {
    let event = event(app, kind, actor, subject, detail);
    append(app.store.as_ref(), &event).await;
}

/// [`record`] off the caller's path (a task of its own): for events whose
/// extra store write must not show in the answer's timing (an attack verdict
/// answers exactly like a wrong face).
pub fn record_detached(
    app: &App,
    kind: &'static str,
    actor: &'static str,
    subject: Option<String>,
    detail: String,
) {
    let event = event(app, kind, actor, subject, detail);
    let store = app.store.clone();
    tokio::spawn(async move { append(store.as_ref(), &event).await });
}

fn event(
    app: &App,
    kind: &str,
    actor: &str,
    subject: Option<String>,
    detail: String,
) -> AuditEvent {
    AuditEvent {
        at: app.clock.now(),
        kind: kind.into(),
        actor: actor.into(),
        subject,
        detail,
    }
}

async fn append(store: &dyn crate::store::Store, event: &AuditEvent) {
    if let Err(e) = store.append_audit(event).await {
        tracing::error!(error = %e, kind = event.kind, "audit trail entry not written");
    }
}

/// Signs the current head in the HSM and keeps the seal, unless it is
/// sealed already. Returns the seal made, if any.
pub async fn seal(app: &App) -> Result<Option<AuditSeal>, AuditError> {
    let Some(head) = app.store.audit_head().await? else {
        return Ok(None);
    };
    let last = app.audit_sealed.load(std::sync::atomic::Ordering::Relaxed);
    if last == head.seq {
        return Ok(None);
    }
    let signature = app
        .hsm
        .sign(&AuditSeal::signed_bytes(head.seq, &head.hash))
        .await?;
    let seal = AuditSeal {
        seq: head.seq,
        hash: head.hash,
        at: app.clock.now(),
        kid: signature.key.kid,
        signature: signature.bytes,
    };
    app.store.put_audit_seal(&seal).await?;
    app.audit_sealed
        .store(head.seq, std::sync::atomic::Ordering::Relaxed);
    Ok(Some(seal))
}

/// The outcome of checking the whole trail, and where it breaks: the admin
/// API's own types (`GET /v1/audit/verify` answers them as they are).
pub use arclock_proto::{AuditBreak, AuditVerdict};

/// Walks the chain from its start, recomputing every hash and checking every
/// seal against the token's public keys.
pub async fn verify(app: &App) -> Result<AuditVerdict, AuditError> {
    let keys: BTreeMap<String, (Algorithm, DecodingKey)> = app
        .hsm
        .jwks()
        .await?
        .keys
        .into_iter()
        .filter_map(|k| crate::token::verifying_key(&k).ok().map(|key| (k.kid, key)))
        .collect();
    let seals: BTreeMap<u64, AuditSeal> = app
        .store
        .audit_seals()
        .await?
        .into_iter()
        .map(|s| (s.seq, s))
        .collect();
    let mut v = AuditVerdict {
        entries: 0,
        seals_verified: 0,
        seals_unverifiable: 0,
        sealed_through: 0,
        broken: None,
    };
    let (mut prev, mut expected) = (GENESIS, 1u64);
    'walk: loop {
        let page = app.store.audit_entries(expected - 1, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for e in page {
            let hash = chain_hash(&prev, e.seq, &e.event);
            if let Err(reason) = check(&e, expected, &hash, seals.get(&e.seq), &keys, &mut v) {
                v.broken = Some(AuditBreak {
                    seq: expected,
                    reason,
                });
                break 'walk;
            }
            prev = hash;
            expected += 1;
            v.entries += 1;
        }
    }
    if v.broken.is_none()
        && let Some((&seq, _)) = seals.range(expected..).next()
    {
        v.broken = Some(AuditBreak {
            seq: expected,
            reason: format!("entries {expected} to {seq} were sealed but are gone"),
        });
    }
    Ok(v)
}

/// One entry against the chain so far (`hash` is what it should hash to)
/// and its seal, if any; why it does not hold.
fn check(
    e: &crate::store::AuditEntry,
    expected: u64,
    hash: &[u8; 32],
    seal: Option<&AuditSeal>,
    keys: &BTreeMap<String, (Algorithm, DecodingKey)>,
    v: &mut AuditVerdict,
) -> Result<(), String> {
    if e.seq != expected {
        return Err(format!(
            "entry {expected} is missing (the next one is {})",
            e.seq
        ));
    }
    if *hash != e.hash {
        return Err(format!(
            "entry {expected} was changed (or the one before it): its hash does not follow"
        ));
    }
    let Some(s) = seal else { return Ok(()) };
    if s.hash != *hash {
        return Err(format!(
            "the seal over entry {expected} signs another chain: entries up to it were rewritten"
        ));
    }
    let Some((alg, key)) = keys.get(&s.kid) else {
        v.seals_unverifiable += 1;
        return Ok(());
    };
    let sig = URL_SAFE_NO_PAD.encode(&s.signature);
    let msg = AuditSeal::signed_bytes(s.seq, &s.hash);
    crate::token::jws::install();
    if !jsonwebtoken::crypto::verify(&sig, &msg, key, *alg).unwrap_or(false) {
        return Err(format!(
            "the seal over entry {expected} has a signature the HSM did not make"
        ));
    }
    v.seals_verified += 1;
    v.sealed_through = expected;
    Ok(())
}
