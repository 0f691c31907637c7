//! What the token tests share: a private SoftHSM2, and logging a raw
//! session in beside the pool.

use std::path::Path;

use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};

/// A SoftHSM2 configuration of this process's own, keeping its tokens in a
/// new directory, and `SOFTHSM2_CONF` pointing at it. Call it before
/// anything in the process loads SoftHSM2, and once.
#[allow(unsafe_code)]
pub fn private_softhsm() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(&conf, arclock_hsm::provision::softhsm_conf(&tokens)).unwrap();
    // SAFETY: set before this process loads SoftHSM2 (the callers' contract),
    // and never changed afterwards.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    dir
}

/// Logs a raw session in (the pool of this process may have logged the
/// token in already: PKCS#11 login is per application).
pub fn login(s: &Session, pin: &Path) {
    let pin = std::fs::read_to_string(pin).unwrap();
    match s.login(UserType::User, Some(&pin.trim().to_string().into())) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
        }
        Err(e) => panic!("login: {e}"),
    }
}

/// Plants an RSA public key whose private half the attacker holds (RFC
/// 7638's example key, 2048 bits) under `label`: a public object, so no PIN
/// is needed. What the token answers (some refuse to import public keys).
pub fn plant_rsa_public(s: &Session, label: &str) -> cryptoki::error::Result<ObjectHandle> {
    let n = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    )
    .unwrap();
    s.create_object(&[
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Modulus(n),
        Attribute::PublicExponent(vec![1, 0, 1]),
        Attribute::Label(label.as_bytes().to_vec()),
    ])
}
