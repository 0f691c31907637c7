//! The mobile API end to end: the real daemon over TLS on loopback, real
//! photos from `../shared/faces`, the real HSM, models and store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests report by panicking

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Daemon, Instance, lfw_base64 as photo};
use serde_json::{Value, json};

type Answer = (u16, reqwest::header::HeaderMap, Value);

/// The OpenAPI document; every answer a test sees must be documented there.
fn openapi() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(common::root().join("daemon/openapi.json")).unwrap(),
    )
    .unwrap()
}

fn assert_documented(method: &str, path: &str, status: u16) {
    let doc = openapi();
    let path = path.split('?').next().unwrap();
    let op = &doc["paths"][path][method.to_ascii_lowercase()];
    assert!(op.is_object(), "{method} {path} is not in openapi.json");
    assert!(
        op["responses"][status.to_string()].is_object(),
        "{method} {path} answered {status}, which openapi.json does not list"
    );
}

async fn send(r: reqwest::RequestBuilder, method: &str, path: &str) -> Answer {
    let r = r
        .header("x-device-info", "ArcLockApp/1.0 (test)")
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let body: Value = r.json().await.unwrap();
    if path.starts_with("/api/") || path == "/health" {
        assert_documented(method, path, status);
        let envelope = if status < 300 {
            body["success"] == true && body["message"].is_string()
        } else {
            body["success"] == false
                && body["message"].is_string()
                && body["error"].is_string()
                && body["code"].is_string()
        };
        assert!(
            envelope,
            "{method} {path} {status}: not the envelope: {body}"
        );
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["cache-control"], "no-store");
    }
    (status, headers, body)
}

async fn post(d: &Daemon, path: &str, body: Value) -> Answer {
    send(
        d.client.post(format!("{}{path}", d.url)).json(&body),
        "POST",
        path,
    )
    .await
}

/// An authenticated call (`token` as the bearer), with an optional JSON body.
async fn call(d: &Daemon, method: &str, path: &str, token: &str, body: Option<Value>) -> Answer {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = d
        .client
        .request(m, format!("{}{path}", d.url))
        .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    send(r, method, path).await
}

fn tokens(body: &Value) -> (String, String) {
    let common::Pair { access, refresh } = common::tokens(body);
    (access, refresh)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_profile_logs_and_deletion() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();

    let (status, _, body) = post(
        &d,
        "/api/auth/register",
        json!({"name": "Alvaro", "email": "alvaro@example.org", "imageBase64": photo("Alvaro_Uribe", 1)}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (access, refresh) = tokens(&body);
    assert_eq!(body["data"]["tokens"]["expiresIn"], 900);
    let created = body["data"]["user"]["createdAt"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");

    // Profile: needs the token; shows the security status; the name changes.
    let (status, _, _) = call(&d, "GET", "/api/user/profile", "", None).await;
    assert_eq!(status, 401);
    let (status, _, body) = call(&d, "GET", "/api/user/profile", &access, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["email"], "alvaro@example.org");
    assert_eq!(body["data"]["securityStatus"], "active");
    let (status, _, body) = call(
        &d,
        "PUT",
        "/api/user/profile",
        &access,
        Some(json!({"name": "<i>Álvaro</i> Uribe"})),
    )
    .await;
    assert_eq!(
        (status, body["data"]["name"].as_str()),
        (200, Some("Álvaro Uribe")),
        "{body}"
    );
    for bad in [
        json!({"name": ""}),
        json!({"name": "x", "email": "a@b.c"}),
        json!({}),
    ] {
        let (status, _, body) = call(&d, "PUT", "/api/user/profile", &access, Some(bad)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("VALIDATION_ERROR"))
        );
    }

    // A failed and a good face attempt, then the logs, a page at a time.
    let (status, _, _) = post(
        &d,
        "/api/auth/verify-face",
        json!({"email": "alvaro@example.org", "imageBase64": photo("Adam_Sandler", 1)}),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, body) = post(
        &d,
        "/api/auth/login",
        json!({"email": "alvaro@example.org", "imageBase64": photo("Alvaro_Uribe", 2)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (second_access, second_refresh) = tokens(&body);
    let (status, _, body) = call(&d, "GET", "/api/logs/auth?limit=2", &access, None).await;
    assert_eq!(status, 200, "{body}");
    let page1 = body["data"]["logs"].as_array().unwrap().clone();
    assert_eq!(page1.len(), 2);
    assert_eq!(page1[0]["action"], "login");
    assert_eq!(page1[0]["status"], "success");
    assert_eq!(page1[0]["device"], "ArcLockApp/1.0 (test)");
    let sim = page1[0]["similarity"].as_f64().unwrap();
    assert!(
        (sim * 10.0 - (sim * 10.0).round()).abs() < 1e-6,
        "bucketed: {sim}"
    );
    let cursor = body["data"]["nextCursor"].as_str().unwrap().to_string();
    let (_, _, body) = call(
        &d,
        "GET",
        &format!("/api/logs/auth?limit=100&cursor={cursor}"),
        &access,
        None,
    )
    .await;
    let page2 = body["data"]["logs"].as_array().unwrap();
    assert!(page2.iter().any(|l| l["action"] == "register"), "{body}");
    assert!(page2.iter().all(|l| !page1.contains(l)));
    assert!(body["data"]["nextCursor"].is_null());
    let (_, _, body) = call(&d, "GET", "/api/logs/failures", &access, None).await;
    let attempts = body["data"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{body}");
    assert_eq!(attempts[0]["reason"], "no match");
    assert!(attempts[0].get("similarity").is_none());
    let (_, _, body) = call(&d, "GET", "/api/logs/auth?status=failure", &access, None).await;
    assert_eq!(body["data"]["logs"].as_array().unwrap().len(), 1, "{body}");
    for q in [
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=zz",
        "since=yesterday",
        "admin=1",
        "limit=1&limit=2",
    ] {
        let (status, _, body) =
            call(&d, "GET", &format!("/api/logs/auth?{q}"), &access, None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("VALIDATION_ERROR")),
            "{q}"
        );
    }

    // Refresh rotates; the old refresh token replayed revokes the session, and
    // the access tokens of that session die with it.
    let (status, _, body) = post(
        &d,
        "/api/auth/refresh-token",
        json!({"refreshToken": refresh}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (rotated_access, rotated_refresh) = tokens(&body);
    assert_ne!(rotated_refresh, refresh);
    let (status, _, _) = call(&d, "GET", "/api/user/profile", &rotated_access, None).await;
    assert_eq!(status, 200);
    let (status, _, body) = post(
        &d,
        "/api/auth/refresh-token",
        json!({"refreshToken": refresh}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("UNAUTHORIZED")),
        "{body}"
    );
    for dead in [&access, &rotated_access] {
        let (status, _, _) = call(&d, "GET", "/api/user/profile", dead, None).await;
        assert_eq!(status, 401, "a revoked session's access token");
    }
    let (status, _, _) = post(
        &d,
        "/api/auth/refresh-token",
        json!({"refreshToken": rotated_refresh}),
    )
    .await;
    assert_eq!(status, 401);
    for bad in [
        json!({}),
        json!({"refreshToken": ""}),
        json!({"refreshToken": "x", "extra": 1}),
    ] {
        let (status, _, _) = post(&d, "/api/auth/refresh-token", bad).await;
        assert_eq!(status, 400);
    }
    // The other session (the login) is untouched.
    let (status, _, _) = call(&d, "GET", "/api/user/profile", &second_access, None).await;
    assert_eq!(status, 200);

    // Logout with only the bearer token (as the app does) ends that session.
    let (status, _, body) = call(&d, "POST", "/api/auth/logout", &second_access, None).await;
    assert_eq!(
        (status, &body["data"]["revoked"]),
        (200, &json!(true)),
        "{body}"
    );
    let (status, _, _) = call(&d, "GET", "/api/user/profile", &second_access, None).await;
    assert_eq!(status, 401);
    let (status, _, _) = post(
        &d,
        "/api/auth/refresh-token",
        json!({"refreshToken": second_refresh}),
    )
    .await;
    assert_eq!(status, 401);
    // ... and logout by refresh token alone works too.
    let (_, _, body) = post(
        &d,
        "/api/auth/login",
        json!({"email": "alvaro@example.org", "imageBase64": photo("Alvaro_Uribe", 2)}),
    )
    .await;
    let (third_access, third_refresh) = tokens(&body);
    let (status, _, _) = post(
        &d,
        "/api/auth/logout",
        json!({"refreshToken": third_refresh}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call(&d, "GET", "/api/logs/auth", &third_access, None).await;
    assert_eq!(status, 401);
    let (status, _, _) = post(&d, "/api/auth/logout", json!({})).await;
    assert_eq!(status, 401);

    // Token attacks on the wire: all one 401.
    let (_, _, body) = post(
        &d,
        "/api/auth/login",
        json!({"email": "alvaro@example.org", "imageBase64": photo("Alvaro_Uribe", 2)}),
    )
    .await;
    let (access, _) = tokens(&body);
    let parts: Vec<&str> = access.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none_header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("0".repeat(32));
    let other_sub = b64.encode(claims.to_string());
    for forged in [
        format!("{none_header}.{}.", parts[1]),
        format!("{}.{other_sub}.{}", parts[0], parts[2]),
        format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            &parts[2][..parts[2].len() - 4]
        ),
        "not-a-token".to_string(),
    ] {
        let (status, _, body) = call(&d, "GET", "/api/user/profile", &forged, None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("UNAUTHORIZED")),
            "{forged}"
        );
    }

    // Deletion: the account, its data and its sessions go; logging in again
    // is the generic 401.
    let (status, _, body) = call(&d, "DELETE", "/api/user/delete", &access, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = call(&d, "GET", "/api/user/profile", &access, None).await;
    assert_eq!(status, 401);
    let (status, _, body) = post(
        &d,
        "/api/auth/login",
        json!({"email": "alvaro@example.org", "imageBase64": photo("Alvaro_Uribe", 2)}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("VERIFICATION_FAILED"))
    );
    // The e-mail can be registered again.
    let (status, _, _) = post(
        &d,
        "/api/auth/register",
        json!({"name": "Alvaro", "email": "alvaro@example.org", "imageBase64": photo("Alvaro_Uribe", 1)}),
    )
    .await;
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_and_rate_limits() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start_with(&[
        ("ARCLOCK_LIMITS_AUTH", "4"),
        ("ARCLOCK_LIMITS_GENERAL", "6"),
    ]);
    let jpeg = common::lfw;
    let form = |email: &str, image: Vec<u8>, name: Option<&str>| {
        let mut f = reqwest::multipart::Form::new()
            .text("email", email.to_string())
            .part(
                "image",
                reqwest::multipart::Part::bytes(image)
                    .file_name("face.jpg")
                    .mime_str("image/jpeg")
                    .unwrap(),
            );
        if let Some(n) = name {
            f = f.text("name", n.to_string());
        }
        f
    };
    let url = |p: &str| format!("{}{p}", d.url);

    // Auth quota 4: register, login, a bad one, one more; then 429.
    let (status, headers, body) = send(
        d.client.post(url("/api/auth/register")).multipart(form(
            "anna@example.org",
            jpeg("Alejandro_Toledo", 1),
            Some("Anna"),
        )),
        "POST",
        "/api/auth/register",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(headers["ratelimit-limit"], "4");
    assert_eq!(headers["ratelimit-remaining"], "3");
    assert_eq!(headers["ratelimit-policy"], "4;w=900");
    let (status, headers, body) = send(
        d.client.post(url("/api/auth/login")).multipart(form(
            "anna@example.org",
            jpeg("Alejandro_Toledo", 2),
            None,
        )),
        "POST",
        "/api/auth/login",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["ratelimit-remaining"], "2");
    let (access, _) = tokens(&body);
    // A name on login, and an unknown part, are refused.
    let (status, _, body) = send(
        d.client.post(url("/api/auth/login")).multipart(form(
            "anna@example.org",
            jpeg("Alejandro_Toledo", 2),
            Some("x"),
        )),
        "POST",
        "/api/auth/login",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    let (status, _, body) = send(
        d.client.post(url("/api/auth/login")).multipart(
            form("anna@example.org", jpeg("Alejandro_Toledo", 2), None).text("role", "admin"),
        ),
        "POST",
        "/api/auth/login",
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("VALIDATION_ERROR")),
        "{body}"
    );
    let (status, headers, body) = post(
        &d,
        "/api/auth/login",
        json!({"email": "anna@example.org", "imageBase64": photo("Alejandro_Toledo", 2)}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("AUTH_RATE_LIMIT_EXCEEDED")),
        "{body}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert_eq!(headers["ratelimit-remaining"], "0");

    // Other routes count against the general quota (6, of which 4 auth
    // requests already took 5 with the refused one); health is not limited.
    let (status, headers, _) = call(&d, "GET", "/api/user/profile", &access, None).await;
    assert_eq!(
        (status, headers["ratelimit-limit"].to_str().unwrap()),
        (200, "6")
    );
    let (status, _, body) = call(&d, "GET", "/api/user/profile", &access, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("RATE_LIMIT_EXCEEDED"))
    );
    for _ in 0..3 {
        let (status, _, _, _) = d.get("/health").await;
        assert_eq!(status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_served_and_covers_every_route() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start();
    let (status, headers, _, served) = d.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(served, openapi());
    assert_eq!(served["openapi"], "3.1.0");
    // Every documented operation exists (not 404/405) on the live daemon.
    for (path, ops) in served["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = d
                .client
                .request(m, format!("{}{path}", d.url))
                .send()
                .await
                .unwrap();
            assert!(
                ![404, 405].contains(&r.status().as_u16()),
                "{method} {path} is documented but answers {}",
                r.status()
            );
        }
    }
    // Unknown routes and methods: envelope, 404 and 405 with Allow.
    let r = d
        .client
        .delete(format!("{}/api/user/profile", d.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, PUT");
    let (status, _, _, body) = d.get("/api/nope").await;
    assert_eq!(
        (status.as_u16(), body["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_hold_photos_tokens_or_addresses() {
    let inst = Instance::new();
    inst.provision();
    let d = inst.start_with(&[
        ("ARCLOCK_LOG_FORMAT", "json"),
        ("ARCLOCK_LOG_LEVEL", "trace"),
    ]);
    let enrol = photo("Alejandro_Toledo", 1);
    let (status, _, body) = post(
        &d,
        "/api/auth/register",
        json!({"name": "Secret Name", "email": "hidden@example.org", "imageBase64": enrol}),
    )
    .await;
    assert_eq!(status, 201);
    let (access, refresh) = tokens(&body);
    let probe = photo("Alejandro_Toledo", 2);
    let stranger = photo("Adam_Sandler", 1);
    let mut secrets = vec![access.clone(), refresh.clone()];
    for (email, img) in [
        ("hidden@example.org", &probe),
        ("hidden@example.org", &stranger),
        ("ghost@example.org", &probe),
    ] {
        let (_, _, body) = post(
            &d,
            "/api/auth/login",
            json!({"email": email, "imageBase64": img}),
        )
        .await;
        if body["success"] == true {
            let (a, r) = tokens(&body);
            secrets.extend([a, r]);
        }
    }
    let (_, _, body) = post(
        &d,
        "/api/auth/refresh-token",
        json!({"refreshToken": refresh}),
    )
    .await;
    let (a, r) = tokens(&body);
    secrets.extend([a.clone(), r]);
    call(&d, "GET", "/api/user/profile", &a, None).await;
    call(&d, "POST", "/api/auth/logout", &a, None).await;
    drop(d);

    let log = std::fs::read_to_string(inst.path("daemon.log")).unwrap();
    assert!(
        log.lines().count() > 20,
        "trace logging produced too little to be a test"
    );
    for line in log.lines().filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "a token reached the log");
        // Also the JWT's signature alone, and the refresh token's halves.
        let tail = s.rsplit('.').next().unwrap();
        assert!(!log.contains(tail), "part of a token reached the log");
    }
    for img in [&enrol, &probe, &stranger] {
        for window in img.as_bytes().chunks(64).skip(1).take(50) {
            assert!(
                !log.contains(std::str::from_utf8(window).unwrap()),
                "photo bytes reached the log"
            );
        }
    }
    for word in ["hidden@example.org", "ghost@example.org", "Secret Name"] {
        assert!(!log.contains(word), "{word} reached the log");
    }
}
