//! The mobile API end to end: the real daemon over TLS on loopback, real
//! photos from `../shared/faces`, the real HSM, models and store.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Daemon, Instance, faces};
use serde_json::{Value, json};

fn photo(name: &str, n: u32) -> String {
    STANDARD
        .encode(std::fs::read(faces().join(format!("lfw-dev/{name}/{name}_{n:04}.jpg"))).unwrap())
}

async fn post(d: &Daemon, path: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = d
        .client
        .post(format!("{}{path}", d.url))
        .header("x-device-info", "ArcLockApp/1.0 (test)")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_reject_and_lock_out() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();

    // Register with one photo.
    let (status, _, body) = post(
        &d,
        "/api/auth/register",
        json!({"name": "Aaron <b>Peirsol</b>", "email": " Aaron@Example.org ", "imageBase64": photo("Aaron_Peirsol", 1)}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["success"], true);
    let user = &body["data"]["user"];
    assert_eq!(
        (user["name"].as_str(), user["email"].as_str()),
        (Some("Aaron Peirsol"), Some("aaron@example.org"))
    );
    assert_eq!(
        body["data"]["tokens"]["accessToken"]
            .as_str()
            .unwrap()
            .split('.')
            .count(),
        3
    );
    assert!(
        body["data"]["tokens"]["refreshToken"]
            .as_str()
            .unwrap()
            .len()
            >= 43
    );

    // The same e-mail again: 409, nothing changes.
    let (status, _, body) = post(
        &d,
        "/api/auth/register",
        json!({"name": "Other", "email": "aaron@example.org", "imageBase64": photo("Adam_Sandler", 1)}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("USER_EXISTS")),
        "{body}"
    );

    // Log in with another photo of the same person (and a data URL).
    let (status, _, body) = post(
        &d,
        "/api/auth/login",
        json!({"email": "aaron@example.org", "imageBase64": format!("data:image/jpeg;base64,{}", photo("Aaron_Peirsol", 2)), "device": {"os": "android"}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["user"]["email"], "aaron@example.org");
    assert!(body["data"]["similarity"].as_f64().unwrap() >= 0.39);

    // A different person: 401. An unknown e-mail: the very same answer.
    let (status, _, wrong) = post(
        &d,
        "/api/auth/verify-face",
        json!({"email": "aaron@example.org", "imageBase64": photo("Adam_Sandler", 1)}),
    )
    .await;
    assert_eq!(
        (status, wrong["code"].as_str()),
        (401, Some("VERIFICATION_FAILED")),
        "{wrong}"
    );
    let (status, _, unknown) = post(
        &d,
        "/api/auth/login",
        json!({"email": "nobody@example.org", "imageBase64": photo("Aaron_Peirsol", 2)}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        unknown, wrong,
        "unknown account and wrong face must look the same"
    );

    // Bad input: 4xx in the envelope.
    for (body, want_status, want_code) in [
        (
            json!({"email": "aaron@example.org"}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            json!({"email": "aaron@example.org", "imageBase64": "%%%"}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            json!({"email": "not-an-email", "imageBase64": photo("Aaron_Peirsol", 2)}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            json!({"email": "aaron@example.org", "imageBase64": "aGVsbG8=", "admin": true}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            json!({"email": "aaron@example.org", "imageBase64": STANDARD.encode(b"not a photo")}),
            422,
            "FACE_ERROR",
        ),
    ] {
        let (status, headers, got) = post(&d, "/api/auth/login", body.clone()).await;
        assert_eq!(
            (status, got["code"].as_str()),
            (want_status, Some(want_code)),
            "{body} -> {got}"
        );
        assert_eq!(got["success"], false);
        assert!(got["message"].is_string() && got["error"].is_string());
        assert_eq!(headers["x-frame-options"], "DENY");
    }
    let r = d
        .client
        .get(format!("{}/api/auth/login", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // Failures lock (5 within the window, counted per e-mail and per client
    // address across accounts; this client already failed twice above): the
    // next try is 429 with Retry-After, even with the right face.
    let victim = "locked@example.org";
    let (status, _, _) = post(
        &d,
        "/api/auth/register",
        json!({"name": "Al", "email": victim, "imageBase64": photo("Al_Pacino", 1)}),
    )
    .await;
    assert_eq!(status, 201);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (s, _, _) = post(
            &d,
            "/api/auth/login",
            json!({"email": victim, "imageBase64": photo("Adam_Sandler", 2)}),
        )
        .await;
        statuses.push(s);
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    let (status, headers, body) = post(
        &d,
        "/api/auth/login",
        json!({"email": victim, "imageBase64": photo("Al_Pacino", 2)}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("ACCOUNT_LOCKED")),
        "{body}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
}
