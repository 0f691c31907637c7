//! `arclockd`: the ArcLock daemon.
//!
//! # Layout
//!
//! - [`config`]: the TOML schema, `ARCLOCK_*` overrides, validation.
//! - [`http`]: the rustls + hyper listener (certificate reload, connection,
//!   header, body and idle limits), the response envelope, security headers.
//! - [`signin`]: the sign-in service shared by the API and the kiosk:
//!   lockouts, liveness (passive PAD, active challenges), comparison with a
//!   decoy for unknown accounts, failure accounting, enrolment.
//! - [`api`]: the route table and one file per concern: face sign-in
//!   (`auth`), sessions and refresh tokens (`session`), the caller's account
//!   and logs, request intake, rate limits, health and public keys.
//! - [`webapp`]: the browser reference client at `/app/`, built into the
//!   binary, with its own narrow CSP and the only camera permission.
//! - [`admin`]: the operator API on a Unix socket (peer uid checked): live
//!   auth log, search, lockouts, users, health, key rotation, metrics.
//! - [`audit`]: the tamper-evident trail of operator actions and security
//!   events: a hash chain in the store, its head sealed in the HSM, verified
//!   from the console.
//! - [`metrics`]: Prometheus counters and latency histograms, admin-only.
//! - [`hardening`]: checks and limits applied at start (core dumps, W^X,
//!   root, memlock, state directory permissions).
//! - [`supervisor`]: sd_notify readiness, stopping and watchdog.
//! - [`kiosk`]: the local V4L2 camera (enrol and verify from the console).
//! - [`identity`]: `UserId`, `Email`, `Name`, parsed once at the edge.
//! - [`template`]: face templates sealed under per-user keys the HSM wraps,
//!   each wrapped key bound to its whole record (a swapped template fails).
//! - [`custody`]: jobs over every wrapped key: KEK rotation, retirement of
//!   old KEKs (crypto-shredding that reaches backups), binding old records.
//! - [`token`]: RS256 access tokens signed in the HSM; refresh token hashes.
//! - [`store`]: users, encrypted templates, wrapped keys, logs, lockouts and
//!   sessions, on SQLite or MongoDB.
//! - [`timing`]: where one request's time went, step by step (slow-request
//!   log lines, opt-in `Server-Timing`).
//! - [`clock`]: the one source of wall-clock time (movable in tests).
//! - [`cli`]: man page and completions from the binary's own clap definition.
//! - [`provision`]: dev set-up of the SoftHSM2 token, its keys and a TLS cert.
//! - `fuzzing` (feature `fuzzing`): the entry points of the fuzz targets.
//!
//! The key custody lives in `arclock-hsm`, the face pipeline in `arclock-face`;
//! this crate wires them to the network and never touches key material itself.
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::todo,
    clippy::unimplemented,
    clippy::await_holding_lock
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod admin;
pub mod api;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod custody;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod hardening;
pub mod http;
pub mod identity;
pub mod kiosk;
pub mod metrics;
pub mod provision;
pub mod signin;
pub mod store;
pub mod supervisor;
pub mod template;
pub mod timing;
pub mod token;
pub mod webapp;

use std::sync::Arc;

use arclock_face::{FaceModels, Manifest, Pipeline, Threads};
use arclock_hsm::{Hsm, HsmConfig, Pin};
use clock::{Clock, SystemClock};

pub use config::Config;
use store::{EmbeddedStore, MongoStore, Store};

/// Everything a request handler needs, built once at start.
pub struct App {
    pub config: Config,
    pub tls: Arc<rustls::ServerConfig>,
    /// The certificate in use, reloaded on SIGHUP.
    pub certs: Arc<http::Certs>,
    pub hsm: Hsm,
    pub store: Arc<dyn Store>,
    pub face: Arc<Pipeline>,
    pub tokens: token::Tokens,
    pub limits: api::limits::Limits,
    pub clock: Arc<dyn Clock>,
    pub metrics: metrics::Metrics,
    /// Every auth-log entry this daemon writes, as it writes it, for the
    /// console's live view (followers that fall behind skip, never block).
    pub feed: tokio::sync::broadcast::Sender<store::AuthLog>,
    /// When the daemon started (ms), for the console's uptime.
    pub started: store::Millis,
    /// This process among the instances sharing the store (random per start).
    pub instance: String,
    /// The local camera, when `[camera] enabled`.
    pub kiosk: Option<Arc<kiosk::Kiosk>>,
    /// What SIGHUP re-reads and how it applies it (set by the binary).
    pub reload: Option<Reload>,
    /// The public `/health` answer, reused for `health_cache_ms`.
    pub health: api::health::Cache,
    /// Locked memory arriving request bodies share (`body_budget_bytes`).
    pub bodies: Arc<api::intake::BodyBudget>,
    /// Set once the token is known to hold the pseudonym key (made on first
    /// use if an older provisioning lacks it; `signin::email_subject`).
    pub pseudonym_key: tokio::sync::OnceCell<()>,
    /// The last audit entry this process sealed (`audit::seal`).
    pub audit_sealed: std::sync::atomic::AtomicU64,
    /// The key job running (or last run) here: rotation, retirement, binding.
    pub custody: custody::Jobs,
}

/// Replaces the log level filter; `Err` names what is wrong with the level.
pub type LevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// SIGHUP's work beyond the certificate: the config file to re-read and the
/// log level to apply from it. Other changed settings are reported as
/// needing a restart, never half-applied.
pub struct Reload {
    pub config: std::path::PathBuf,
    pub log_level: LevelSetter,
}

/// Why the daemon cannot start. Runtime outages (HSM gone, store failing) are
/// not start errors: the daemon serves 503 until they recover.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tls(#[from] http::TlsError),
    #[error(transparent)]
    Hsm(#[from] arclock_hsm::Error),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Models(#[from] arclock_face::Error),
}

impl App {
    /// Opens every dependency. Models and TLS must load (a corrupt model or
    /// certificate refuses to start); the HSM connects lazily so that a missing
    /// token degrades `/health` to 503 instead of preventing start.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let (tls, certs) = http::load_tls(&config.server.tls_cert, &config.server.tls_key)?;
        let manifest = Manifest::load(&config.models.manifest)?;
        let models = FaceModels::load(
            &config.models.runtime,
            &manifest,
            &config.models.dir,
            &config.models.detector,
            &config.models.recognizer,
            Threads {
                workers: config.models.workers,
                intra: config.models.intra_threads,
            },
        )?;
        let face = Pipeline::new(
            models,
            config.models.policy,
            arclock_face::photo::Limits::default(),
            config.models.workers,
        )
        .with_pad(config.liveness.wants_pad());
        match face.models().pad_status() {
            arclock_face::PadStatus::Ready { models } => {
                tracing::info!(?models, signin = ?config.liveness.signin, registration = ?config.liveness.registration, "passive PAD ready")
            }
            arclock_face::PadStatus::Unavailable { reason } if config.liveness.wants_pad() => {
                tracing::error!(%reason, policy = ?config.liveness.pad_unavailable, "passive PAD unavailable")
            }
            arclock_face::PadStatus::Unavailable { .. } => {}
        }
        let store = open_store(&config).await?;
        let hsm = Hsm::new(hsm_config(&config), read_pin(&config)?);
        let tokens = token::Tokens::new(
            hsm.clone(),
            &config.auth.issuer,
            &config.auth.audience,
            std::time::Duration::from_secs(config.auth.access_ttl_secs),
        );
        let limits = api::limits::Limits::new(&config.limits);
        let kiosk = config
            .camera
            .enabled
            .then(|| Arc::new(kiosk::Kiosk::new(config.camera.clone())));
        let bodies = Arc::new(api::intake::BodyBudget::new(
            config.server.body_budget_bytes,
        ));
        Ok(App {
            config,
            tls,
            certs,
            hsm,
            store,
            face: Arc::new(face),
            tokens,
            limits,
            clock: Arc::new(SystemClock),
            metrics: metrics::Metrics::new(),
            feed: tokio::sync::broadcast::channel(1024).0,
            started: SystemClock.now(),
            instance: hex::encode(rand::random::<[u8; 8]>()),
            kiosk,
            reload: None,
            health: Default::default(),
            bodies,
            pseudonym_key: tokio::sync::OnceCell::new(),
            audit_sealed: Default::default(),
            custody: Default::default(),
        })
    }

    /// Appends an auth-log entry and hands it to live followers.
    pub async fn journal(&self, entry: store::AuthLog) -> Result<(), store::StoreError> {
        self.store.append_log(&entry).await?;
        self.announce(entry);
        Ok(())
    }

    /// Shows an entry already in the store on the live feed.
    pub fn announce(&self, entry: store::AuthLog) {
        let _ = self.feed.send(entry);
    }

    /// The same app, reloading `reload.config` on SIGHUP.
    pub fn with_reload(mut self, reload: Reload) -> Self {
        self.reload = Some(reload);
        self
    }

    /// The same app reading time from `clock` (tests move time with it).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.started = clock.now();
        self.clock = clock;
        self
    }
}

/// The configured store backend, opened and migrated (or indexed).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, store::StoreError> {
    Ok(match config.store.backend {
        config::Backend::Embedded => Arc::new(EmbeddedStore::open(&config.store.path)?),
        config::Backend::Mongodb => {
            let file = config.store.mongodb_uri_file.as_deref().ok_or_else(|| {
                store::StoreError::Unavailable("store.mongodb_uri_file is not set".into())
            })?;
            let uri = read_secret_file(file).map_err(store::StoreError::Unavailable)?;
            Arc::new(MongoStore::open(uri.trim(), &config.store.mongodb_database).await?)
        }
    })
}

/// A secret (the MongoDB URI may hold a password) from a file nobody else may
/// read: refused if group or others have any access.
fn read_secret_file(path: &std::path::Path) -> Result<zeroize::Zeroizing<String>, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{}: mode {:o} lets others read it; chmod 600",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    std::fs::read_to_string(path)
        .map(zeroize::Zeroizing::new)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The HSM pool settings from the daemon config.
pub fn hsm_config(config: &Config) -> HsmConfig {
    HsmConfig {
        module: config.hsm.module.clone(),
        token_label: config.hsm.token_label.clone(),
        slot: config.hsm.slot,
        pool_size: config.hsm.pool_size,
        signing: config.hsm.signing(),
    }
}

/// The PIN from the configured file or systemd credential.
pub fn read_pin(config: &Config) -> Result<Pin, arclock_hsm::Error> {
    match (&config.hsm.pin_file, &config.hsm.pin_credential) {
        (Some(file), _) => Pin::from_file(file),
        (None, Some(name)) => Pin::from_credential(name),
        (None, None) => Err(arclock_hsm::Error::PinSource {
            path: "hsm.pin_file".into(),
            reason: "neither hsm.pin_file nor hsm.pin_credential is set".into(),
        }),
    }
}

/// Binds the listener and serves until SIGTERM or SIGINT; SIGHUP reloads
/// the TLS certificate.
pub async fn run(app: App) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(app.config.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", app.config.server.listen))?;
    let local = listener.local_addr()?;
    match app.hsm.status().await {
        Ok(s) => {
            tracing::info!(token = %s.token_label, kek_versions = ?s.kek_versions, "HSM ready")
        }
        Err(e) => {
            tracing::error!(error = %e, "HSM unavailable at start; serving 503 until it recovers")
        }
    }
    // Named now, not at the first sign-in that needs it.
    if let Ok(lacks) = app.hsm.lacks().await {
        for lack in lacks {
            tracing::error!(lack = %lack, "the HSM token lacks a mechanism ArcLock needs");
        }
    }
    match app.hsm.signing_key().await {
        Ok(key) => tracing::info!(alg = %key.alg, kid = %key.kid, "signing key"),
        Err(arclock_hsm::Error::KeyNotFound(what)) => tracing::error!(
            missing = %what,
            "no signing key of the configured algorithm: sign-ins answer 503 until \
             `arclockd provision` (or the token's tools) makes one"
        ),
        Err(_) => {}
    }
    let admin = admin::Listener::bind(&app.config.admin)?;
    tracing::info!(%local, "arclockd listening on https://{local}");
    println!("arclockd listening on https://{local}");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let app = Arc::new(app);
    let server = tokio::spawn(http::serve(listener, Arc::clone(&app), rx.clone()));
    let admin = tokio::spawn(admin.serve(Arc::clone(&app), rx));
    let upkeep = tokio::spawn(upkeep(Arc::clone(&app)));
    let heartbeat = tokio::spawn(heartbeat(Arc::clone(&app)));
    let reload = tokio::spawn(reload_on_hangup(Arc::clone(&app)));
    // Ready first: the service manager hears READY=1 before any WATCHDOG=1.
    supervisor::ready(&format!("serving on {local}"));
    let watchdog = tokio::spawn(supervisor::watchdog());
    let binding = tokio::spawn({
        let app = Arc::clone(&app);
        async move { custody::bind_legacy(&app).await }
    });
    shutdown_signal().await;
    upkeep.abort();
    heartbeat.abort();
    binding.abort();
    reload.abort();
    supervisor::stopping();
    tracing::info!(
        grace_secs = app.config.server.shutdown_grace_secs,
        "shutting down: draining in-flight requests"
    );
    let _ = tx.send(true);
    server.await??;
    admin.await?;
    // What happened since the last seal is sealed before the process goes
    // (bounded: a hung token must not hold the shutdown).
    match tokio::time::timeout(std::time::Duration::from_secs(5), audit::seal(&app)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "audit trail not sealed at shutdown"),
        Err(_) => tracing::warn!("audit trail not sealed at shutdown: the HSM did not answer"),
    }
    watchdog.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Periodic housekeeping: forget idle rate-limit entries, purge expired
/// sessions, failure counters and lockouts, seal the audit trail's head.
async fn upkeep(app: Arc<App>) {
    let mut tick = tokio::time::interval(audit::SEAL_EVERY);
    loop {
        tick.tick().await;
        app.limits.prune();
        if let Err(e) = audit::seal(&app).await {
            tracing::warn!(error = %e, "audit trail not sealed");
        }
        match app.store.purge_expired(app.clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(purged = n, "expired records purged"),
            Err(e) => tracing::warn!(error = %e, "purge of expired records failed"),
        }
    }
}

/// How often an instance announces itself in the store.
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Announces this instance in the store every [`HEARTBEAT_EVERY`], so that
/// the console lists every daemon sharing the database.
async fn heartbeat(app: Arc<App>) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tick.tick().await;
        let beat = store::InstanceBeat {
            id: app.instance.clone(),
            host: host.clone(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: app.started,
            seen_at: app.clock.now(),
        };
        if let Err(e) = app.store.heartbeat(&beat).await {
            tracing::warn!(error = %e, "heartbeat not written");
        }
    }
}

/// SIGHUP: re-read the certificate and key (a bad pair is logged and the one
/// in use stays) and the config file: its log level applies at once; other
/// changes are named as needing a restart.
async fn reload_on_hangup(app: Arc<App>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; certificate reload disabled");
        return;
    };
    while hup.recv().await.is_some() {
        supervisor::reloading();
        match app.certs.reload() {
            Ok(()) => tracing::info!("TLS certificate reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "TLS certificate not reloaded; keeping the current one")
            }
        }
        if let Some(reload) = &app.reload {
            reload_config(&app, reload);
        }
        supervisor::reloaded();
    }
}

fn reload_config(app: &App, reload: &Reload) {
    let fresh = match Config::load(&reload.config, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "configuration not reloaded; keeping the current one");
            return;
        }
    };
    match (reload.log_level)(&fresh.log.level) {
        Ok(()) => tracing::info!(level = %fresh.log.level, "log level applied"),
        Err(e) => tracing::error!(error = %e, "log level not applied"),
    }
    let changed = config::restart_needed(&app.config, &fresh);
    if !changed.is_empty() {
        tracing::warn!(
            sections = ?changed,
            "these settings changed on disk and take effect at the next restart"
        );
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
