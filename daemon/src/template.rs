//! Face templates at rest: the embedding encrypted (ECIES, secp256k1) to a
//! per-user key pair whose private half is wrapped by the HSM.
//!
//! Enrolment makes the key pair, encrypts the embedding to the public key and
//! has the HSM wrap the private key (AAD = user id + KEK version). Verification
//! has the HSM unwrap the private key into locked memory, decrypts, and parses
//! the embedding with the model id stored beside it, so a template made by
//! another model is refused rather than compared.
//!
//! The wrapped key's AAD also carries [`binding`], a digest of the e-mail,
//! model id, public key and template ciphertext: the HSM's GCM tag is then a
//! MAC over the whole record, so someone who can write to the store cannot
//! encrypt their own face to a victim's public key, nor move a record to
//! another address, without the unwrap failing (fail closed, logged).
//!
//! Not controlled: `ecies` and `k256` hold the private scalar and the
//! decrypted plaintext in their own stack/heap values for the length of one
//! call; we wipe every buffer we get back and keep ours locked.

use arclock_face::Embedding;
use arclock_hsm::{Hsm, LockedBytes};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::identity::{Email, UserId};
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

/// What a wrapped key is bound to besides its owner's id: the address the
/// account answers to and every stored byte of its template and public key
/// (each length-prefixed, so no two records share a digest by shifting bytes).
pub fn binding(email: &str, template: &Template, public_key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"arclock/credentials/v1\0");
    for part in [
        email.as_bytes(),
        template.model_id.as_bytes(),
        public_key,
        &template.ciphertext,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// Encrypts `embedding` for `user` and wraps the fresh private key in the
/// HSM, bound to `email` and the template ([`binding`]).
pub async fn seal(
    hsm: &Hsm,
    user: &UserId,
    email: &Email,
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
    let template = Template {
        model_id: embedding.model_id().to_string(),
        ciphertext,
    };
    let bound = binding(email.as_str(), &template, &public_key);
    let wrapped = timing::timed(
        Step::Hsm,
        hsm.wrap(user.as_str(), &bound, secret_bytes.as_slice()),
    )
    .await?;
    Ok(Credentials {
        template,
        key: StoredKey {
            wrapped,
            public_key,
        },
    })
}

/// Unwraps the user's key in the HSM and decrypts the stored embedding; a
/// record that is not the one sealed for `user` at `email` is
/// `IntegrityFailure`.
pub async fn open(
    hsm: &Hsm,
    user: &UserId,
    email: &Email,
    creds: &Credentials,
) -> Result<Embedding, TemplateError> {
    let crypto = |e: &dyn std::fmt::Display| TemplateError::Crypto(e.to_string());
    let bound = binding(email.as_str(), &creds.template, &creds.key.public_key);
    let secret: LockedBytes = timing::timed(
        Step::Hsm,
        hsm.unwrap(user.as_str(), &bound, &creds.key.wrapped),
    )
    .await?;
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
