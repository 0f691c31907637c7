//! One initialised PKCS#11 context per module per process.
//!
//! `C_Initialize` may be called once per process; a second `Pkcs11` for the same
//! module would get `CKR_CRYPTOKI_ALREADY_INITIALIZED`. Everything shares the
//! context kept here. Some modules (SoftHSM2 among them) only notice a token that
//! was re-inserted after `C_Finalize` + `C_Initialize`; [`reinitialize`] does that
//! under the write side of a gate whose read side every operation holds, and bumps
//! a generation so sessions from before are never used or closed again (their
//! handle numbers may be reused by the new generation).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};

use crate::error::{Error, from_ck};

/// A module's shared context, its generation, and the gate around re-initialisation.
#[derive(Clone)]
pub(crate) struct Module {
    pub(crate) ctx: Pkcs11,
    pub(crate) gate: Arc<RwLock<u64>>,
}

static MODULES: OnceLock<Mutex<HashMap<PathBuf, Module>>> = OnceLock::new();

fn registry() -> Result<std::sync::MutexGuard<'static, HashMap<PathBuf, Module>>, Error> {
    MODULES
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .map_err(|_| Error::HsmUnavailable("PKCS#11 context registry poisoned".into()))
}

fn args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

pub(crate) fn module(path: &Path) -> Result<Module, Error> {
    let mut map = registry()?;
    if let Some(m) = map.get(path) {
        return Ok(m.clone());
    }
    if !path.exists() {
        return Err(Error::HsmUnavailable(format!(
            "PKCS#11 module {} does not exist",
            path.display()
        )));
    }
    let ctx = Pkcs11::new(path).map_err(from_ck)?;
    ctx.initialize(args()).map_err(from_ck)?;
    let m = Module {
        ctx,
        gate: Arc::new(RwLock::new(0)),
    };
    map.insert(path.to_path_buf(), m.clone());
    Ok(m)
}

/// Finalises and re-initialises the module, unless someone already did since
/// `seen_generation`. Waits for in-flight operations (they hold the read side).
pub(crate) fn reinitialize(m: &Module, seen_generation: u64) -> Result<(), Error> {
    let mut generation = m
        .gate
        .write()
        .map_err(|_| Error::HsmUnavailable("PKCS#11 gate poisoned".into()))?;
    if *generation != seen_generation {
        return Ok(());
    }
    let _ = m.ctx.clone().finalize();
    *generation += 1;
    m.ctx.initialize(args()).map_err(from_ck)?;
    tracing::info!(generation = *generation, "re-initialised PKCS#11 module");
    Ok(())
}

/// Held around the calls that read or change a token's list of objects or
/// its token information (`C_GetTokenInfo`, `C_InitToken`, creating,
/// generating and destroying objects): SoftHSM2 2.6 crashes now and then
/// when two of them meet in one process (a health check's token info while
/// a rotation generates a key). They are rare and off the sign-in path, so
/// one lock for the process costs nothing measurable.
pub(crate) fn catalogue() -> std::sync::MutexGuard<'static, ()> {
    static CATALOGUE: Mutex<()> = Mutex::new(());
    // Guards no data: a panic while it was held leaves nothing to repair.
    CATALOGUE.lock().unwrap_or_else(|e| e.into_inner())
}

/// `f` under [`catalogue`].
pub(crate) fn catalogue_call<R>(f: impl FnOnce() -> R) -> R {
    let _catalogue = catalogue();
    f()
}

/// The process-wide initialised context for the PKCS#11 module at `path`, for
/// tools and tests that need raw PKCS#11 next to an [`crate::Hsm`].
pub fn pkcs11_context(path: &Path) -> Result<Pkcs11, Error> {
    Ok(module(path)?.ctx)
}
