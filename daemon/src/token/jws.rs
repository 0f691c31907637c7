//! RS256 and ES256 verification for `jsonwebtoken`, by `ring`.
//!
//! `jsonwebtoken` 10 leaves its cryptography to a provider. Its RustCrypto one
//! brings the `rsa` crate (RUSTSEC-2023-0071, a timing side channel in
//! decryption and signing, unfixed) and a second generation of the RustCrypto
//! traits beside the one `ecies` uses. arclockd only ever *verifies* (the HSM
//! signs), and `ring`, already here for TLS, does that in constant time for
//! both algorithms the token may sign with. Everything else this provider is
//! asked for is refused.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey, signature};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory,
    verifier_factory,
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Makes this the process's provider (before any verification). Later calls
/// find it installed: jsonwebtoken keeps the first, and only this crate
/// installs one.
pub fn install() {
    let _ = PROVIDER.install_default();
}

fn signer_factory(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    // Tokens are signed inside the HSM, never with a key in memory.
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn verifier_factory(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    match (alg, key.kind()) {
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) => Ok(Box::new(Rs256 {
            n: n.clone(),
            e: e.clone(),
        })),
        // `DecodingKey::from_ec_components` gives the uncompressed point.
        (Algorithm::ES256, DecodingKeyKind::SecretOrDer(point))
            if point.len() == 65 && point[0] == 0x04 =>
        {
            Ok(Box::new(Es256 {
                point: point.clone(),
            }))
        }
        (Algorithm::RS256 | Algorithm::ES256, _) => Err(ErrorKind::InvalidKeyFormat.into()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

/// An RSA public key (big-endian modulus and exponent) checking PKCS#1 v1.5
/// SHA-256 signatures of 2048 to 8192 bits.
struct Rs256 {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for Rs256 {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, msg, sig)
        .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Rs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

/// A P-256 point (`04 || x || y`) checking ECDSA SHA-256 signatures in the
/// JWS form (`r || s`, 64 bytes).
struct Es256 {
    point: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for Es256 {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(msg, sig)
            .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for Es256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}
