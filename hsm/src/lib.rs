//! Key custody for ArcLock: every long-lived secret stays inside a PKCS#11 token.
//!
//! # Layout
//!
//! - [`pin`]: the user PIN, read from a 0600 file or a systemd credential, never
//!   from the environment.
//! - [`provision`]: dev/embedded mode creates a token and its keys if absent;
//!   production attaches to an existing token by label.
//! - [`Hsm`] (in `pool`): a pool of logged-in sessions shared by many tokio
//!   tasks, plus one that only holds the login; PKCS#11 calls run on the
//!   blocking pool and reconnect after the token is removed and re-inserted.
//! - `context`: one initialised module per process, the gate around its
//!   re-initialisation, and the lock around calls that read or change a
//!   token's catalogue (SoftHSM2 crashes when two meet).
//! - [`kek`]: key-encryption keys (`kek-v1`, `kek-v2`, ...) that wrap
//!   per-user private keys inside the token: AES-256-GCM where the token has
//!   it (`AKW2`), else RSA-OAEP with a tag made in the token (`AKW3`), bound
//!   to the user id, the key version and a digest of the credentials stored
//!   with it (so a template swapped in the store fails the token's check);
//!   rotation re-wraps without the plaintext leaving locked memory.
//! - [`mechanism`]: what ArcLock needs of a token, job by job, checked
//!   against the token's own mechanism list (no PIN needed) at start and by
//!   `--check-config`.
//! - [`pseudonym`]: HMAC-SHA256 under a token-held secret (on a token
//!   without HMAC keys, a hashed deterministic RSA signature), so that lockout
//!   subjects in the store cannot be matched against a list of addresses, and
//!   refresh tokens and `AKW3` blobs carry tags only the token makes.
//! - [`signer`]: RSA (RS256) or P-256 (ES256) keys for JWTs and audit
//!   seals, signed with C_Sign; public halves of both kinds exported as a
//!   JWKS with RFC 7638 thumbprints as `kid`.
//! - `trust`: a key is used only if the token made it and never let it out
//!   (`CKA_ALWAYS_SENSITIVE`, `CKA_NEVER_EXTRACTABLE`, private, expected type
//!   and size); objects merely carrying our labels are ignored and logged.
#![forbid(unsafe_code)]

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
pub use signer::{Alg, Jwk, Jwks, PublicKey, Rs256, Signature, Signing, SigningKey};
