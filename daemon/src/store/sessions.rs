//! Refresh-token families: one per sign-in, rotated by compare-and-swap,
//! revoked as a whole on reuse, logout or account deletion.

use super::*;

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

/// What every backend offers for this concern (part of [`Store`]).
#[async_trait::async_trait]
pub trait Sessions: Send + Sync {
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
}
