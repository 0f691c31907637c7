//! What the store hands back, as if an attacker had written it: wrapped
//! private keys, sealed templates (ECIES ciphertext, then the embedding
//! bytes inside), log cursors from clients. Oracle: parsers round-trip and
//! what decrypts under the wrong key or with a flipped bit is refused.
//!
//! Input: a selector byte, then 0 a wrapped key, 1 a sealed template, 2 a
//! bit index (u16le) and a plaintext to seal and tamper with, 3 embedding
//! bytes, 4 a cursor string.
#![no_main]

use std::sync::OnceLock;

use arclock_face::Embedding;
use arclock_hsm::WrappedKey;
use arclockd::store::LogCursor;
use libfuzzer_sys::fuzz_target;

const MODEL: &str = "arcface_mobileface_128";

fn keypair() -> &'static (Vec<u8>, Vec<u8>) {
    static KEYS: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let secret = ecies::SecretKey::generate();
        let public = ecies::PublicKey::from_secret_key(&secret);
        (
            secret.serialize().to_vec(),
            public.serialize_compressed().to_vec(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let (secret, public) = keypair();
    match (which % 5, rest) {
        (0, bytes) => {
            if let Ok(w) = WrappedKey::from_bytes(bytes) {
                assert_eq!(w.to_bytes(), bytes, "wrapped key does not round-trip");
            }
        }
        (1, bytes) => {
            if let Ok(plain) = ecies::decrypt(secret, bytes) {
                let _ = Embedding::from_bytes(MODEL, &plain);
            }
        }
        (2, [f0, f1, plain @ ..]) => {
            let flip = u16::from_le_bytes([*f0, *f1]);
            let mut sealed = ecies::encrypt(public, plain).unwrap();
            assert_eq!(ecies::decrypt(secret, &sealed).unwrap(), plain);
            let bit = usize::from(flip) % (sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            assert!(
                ecies::decrypt(secret, &sealed).is_err(),
                "a tampered template decrypted"
            );
        }
        (3, bytes) => {
            if let Ok(e) = Embedding::from_bytes(MODEL, bytes) {
                let again = e.to_bytes().unwrap();
                assert_eq!(&again[..], bytes, "embedding does not round-trip");
                let self_similarity = e.cosine(&e).unwrap();
                assert!((self_similarity - 1.0).abs() < 1e-2, "{self_similarity}");
            }
        }
        (4, bytes) => {
            if let Ok(s) = std::str::from_utf8(bytes)
                && let Some(c) = LogCursor::decode(s)
            {
                assert_eq!(LogCursor::decode(&c.encode()), Some(c));
            }
        }
        _ => {}
    }
});
