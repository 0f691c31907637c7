//! `GET /health`: each dependency checked for real, 503 when any is down, so
//! a load balancer stops sending traffic to a box that would fail. The public
//! answer names what is down; the reasons go only to operators (the admin
//! socket's health checks on every call).
//!
//! On the public port the answer is reused for `[server] health_cache_ms`
//! and checks run one at a time: a flood of `/health` (it needs no account)
//! costs at most one store and HSM check per interval, never one per request.

use std::time::{Duration, Instant};

use http::{Response, StatusCode};
use serde_json::json;

use crate::App;
use crate::http::response::{self, Body};
use crate::http::{ApiError, Code};

/// The last public answer: when it was made, what was down, the report.
#[derive(Default)]
pub struct Cache(tokio::sync::Mutex<Option<(Instant, Vec<&'static str>, serde_json::Value)>>);

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
    if let Some(deps) = data["dependencies"].as_object_mut() {
        for dep in deps.values_mut() {
            if let Some(d) = dep.as_object_mut() {
                d.remove("reason");
            }
        }
    }
    if down.is_empty() {
        response::ok(StatusCode::OK, "ArcLock is healthy", data)
    } else {
        ApiError::new(
            Code::Unavailable,
            "A dependency is unavailable",
            format!("down: {}", down.join(", ")),
        )
        .with_data(data)
        .into()
    }
}

/// Each dependency's state, checked now, and the names of those that are down
/// (also the operator console's dependency view).
pub(crate) async fn report(app: &App) -> (Vec<&'static str>, serde_json::Value) {
    let (hsm, store) = tokio::join!(app.hsm.status(), app.store.health());
    let hsm = match hsm {
        Ok(s) if s.kek_versions.is_empty() => {
            json!({"status": "error", "reason": "token holds no key-encryption key"})
        }
        Ok(s) if s.jwt_kids.is_empty() => {
            json!({"status": "error", "reason": "token holds no JWT signing key"})
        }
        Ok(_) => json!({"status": "ok"}),
        Err(e) => json!({"status": "error", "reason": e.to_string()}),
    };
    let store = match store {
        Ok(()) => json!({"status": "ok", "backend": app.store.backend()}),
        Err(e) => {
            json!({"status": "error", "backend": app.store.backend(), "reason": e.to_string()})
        }
    };
    let m = app.face.models().status();
    let models = json!({
        "status": "ok",
        "detector": m.detector,
        "recognizer": m.recognizer,
        "embeddingDim": m.embedding_dim,
    });
    let deps = json!({
        "hsm": hsm,
        "store": store,
        "models": models,
        "liveness": liveness(app),
    });
    let down: Vec<&'static str> = ["hsm", "store", "models", "liveness"]
        .into_iter()
        .filter(|k| deps[*k]["status"] != "ok")
        .collect();
    let data = json!({
        "status": if down.is_empty() { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "dependencies": deps,
    });
    (down, data)
}

/// The liveness policy and whether passive PAD can run: down when PAD is
/// wanted, not installed, and the policy refuses to go on without it.
fn liveness(app: &App) -> serde_json::Value {
    use crate::config::PadUnavailable;
    let l = &app.config.liveness;
    let pad = app.face.models().pad_status();
    let mut v = json!({
        "status": "ok",
        "signin": l.signin,
        "registration": l.registration,
        "pad": if pad.is_ready() { "ready" } else { "unavailable" },
    });
    if let arclock_face::PadStatus::Unavailable { reason } = pad
        && l.wants_pad()
    {
        v["reason"] = json!(reason);
        if l.pad_unavailable == PadUnavailable::Refuse {
            v["status"] = json!("error");
        }
    }
    v
}
