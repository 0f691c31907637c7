//! Access tokens through `token::check`: header and claims parsing, the
//! algorithm and `kid` rules, issuer, audience and times.
//!
//! Input: `0x00 | token` (a raw string), or `0x01 | header 0xFF claims`,
//! which the target signs with its own RS256 key so the fuzzer gets past the
//! signature to the claim checks. Oracle: whatever is accepted satisfies
//! every rule.
#![no_main]

use std::sync::OnceLock;

use arclock_hsm::{Alg, Jwk, Jwks, PublicKey};
use arclockd::token;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;

const ISSUER: &str = "arclock";
const AUDIENCE: &str = "arclock-mobile";
const KID: &str = "jwt-v1";
/// 2026-11-25T00:00:00Z.
const NOW_MS: i64 = 1_795_996_800_000;

struct Keys {
    jwks: Jwks,
    signing: EncodingKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        // 1024 bits: signing every input is this target's main cost, and no
        // claim check depends on the key size (the daemon's keys are 2048+).
        let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024).unwrap();
        let b64 = |v: &rsa::BigUint| URL_SAFE_NO_PAD.encode(v.to_bytes_be());
        let jwk = Jwk {
            kid: KID.into(),
            alg: Alg::Rs256,
            use_: "sig",
            key: PublicKey::Rsa {
                n: b64(private.n()),
                e: b64(private.e()),
            },
        };
        let der = private.to_pkcs1_der().unwrap();
        Keys {
            jwks: Jwks { keys: vec![jwk] },
            signing: EncodingKey::from_rsa_der(der.as_bytes()),
        }
    })
}

/// `header.claims.signature`, signed with our key over whatever bytes came in.
fn signed(header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &keys().signing, Algorithm::RS256).unwrap();
    format!("{input}.{sig}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let token = if which & 1 == 0 {
        let Ok(s) = std::str::from_utf8(rest) else {
            return;
        };
        s.to_string()
    } else {
        let Some(cut) = rest.iter().position(|b| *b == 0xFF) else {
            return;
        };
        signed(&rest[..cut], &rest[cut + 1..])
    };
    let Ok(c) = token::check(&token, &keys().jwks, ISSUER, AUDIENCE, NOW_MS) else {
        return;
    };
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some(KID));
    assert_eq!(c.iss, ISSUER);
    assert_eq!(c.aud, AUDIENCE);
    let now = NOW_MS / 1000;
    assert!(
        c.nbf <= now && now < c.exp,
        "accepted outside its window: {c:?}"
    );
});
