//! Keyed pseudonyms: HMAC-SHA256 under a secret that never leaves the token.
//!
//! Lockout counters and challenges are kept per e-mail address, known or
//! not, under a pseudonym so that the store does not list who tried to sign
//! in. A bare SHA-256 of the address is no pseudonym: anyone holding a copy
//! of the store (a backup, a MongoDB replica) hashes a list of candidate
//! addresses and reads who was locked out. With the key inside the HSM
//! (`CKM_SHA256_HMAC`, a generic secret made on the token, sensitive and not
//! extractable) a copy of the store alone cannot be matched against
//! anything.
//!
//! A token that makes no generic secrets or has no HMAC (a TPM through
//! tpm2-pkcs11) gets an RSA key pair under the same label instead, and the
//! pseudonym is SHA-256 of an RS256 signature of the input: PKCS#1 v1.5
//! signatures are deterministic and need the private key, so this is a keyed
//! function nobody without the token can compute, at the token's signing
//! rate. Tags are then checked by recomputing them, in constant time.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectHandle};
use cryptoki::session::Session;
use sha2::{Digest, Sha256};

use crate::error::{Error, from_ck};
use crate::kek::sealed_secret;
use crate::pool::{Hsm, Inner};
use crate::trust::{self, Expect};

/// The label (and id) of the pseudonym key in the token.
pub const LABEL: &str = "arclock-pseudonym-v1";

fn generate(inner: &Inner, session: &Session) -> Result<(), Error> {
    use cryptoki::mechanism::MechanismType as M;
    let offered = inner.mechanisms()?;
    if !(offered.contains(&M::GENERIC_SECRET_KEY_GEN) && offered.contains(&M::SHA256_HMAC)) {
        trust::generate_rsa_pair(
            session,
            LABEL,
            2048,
            &[
                Attribute::Private(true),
                Attribute::Verify(false),
                Attribute::Encrypt(false),
            ],
            &[Attribute::Sign(true), Attribute::Decrypt(false)],
        )?;
        return Ok(());
    }
    let template = sealed_secret(
        KeyType::GENERIC_SECRET,
        LABEL,
        &[
            Attribute::Sign(true),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
        ],
    );
    trust::generate_key(session, &Mechanism::GenericSecretKeyGen, &template)?;
    Ok(())
}

/// What the pseudonym key is: a 256-bit HMAC secret made in the token and
/// never out of it ([`trust`]).
const KEY: Expect = Expect::Secret(KeyType::GENERIC_SECRET, 32);
/// What it is on a token without HMAC keys.
const RSA_KEY: Expect = Expect::RsaPrivate(2048);

/// The pseudonym key as the token holds it.
enum Key {
    Hmac(ObjectHandle),
    Rsa(ObjectHandle),
}

fn key(inner: &Inner, session: &Session) -> Result<Key, Error> {
    match inner.find(session, LABEL, KEY) {
        Ok(k) => Ok(Key::Hmac(k)),
        Err(Error::KeyNotFound(_)) => Ok(Key::Rsa(inner.find(session, LABEL, RSA_KEY)?)),
        Err(e) => Err(e),
    }
}

/// Whether the token holds a pseudonym key ArcLock made (an object merely
/// labelled so does not count: a new key is made beside it).
fn present(session: &Session) -> Result<bool, Error> {
    for expect in [KEY, RSA_KEY] {
        match trust::find(session, LABEL, expect) {
            Ok(_) => return Ok(true),
            Err(Error::KeyNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

pub(crate) fn mac(inner: &Inner, session: &Session, data: &[u8]) -> Result<[u8; 32], Error> {
    let out = match key(inner, session)? {
        Key::Hmac(key) => session
            .sign(&Mechanism::Sha256Hmac, key, data)
            .map_err(from_ck)?,
        Key::Rsa(key) => Sha256::digest(crate::signer::rs256(inner, session, key, data)?).to_vec(),
    };
    out.try_into().map_err(|v: Vec<u8>| Error::Pkcs11 {
        function: "C_Sign (HMAC)".into(),
        rv: format!("{} bytes instead of 32", v.len()),
    })
}

/// Whether `tag` is the MAC of `data`: compared inside the token
/// (`C_Verify`) for an HMAC key, recomputed and compared in constant time
/// for an RSA one.
pub(crate) fn verify(
    inner: &Inner,
    session: &Session,
    data: &[u8],
    tag: &[u8],
) -> Result<bool, Error> {
    let key = match key(inner, session)? {
        Key::Hmac(key) => key,
        Key::Rsa(_) => {
            let want = mac(inner, session, data)?;
            let diff = want
                .iter()
                .zip(tag)
                .fold(u8::from(tag.len() != want.len()), |d, (a, b)| d | (a ^ b));
            return Ok(diff == 0);
        }
    };
    match session.verify(&Mechanism::Sha256Hmac, key, data, tag) {
        Ok(()) => Ok(true),
        Err(cryptoki::error::Error::Pkcs11(
            cryptoki::error::RvError::SignatureInvalid
            | cryptoki::error::RvError::SignatureLenRange,
            _,
        )) => Ok(false),
        Err(e) => Err(from_ck(e)),
    }
}

impl Hsm {
    /// HMAC-SHA256 of `data` under the token's pseudonym key: the same input
    /// always gives the same pseudonym, and nobody without the token can
    /// compute one.
    pub async fn pseudonym(&self, data: &[u8]) -> Result<[u8; 32], Error> {
        let data = data.to_vec();
        self.run(move |inner, s| mac(inner, s, &data)).await
    }

    /// [`Hsm::pseudonym`] of each input, in one trip to the token.
    pub async fn pseudonyms(&self, inputs: Vec<Vec<u8>>) -> Result<Vec<[u8; 32]>, Error> {
        self.run(move |inner, s| inputs.iter().map(|d| mac(inner, s, d)).collect())
            .await
    }

    /// Whether the token holds the pseudonym key.
    pub async fn has_pseudonym_key(&self) -> Result<bool, Error> {
        self.run(|_, s| present(s)).await
    }

    /// Generates the pseudonym key inside the token (once: a second call
    /// finds it and does nothing). A new key makes every existing lockout
    /// counter unreachable, so it is never rotated casually.
    pub async fn create_pseudonym_key(&self) -> Result<bool, Error> {
        self.run(|inner, s| {
            if present(s)? {
                return Ok(false);
            }
            generate(inner, s)?;
            Ok(true)
        })
        .await
    }
}
