//! The daemon itself: dependency health with key versions, metrics, and KEK
//! rotation.

use arclock_proto as proto;
use http::{HeaderValue, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::json;

use super::{AdminBody, Answer, Operator, audit, ok};
use crate::http::{ApiError, Code};
use crate::store::{Outcome, Subject};
use crate::{App, custody};

/// Dependencies as `/health` sees them, plus what only operators should
/// see: the token's key versions, the signing key ids and algorithm, and the
/// key job.
pub async fn health(app: &App) -> Response<AdminBody> {
    let (down, public) = crate::api::health::report(app).await;
    let keys = match app.hsm.status().await {
        Ok(s) => proto::Keys {
            token: Some(s.token_label),
            manufacturer: Some(s.manufacturer),
            model: Some(s.model),
            kek_versions: s.kek_versions,
            jwt_kids: s.jwt_kids,
            // The configured algorithm; the kids are of both kinds after a switch.
            signing: Some(app.hsm.signing().alg().to_string()),
            error: None,
        },
        Err(e) => proto::Keys {
            error: Some(e.to_string()),
            ..Default::default()
        },
    };
    let report = proto::AdminHealth {
        public,
        uptime_secs: ((app.clock.now() - app.started).max(0) / 1000) as u64,
        down: down.into_iter().map(String::from).collect(),
        keys,
        // What a rotation or retirement has done so far (the console polls it).
        key_job: app.custody.snapshot(),
        camera: proto::CameraState {
            enabled: app.kiosk.is_some(),
            device: app.kiosk.as_ref().map(|k| k.device().to_string()),
        },
    };
    // Always 200: the answer is the report, whatever it says.
    ok("health report", report)
}

/// Every instance that announced itself in the last day, this one marked;
/// `alive` when seen within three heartbeats.
pub async fn instances(app: &App) -> Answer {
    let now = app.clock.now();
    let beats = app.store.instances(now - 24 * 3600 * 1000).await?;
    let alive_ms = 3 * crate::HEARTBEAT_EVERY.as_millis() as i64;
    let instances = beats
        .into_iter()
        .map(|b| proto::InstanceInfo {
            alive: now - b.seen_at <= alive_ms,
            this: b.id == app.instance,
            load: if b.id == app.instance {
                app.metrics.load()
            } else {
                b.load
            },
            kek: b.kek,
            id: b.id,
            host: b.host,
            pid: b.pid,
            version: b.version,
            started_at: b.started_at,
            seen_at: b.seen_at,
        })
        .collect();
    Ok(ok("instances", proto::Instances { instances }))
}

/// Prometheus text, with the lockouts in force read from the store.
pub async fn metrics(app: &App) -> Answer {
    let lockouts = app.store.lockouts(app.clock.now()).await?;
    let accounts = lockouts
        .iter()
        .filter(|(s, _)| matches!(s, Subject::Account(_)))
        .count();
    let text = app
        .metrics
        .render(accounts, lockouts.len() - accounts, app.face.runs_begun());
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
/// under it (`custody::rotate`). The answer says how many moved and how
/// many did not.
pub async fn rotate(app: &App, op: Operator) -> Answer {
    let (version, tally) = match custody::rotate(app).await {
        Ok(r) => r,
        Err(e) => return Err(custody_failed(app, op, "rotate KEK", e).await),
    };
    let outcome = if tally.failed == 0 {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    audit(
        app,
        op,
        None,
        &format!(
            "rotate KEK to v{version} ({} re-wrapped, {} failed)",
            tally.rewrapped, tally.failed
        ),
        outcome,
    )
    .await;
    let data = proto::Rotation { version, tally };
    Ok(ok(
        if tally.failed == 0 {
            "KEK rotated"
        } else {
            "KEK rotated; some keys were not re-wrapped (see failed)"
        },
        data,
    ))
}

/// Crypto-shredding (`custody::retire`): a new KEK, every key re-wrapped
/// under it, every older KEK destroyed, so that copies of the store taken
/// before (deleted accounts included) never open again.
pub async fn retire(app: &App, op: Operator) -> Answer {
    let retired = match custody::retire(app).await {
        Ok(r) => r,
        Err(e) => return Err(custody_failed(app, op, "retire old KEKs", e).await),
    };
    audit(
        app,
        op,
        None,
        &format!(
            "retire KEKs {:?}: everything re-wrapped under v{} ({} moved)",
            retired.destroyed, retired.version, retired.tally.rewrapped
        ),
        Outcome::Success,
    )
    .await;
    Ok(ok("old KEKs destroyed", retired))
}

async fn custody_failed(app: &App, op: Operator, what: &str, e: custody::CustodyError) -> ApiError {
    audit(app, op, None, what, Outcome::Failure).await;
    match e {
        custody::CustodyError::Busy(kind) => ApiError::new(
            Code::JobRunning,
            format!("a key job is already running ({kind})"),
            "one key job at a time",
        ),
        custody::CustodyError::Incomplete { failed, tally } => ApiError::new(
            Code::KeysNotMoved,
            format!(
                "{failed} wrapped keys could not be re-wrapped; no KEK was destroyed (see the log)"
            ),
            "retirement needs every key re-wrapped",
        )
        .with_data(json!({"tally": tally})),
        custody::CustodyError::Hsm(e) => e.into(),
        custody::CustodyError::Store(e) => e.into(),
    }
}
