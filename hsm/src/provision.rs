//! Creating a token and its keys (dev/embedded mode) or checking an existing one.
//!
//! Production attaches to a token an operator created, by label, with the PIN
//! from a systemd credential. The embedded default (SoftHSM2 under the state
//! directory) is created here on first start: a free slot is initialised with a
//! random SO PIN and user PIN, each written to its own 0600 file, then the first
//! KEK and JWT signing key are generated inside the token.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::error::{Error, from_ck};
use crate::pool::{Hsm, find_slot};

/// The text of a SoftHSM2 configuration (`SOFTHSM2_CONF`) that keeps its
/// tokens, as files, in `token_dir`; the dev token and every test token use it.
pub fn softhsm_conf(token_dir: &Path) -> String {
    format!(
        "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
        token_dir.display()
    )
}

/// What [`ensure_token`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioned {
    /// A token with the label already existed; nothing was written.
    Existing,
    /// A free slot was initialised and PIN files were written.
    Created,
}

/// Makes sure a token labelled `label` exists in `module`, initialising a free
/// slot if not. PINs are random (128 bits, hex) and written with mode 0600 to
/// `pin_file` and `so_pin_file`, which must not exist yet.
pub fn ensure_token(
    module: &Path,
    label: &str,
    slot: Option<u64>,
    pin_file: &Path,
    so_pin_file: &Path,
) -> Result<Provisioned, Error> {
    // Two initialisations racing for the one free slot would both pick it.
    static PROVISIONING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = PROVISIONING
        .lock()
        .map_err(|_| Error::HsmUnavailable("provisioning lock poisoned".into()))?;
    let m = crate::context::module(module)?;
    // Like every operation, hold the read side of the module gate so that a
    // concurrent re-initialisation cannot finalise the library mid-provisioning.
    let _gate = m
        .gate
        .read()
        .map_err(|_| Error::HsmUnavailable("PKCS#11 gate poisoned".into()))?;
    let ctx = m.ctx.clone();
    if find_slot(&ctx, label, slot).is_ok() {
        if !pin_file.exists() {
            return Err(Error::PinSource {
                path: pin_file.display().to_string(),
                reason: format!("token {label:?} exists but its PIN file is missing"),
            });
        }
        return Ok(Provisioned::Existing);
    }
    let free = ctx
        .get_slots_with_token()
        .map_err(from_ck)?
        .into_iter()
        .find(|slot| {
            crate::context::catalogue_call(|| ctx.get_token_info(*slot))
                .is_ok_and(|i| !i.token_initialized())
        })
        .ok_or_else(|| Error::HsmUnavailable("no free slot to initialise a token in".into()))?;

    let so_pin = random_pin()?;
    let user_pin = random_pin()?;
    write_private(so_pin_file, &so_pin)?;
    write_private(pin_file, &user_pin)?;
    let so = AuthPin::new(so_pin.as_str().into());
    let user = AuthPin::new(user_pin.as_str().into());

    crate::context::catalogue_call(|| ctx.init_token(free, &so, label)).map_err(from_ck)?;
    // SoftHSM2 moves an initialised token to a new slot id: look it up again.
    let slot = find_slot(&ctx, label, None)?;
    let session = ctx.open_rw_session(slot).map_err(from_ck)?;
    session.login(UserType::So, Some(&so)).map_err(from_ck)?;
    session.init_pin(&user).map_err(from_ck)?;
    session.logout().map_err(from_ck)?;
    tracing::info!(label, "initialised HSM token");
    Ok(Provisioned::Created)
}

/// Makes sure the token holds a KEK, a signing key of the configured
/// algorithm and the pseudonym key, generating the first version of each if
/// absent. Returns whether anything was generated. A token's first KEK comes
/// with [`crate::kek::BOUND_MARKER`]: nothing was ever wrapped the old way
/// under it. A switch of algorithm is made here: the first key of the newly
/// configured one joins the published keys of the other.
pub async fn ensure_keys(hsm: &Hsm) -> Result<bool, Error> {
    let mut generated = hsm.create_pseudonym_key().await?;
    if hsm.kek_versions().await?.is_empty() {
        hsm.create_kek_version().await?;
        if hsm.legacy_blobs_open().await? {
            hsm.close_legacy_blobs().await?;
        }
        generated = true;
    }
    let signing = hsm.signing();
    if !hsm
        .jwks()
        .await?
        .keys
        .iter()
        .any(|k| k.alg == signing.alg())
    {
        hsm.create_signing_key(signing).await?;
        generated = true;
    }
    Ok(generated)
}

fn random_pin() -> Result<Zeroizing<String>, Error> {
    let mut raw = Zeroizing::new([0u8; 16]);
    getrandom::fill(raw.as_mut_slice())
        .map_err(|e| Error::HsmUnavailable(format!("no OS randomness: {e}")))?;
    let mut pin = Zeroizing::new(String::with_capacity(32));
    for b in raw.iter() {
        pin.push_str(&format!("{b:02x}"));
    }
    Ok(pin)
}

fn write_private(path: &Path, secret: &str) -> Result<(), Error> {
    let err = |reason: String| Error::PinSource {
        path: path.display().to_string(),
        reason,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| err(e.to_string()))?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err(e.to_string()))?;
    f.write_all(secret.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(|e| err(e.to_string()))
}
