//! The service manager's side of the lifecycle (sd_notify): `READY=1` once the
//! listeners are bound, `STOPPING=1` when the drain begins, and `WATCHDOG=1`
//! pings at half the `WatchdogSec=` interval from the async runtime, so a
//! wedged runtime gets the daemon restarted. Outside systemd (no
//! `NOTIFY_SOCKET`) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "service manager notification failed");
    }
}

/// Serving: the public port and the admin socket are bound.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Reloading the certificate (SIGHUP), then ready again.
pub fn reloading() {
    send(&[NotifyState::Reloading]);
}

pub fn reloaded() {
    send(&[NotifyState::Ready]);
}

/// Draining: no new connections, in-flight requests finish.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// Pings the watchdog while the runtime runs, if the unit asked for one.
pub async fn watchdog() {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let every = Duration::from_micros(usec / 2);
    tracing::info!(interval_ms = every.as_millis() as u64, "watchdog enabled");
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}
