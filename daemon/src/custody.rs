//! Key custody over the whole store: every wrapped key re-wrapped under the
//! newest KEK (rotation, and the one-time binding of old records), and old
//! KEKs destroyed in the token (retirement).
//!
//! Retirement is how a deletion reaches backups. Deleting an account removes
//! its rows, but a backup or a replica copy taken before still holds its
//! wrapped key, and the KEK that opens it is still in the token. [`retire`]
//! makes a new KEK, re-wraps every live record under it and destroys every
//! older one: from then on no copy taken before can be opened by anyone, the
//! token's owner included. What it costs: a backup restored afterwards has
//! no usable templates (its users enrol again), and the token's own backups
//! must be retired with it (a copy of the token holds the old KEKs).
//!
//! One job at a time per process; [`Jobs::snapshot`] is what the console
//! shows while one runs.

use std::sync::Mutex;

use arclock_hsm::KekVersion;

use crate::App;
use crate::identity::UserId;
use crate::store::{Millis, StoreError, StoredKey, User};
use crate::template;

/// Why a custody job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum CustodyError {
    #[error(transparent)]
    Hsm(#[from] arclock_hsm::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another job is running in this process.
    #[error("a key job is already running ({0})")]
    Busy(String),
    /// Some records could not be re-wrapped, so no KEK was destroyed (their
    /// owners would lose their accounts): fix them and retire again.
    #[error("{failed} wrapped keys could not be re-wrapped; no KEK was destroyed")]
    Incomplete { failed: u64, tally: Tally },
}

/// What one pass over the store did, and a job as the console sees it:
/// the admin API's own types, so that the console reads what is kept here.
pub use arclock_proto::{KeyJob, Retirement, Tally};

/// The running (or last) job of this process.
#[derive(Debug, Default)]
pub struct Jobs {
    state: Mutex<Option<KeyJob>>,
}

impl Jobs {
    /// The running job, or the last one with how it ended.
    pub fn snapshot(&self) -> Option<KeyJob> {
        self.state.lock().ok().and_then(|s| s.clone())
    }

    fn start(&self, kind: &'static str, at: Millis) -> Result<Guard<'_>, CustodyError> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| CustodyError::Busy("state poisoned".into()))?;
        if let Some(p) = s.as_ref()
            && p.finished_at.is_none()
        {
            return Err(CustodyError::Busy(p.kind.clone()));
        }
        *s = Some(KeyJob {
            kind: kind.into(),
            phase: "starting".into(),
            started_at: at,
            finished_at: None,
            tally: Tally::default(),
            version: None,
            destroyed: Vec::new(),
            error: None,
        });
        Ok(Guard { jobs: self })
    }

    fn update(&self, f: impl FnOnce(&mut KeyJob)) {
        if let Ok(mut s) = self.state.lock()
            && let Some(p) = s.as_mut()
        {
            f(p);
        }
    }
}

/// Marks the job finished however it ends (an error, or a dropped request).
struct Guard<'a> {
    jobs: &'a Jobs,
}

impl Guard<'_> {
    fn phase(&self, phase: &'static str) {
        self.jobs.update(|p| p.phase = phase.into());
    }

    fn finish(self, at: Millis, error: Option<String>) {
        self.jobs.update(|p| {
            p.phase = if error.is_some() { "failed" } else { "done" }.into();
            p.finished_at = Some(at);
            p.error = error;
        });
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.jobs.update(|p| {
            if p.finished_at.is_none() {
                p.phase = "interrupted".into();
                p.finished_at = Some(p.started_at);
            }
        });
    }
}

/// Re-wraps one user's key under the newest KEK, bound to its record:
/// `true` if it moved, `false` if already current or the user is gone.
async fn rewrap_one(app: &App, user: &User) -> Result<bool, CustodyError> {
    let Some(creds) = app.store.credentials(&user.id).await? else {
        return Ok(false);
    };
    let bound = template::binding(user.email.as_str(), &creds.template, &creds.key.public_key);
    let Some(wrapped) = app
        .hsm
        .rewrap(user.id.as_str(), &bound, &creds.key.wrapped)
        .await?
    else {
        return Ok(false);
    };
    let key = StoredKey {
        wrapped,
        public_key: creds.key.public_key,
    };
    Ok(app.store.replace_key(&user.id, &key).await?)
}

/// One pass over every account, a page at a time, counting into the job.
async fn rewrap_all(app: &App, jobs: &Jobs) -> Result<Tally, CustodyError> {
    let mut tally = Tally::default();
    let mut after: Option<UserId> = None;
    loop {
        let page = app.store.list_users(after.as_ref(), 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for user in &page {
            match rewrap_one(app, user).await {
                Ok(true) => tally.rewrapped += 1,
                Ok(false) => tally.already_current += 1,
                Err(e) => {
                    tally.failed += 1;
                    tracing::error!(user = %user.id, error = %e, "key not re-wrapped");
                }
            }
            jobs.update(|p| p.tally = tally);
        }
    }
    Ok(tally)
}

/// Makes the next KEK version and re-wraps every key under it. Old versions
/// stay: another daemon may wrap under one for up to
/// [`arclock_hsm::CURRENT_KEY_TTL`], and a key that failed needs its own.
pub async fn rotate(app: &App) -> Result<(KekVersion, Tally), CustodyError> {
    let job = app.custody.start("rotate", app.clock.now())?;
    let result = async {
        job.phase("creating the new KEK");
        let version = app.hsm.create_kek_version().await?;
        app.custody.update(|p| p.version = Some(version));
        job.phase("re-wrapping");
        Ok::<_, CustodyError>((version, rewrap_all(app, &app.custody).await?))
    }
    .await;
    job.finish(
        app.clock.now(),
        result.as_ref().err().map(|e| e.to_string()),
    );
    result
}

/// Crypto-shredding: a new KEK, every live key re-wrapped under it, then
/// every older KEK destroyed in the token, so that no copy of the store
/// taken before (a backup, a replica, a deleted account's rows) opens again.
/// Nothing is destroyed if a key failed to move.
pub async fn retire(app: &App) -> Result<Retirement, CustodyError> {
    let job = app.custody.start("retire", app.clock.now())?;
    let result = async {
        job.phase("creating the new KEK");
        let version = app.hsm.create_kek_version().await?;
        app.custody.update(|p| p.version = Some(version));
        if other_instances(app).await? {
            // They learn of the new version within the cache time; until then
            // they may still wrap under an old one, which the pass then moves.
            job.phase("waiting for the other instances to pick up the new KEK");
            tokio::time::sleep(arclock_hsm::CURRENT_KEY_TTL * 2).await;
        }
        job.phase("re-wrapping");
        let tally = rewrap_all(app, &app.custody).await?;
        if tally.failed > 0 {
            return Err(CustodyError::Incomplete {
                failed: tally.failed,
                tally,
            });
        }
        job.phase("destroying old KEKs");
        let mut destroyed = Vec::new();
        for old in app.hsm.kek_versions().await? {
            if old < version {
                app.hsm.retire_kek_version(old).await?;
                destroyed.push(old);
                app.custody.update(|p| p.destroyed = destroyed.clone());
            }
        }
        Ok(Retirement {
            version,
            tally,
            destroyed,
        })
    }
    .await;
    job.finish(
        app.clock.now(),
        result.as_ref().err().map(|e| e.to_string()),
    );
    result
}

/// Whether another daemon announced itself within three heartbeats.
async fn other_instances(app: &App) -> Result<bool, StoreError> {
    let since = app.clock.now() - 3 * crate::HEARTBEAT_EVERY.as_millis() as i64;
    Ok(app
        .store
        .instances(since)
        .await?
        .iter()
        .any(|b| b.id != app.instance))
}

/// At start: if the token still accepts `AKW1` blobs (wrapped before records
/// were bound), binds every stored key to its record, then tells the token to
/// refuse `AKW1` from now on. Runs beside serving; until it is done, old
/// blobs open as before. A failure leaves the token open and is logged: the
/// next start tries again.
pub async fn bind_legacy(app: &App) {
    match app.hsm.legacy_blobs_open().await {
        Ok(false) => return,
        Ok(true) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not ask the token whether records are bound");
            return;
        }
    }
    let Ok(job) = app.custody.start("bind", app.clock.now()) else {
        return;
    };
    job.phase("binding records");
    let result = match rewrap_all(app, &app.custody).await {
        Ok(t) if t.failed == 0 => app
            .hsm
            .close_legacy_blobs()
            .await
            .map(|_| t)
            .map_err(CustodyError::from),
        Ok(t) => Err(CustodyError::Incomplete {
            failed: t.failed,
            tally: t,
        }),
        Err(e) => Err(e),
    };
    match &result {
        Ok(t) => {
            tracing::info!(
                bound = t.rewrapped,
                "every wrapped key is bound to its record; AKW1 blobs are refused from now on"
            );
            crate::audit::record(
                app,
                "keys",
                "arclockd",
                None,
                format!(
                    "{} wrapped keys bound to their records; old-format blobs refused from now on",
                    t.rewrapped
                ),
            )
            .await;
        }
        Err(e) => {
            tracing::error!(error = %e, "binding wrapped keys to their records did not finish")
        }
    }
    job.finish(app.clock.now(), result.err().map(|e| e.to_string()));
}
