//! What the token tests share: a private SoftHSM2, and logging a raw
//! session in beside the pool.

use std::path::Path;

use cryptoki::session::{Session, UserType};

/// A SoftHSM2 configuration of this process's own, keeping its tokens in a
/// new directory, and `SOFTHSM2_CONF` pointing at it. Call it before
/// anything in the process loads SoftHSM2, and once.
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
