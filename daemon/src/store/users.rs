//! Accounts and their credentials: the user row, the ECIES template and
//! the HSM-wrapped private key, written and deleted together.

use super::*;

/// Whether an account may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Disabled,
}

impl UserStatus {
    /// The spelling in the store and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    pub(super) fn parse(s: &str) -> Result<Self, StoreError> {
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

/// What every backend offers for this concern (part of [`Store`]).
#[async_trait::async_trait]
pub trait Users: Send + Sync {
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
}
