//! The server's life: listeners, background upkeep (rate-limit pruning,
//! audit seals, purges), the instance heartbeat, SIGHUP reload and the
//! graceful stop on SIGTERM.

use std::sync::Arc;

use crate::app::{App, Reload};
use crate::config::{self, Config};
use crate::{admin, audit, custody, http, store, supervisor};

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
            load: app.metrics.load(),
            kek: app.hsm.wrapping_version().await.ok(),
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
