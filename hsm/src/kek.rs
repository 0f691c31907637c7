//! Key-encryption keys and the per-user keys they wrap.
//!
//! A KEK is an AES-256 secret key generated inside the token (`CKA_SENSITIVE`,
//! not extractable, not copyable), labelled `kek-v<N>`. Per-user private keys are
//! encrypted with `CKM_AES_GCM` inside the token: a fresh 96-bit nonce from the
//! token's RNG, a 128-bit tag, and AAD that binds the user id and the KEK version,
//! so a blob copied to another user, or relabelled to another version, fails.
//! `CKM_AES_KEY_WRAP_PAD` was the alternative; it has no AAD, so binding a blob
//! to its owner would need a second mechanism, and it wraps only key objects,
//! while our plaintext is an ECIES private key that lives in Rust, not in the token.

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::Session;
use zeroize::Zeroizing;

use crate::LockedBytes;
use crate::error::{Error, from_ck};
use crate::pool::{Hsm, Inner};
use crate::trust::{self, Expect, kept_in_token};

const NONCE_LEN: usize = 12;
const TAG_BITS: u64 = 128;
const TAG_LEN: usize = 16;
const MAGIC: &[u8; 4] = b"AKW1";
const LABEL_PREFIX: &str = "kek-v";

/// What a KEK is: AES-256, made in the token and never out of it ([`trust`]).
const KEK: Expect = Expect::Secret(KeyType::AES, 32);

/// A KEK version number (`kek-v1` is 1). Old versions keep unwrapping until retired.
pub type KekVersion = u32;

/// A per-user secret encrypted under a KEK: safe to store anywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_version: KekVersion,
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte GCM tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKey")
            .field("kek_version", &self.kek_version)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl WrappedKey {
    /// Stable storage encoding: `AKW1 | version (u32 BE) | nonce (12) | ciphertext+tag`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 4 + NONCE_LEN + self.ciphertext.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.kek_version.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses [`WrappedKey::to_bytes`]; any other input is `Malformed`, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or(Error::Malformed("bad magic"))?;
        if rest.len() < 4 + NONCE_LEN + TAG_LEN {
            return Err(Error::Malformed("too short"));
        }
        let (version, rest) = rest.split_at(4);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let kek_version = u32::from_be_bytes(
            version
                .try_into()
                .map_err(|_| Error::Malformed("version"))?,
        );
        if kek_version == 0 {
            return Err(Error::Malformed("version 0"));
        }
        Ok(WrappedKey {
            kek_version,
            nonce: nonce.try_into().map_err(|_| Error::Malformed("nonce"))?,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

/// AAD binding a blob to its owner and KEK version (length-prefixed, unambiguous).
fn aad(user_id: &str, version: KekVersion) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + user_id.len());
    aad.extend_from_slice(b"arclock/wrapped-key/v1\0");
    aad.extend_from_slice(&(user_id.len() as u32).to_be_bytes());
    aad.extend_from_slice(user_id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

fn label(version: KekVersion) -> String {
    format!("{LABEL_PREFIX}{version}")
}

/// KEK versions present in the token, ascending.
pub(crate) fn versions(session: &Session) -> Result<Vec<KekVersion>, Error> {
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
        ])
        .map_err(from_ck)?;
    let mut out = Vec::new();
    for h in handles {
        for attr in session
            .get_attributes(h, &[AttributeType::Label])
            .map_err(from_ck)?
        {
            if let Attribute::Label(l) = attr
                && let Some(v) = std::str::from_utf8(&l)
                    .ok()
                    .and_then(|l| l.strip_prefix(LABEL_PREFIX))
                    .and_then(|v| v.parse::<u32>().ok())
            {
                // A planted key must never become the newest KEK.
                match trust::distrust(session, h, KEK)? {
                    None => out.push(v),
                    Some(why) => trust::refused(&label(v), &why),
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The version new secrets are wrapped under (the highest present).
fn current(inner: &Inner, session: &Session) -> Result<KekVersion, Error> {
    inner.current_kek(|| {
        versions(session)?
            .last()
            .copied()
            .ok_or_else(|| Error::KeyNotFound(format!("{LABEL_PREFIX}* (no KEK in token)")))
    })
}

fn encrypt(
    inner: &Inner,
    session: &Session,
    version: KekVersion,
    user_id: &str,
    secret: &[u8],
) -> Result<WrappedKey, Error> {
    let key = inner.find(session, &label(version), KEK)?;
    let mut nonce = [0u8; NONCE_LEN];
    session.generate_random_slice(&mut nonce).map_err(from_ck)?;
    let aad = aad(user_id, version);
    let mut iv = nonce;
    let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into()).map_err(from_ck)?;
    let ciphertext = session
        .encrypt(&Mechanism::AesGcm(params), key, secret)
        .map_err(from_ck)?;
    Ok(WrappedKey {
        kek_version: version,
        nonce,
        ciphertext,
    })
}

fn decrypt(
    inner: &Inner,
    session: &Session,
    user_id: &str,
    wrapped: &WrappedKey,
) -> Result<LockedBytes, Error> {
    let key = inner.find(session, &label(wrapped.kek_version), KEK)?;
    let aad = aad(user_id, wrapped.kek_version);
    let mut iv = wrapped.nonce;
    let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into()).map_err(from_ck)?;
    // cryptoki returns a plain Vec: wipe it as soon as it is copied to locked memory.
    let plain = Zeroizing::new(
        session
            .decrypt(&Mechanism::AesGcm(params), key, &wrapped.ciphertext)
            .map_err(|e| match e {
                // SoftHSM2 reports a GCM tag mismatch as CKR_GENERAL_ERROR from
                // C_Decrypt; either way the blob is refused (fail closed).
                CkError::Pkcs11(RvError::GeneralError, Function::Decrypt) => {
                    Error::IntegrityFailure
                }
                e => from_ck(e),
            })?,
    );
    Ok(LockedBytes::from_slice(&plain)?)
}

/// The template of a 256-bit secret key that never leaves the token
/// ([`kept_in_token`], and not modifiable), labelled and identified by
/// `label`, usable only as `usage` says.
pub(crate) fn sealed_secret(key_type: KeyType, label: &str, usage: &[Attribute]) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type),
        Attribute::ValueLen(32.into()),
    ];
    t.extend(kept_in_token());
    t.push(Attribute::Modifiable(false));
    t.extend_from_slice(usage);
    t.push(Attribute::Label(label.as_bytes().to_vec()));
    t.push(Attribute::Id(label.as_bytes().to_vec()));
    t
}

fn generate(session: &Session, version: KekVersion) -> Result<(), Error> {
    let template = sealed_secret(
        KeyType::AES,
        &label(version),
        &[
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
        ],
    );
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(from_ck)?;
    Ok(())
}

impl Hsm {
    /// Encrypts `secret` for `user_id` under the newest KEK.
    pub async fn wrap(&self, user_id: &str, secret: &[u8]) -> Result<WrappedKey, Error> {
        let user_id = user_id.to_string();
        let secret = LockedBytes::from_slice(secret)?;
        self.run(move |inner, s| encrypt(inner, s, current(inner, s)?, &user_id, &secret))
            .await
    }

    /// Decrypts a blob for `user_id` into locked, zeroize-on-drop memory.
    /// A blob of another user, another version or with any bit changed is
    /// `IntegrityFailure`.
    pub async fn unwrap(&self, user_id: &str, wrapped: &WrappedKey) -> Result<LockedBytes, Error> {
        let user_id = user_id.to_string();
        let wrapped = wrapped.clone();
        self.run(move |inner, s| decrypt(inner, s, &user_id, &wrapped))
            .await
    }

    /// Re-encrypts a blob under the newest KEK; the plaintext only exists in
    /// locked memory for the length of one blocking call.
    pub async fn rewrap(&self, user_id: &str, wrapped: &WrappedKey) -> Result<WrappedKey, Error> {
        let user_id = user_id.to_string();
        let wrapped = wrapped.clone();
        self.run(move |inner, s| {
            let newest = current(inner, s)?;
            if wrapped.kek_version == newest {
                return Ok(wrapped.clone());
            }
            let plain = decrypt(inner, s, &user_id, &wrapped)?;
            encrypt(inner, s, newest, &user_id, &plain)
        })
        .await
    }

    /// KEK versions in the token, ascending (the last one wraps new secrets).
    pub async fn kek_versions(&self) -> Result<Vec<KekVersion>, Error> {
        self.run(|_, s| versions(s)).await
    }

    /// Generates the next KEK version inside the token and makes it current.
    pub async fn create_kek_version(&self) -> Result<KekVersion, Error> {
        self.run(|inner, s| {
            let next = versions(s)?.last().copied().unwrap_or(0) + 1;
            generate(s, next)?;
            inner.forget_current();
            Ok(next)
        })
        .await
    }

    /// Destroys an old KEK once nothing is wrapped under it any more. The newest
    /// version cannot be retired.
    pub async fn retire_kek_version(&self, version: KekVersion) -> Result<(), Error> {
        self.run(move |inner, s| {
            // Decide on the token's own list, not the cache: never retire the newest.
            if versions(s)?.last() == Some(&version) {
                return Err(Error::Pkcs11 {
                    function: "retire".into(),
                    rv: format!("{} is the current KEK", label(version)),
                });
            }
            let handle = inner.find(s, &label(version), KEK)?;
            s.destroy_object(handle).map_err(from_ck)?;
            inner.forget(ObjectClass::SECRET_KEY, &label(version));
            inner.forget_current();
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trip_and_rejects_garbage() {
        let w = WrappedKey {
            kek_version: 3,
            nonce: [9; 12],
            ciphertext: vec![1; 48],
        };
        assert_eq!(WrappedKey::from_bytes(&w.to_bytes()).unwrap(), w);
        for bad in [
            &b""[..],
            b"AKW1",
            b"XXXX\0\0\0\x01aaaaaaaaaaaabbbbbbbbbbbbbbbb",
            &w.to_bytes()[..30],
        ] {
            assert!(WrappedKey::from_bytes(bad).is_err());
        }
        let mut zero = w.to_bytes();
        zero[4..8].copy_from_slice(&[0; 4]);
        assert!(WrappedKey::from_bytes(&zero).is_err());
        assert!(!format!("{w:?}").contains("[1, 1"));
    }

    #[test]
    fn aad_is_unambiguous() {
        assert_ne!(aad("ab", 1), aad("a", 1));
        assert_ne!(aad("u", 1), aad("u", 2));
    }
}
