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
//!
//! # Integrity of the whole record
//!
//! The private key is not all an attacker who can write to the store wants:
//! the template beside it is ECIES ciphertext to a *public* key, so anyone can
//! encrypt their own face to a victim's key. So the AAD of a [`Binding::Credentials`]
//! blob (`AKW2`) also carries a digest of everything stored with it (the
//! caller's choice: ArcLock hashes the e-mail, model id, public key and
//! template ciphertext). The GCM tag, checked inside the token, is then an
//! HSM-keyed MAC over the record: a template, public key or e-mail swapped
//! in the store makes the unwrap fail, and fails closed.
//!
//! Blobs made before that (`AKW1`, [`Binding::Owner`]: user and version
//! only) open only while the token lacks the private data object
//! [`BOUND_MARKER`]. The daemon re-wraps every such blob as `AKW2`, then
//! makes the marker; from then on an `AKW1` blob (an old copy put back into
//! the store) is refused. A new token gets the marker with its first KEK.
//!
//! # Tokens without AES-GCM
//!
//! opencryptoki's soft token has no `CKM_AES_GCM`, a TPM makes no AES keys
//! (`make hsm-matrix`). On such a token a KEK version is an RSA key pair
//! ([`KekKind::Rsa`]) and a blob is `AKW3` ([`Binding::CredentialsRsa`]): the
//! secret encrypted with `CKM_RSA_PKCS_OAEP` (SHA-1, no label: the one form
//! every token here, the TPM included, decrypts), followed by a 32-byte tag
//! made with the token's pseudonym key (`pseudonym::mac`: HMAC-SHA256, or a
//! hashed RSA signature on a token without HMAC keys) over the same user,
//! version and credentials digest as the GCM AAD, and the ciphertext. The
//! tag, not the OAEP label, is the binding: anyone holding the public key can
//! encrypt to it, nobody without the token can make the tag. The tag is
//! checked before anything is decrypted. The kind of each version is what the token
//! holds under its label, so versions of both kinds coexist and rotation
//! moves blobs from one to the other.

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::Zeroizing;

use crate::LockedBytes;
use crate::error::{Error, from_ck};
use crate::pool::{Hsm, Inner};
use crate::trust::{self, Expect, kept_in_token};

const NONCE_LEN: usize = 12;
const TAG_BITS: u64 = 128;
const TAG_LEN: usize = 16;
const MAGIC_OWNER: &[u8; 4] = b"AKW1";
const MAGIC_CREDENTIALS: &[u8; 4] = b"AKW2";
const MAGIC_RSA: &[u8; 4] = b"AKW3";
/// The HMAC-SHA256 tag that ends an `AKW3` blob.
const RSA_TAG_LEN: usize = 32;
/// RSA KEKs are this large (a TPM makes 2048-bit keys; 3072 where it can).
const RSA_KEK_BITS: u64 = 2048;
const LABEL_PREFIX: &str = "kek-v";

/// What a KEK is: AES-256, made in the token and never out of it ([`trust`]).
const KEK: Expect = Expect::Secret(KeyType::AES, 32);
/// What an RSA KEK's private half is, on a token without AES-GCM.
const RSA_KEK: Expect = Expect::RsaPrivate(2048);

/// Which kind of key a new KEK version is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KekKind {
    /// AES-256 and `CKM_AES_GCM` (`AKW2` blobs).
    Aes,
    /// An RSA key pair, `CKM_RSA_PKCS_OAEP` and an HMAC tag (`AKW3` blobs).
    Rsa,
}

impl KekKind {
    /// AES where the token both makes AES keys and does GCM, else RSA.
    pub fn choose(offered: &[cryptoki::mechanism::MechanismType]) -> Self {
        use cryptoki::mechanism::MechanismType as M;
        if offered.contains(&M::AES_KEY_GEN) && offered.contains(&M::AES_GCM) {
            KekKind::Aes
        } else {
            KekKind::Rsa
        }
    }
}

/// A KEK version number (`kek-v1` is 1). Old versions keep unwrapping until retired.
pub type KekVersion = u32;

/// The label of the private data object whose presence means every blob
/// is [`Binding::Credentials`] and an `AKW1` blob must be refused.
pub const BOUND_MARKER: &str = "arclock-credentials-bound-v1";

/// What a blob's GCM tag authenticates besides the secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `AKW1`: the user id and the KEK version only (legacy, see the module docs).
    Owner,
    /// `AKW2`: also a 32-byte digest of the credentials stored with the blob.
    Credentials,
    /// `AKW3`: the same binding, under an RSA KEK (RSA-OAEP and an HMAC tag
    /// made in the token; see the module docs).
    CredentialsRsa,
}

impl Binding {
    /// The number stored beside the blob (1 = `AKW1`, 2 = `AKW2`, 3 = `AKW3`).
    pub fn as_u8(self) -> u8 {
        match self {
            Binding::Owner => 1,
            Binding::Credentials => 2,
            Binding::CredentialsRsa => 3,
        }
    }

    /// Parses [`Binding::as_u8`].
    pub fn from_u8(n: u8) -> Result<Self, Error> {
        match n {
            1 => Ok(Binding::Owner),
            2 => Ok(Binding::Credentials),
            3 => Ok(Binding::CredentialsRsa),
            _ => Err(Error::Malformed("binding")),
        }
    }

    fn magic(self) -> &'static [u8; 4] {
        match self {
            Binding::Owner => MAGIC_OWNER,
            Binding::Credentials => MAGIC_CREDENTIALS,
            Binding::CredentialsRsa => MAGIC_RSA,
        }
    }
}

/// A per-user secret encrypted under a KEK: safe to store anywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_version: KekVersion,
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the 16-byte GCM tag.
    pub ciphertext: Vec<u8>,
    /// What the tag covers.
    pub binding: Binding,
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKey")
            .field("kek_version", &self.kek_version)
            .field("binding", &self.binding)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl WrappedKey {
    /// Stable storage encoding: `AKW1|AKW2 | version (u32 BE) | nonce (12) | ciphertext+tag`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 4 + NONCE_LEN + self.ciphertext.len());
        out.extend_from_slice(self.binding.magic());
        out.extend_from_slice(&self.kek_version.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses [`WrappedKey::to_bytes`]; any other input is `Malformed`, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (binding, rest) = [
            Binding::Owner,
            Binding::Credentials,
            Binding::CredentialsRsa,
        ]
        .into_iter()
        .find_map(|b| Some((b, bytes.strip_prefix(b.magic().as_slice())?)))
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
            binding,
        })
    }
}

/// AAD binding a blob to its owner and KEK version, and for `AKW2` to the
/// credentials digest (length-prefixed, unambiguous; the two versions differ
/// in their first bytes).
fn aad(user_id: &str, version: KekVersion, credentials: Option<&[u8; 32]>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64 + user_id.len());
    aad.extend_from_slice(match credentials {
        None => b"arclock/wrapped-key/v1\0",
        Some(_) => b"arclock/wrapped-key/v2\0",
    });
    aad.extend_from_slice(&(user_id.len() as u32).to_be_bytes());
    aad.extend_from_slice(user_id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    if let Some(digest) = credentials {
        aad.extend_from_slice(digest);
    }
    aad
}

/// Whether the token says every blob is bound ([`BOUND_MARKER`]). Only a
/// private object counts: making one needs the user PIN.
fn legacy_closed(session: &Session) -> Result<bool, Error> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(BOUND_MARKER.as_bytes().to_vec()),
        ])
        .map_err(from_ck)?;
    Ok(!found.is_empty())
}

/// Makes [`BOUND_MARKER`] unless it exists.
pub(crate) fn close_legacy(session: &Session) -> Result<bool, Error> {
    if legacy_closed(session)? {
        return Ok(false);
    }
    let _catalogue = crate::context::catalogue();
    session
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Modifiable(false),
            Attribute::Label(BOUND_MARKER.as_bytes().to_vec()),
            Attribute::Application(b"arclock".to_vec()),
            Attribute::Value(b"every wrapped key is AKW2".to_vec()),
        ])
        .map_err(from_ck)?;
    Ok(true)
}

fn label(version: KekVersion) -> String {
    format!("{LABEL_PREFIX}{version}")
}

/// KEK versions present in the token, ascending: AES keys and RSA key
/// pairs labelled `kek-v<N>` that the token made and never let out.
pub(crate) fn versions(session: &Session) -> Result<Vec<KekVersion>, Error> {
    let mut out = versions_of(session, &[KekKind::Aes, KekKind::Rsa])?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The trusted KEK versions of the given kinds, in token order.
fn versions_of(session: &Session, kinds: &[KekKind]) -> Result<Vec<KekVersion>, Error> {
    let mut out = Vec::new();
    for kind in kinds {
        let (class, key_type, expect) = match kind {
            KekKind::Aes => (ObjectClass::SECRET_KEY, KeyType::AES, KEK),
            KekKind::Rsa => (ObjectClass::PRIVATE_KEY, KeyType::RSA, RSA_KEK),
        };
        let handles = session
            .find_objects(&[Attribute::Class(class), Attribute::KeyType(key_type)])
            .map_err(from_ck)?;
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
                    match trust::distrust(session, h, expect)? {
                        None => out.push(v),
                        Some(why) => trust::refused(&label(v), &why),
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A KEK version as the token holds it: an AES key, or the private half of
/// an RSA pair (its public half, [`rsa_public`], is looked up only to
/// encrypt or destroy, not on every unwrap).
enum Kek {
    Aes(ObjectHandle),
    Rsa(ObjectHandle),
}

impl Kek {
    fn find(inner: &Inner, session: &Session, version: KekVersion) -> Result<Self, Error> {
        let label = label(version);
        match inner.find(session, &label, KEK) {
            Ok(key) => return Ok(Kek::Aes(key)),
            Err(Error::KeyNotFound(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(Kek::Rsa(inner.find(session, &label, RSA_KEK)?))
    }
}

/// The public half of an RSA KEK: a private object (made only with the PIN)
/// under the same label whose modulus is the trusted private key's, so a
/// public key planted under our label is never encrypted to.
fn rsa_public(
    session: &Session,
    label: &str,
    private: ObjectHandle,
) -> Result<ObjectHandle, Error> {
    let want = trust::modulus(session, private)?;
    for h in session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Private(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(from_ck)?
    {
        if want.is_some() && trust::modulus(session, h)? == want {
            return Ok(h);
        }
        trust::refused(label, "public key without the private key's modulus");
    }
    Err(Error::KeyNotFound(format!("{label} (public half)")))
}

/// OAEP as every token here decrypts it (the TPM only with SHA-1 and no label).
fn oaep() -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    ))
}

/// What an `AKW3` tag covers: the GCM AAD of the same blob, then the
/// ciphertext (domain-separated from every other use of the HMAC key by the
/// AAD's own context string).
fn rsa_tagged(user_id: &str, version: KekVersion, credentials: &[u8; 32], ct: &[u8]) -> Vec<u8> {
    let mut m = b"arclock/wrapped-key/v3\0".to_vec();
    m.extend_from_slice(&aad(user_id, version, Some(credentials)));
    m.extend_from_slice(&(ct.len() as u32).to_be_bytes());
    m.extend_from_slice(ct);
    m
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
    credentials: &[u8; 32],
    secret: &[u8],
) -> Result<WrappedKey, Error> {
    let key = match Kek::find(inner, session, version)? {
        Kek::Aes(key) => key,
        Kek::Rsa(private) => {
            let public = rsa_public(session, &label(version), private)?;
            let mut ciphertext = session.encrypt(&oaep(), public, secret).map_err(from_ck)?;
            let tag = crate::pseudonym::mac(
                inner,
                session,
                &rsa_tagged(user_id, version, credentials, &ciphertext),
            )?;
            ciphertext.extend_from_slice(&tag);
            return Ok(WrappedKey {
                kek_version: version,
                nonce: [0; NONCE_LEN],
                ciphertext,
                binding: Binding::CredentialsRsa,
            });
        }
    };
    let mut nonce = [0u8; NONCE_LEN];
    session.generate_random_slice(&mut nonce).map_err(from_ck)?;
    let aad = aad(user_id, version, Some(credentials));
    let mut iv = nonce;
    let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into()).map_err(from_ck)?;
    let ciphertext = session
        .encrypt(&Mechanism::AesGcm(params), key, secret)
        .map_err(from_ck)?;
    Ok(WrappedKey {
        kek_version: version,
        nonce,
        ciphertext,
        binding: Binding::Credentials,
    })
}

fn decrypt(
    inner: &Inner,
    session: &Session,
    user_id: &str,
    credentials: &[u8; 32],
    wrapped: &WrappedKey,
) -> Result<LockedBytes, Error> {
    let bound = match wrapped.binding {
        Binding::CredentialsRsa => {
            return decrypt_rsa(inner, session, user_id, credentials, wrapped);
        }
        Binding::Credentials => Some(credentials),
        // An old copy put back after the upgrade: refused.
        Binding::Owner if legacy_closed(session)? => {
            tracing::error!(
                kek_version = wrapped.kek_version,
                "an AKW1 wrapped key was presented after every key was bound: refused"
            );
            return Err(Error::IntegrityFailure);
        }
        Binding::Owner => None,
    };
    let Kek::Aes(key) = Kek::find(inner, session, wrapped.kek_version)? else {
        // A GCM blob naming an RSA version: relabelled.
        return Err(Error::IntegrityFailure);
    };
    let aad = aad(user_id, wrapped.kek_version, bound);
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

/// An `AKW3` blob: the tag checked in the token first, then OAEP.
fn decrypt_rsa(
    inner: &Inner,
    session: &Session,
    user_id: &str,
    credentials: &[u8; 32],
    wrapped: &WrappedKey,
) -> Result<LockedBytes, Error> {
    let Kek::Rsa(private) = Kek::find(inner, session, wrapped.kek_version)? else {
        return Err(Error::IntegrityFailure);
    };
    let split = wrapped
        .ciphertext
        .len()
        .checked_sub(RSA_TAG_LEN)
        .ok_or(Error::IntegrityFailure)?;
    let (ct, tag) = wrapped.ciphertext.split_at(split);
    let tagged = rsa_tagged(user_id, wrapped.kek_version, credentials, ct);
    if !crate::pseudonym::verify(inner, session, &tagged, tag)? {
        return Err(Error::IntegrityFailure);
    }
    let plain = Zeroizing::new(session.decrypt(&oaep(), private, ct).map_err(from_ck)?);
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

fn generate(session: &Session, version: KekVersion, kind: KekKind) -> Result<(), Error> {
    let label = label(version);
    match kind {
        KekKind::Aes => {
            let template = sealed_secret(
                KeyType::AES,
                &label,
                &[
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                ],
            );
            trust::generate_key(session, &Mechanism::AesKeyGen, &template)?;
        }
        KekKind::Rsa => {
            trust::generate_rsa_pair(
                session,
                &label,
                RSA_KEK_BITS,
                &[
                    // Made and seen only with the PIN: see `rsa_public`.
                    Attribute::Private(true),
                    Attribute::Encrypt(true),
                    Attribute::Verify(false),
                    Attribute::Wrap(false),
                ],
                &[
                    Attribute::Decrypt(true),
                    Attribute::Sign(false),
                    Attribute::Unwrap(false),
                ],
            )?;
        }
    }
    Ok(())
}

impl Hsm {
    /// Encrypts `secret` for `user_id` under the newest KEK, bound to
    /// `credentials` (a digest of what is stored with the blob).
    pub async fn wrap(
        &self,
        user_id: &str,
        credentials: &[u8; 32],
        secret: &[u8],
    ) -> Result<WrappedKey, Error> {
        let (user_id, credentials) = (user_id.to_string(), *credentials);
        let secret = LockedBytes::from_slice(secret)?;
        self.run(move |inner, s| {
            encrypt(
                inner,
                s,
                current(inner, s)?,
                &user_id,
                &credentials,
                &secret,
            )
        })
        .await
    }

    /// The KEK version a wrap uses now: the newest, as this process last
    /// read it (renewed at most 10 s after a rotation elsewhere). What an
    /// instance reports, so operators see a rotation reach every daemon.
    pub async fn wrapping_version(&self) -> Result<KekVersion, Error> {
        self.run(current).await
    }

    /// Decrypts a blob for `user_id` into locked, zeroize-on-drop memory.
    /// A blob of another user, another version, other credentials or with
    /// any bit changed is `IntegrityFailure`, as is an `AKW1` blob once the
    /// token holds [`BOUND_MARKER`].
    pub async fn unwrap(
        &self,
        user_id: &str,
        credentials: &[u8; 32],
        wrapped: &WrappedKey,
    ) -> Result<LockedBytes, Error> {
        let (user_id, credentials) = (user_id.to_string(), *credentials);
        let wrapped = wrapped.clone();
        self.run(move |inner, s| decrypt(inner, s, &user_id, &credentials, &wrapped))
            .await
    }

    /// Re-encrypts a blob under the newest KEK (`AKW2` or `AKW3`, as that
    /// version's kind), bound to `credentials`; `None` if it already is
    /// both. The plaintext exists only in locked memory, for the length of
    /// one blocking call.
    pub async fn rewrap(
        &self,
        user_id: &str,
        credentials: &[u8; 32],
        wrapped: &WrappedKey,
    ) -> Result<Option<WrappedKey>, Error> {
        let (user_id, credentials) = (user_id.to_string(), *credentials);
        let wrapped = wrapped.clone();
        self.run(move |inner, s| {
            let newest = current(inner, s)?;
            // A bound blob under the newest version was made by its kind.
            if wrapped.kek_version == newest && wrapped.binding != Binding::Owner {
                return Ok(None);
            }
            let plain = decrypt(inner, s, &user_id, &credentials, &wrapped)?;
            encrypt(inner, s, newest, &user_id, &credentials, &plain).map(Some)
        })
        .await
    }

    /// Whether `AKW1` blobs still open (the token lacks [`BOUND_MARKER`]).
    /// Only an AES KEK opens `AKW1` (GCM), so a token holding none (one
    /// that makes RSA KEKs: a TPM) has nothing to bind and needs no marker,
    /// which such a token may not even store.
    pub async fn legacy_blobs_open(&self) -> Result<bool, Error> {
        self.run(|_, s| Ok(!legacy_closed(s)? && !versions_of(s, &[KekKind::Aes])?.is_empty()))
            .await
    }

    /// Refuses `AKW1` blobs from now on, on every daemon using this token
    /// (call once every stored blob is `AKW2`). `true` if it was open.
    pub async fn close_legacy_blobs(&self) -> Result<bool, Error> {
        self.run(|_, s| close_legacy(s)).await
    }

    /// KEK versions in the token, ascending (the last one wraps new secrets).
    pub async fn kek_versions(&self) -> Result<Vec<KekVersion>, Error> {
        self.run(|_, s| versions(s)).await
    }

    /// Generates the next KEK version inside the token, of the kind the
    /// token supports ([`KekKind::choose`]), and makes it current.
    pub async fn create_kek_version(&self) -> Result<KekVersion, Error> {
        let kind = self.kek_kind().await?;
        self.create_kek_version_of(kind).await
    }

    /// [`Hsm::create_kek_version`] of a given kind (tests make RSA KEKs on a
    /// token that does AES too).
    pub async fn create_kek_version_of(&self, kind: KekKind) -> Result<KekVersion, Error> {
        self.run(move |inner, s| {
            let next = versions(s)?.last().copied().unwrap_or(0) + 1;
            generate(s, next, kind)?;
            inner.forget_current();
            Ok(next)
        })
        .await
    }

    /// The kind of KEK this token gets, from its mechanism list.
    pub async fn kek_kind(&self) -> Result<KekKind, Error> {
        self.run(|inner, _| Ok(KekKind::choose(&inner.mechanisms()?)))
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
            let kek = Kek::find(inner, s, version)?;
            let _catalogue = crate::context::catalogue();
            match kek {
                Kek::Aes(key) => {
                    s.destroy_object(key).map_err(from_ck)?;
                    inner.forget(ObjectClass::SECRET_KEY, &label(version));
                }
                Kek::Rsa(private) => {
                    let public = rsa_public(s, &label(version), private)?;
                    s.destroy_object(private).map_err(from_ck)?;
                    s.destroy_object(public).map_err(from_ck)?;
                    inner.forget(ObjectClass::PRIVATE_KEY, &label(version));
                }
            }
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
            binding: Binding::Credentials,
        };
        assert_eq!(WrappedKey::from_bytes(&w.to_bytes()).unwrap(), w);
        let old = WrappedKey {
            binding: Binding::Owner,
            ..w.clone()
        };
        assert_eq!(WrappedKey::from_bytes(&old.to_bytes()).unwrap(), old);
        assert_ne!(old.to_bytes(), w.to_bytes());
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
        assert_ne!(aad("ab", 1, None), aad("a", 1, None));
        assert_ne!(aad("u", 1, None), aad("u", 2, None));
        assert_ne!(aad("u", 1, Some(&[0; 32])), aad("u", 1, Some(&[1; 32])));
        assert_ne!(aad("u", 1, Some(&[0; 32]))[..23], aad("u", 1, None)[..23]);
    }
}
