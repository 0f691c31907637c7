//! RS256 signing keys for access tokens.
//!
//! Each version is an RSA key pair generated in the token (`jwt-v<N>`); the
//! private half is sensitive and not extractable, signing is `C_Sign` with
//! `CKM_SHA256_RSA_PKCS`, or, on a token without it (opencryptoki's soft
//! token), raw `CKM_RSA_PKCS` over a SHA-256 DigestInfo made here: PKCS#1
//! v1.5 is deterministic, so both give the same bytes. The public half is exported as a JWK whose `kid` is its
//! RFC 7638 thumbprint, so verifiers pick the right key after a rotation.

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

/// What a signing key is: RSA of 2048 bits or more, made in the token and
/// never out of it ([`trust`]).
const SIGNER: Expect = Expect::RsaPrivate(2048);

/// An RSA public key in JWK form (RFC 7517), ready for `jsonwebtoken` or a JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub alg: &'static str,
    pub kid: String,
    /// Modulus, base64url without padding.
    pub n: String,
    /// Public exponent, base64url without padding.
    pub e: String,
}

/// The published key set; the last key is the one that signs.
#[derive(Debug, Clone, Serialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// A signature together with the `kid` of the key that made it.
#[derive(Debug, Clone)]
pub struct Signature {
    pub kid: String,
    pub bytes: Vec<u8>,
}

fn label(version: u32) -> String {
    format!("{LABEL_PREFIX}{version}")
}

fn jwk(modulus: &[u8], exponent: &[u8]) -> Jwk {
    let n = URL_SAFE_NO_PAD.encode(strip_zeros(modulus));
    let e = URL_SAFE_NO_PAD.encode(strip_zeros(exponent));
    // RFC 7638: members in lexicographic order, no whitespace.
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    Jwk {
        kty: "RSA",
        use_: "sig",
        alg: "RS256",
        kid,
        n,
        e,
    }
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
/// label and modulus: a public object needs no PIN to create, and one
/// planted under our label would otherwise be published and trusted to
/// verify tokens its planter signed.
pub(crate) fn public_keys(session: &Session) -> Result<Vec<(u32, Jwk)>, Error> {
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
        ])
        .map_err(from_ck)?;
    let mut out = Vec::new();
    for h in handles {
        let attrs = session
            .get_attributes(
                h,
                &[
                    AttributeType::Label,
                    AttributeType::Modulus,
                    AttributeType::PublicExponent,
                ],
            )
            .map_err(from_ck)?;
        let (mut version, mut n, mut e) = (None, None, None);
        for a in attrs {
            match a {
                Attribute::Label(l) => {
                    version = std::str::from_utf8(&l)
                        .ok()
                        .and_then(|l| l.strip_prefix(LABEL_PREFIX))
                        .and_then(|v| v.parse::<u32>().ok());
                }
                Attribute::Modulus(m) => n = Some(m),
                Attribute::PublicExponent(x) => e = Some(x),
                _ => {}
            }
        }
        if let (Some(v), Some(n), Some(e)) = (version, n, e) {
            match private_modulus(session, v)? {
                Some(m) if strip_zeros(&m) == strip_zeros(&n) => out.push((v, jwk(&n, &e))),
                Some(_) => {
                    trust::refused(&label(v), "public key without the private key's modulus")
                }
                None => trust::refused(
                    &label(v),
                    "public key without a private key made in the token",
                ),
            }
        }
    }
    out.sort_by_key(|(v, _)| *v);
    Ok(out)
}

/// The modulus of the trusted private key of signing key `version`, if any.
fn private_modulus(session: &Session, version: u32) -> Result<Option<Vec<u8>>, Error> {
    let Ok(key) = trust::find(session, &label(version), SIGNER) else {
        return Ok(None);
    };
    trust::modulus(session, key)
}

/// An RS256 signature of `data` by the private key `key`, as this token
/// makes one ([`Rs256`]): the JWT signer's and the RSA pseudonym key's.
pub(crate) fn sign(
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

    /// Signs a JWT signing input (`base64url(header).base64url(payload)`) with the
    /// newest signing key inside the token.
    pub async fn sign_rs256(&self, signing_input: &[u8]) -> Result<Signature, Error> {
        let data = signing_input.to_vec();
        self.run(move |inner, s| {
            let (version, kid) = inner.current_signer(|| {
                let (v, jwk) = public_keys(s)?.pop().ok_or_else(|| {
                    Error::KeyNotFound(format!("{LABEL_PREFIX}* (no signing key in token)"))
                })?;
                Ok((v, jwk.kid))
            })?;
            let key = inner.find(s, &label(version), SIGNER)?;
            let bytes = sign(inner, s, key, &data)?;
            Ok(Signature { kid, bytes })
        })
        .await
    }

    /// The `kid` of the key `sign_rs256` would use now, for the JWT header that
    /// must be written before signing (cached like the key itself).
    pub async fn signing_kid(&self) -> Result<String, Error> {
        self.run(|inner, s| {
            inner
                .current_signer(|| {
                    let (v, jwk) = public_keys(s)?.pop().ok_or_else(|| {
                        Error::KeyNotFound(format!("{LABEL_PREFIX}* (no signing key in token)"))
                    })?;
                    Ok((v, jwk.kid))
                })
                .map(|(_, kid)| kid)
        })
        .await
    }

    /// The public keys to publish at `/.well-known/jwks.json`; the last signs.
    pub async fn jwks(&self) -> Result<Jwks, Error> {
        self.run(|_, s| {
            Ok(Jwks {
                keys: public_keys(s)?.into_iter().map(|(_, k)| k).collect(),
            })
        })
        .await
    }

    /// Generates the next signing key pair (`bits` = 2048 or 3072) and makes it current.
    pub async fn create_signing_key(&self, bits: u32) -> Result<Jwk, Error> {
        if bits != 2048 && bits != 3072 && bits != 4096 {
            return Err(Error::Pkcs11 {
                function: "create_signing_key".into(),
                rv: format!("unsupported RSA size {bits}"),
            });
        }
        self.run(move |inner, s| {
            let next = public_keys(s)?.last().map(|(v, _)| *v).unwrap_or(0) + 1;
            let (public, _private) = trust::generate_rsa_pair(
                s,
                &label(next),
                u64::from(bits),
                &[
                    Attribute::Private(false),
                    Attribute::Verify(true),
                    Attribute::Encrypt(false),
                ],
                &[Attribute::Sign(true), Attribute::Decrypt(false)],
            )?;
            let attrs = s
                .get_attributes(
                    public,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(from_ck)?;
            let (mut n, mut e) = (Vec::new(), Vec::new());
            for a in attrs {
                match a {
                    Attribute::Modulus(m) => n = m,
                    Attribute::PublicExponent(x) => e = x,
                    _ => {}
                }
            }
            inner.forget_current();
            Ok(jwk(&n, &e))
        })
        .await
    }
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
            jwk(&n, &e).kid,
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let mut padded = vec![0u8];
        padded.extend_from_slice(&n);
        assert_eq!(jwk(&padded, &e).kid, jwk(&n, &e).kid);
    }
}
