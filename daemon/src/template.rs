//! Face templates at rest: the embedding encrypted (ECIES, secp256k1) to a
//! per-user key pair whose private half is wrapped by the HSM.
//!
//! Enrolment makes the key pair, encrypts the embedding to the public key and
//! has the HSM wrap the private key (AAD = user id + KEK version). Verification
//! has the HSM unwrap the private key into locked memory, decrypts, and parses
//! the embedding with the model id stored beside it, so a template made by
//! another model is refused rather than compared.
//!
//! Not controlled: `ecies` and `k256` hold the private scalar and the
//! decrypted plaintext in their own stack/heap values for the length of one
//! call; we wipe every buffer we get back and keep ours locked.

use arclock_face::Embedding;
use arclock_hsm::{Hsm, LockedBytes};
use zeroize::Zeroizing;

use crate::identity::UserId;
use crate::store::{Credentials, StoredKey, Template};
use crate::timing::{self, Step};

/// Why a template could not be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The HSM refused or is unavailable (`IntegrityFailure` = tampered blob).
    #[error(transparent)]
    Hsm(#[from] arclock_hsm::Error),
    /// The embedding could not be serialised or parsed.
    #[error(transparent)]
    Face(#[from] arclock_face::Error),
    /// ECIES failed (a damaged template or key).
    #[error("template cryptography failed: {0}")]
    Crypto(String),
}

/// Encrypts `embedding` for `user` and wraps the fresh private key in the HSM.
pub async fn seal(
    hsm: &Hsm,
    user: &UserId,
    embedding: &Embedding,
) -> Result<Credentials, TemplateError> {
    let crypto = |e: &dyn std::fmt::Display| TemplateError::Crypto(e.to_string());
    let secret = ecies::SecretKey::generate();
    let public = ecies::PublicKey::from_secret_key(&secret);
    let secret_bytes = Zeroizing::new(secret.serialize());
    drop(secret);
    let public_key = public.serialize_compressed().to_vec();
    let plain = embedding.to_bytes()?;
    let ciphertext = ecies::encrypt(&public_key, &plain).map_err(|e| crypto(&e))?;
    drop(plain);
    let wrapped =
        timing::timed(Step::Hsm, hsm.wrap(user.as_str(), secret_bytes.as_slice())).await?;
    Ok(Credentials {
        template: Template {
            model_id: embedding.model_id().to_string(),
            ciphertext,
        },
        key: StoredKey {
            wrapped,
            public_key,
        },
    })
}

/// Unwraps the user's key in the HSM and decrypts the stored embedding.
pub async fn open(
    hsm: &Hsm,
    user: &UserId,
    creds: &Credentials,
) -> Result<Embedding, TemplateError> {
    let crypto = |e: &dyn std::fmt::Display| TemplateError::Crypto(e.to_string());
    let secret: LockedBytes =
        timing::timed(Step::Hsm, hsm.unwrap(user.as_str(), &creds.key.wrapped)).await?;
    timing::measured(Step::Decrypt, || {
        let plain = Zeroizing::new(
            ecies::decrypt(&secret, &creds.template.ciphertext).map_err(|e| crypto(&e))?,
        );
        drop(secret);
        let locked = LockedBytes::from_slice(&plain).map_err(|e| crypto(&e))?;
        drop(plain);
        Ok(Embedding::from_bytes(&creds.template.model_id, &locked)?)
    })
}
