//! The daemon itself: dependency health with key versions, metrics, and KEK
//! rotation.

use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::json;

use super::{AdminBody, Answer, Operator, audit, ok, unavailable};
use crate::App;
use crate::store::{Outcome, Subject};

/// Dependencies as `/health` sees them, plus what only operators should
/// see: the token's key versions and the signing key ids.
pub async fn health(app: &App) -> Response<AdminBody> {
    let (down, mut data) = crate::api::health::report(app).await;
    let keys = match app.hsm.status().await {
        Ok(s) => json!({
            "token": s.token_label,
            "manufacturer": s.manufacturer,
            "model": s.model,
            "kekVersions": s.kek_versions,
            "jwtKids": s.jwt_kids,
        }),
        Err(e) => json!({"error": e.to_string()}),
    };
    if let Some(obj) = data.as_object_mut() {
        obj.insert("keys".into(), keys);
        obj.insert(
            "uptimeSecs".into(),
            json!((app.clock.now() - app.started).max(0) / 1000),
        );
        obj.insert("down".into(), json!(down));
        obj.insert(
            "camera".into(),
            match &app.kiosk {
                Some(k) => json!({"enabled": true, "device": k.device()}),
                None => json!({"enabled": false}),
            },
        );
    }
    // Always 200: the answer is the report, whatever it says.
    ok("health report", data)
}

/// Every instance that announced itself in the last day, this one marked;
/// `alive` when seen within three heartbeats.
pub async fn instances(app: &App) -> Answer {
    let now = app.clock.now();
    let beats = app
        .store
        .instances(now - 24 * 3600 * 1000)
        .await
        .map_err(|e| unavailable("the store", &e))?;
    let alive_ms = 3 * crate::HEARTBEAT_EVERY.as_millis() as i64;
    let list: Vec<_> = beats
        .iter()
        .map(|b| {
            json!({
                "id": b.id,
                "host": b.host,
                "pid": b.pid,
                "version": b.version,
                "startedAt": b.started_at,
                "seenAt": b.seen_at,
                "alive": now - b.seen_at <= alive_ms,
                "this": b.id == app.instance,
            })
        })
        .collect();
    Ok(ok("instances", json!({"instances": list})))
}

/// Prometheus text, with the lockouts in force read from the store.
pub async fn metrics(app: &App) -> Answer {
    let lockouts = app
        .store
        .lockouts(app.clock.now())
        .await
        .map_err(|e| unavailable("the store", &e))?;
    let accounts = lockouts
        .iter()
        .filter(|(s, _)| matches!(s, Subject::Account(_)))
        .count();
    let text = app.metrics.render(accounts, lockouts.len() - accounts);
    let mut r = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(r)
}

/// Creates the next KEK version in the HSM and re-wraps every user's key
/// under it (each key's plaintext exists only inside the HSM call). Old
/// versions stay in the token: another daemon on the same store may still
/// hold one for up to 10 s, and a key that failed to re-wrap needs its old
/// KEK. The answer says how many moved and how many did not.
pub async fn rotate(app: &App, op: Operator) -> Answer {
    let version = match app.hsm.create_kek_version().await {
        Ok(v) => v,
        Err(e) => {
            audit(app, op, None, "rotate KEK", Outcome::Failure).await;
            return Err(unavailable("the HSM", &e));
        }
    };
    let (mut rewrapped, mut current, mut failed) = (0u64, 0u64, 0u64);
    let mut after = None;
    loop {
        let page = app
            .store
            .list_users(after.as_ref(), 500)
            .await
            .map_err(|e| unavailable("the store", &e))?;
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        for user in &page {
            let moved = async {
                let Some(creds) = app
                    .store
                    .credentials(&user.id)
                    .await
                    .map_err(|e| e.to_string())?
                else {
                    return Ok::<_, String>(false);
                };
                if creds.key.wrapped.kek_version == version {
                    return Ok(false);
                }
                let wrapped = app
                    .hsm
                    .rewrap(user.id.as_str(), &creds.key.wrapped)
                    .await
                    .map_err(|e| e.to_string())?;
                let key = crate::store::StoredKey {
                    wrapped,
                    public_key: creds.key.public_key,
                };
                app.store
                    .replace_key(&user.id, &key)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(true)
            }
            .await;
            match moved {
                Ok(true) => rewrapped += 1,
                Ok(false) => current += 1,
                Err(e) => {
                    failed += 1;
                    tracing::error!(user = %user.id, error = %e, "key not re-wrapped");
                }
            }
        }
    }
    let outcome = if failed == 0 {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    audit(
        app,
        op,
        None,
        &format!("rotate KEK to v{version} ({rewrapped} re-wrapped, {failed} failed)"),
        outcome,
    )
    .await;
    let data = json!({
        "version": version,
        "rewrapped": rewrapped,
        "alreadyCurrent": current,
        "failed": failed,
    });
    Ok(ok(
        if failed == 0 {
            "KEK rotated"
        } else {
            "KEK rotated; some keys were not re-wrapped (see failed)"
        },
        data,
    ))
}
