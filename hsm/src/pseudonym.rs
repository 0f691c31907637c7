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

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType};
use cryptoki::session::Session;

use crate::error::{Error, from_ck};
use crate::kek::sealed_secret;
use crate::pool::{Hsm, Inner};
use crate::trust::{self, Expect};

/// The label (and id) of the pseudonym key in the token.
pub const LABEL: &str = "arclock-pseudonym-v1";

fn generate(session: &Session) -> Result<(), Error> {
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
    session
        .generate_key(&Mechanism::GenericSecretKeyGen, &template)
        .map_err(from_ck)?;
    Ok(())
}

/// What the pseudonym key is: a 256-bit HMAC secret made in the token and
/// never out of it ([`trust`]).
const KEY: Expect = Expect::Secret(KeyType::GENERIC_SECRET, 32);

/// Whether the token holds a pseudonym key ArcLock made (an object merely
/// labelled so does not count: a new key is made beside it).
fn present(session: &Session) -> Result<bool, Error> {
    match trust::find(session, LABEL, KEY) {
        Ok(_) => Ok(true),
        Err(Error::KeyNotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

fn mac(inner: &Inner, session: &Session, data: &[u8]) -> Result<[u8; 32], Error> {
    let key = inner.find(session, LABEL, KEY)?;
    let out = session
        .sign(&Mechanism::Sha256Hmac, key, data)
        .map_err(from_ck)?;
    out.try_into().map_err(|v: Vec<u8>| Error::Pkcs11 {
        function: "C_Sign (HMAC)".into(),
        rv: format!("{} bytes instead of 32", v.len()),
    })
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
        self.run(|_, s| {
            if present(s)? {
                return Ok(false);
            }
            generate(s)?;
            Ok(true)
        })
        .await
    }
}
