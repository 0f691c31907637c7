//! The daemon's shared state ([`App`]), built once at start from the
//! configuration: models and TLS must load, the store opens, the HSM
//! connects lazily (a missing token is a 503, not a refusal to start).

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::{api, config, custody, http, kiosk, metrics, store, token};
use arclock_face::{FaceModels, Manifest, Pipeline, Threads};
use arclock_hsm::{Hsm, HsmConfig, Pin};

use crate::config::Config;
use crate::store::{EmbeddedStore, MongoStore, Store};

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
    pub limits: api::limits::Quotas,
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
    /// E-mails and addresses this process has seen locked: a sign-in for
    /// one of them reserves before any face work (`signin::LocksSeen`).
    pub locks_seen: crate::signin::LocksSeen,
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
        // What loading freed would otherwise stay in RSS (`make bench`).
        let released = arclock_secmem::process::release_free_heap();
        tracing::debug!(released, "free heap after loading the models given back");
        for (model, graph) in face.models().graphs() {
            match graph {
                arclock_face::GraphForm::KeptAsShipped(_) => {
                    tracing::warn!(model, %graph, "model graph")
                }
                _ => tracing::info!(model, %graph, "model graph"),
            }
        }
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
        let limits = api::limits::Quotas::new(&config.limits);
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
            locks_seen: crate::signin::LocksSeen::default(),
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
        config::Backend::Embedded => Arc::new(
            EmbeddedStore::open(&config.store.path)?.rotation_sync(config.store.rotation_sync),
        ),
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
