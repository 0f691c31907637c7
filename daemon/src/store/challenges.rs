//! Single-use records: liveness challenges and enrolment invitations,
//! taken (removed and returned) exactly once.

use super::*;

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
    pub(super) fn steps_text(&self) -> String {
        let names: Vec<&str> = self.steps.iter().map(|s| s.as_str()).collect();
        names.join(",")
    }

    pub(super) fn parse_steps(text: &str) -> Result<Vec<arclock_face::liveness::Step>, StoreError> {
        text.split(',')
            .map(|s| {
                arclock_face::liveness::Step::parse(s)
                    .ok_or_else(|| StoreError::Corrupt(format!("challenge step {s:?}")))
            })
            .collect()
    }
}

/// What every backend offers for this concern (part of [`Store`]).
#[async_trait::async_trait]
pub trait Challenges: Send + Sync {
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
}
