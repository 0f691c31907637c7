//! Time-dependent behaviour with an injected clock: the real App (HSM, models,
//! store) served in-process over real TLS on loopback, with time moved by the
//! test instead of waited for. One test per file: SoftHSM2 reads its
//! configuration from the process environment once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use std::sync::Arc;

use arclockd::clock::ManualClock;
use common::{Instance, lfw_base64 as photo, root};
use serde_json::{Value, json};

const MIN: i64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockouts_and_tokens_expire_when_the_clock_says() {
    let inst = Instance::new();
    inst.provision();
    // This file holds a single test: nothing else has loaded SoftHSM2.
    common::point_softhsm_at(&inst.path("softhsm2.conf"));
    let config = arclockd::Config::load(&root().join("config/arclockd.toml"), inst.env()).unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let app = arclockd::App::build(config)
        .await
        .unwrap()
        .with_clock(clock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(arclockd::http::serve(listener, Arc::new(app), stop_rx));
    let client = inst.client();
    let url = |p: &str| format!("https://localhost:{port}{p}");
    let post = |p: &str, body: Value| {
        let r = client.post(url(p)).json(&body).send();
        async move {
            let r = r.await.unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (status, retry, r.json::<Value>().await.unwrap())
        }
    };
    let profile = |token: String| {
        let r = client
            .get(url("/api/user/profile"))
            .bearer_auth(token)
            .send();
        async move {
            let r = r.await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    let (status, _, body) = post(
        "/api/auth/register",
        json!({"name": "Al", "email": "al@example.org", "imageBase64": photo("Al_Pacino", 1)}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let common::Pair { access, refresh } = common::tokens(&body);

    // Five wrong faces lock the account; the right face is refused meanwhile.
    for i in 0..5 {
        let (status, _, _) = post(
            "/api/auth/login",
            json!({"email": "al@example.org", "imageBase64": photo("Adam_Sandler", 1)}),
        )
        .await;
        assert_eq!(status, 401, "attempt {i}");
    }
    let (status, retry, body) = post(
        "/api/auth/login",
        json!({"email": "al@example.org", "imageBase64": photo("Al_Pacino", 2)}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("ACCOUNT_LOCKED"))
    );
    assert_eq!(retry.as_deref(), Some("900"));
    let (status, body) = profile(access.clone()).await;
    assert_eq!(
        (status, body["data"]["securityStatus"].as_str()),
        (200, Some("locked"))
    );

    // 14 minutes later: still locked, Retry-After counts down.
    clock.advance(14 * MIN);
    let (status, retry, _) = post(
        "/api/auth/login",
        json!({"email": "al@example.org", "imageBase64": photo("Al_Pacino", 2)}),
    )
    .await;
    assert_eq!((status, retry.as_deref()), (429, Some("60")));
    // The access token (15 min) is still good at 14 min ...
    assert_eq!(profile(access.clone()).await.0, 200);

    // ... and at 15 min both the lockout and the access token are over.
    clock.advance(MIN + 1000);
    assert_eq!(profile(access.clone()).await.0, 401, "expired access token");
    let (status, _, body) = post(
        "/api/auth/login",
        json!({"email": "al@example.org", "imageBase64": photo("Al_Pacino", 2)}),
    )
    .await;
    assert_eq!(status, 200, "unlocked after expiry: {body}");

    // The refresh token outlives the access token, but not its 7 days.
    let (status, _, body) = post("/api/auth/refresh-token", json!({"refreshToken": refresh})).await;
    assert_eq!(status, 200, "{body}");
    let common::Pair {
        access: fresh,
        refresh: next,
    } = common::tokens(&body);
    assert_eq!(profile(fresh).await.0, 200);
    clock.advance(7 * 24 * 60 * MIN);
    let (status, _, body) = post("/api/auth/refresh-token", json!({"refreshToken": next})).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHORIZED")));
}
