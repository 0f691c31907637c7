//! Key custody for ArcLock: every long-lived secret stays inside a PKCS#11 token.
//!
//! # Layout
//!
//! - [`pin`]: the user PIN, read from a 0600 file or a systemd credential, never
//!   from the environment.
//! - [`provision`]: dev/embedded mode creates a token and its keys if absent;
//!   production attaches to an existing token by label.
//! - [`Hsm`] (in `pool`): a pool of logged-in sessions shared by many tokio
//!   tasks; PKCS#11 calls run on the blocking pool and reconnect after the token
//!   is removed and re-inserted.
//! - [`kek`]: AES-256 key-encryption keys (`kek-v1`, `kek-v2`, ...) that wrap
//!   per-user private keys with AES-256-GCM inside the token, AAD bound to the
//!   user id, the key version and a digest of the credentials stored with it
//!   (so a template swapped in the store fails the token's tag check);
//!   rotation re-wraps without the plaintext leaving locked memory.
//! - [`mechanism`]: what ArcLock needs of a token, job by job, checked
//!   against the token's own mechanism list (no PIN needed) at start and by
//!   `--check-config`.
//! - [`pseudonym`]: HMAC-SHA256 under a token-held secret, so that lockout
//!   subjects in the store cannot be matched against a list of addresses.
//! - [`signer`]: RSA keys for RS256 JWTs, signed with C_Sign; public halves
//!   exported as a JWKS with RFC 7638 thumbprints as `kid`.
//! - `trust`: a key is used only if the token made it and never let it out
//!   (`CKA_ALWAYS_SENSITIVE`, `CKA_NEVER_EXTRACTABLE`, private, expected type
//!   and size); objects merely carrying our labels are ignored and logged.
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::todo,
    clippy::unimplemented,
    clippy::await_holding_lock
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod context;
mod error;
pub mod kek;
pub mod mechanism;
pub mod pin;
mod pool;
pub mod provision;
pub mod pseudonym;
pub mod signer;
mod trust;

pub use arclock_secmem::LockedBytes;
pub use context::pkcs11_context;
pub use error::Error;
pub use kek::{Binding, KekKind, KekVersion, WrappedKey};
pub use pin::Pin;
pub use pool::{CURRENT_KEY_TTL, Hsm, HsmConfig, Status};
pub use signer::{Jwk, Jwks, Rs256};
