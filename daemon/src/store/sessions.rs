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
    /// The row names another user or family than the presented token
    /// claims (someone wrote to the store): nothing was written.
    Mismatch { user_id: UserId, family_id: String },
    /// Unknown, expired or revoked, or its account is no longer active (the
    /// family is then revoked).
    Invalid,
}

/// One presentation of a refresh token: the swap, what the token claims,
/// and the success's log entry, all settled in one commit where the backend
/// has transactions (one fsync per rotation on SQLite, not two).
#[derive(Debug, Clone, Copy)]
pub struct Rotate<'a> {
    pub presented: &'a [u8; 32],
    pub next: &'a [u8; 32],
    pub now: Millis,
    /// The user and family the presented token names, if it is checked.
    pub claims: Option<(&'a UserId, &'a str)>,
    /// Written with a rotation, never with reuse or a refusal.
    pub entry: Option<&'a AuthLog>,
}

impl<'a> Rotate<'a> {
    /// The swap alone: no claims checked, nothing logged.
    pub fn new(presented: &'a [u8; 32], next: &'a [u8; 32], now: Millis) -> Self {
        Rotate {
            presented,
            next,
            now,
            claims: None,
            entry: None,
        }
    }
}

/// What every backend offers for this concern (part of [`Store`]).
#[async_trait::async_trait]
pub trait Sessions: Send + Sync {
    async fn create_family(&self, family: &NewFamily) -> Result<(), StoreError>;

    /// Compare-and-swap of the family's current token: of two concurrent uses
    /// of one token exactly one rotates; the other is reuse and revokes. A
    /// family whose account is not active is revoked instead of rotated.
    async fn rotate_refresh(&self, ask: Rotate<'_>) -> Result<Rotation, StoreError>;

    /// Revokes the family a token belongs to (logout); `true` if it was live.
    async fn revoke_family_of(&self, token_hash: &[u8; 32]) -> Result<bool, StoreError>;

    /// Revokes a family by id (logout with only an access token, whose `sid`
    /// names its family); `true` if it was live.
    async fn revoke_family(&self, family_id: &str) -> Result<bool, StoreError>;

    /// Whether a family still stands (not revoked, not expired, user not
    /// deleted): access tokens die with the session that issued them.
    async fn family_live(&self, family_id: &str, now: Millis) -> Result<bool, StoreError>;
}
