//! Signing keys for access tokens and audit seals: RS256 or ES256.
//!
//! Each version is a key pair generated in the token (`jwt-v<N>`, one
//! numbering for both kinds); the private half is sensitive and not
//! extractable. RS256 is `C_Sign` with `CKM_SHA256_RSA_PKCS`, or, on a token
//! without it (opencryptoki's soft token), raw `CKM_RSA_PKCS` over a SHA-256
//! DigestInfo made here: PKCS#1 v1.5 is deterministic, so both give the same
//! bytes. ES256 is `CKM_ECDSA` over a SHA-256 digest made here with a P-256
//! key, whose `r || s` is already the JWS form. The configured algorithm
//! ([`Signing`]) decides which kind signs: the newest key of that kind. Keys
//! of the other kind stay published, so a switch between the two keeps every
//! token issued before it valid until it expires. Public halves are exported
//! as JWKs whose `kid` is their RFC 7638 thumbprint, so verifiers pick the
//! right key after a rotation or a switch.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, from_ck};
use crate::pool::{Hsm, Inner};
use crate::trust::{self, Expect};

const LABEL_PREFIX: &str = "jwt-v";

/// What an RS256 signing key is: RSA of 2048 bits or more, made in the
/// token and never out of it ([`trust`]).
const RSA_SIGNER: Expect = Expect::RsaPrivate(2048);

/// What an ES256 signing key is: a P-256 key, likewise.
const EC_SIGNER: Expect = Expect::EcPrivate(P256);

/// DER of the P-256 curve's OID (1.2.840.10045.3.1.7): `CKA_EC_PARAMS`.
pub(crate) const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Which algorithm new signing keys are made for and tokens are signed
/// with (`[hsm] jwt_algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// RSA PKCS#1 v1.5 with SHA-256, keys of `bits` (2048, 3072, 4096):
    /// every token ArcLock has met does it, and every JWT library checks it.
    Rs256 { bits: u32 },
    /// ECDSA P-256 with SHA-256: a signature of 64 bytes instead of 384 (at
    /// 3072 bits), and many more per second on most tokens; opencryptoki's
    /// soft token does not make P-256 keys.
    Es256,
}

impl Signing {
    /// The JWS algorithm of keys made for this.
    pub fn alg(self) -> Alg {
        match self {
            Signing::Rs256 { .. } => Alg::Rs256,
            Signing::Es256 => Alg::Es256,
        }
    }
}

/// The JWS algorithm of a signing key (RFC 7518).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Alg {
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "ES256")]
    Es256,
}

impl Alg {
    /// The name a JWS header and a JWK carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public signing key in JWK form (RFC 7517), ready for a JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    pub kid: String,
    pub alg: Alg,
    #[serde(rename = "use")]
    pub use_: &'static str,
    #[serde(flatten)]
    pub key: PublicKey,
}

/// The key material of a [`Jwk`], tagged by `kty`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kty")]
pub enum PublicKey {
    /// Modulus and public exponent, base64url without padding.
    #[serde(rename = "RSA")]
    Rsa { n: String, e: String },
    /// A P-256 point's coordinates, 32 bytes each, base64url without padding.
    #[serde(rename = "EC")]
    Ec {
        crv: &'static str,
        x: String,
        y: String,
    },
}

/// The published key set, ascending by version: keys of both algorithms.
#[derive(Debug, Clone, Serialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// The key that signs now: what a JWS header names before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub alg: Alg,
    pub kid: String,
}

/// A signature together with the key that made it.
#[derive(Debug, Clone)]
pub struct Signature {
    pub key: SigningKey,
    pub bytes: Vec<u8>,
}

fn label(version: u32) -> String {
    format!("{LABEL_PREFIX}{version}")
}

impl Jwk {
    /// An RS256 key from its big-endian modulus and exponent.
    pub fn rsa(modulus: &[u8], exponent: &[u8]) -> Jwk {
        let n = URL_SAFE_NO_PAD.encode(strip_zeros(modulus));
        let e = URL_SAFE_NO_PAD.encode(strip_zeros(exponent));
        // RFC 7638: members in lexicographic order, no whitespace.
        let kid = thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#));
        Jwk {
            kid,
            alg: Alg::Rs256,
            use_: "sig",
            key: PublicKey::Rsa { n, e },
        }
    }

    /// An ES256 key from its uncompressed point (`04 || x || y`).
    pub fn p256(point: &[u8; 65]) -> Jwk {
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..]);
        let kid = thumbprint(&format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#
        ));
        Jwk {
            kid,
            alg: Alg::Es256,
            use_: "sig",
            key: PublicKey::Ec { crv: "P-256", x, y },
        }
    }
}

fn thumbprint(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b
        .iter()
        .position(|x| *x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[first..]
}

/// Signing key versions with their public JWKs, ascending by version. A
/// public key object counts only beside a trusted private key of the same
/// label that it belongs to (same modulus; for P-256, a signature by the
/// private key that the public one verifies): a public object needs no PIN
/// to create, and one planted under our label would otherwise be published
/// and trusted to verify tokens its planter signed.
pub(crate) fn public_keys(inner: &Inner, session: &Session) -> Result<Vec<(u32, Jwk)>, Error> {
    let handles = session
        .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])
        .map_err(from_ck)?;
    let mut out = Vec::new();
    for h in handles {
        let attrs = session
            .get_attributes(h, &[AttributeType::Label, AttributeType::KeyType])
            .map_err(from_ck)?;
        let (mut version, mut key_type) = (None, None);
        for a in attrs {
            match a {
                Attribute::Label(l) => {
                    version = std::str::from_utf8(&l)
                        .ok()
                        .and_then(|l| l.strip_prefix(LABEL_PREFIX))
                        .and_then(|v| v.parse::<u32>().ok());
                }
                Attribute::KeyType(t) => key_type = Some(t),
                _ => {}
            }
        }
        let Some(v) = version else { continue };
        let jwk = match key_type {
            Some(KeyType::RSA) => rsa_public(session, h, v)?,
            Some(KeyType::EC) => ec_public(inner, session, h, v)?,
            _ => Err(format!("public key of type {key_type:?}")),
        };
        match jwk {
            Ok(jwk) => out.push((v, jwk)),
            Err(why) => trust::refused(&label(v), &why),
        }
    }
    out.sort_by_key(|(v, _)| *v);
    Ok(out)
}

/// The JWK of RSA public key `h` of version `v`, or why it is not trusted.
fn rsa_public(session: &Session, h: ObjectHandle, v: u32) -> Result<Result<Jwk, String>, Error> {
    let (mut n, mut e) = (None, None);
    for a in session
        .get_attributes(h, &[AttributeType::Modulus, AttributeType::PublicExponent])
        .map_err(from_ck)?
    {
        match a {
            Attribute::Modulus(m) => n = Some(m),
            Attribute::PublicExponent(x) => e = Some(x),
            _ => {}
        }
    }
    let (Some(n), Some(e)) = (n, e) else {
        return Ok(Err("RSA public key without modulus or exponent".into()));
    };
    let Ok(private) = trust::find(session, &label(v), RSA_SIGNER) else {
        return Ok(Err(
            "public key without a private key made in the token".into()
        ));
    };
    Ok(match trust::modulus(session, private)? {
        Some(m) if strip_zeros(&m) == strip_zeros(&n) => Ok(Jwk::rsa(&n, &e)),
        _ => Err("public key without the private key's modulus".into()),
    })
}

/// The JWK of EC public key `h` of version `v`, or why it is not trusted.
/// A private EC key need not report its point, so the pair is proven by
/// use: the private key signs, the public point must verify it.
fn ec_public(
    inner: &Inner,
    session: &Session,
    h: ObjectHandle,
    v: u32,
) -> Result<Result<Jwk, String>, Error> {
    let (mut params, mut point) = (None, None);
    for a in session
        .get_attributes(h, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(from_ck)?
    {
        match a {
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    if params.as_deref() != Some(P256) {
        return Ok(Err("EC public key not on P-256".into()));
    }
    let Some(point) = point.as_deref().and_then(uncompressed_point) else {
        return Ok(Err(
            "EC public key without an uncompressed P-256 point".into()
        ));
    };
    let Ok(private) = trust::find(session, &label(v), EC_SIGNER) else {
        return Ok(Err(
            "public key without a private key made in the token".into()
        ));
    };
    if inner.proven(v, &point)? {
        return Ok(Ok(Jwk::p256(&point)));
    }
    let probe = [b"arclock/signing-key-pair/v1\0".as_slice(), &point].concat();
    let signature = es256(session, private, &probe)?;
    let verifies = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        &point[..],
    )
    .verify(&probe, &signature)
    .is_ok();
    Ok(if verifies {
        inner.prove(v, &point)?;
        Ok(Jwk::p256(&point))
    } else {
        Err("public key that does not verify the private key's signature".into())
    })
}

/// `04 || x || y` from `CKA_EC_POINT`, which PKCS#11 says is a DER OCTET
/// STRING around it and some tokens give bare.
fn uncompressed_point(raw: &[u8]) -> Option<[u8; 65]> {
    let bare = match raw {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        _ => raw,
    };
    let point: [u8; 65] = bare.try_into().ok()?;
    (point[0] == 0x04).then_some(point)
}

/// An ES256 signature (`r || s`, 64 bytes) of `data` by P-256 key `key`.
fn es256(session: &Session, key: ObjectHandle, data: &[u8]) -> Result<Vec<u8>, Error> {
    let bytes = session
        .sign(&Mechanism::Ecdsa, key, &Sha256::digest(data))
        .map_err(from_ck)?;
    if bytes.len() != 64 {
        return Err(Error::Pkcs11 {
            function: "C_Sign".into(),
            rv: format!(
                "an ECDSA P-256 signature of {} bytes, not r || s",
                bytes.len()
            ),
        });
    }
    Ok(bytes)
}

/// An RS256 signature of `data` by the private key `key`, as this token
/// makes one ([`Rs256`]): the JWT signer's and the RSA pseudonym key's.
pub(crate) fn rs256(
    inner: &Inner,
    session: &Session,
    key: ObjectHandle,
    data: &[u8],
) -> Result<Vec<u8>, Error> {
    match inner.rs256()? {
        Rs256::Sha256RsaPkcs => session.sign(&Mechanism::Sha256RsaPkcs, key, data),
        Rs256::RsaPkcsOverDigestInfo => session.sign(&Mechanism::RsaPkcs, key, &digest_info(data)),
    }
    .map_err(from_ck)
}

/// How this token makes an RS256 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rs256 {
    /// `CKM_SHA256_RSA_PKCS`: the token hashes.
    Sha256RsaPkcs,
    /// `CKM_RSA_PKCS` over [`digest_info`]: we hash, the token pads and signs.
    RsaPkcsOverDigestInfo,
}

impl Rs256 {
    /// The first of the two a token offers (its mechanism list).
    pub fn choose(offered: &[cryptoki::mechanism::MechanismType]) -> Option<Self> {
        use cryptoki::mechanism::MechanismType as M;
        if offered.contains(&M::SHA256_RSA_PKCS) {
            Some(Rs256::Sha256RsaPkcs)
        } else if offered.contains(&M::RSA_PKCS) {
            Some(Rs256::RsaPkcsOverDigestInfo)
        } else {
            None
        }
    }
}

/// The DER `DigestInfo` of SHA-256(`data`) (RFC 8017 9.2): what
/// `CKM_SHA256_RSA_PKCS` signs inside the token.
pub fn digest_info(data: &[u8]) -> Vec<u8> {
    const SHA256_PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    [&SHA256_PREFIX[..], &Sha256::digest(data)].concat()
}

impl Hsm {
    /// How this token signs RS256 (asked once per connection).
    pub async fn rs256(&self) -> Result<Rs256, Error> {
        self.run(|inner, _| inner.rs256()).await
    }

    /// The configured algorithm ([`Signing`]).
    pub fn signing(&self) -> Signing {
        self.inner.config.signing
    }

    /// Signs `data` (a JWS signing input, an audit seal) with the newest key
    /// of the configured algorithm, inside the token.
    pub async fn sign(&self, data: &[u8]) -> Result<Signature, Error> {
        let data = data.to_vec();
        self.run(move |inner, s| {
            let (version, key) = current(inner, s)?;
            let bytes = match key.alg {
                Alg::Rs256 => rs256(inner, s, inner.find(s, &label(version), RSA_SIGNER)?, &data)?,
                Alg::Es256 => es256(s, inner.find(s, &label(version), EC_SIGNER)?, &data)?,
            };
            Ok(Signature { key, bytes })
        })
        .await
    }

    /// The key [`Hsm::sign`] would use now, for the JWS header that must be
    /// written before signing: while the cache of it is fresh, read without
    /// a trip to the blocking pool (each token signed asks).
    pub async fn signing_key(&self) -> Result<SigningKey, Error> {
        if let Ok(Some((_, key))) = self.inner.fresh_signer() {
            return Ok(key);
        }
        self.run(|inner, s| current(inner, s).map(|(_, key)| key))
            .await
    }

    /// The public keys to publish at `/.well-known/jwks.json`, of both
    /// algorithms, ascending by version.
    pub async fn jwks(&self) -> Result<Jwks, Error> {
        self.run(|inner, s| {
            Ok(Jwks {
                keys: public_keys(inner, s)?.into_iter().map(|(_, k)| k).collect(),
            })
        })
        .await
    }

    /// Generates the next signing key pair for `signing`; it signs from now
    /// on if `signing` is the configured algorithm.
    pub async fn create_signing_key(&self, signing: Signing) -> Result<Jwk, Error> {
        if let Signing::Rs256 { bits } = signing
            && ![2048, 3072, 4096].contains(&bits)
        {
            return Err(Error::Pkcs11 {
                function: "create_signing_key".into(),
                rv: format!("unsupported RSA size {bits}"),
            });
        }
        self.run(move |inner, s| {
            let next = public_keys(inner, s)?.last().map(|(v, _)| *v).unwrap_or(0) + 1;
            match signing {
                Signing::Rs256 { bits } => rsa_pair(s, next, bits)?,
                Signing::Es256 => p256_pair(s, next)?,
            }
            inner.forget_current();
            // Read back as verifiers will see it: checked like any other.
            match public_keys(inner, s)?.into_iter().find(|(v, _)| *v == next) {
                Some((_, jwk)) => Ok(jwk),
                None => Err(Error::KeyNotFound(format!(
                    "{} (made, then not trusted: see the log)",
                    label(next)
                ))),
            }
        })
        .await
    }
}

/// The newest key of the configured algorithm, from the cache or the token.
fn current(inner: &Inner, s: &Session) -> Result<(u32, SigningKey), Error> {
    let alg = inner.config.signing.alg();
    inner.current_signer(|| {
        public_keys(inner, s)?
            .into_iter()
            .rev()
            .find(|(_, jwk)| jwk.alg == alg)
            .map(|(v, jwk)| (v, SigningKey { alg, kid: jwk.kid }))
            .ok_or_else(|| {
                Error::KeyNotFound(format!(
                    "{LABEL_PREFIX}* (no {alg} signing key in the token)"
                ))
            })
    })
}

/// An RSA signing pair of `bits` as version `version`.
fn rsa_pair(s: &Session, version: u32, bits: u32) -> Result<(), Error> {
    trust::generate_rsa_pair(
        s,
        &label(version),
        u64::from(bits),
        &[
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
        ],
        &[Attribute::Sign(true), Attribute::Decrypt(false)],
    )?;
    Ok(())
}

/// A P-256 signing pair as version `version`.
fn p256_pair(s: &Session, version: u32) -> Result<(), Error> {
    trust::generate_named_pair(
        s,
        &Mechanism::EccKeyPairGen,
        &label(version),
        &[
            Attribute::Private(false),
            Attribute::EcParams(P256.to_vec()),
            Attribute::Verify(true),
        ],
        &[Attribute::Sign(true), Attribute::Derive(false)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 section 3.1 example key.
        let n = URL_SAFE_NO_PAD
            .decode("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
            .unwrap();
        let e = URL_SAFE_NO_PAD.decode("AQAB").unwrap();
        assert_eq!(
            Jwk::rsa(&n, &e).kid,
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let mut padded = vec![0u8];
        padded.extend_from_slice(&n);
        assert_eq!(Jwk::rsa(&padded, &e).kid, Jwk::rsa(&n, &e).kid);
    }

    #[test]
    fn an_ec_point_is_read_bare_or_in_its_octet_string() {
        let mut bare = [7u8; 65];
        bare[0] = 0x04;
        let wrapped = [&[0x04, 0x41][..], &bare].concat();
        assert_eq!(uncompressed_point(&bare), Some(bare));
        assert_eq!(uncompressed_point(&wrapped), Some(bare));
        assert_eq!(uncompressed_point(&bare[..64]), None);
        let mut compressed = bare;
        compressed[0] = 0x02;
        assert_eq!(uncompressed_point(&compressed), None);
    }
}
