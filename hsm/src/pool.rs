//! A pool of logged-in PKCS#11 sessions shared by many tokio tasks.
//!
//! PKCS#11 calls block, so every operation runs on tokio's blocking pool, bounded
//! by a semaphore of `pool_size` permits: a burst queues instead of spawning
//! hundreds of threads. `cryptoki::Session` is `Send` but not `Sync`: a session is
//! taken out of the idle list for one operation and put back afterwards. When the
//! token disappears (removed, device error, invalid session), the pool forgets its
//! slot, sessions and handles, finds the token again by label, logs in again, and
//! retries the operation once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;

use crate::context::{Module, module, reinitialize};
use crate::error::{Error, from_ck};
use crate::pin::Pin;
use crate::trust::{self, Expect};

/// Where the token is and how many sessions to keep.
#[derive(Debug, Clone)]
pub struct HsmConfig {
    /// Path of the PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so` for SoftHSM2).
    pub module: PathBuf,
    /// Token label to attach to; slot ids change across re-insertion, labels do not.
    pub token_label: String,
    /// A slot id, for modules whose token information cannot be read (see
    /// `find_slot` in the pool); `None` finds the token by label alone.
    pub slot: Option<u64>,
    /// Concurrent PKCS#11 operations (and open sessions, besides one that
    /// holds the login) at most.
    pub pool_size: usize,
    /// Which kind of key signs, and which kind new signing keys are.
    pub signing: crate::signer::Signing,
}

/// Handle to the token, cheap to clone and share across tasks.
#[derive(Clone)]
pub struct Hsm {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm")
            .field("module", &self.inner.config.module)
            .field("token_label", &self.inner.config.token_label)
            .finish_non_exhaustive()
    }
}

/// What the token holds, for health checks and the operator console.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub token_label: String,
    pub manufacturer: String,
    pub model: String,
    pub kek_versions: Vec<u32>,
    pub jwt_kids: Vec<String>,
}

pub(crate) struct Inner {
    pub(crate) config: HsmConfig,
    pin: Pin,
    conn: Mutex<Conn>,
    permits: tokio::sync::Semaphore,
}

/// Connection state that is thrown away together when the token goes away.
#[derive(Default)]
struct Conn {
    /// Module generation the slot, sessions and handles belong to.
    generation: u64,
    slot: Option<Slot>,
    idle: Vec<Session>,
    /// A session never used for work, open as long as the connection, so
    /// that the login (which PKCS#11 ends with the application's last
    /// session) outlives sessions closed after a failed operation: on
    /// opencryptoki a new login renumbers private objects, and every cached
    /// handle would name another key.
    holder: Option<Session>,
    handles: HashMap<(u8, String), ObjectHandle>,
    /// Newest KEK version, so `wrap` does not enumerate the token every call.
    current_kek: Option<(Instant, u32)>,
    /// Newest signing key of the configured algorithm, for the same reason
    /// in `sign`.
    current_signer: Option<(Instant, u32, crate::signer::SigningKey)>,
    /// How the token signs RS256, from its mechanism list.
    rs256: Option<crate::signer::Rs256>,
    /// P-256 public keys (version, point) whose private key made a signature
    /// they verify, and when: proven again after [`PROOF_TTL`], so a health
    /// check or a JWKS read does not sign each time.
    proven: HashMap<(u32, [u8; 65]), Instant>,
}

impl Drop for Inner {
    /// Idle sessions are closed under the module gate like every other call:
    /// a pool dropped while another one re-initialises the module must not
    /// close sessions in the middle of `C_Finalize` (SoftHSM2 crashes), nor
    /// close sessions of an older generation, whose handle numbers may name
    /// someone else's sessions now.
    fn drop(&mut self) {
        let Ok(conn) = self.conn.get_mut() else {
            return;
        };
        let mut idle = std::mem::take(&mut conn.idle);
        idle.extend(conn.holder.take());
        if idle.is_empty() {
            return;
        }
        let generation = conn.generation;
        let Ok(m) = module(&self.config.module) else {
            idle.into_iter().for_each(std::mem::forget);
            return;
        };
        match m.gate.read() {
            Ok(current) if *current == generation => drop(idle),
            _ => idle.into_iter().for_each(std::mem::forget),
        }
    }
}

/// How long a remembered "newest key" is trusted. Rotation in this process
/// clears it at once; a rotation by another process (a second daemon on the
/// same HSM) is picked up within this time, while old versions keep working.
pub const CURRENT_KEY_TTL: Duration = Duration::from_secs(10);

/// How long a P-256 key pair, once proven by a signature, is taken as
/// proven by this connection (a re-inserted token starts afresh).
pub const PROOF_TTL: Duration = Duration::from_secs(600);

/// Why one attempt failed, and so what the retry loop does next.
enum Failure {
    /// Session or device lost: forget the connection and retry.
    Lost(Error),
    /// No token with our label: the module may need re-initialising to see it.
    TokenMissing(Error),
    /// Final (bad PIN, integrity failure, ...): the session is still good.
    Final(Error),
}

impl Hsm {
    /// A handle that connects lazily: construction never fails because the token
    /// is absent, so the daemon can start, report 503, and recover later.
    pub fn new(config: HsmConfig, pin: Pin) -> Self {
        let permits = tokio::sync::Semaphore::new(config.pool_size.max(1));
        Hsm {
            inner: Arc::new(Inner {
                config,
                pin,
                conn: Mutex::new(Conn::default()),
                permits,
            }),
        }
    }

    /// Runs `op` with a logged-in session on the blocking pool.
    pub(crate) async fn run<R, F>(&self, op: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: Fn(&Inner, &Session) -> Result<R, Error> + Send + 'static,
    {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| Error::HsmUnavailable("HSM pool closed".into()))?;
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.with_session(op))
            .await
            .map_err(|e| Error::HsmUnavailable(format!("HSM worker failed: {e}")))?
    }

    /// What the token lacks of [`crate::mechanism::needs`] for the
    /// configured signing (empty: nothing). Asks without logging in.
    pub async fn lacks(&self) -> Result<Vec<crate::mechanism::Lack>, Error> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let c = &inner.config;
            crate::mechanism::lacks(&c.module, &c.token_label, c.slot, c.signing)
        })
        .await
        .map_err(|e| Error::HsmUnavailable(format!("HSM worker failed: {e}")))?
    }

    /// Connects, logs in and reports what the token holds.
    pub async fn status(&self) -> Result<Status, Error> {
        self.run(|inner, session| {
            let m = module(&inner.config.module)?;
            let slot = inner
                .conn()?
                .slot
                .ok_or_else(|| Error::HsmUnavailable("no slot".into()))?;
            // Token information cryptoki cannot parse (see `find_slot`) is no
            // outage; the token's own errors are (a removed token is noticed
            // here and reconnected to).
            let (token_label, manufacturer, model) =
                match crate::context::catalogue_call(|| m.ctx.get_token_info(slot)) {
                    Ok(info) => (
                        info.label().trim().to_string(),
                        info.manufacturer_id().trim().to_string(),
                        info.model().trim().to_string(),
                    ),
                    Err(e @ CkError::Pkcs11(..)) => return Err(from_ck(e)),
                    Err(e) => (
                        inner.config.token_label.clone(),
                        format!("unreadable ({e})"),
                        String::new(),
                    ),
                };
            Ok(Status {
                token_label,
                manufacturer,
                model,
                kek_versions: crate::kek::versions(session)?,
                jwt_kids: crate::signer::public_keys(inner, session)?
                    .into_iter()
                    .map(|(_, jwk)| jwk.kid)
                    .collect(),
            })
        })
        .await
    }
}

impl Inner {
    fn conn(&self) -> Result<MutexGuard<'_, Conn>, Error> {
        self.conn
            .lock()
            .map_err(|_| Error::HsmUnavailable("HSM pool state poisoned".into()))
    }

    /// Runs `op` on a pooled session. A lost connection is retried on a fresh
    /// session; a missing token triggers one module re-initialisation (how
    /// SoftHSM2 and network HSMs notice a re-inserted token) before giving up.
    fn with_session<R>(
        &self,
        op: impl Fn(&Inner, &Session) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let m = module(&self.config.module)?;
        let mut reinitialised = false;
        let mut last = None;
        for attempt in 0..4 {
            let generation = {
                let generation = m
                    .gate
                    .read()
                    .map_err(|_| Error::HsmUnavailable("PKCS#11 gate poisoned".into()))?;
                match self.attempt(&m, *generation, &op) {
                    Ok(r) => return Ok(r),
                    Err(Failure::Final(e)) => return Err(e),
                    Err(Failure::Lost(e)) if attempt == 0 => {
                        // Usually a stale session: a fresh one is enough.
                        tracing::warn!(error = %e, "HSM connection lost; reconnecting");
                        last = Some(e);
                        continue;
                    }
                    Err(Failure::Lost(e) | Failure::TokenMissing(e)) => {
                        last = Some(e);
                        *generation
                    }
                }
            };
            if reinitialised {
                break;
            }
            reinitialised = true;
            reinitialize(&m, generation)?;
        }
        Err(last.unwrap_or_else(|| Error::HsmUnavailable("HSM unreachable".into())))
    }

    /// One try, under the read side of the module gate.
    fn attempt<R>(
        &self,
        m: &Module,
        generation: u64,
        op: &impl Fn(&Inner, &Session) -> Result<R, Error>,
    ) -> Result<R, Failure> {
        let session = self.take_session(m, generation)?;
        match op(self, &session) {
            Ok(r) => {
                self.give_back(session, generation);
                Ok(r)
            }
            Err(e) if e.is_connection_lost() => {
                drop(session);
                self.reset(generation);
                Err(Failure::Lost(e))
            }
            Err(e) => {
                // Not pooled: a session that saw a failed operation can stay
                // in CKR_OPERATION_ACTIVE (tpm2-pkcs11); a new one is cheap.
                drop(session);
                Err(Failure::Final(e))
            }
        }
    }

    fn take_session(&self, m: &Module, generation: u64) -> Result<Session, Failure> {
        let lost = |e: Error| {
            if e.is_connection_lost() {
                self.reset(generation);
                Failure::Lost(e)
            } else {
                Failure::Final(e)
            }
        };
        let slot = {
            let mut conn = self.conn().map_err(Failure::Final)?;
            if conn.generation != generation {
                // Sessions of an older module generation: their handle numbers may
                // now name someone else's session, so never use or close them.
                std::mem::forget(conn.holder.take());
                for stale in conn.idle.drain(..) {
                    std::mem::forget(stale);
                }
                *conn = Conn {
                    generation,
                    ..Conn::default()
                };
            }
            if let Some(s) = conn.idle.pop() {
                return Ok(s);
            }
            conn.slot
        };
        let slot = match slot {
            Some(slot) => slot,
            None => {
                let slot = find_slot(&m.ctx, &self.config.token_label, self.config.slot)
                    .map_err(Failure::TokenMissing)?;
                self.conn().map_err(Failure::Final)?.slot = Some(slot);
                slot
            }
        };
        let session = m.ctx.open_rw_session(slot).map_err(|e| lost(from_ck(e)))?;
        match session.login(UserType::User, Some(self.pin.auth())) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(lost(from_ck(e))),
        }
        let mut conn = self.conn().map_err(Failure::Final)?;
        if conn.generation == generation && conn.holder.is_none() {
            // A login of its own begins here: handles from before it may be stale.
            conn.handles.clear();
            conn.holder = Some(m.ctx.open_ro_session(slot).map_err(|e| lost(from_ck(e)))?);
        }
        Ok(session)
    }

    fn give_back(&self, session: Session, generation: u64) {
        if let Ok(mut conn) = self.conn()
            && conn.generation == generation
            && conn.idle.len() < self.config.pool_size.max(1)
        {
            conn.idle.push(session);
        }
    }

    /// Forgets everything tied to the connection; the next call reconnects.
    fn reset(&self, generation: u64) {
        if let Ok(mut conn) = self.conn()
            && conn.generation == generation
        {
            *conn = Conn {
                generation,
                ..Conn::default()
            };
        }
    }

    /// Finds the key labelled `label` that may serve as `expect` says
    /// ([`trust`]), caching its handle for this connection.
    pub(crate) fn find(
        &self,
        session: &Session,
        label: &str,
        expect: Expect,
    ) -> Result<ObjectHandle, Error> {
        let key = (class_tag(expect.class()), label.to_string());
        if let Some(h) = self.conn()?.handles.get(&key) {
            return Ok(*h);
        }
        let handle = trust::find(session, label, expect)?;
        self.conn()?.handles.insert(key, handle);
        Ok(handle)
    }

    /// The newest KEK version, from the cache or from `load` (which enumerates).
    pub(crate) fn current_kek(
        &self,
        load: impl FnOnce() -> Result<u32, Error>,
    ) -> Result<u32, Error> {
        if let Some((at, v)) = self.conn()?.current_kek
            && at.elapsed() < CURRENT_KEY_TTL
        {
            return Ok(v);
        }
        let v = load()?;
        self.conn()?.current_kek = Some((Instant::now(), v));
        Ok(v)
    }

    /// Whether public point `point` of signing key `version` was proven
    /// to belong to its private key within [`PROOF_TTL`].
    pub(crate) fn proven(&self, version: u32, point: &[u8; 65]) -> Result<bool, Error> {
        Ok(self
            .conn()?
            .proven
            .get(&(version, *point))
            .is_some_and(|at| at.elapsed() < PROOF_TTL))
    }

    /// Records that `point` verified a signature of `version`'s private key.
    pub(crate) fn prove(&self, version: u32, point: &[u8; 65]) -> Result<(), Error> {
        let mut conn = self.conn()?;
        conn.proven.retain(|_, at| at.elapsed() < PROOF_TTL);
        conn.proven.insert((version, *point), Instant::now());
        Ok(())
    }

    /// The newest signing key's version and kid, cached like [`Self::current_kek`].
    pub(crate) fn current_signer(
        &self,
        load: impl FnOnce() -> Result<(u32, crate::signer::SigningKey), Error>,
    ) -> Result<(u32, crate::signer::SigningKey), Error> {
        if let Some(fresh) = self.fresh_signer()? {
            return Ok(fresh);
        }
        let (v, key) = load()?;
        self.conn()?.current_signer = Some((Instant::now(), v, key.clone()));
        Ok((v, key))
    }

    /// What [`Self::current_signer`] holds, while it is fresh: readable
    /// without a session, so without a trip to the blocking pool (each
    /// token signed asks for its key first).
    pub(crate) fn fresh_signer(&self) -> Result<Option<(u32, crate::signer::SigningKey)>, Error> {
        Ok(self
            .conn()?
            .current_signer
            .as_ref()
            .filter(|(at, _, _)| at.elapsed() < CURRENT_KEY_TTL)
            .map(|(_, v, key)| (*v, key.clone())))
    }

    /// The token's mechanism list (no login needed; asked per call, as
    /// callers cache what they derive from it).
    pub(crate) fn mechanisms(&self) -> Result<Vec<cryptoki::mechanism::MechanismType>, Error> {
        let slot = self
            .conn()?
            .slot
            .ok_or_else(|| Error::HsmUnavailable("no slot".into()))?;
        module(&self.config.module)?
            .ctx
            .get_mechanism_list(slot)
            .map_err(from_ck)
    }

    /// How the token signs RS256 ([`crate::signer::Rs256::choose`]), asked
    /// once per connection.
    pub(crate) fn rs256(&self) -> Result<crate::signer::Rs256, Error> {
        if let Some(r) = self.conn()?.rs256 {
            return Ok(r);
        }
        let r = crate::signer::Rs256::choose(&self.mechanisms()?).ok_or_else(|| Error::Pkcs11 {
            function: "C_GetMechanismList".into(),
            rv: "neither CKM_SHA256_RSA_PKCS nor CKM_RSA_PKCS is offered".into(),
        })?;
        self.conn()?.rs256 = Some(r);
        Ok(r)
    }

    /// Forgets which keys are newest, after a key was created or destroyed here.
    pub(crate) fn forget_current(&self) {
        if let Ok(mut conn) = self.conn() {
            conn.current_kek = None;
            conn.current_signer = None;
        }
    }

    /// Drops a cached handle after the object was destroyed.
    pub(crate) fn forget(&self, class: ObjectClass, label: &str) {
        if let Ok(mut conn) = self.conn() {
            conn.handles.remove(&(class_tag(class), label.to_string()));
        }
    }
}

fn class_tag(class: ObjectClass) -> u8 {
    if class == ObjectClass::SECRET_KEY {
        0
    } else if class == ObjectClass::PRIVATE_KEY {
        1
    } else {
        2
    }
}

/// The slot whose initialised token carries `label`. With `id`, that slot:
/// its label must match where it can be read; where it cannot (cryptoki
/// refuses opencryptoki 3.8's token information, whose clock is not in the
/// PKCS#11 format) the id alone decides, and the log says so.
pub(crate) fn find_slot(ctx: &Pkcs11, label: &str, id: Option<u64>) -> Result<Slot, Error> {
    if let Some(id) = id {
        let slot = ctx
            .get_slots_with_token()
            .map_err(from_ck)?
            .into_iter()
            .find(|s| s.id() == id)
            .ok_or_else(|| Error::HsmUnavailable(format!("no token in slot {id}")))?;
        return match crate::context::catalogue_call(|| ctx.get_token_info(slot)) {
            Ok(info) if info.label().trim_end() == label => Ok(slot),
            Ok(info) => Err(Error::HsmUnavailable(format!(
                "slot {id} holds token {:?}, not {label:?}",
                info.label().trim_end()
            ))),
            Err(e) => {
                tracing::warn!(slot = id, error = %e, "token information unreadable: trusting the configured slot");
                Ok(slot)
            }
        };
    }
    for slot in ctx.get_slots_with_token().map_err(from_ck)? {
        let Ok(info) = crate::context::catalogue_call(|| ctx.get_token_info(slot)) else {
            continue;
        };
        if info.token_initialized() && info.label().trim_end() == label {
            return Ok(slot);
        }
    }
    Err(Error::HsmUnavailable(format!(
        "no token labelled {label:?} is present"
    )))
}
