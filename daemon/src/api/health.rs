//! `GET /health`: each dependency checked for real, 503 when any is down, so
//! a load balancer stops sending traffic to a box that would fail. The public
//! answer names what is down; the reasons go only to operators (the admin
//! socket's health checks on every call).
//!
//! On the public port the answer is reused for `[server] health_cache_ms`
//! and checks run one at a time: a flood of `/health` (it needs no account)
//! costs at most one store and HSM check per interval, never one per request.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arclock_proto::{Dependency, Health};
use http::{Response, StatusCode};

use crate::App;
use crate::http::response::{self, Body};
use crate::http::{ApiError, Code};

/// The last public answer: when it was made, what was down, the report.
#[derive(Default)]
pub struct Cache(tokio::sync::Mutex<Option<(Instant, Vec<&'static str>, Health)>>);

pub async fn get(app: &App) -> Response<Body> {
    let ttl = Duration::from_millis(app.config.server.health_cache_ms);
    // Held across the check: concurrent probes wait for one result.
    let mut cached = app.health.0.lock().await;
    let fresh = cached.as_ref().filter(|(at, _, _)| at.elapsed() < ttl);
    let (down, mut data) = match fresh {
        Some((_, down, data)) => (down.clone(), data.clone()),
        None => {
            app.metrics.health_check();
            let (down, data) = report(app).await;
            *cached = Some((Instant::now(), down.clone(), data.clone()));
            (down, data)
        }
    };
    drop(cached);
    // Why a dependency is down (file paths, free space, token errors) is for
    // operators: the admin socket's health has it, the public port does not.
    for dep in data.dependencies.values_mut() {
        dep.reason = None;
    }
    if down.is_empty() {
        response::ok(StatusCode::OK, "ArcLock is healthy", data)
    } else {
        ApiError::new(
            Code::Unavailable,
            "A dependency is unavailable",
            format!("down: {}", down.join(", ")),
        )
        .with_data(serde_json::to_value(&data).unwrap_or_default())
        .into()
    }
}

/// Each dependency's state, checked now, and the names of those that are down
/// (also the operator console's dependency view).
pub(crate) async fn report(app: &App) -> (Vec<&'static str>, Health) {
    let (hsm, store) = tokio::join!(app.hsm.status(), app.store.health());
    let hsm = match hsm {
        Ok(s) if s.kek_versions.is_empty() => Dependency::down("token holds no key-encryption key"),
        Ok(s) if s.jwt_kids.is_empty() => Dependency::down("token holds no JWT signing key"),
        Ok(_) => Dependency::ok(),
        Err(e) => Dependency::down(e.to_string()),
    };
    let store = Dependency {
        backend: Some(app.store.backend().to_string()),
        ..match store {
            Ok(()) => Dependency::ok(),
            Err(e) => Dependency::down(e.to_string()),
        }
    };
    let m = app.face.models().status();
    let models = Dependency {
        detector: Some(m.detector.to_string()),
        recognizer: Some(m.recognizer.to_string()),
        embedding_dim: Some(m.embedding_dim),
        ..Dependency::ok()
    };
    let dependencies = BTreeMap::from([
        ("hsm".to_string(), hsm),
        ("store".to_string(), store),
        ("models".to_string(), models),
        ("liveness".to_string(), liveness(app)),
    ]);
    let down: Vec<&'static str> = ["hsm", "store", "models", "liveness"]
        .into_iter()
        .filter(|k| !dependencies[*k].is_ok())
        .collect();
    let health = Health {
        status: if down.is_empty() { "ok" } else { "degraded" }.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        dependencies,
    };
    (down, health)
}

/// The liveness policy and whether passive PAD can run: down when PAD is
/// wanted, not installed, and the policy refuses to go on without it.
fn liveness(app: &App) -> Dependency {
    use crate::config::PadUnavailable;
    let l = &app.config.liveness;
    let pad = app.face.models().pad_status();
    let mut d = Dependency {
        signin: Some(l.signin.as_str().to_string()),
        registration: Some(l.registration.as_str().to_string()),
        pad: Some(
            if pad.is_ready() {
                "ready"
            } else {
                "unavailable"
            }
            .to_string(),
        ),
        ..Dependency::ok()
    };
    if let arclock_face::PadStatus::Unavailable { reason } = pad
        && l.wants_pad()
    {
        d.reason = Some(reason.to_string());
        if l.pad_unavailable == PadUnavailable::Refuse {
            d.status = "error".into();
        }
    }
    d
}
